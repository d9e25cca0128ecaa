package archive

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// dumpBytes is what pg_dump -Fc writes: a header, then data that compresses a little.
func dumpBytes(t *testing.T) []byte {
	t.Helper()
	noise := make([]byte, 300<<10)
	rand.Read(noise)
	return append(append([]byte("PGDMP\x01\x0e\x00"), bytes.Repeat([]byte("COPY public.t (id) FROM stdin;\n"), 2000)...), noise...)
}

// fileBackup archives dump as a file archive called name in dir.
func fileBackup(t *testing.T, dir, name string, dump []byte, opts BackupOptions) *BackupStats {
	t.Helper()
	opts.Source, opts.Stream, opts.Format = "db/postgres-0/postgres", bytes.NewReader(dump), FormatFile
	opts.Output, opts.ToolVersion = filepath.Join(dir, name), "test"
	opts.Command, opts.Container = []string{"pg_dump", "-Fc", "app"}, "postgres"
	stats, err := Backup(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	return stats
}

// A file archive, in each compression and encrypted, restores as the one file it was made of,
// verifies, and records what it is in its manifest.
func TestFileArchiveRoundTrip(t *testing.T) {
	id, key := keyPair(t)
	dump := dumpBytes(t)
	for _, tc := range []struct {
		name      string
		archive   string
		comp      Compression
		encrypted bool
	}{
		{"zstd", "nightly.dump.zst", Zstd, false},
		{"gzip", "nightly.dump.gz", Gzip, false},
		{"none", "nightly.dump", None, false},
		{"zstd encrypted", "nightly.dump.zst.age", Zstd, true},
		{"none encrypted", "nightly.dump.age", None, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, dst := t.TempDir(), t.TempDir()
			opts := BackupOptions{Compression: tc.comp}
			var ids *Identities
			if tc.encrypted {
				opts.Recipients, ids = recipientsOf(t, key), identitiesOf(t, id)
			}
			stats := fileBackup(t, out, tc.archive, dump, opts)
			if stats.Files != 1 || stats.SourceBytes != int64(len(dump)) || stats.Compression != tc.comp || stats.Directories != 0 {
				t.Errorf("stats %+v", stats)
			}
			mb, err := os.ReadFile(stats.ManifestFile)
			if err != nil {
				t.Fatal(err)
			}
			m, err := DecodeManifest(mb)
			if err != nil {
				t.Fatal(err)
			}
			if m.Format != FormatFile || m.FileName != DefaultFileName || m.Container != "postgres" || strings.Join(m.Command, " ") != "pg_dump -Fc app" ||
				m.Compression != tc.comp || m.Files != 1 || !m.Describes(stats.Archive) || (m.ManifestVersion == 2) != tc.encrypted {
				t.Errorf("manifest %s", mb)
			}
			if !bytes.Contains(mb, []byte(`"format": "file"`)) {
				t.Errorf("manifest does not say format file: %s", mb)
			}

			rs, err := Restore(context.Background(), RestoreOptions{Archive: stats.Archive, Target: dst, SHA256: stats.SHA256,
				Format: FormatFile, Identities: ids})
			if err != nil {
				t.Fatal(err)
			}
			got, err := os.ReadFile(filepath.Join(dst, DefaultFileName))
			if err != nil || !bytes.Equal(got, dump) {
				t.Fatalf("restored %d bytes (%v), want the %d of the dump", len(got), err, len(dump))
			}
			if names := listDir(t, dst); !slices.Equal(names, []string{DefaultFileName}) {
				t.Errorf("target holds %v, want only the dump", names)
			}
			if rs.Files != 1 || rs.Bytes != int64(len(dump)) || rs.Format != FormatFile || rs.FileName != DefaultFileName || rs.Compression != tc.comp ||
				(rs.Encryption == EncryptionAge) != tc.encrypted {
				t.Errorf("restore stats %+v", rs)
			}

			src, err := OpenFile(stats.Archive)
			if err != nil {
				t.Fatal(err)
			}
			defer src.Close()
			vs, err := VerifyFileArchive(context.Background(), src, stats.SHA256, ids, "")
			if err != nil {
				t.Fatal(err)
			}
			if !vs.ContentsChecked || vs.Files != 1 || vs.Bytes != int64(len(dump)) || vs.Format != FormatFile || vs.Compression != tc.comp {
				t.Errorf("verify stats %+v", vs)
			}
		})
	}
}

