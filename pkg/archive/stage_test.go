package archive

import (
	"context"
	"os"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"testing"
)

// holdHash makes each restore's hash wait until the restore first needs its
// verdict, so that everything the budgets allow is staged. seen, if set,
// runs at that moment with the number of staged files.
func holdHash(t testing.TB, seen func(stagedFiles int)) {
	// One token per verdict needed: a hash that starts late must not miss its release.
	tokens := make(chan struct{}, 1000)
	testHookHash = func() { <-tokens }
	testHookVerify = func(n int) {
		if seen != nil {
			seen(n)
		}
		tokens <- struct{}{}
	}
	t.Cleanup(func() {
		testHookHash, testHookVerify = func() {}, func(int) {}
		close(tokens) // frees the hash of a restore that never needed it
	})
}

// setBudget sets a staging budget for one test.
func setBudget(t testing.TB, budget *int, v int) {
	old := *budget
	*budget = v
	t.Cleanup(func() { *budget = old })
}

// stagedRestore restores an archive of makeTree's tree into a fresh target
// with the hash held back, and returns the source, the target, the restore's
// result and the number of files staged, checking that the target was still
// empty when the hash was needed.
func stagedRestore(t *testing.T, sha256 func(real string) string) (src, dst string, stats *RestoreStats, staged int, err error) {
	t.Helper()
	src, out, dst := t.TempDir(), t.TempDir(), t.TempDir()
	makeTree(t, src)
	b := backupTree(t, src, out, Zstd)
	staged = -1
	holdHash(t, func(n int) {
		staged = n
		if names := listDir(t, dst); len(names) != 0 {
			t.Errorf("before the archive was verified the target holds %v", names)
		}
	})
	stats, err = Restore(context.Background(), RestoreOptions{Archive: b.Archive, Target: dst, SHA256: sha256(b.SHA256)})
	return src, dst, stats, staged, err
}

func TestStagedRestoreShowsNothingBeforeTheHashMatches(t *testing.T) {
	src, dst, stats, staged, err := stagedRestore(t, func(real string) string { return real })
	if err != nil {
		t.Fatal(err)
	}
	if staged != int(stats.Files) {
		t.Errorf("%d files staged while the hash ran, want all %d", staged, stats.Files)
	}
	compareTrees(t, src, dst)
}

func TestStagedRestoreOfAMismatchLeavesTheTargetEmpty(t *testing.T) {
	other := sha256Hex([]byte("another archive"))
	_, dst, _, staged, err := stagedRestore(t, func(string) string { return other })
	wantReason(t, err, ChecksumMismatch)
	if staged <= 0 {
		t.Errorf("%d files staged: the mismatch was found before anything was staged, so this test proves nothing", staged)
	}
	if names := listDir(t, dst); len(names) != 0 {
		t.Errorf("after a mismatch the target holds %v", names)
	}
}

func TestStagingBudgets(t *testing.T) {
	for _, tc := range []struct {
		name             string
		files, entries   int
		wantStagedAtMost int
	}{
		{"files", 3, 4096, 3},
		{"entries", 128, 4, 4},
		{"off", 128, 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			setBudget(t, &stageFilesMax, tc.files)
			setBudget(t, &stageEntriesMax, tc.entries)
			src, dst, _, staged, err := stagedRestore(t, func(real string) string { return real })
			if err != nil {
				t.Fatal(err)
			}
			if staged > tc.wantStagedAtMost {
				t.Errorf("%d files staged, over the budget of %d", staged, tc.wantStagedAtMost)
			}
			compareTrees(t, src, dst)
		})
	}
}

func TestRestoreWithoutUnnamedFiles(t *testing.T) {
	old := openUnnamedFile
	openUnnamedFile = func(dir *os.File, name string) (*os.File, error) {
		return nil, &os.PathError{Op: "open unnamed", Path: name, Err: syscall.EOPNOTSUPP}
	}
	t.Cleanup(func() { openUnnamedFile = old })
	src, dst, _, staged, err := stagedRestore(t, func(real string) string { return real })
	if err != nil {
		t.Fatal(err)
	}
	if staged != 0 {
		t.Errorf("%d files staged on a file system without unnamed files", staged)
	}
	compareTrees(t, src, dst)
}

func TestStagingOnlyIntoAnEmptyTarget(t *testing.T) {
	src, out, dst := t.TempDir(), t.TempDir(), t.TempDir()
	makeTree(t, src)
	b := backupTree(t, src, out, Zstd)
	if err := os.WriteFile(filepath.Join(dst, "kept"), []byte("kept"), 0o600); err != nil {
		t.Fatal(err)
	}
	staged := -1
	holdHash(t, func(n int) { staged = n })
	if _, err := Restore(context.Background(), RestoreOptions{Archive: b.Archive, Target: dst, SHA256: b.SHA256, Overwrite: OverwriteMerge}); err != nil {
		t.Fatal(err)
	}
	if staged != 0 {
		t.Errorf("%d files staged into a target that held data", staged)
	}
	want, got := snapshot(t, src), snapshot(t, dst)
	if _, ok := got["kept"]; !ok {
		t.Error("merge lost the target's own file")
	}
	// The target's own mtime is the merge's, not the archive's.
	delete(got, "kept")
	delete(got, ".")
	delete(want, ".")
	compareSnapshots(t, want, got)
}

// cancelAfter is a context cancelled from its n-th look on.
type cancelAfter struct {
	context.Context
	n atomic.Int32
}

func (c *cancelAfter) Err() error {
	if c.n.Add(-1) < 0 {
		return context.Canceled
	}
	return nil
}

func TestCancelledWhileStagingWritesNothing(t *testing.T) {
	src, out, dst := t.TempDir(), t.TempDir(), t.TempDir()
	makeTree(t, src)
	b := backupTree(t, src, out, Zstd)
	holdHash(t, nil)
	ctx := &cancelAfter{Context: context.Background()}
	ctx.n.Store(5)
	_, err := Restore(ctx, RestoreOptions{Archive: b.Archive, Target: dst, SHA256: b.SHA256})
	wantReason(t, err, Canceled)
	if names := listDir(t, dst); len(names) != 0 {
		t.Errorf("a restore cancelled before its hash was known left %v in the target", names)
	}
}

func TestCorruptStreamWhileStagingWritesNothing(t *testing.T) {
	src, out, dst := t.TempDir(), t.TempDir(), t.TempDir()
	makeTree(t, src)
	b := backupTree(t, src, out, None)
	data, err := os.ReadFile(b.Archive)
	if err != nil {
		t.Fatal(err)
	}
	// Cut inside the last file's content: the checksum of the cut archive matches, its
	// stream does not end.
	cut := filepath.Join(out, "cut.tar")
	data = data[:len(data)-1024-512-100]
	if err := os.WriteFile(cut, data, 0o600); err != nil {
		t.Fatal(err)
	}
	staged := -1
	holdHash(t, func(n int) { staged = n })
	_, err = Restore(context.Background(), RestoreOptions{Archive: cut, Target: dst, SHA256: sha256Hex(data)})
	wantReason(t, err, CorruptArchive)
	if staged <= 0 {
		t.Errorf("%d files staged before the stream broke, so this test proves nothing", staged)
	}
	if names := listDir(t, dst); len(names) != 0 {
		t.Errorf("a stream that broke before its hash was known left %v in the target", names)
	}
}
