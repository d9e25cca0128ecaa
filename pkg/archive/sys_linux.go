package archive

import (
	"os"
	"path"
	"strconv"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

func timespec(t time.Time) [2]unix.Timespec {
	return [2]unix.Timespec{
		{Nsec: unix.UTIME_OMIT}, // leave atime alone
		unix.NsecToTimespec(t.UnixNano()),
	}
}

// futimens sets an open file's mtime without resolving its path again.
func futimens(f *os.File, mtime time.Time) error {
	ts := timespec(mtime)
	_, _, errno := unix.Syscall6(unix.SYS_UTIMENSAT, f.Fd(), 0, uintptr(unsafe.Pointer(&ts[0])), 0, 0, 0)
	if errno != 0 {
		return &os.PathError{Op: "futimens", Path: f.Name(), Err: errno}
	}
	return nil
}

// lutimes sets a symlink's own mtime, relative to its parent opened through
// the root so the lookup cannot leave it.
func lutimes(root *os.Root, name string, mtime time.Time) error {
	dir, err := root.Open(path.Dir(name))
	if err != nil {
		return err
	}
	defer dir.Close()
	ts := timespec(mtime)
	if err := unix.UtimesNanoAt(int(dir.Fd()), path.Base(name), ts[:], unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return &os.PathError{Op: "lutimes", Path: name, Err: err}
	}
	return nil
}

// readSequentially tells the kernel that f is read from start to end, which
// doubles its read-ahead for files that are not in the page cache (the usual
// case for the archive of a restore).
func readSequentially(f *os.File) {
	_ = unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_SEQUENTIAL)
}

// writeback follows a file being written sequentially. Every
// writebackChunk bytes it asks the kernel to start writing the new chunk to
// disk (sync_file_range without waiting), so the storage works while the
// data is still being produced and the fsync or syncfs at the end only waits
// for the last chunk: measured with bench/archive.sh's data, the syncfs
// after restoring 1 GB went from 0.44 s to 0.005 s, and the fsync of a 1 GB
// archive takes 0.005 s. It is only a head start: the fsync or syncfs that follows is
// what makes the data durable and reports write errors (sync_file_range
// without its WAIT flags neither waits for nor consumes them).
//
// With drop (restore), it also waits until the chunk before is on disk,
// normally long done by then, and drops those clean pages from the page
// cache: the next chunks reuse them instead of fresh pages, which was
// measured to halve the time of restoring 1 GB of incompressible data from
// gzip (the kernel time of writing fresh pages varies a lot on virtual
// machines), and a restore no longer fills the node's page cache, and the
// Job's memory cgroup, with a volume's worth of data that nothing reads
// soon. The backup keeps its archive cached like any other written file.
type writeback struct {
	f    *os.File
	drop bool
	// started bytes were handed to write-back, dropped ones left the cache.
	started, dropped int64
}

// wrote reports that the file now holds size bytes. An error is a failed
// write-back: a waiting sync_file_range consumes the error, so the final
// fsync or syncfs would not report it again for this file.
func (w *writeback) wrote(size int64) error {
	if size-w.started < writebackChunk {
		return nil
	}
	if w.drop && w.started > w.dropped {
		fd := int(w.f.Fd())
		if err := unix.SyncFileRange(fd, w.dropped, w.started-w.dropped,
			unix.SYNC_FILE_RANGE_WAIT_BEFORE|unix.SYNC_FILE_RANGE_WRITE|unix.SYNC_FILE_RANGE_WAIT_AFTER); err != nil {
			return &os.PathError{Op: "sync_file_range", Path: w.f.Name(), Err: err}
		}
		_ = unix.Fadvise(fd, w.dropped, w.started-w.dropped, unix.FADV_DONTNEED)
		w.dropped = w.started
	}
	w.finish(size)
	return nil
}

// finish starts write-back of everything not handed to it yet.
func (w *writeback) finish(size int64) {
	if size > w.started {
		_ = unix.SyncFileRange(int(w.f.Fd()), w.started, size-w.started, unix.SYNC_FILE_RANGE_WRITE)
		w.started = size
	}
}

// syncRoot flushes the target's file system once, instead of an fsync per
// restored file.
func syncRoot(root *os.Root) error {
	d, err := root.Open(".")
	if err != nil {
		return err
	}
	defer d.Close()
	return unix.Syncfs(int(d.Fd()))
}

// sameFile reports whether two stats of one open file show no modification
// in between: same size, mtime and ctime.
func sameFile(a, b os.FileInfo) bool {
	sa, ok1 := a.Sys().(*syscall.Stat_t)
	sb, ok2 := b.Sys().(*syscall.Stat_t)
	if !ok1 || !ok2 {
		return false
	}
	return a.Size() == b.Size() && sa.Mtim == sb.Mtim && sa.Ctim == sb.Ctim
}

// openUnnamedFile makes a file without a name in dir (O_TMPFILE), to be
// linked into the target once the archive is verified or freed when closed.
// name is the entry it will hold, for messages. A variable so that tests can
// play a file system without O_TMPFILE.
var openUnnamedFile = func(dir *os.File, name string) (*os.File, error) {
	fd, err := unix.Openat(int(dir.Fd()), ".", unix.O_TMPFILE|unix.O_WRONLY|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, &os.PathError{Op: "open unnamed", Path: name, Err: err}
	}
	return os.NewFile(uintptr(fd), name), nil
}

// procFD names an open file through /proc, the way linkat(2) can link a
// file made with O_TMPFILE without CAP_DAC_READ_SEARCH.
func procFD(f *os.File) string { return "/proc/self/fd/" + strconv.Itoa(int(f.Fd())) }

// canLinkUnnamed reports whether /proc names open files, which linking an
// unnamed file needs; a container without /proc restores without staging.
func canLinkUnnamed(dir *os.File) bool {
	_, err := os.Stat(procFD(dir))
	return err == nil
}

// linkUnnamed links the unnamed file f as name in the root. The parent is
// opened through the root, so the link cannot land outside it, and linkat
// never follows a symlink at the new name: an existing entry is EEXIST.
func linkUnnamed(root *os.Root, f *os.File, name string) error {
	dir, err := root.Open(path.Dir(name))
	if err != nil {
		return err
	}
	defer dir.Close()
	if err := unix.Linkat(unix.AT_FDCWD, procFD(f), int(dir.Fd()), path.Base(name), unix.AT_SYMLINK_FOLLOW); err != nil {
		return &os.LinkError{Op: "link", Old: f.Name(), New: name, Err: err}
	}
	return nil
}
