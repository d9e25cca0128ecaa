package archive

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"
)

var isRoot = os.Geteuid() == 0

// baseTime is a fixed mtime with nanoseconds, so round trips prove
// sub-second precision survives.
var baseTime = time.Date(2024, 2, 29, 13, 14, 15, 123456789, time.UTC)

// makeTree builds a source tree exercising everything the format promises to
// preserve.
func makeTree(t *testing.T, dir string) {
	t.Helper()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	write := func(rel string, data string, mode fs.FileMode) {
		t.Helper()
		p := filepath.Join(dir, rel)
		must(os.MkdirAll(filepath.Dir(p), 0o755))
		must(os.WriteFile(p, []byte(data), 0o600))
		must(os.Chmod(p, mode))
	}
	long := strings.Repeat("long-name-", 12) + "end.txt" // > 100 bytes
	deep := filepath.Join(strings.Split(strings.Repeat("deep/", 30), "/")...)
	write("plain.txt", "hello\n", 0o644)
	write("private", "secret", 0o600)
	write("empty", "", 0o644)
	write("script.sh", "#!/bin/sh\necho hi\n", 0o755)
	write("setuid-bin", "binary", 0o4755|fs.ModeSetuid)
	must(os.Chmod(filepath.Join(dir, "setuid-bin"), 0o755|fs.ModeSetuid|fs.ModeSetgid))
	write("unicodé/данные/文件.txt", "unicode", 0o644)
	write(long, "long", 0o644)
	write(filepath.Join(deep, long), "deep and long", 0o640)
	write("big.bin", strings.Repeat("0123456789abcdef", 200_000), 0o644) // 3.2 MB, several buffers
	must(os.Mkdir(filepath.Join(dir, "empty-dir"), 0o750))
	must(os.Mkdir(filepath.Join(dir, "sticky"), 0o755))
	must(os.Chmod(filepath.Join(dir, "sticky"), 0o777|fs.ModeSticky))
	must(os.Mkdir(filepath.Join(dir, "setgid-dir"), 0o755))
	must(os.Chmod(filepath.Join(dir, "setgid-dir"), 0o775|fs.ModeSetgid))
	write("setgid-dir/inside", "x", 0o644)
	must(os.Mkdir(filepath.Join(dir, "readonly-dir"), 0o755))
	write("readonly-dir/file", "in a read-only directory", 0o444)
	must(os.Chmod(filepath.Join(dir, "readonly-dir"), 0o555))
	must(os.Symlink("plain.txt", filepath.Join(dir, "link-rel")))
	must(os.Symlink("/nonexistent/absolute/target", filepath.Join(dir, "link-abs-dangling")))
	must(os.Symlink("unicodé", filepath.Join(dir, "link-dir")))
	must(os.Link(filepath.Join(dir, "plain.txt"), filepath.Join(dir, "hardlink-1")))
	must(os.Link(filepath.Join(dir, "plain.txt"), filepath.Join(dir, "empty-dir-sibling-hardlink")))
	if isRoot {
		must(os.Lchown(filepath.Join(dir, "private"), 1234, 5678))
		must(os.Lchown(filepath.Join(dir, "link-rel"), 4321, 8765))
		must(os.Lchown(filepath.Join(dir, "empty-dir"), 999, 999))
		// chown clears setuid; restore the mode afterwards like an installer would.
		must(os.Lchown(filepath.Join(dir, "setuid-bin"), 1000, 1000))
		must(os.Chmod(filepath.Join(dir, "setuid-bin"), 0o755|fs.ModeSetuid|fs.ModeSetgid))
	}
	// mtimes last, deepest first, so creating entries does not disturb them.
	var paths []string
	must(filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		paths = append(paths, p)
		return err
	}))
	sort.Sort(sort.Reverse(sort.StringSlice(paths)))
	for i, p := range paths {
		mt := baseTime.Add(time.Duration(i) * time.Hour)
		ts := []syscall.Timespec{syscall.NsecToTimespec(mt.UnixNano()), syscall.NsecToTimespec(mt.UnixNano())}
		if err := utimesNoFollow(p, ts); err != nil {
			t.Fatal(err)
		}
	}
}

