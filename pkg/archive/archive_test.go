package archive

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func TestRoundTrip(t *testing.T) {
	for _, c := range Compressions {
		t.Run(string(c), func(t *testing.T) {
			src, out, dst := t.TempDir(), t.TempDir(), t.TempDir()
			makeTree(t, src)
			stats := backupTree(t, src, out, c)

			if stats.Compression != c || stats.Files != 11 || stats.Hardlinks != 2 || stats.Symlinks != 3 || stats.Skipped != 0 || stats.ChangedFiles != 0 {
				t.Errorf("unexpected stats: %+v", stats)
			}
			fi, err := os.Stat(stats.Archive)
			if err != nil || fi.Size() != stats.Size {
				t.Fatalf("archive size %v, stats say %d (%v)", fi, stats.Size, err)
			}
			sumLine, err := os.ReadFile(stats.ChecksumFile)
			if err != nil {
				t.Fatal(err)
			}
			if want := stats.SHA256 + "  backup" + c.Extension() + "\n"; string(sumLine) != want {
				t.Errorf("checksum file %q, want %q", sumLine, want)
			}
			var m Manifest
			mb, err := os.ReadFile(stats.ManifestFile)
			if err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal(mb, &m); err != nil {
				t.Fatal(err)
			}
			if m.SHA256 != stats.SHA256 || m.Files != stats.Files || m.Compression != c || m.ToolVersion != "test" || m.Archive != "backup"+c.Extension() {
				t.Errorf("manifest does not match the backup: %+v", m)
			}
			if names := listDir(t, out); len(names) != 3 {
				t.Errorf("output directory holds %v, want the archive and its two side files", names)
			}

			v, err := Verify(context.Background(), stats.Archive, stats.SHA256)
			if err != nil {
				t.Fatal(err)
			}
			if v.Files != stats.Files || v.Bytes != stats.SourceBytes || v.Directories != stats.Directories {
				t.Errorf("verify saw %+v, backup wrote %+v", v, stats)
			}

			r, err := Restore(context.Background(), RestoreOptions{Archive: stats.Archive, Target: dst, SHA256: stats.SHA256})
			if err != nil {
				t.Fatal(err)
			}
			if r.Files != stats.Files || r.Bytes != stats.SourceBytes || r.Hardlinks != 2 || r.Symlinks != 3 || r.OwnershipSkipped != 0 {
				t.Errorf("restore stats %+v, backup %+v", r, stats)
			}
			compareTrees(t, src, dst)
		})
	}
}

// TestPlainTarCanRestore proves the emergency path: GNU tar alone restores
// an archive identically.
func TestPlainTarCanRestore(t *testing.T) {
	for _, c := range []Compression{Zstd, Gzip, None} {
		t.Run(string(c), func(t *testing.T) {
			if _, err := exec.LookPath("tar"); err != nil {
				t.Skip("tar is not installed")
			}
			if c == Zstd {
				if _, err := exec.LookPath("zstd"); err != nil {
					t.Skip("zstd is not installed")
				}
			}
			src, out, dst := t.TempDir(), t.TempDir(), t.TempDir()
			makeTree(t, src)
			stats := backupTree(t, src, out, c)
			cmd := exec.Command("tar", "--numeric-owner", "-xpf", stats.Archive, "-C", dst)
			if b, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("tar: %v\n%s", err, b)
			}
			cmd = exec.Command("sha256sum", "-c", filepath.Base(stats.ChecksumFile))
			cmd.Dir = out
			if b, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("sha256sum -c: %v\n%s", err, b)
			}
			compareTrees(t, src, dst)
		})
	}
}

