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
type hashingWriter struct {
	w io.Writer
	h hash.Hash
	n int64
}

func newHashingWriter(w io.Writer) *hashingWriter {
	return &hashingWriter{w: w, h: sha256.New()}
}

func (hw *hashingWriter) Write(p []byte) (int, error) {
	n, err := hw.w.Write(p)
	hw.h.Write(p[:n])
	hw.n += int64(n)
	return n, err
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
	return f, fi, nil
}

// hashFile returns the sha256 of everything readable from r, reading in
// buf-sized chunks (io.Copy to io.Discard would use 8 KiB reads).
func hashFile(r io.Reader, buf []byte) (string, int64, error) {
	h := sha256.New()
	var total int64
	for {
		n, err := r.Read(buf)
		h.Write(buf[:n])
		total += int64(n)
		if err == io.EOF {
			return hex.EncodeToString(h.Sum(nil)), total, nil
		}
		if err != nil {
			return "", total, err
		}
	}
}

// mismatch builds the ChecksumMismatch error shared by restore and verify.
func mismatch(path, want, got string) *Error {
	return newError(ChecksumMismatch, nil,
		"archive %s has sha256 %s but %s was expected: the archive is corrupt, truncated or not the one recorded; do not restore it, use another backup",
		path, got, want)
}

// normalizeSHA256 lowercases a user-supplied checksum and validates it.
func normalizeSHA256(s string) (string, error) {
	s = strings.ToLower(strings.TrimSpace(s))
	if !ValidSHA256(s) {
		return "", newError(InvalidArgument, nil, "--sha256 %q is not a sha256: pass the 64 hexadecimal digits recorded with the backup (its .sha256 file or the Backup status)", s)
	}
	return s, nil
}
