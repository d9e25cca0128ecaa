package archive

import (
	"os"
	"path"
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