// The archive is the dump, compressed: plain zstd, gzip and sha256sum give it back and check it.
func TestPlainToolsRestoreFileArchive(t *testing.T) {
	dump := dumpBytes(t)
	for _, tc := range []struct {
		comp Compression
		tool string
		name string
	}{{Zstd, "zstd", "b.dump.zst"}, {Gzip, "gzip", "b.dump.gz"}} {
		t.Run(string(tc.comp), func(t *testing.T) {
			if _, err := exec.LookPath(tc.tool); err != nil {
				t.Skip(tc.tool + " is not installed")
			}
			out := t.TempDir()
			stats := fileBackup(t, out, tc.name, dump, BackupOptions{})
			cmd := exec.Command(tc.tool, "-d", "-c", stats.Archive)
			got, err := cmd.Output()
			if err != nil || !bytes.Equal(got, dump) {
				t.Fatalf("%s -d gave %d bytes (%v), want the dump's %d", tc.tool, len(got), err, len(dump))
			}
			cmd = exec.Command("sha256sum", "-c", filepath.Base(stats.ChecksumFile))
			cmd.Dir = out
			if b, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("sha256sum -c: %v\n%s", err, b)
			}
		})
	}
}

// A file archive's name must carry its file name and compression, and only when the file
// format is asked for; a tar still needs .tar.
func TestFileArchiveNames(t *testing.T) {
	for _, tc := range []struct {
		name, fileName string
		comp           Compression
		encrypted      bool
		ok             bool
	}{
		{"b.dump.zst", "dump", Zstd, false, true},
		{"dir/b.dump.gz.age", "dump", Gzip, true, true},
		{"b.dump", "dump", None, false, true},
		{"b.db.sql.gz", "db.sql", Gzip, false, true},
		{"b.tar.zst", "dump", "", false, false},
		{".dump.zst", "dump", "", false, false},
		{"b.dump.zst", "", "", false, false},
	} {
		f, ok := FileFormatForName(tc.name, tc.fileName)
		if ok != tc.ok || ok && (f.Compression != tc.comp || f.Encrypted != tc.encrypted || f.FileName != tc.fileName) {
			t.Errorf("FileFormatForName(%q, %q) = %+v, %v", tc.name, tc.fileName, f, ok)
		}
	}
	if f, _ := FileFormatForName("x/b.dump.zst.age", "dump"); f.Trim("b.dump.zst.age") != "b" || f.Extension() != ".dump.zst.age" {
		t.Errorf("Trim or Extension of %+v", f)
	}
	if _, ok := FormatForName("b.dump.zst"); ok {
		t.Error("a tar name check accepted a file archive's name")
	}
	dump := []byte("PGDMP")
	for _, tc := range []struct {
		opts BackupOptions
		says string
	}{
		{BackupOptions{Output: "/tmp/b.tar.zst", Stream: bytes.NewReader(dump), Format: FormatFile}, ".dump.zst (zstd, the default)"},
		{BackupOptions{Output: "/tmp/b.dump.zst", Stream: bytes.NewReader(dump), Format: FormatFile, Compression: Gzip}, "name it /tmp/b.dump.gz"},
		{BackupOptions{Output: "/tmp/b.dump.zst", Stream: bytes.NewReader(dump), Format: FormatFile, FileName: "x/y"}, "not a plain file name"},
		{BackupOptions{Output: "/tmp/b.dump.zst", Stream: bytes.NewReader(dump)}, "must end in .tar.zst"},
		{BackupOptions{Output: "/tmp/b.dump.zst", Source: "/tmp", Format: FormatFile}, "no command was given"},
	} {
		_, err := Backup(context.Background(), tc.opts)
		wantReason(t, err, InvalidArgument)
		if err != nil && !strings.Contains(err.Error(), tc.says) {
			t.Errorf("%+v: error %q does not say %q", tc.opts, err, tc.says)
		}
	}
	opts := BackupOptions{Output: "b.sql.gz", Stream: bytes.NewReader(dump), Format: FormatFile, FileName: "sql"}
	if err := CheckBackupOptions(&opts, opts.Output); err != nil || opts.Compression != Gzip {
		t.Errorf("CheckBackupOptions: %v, compression %s", err, opts.Compression)
	}
}

