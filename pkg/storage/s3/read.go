package s3

import (
	"context"
	"fmt"
	"io"

	"github.com/minio/minio-go/v7"

	"platform.example.com/backup-operator/pkg/archive"
)

// Open looks up the archive key; its readers stream it from the server.
func (b *Backend) Open(ctx context.Context, key string) (archive.Source, error) {
	info, err := b.stat(ctx, key)
	if err != nil {
		return nil, err
	}
	if info == nil {
		return nil, &archive.Error{Reason: archive.ArchiveNotFound, Msg: fmt.Sprintf("archive %s does not exist: check the key, and that the storage is the one the backup was written to", b.url(key))}
	}
	return &source{b: b, key: key, size: info.Size, etag: info.ETag}, nil
}

// source is an archive object as it was when opened: its readers send the ETag seen then as
// If-Match, so a reader opened after the object was replaced fails instead of reading other
// bytes, and an object replaced while a reader streams does not change that reader's bytes: S3
// serves a GET from the version it started on. Every reader therefore sees the same bytes or
// fails, and Unchanged has nothing left to check.
type source struct {
	b    *Backend
	key  string
	size int64
	etag string
}

func (s *source) Name() string     { return s.b.url(s.key) }
func (s *source) Size() int64      { return s.size }
func (s *source) Unchanged() error { return nil }
func (s *source) Close() error     { return nil }

func (s *source) Open(ctx context.Context) (io.ReadCloser, error) {
	opts := minio.GetObjectOptions{}
	if err := opts.SetMatchETag(s.etag); err != nil {
		return nil, s.b.classify(err, "read "+s.Name())
	}
	body, _, _, err := s.b.core.GetObject(ctx, s.b.cfg.Bucket, s.key, opts)
	if err != nil {
		switch minio.ToErrorResponse(err).Code {
		case "PreconditionFailed":
			return nil, &archive.Error{Reason: archive.ChecksumMismatch, Msg: fmt.Sprintf("archive %s changed while it was being read (its ETag is no longer %s): make sure nothing else writes the archive, then run again", s.Name(), s.etag), Err: err}
		case minio.NoSuchKey:
			return nil, &archive.Error{Reason: archive.ArchiveNotFound, Msg: fmt.Sprintf("archive %s was deleted while it was being read", s.Name()), Err: err}
		}
		return nil, s.b.classify(err, "read "+s.Name())
	}
	return &reader{s: s, body: body}, nil
}

// reader is one GET's body, whose failures it classifies.
type reader struct {
	s    *source
	body io.ReadCloser
	n    int64
}

func (r *reader) Read(p []byte) (int, error) {
	n, err := r.body.Read(p)
	r.n += int64(n)
	switch {
	case err == io.EOF && r.n != r.s.size:
		err = &archive.Error{Reason: archive.ReadFailed, Msg: fmt.Sprintf("archive %s ended after %d of its %d bytes", r.s.Name(), r.n, r.s.size), Err: io.ErrUnexpectedEOF}
	case err != nil && err != io.EOF:
		e := r.s.b.classify(err, fmt.Sprintf("read %s after %d bytes", r.s.Name(), r.n)).(*archive.Error)
		if e.Reason == archive.StorageError {
			// A stream broken after the server answered is a failed read, not a refusal.
			e.Reason = archive.ReadFailed
		}
		err = e
	}
	return n, err
}

func (r *reader) Close() error { return r.body.Close() }
