package archive

import (
	"context"
	"io"
	"os"
	"path/filepath"
)

// Sink receives the bytes of one archive and publishes it under its final name. Each storage
// backend (a directory on a mounted volume, an S3 bucket) has one; the data path writes to the
// interface and never asks which.
type Sink interface {
	io.Writer
	// Name is the archive's final name as people see it: a path or an s3:// URL. It ends in
	// the compression's extension, and its last element names the archive in the checksum
	// line and the manifest.
	Name() string
	// Commit publishes the archive, which is size bytes long, with its checksum line
	// (sha256sum format) and its manifest. When it returns nil, the archive and both side
	// objects are under their final names; when it fails, nothing is under the archive's
	// final name. It returns an *Error.
	Commit(ctx context.Context, size int64, checksum, manifest []byte) error
	// Abort discards what was written. It is safe to call after Commit, and does nothing then.
	Abort()
}

// Source is a finished archive to read.
type Source interface {
	// Name is the archive's name as people see it.
	Name() string
	// Size is the archive's length in bytes.
	Size() int64
	// Open returns a new reader of the whole archive from its first byte. Readers are
	// independent and may be read at the same time: a restore hashes through one while it
	// extracts from another. Every reader sees the same bytes: those of the archive as it was
	// when the Source was opened, or an error.
	Open(ctx context.Context) (io.ReadCloser, error)
	// Unchanged returns an *Error when the archive may have changed since the Source was
	// opened, which would make a hash taken through one reader say nothing of another.
	Unchanged() error
	// Close releases the Source.
	Close() error
}

// fileSink is an archive file on a mounted file system: written under a hidden temporary name
// and renamed when complete, never replacing an existing archive.
type fileSink struct {
	*atomicFile
}

// CreateFile starts the archive file name for a backup of source: it refuses a name that is
// taken, a directory that does not exist, and an archive inside the tree it archives.
func CreateFile(name, source string) (Sink, error) {
	out, err := filepath.Abs(name)
	if err != nil {
		return nil, newError(InvalidArgument, err, "invalid --output %q", name)
	}
	dir := filepath.Dir(out)
	if di, err := os.Stat(dir); err != nil || !di.IsDir() {
		return nil, newError(WriteFailed, err, "output directory %s does not exist: mount the storage volume or create the directory", dir)
	}
	if source != "" && inside(realPath(dir), realPath(source)) {
		return nil, newError(InvalidArgument, nil, "--output %s is inside --source %s: the archive would contain itself; write it to another volume", out, source)
	}
	if _, err := os.Lstat(out); err == nil {
		return nil, outputExists(out)
	}
	af, err := createAtomic(out)
	if err != nil {
		return nil, writeError(err, "cannot create a temporary file beside %s", out)
	}
	return fileSink{af}, nil
}

func (s fileSink) Name() string { return s.final }
func (s fileSink) Abort()       { s.abort() }

// Commit makes the archive durable, then writes the side files, then renames the archive: the
// side files go first so that an archive under its final name always has them; a crash in
// between leaves only side files, which the next attempt or a delete replaces.
func (s fileSink) Commit(_ context.Context, _ int64, checksum, manifest []byte) error {
	if err := s.sync(); err != nil {
		return writeError(err, "cannot flush archive %s to disk", s.final)
	}
	sumFile, manFile := checksumName(s.final), manifestName(s.final)
	if err := writeFileAtomic(sumFile, checksum); err != nil {
		return writeError(err, "cannot write checksum file %s", sumFile)
	}
	if err := writeFileAtomic(manFile, manifest); err != nil {
		os.Remove(sumFile)
		return writeError(err, "cannot write manifest %s", manFile)
	}
	if err := s.commit(); err != nil {
		if err == errExists {
			return outputExists(s.final)
		}
		os.Remove(sumFile)
		os.Remove(manFile)
		return writeError(err, "cannot rename the finished archive to %s", s.final)
	}
	return nil
}

// fileSource is an archive file, read through one open descriptor so that renaming another
// file over the archive cannot change what is read; writing into it changes its size or times,
// which Unchanged compares.
type fileSource struct {
	f  *os.File
	fi os.FileInfo
}

// OpenFile opens the archive file name for reading.
func OpenFile(name string) (Source, error) {
	f, fi, err := openArchive(name)
	if err != nil {
		return nil, err
	}
	return &fileSource{f: f, fi: fi}, nil
}

func (s *fileSource) Name() string { return s.f.Name() }
func (s *fileSource) Size() int64  { return s.fi.Size() }
func (s *fileSource) Close() error { return s.f.Close() }

func (s *fileSource) Open(context.Context) (io.ReadCloser, error) {
	return io.NopCloser(io.NewSectionReader(s.f, 0, s.fi.Size())), nil
}

func (s *fileSource) Unchanged() error {
	if after, err := s.f.Stat(); err != nil || !sameFile(s.fi, after) {
		return newError(ChecksumMismatch, err, "archive %s was modified while it was being read: make sure nothing writes the archive, then run again", s.f.Name())
	}
	return nil
}
