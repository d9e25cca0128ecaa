// Package s3 keeps archives in a bucket of an S3-compatible object store: the storage of a
// BackupStorage of type s3. Archives are streamed up as multipart uploads of bounded memory and
// read back as streaming GETs pinned to the version that was opened.
package s3

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"path"
	"strings"
	"syscall"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	"github.com/minio/minio-go/v7/pkg/encrypt"
	"github.com/minio/minio-go/v7/pkg/s3utils"

	"platform.example.com/backup-operator/pkg/archive"
	"platform.example.com/backup-operator/pkg/storage"
)

var _ storage.Backend = (*Backend)(nil)

// Backend is a bucket whose objects are archives, their checksums and manifests.
type Backend struct {
	cfg      Config
	core     *minio.Core
	sse      encrypt.ServerSide
	partSize int64
	parallel int
}

// New returns the backend of cfg's bucket. It checks the configuration but does not contact the
// server: Check does.
func New(_ context.Context, cfg Config) (*Backend, error) {
	u, err := url.Parse(cfg.Endpoint)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || strings.Trim(u.Path, "/") != "" || u.RawQuery != "" {
		return nil, invalid(err, "S3 endpoint %q is not a URL like https://s3.example.com or http://host:port: set the endpoint to the server's scheme, host and port, without a path", cfg.Endpoint)
	}
	if err := s3utils.CheckValidBucketName(cfg.Bucket); err != nil {
		return nil, invalid(err, "bucket %q is not a valid bucket name: set the name of an existing bucket", cfg.Bucket)
	}
	if (cfg.AccessKeyID == "") != (cfg.SecretAccessKey == "") {
		return nil, invalid(nil, "only one of %s and %s is set: set both for signed requests, or neither for anonymous access", EnvAccessKeyID, EnvSecretAccessKey)
	}
	b := &Backend{cfg: cfg, partSize: cfg.partSize(), parallel: cfg.Parallel}
	switch cfg.SSE {
	case "":
	case SSES3:
		b.sse = encrypt.NewSSE()
	case SSEKMS:
		b.sse, _ = encrypt.NewSSEKMS(cfg.SSEKMSKeyID, nil) // fails only on an encryption context, which is nil
	default:
		return nil, invalid(nil, "server-side encryption %q is not one of %s and %s", cfg.SSE, SSES3, SSEKMS)
	}
	if cfg.SSEKMSKeyID != "" && cfg.SSE != SSEKMS {
		return nil, invalid(nil, "a KMS key id is set but encryption is %q: set encryption to %s or remove the key id", cfg.SSE, SSEKMS)
	}
	switch mode := minio.RetentionMode(cfg.ObjectLockMode); {
	case mode == "" && cfg.ObjectLockRetainDays != 0:
		return nil, invalid(nil, "object lock days are set without a mode: set the mode to GOVERNANCE or COMPLIANCE, or remove the days")
	case mode != "" && !mode.IsValid():
		return nil, invalid(nil, "object lock mode %q is not GOVERNANCE or COMPLIANCE", cfg.ObjectLockMode)
	case mode != "" && cfg.ObjectLockRetainDays <= 0:
		return nil, invalid(nil, "object lock mode %s needs a positive number of days to retain objects", mode)
	}
	if cfg.PartSize != 0 && (cfg.PartSize < MinPartSize || cfg.PartSize > MaxPartSize) {
		return nil, invalid(nil, "part size %d is outside what S3 accepts (%d to %d bytes): leave it unset to size parts from the size hint", cfg.PartSize, MinPartSize, MaxPartSize)
	}
	if cfg.SizeHint < 0 || cfg.Parallel < 0 {
		return nil, invalid(nil, "size hint %d and parallel parts %d must not be negative", cfg.SizeHint, cfg.Parallel)
	}
	if b.parallel == 0 {
		b.parallel = DefaultParallel
	}
	secure := u.Scheme == "https"
	tr, err := transport(cfg, secure)
	if err != nil {
		return nil, err
	}
	lookup := minio.BucketLookupAuto
	if cfg.ForcePathStyle {
		lookup = minio.BucketLookupPath
	}
	b.core, err = minio.NewCore(u.Host, &minio.Options{
		Creds:        credentials.NewStaticV4(cfg.AccessKeyID, cfg.SecretAccessKey, cfg.SessionToken),
		Secure:       secure,
		Transport:    tr,
		Region:       cfg.Region,
		BucketLookup: lookup,
	})
	if err != nil {
		return nil, invalid(err, "cannot use S3 endpoint %s", cfg.Endpoint)
	}
	return b, nil
}

