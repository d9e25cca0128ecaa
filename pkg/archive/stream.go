package archive

import (
	"archive/tar"
	"errors"
	"io"
	"strings"
	"time"
)

// streamRootMode is the mode of the root directory of an archived tar stream that has no root
// entry of its own, as pg_basebackup's has not: a data directory that a program checks, as
// PostgreSQL does, must not be open to others, and a restore applies this mode to the target.
const streamRootMode = 0o700

// copyStream archives the tar stream r entry by entry, under the rules a volume's files follow:
// names stay inside the archive's root, devices and named pipes are skipped, and the counts are
// those of the files themselves. A stream without a root entry gets one (see streamRootMode),
// owned by the owner of its first entry.
func (w *walker) copyStream(r io.Reader) error {
	tr := tar.NewReader(r)
	rooted := false
	for {
		if err := w.ctx.Err(); err != nil {
			return newError(Canceled, err, "backup interrupted; nothing was left under the final name, run it again")
		}
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return newError(StreamFailed, err, "the command's output is not a complete tar stream (check that the command writes a tar archive to its standard output and nothing else, or use format file)")
		}
		name, why := checkName(hdr.Name)
		if why != "" {
			return newError(StreamFailed, nil, "the command's output holds the entry %q, which %s: a restore would write outside its target, so it was not archived", hdr.Name, why)
		}
		isRoot := name == "."
		if !rooted && !isRoot {
			root := &tar.Header{Typeflag: tar.TypeDir, Name: "./", Mode: streamRootMode, Uid: hdr.Uid, Gid: hdr.Gid, ModTime: time.Now(), Format: tar.FormatPAX}
			if err := w.tw.WriteHeader(root); err != nil {
				return writeError(err, "cannot write archive header for the root directory")
			}
			w.stats.Directories++
		}
		rooted = true
		if err := w.streamEntry(hdr, name, isRoot, tr); err != nil {
			return err
		}
	}
	if !rooted {
		return newError(StreamFailed, nil, "the command's output is an empty tar stream: there is nothing to back up")
	}
	// The rest is the stream's zero padding; reading it lets the command finish writing.
	if _, err := io.Copy(io.Discard, r); err != nil {
		return newError(StreamFailed, err, "reading the end of the command's output")
	}
	return nil
}

// streamEntry writes one entry of a tar stream with the fields a volume's entry has.
func (w *walker) streamEntry(in *tar.Header, name string, isRoot bool, r io.Reader) error {
	h := &tar.Header{
		Name:     name,
		Linkname: in.Linkname,
		Mode:     in.Mode & 0o7777,
		Uid:      in.Uid,
		Gid:      in.Gid,
		ModTime:  in.ModTime,
		Format:   tar.FormatPAX,
	}
	switch in.Typeflag {
	case tar.TypeDir:
		h.Typeflag = tar.TypeDir
		h.Name = strings.TrimSuffix(name, "/") + "/"
		if isRoot {
			h.Name = "./"
		}
		w.stats.Directories++
	case tar.TypeReg, tar.TypeRegA, tar.TypeGNUSparse:
		h.Typeflag, h.Size = tar.TypeReg, in.Size
	case tar.TypeSymlink:
		h.Typeflag = tar.TypeSymlink
		w.stats.Symlinks++
	case tar.TypeLink:
		link, why := checkName(in.Linkname)
		if why != "" {
			return newError(StreamFailed, nil, "the command's output holds a hard link %q to %q, which %s: it was not archived", in.Name, in.Linkname, why)
		}
		h.Typeflag, h.Linkname = tar.TypeLink, link
		w.stats.Hardlinks++
	default:
		// Devices, named pipes and sockets: skipped as on a volume.
		w.stats.Skipped++
		return nil
	}
	if err := w.tw.WriteHeader(h); err != nil {
		return writeError(err, "cannot write archive header for %s", name)
	}
	if h.Typeflag != tar.TypeReg {
		return nil
	}
	n, err := io.CopyBuffer(w.tw, r, w.copyBuf())
	w.stats.SourceBytes += n
	w.stats.Files++
	if err != nil {
		if errors.Is(err, tar.ErrWriteTooLong) || n < h.Size {
			return newError(StreamFailed, err, "the command's output ended inside %s, after %d of its %d bytes", name, n, h.Size)
		}
		return writeError(err, "cannot write %s to the archive", name)
	}
	return w.checkCancel(n)
}

// copyBuf is the walker's copy buffer, made on first use when the compressor reads its input
// directly.
func (w *walker) copyBuf() []byte {
	if w.buf == nil {
		w.buf = make([]byte, copyBufferSize)
	}
	return w.buf
}
