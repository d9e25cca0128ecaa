package s3

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/minio/minio-go/v7"

	"platform.example.com/backup-operator/pkg/archive"
	"platform.example.com/backup-operator/pkg/storage"
)

// maxManifest bounds what is read of a manifest: a real one is a few KiB (the list of changed
// files is capped), and a stray large object must not fill the memory; cut short, it does not
// parse.
const maxManifest = 16 << 20

// Manifests reads the manifest of every complete archive below prefix: every key that ends in
// .manifest.json and names an archive that exists. A manifest without its archive (a deletion
// or a commit that was interrupted) is not listed, nor is an archive with a tombstone (its Backup
// was deleted while object lock kept it). A manifest that does not parse describes no
// archive this tool can use, so it is skipped, unless every manifest fails: then the likely cause
// is the storage or the tool's version (manifests of a newer release), and Manifests fails with
// the first error. A storage failure always fails the whole call, so that a complete list is
// never mistaken for a partial one.
func (b *Backend) Manifests(ctx context.Context, prefix string) ([]storage.Listed, error) {
	p := dir(prefix)
	keys := map[string]bool{}
	var manifests []minio.ObjectInfo
	noOwner := false
	for o := range b.core.ListObjectsIter(ctx, b.cfg.Bucket, minio.ListObjectsOptions{Prefix: p, Recursive: true, FetchOwner: &noOwner}) {
		if o.Err != nil {
			return nil, b.classify(o.Err, "list "+b.url(p))
		}
		keys[o.Key] = true
		if strings.HasSuffix(o.Key, manifestSuffix) {
			manifests = append(manifests, o)
		}
	}
	listed := []storage.Listed{}
	var bad []string
	var firstErr error
	for _, m := range manifests {
		key := strings.TrimSuffix(m.Key, manifestSuffix)
		_, isTar := archive.CompressionForName(key)
		if !(isTar || hasExtension(key)) || !keys[key] || keys[key+deletedSuffix] {
			continue
		}
		data, err := b.readSmall(ctx, m.Key)
		if err != nil {
			return nil, err
		}
		man, err := archive.DecodeManifest(data)
		if err != nil {
			bad = append(bad, b.url(m.Key))
			if firstErr == nil {
				firstErr = err
			}
			continue
		}
		if !isTar && !man.Describes(key) {
			continue // not an archive: only its manifest could say it is a file archive
		}
		listed = append(listed, storage.Listed{Key: key, Manifest: *man, LastModified: m.LastModified})
	}
	if len(listed) == 0 && len(bad) > 0 {
		return nil, &archive.Error{Reason: archive.CorruptArchive, Err: firstErr, Msg: fmt.Sprintf(
			"none of the %d manifests below %s can be read (%s)", len(bad), b.url(p), strings.Join(bad, ", "))}
	}
	slices.SortFunc(listed, func(a, b storage.Listed) int { return strings.Compare(a.Key, b.Key) })
	return listed, nil
}

// readSmall reads the object key, up to one byte more than maxManifest.
func (b *Backend) readSmall(ctx context.Context, key string) ([]byte, error) {
	body, _, _, err := b.core.GetObject(ctx, b.cfg.Bucket, key, minio.GetObjectOptions{})
	if err != nil {
		return nil, b.classify(err, "read "+b.url(key))
	}
	defer body.Close()
	data, err := io.ReadAll(io.LimitReader(body, maxManifest+1))
	return data, b.classify(err, "read "+b.url(key))
}
