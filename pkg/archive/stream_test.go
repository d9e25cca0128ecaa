package archive

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// tarOf is what pg_basebackup -Ft -D - writes: a tar stream of dir's entries, without an entry
// for dir itself.
func tarOf(t *testing.T, dir string) []byte {
	t.Helper()
	names := listDir(t, dir)
	out, err := exec.Command("tar", append([]string{"-C", dir, "--numeric-owner", "--format=posix", "-cf", "-"}, names...)...).Output()
	if err != nil {
		t.Fatalf("tar: %v", err)
	}
	return out
}

// A tar stream is archived like the directory it was made of: restoring the archive gives that
// directory back, with a root of mode 0700 that PostgreSQL accepts as a data directory, and the
// manifest names the command.
func TestStreamRoundTrip(t *testing.T) {
	src, out, dst := t.TempDir(), t.TempDir(), t.TempDir()
	makeTree(t, src)
	if err := os.Chmod(src, 0o700); err != nil {
		t.Fatal(err)
	}
	stream := tarOf(t, src)
	committed := false
	cmd := []string{"pg_basebackup", "-Ft", "-D", "-"}
	stats, err := Backup(context.Background(), BackupOptions{
		Source: "db/postgres-0/postgres", Stream: bytes.NewReader(stream), Command: cmd,
		Output: filepath.Join(out, "b.tar.zst"), ToolVersion: "test",
		BeforeCommit: func() error { committed = true; return nil },
	})
	if err != nil {
		t.Fatal(err)
	}
	if !committed {
		t.Error("BeforeCommit was not called")
	}
	dirStats := backupTree(t, src, t.TempDir(), Zstd)
	if stats.Files != dirStats.Files || stats.SourceBytes != dirStats.SourceBytes || stats.Directories != dirStats.Directories ||
		stats.Symlinks != dirStats.Symlinks || stats.Hardlinks != dirStats.Hardlinks {
		t.Errorf("stream counts %+v, the directory's %+v", stats, dirStats)
	}
	var m Manifest
	mb, err := os.ReadFile(stats.ManifestFile)
	if err == nil {
		err = json.Unmarshal(mb, &m)
	}
	if err != nil || strings.Join(m.Command, " ") != strings.Join(cmd, " ") || m.Source != "db/postgres-0/postgres" {
		t.Errorf("manifest %s (%v) does not name the command %v", mb, err, cmd)
	}
	if _, err := Restore(context.Background(), RestoreOptions{Archive: stats.Archive, Target: dst, SHA256: stats.SHA256}); err != nil {
		t.Fatal(err)
	}
	// The stream has no root entry: the root's mode is 0700 and its mtime the backup's.
	if fi, err := os.Stat(dst); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("restored root %v (%v), want mode 0700", fi, err)
	}
	sfi, err := os.Stat(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(dst, sfi.ModTime(), sfi.ModTime()); err != nil {
		t.Fatal(err)
	}
	compareTrees(t, src, dst)
}

// A stream that is cut, names a path outside its root, or whose producer fails after writing
// it, never makes an archive.
func TestStreamFailuresLeaveNothing(t *testing.T) {
	src := t.TempDir()
	makeTree(t, src)
	good := tarOf(t, src)
	var evil bytes.Buffer
	tw := tar.NewWriter(&evil)
	if err := tw.WriteHeader(&tar.Header{Name: "../escape", Typeflag: tar.TypeReg, Size: 1, Mode: 0o644}); err != nil {
		t.Fatal(err)
	}
	tw.Write([]byte("x"))
	tw.Close()
	exited := errors.New("pg_basebackup exited with code 1")

	for _, tc := range []struct {
		name         string
		stream       []byte
		beforeCommit func() error
		reason       Reason
		says         string
	}{
		{"cut inside a file", good[:len(good)/2], nil, StreamFailed, "ended inside"},
		{"not a tar", []byte(strings.Repeat("pg_dump custom format\n", 100)), nil, StreamFailed, "not a complete tar stream"},
		{"empty", make([]byte, 1024), nil, StreamFailed, "empty tar stream"},
		{"outside its root", evil.Bytes(), nil, StreamFailed, `"../escape"`},
		{"the command failed at the end", good, func() error { return &Error{Reason: ReadFailed, Msg: exited.Error()} }, ReadFailed, "exited with code 1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := t.TempDir()
			_, err := Backup(context.Background(), BackupOptions{
				Source: "pod", Stream: bytes.NewReader(tc.stream), Output: filepath.Join(out, "b.tar.zst"), BeforeCommit: tc.beforeCommit,
			})
			wantReason(t, err, tc.reason)
			if !strings.Contains(err.Error(), tc.says) {
				t.Errorf("error %q does not say %q", err, tc.says)
			}
			if names := listDir(t, out); len(names) != 0 {
				t.Errorf("a failed stream left %v", names)
			}
		})
	}
}