func TestCorruptionIsDetected(t *testing.T) {
	src, out := t.TempDir(), t.TempDir()
	makeTree(t, src)
	stats := backupTree(t, src, out, Zstd)
	orig, err := os.ReadFile(stats.Archive)
	if err != nil {
		t.Fatal(err)
	}
	cases := map[string][]byte{
		"flipped byte": func() []byte {
			b := append([]byte(nil), orig...)
			b[len(b)/2] ^= 0x40
			return b
		}(),
		"truncated": orig[:len(orig)*2/3],
		"empty":     {},
	}
	for name, data := range cases {
		t.Run(name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "bad.tar.zst")
			if err := os.WriteFile(p, data, 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := Verify(context.Background(), p, stats.SHA256)
			wantReason(t, err, ChecksumMismatch)
			var e *Error
			if errors.As(err, &e) && e.Err == nil && name != "empty" {
				t.Errorf("verify did not also report the parse error: %v", err)
			}

			dst := t.TempDir()
			_, err = Restore(context.Background(), RestoreOptions{Archive: p, Target: dst, SHA256: stats.SHA256})
			wantReason(t, err, ChecksumMismatch)
			if names := listDir(t, dst); len(names) != 0 {
				t.Errorf("restore of a corrupt archive wrote %v", names)
			}

			// Recorded with the corruption already in: the checksum
			// matches, the parse must still fail.
			if name != "empty" {
				_, err = Verify(context.Background(), p, sha256Hex(data))
				wantReason(t, err, CorruptArchive)
			}
		})
	}
}

func TestRestoreErrors(t *testing.T) {
	src, out := t.TempDir(), t.TempDir()
	makeTree(t, src)
	stats := backupTree(t, src, out, Gzip)
	ctx := context.Background()

	_, err := Restore(ctx, RestoreOptions{Archive: filepath.Join(out, "missing.tar.gz"), Target: t.TempDir(), SHA256: stats.SHA256})
	wantReason(t, err, ArchiveNotFound)
	_, err = Restore(ctx, RestoreOptions{Archive: stats.Archive, Target: filepath.Join(out, "no-such-dir"), SHA256: stats.SHA256})
	wantReason(t, err, TargetNotFound)
	_, err = Restore(ctx, RestoreOptions{Archive: stats.Archive, Target: t.TempDir(), SHA256: "abc"})
	wantReason(t, err, InvalidArgument)
	_, err = Restore(ctx, RestoreOptions{Archive: stats.Archive, Target: t.TempDir(), SHA256: stats.SHA256, Overwrite: "sometimes"})
	wantReason(t, err, InvalidArgument)
	_, err = Verify(ctx, filepath.Join(out, "missing.tar.gz"), stats.SHA256)
	wantReason(t, err, ArchiveNotFound)
}

