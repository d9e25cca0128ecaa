package archive

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"syscall"
)

// restoredFilePerm is the mode of a file archive's restored content: a dump holds the data of a
// whole database, so only the owner and the group of the target (its fsGroup) may read it.
const restoredFilePerm = 0o640

// restoreFile restores the file archive src, in format, into root as opts.FileName. The content
// is written under a hidden temporary name in the target, flushed, and renamed to its final
// name only once the archive's hash matches: on any failure the temporary file is removed and
// the target is as it was (but for what --overwrite replace removed, which happens only after
// the hash matched). The file gets the owner and group of the target directory.
func restoreFile(ctx context.Context, opts RestoreOptions, src Source, root *os.Root, format Format, stats *RestoreStats, hashed <-chan hashResult) (*RestoreStats, error) {
	name := src.Name()
	v := &verification{hashed: hashed, want: opts.SHA256, archive: name}
	// Whatever fails, a mismatching hash explains it best, as for a tar (see abandon).
	fail := func(err error) (*RestoreStats, error) {
		if herr := v.checkHash(); herr != nil {
			return nil, herr
		}
		return nil, err
	}
	if opts.Overwrite == OverwriteRefuse {
		// Before anything is read: a target that must not be written needs no archive.
		if err := prepareTarget(root, opts.Target, OverwriteRefuse, stats, ""); err != nil {
			return nil, err
		}
	}
	tmp, f, err := createTempIn(root, opts.FileName)
	if err != nil {
		return fail(newError(WriteFailed, err, "cannot create a temporary file in restore target %s: check that it is writable by the agent", opts.Target))
	}
	placed := false
	defer func() {
		if !placed {
			f.Close()
			root.Remove(tmp)
		}
	}()

	r, err := src.Open(ctx)
	if err != nil {
		return fail(err)
	}
	defer r.Close()
	br, err := plaintext(name, r, opts.Identities)
	if err != nil {
		return fail(err)
	}
	defer br.Close()
	if br.encrypted {
		stats.Encryption = EncryptionAge
	}
	stats.Compression = format.Compression
	dec, err := newDecompressor(format.Compression, br)
	if err != nil {
		return fail(corruptFile(name, format.Compression, err))
	}
	defer dec.Close()
	n, err := copyData(f, &ctxReader{ctx: ctx, r: dec}, make([]byte, copyBufferSize), nil)
	if err != nil {
		var e *Error
		switch {
		case ctx.Err() != nil:
			return nil, newError(Canceled, ctx.Err(), "restore interrupted before the file was verified; nothing was written to the target")
		case errors.As(err, &e) && e.Reason == CorruptArchive:
			return fail(corruptFile(name, format.Compression, e.Err))
		case errors.As(err, &e):
			return fail(err)
		}
		return fail(newError(WriteFailed, err, "cannot write %s into restore target %s", opts.FileName, opts.Target))
	}
	if err := f.Sync(); err != nil {
		return fail(newError(WriteFailed, err, "cannot flush %s to disk in restore target %s", opts.FileName, opts.Target))
	}
	if err := v.checkHash(); err != nil {
		return nil, err
	}
	if err := src.Unchanged(); err != nil {
		return nil, err
	}
	if err := prepareTarget(root, opts.Target, opts.Overwrite, stats, tmp); err != nil {
		return nil, err
	}
	if err := ownLikeTarget(root, f, stats); err != nil {
		return nil, newError(WriteFailed, err, "cannot set the owner and mode of %s in restore target %s", opts.FileName, opts.Target)
	}
	if err := f.Close(); err != nil {
		return nil, newError(WriteFailed, err, "cannot close %s in restore target %s", opts.FileName, opts.Target)
	}
	if err := root.Rename(tmp, opts.FileName); err != nil {
		root.Remove(tmp)
		placed = true // removed, and f is closed
		return nil, newError(WriteFailed, err, "cannot put the verified %s in place in restore target %s: if a directory of that name is there, remove it or restore with --overwrite replace", opts.FileName, opts.Target)
	}
	placed = true
	stats.Files, stats.Bytes = 1, n
	if err := syncRoot(root); err != nil {
		return nil, newError(WriteFailed, err, "cannot flush the restored file in %s to disk", opts.Target)
	}
	return stats, nil
}

// createTempIn creates a hidden file named after fileName in root, for restoreFile to write
// before the archive is verified.
func createTempIn(root *os.Root, fileName string) (string, *os.File, error) {
	for {
		var b [8]byte
		rand.Read(b[:])
		tmp := "." + fileName + ".restore-" + hex.EncodeToString(b[:])
		f, err := root.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, 0o600)
		if errors.Is(err, os.ErrExist) {
			continue
		}
		return tmp, f, err
	}
}

// ownLikeTarget gives f the owner and group of root's directory, as the application that uses
// the volume reads it, and restoredFilePerm. A missing privilege is counted, not fatal, as for
// a tar's entries.
func ownLikeTarget(root *os.Root, f *os.File, stats *RestoreStats) error {
	fi, err := root.Stat(".")
	if err != nil {
		return err
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		if err := f.Chown(int(st.Uid), int(st.Gid)); err != nil {
			if !errors.Is(err, os.ErrPermission) && !errors.Is(err, syscall.EINVAL) {
				return err
			}
			stats.OwnershipSkipped++
		}
	}
	return f.Chmod(restoredFilePerm)
}

// ctxReader stops a long read between two of its reads once ctx is done.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c *ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// corruptFile is corrupt for a file archive, whose content is no tar.
func corruptFile(archive string, c Compression, err error) *Error {
	return newError(CorruptArchive, err, "archive %s matches its checksum but is not a valid %s-compressed file, so it was damaged before it was checksummed; restore another backup", archive, c)
}
