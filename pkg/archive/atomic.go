package archive

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// archivePerm keeps archives private to the agent's user and group: they hold
// a full copy of the volume.
const archivePerm = 0o640

// tempPrefix marks files that are still being written. They are hidden (dot
// files) and never carry a final archive name, so listing the storage never
// shows an incomplete archive as a finished one.
func tempPrefix(final string) string {
	return "." + filepath.Base(final) + ".tmp-"
}

// atomicFile is a file written under a temporary name in the directory of its
// final name, which it only receives once it is complete and durable.
type atomicFile struct {
	f       *os.File
	final   string
	written int64
	wb      writeback
}

// writebackChunk is how far a file being written may run ahead of its
// write-back (see writeback).
const writebackChunk = 8 << 20

func createAtomic(final string) (*atomicFile, error) {
	f, err := os.CreateTemp(filepath.Dir(final), tempPrefix(final)+"*")
	if err != nil {
		return nil, err
	}
	if err := f.Chmod(archivePerm); err != nil {
		f.Close()
		os.Remove(f.Name())
		return nil, err
	}
	return &atomicFile{f: f, final: final, wb: writeback{f: f}}, nil
}

func (a *atomicFile) Write(p []byte) (int, error) {
	n, err := a.f.Write(p)
	a.written += int64(n)
	if err == nil {
		err = a.wb.wrote(a.written) // without drop, never fails
	}
	return n, err
}

// sync makes the temporary file durable and closes it.
func (a *atomicFile) sync() error {
	if err := a.f.Sync(); err != nil {
		a.f.Close()
		return err
	}
	return a.f.Close()
}

// commit gives the synced file its final name, refusing to replace an
// existing file, and makes the rename durable.
func (a *atomicFile) commit() error {
	if err := renameNoReplace(a.f.Name(), a.final); err != nil {
		return err
	}
	return syncDir(filepath.Dir(a.final))
}

// abort removes the temporary file; it is safe to call after commit.
func (a *atomicFile) abort() {
	a.f.Close()
	os.Remove(a.f.Name())
}

// errExists reports that a file already holds the final name.
var errExists = errors.New("file exists")

// renameNoReplace renames atomically unless newpath exists. File systems
// without renameat2 (some network file systems) fall back to a check and a
// plain rename, which is only racy against a concurrent writer of the same
// archive name.
func renameNoReplace(oldpath, newpath string) error {
	err := unix.Renameat2(unix.AT_FDCWD, oldpath, unix.AT_FDCWD, newpath, unix.RENAME_NOREPLACE)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, unix.EEXIST):
		return errExists
	case errors.Is(err, unix.EINVAL), errors.Is(err, unix.ENOSYS), errors.Is(err, unix.EOPNOTSUPP):
		if _, serr := os.Lstat(newpath); serr == nil {
			return errExists
		}
		return os.Rename(oldpath, newpath)
	}
	return &os.LinkError{Op: "rename", Old: oldpath, New: newpath, Err: err}
}

// writeFileAtomic replaces name with data durably: temporary file, fsync,
// rename. The caller syncs the directory.
func writeFileAtomic(name string, data []byte) error {
	f, err := os.CreateTemp(filepath.Dir(name), tempPrefix(name)+"*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	fail := func(err error) error {
		f.Close()
		os.Remove(tmp)
		return err
	}
	if err := f.Chmod(archivePerm); err != nil {
		return fail(err)
	}
	if _, err := f.Write(data); err != nil {
		return fail(err)
	}
	if err := f.Sync(); err != nil {
		return fail(err)
	}
	if err := f.Close(); err != nil {
		os.Remove(tmp)
		return err
	}
	if err := os.Rename(tmp, name); err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("syncing directory %s: %w", dir, err)
	}
	return nil
}

// removeTemps deletes leftovers of interrupted writes of final (for example
// after the Pod was killed) and reports how many it removed.
func removeTemps(final string) (int, error) {
	dir := filepath.Dir(final)
	entries, err := os.ReadDir(dir)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return 0, nil
		}
		return 0, err
	}
	prefixes := []string{tempPrefix(final), tempPrefix(checksumName(final)), tempPrefix(manifestName(final))}
	n := 0
	for _, e := range entries {
		for _, p := range prefixes {
			if strings.HasPrefix(e.Name(), p) && !e.IsDir() {
				if err := os.Remove(filepath.Join(dir, e.Name())); err != nil && !errors.Is(err, os.ErrNotExist) {
					return n, err
				}
				n++
				break
			}
		}
	}
	return n, nil
}