func TestOverwriteModes(t *testing.T) {
	src, out := t.TempDir(), t.TempDir()
	makeTree(t, src)
	stats := backupTree(t, src, out, Zstd)
	ctx := context.Background()

	// A target in a parent directory with a sibling, like volumes mounted
	// side by side: the sibling must never change.
	prepare := func(t *testing.T) (target, sibling string) {
		parent := t.TempDir()
		target, sibling = filepath.Join(parent, "target"), filepath.Join(parent, "sibling")
		for _, d := range []string{target, sibling, filepath.Join(target, "lost+found"), filepath.Join(target, "extra-dir")} {
			if err := os.Mkdir(d, 0o755); err != nil {
				t.Fatal(err)
			}
		}
		for p, data := range map[string]string{
			filepath.Join(target, "extra"):             "keep me?",
			filepath.Join(target, "plain.txt"):         "old content",
			filepath.Join(target, "extra-dir", "file"): "nested",
			filepath.Join(sibling, "precious"):         "untouchable",
		} {
			if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		return target, sibling
	}

	t.Run("refuse", func(t *testing.T) {
		target, sibling := prepare(t)
		before, sib := snapshot(t, target), snapshot(t, sibling)
		_, err := Restore(ctx, RestoreOptions{Archive: stats.Archive, Target: target, SHA256: stats.SHA256})
		wantReason(t, err, TargetNotEmpty)
		assertSame(t, before, snapshot(t, target))
		assertSame(t, sib, snapshot(t, sibling))
	})
	t.Run("lost+found alone is empty", func(t *testing.T) {
		target := t.TempDir()
		if err := os.Mkdir(filepath.Join(target, "lost+found"), 0o700); err != nil {
			t.Fatal(err)
		}
		if _, err := Restore(ctx, RestoreOptions{Archive: stats.Archive, Target: target, SHA256: stats.SHA256}); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("merge", func(t *testing.T) {
		target, sibling := prepare(t)
		sib := snapshot(t, sibling)
		if _, err := Restore(ctx, RestoreOptions{Archive: stats.Archive, Target: target, SHA256: stats.SHA256, Overwrite: OverwriteMerge}); err != nil {
			t.Fatal(err)
		}
		if b, _ := os.ReadFile(filepath.Join(target, "plain.txt")); string(b) != "hello\n" {
			t.Errorf("merge did not overwrite plain.txt: %q", b)
		}
		for _, keep := range []string{"extra", "extra-dir/file", "lost+found"} {
			if _, err := os.Lstat(filepath.Join(target, keep)); err != nil {
				t.Errorf("merge removed %s: %v", keep, err)
			}
		}
		assertSame(t, sib, snapshot(t, sibling))
	})
	t.Run("replace", func(t *testing.T) {
		target, sibling := prepare(t)
		sib := snapshot(t, sibling)
		var before syscall.Stat_t
		if err := syscall.Stat(target, &before); err != nil {
			t.Fatal(err)
		}
		r, err := Restore(ctx, RestoreOptions{Archive: stats.Archive, Target: target, SHA256: stats.SHA256, Overwrite: OverwriteReplace})
		if err != nil {
			t.Fatal(err)
		}
		if r.Removed != 3 {
			t.Errorf("removed %d entries, want 3", r.Removed)
		}
		var after syscall.Stat_t
		if err := syscall.Stat(target, &after); err != nil {
			t.Fatal(err)
		}
		if before.Ino != after.Ino {
			t.Error("replace recreated the target directory instead of emptying it")
		}
		got := snapshot(t, target)
		if _, ok := got["lost+found"]; !ok {
			t.Error("replace removed lost+found")
		}
		delete(got, "lost+found")
		compareSnapshots(t, snapshot(t, src), got)
		assertSame(t, sib, snapshot(t, sibling))
	})
}

func assertSame(t testing.TB, want, got map[string]entryInfo) {
	t.Helper()
	if len(want) != len(got) {
		t.Errorf("directory changed: %d entries, want %d", len(got), len(want))
	}
	for rel, w := range want {
		if g, ok := got[rel]; !ok || g != w {
			t.Errorf("%s changed or disappeared", rel)
		}
	}
}

func TestBackupLeavesNothingOnFailure(t *testing.T) {
	src := t.TempDir()
	makeTree(t, src)
	for _, c := range Compressions {
		t.Run(string(c), func(t *testing.T) {
			out := t.TempDir()
			_, err := Backup(context.Background(), BackupOptions{
				Source: src, Output: filepath.Join(out, "b"+c.Extension()),
				wrapOutput: func(w io.Writer) io.Writer { return &failingWriter{w: w, limit: 1024} },
			})
			wantReason(t, err, WriteFailed)
			if !errors.Is(err, errDiskFull) {
				t.Errorf("error does not carry the cause: %v", err)
			}
			if names := listDir(t, out); len(names) != 0 {
				t.Errorf("a failed backup left %v", names)
			}
		})
	}
	t.Run("canceled", func(t *testing.T) {
		out := t.TempDir()
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		_, err := Backup(ctx, BackupOptions{Source: src, Output: filepath.Join(out, "b.tar.zst")})
		wantReason(t, err, Canceled)
		if names := listDir(t, out); len(names) != 0 {
			t.Errorf("a canceled backup left %v", names)
		}
	})
	t.Run("unreadable directory", func(t *testing.T) {
		src, out := t.TempDir(), t.TempDir()
		makeTree(t, src)
		// Root reads anything whatever its mode, so the read error comes from
		// a directory that turns into a file between its stat and its listing.
		_, err := Backup(context.Background(), BackupOptions{
			Source: src, Output: filepath.Join(out, "b.tar.zst"),
			beforeList: func(rel string) {
				if rel == "unicodé" {
					os.RemoveAll(filepath.Join(src, rel))
					os.WriteFile(filepath.Join(src, rel), nil, 0o644)
				}
			},
		})
		wantReason(t, err, ReadFailed)
		if names := listDir(t, out); len(names) != 0 {
			t.Errorf("a failed backup left %v", names)
		}
	})
	t.Run("permission denied", func(t *testing.T) {
		if isRoot {
			t.Skip("root reads files whatever their mode")
		}
		src, out := t.TempDir(), t.TempDir()
		p := filepath.Join(src, "locked")
		if err := os.WriteFile(p, []byte("x"), 0); err != nil {
			t.Fatal(err)
		}
		_, err := Backup(context.Background(), BackupOptions{Source: src, Output: filepath.Join(out, "b.tar.zst")})
		wantReason(t, err, ReadFailed)
		if names := listDir(t, out); len(names) != 0 {
			t.Errorf("a failed backup left %v", names)
		}
	})
}

func TestBackupArguments(t *testing.T) {
	src, out := t.TempDir(), t.TempDir()
	ctx := context.Background()
	cases := []struct {
		name   string
		opts   BackupOptions
		reason Reason
	}{
		{"no source", BackupOptions{Output: filepath.Join(out, "a.tar.zst")}, InvalidArgument},
		{"no output", BackupOptions{Source: src}, InvalidArgument},
		{"bad extension", BackupOptions{Source: src, Output: filepath.Join(out, "a.zip")}, InvalidArgument},
		{"extension mismatch", BackupOptions{Source: src, Output: filepath.Join(out, "a.tar.gz"), Compression: Zstd}, InvalidArgument},
		{"missing source", BackupOptions{Source: filepath.Join(src, "nope"), Output: filepath.Join(out, "a.tar.zst")}, SourceNotFound},
		{"missing output dir", BackupOptions{Source: src, Output: filepath.Join(out, "nope", "a.tar.zst")}, WriteFailed},
		{"output inside source", BackupOptions{Source: src, Output: filepath.Join(src, "a.tar.zst")}, InvalidArgument},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Backup(ctx, tc.opts)
			wantReason(t, err, tc.reason)
		})
	}
	t.Run("output exists", func(t *testing.T) {
		p := filepath.Join(out, "exists.tar.zst")
		if err := os.WriteFile(p, []byte("an earlier backup"), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := Backup(ctx, BackupOptions{Source: src, Output: p})
		wantReason(t, err, OutputExists)
		if b, _ := os.ReadFile(p); string(b) != "an earlier backup" {
			t.Error("existing archive was modified")
		}
	})
}

func TestBackupReportsLiveChanges(t *testing.T) {
	src, out := t.TempDir(), t.TempDir()
	for _, n := range []string{"a-grows", "b-shrinks", "c-vanishes", "d-steady", "e-touched"} {
		if err := os.WriteFile(filepath.Join(src, n), []byte(strings.Repeat(n, 1000)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := syscall.Mkfifo(filepath.Join(src, "fifo"), 0o644); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("unix", filepath.Join(src, "sock"))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()

	stats, err := Backup(context.Background(), BackupOptions{
		Source: src, Output: filepath.Join(out, "live.tar"), MaxChangedList: 2,
		beforeRead: func(rel string) {
			p := filepath.Join(src, rel)
			switch rel {
			case "a-grows":
				f, _ := os.OpenFile(p, os.O_APPEND|os.O_WRONLY, 0)
				f.WriteString("more data")
				f.Close()
				os.Remove(filepath.Join(src, "c-vanishes"))
			case "b-shrinks":
				os.Truncate(p, 10)
			case "e-touched":
				f, _ := os.OpenFile(p, os.O_WRONLY, 0)
				f.WriteAt([]byte("E"), 0) // same size, new content and mtime
				f.Close()
				os.Chtimes(p, baseTime, baseTime)
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if stats.ChangedFiles != 3 || len(stats.ChangedFileList) != 2 || stats.ChangedFileList[0] != "a-grows" {
		t.Errorf("changed %d %v, want 3 with a bounded list of 2 starting with a-grows", stats.ChangedFiles, stats.ChangedFileList)
	}
	if stats.Vanished != 1 || stats.Skipped != 2 || stats.Files != 4 {
		t.Errorf("vanished %d skipped %d files %d, want 1, 2 (fifo, socket) and 4", stats.Vanished, stats.Skipped, stats.Files)
	}
	// The archive stays valid: the shrunk file keeps its announced size.
	dst := t.TempDir()
	if _, err := Restore(context.Background(), RestoreOptions{Archive: stats.Archive, Target: dst, SHA256: stats.SHA256}); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(filepath.Join(dst, "b-shrinks")); err != nil || fi.Size() != 9000 {
		t.Errorf("shrunk file restored as %v, %v; want its original 9000 bytes, zero padded", fi, err)
	}
	if b, _ := os.ReadFile(filepath.Join(dst, "a-grows")); len(b) != 7000 {
		t.Errorf("grown file restored with %d bytes, want the 7000 announced", len(b))
	}
}

func TestDelete(t *testing.T) {
	src, out := t.TempDir(), t.TempDir()
	makeTree(t, src)
	stats := backupTree(t, src, out, None)
	leftover := filepath.Join(out, tempPrefix(stats.Archive)+"123")
	if err := os.WriteFile(leftover, []byte("interrupted"), 0o600); err != nil {
		t.Fatal(err)
	}
	unrelated := filepath.Join(out, "other.tar")
	if err := os.WriteFile(unrelated, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	d, err := Delete(stats.Archive, "")
	if err != nil {
		t.Fatal(err)
	}
	if d.AlreadyDeleted || len(d.Removed) != 4 {
		t.Errorf("first delete: %+v", d)
	}
	if names := listDir(t, out); len(names) != 1 || names[0] != "other.tar" {
		t.Errorf("after delete the directory holds %v", names)
	}
	d, err = Delete(stats.Archive, "")
	if err != nil || !d.AlreadyDeleted || len(d.Removed) != 0 {
		t.Errorf("second delete: %+v, %v", d, err)
	}
	_, err = Delete(filepath.Join(out, "notes.txt"), "")
	wantReason(t, err, InvalidArgument)
	_, err = Delete(filepath.Join(out, "unmounted", "x.tar.zst"), "")
	wantReason(t, err, ArchiveNotFound)
}

// TestConstantMemory keeps the streaming promise honest: archiving a file far
// larger than every buffer must not grow the heap with it.
func TestConstantMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("writes 64 MiB")
	}
	src, out := t.TempDir(), t.TempDir()
	f, err := os.Create(filepath.Join(src, "large"))
	if err != nil {
		t.Fatal(err)
	}
	w := bufio.NewWriter(f)
	block := []byte(strings.Repeat("x", 4096))
	for i := 0; i < (64<<20)/len(block); i++ {
		block[i%len(block)] = byte(i)
		w.Write(block)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	f.Close()
	done, result := make(chan struct{}), make(chan uint64)
	go func() { result <- samplePeakHeap(done) }()
	stats := backupTree(t, src, out, Zstd)
	close(done)
	peak := <-result
	if stats.SourceBytes != 64<<20 {
		t.Fatalf("archived %d bytes", stats.SourceBytes)
	}
	if peak > 48<<20 {
		t.Errorf("heap peaked at %d MiB while archiving 64 MiB", peak>>20)
	}
}

// TestSparseArchiveStaysSparse restores a GNU tar sparse archive: holes must
// be skipped, not written, so a small archive cannot fill the target.
func TestSparseArchiveStaysSparse(t *testing.T) {
	if _, err := exec.LookPath("tar"); err != nil {
		t.Skip("tar is not installed")
	}
	src, out, dst := t.TempDir(), t.TempDir(), t.TempDir()
	p := filepath.Join(src, "sparse")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteAt([]byte("start"), 0)
	f.WriteAt([]byte("middle"), 1<<30)
	f.Truncate(4 << 30)
	f.Close()
	for _, format := range []string{"gnu", "posix"} {
		t.Run(format, func(t *testing.T) {
			archivePath := filepath.Join(out, format+".tar")
			cmd := exec.Command("tar", "--sparse", "--format="+format, "-cf", archivePath, "-C", src, "sparse")
			if b, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("tar: %v\n%s", err, b)
			}
			data, err := os.ReadFile(archivePath)
			if err != nil {
				t.Fatal(err)
			}
			target := filepath.Join(dst, format)
			os.Mkdir(target, 0o755)
			if _, err := Restore(context.Background(), RestoreOptions{Archive: archivePath, Target: target, SHA256: sha256Hex(data)}); err != nil {
				t.Fatal(err)
			}
			var st syscall.Stat_t
			if err := syscall.Stat(filepath.Join(target, "sparse"), &st); err != nil {
				t.Fatal(err)
			}
			if st.Size != 4<<30 || st.Blocks*512 > 8<<20 {
				t.Errorf("restored size %d using %d bytes on disk; want 4 GiB using almost none", st.Size, st.Blocks*512)
			}
			rf, _ := os.Open(filepath.Join(target, "sparse"))
			defer rf.Close()
			buf := make([]byte, 6)
			rf.ReadAt(buf, 1<<30)
			if string(buf) != "middle" {
				t.Errorf("data after the hole is %q", buf)
			}
		})
	}
}
