package s3

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"path"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"platform.example.com/backup-operator/pkg/archive"
	"platform.example.com/backup-operator/pkg/storage"
)

func randomData(n int, seed uint64) []byte {
	b := make([]byte, n)
	rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8)}).Read(b)
	return b
}

func wantReason(t *testing.T, err error, want archive.Reason) *archive.Error {
	t.Helper()
	var e *archive.Error
	if !errors.As(err, &e) || e.Reason != want {
		t.Fatalf("got error %v (reason %s), want reason %s", err, archive.ReasonOf(err), want)
	}
	return e
}

// sideFiles are the checksum line and manifest of data as the archive key.
func sideFiles(key string, data []byte) (sum string, checksum, manifest []byte) {
	h := sha256.Sum256(data)
	sum = hex.EncodeToString(h[:])
	m, _ := json.Marshal(archive.Manifest{
		ManifestVersion: archive.ManifestVersion, Archive: path.Base(key), Compression: archive.Zstd,
		SHA256: sum, Size: int64(len(data)), ToolVersion: "test",
	})
	return sum, []byte(sum + "  " + path.Base(key) + "\n"), m
}

// writeOdd writes data to w in writes of odd, varying sizes, some larger than a part.
func writeOdd(t testing.TB, w io.Writer, data []byte) {
	t.Helper()
	r := rand.New(rand.NewPCG(1, 2))
	for len(data) > 0 {
		n := 1 + r.IntN(300<<10)
		if r.IntN(10) == 0 {
			n = 7<<20 + 13
		}
		n = min(n, len(data))
		if _, err := w.Write(data[:n]); err != nil {
			t.Fatalf("write: %v", err)
		}
		data = data[n:]
	}
}

// put writes data as the archive key through b and commits it.
func put(t testing.TB, b *Backend, key string, data []byte) {
	t.Helper()
	s, err := b.Create(context.Background(), key, "")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Abort()
	writeOdd(t, s, data)
	_, sum, man := sideFiles(key, data)
	if err := s.Commit(context.Background(), int64(len(data)), sum, man); err != nil {
		t.Fatal(err)
	}
}

// objectKeys lists the keys of b's bucket and the keys of its unfinished uploads.
func objectKeys(t testing.TB, b *Backend) (objects, uploads []string) {
	t.Helper()
	ctx := context.Background()
	for o := range b.core.ListObjectsIter(ctx, b.cfg.Bucket, minio.ListObjectsOptions{Recursive: true}) {
		if o.Err != nil {
			t.Fatal(o.Err)
		}
		objects = append(objects, o.Key)
	}
	res, err := b.core.ListMultipartUploads(ctx, b.cfg.Bucket, "", "", "", "", 1000)
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range res.Uploads {
		uploads = append(uploads, u.Key+" "+u.UploadID)
	}
	return objects, uploads
}

func wantEmpty(t *testing.T, b *Backend) {
	t.Helper()
	if objects, uploads := objectKeys(t, b); len(objects)+len(uploads) > 0 {
		t.Fatalf("bucket holds objects %q and unfinished uploads %q, want nothing", objects, uploads)
	}
}