// transport trusts the system's certificate authorities and those of cfg.CAFile.
func transport(cfg Config, secure bool) (*http.Transport, error) {
	tr, err := minio.DefaultTransport(secure)
	if err != nil || !secure {
		return tr, err
	}
	if cfg.CAFile != "" {
		pem, err := os.ReadFile(cfg.CAFile)
		if err != nil {
			return nil, invalid(err, "cannot read the CA bundle %s", cfg.CAFile)
		}
		pool, err := x509.SystemCertPool()
		if err != nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, invalid(nil, "CA bundle %s holds no PEM certificate: set it to the PEM file of the CA that signed the endpoint's certificate", cfg.CAFile)
		}
		tr.TLSClientConfig.RootCAs = pool
	}
	tr.TLSClientConfig.InsecureSkipVerify = cfg.InsecureSkipTLSVerify
	return tr, nil
}

func invalid(cause error, format string, args ...any) *archive.Error {
	return &archive.Error{Reason: archive.InvalidArgument, Msg: fmt.Sprintf(format, args...), Err: cause}
}

// url names key as people see it.
func (b *Backend) url(key string) string { return "s3://" + b.cfg.Bucket + "/" + key }

// Suffixes of an archive's side objects; see archive.ChecksumFileFor and ManifestFileFor.
const (
	checksumSuffix = ".sha256"
	manifestSuffix = ".manifest.json"
	// deletedSuffix marks an archive whose Backup was deleted while object lock kept the
	// archive: it is not listed again.
	deletedSuffix = ".deleted"
)

// archiveKey refuses a key that does not name an archive, so that a wrong argument cannot
// write or delete an unrelated object. A file archive's name ends in its file name, which only
// the agent's command line and the manifest know: here it must only have an extension (Create
// never replaces an object, and Delete asks the manifest or --file-name, see archive.Deletable).
func (b *Backend) archiveKey(key, verb string) error {
	if _, ok := archive.CompressionForName(key); !ok && !hasExtension(key) {
		return invalid(nil, "key %q does not end in .tar.zst, .tar.gz or .tar, nor in the .FILENAME[.zst|.gz] of a file archive: refusing to %s an object that is not an archive", key, verb)
	}
	if err := s3utils.CheckValidObjectName(key); err != nil {
		return invalid(err, "key %q is not a valid object name", key)
	}
	return nil
}

// hasExtension reports whether the last segment of key has a name and an extension.
func hasExtension(key string) bool {
	base := path.Base(key)
	i := strings.IndexByte(base, '.')
	return i > 0 && i < len(base)-1
}

// writable refuses to write or delete on read-only storage.
func (b *Backend) writable(verb, key string) error {
	if b.cfg.ReadOnly {
		return &archive.Error{Reason: archive.StorageReadOnly, Msg: fmt.Sprintf("storage s3://%s is read-only: refusing to %s %s; use a BackupStorage that is not read-only to %s archives", b.cfg.Bucket, verb, b.url(key), verb)}
	}
	return nil
}

// dir is the key prefix of the objects below prefix, a slash-separated path.
func dir(prefix string) string {
	if p := strings.Trim(prefix, "/"); p != "" {
		return p + "/"
	}
	return ""
}