// A file archive restores only where it is allowed to, and as the mode says: refuse keeps a
// non-empty target, merge replaces only the file, replace empties the target first.
func TestFileArchiveOverwrite(t *testing.T) {
	dump := dumpBytes(t)
	stats := fileBackup(t, t.TempDir(), "b.dump.zst", dump, BackupOptions{})
	seed := func(t *testing.T) string {
		dst := t.TempDir()
		writeTestFile(t, filepath.Join(dst, "dump"), "old dump")
		writeTestFile(t, filepath.Join(dst, "other.sql"), "kept?")
		if err := os.Mkdir(filepath.Join(dst, lostFound), 0o700); err != nil {
			t.Fatal(err)
		}
		return dst
	}
	restore := func(dst string, mode Overwrite) (*RestoreStats, error) {
		return Restore(context.Background(), RestoreOptions{Archive: stats.Archive, Target: dst, SHA256: stats.SHA256, Format: FormatFile, Overwrite: mode})
	}

	dst := seed(t)
	_, err := restore(dst, OverwriteRefuse)
	wantReason(t, err, TargetNotEmpty)
	if b, _ := os.ReadFile(filepath.Join(dst, "dump")); string(b) != "old dump" || len(listDir(t, dst)) != 3 {
		t.Errorf("refuse changed the target: %v, dump %q", listDir(t, dst), b)
	}

	empty := t.TempDir()
	if err := os.Mkdir(filepath.Join(empty, lostFound), 0o700); err != nil {
		t.Fatal(err)
	}
	if _, err := restore(empty, OverwriteRefuse); err != nil {
		t.Errorf("refuse into a target holding only lost+found: %v", err)
	}

	dst = seed(t)
	if _, err := restore(dst, OverwriteMerge); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(dst, "dump")); !bytes.Equal(b, dump) {
		t.Error("merge did not replace the dump")
	}
	if names := listDir(t, dst); !slices.Equal(names, []string{"dump", lostFound, "other.sql"}) {
		t.Errorf("merge left %v", names)
	}

	dst = seed(t)
	rs, err := restore(dst, OverwriteReplace)
	if err != nil {
		t.Fatal(err)
	}
	if names := listDir(t, dst); !slices.Equal(names, []string{"dump", lostFound}) || rs.Removed != 2 {
		t.Errorf("replace left %v, removed %d", names, rs.Removed)
	}
	if b, _ := os.ReadFile(filepath.Join(dst, "dump")); !bytes.Equal(b, dump) {
		t.Error("replace did not write the dump")
	}
}