func readAll(t *testing.T, b *Backend, key string) []byte {
	t.Helper()
	data, err := b.readSmall(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func TestRoundTrip(t *testing.T) {
	srv := shared(t)
	cfg := newBucket(t, srv, false)
	cfg.PartSize, cfg.Parallel = 5<<20, 3
	p := newProxy(t, srv, &cfg)
	b := newBackend(t, cfg)
	ctx := context.Background()

	for _, size := range []int{40<<20 + 12345, 0} {
		key := fmt.Sprintf("db/claim/daily-%d.tar.zst", size)
		data := randomData(size, uint64(size))
		put(t, b, key, data)

		src, err := b.Open(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		if src.Size() != int64(size) || src.Name() != "s3://"+cfg.Bucket+"/"+key {
			t.Fatalf("source %s of %d bytes, want s3://%s/%s of %d", src.Name(), src.Size(), cfg.Bucket, key, size)
		}
		// Two readers at once, as a restore hashes through one while it extracts from the other.
		var wg sync.WaitGroup
		got := make([][]byte, 2)
		errs := make([]error, 2)
		for i := range got {
			wg.Go(func() {
				r, err := src.Open(ctx)
				if err != nil {
					errs[i] = err
					return
				}
				defer r.Close()
				got[i], errs[i] = io.ReadAll(r)
			})
		}
		wg.Wait()
		sum, checksum, manifest := sideFiles(key, data)
		for i := range got {
			if errs[i] != nil {
				t.Fatalf("reader %d: %v", i, errs[i])
			}
			h := sha256.Sum256(got[i])
			if !bytes.Equal(got[i], data) || hex.EncodeToString(h[:]) != sum {
				t.Fatalf("reader %d read %d bytes with sha256 %x, want %d with %s", i, len(got[i]), h, size, sum)
			}
		}
		if err := src.Unchanged(); err != nil {
			t.Fatal(err)
		}
		src.Close()
		if got := readAll(t, b, key+".sha256"); !bytes.Equal(got, checksum) {
			t.Errorf("checksum object %q, want %q", got, checksum)
		}
		if got := readAll(t, b, key+".manifest.json"); !bytes.Equal(got, manifest) {
			t.Errorf("manifest object %q, want %q", got, manifest)
		}
	}
	// The archive becomes visible, then its checksum, and its manifest last.
	complete := p.index(`^POST /[^/]+/db/claim/daily-[^?]*\.tar\.zst\?uploadId=`)
	sum := p.index(`^PUT /[^/]+/db/claim/daily-[^?]*\.sha256\? `)
	man := p.index(`^PUT /[^/]+/db/claim/daily-[^?]*\.manifest\.json\? `)
	if complete < 0 || !(complete < sum && sum < man) {
		t.Errorf("requests complete upload at %d, put checksum at %d, put manifest at %d; want them in that order:\n%s", complete, sum, man, strings.Join(p.log, "\n"))
	}
	if _, uploads := objectKeys(t, b); len(uploads) > 0 {
		t.Errorf("unfinished uploads remain: %q", uploads)
	}
}

func TestCreateRefuses(t *testing.T) {
	srv := shared(t)
	cfg := newBucket(t, srv, false)
	b := newBackend(t, cfg)
	ctx := context.Background()

	// A key with no extension names no archive, tar or file (the agent checks a file archive's
	// name against its --file-name before it gets here).
	for _, key := range []string{"a/notes", "a/.hidden", "a/trailing."} {
		_, err := b.Create(ctx, key, "")
		wantReason(t, err, archive.InvalidArgument)
	}

	put(t, b, "a/x.tar.gz", []byte("first"))
	_, err := b.Create(ctx, "a/x.tar.gz", "")
	wantReason(t, err, archive.OutputExists)

	// An object that appears while the upload runs is not replaced either.
	s, err := b.Create(ctx, "a/y.tar", "")
	if err != nil {
		t.Fatal(err)
	}
	s.Write([]byte("second"))
	if _, err := b.core.PutObject(ctx, cfg.Bucket, "a/y.tar", strings.NewReader("other"), 5, "", "", minio.PutObjectOptions{}); err != nil {
		t.Fatal(err)
	}
	_, sum, man := sideFiles("a/y.tar", []byte("second"))
	wantReason(t, s.Commit(ctx, 6, sum, man), archive.OutputExists)
	s.Abort()
	if got := readAll(t, b, "a/y.tar"); string(got) != "other" {
		t.Errorf("a/y.tar holds %q, want the object that was there first", got)
	}
	if _, uploads := objectKeys(t, b); len(uploads) > 0 {
		t.Errorf("unfinished uploads remain: %q", uploads)
	}

	cfg.ReadOnly = true
	ro := newBackend(t, cfg)
	_, err = ro.Create(ctx, "a/z.tar", "")
	wantReason(t, err, archive.StorageReadOnly)
	_, err = ro.Delete(ctx, "a/x.tar.gz", "")
	wantReason(t, err, archive.StorageReadOnly)
	if _, err := ro.Open(ctx, "a/x.tar.gz"); err != nil {
		t.Errorf("read-only storage cannot open an archive: %v", err)
	}
}

func TestAbort(t *testing.T) {
	srv := shared(t)
	cfg := newBucket(t, srv, false)
	cfg.PartSize, cfg.Parallel = 5<<20, 2
	b := newBackend(t, cfg)

	t.Run("after writes", func(t *testing.T) {
		s, err := b.Create(context.Background(), "k/a.tar.zst", "")
		if err != nil {
			t.Fatal(err)
		}
		writeOdd(t, s, randomData(17<<20, 1))
		s.Abort()
		s.Abort()
		wantEmpty(t, b)
	})
	t.Run("canceled context", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		s, err := b.Create(ctx, "k/b.tar.zst", "")
		if err != nil {
			t.Fatal(err)
		}
		chunk := randomData(1<<20, 2)
		for range 12 {
			if _, err := s.Write(chunk); err != nil {
				t.Fatal(err)
			}
		}
		cancel()
		var werr error
		for i := 0; i < 100 && werr == nil; i++ {
			_, werr = s.Write(chunk)
		}
		wantReason(t, werr, archive.Canceled)
		wantReason(t, s.Commit(context.Background(), 1, nil, nil), archive.Canceled)
		s.Abort()
		wantEmpty(t, b)
	})
	t.Run("after commit", func(t *testing.T) {
		s, err := b.Create(context.Background(), "k/c.tar", "")
		if err != nil {
			t.Fatal(err)
		}
		s.Write([]byte("kept"))
		_, sum, man := sideFiles("k/c.tar", []byte("kept"))
		if err := s.Commit(context.Background(), 4, sum, man); err != nil {
			t.Fatal(err)
		}
		s.Abort()
		if got := readAll(t, b, "k/c.tar"); string(got) != "kept" {
			t.Errorf("Abort after Commit left %q, want the archive", got)
		}
	})
}

// An upload can outlive its abort: versitygw stores a part whose request passed its checks before
// the abort came, and so brings the upload back. Abort looks again after a failed part and aborts
// again; here the proxy loses the first abort to stand for that.
func TestAbortIsRepeatedWhileTheUploadRemains(t *testing.T) {
	srv := shared(t)
	cfg := newBucket(t, srv, false)
	cfg.PartSize, cfg.Parallel = 5<<20, 1
	p := newProxy(t, srv, &cfg)
	b := newBackend(t, cfg)
	none := func(*http.Request) bool { return false }
	p.set(func(r *http.Request) bool { return r.URL.Query().Get("partNumber") == "2" }, none)
	p.loseAborts(1)

	s, err := b.Create(context.Background(), "k/again.tar.zst", "")
	if err != nil {
		t.Fatal(err)
	}
	chunk := randomData(1<<20, 3)
	var werr error
	for i := 0; i < 50 && werr == nil; i++ {
		_, werr = s.Write(chunk)
	}
	wantReason(t, werr, archive.StorageAccessDenied)
	s.Abort()
	if n := p.count(`^DELETE .*uploadId=`); n != 2 {
		t.Errorf("Abort sent %d aborts, want 2 (the lost one and the one after looking again)", n)
	}
	wantEmpty(t, b)
}

func TestTooManyParts(t *testing.T) {
	srv := shared(t)
	cfg := newBucket(t, srv, false)
	cfg.PartSize, cfg.Parallel = MinPartSize, 2
	b := newBackend(t, cfg)
	defer func(n int) { maxParts = n }(maxParts)
	maxParts = 3
	data := randomData(3*int(MinPartSize)+1, 3)

	// Exactly maxParts parts fit.
	put(t, b, "exact.tar", data[:3*MinPartSize])

	s, err := b.Create(context.Background(), "over.tar", "")
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.Write(data)
	e := wantReason(t, err, archive.ArchiveTooLarge)
	if !strings.Contains(e.Msg, "size hint") {
		t.Errorf("message %q does not say to raise the size hint", e.Msg)
	}
	_, sum, man := sideFiles("over.tar", data)
	wantReason(t, s.Commit(context.Background(), int64(len(data)), sum, man), archive.ArchiveTooLarge)
	s.Abort()
	if objects, uploads := objectKeys(t, b); len(uploads) > 0 || strings.Contains(strings.Join(objects, " "), "over.tar") {
		t.Fatalf("an archive too large left objects %q and uploads %q", objects, uploads)
	}
}

func TestPartSize(t *testing.T) {
	for _, c := range []struct {
		cfg  Config
		want int64
	}{
		{Config{}, DefaultPartSize},
		{Config{SizeHint: 50 << 30}, DefaultPartSize},
		{Config{SizeHint: 1 << 40}, 111 << 20}, // 1.05 TiB + 64 MiB in 10,000 parts
		{Config{SizeHint: 1 << 50}, MaxPartSize},
		{Config{SizeHint: 1 << 40, PartSize: 6 << 20}, 6 << 20},
	} {
		got := c.cfg.partSize()
		if got != c.want {
			t.Errorf("part size for hint %d and part size %d is %d, want %d", c.cfg.SizeHint, c.cfg.PartSize, got, c.want)
		}
		if hint := c.cfg.SizeHint; c.cfg.PartSize == 0 && hint < 1<<50 && got*MaxParts < hint+hint/20+64<<20 {
			t.Errorf("part size %d does not fit hint %d in %d parts", got, hint, MaxParts)
		}
	}
}

func none(*http.Request) bool { return false }

func TestCommitFailures(t *testing.T) {
	srv := shared(t)
	cfg := newBucket(t, srv, false)
	cfg.PartSize = MinPartSize
	p := newProxy(t, srv, &cfg)
	b := newBackend(t, cfg)
	ctx := context.Background()
	data := randomData(11<<20, 4)
	_, sum, man := sideFiles("x.tar", data)

	t.Run("size mismatch", func(t *testing.T) {
		s, err := b.Create(ctx, "size.tar", "")
		if err != nil {
			t.Fatal(err)
		}
		writeOdd(t, s, data)
		wantReason(t, s.Commit(ctx, int64(len(data))+1, sum, man), archive.WriteFailed)
		s.Abort()
		wantEmpty(t, b)
	})
	t.Run("manifest refused", func(t *testing.T) {
		p.set(func(r *http.Request) bool { return strings.HasSuffix(r.URL.Path, ".manifest.json") }, none)
		defer p.set(none, none)
		s, err := b.Create(ctx, "man.tar", "")
		if err != nil {
			t.Fatal(err)
		}
		writeOdd(t, s, data)
		wantReason(t, s.Commit(ctx, int64(len(data)), sum, man), archive.StorageAccessDenied)
		s.Abort()
		wantEmpty(t, b)
	})
	t.Run("part refused", func(t *testing.T) {
		p.set(func(r *http.Request) bool { return r.URL.Query().Get("partNumber") == "2" }, none)
		defer p.set(none, none)
		s, err := b.Create(ctx, "part.tar", "")
		if err != nil {
			t.Fatal(err)
		}
		var werr error
		for i := 0; i < 50 && werr == nil; i++ {
			_, werr = s.Write(data[:1<<20])
		}
		wantReason(t, werr, archive.StorageAccessDenied)
		wantReason(t, s.Commit(ctx, int64(len(data)), sum, man), archive.StorageAccessDenied)
		s.Abort()
		wantEmpty(t, b)
	})
}

func TestOpen(t *testing.T) {
	srv := shared(t)
	cfg := newBucket(t, srv, false)
	p := newProxy(t, srv, &cfg)
	b := newBackend(t, cfg)
	ctx := context.Background()

	_, err := b.Open(ctx, "missing.tar.zst")
	wantReason(t, err, archive.ArchiveNotFound)

	gone := srv.config("no-such-bucket-here")
	_, err = newBackend(t, gone).Open(ctx, "missing.tar.zst")
	wantReason(t, err, archive.StorageBucketNotFound)

	put(t, b, "r.tar", []byte("original bytes"))
	src, err := b.Open(ctx, "r.tar")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.core.PutObject(ctx, cfg.Bucket, "r.tar", strings.NewReader("replaced"), 8, "", "", minio.PutObjectOptions{}); err != nil {
		t.Fatal(err)
	}
	_, err = src.Open(ctx)
	wantReason(t, err, archive.ChecksumMismatch)

	// A stream that breaks is a failed read.
	put(t, b, "cut.tar", randomData(3<<20, 6))
	if src, err = b.Open(ctx, "cut.tar"); err != nil {
		t.Fatal(err)
	}
	p.set(none, func(r *http.Request) bool {
		return r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/cut.tar")
	})
	defer p.set(none, none)
	r, err := src.Open(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	n, err := io.Copy(io.Discard, r)
	wantReason(t, err, archive.ReadFailed)
	if n >= 3<<20 {
		t.Errorf("read %d bytes of a stream cut after 1 MiB", n)
	}
}

func TestDelete(t *testing.T) {
	srv := shared(t)
	cfg := newBucket(t, srv, false)
	b := newBackend(t, cfg)
	ctx := context.Background()
	const key = "d/a.tar.zst"

	_, err := b.Delete(ctx, "d/a.tar.zst.sha256", "")
	wantReason(t, err, archive.InvalidArgument)

	put(t, b, key, []byte("archive"))
	put(t, b, "d/a.tar.zst2.tar", []byte("neighbour")) // shares the prefix, not the key
	leftover, err := b.startUpload(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	neighbour, err := b.startUpload(ctx, key+"2.tar")
	if err != nil {
		t.Fatal(err)
	}
	stats, err := b.Delete(ctx, key, "")
	if err != nil {
		t.Fatal(err)
	}
	url := "s3://" + cfg.Bucket + "/" + key
	want := []string{url, url + ".sha256", url + ".manifest.json", "multipart upload " + leftover + " of " + url}
	if stats.AlreadyDeleted || strings.Join(stats.Removed, "|") != strings.Join(want, "|") {
		t.Fatalf("Delete removed %q (already deleted %v), want %q", stats.Removed, stats.AlreadyDeleted, want)
	}
	objects, uploads := objectKeys(t, b)
	if strings.Join(objects, " ") != "d/a.tar.zst2.tar d/a.tar.zst2.tar.manifest.json d/a.tar.zst2.tar.sha256" ||
		len(uploads) != 1 || !strings.Contains(uploads[0], neighbour) {
		t.Fatalf("after Delete the bucket holds %q and uploads %q, want only the neighbour's", objects, uploads)
	}

	stats, err = b.Delete(ctx, key, "")
	if err != nil || !stats.AlreadyDeleted || len(stats.Removed) != 0 {
		t.Fatalf("second Delete: %+v, %v; want already deleted, nothing removed", stats, err)
	}
	_, err = newBackend(t, srv.config("no-such-bucket-here")).Delete(ctx, key, "")
	wantReason(t, err, archive.StorageBucketNotFound)
}

func TestObjectLock(t *testing.T) {
	srv := shared(t)
	cfg := newBucket(t, srv, true)
	for _, mode := range []string{"GOVERNANCE", "COMPLIANCE"} {
		t.Run(mode, func(t *testing.T) {
			cfg := cfg
			cfg.ObjectLockMode, cfg.ObjectLockRetainDays = mode, 1
			b := newBackend(t, cfg)
			ctx := context.Background()
			key := strings.ToLower(mode) + ".tar.zst"
			put(t, b, key, randomData(6<<20, 5))
			for _, k := range []string{key, key + ".sha256", key + ".manifest.json"} {
				info, err := b.stat(ctx, k)
				if err != nil || info == nil || retainedUntil(info) == nil {
					t.Fatalf("%s is not retained: %+v, %v", k, info, err)
				}
			}
			stats, err := b.Delete(ctx, key, "")
			e := wantReason(t, err, archive.ArchiveRetained)
			until := stats.RetainedUntil
			if until == nil || until.Before(time.Now().Add(23*time.Hour)) || until.After(time.Now().Add(25*time.Hour)) {
				t.Fatalf("retained until %v, want a day from now", until)
			}
			if !strings.Contains(e.Msg, until.UTC().Format(time.RFC3339)) {
				t.Errorf("message %q does not name the date", e.Msg)
			}
			if info, err := b.stat(ctx, key); err != nil || info == nil {
				t.Fatalf("the retained archive is gone: %v", err)
			}
			// Its Backup is gone, so listing the storage must not bring it back.
			if info, err := b.stat(ctx, key+".deleted"); err != nil || info == nil {
				t.Fatalf("no tombstone beside the retained archive: %v", err)
			}
			listed, err := b.Manifests(ctx, "")
			if err != nil {
				t.Fatal(err)
			}
			for _, l := range listed {
				if l.Key == key {
					t.Fatalf("the deleted, retained archive %s is listed again", key)
				}
			}
			if _, err := b.Delete(ctx, key, ""); archive.ReasonOf(err) != archive.ArchiveRetained {
				t.Fatalf("a second Delete: %v, want ArchiveRetained again (the tombstone is written once)", err)
			}

			res, err := b.Check(ctx, "")
			if err != nil {
				t.Fatal(err)
			}
			if !res.Writable || !res.Versioning || !res.ObjectLock {
				t.Errorf("Check found %+v, want writable, versioning and object lock", res)
			}
		})
	}
	b := newBackend(t, cfg)
	mode, days, unit := minio.Governance, uint(2), minio.Days
	if err := b.core.SetObjectLockConfig(context.Background(), cfg.Bucket, &mode, &days, &unit); err != nil {
		t.Fatal(err)
	}
	res, err := b.Check(context.Background(), "")
	if err != nil || res.ObjectLockMode != "GOVERNANCE" || res.ObjectLockDays != 2 {
		t.Errorf("Check found %+v, %v; want the default retention GOVERNANCE for 2 days", res, err)
	}
}

// TestWriteOptions checks that encryption and retention apply to the archive and both side objects.
func TestWriteOptions(t *testing.T) {
	srv := shared(t)
	lockBucket := newBucket(t, srv, true)
	for _, c := range []struct {
		sse, keyID, header string
	}{{SSES3, "", "AES256"}, {SSEKMS, "backup-key", "aws:kms"}} {
		t.Run(c.sse, func(t *testing.T) {
			cfg := lockBucket
			cfg.SSE, cfg.SSEKMSKeyID = c.sse, c.keyID
			cfg.ObjectLockMode, cfg.ObjectLockRetainDays = "GOVERNANCE", 1
			p := newProxy(t, srv, &cfg)
			key := strings.ToLower(c.sse) + ".tar"
			put(t, newBackend(t, cfg), key, []byte("data"))
			k := regexp.QuoteMeta(key)
			for _, re := range []string{`^POST /[^/]+/` + k + `\?uploads=`, `^PUT /[^/]+/` + k + `\.sha256\? `, `^PUT /[^/]+/` + k + `\.manifest\.json\? `} {
				if p.index(re+".*sse="+c.header+" lock=GOVERNANCE$") < 0 {
					t.Errorf("no request matches %s with encryption %s and retention:\n%s", re, c.header, strings.Join(p.log, "\n"))
				}
			}
		})
	}
}

func TestCheck(t *testing.T) {
	srv := shared(t)
	cfg := newBucket(t, srv, false)
	ctx := context.Background()

	res, err := newBackend(t, cfg).Check(ctx, "team/db")
	if err != nil {
		t.Fatal(err)
	}
	if *res != (storage.CheckResult{Writable: true}) {
		t.Errorf("Check found %+v, want writable only", res)
	}
	wantEmpty(t, newBackend(t, cfg))

	ro := cfg
	ro.ReadOnly = true
	if res, err := newBackend(t, ro).Check(ctx, ""); err != nil || res.Writable {
		t.Errorf("read-only Check: %+v, %v; want not writable, no error", res, err)
	}

	for _, c := range []struct {
		name   string
		change func(*Config)
		want   archive.Reason
	}{
		{"wrong secret", func(c *Config) { c.SecretAccessKey = "wrong" }, archive.StorageAccessDenied},
		{"unknown key", func(c *Config) { c.AccessKeyID = "nobody" }, archive.StorageAccessDenied},
		{"missing bucket", func(c *Config) { c.Bucket = "no-such-bucket-here" }, archive.StorageBucketNotFound},
		{"wrong region", func(c *Config) { c.Region = "eu-west-1" }, archive.StorageWrongRegion},
		{"nothing listening", func(c *Config) { c.Endpoint = "http://" + freePort(t) }, archive.StorageUnreachable},
		{"no such host", func(c *Config) { c.Endpoint = "http://no-such-host.invalid" }, archive.StorageUnreachable},
		{"retention without object lock", func(c *Config) { c.ObjectLockMode, c.ObjectLockRetainDays = "COMPLIANCE", 1 }, archive.StorageError},
	} {
		t.Run(c.name, func(t *testing.T) {
			bad := cfg
			c.change(&bad)
			_, err := newBackend(t, bad).Check(ctx, "")
			e := wantReason(t, err, c.want)
			t.Log(e)
		})
	}
}

func TestManifests(t *testing.T) {
	srv := shared(t)
	cfg := newBucket(t, srv, false)
	b := newBackend(t, cfg)
	ctx := context.Background()

	put(t, b, "p/b.tar.gz", []byte("b"))
	put(t, b, "p/sub/a.tar.zst", []byte("a"))
	put(t, b, "other/c.tar", []byte("c"))
	_, _, man := sideFiles("p/orphan.tar", nil)
	if err := b.putSmall(ctx, "p/orphan.tar.manifest.json", man); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"p/bad.tar", "q/bad.tar"} {
		put(t, b, k, []byte("bad"))
		if err := b.putSmall(ctx, k+".manifest.json", []byte("{not json")); err != nil {
			t.Fatal(err)
		}
	}

	listed, err := b.Manifests(ctx, "/p/")
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, l := range listed {
		keys = append(keys, l.Key)
		if l.Manifest.Archive != path.Base(l.Key) || l.LastModified.IsZero() {
			t.Errorf("%s listed with manifest %+v modified %v", l.Key, l.Manifest, l.LastModified)
		}
	}
	if strings.Join(keys, " ") != "p/b.tar.gz p/sub/a.tar.zst" {
		t.Fatalf("Manifests listed %q, want p/b.tar.gz and p/sub/a.tar.zst", keys)
	}

	_, err = b.Manifests(ctx, "q")
	wantReason(t, err, archive.CorruptArchive)
	if listed, err := b.Manifests(ctx, "none"); err != nil || len(listed) != 0 {
		t.Errorf("Manifests of an empty prefix: %v, %v", listed, err)
	}
}

// A file archive (a dump) is listed and deleted when its manifest says it is one; its leftovers
// are deleted when the caller names its file; an object that is neither is never touched.
func TestFileArchiveKeys(t *testing.T) {
	srv := shared(t)
	cfg := newBucket(t, srv, false)
	b := newBackend(t, cfg)
	ctx := context.Background()
	const dump = "f/nightly.dump.zst"

	s, err := b.Create(ctx, dump, "")
	if err != nil {
		t.Fatal(err)
	}
	data := []byte("PGDMP")
	writeOdd(t, s, data)
	sum, checksum, _ := sideFiles(dump, data)
	man, _ := json.Marshal(archive.Manifest{ManifestVersion: archive.ManifestVersion, Archive: "nightly.dump.zst", Compression: archive.Zstd,
		SHA256: sum, Size: int64(len(data)), Format: archive.FormatFile, FileName: "dump", ToolVersion: "test"})
	if err := s.Commit(ctx, int64(len(data)), checksum, man); err != nil {
		t.Fatal(err)
	}
	put(t, b, "f/notes.txt", []byte("not an archive")) // with a tar archive's manifest, which does not describe it
	listed, err := b.Manifests(ctx, "f/")
	if err != nil || len(listed) != 1 || listed[0].Key != dump || listed[0].Manifest.Format != archive.FormatFile {
		t.Fatalf("listed %+v (%v), want the dump only", listed, err)
	}

	if stats, err := b.Delete(ctx, dump, ""); err != nil || len(stats.Removed) != 3 {
		t.Fatalf("Delete of the dump by its manifest: %+v, %v", stats, err)
	}
	leftover, err := b.startUpload(ctx, dump)
	if err != nil {
		t.Fatal(err)
	}
	_, err = b.Delete(ctx, dump, "")
	wantReason(t, err, archive.InvalidArgument) // nothing vouches for the name any more
	if stats, err := b.Delete(ctx, dump, "dump"); err != nil || !stats.AlreadyDeleted || len(stats.Removed) != 1 || !strings.Contains(stats.Removed[0], leftover) {
		t.Fatalf("Delete by its file name: %+v, %v; want the unfinished upload aborted", stats, err)
	}
	for _, fileName := range []string{"", "dump"} {
		_, err = b.Delete(ctx, "f/notes.txt", fileName)
		wantReason(t, err, archive.InvalidArgument)
	}
	if got := readAll(t, b, "f/notes.txt"); string(got) != "not an archive" {
		t.Fatalf("f/notes.txt holds %q", got)
	}
}
