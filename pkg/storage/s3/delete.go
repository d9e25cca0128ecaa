package s3

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/minio/minio-go/v7"

	"platform.example.com/backup-operator/pkg/archive"
)

// Delete removes the archive key, its checksum and manifest, and aborts the unfinished uploads
// of key. In a versioned bucket a delete adds a delete marker and keeps the old version, as S3
// does for every client: the bucket's lifecycle rules decide when old versions go.
//
// An archive under object lock retention is not deleted: its data would stay anyway (deleting
// adds only a delete marker), and hiding it would lose a backup the bucket is required to keep.
// Delete fails with ArchiveRetained and the date, and writes the tombstone <key>.deleted, which
// keeps Manifests from listing the archive again.
func (b *Backend) Delete(ctx context.Context, key, fileName string) (*archive.DeleteStats, error) {
	if err := b.archiveKey(key, "delete"); err != nil {
		return nil, err
	}
	if err := b.writable("delete", key); err != nil {
		return nil, err
	}
	if _, ok := archive.CompressionForName(key); !ok {
		if err := b.fileArchive(ctx, key, fileName); err != nil {
			return nil, err
		}
	}
	stats := &archive.DeleteStats{Archive: b.url(key), Removed: []string{}}
	for i, k := range []string{key, key + checksumSuffix, key + manifestSuffix} {
		info, err := b.stat(ctx, k)
		if err != nil {
			return stats, err
		}
		if info == nil {
			stats.AlreadyDeleted = stats.AlreadyDeleted || i == 0
			continue
		}
		until := retainedUntil(info)
		if until == nil {
			err = b.classify(b.core.RemoveObject(ctx, b.cfg.Bucket, k, minio.RemoveObjectOptions{}), "delete "+b.url(k))
		}
		if until != nil || archive.ReasonOf(err) == archive.ArchiveRetained {
			stats.RetainedUntil = until
			if err := b.tombstone(ctx, key, until); err != nil {
				return stats, err
			}
			return stats, b.retained(k, until, err)
		}
		if err != nil {
			return stats, err
		}
		stats.Removed = append(stats.Removed, b.url(k))
	}
	ids, err := b.uploads(ctx, key)
	if err != nil {
		return stats, err
	}
	for _, id := range ids {
		err := b.core.AbortMultipartUpload(ctx, b.cfg.Bucket, key, id)
		if err != nil && minio.ToErrorResponse(err).Code != "NoSuchUpload" {
			return stats, b.classify(err, fmt.Sprintf("abort multipart upload %s of %s", id, b.url(key)))
		}
		stats.Removed = append(stats.Removed, fmt.Sprintf("multipart upload %s of %s", id, b.url(key)))
	}
	return stats, nil
}

// tombstone records beside an archive that object lock kept from being deleted that its Backup
// was deleted all the same, so that listing the storage does not bring the Backup back.
func (b *Backend) tombstone(ctx context.Context, key string, until *time.Time) error {
	if info, err := b.stat(ctx, key+deletedSuffix); err != nil || info != nil {
		return err
	}
	data, err := json.Marshal(struct {
		DeletionTime  time.Time  `json:"deletionTime"`
		RetainedUntil *time.Time `json:"retainedUntil,omitempty"`
	}{time.Now().UTC(), until})
	if err != nil {
		return err
	}
	return b.putSmall(ctx, key+deletedSuffix, append(data, '\n'))
}

// retainedUntil is the end of the object lock retention of info, if it has not passed. The HEAD
// answer carries it (to credentials allowed to read retention); GetObjectRetention would cost a
// request, and its answer from versitygw does not parse in minio-go.
func retainedUntil(info *minio.ObjectInfo) *time.Time {
	if info.Metadata.Get("X-Amz-Object-Lock-Mode") == "" {
		return nil
	}
	t, err := time.Parse(time.RFC3339, info.Metadata.Get("X-Amz-Object-Lock-Retain-Until-Date"))
	if err != nil || !t.After(time.Now()) {
		return nil
	}
	return &t
}

// retained is the failure to delete key because object lock keeps it, until a date if known.
func (b *Backend) retained(key string, until *time.Time, cause error) *archive.Error {
	when := "until its retention ends"
	if until != nil {
		when = "until " + until.UTC().Format(time.RFC3339)
	}
	return &archive.Error{Reason: archive.ArchiveRetained, Err: cause, Msg: fmt.Sprintf(
		"%s is kept by object lock %s; it will be deletable then; the Backup can go", b.url(key), when)}
}

// uploads lists the unfinished multipart uploads of exactly key.
func (b *Backend) uploads(ctx context.Context, key string) ([]string, error) {
	var ids []string
	keyMarker, idMarker := "", ""
	for {
		res, err := b.core.ListMultipartUploads(ctx, b.cfg.Bucket, key, keyMarker, idMarker, "", 1000)
		if err != nil {
			return nil, b.classify(err, "list the unfinished uploads of "+b.url(key))
		}
		for _, u := range res.Uploads {
			if u.Key == key {
				ids = append(ids, u.UploadID)
			}
		}
		if !res.IsTruncated || res.NextKeyMarker == "" {
			return ids, nil
		}
		keyMarker, idMarker = res.NextKeyMarker, res.NextUploadIDMarker
	}
}

// fileArchive checks that key, which has no tar archive's extension, is a file archive that may
// be deleted: see archive.Deletable.
func (b *Backend) fileArchive(ctx context.Context, key, fileName string) error {
	if archive.Deletable(b.url(key), fileName, nil) == nil {
		return nil
	}
	var manifest []byte
	info, err := b.stat(ctx, key+manifestSuffix)
	if err != nil {
		return err
	}
	if info != nil {
		if manifest, err = b.readSmall(ctx, key+manifestSuffix); err != nil {
			return err
		}
	}
	return archive.Deletable(b.url(key), fileName, manifest)
}