// entryInfo is what a comparison looks at for one path.
type entryInfo struct {
	mode     fs.FileMode
	uid, gid uint32
	mtime    time.Time
	size     int64
	content  string // sha256 of regular files, target of symlinks
	ino      uint64
}

// snapshot records every entry below dir, keyed by relative path.
func snapshot(t testing.TB, dir string) map[string]entryInfo {
	t.Helper()
	out := map[string]entryInfo{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		st := fi.Sys().(*syscall.Stat_t)
		e := entryInfo{mode: fi.Mode(), uid: st.Uid, gid: st.Gid, mtime: fi.ModTime(), ino: st.Ino}
		switch {
		case fi.Mode().IsRegular():
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			sum := sha256.Sum256(b)
			e.content, e.size = hex.EncodeToString(sum[:]), fi.Size()
		case fi.Mode()&fs.ModeSymlink != 0:
			e.content, err = os.Readlink(p)
			if err != nil {
				return err
			}
		}
		rel, _ := filepath.Rel(dir, p)
		out[rel] = e
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// compareTrees fails unless got holds exactly want's entries with the same
// modes, owners, mtimes, contents, link targets and hard link groups.
func compareTrees(t *testing.T, want, got string) {
	t.Helper()
	compareSnapshots(t, snapshot(t, want), snapshot(t, got))
}

func compareSnapshots(t *testing.T, w, g map[string]entryInfo) {
	t.Helper()
	for rel, we := range w {
		ge, ok := g[rel]
		if !ok {
			t.Errorf("%s: missing after restore", rel)
			continue
		}
		if we.mode != ge.mode {
			t.Errorf("%s: mode %v, want %v", rel, ge.mode, we.mode)
		}
		if we.content != ge.content || we.size != ge.size {
			t.Errorf("%s: content differs", rel)
		}
		if !we.mtime.Equal(ge.mtime) {
			t.Errorf("%s: mtime %v, want %v", rel, ge.mtime, we.mtime)
		}
		if isRoot && (we.uid != ge.uid || we.gid != ge.gid) {
			t.Errorf("%s: owner %d:%d, want %d:%d", rel, ge.uid, ge.gid, we.uid, we.gid)
		}
	}
	for rel := range g {
		if _, ok := w[rel]; !ok {
			t.Errorf("%s: unexpected entry after restore", rel)
		}
	}
	// Hard link groups: entries sharing an inode in want share one in got.
	groups := map[uint64][]string{}
	for rel, we := range w {
		if we.mode.IsRegular() {
			groups[we.ino] = append(groups[we.ino], rel)
		}
	}
	for _, names := range groups {
		for _, n := range names[1:] {
			if g[n].ino != g[names[0]].ino {
				t.Errorf("%s and %s are no longer hard links of one file", names[0], n)
			}
		}
	}
}

// wantReason fails unless err carries reason.
func wantReason(t *testing.T, err error, reason Reason) {
	t.Helper()
	if err == nil {
		t.Fatalf("got success, want reason %s", reason)
	}
	if got := ReasonOf(err); got != reason {
		t.Fatalf("reason %s (%v), want %s", got, err, reason)
	}
}

// backupTree archives src into dir with the given compression.
func backupTree(t *testing.T, src, dir string, c Compression) *BackupStats {
	t.Helper()
	stats, err := Backup(context.Background(), BackupOptions{Source: src, Output: filepath.Join(dir, "backup"+c.Extension()), ToolVersion: "test"})
	if err != nil {
		t.Fatal(err)
	}
	return stats
}

// listDir returns the names in dir, sorted.
func listDir(t testing.TB, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

// failingWriter fails once more than limit bytes were written, like a full disk.
type failingWriter struct {
	w     interface{ Write([]byte) (int, error) }
	limit int
	n     int
}

var errDiskFull = errors.New("injected: no space left on device")

func (f *failingWriter) Write(p []byte) (int, error) {
	if f.n+len(p) > f.limit {
		return 0, errDiskFull
	}
	f.n += len(p)
	return f.w.Write(p)
}

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}