// A file archive that does not match its checksum, or is not told apart from a tar, writes
// nothing: not even the temporary file stays.
func TestFileArchiveFailuresWriteNothing(t *testing.T) {
	dump := dumpBytes(t)
	out := t.TempDir()
	stats := fileBackup(t, out, "b.dump.zst", dump, BackupOptions{})
	b, err := os.ReadFile(stats.Archive)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0x40
	tampered := filepath.Join(out, "t.dump.zst")
	if err := os.WriteFile(tampered, b, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		opts   RestoreOptions
		reason Reason
	}{
		{"checksum mismatch", RestoreOptions{Archive: tampered, SHA256: stats.SHA256, Format: FormatFile, Overwrite: OverwriteReplace}, ChecksumMismatch},
		{"wrong file name", RestoreOptions{Archive: stats.Archive, SHA256: stats.SHA256, Format: FormatFile, FileName: "db.sql"}, InvalidArgument},
		{"read as a tar", RestoreOptions{Archive: stats.Archive, SHA256: stats.SHA256}, CorruptArchive},
		{"file name without format", RestoreOptions{Archive: stats.Archive, SHA256: stats.SHA256, FileName: "dump"}, InvalidArgument},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dst := t.TempDir()
			writeTestFile(t, filepath.Join(dst, "kept"), "x")
			tc.opts.Target = dst
			if tc.opts.Overwrite == "" {
				tc.opts.Overwrite = OverwriteMerge
			}
			_, err := Restore(context.Background(), tc.opts)
			wantReason(t, err, tc.reason)
			if names := listDir(t, dst); !slices.Equal(names, []string{"kept"}) {
				t.Errorf("a failed restore left %v", names)
			}
		})
	}
	src, err := OpenFile(tampered)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	_, err = VerifyFileArchive(context.Background(), src, stats.SHA256, nil, "dump")
	wantReason(t, err, ChecksumMismatch)
}

// A failing BeforeCommit, a command that wrote nothing, or a broken stream leaves no archive.
func TestFileArchiveBackupFailuresLeaveNothing(t *testing.T) {
	for _, tc := range []struct {
		name   string
		stream io.Reader
		before func() error
		reason Reason
	}{
		{"BeforeCommit fails", bytes.NewReader([]byte("PGDMP")), func() error {
			return &Error{Reason: StreamFailed, Msg: "pg_dump exited with code 1"}
		}, StreamFailed},
		{"empty output", bytes.NewReader(nil), nil, StreamFailed},
		{"broken stream", io.MultiReader(bytes.NewReader([]byte("PGDMP")), errReader{errors.New("connection reset")}), nil, StreamFailed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := t.TempDir()
			_, err := Backup(context.Background(), BackupOptions{Source: "db/p/c", Stream: tc.stream, Format: FormatFile,
				Output: filepath.Join(out, "b.dump.zst"), BeforeCommit: tc.before})
			wantReason(t, err, tc.reason)
			if names := listDir(t, out); len(names) != 0 {
				t.Errorf("a failed backup left %v", names)
			}
		})
	}
}

// Delete accepts a file archive's name when its manifest vouches for it, or when it is a name
// of the file name the caller (the controller, from the Backup) gives: the cleanup of a Backup
// whose archive was never written removes its leftovers too. Anything else is refused.
func TestDeleteFileArchive(t *testing.T) {
	out := t.TempDir()
	stats := fileBackup(t, out, "b.dump.zst", []byte("PGDMP"), BackupOptions{})
	ds, err := Delete(stats.Archive, "")
	if err != nil || len(ds.Removed) != 3 || ds.AlreadyDeleted {
		t.Fatalf("Delete: %+v, %v", ds, err)
	}
	_, err = Delete(stats.Archive, "")
	wantReason(t, err, InvalidArgument) // its manifest went with it: nothing vouches for the name
	leftover := filepath.Join(out, tempPrefix(stats.Archive)+"1234")
	writeTestFile(t, leftover, "half a dump")
	ds, err = Delete(stats.Archive, "dump")
	if err != nil || !ds.AlreadyDeleted || len(ds.Removed) != 1 {
		t.Fatalf("Delete with its file name: %+v, %v; want the leftover removed", ds, err)
	}
	if _, err := os.Stat(leftover); !os.IsNotExist(err) {
		t.Errorf("the leftover of an interrupted write is still there: %v", err)
	}
	unrelated := filepath.Join(out, "postgresql.conf")
	writeTestFile(t, unrelated, "shared_buffers = 1GB")
	for _, fileName := range []string{"", "dump"} {
		_, err = Delete(unrelated, fileName)
		wantReason(t, err, InvalidArgument)
	}
	if _, err := os.Stat(unrelated); err != nil {
		t.Errorf("Delete removed a file that is not an archive: %v", err)
	}
}

type errReader struct{ err error }

func (r errReader) Read([]byte) (int, error) { return 0, r.err }

func writeTestFile(t *testing.T, p, content string) {
	t.Helper()
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}