// writeOptions are those of every object written: the configured encryption and retention.
func (b *Backend) writeOptions() minio.PutObjectOptions {
	o := minio.PutObjectOptions{ServerSideEncryption: b.sse}
	if b.cfg.ObjectLockMode != "" {
		o.Mode = minio.RetentionMode(b.cfg.ObjectLockMode)
		o.RetainUntilDate = time.Now().AddDate(0, 0, b.cfg.ObjectLockRetainDays).UTC()
	}
	return o
}

// stat returns key's object, or nil if there is none.
func (b *Backend) stat(ctx context.Context, key string) (*minio.ObjectInfo, error) {
	info, err := b.core.StatObject(ctx, b.cfg.Bucket, key, minio.StatObjectOptions{})
	if err == nil {
		return &info, nil
	}
	if minio.ToErrorResponse(err).Code != minio.NoSuchKey {
		return nil, b.classify(err, "look up "+b.url(key))
	}
	// The answer to a HEAD has no body, so a missing bucket looks like a missing key; a missing
	// bucket must not pass for a deleted archive.
	ok, err := b.core.BucketExists(ctx, b.cfg.Bucket)
	if err != nil {
		return nil, b.classify(err, "look up bucket "+b.cfg.Bucket)
	}
	if !ok {
		return nil, &archive.Error{Reason: archive.StorageBucketNotFound, Msg: b.noBucket()}
	}
	return nil, nil
}

func (b *Backend) noBucket() string {
	return fmt.Sprintf("bucket %s does not exist at %s: create it, or fix the bucket name or endpoint", b.cfg.Bucket, b.cfg.Endpoint)
}

// Error codes that say the credentials are not accepted or not allowed. XAdminUserNotFound is
// what versitygw answers for an unknown access key.
var deniedCodes = map[string]string{
	"InvalidAccessKeyId":    "the access key id is not known to the server: check the access key id in the credentials Secret",
	"XAdminUserNotFound":    "the access key id is not known to the server: check the access key id in the credentials Secret",
	"SignatureDoesNotMatch": "the secret access key does not match the access key id: check the secret access key in the credentials Secret",
	"InvalidToken":          "the session token is not valid: renew the credentials in the credentials Secret",
	"ExpiredToken":          "the session token expired: renew the credentials in the credentials Secret",
	"AllAccessDisabled":     "all access to the bucket is disabled: ask the storage administrator",
	minio.AccessDenied:      "the credentials are not allowed to do this: grant them list, read, write, delete and multipart-upload rights on the bucket",
}

// Error codes that say the bucket is in another region than the one configured.
var regionCodes = map[string]bool{
	"AuthorizationHeaderMalformed":       true,
	"InvalidRegion":                      true,
	"PermanentRedirect":                  true,
	"IllegalLocationConstraintException": true,
}

