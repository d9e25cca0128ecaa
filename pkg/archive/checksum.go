package archive

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"hash"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// checksumName is the sha256sum-format file written beside an archive.
func checksumName(archive string) string { return archive + ".sha256" }

// manifestName is the JSON manifest written beside an archive.
func manifestName(archive string) string { return archive + ".manifest.json" }

// ChecksumFileFor returns the path of the checksum file of an archive.
func ChecksumFileFor(archive string) string { return checksumName(archive) }

// ManifestFileFor returns the path of the manifest of an archive.
func ManifestFileFor(archive string) string { return manifestName(archive) }

// checksumLine is the content of the checksum file: `sha256sum -c` format
// with the archive's base name, so the check works from the archive's
// directory wherever the storage is mounted.
func checksumLine(sum, archive string) []byte {
	return []byte(sum + "  " + filepath.Base(archive) + "\n")
}

// ValidSHA256 reports whether s is a 64-digit hexadecimal sha256.
func ValidSHA256(s string) bool {
	if len(s) != sha256.Size*2 {
		return false
	}
	_, err := hex.DecodeString(s)
	return err == nil
}

// hashingWriter hashes and counts what passes through it on its way to w.
// Small writes (tar headers without compression, the compressors' frame
// headers) are gathered in buf; the compressors' blocks, which are large,
// go straight through without being copied. A large block is hashed on a
// second goroutine while it is written, so on incompressible data, where
// the archive is as large as the volume, the hash (about 0.7 s per GB) and
// the write overlap instead of adding up. flush must be called at the end,
// close always.
type hashingWriter struct {
	w   io.Writer
	h   hash.Hash
	n   int64
	buf []byte

	todo chan []byte   // a block for the hashing goroutine
	done chan struct{} // it was hashed
}

// hashingWriterBuffer is the size below which writes are gathered.
const hashingWriterBuffer = 128 << 10

func newHashingWriter(w io.Writer) *hashingWriter {
	return &hashingWriter{w: w, h: sha256.New(), buf: make([]byte, 0, hashingWriterBuffer)}
}

func (hw *hashingWriter) Write(p []byte) (int, error) {
	if len(hw.buf)+len(p) <= cap(hw.buf) {
		hw.buf = append(hw.buf, p...)
		return len(p), nil
	}
	if err := hw.flush(); err != nil {
		return 0, err
	}
	if len(p) < cap(hw.buf)/2 {
		hw.buf = append(hw.buf, p...)
		return len(p), nil
	}
	return hw.write(p)
}

// flush writes what is gathered.
func (hw *hashingWriter) flush() error {
	if len(hw.buf) == 0 {
		return nil
	}
	n, err := hw.write(hw.buf)
	if err == nil && n < len(hw.buf) {
		err = io.ErrShortWrite
	}
	hw.buf = hw.buf[:0]
	return err
}

// write hashes p while writing it. The whole of p is hashed even if the
// write fails part way, which does not matter: a failed write fails the
// backup and its hash is never used.
func (hw *hashingWriter) write(p []byte) (int, error) {
	if hw.todo == nil {
		hw.todo, hw.done = make(chan []byte), make(chan struct{})
		go func() {
			for b := range hw.todo {
				hw.h.Write(b)
				hw.done <- struct{}{}
			}
		}()
	}
	hw.todo <- p
	n, err := hw.w.Write(p)
	<-hw.done
	hw.n += int64(n)
	return n, err
}

// close stops the hashing goroutine.
func (hw *hashingWriter) close() {
	if hw.todo != nil {
		close(hw.todo)
		hw.todo = nil
	}
}

func (hw *hashingWriter) sum() string { return hex.EncodeToString(hw.h.Sum(nil)) }

// hashingReader hashes and counts what is read through it.
type hashingReader struct {
	r io.Reader
	h hash.Hash
	n int64
}

func newHashingReader(r io.Reader) *hashingReader {
	return &hashingReader{r: r, h: sha256.New()}
}

func (hr *hashingReader) Read(p []byte) (int, error) {
	n, err := hr.r.Read(p)
	hr.h.Write(p[:n])
	hr.n += int64(n)
	return n, err
}

func (hr *hashingReader) sum() string { return hex.EncodeToString(hr.h.Sum(nil)) }

// openArchive opens an archive for reading, mapping a missing file to
// ArchiveNotFound.
func openArchive(path string) (*os.File, os.FileInfo, error) {
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, nil, newError(ArchiveNotFound, nil, "archive %s does not exist: check the path and that the storage volume is mounted", path)
		}
		return nil, nil, newError(ReadFailed, err, "cannot open archive %s", path)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, nil, newError(ReadFailed, err, "cannot stat archive %s", path)
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, nil, newError(InvalidArgument, nil, "archive %s is not a regular file", path)
	}
	readSequentially(f)
	return f, fi, nil
}

// hashFile returns the sha256 of everything readable from r. Reading and
// hashing overlap: a goroutine reads into one of two buf-sized buffers while
// the other is hashed, so on two cores the copy out of the page cache (or
// the wait for the storage) costs no time next to the hash.
func hashFile(r io.Reader, buf []byte) (string, int64, error) {
	type chunk struct {
		b   []byte
		err error
	}
	free := make(chan []byte, 2)
	full := make(chan chunk, 2)
	free <- buf
	free <- make([]byte, len(buf))
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		for {
			var b []byte
			select {
			case b = <-free:
			case <-stop:
				return
			}
			n, err := io.ReadFull(r, b)
			if err == io.ErrUnexpectedEOF {
				err = io.EOF
			}
			full <- chunk{b[:n], err}
			if err != nil {
				return
			}
		}
	}()
	h := sha256.New()
	var total int64
	for {
		c := <-full
		h.Write(c.b)
		total += int64(len(c.b))
		switch {
		case c.err == io.EOF:
			return hex.EncodeToString(h.Sum(nil)), total, nil
		case c.err != nil:
			return "", total, c.err
		}
		free <- c.b[:cap(c.b)]
	}
}

// mismatch builds the ChecksumMismatch error shared by restore and verify.
func mismatch(path, want, got string) *Error {
	return newError(ChecksumMismatch, nil,
		"archive %s has sha256 %s but %s was expected: the archive is corrupt, truncated or not the one recorded; do not restore it, use another backup",
		path, got, want)
}

// CheckSHA256 validates a user-supplied checksum, with a message that says what to pass.
func CheckSHA256(s string) error {
	_, err := normalizeSHA256(s)
	return err
}

// normalizeSHA256 lowercases a user-supplied checksum and validates it.
func normalizeSHA256(s string) (string, error) {
	s = strings.ToLower(strings.TrimSpace(s))
	if !ValidSHA256(s) {
		return "", newError(InvalidArgument, nil, "--sha256 %q is not a sha256: pass the 64 hexadecimal digits recorded with the backup (its .sha256 file or the Backup status)", s)
	}
	return s, nil
}
