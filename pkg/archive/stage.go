package archive

import (
	"archive/tar"
	"context"
	"errors"
	"io"
	"os"
)

// Restoring a large archive of incompressible data takes about as long to
// hash as to write. Both must happen, and nothing may appear in the target
// before the hash matches, but they need different resources: the hash one
// core, the writing another core and the disk. So while the hash runs into an
// empty target, a restore stages: it writes the first regular files into
// unnamed files on the target's file system (O_TMPFILE), which no directory
// lists, and queues the other entries. Once the hash matches, the queue is
// replayed in archive order with the checks of a direct restore, and each
// staged file is linked under its name; the restore then goes on directly.
// If the hash does not match, or the restore stops, the unnamed files are
// closed and the kernel frees them: the target was never changed. A crash
// frees them too.

// Staging budgets; variables so tests can make them small.
var (
	// stageFilesMax bounds the unnamed files held open while the hash runs.
	stageFilesMax = 128
	// stageEntriesMax bounds the queued entries, which keep their headers.
	stageEntriesMax = 4096
)

// Test hooks: hashing starts after testHookHash returns, and testHookVerify
// sees how many files were staged when the restore first needs the hash.
var (
	testHookHash   = func() {}
	testHookVerify = func(stagedFiles int) {}
)

type hashResult struct {
	sum string
	err error
}

// hashInBackground hashes the whole archive beside the extraction, through a
// reader of its own.
func hashInBackground(ctx context.Context, src Source) <-chan hashResult {
	done := make(chan hashResult, 1)
	hook := testHookHash
	go func() {
		hook()
		r, err := src.Open(ctx)
		if err != nil {
			done <- hashResult{err: err}
			return
		}
		defer r.Close()
		sum, _, err := hashFile(r, make([]byte, copyBufferSize))
		done <- hashResult{sum, err}
	}()
	return done
}

// stagedEntry is an entry extracted before the hash was known: a regular
// file's content is in file, an unnamed file; other entries have none.
type stagedEntry struct {
	hdr  *tar.Header
	file *os.File
	size int64
}

// verification is a restore's pending hash, and what was staged meanwhile.
type verification struct {
	hashed  <-chan hashResult
	result  *hashResult
	want    string
	archive string
	// prepare enforces the overwrite mode once the archive is verified.
	prepare func() error

	// dir is the target, where unnamed files are made; nil when not staging.
	dir *os.File
	// full: no more staging, for the budget or the file system.
	full    bool
	entries []stagedEntry
	files   int
}

// startStaging lets v stage into the root's directory if its file system
// makes unnamed files and /proc can name them for linking; otherwise the
// restore waits for the hash, as without staging.
func (v *verification) startStaging(root *os.Root) {
	dir, err := root.Open(".")
	if err != nil {
		return
	}
	if !canLinkUnnamed(dir) {
		dir.Close()
		return
	}
	v.dir = dir
}

// hashDone reports whether the hash has finished, without waiting.
func (v *verification) hashDone() bool {
	if v.result != nil {
		return true
	}
	select {
	case r := <-v.hashed:
		v.result = &r
		return true
	default:
		return false
	}
}

// stage extracts hdr into the staging area; false means the entry must wait
// for the hash: staging is off or full, or the hash is already known.
func (v *verification) stage(x *extractor, hdr *tar.Header, r io.Reader) (bool, error) {
	if v.dir == nil || v.full || v.hashDone() || len(v.entries) >= stageEntriesMax {
		return false, nil
	}
	if !isRegular(hdr) {
		v.entries = append(v.entries, stagedEntry{hdr: hdr})
		return true, nil
	}
	if v.files >= stageFilesMax {
		return false, nil
	}
	f, err := openUnnamedFile(v.dir, hdr.Name)
	if err != nil {
		// The file system cannot, or no descriptor is left: the rest waits.
		v.full = true
		return false, nil
	}
	n, err := x.content(f, r, isSparse(hdr))
	if err != nil {
		f.Close()
		return false, err
	}
	v.entries = append(v.entries, stagedEntry{hdr: hdr, file: f, size: n})
	v.files++
	return true, nil
}

// checkHash waits for the hash and compares it with the expected one.
func (v *verification) checkHash() error {
	testHookVerify(v.files)
	if v.result == nil {
		r := <-v.hashed
		v.result = &r
	}
	if err := v.result.err; err != nil {
		var e *Error
		if errors.As(err, &e) {
			return e // the storage already said what failed
		}
		return newError(ReadFailed, err, "cannot read archive %s", v.archive)
	}
	if v.result.sum != v.want {
		return mismatch(v.archive, v.want, v.result.sum)
	}
	return nil
}

// release frees what was staged and not placed in the target.
func (v *verification) release() {
	for _, e := range v.entries {
		if e.file != nil {
			e.file.Close()
		}
	}
	v.entries = nil
	if v.dir != nil {
		v.dir.Close()
		v.dir = nil
	}
}

// verified ends x's verification: once the hash matches and the overwrite
// mode allows, it places the staged entries in archive order. From then on
// x writes directly.
func (x *extractor) verified() error {
	v := x.verify
	if v == nil {
		return nil
	}
	x.verify = nil
	defer v.release()
	if err := v.checkHash(); err != nil {
		return err
	}
	if err := v.prepare(); err != nil {
		return err
	}
	for i := range v.entries {
		e := &v.entries[i]
		if err := x.place(e.hdr, func(name string) error { return x.linkStaged(name, e) }); err != nil {
			return err
		}
	}
	return nil
}

// abandon ends a verification that err interrupted, without writing
// anything: a mismatching hash explains a bad stream better than err does.
func (x *extractor) abandon(err error) error {
	v := x.verify
	x.verify = nil
	defer v.release()
	if herr := v.checkHash(); herr != nil {
		return herr
	}
	return err
}

// linkStaged gives a staged file its name, then its owner, mode and times.
func (x *extractor) linkStaged(name string, e *stagedEntry) error {
	if err := x.retry(name, func() error { return linkUnnamed(x.root, e.file, name) }); err != nil {
		return err
	}
	delete(x.symlinks, name)
	x.stats.Bytes += e.size
	f := e.file
	e.file = nil
	return x.closeFile(f, e.hdr)
}