// classify turns a failure of op (an imperative, such as "upload part 3 of s3://b/k") into an
// *archive.Error whose reason and message say what is wrong with the storage and what to do.
// Every operation of the package reports its failures through it.
func (b *Backend) classify(err error, op string) error {
	var ae *archive.Error
	if err == nil {
		return nil
	}
	if errors.As(err, &ae) {
		return ae
	}
	e := &archive.Error{Reason: archive.StorageError, Err: err}
	msg := func(format string, args ...any) { e.Msg = "cannot " + op + ": " + fmt.Sprintf(format, args...) }
	var (
		resp      minio.ErrorResponse
		unknownCA x509.UnknownAuthorityError
		badHost   x509.HostnameError
		badCert   x509.CertificateInvalidError
		verify    *tls.CertificateVerificationError
		notTLS    tls.RecordHeaderError
		dnsErr    *net.DNSError
		opErr     *net.OpError
		netErr    net.Error
		endpoint  = b.cfg.Endpoint
	)
	switch {
	case errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded):
		e.Reason = archive.Canceled
		msg("the operation was canceled or timed out")
	case errors.As(err, &unknownCA):
		e.Reason = archive.StorageTLSUntrusted
		msg("the certificate of %s is not signed by a trusted authority: set caBundle to the CA that signed the endpoint's certificate", endpoint)
	case errors.As(err, &badHost):
		e.Reason = archive.StorageTLSUntrusted
		msg("the certificate of %s is not valid for its host name: use a host name the certificate names, or have the certificate reissued", endpoint)
	case errors.As(err, &badCert), errors.As(err, &verify):
		e.Reason = archive.StorageTLSUntrusted
		msg("the certificate of %s is not valid (expired, not yet valid or not for a server): renew the endpoint's certificate, or set caBundle to the CA that signed it", endpoint)
	case errors.As(err, &notTLS), strings.Contains(err.Error(), "server gave HTTP response to HTTPS client"):
		e.Reason = archive.StorageUnreachable
		msg("%s does not speak TLS: use an http:// endpoint, or the server's TLS port", endpoint)
	case errors.As(err, &resp) && resp.Code != "":
		b.classifyResponse(e, resp, msg)
	case errors.As(err, &dnsErr):
		e.Reason = archive.StorageUnreachable
		msg("the host name of %s does not resolve: check the endpoint", endpoint)
	case errors.Is(err, syscall.ECONNREFUSED):
		e.Reason = archive.StorageUnreachable
		msg("nothing accepts connections at %s: check the endpoint's host and port, and that the server runs", endpoint)
	case errors.As(err, &netErr) && netErr.Timeout():
		e.Reason = archive.StorageUnreachable
		msg("%s did not answer in time: check the endpoint, and that a firewall or network policy lets the agent reach it", endpoint)
	case errors.As(err, &opErr) && opErr.Op == "dial":
		e.Reason = archive.StorageUnreachable
		msg("cannot connect to %s: check the endpoint and the network between the agent and the server", endpoint)
	default:
		msg("request to %s failed", endpoint)
	}
	return e
}

// classifyResponse classifies an error the server answered.
func (b *Backend) classifyResponse(e *archive.Error, resp minio.ErrorResponse, msg func(string, ...any)) {
	// A HEAD answer has no body, so the region in its header is all it says of a wrong region.
	wrongRegion := regionCodes[resp.Code] || resp.StatusCode == http.StatusMovedPermanently ||
		(resp.StatusCode == http.StatusBadRequest && resp.Region != "" && resp.Region != b.cfg.Region)
	words := strings.ReplaceAll(strings.ToLower(resp.Message), " ", "")
	switch {
	case (resp.Code == minio.AccessDenied || resp.Code == "ObjectLocked") && (strings.Contains(words, "objectlock") || strings.Contains(words, "worm")):
		e.Reason = archive.ArchiveRetained
		msg("object lock retains the object; it can be deleted when its retention ends")
	case deniedCodes[resp.Code] != "":
		e.Reason = archive.StorageAccessDenied
		msg("%s", deniedCodes[resp.Code])
	case resp.Code == minio.NoSuchBucket:
		e.Reason = archive.StorageBucketNotFound
		msg("%s", b.noBucket())
	case wrongRegion && resp.Region != "":
		e.Reason = archive.StorageWrongRegion
		msg("bucket %s is in region %s, not %q: set the region to %s", b.cfg.Bucket, resp.Region, b.cfg.Region, resp.Region)
	case wrongRegion:
		e.Reason = archive.StorageWrongRegion
		msg("bucket %s is not in region %q: set the region to the bucket's region", b.cfg.Bucket, b.cfg.Region)
	case resp.Code == minio.NoSuchKey:
		e.Reason = archive.ArchiveNotFound
		msg("the object does not exist")
	case resp.Code == "InvalidRequest" && strings.Contains(words, "objectlock"):
		msg("bucket %s does not have object lock enabled, which the object lock mode needs: remove the object lock mode, or use a bucket created with object lock", b.cfg.Bucket)
	case resp.Code == "NoSuchUpload":
		msg("the upload was aborted on the server, by a delete of the same archive or a lifecycle rule: run the backup again")
	default:
		msg("%s answered %s", b.cfg.Endpoint, resp.Code)
	}
}
