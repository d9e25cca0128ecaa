package s3

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"

	"github.com/minio/minio-go/v7"

	"platform.example.com/backup-operator/pkg/storage"
)

// Check lists below prefix to prove reading and, unless the storage is read-only, starts and
// aborts a multipart upload there to prove writing: an upload with the options of a backup
// (encryption, retention, part checksums) leaves no object, where a probe object could be kept
// by object lock for years. Versioning and object lock are reported when the server says; a
// server that does not implement those calls, or credentials not allowed to read them, leave
// them false rather than failing the check.
func (b *Backend) Check(ctx context.Context, prefix string) (*storage.CheckResult, error) {
	p := dir(prefix)
	noOwner := false
	for o := range b.core.ListObjectsIter(ctx, b.cfg.Bucket, minio.ListObjectsOptions{Prefix: p, Recursive: true, MaxKeys: 1, FetchOwner: &noOwner}) {
		if o.Err != nil {
			return nil, b.classify(o.Err, "list "+b.url(p))
		}
		break
	}
	res := &storage.CheckResult{}
	if !b.cfg.ReadOnly {
		var r [8]byte
		rand.Read(r[:])
		key := p + ".backup-operator-check-" + hex.EncodeToString(r[:])
		id, err := b.startUpload(ctx, key)
		if err != nil {
			return nil, err
		}
		if err := b.core.AbortMultipartUpload(ctx, b.cfg.Bucket, key, id); err != nil {
			return nil, b.classify(err, fmt.Sprintf("abort the check's upload %s of %s (abort it by hand)", id, b.url(key)))
		}
		res.Writable = true
	}
	if v, err := b.core.GetBucketVersioning(ctx, b.cfg.Bucket); err == nil {
		res.Versioning = v.Enabled()
	}
	enabled, mode, validity, unit, err := b.core.GetObjectLockConfig(ctx, b.cfg.Bucket)
	if err == nil && enabled == "Enabled" {
		res.ObjectLock = true
		if mode != nil && validity != nil && unit != nil {
			res.ObjectLockMode = string(*mode)
			res.ObjectLockDays = int(*validity)
			if *unit == minio.Years {
				res.ObjectLockDays *= 365
			}
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, b.classify(err, "check bucket "+b.cfg.Bucket)
	}
	return res, nil
}
