package s3

import (
	"flag"
	"os"
	"strings"
)

// Environment variables that carry the credentials into the agent's container, from the
// Secret that a BackupStorage names (secretKeyRef): never on the command line, where the
// pod's spec and every process listing would show them.
const (
	EnvAccessKeyID     = "AWS_ACCESS_KEY_ID"
	EnvSecretAccessKey = "AWS_SECRET_ACCESS_KEY"
	EnvSessionToken    = "AWS_SESSION_TOKEN"
)

// Server-side encryption modes of Config.SSE.
const (
	SSES3  = "SSE-S3"
	SSEKMS = "SSE-KMS"
)

// Multipart upload defaults. Memory is bounded by PartSize × (Parallel + 1): 8 MiB × 5 = 40 MiB.
const (
	// DefaultPartSize is the part size of an upload whose size hint fits 10,000 parts of it.
	DefaultPartSize int64 = 8 << 20
	// MinPartSize is the smallest part S3 accepts (but for the last).
	MinPartSize int64 = 5 << 20
	// MaxPartSize is the largest part S3 accepts.
	MaxPartSize int64 = 5 << 30
	// MaxParts is the most parts one upload may have.
	MaxParts = 10000
	// DefaultParallel is how many parts are uploaded at once.
	DefaultParallel = 4
)

// Config says how to reach a bucket. The agent fills it from its flags and environment.
type Config struct {
	// Endpoint is the server's URL, such as https://s3.eu-west-1.amazonaws.com or
	// http://127.0.0.1:7070; the scheme decides TLS.
	Endpoint string
	// Region of the bucket; empty asks the server.
	Region string
	// Bucket holds the archives.
	Bucket string
	// ForcePathStyle addresses the bucket as ENDPOINT/BUCKET instead of BUCKET.ENDPOINT.
	ForcePathStyle bool
	// CAFile is a PEM bundle of the certificate authorities trusted for the endpoint, on top of
	// the system's.
	CAFile string
	// InsecureSkipTLSVerify trusts any certificate: for tests only.
	InsecureSkipTLSVerify bool
	// SSE is server-side encryption of new objects: "", SSES3 or SSEKMS.
	SSE string
	// SSEKMSKeyID is the KMS key of SSEKMS.
	SSEKMSKeyID string
	// ObjectLockMode (GOVERNANCE or COMPLIANCE) and ObjectLockRetainDays set a retention on
	// every object written; empty mode writes none beyond the bucket's default.
	ObjectLockMode       string
	ObjectLockRetainDays int
	// ReadOnly refuses every write and delete: the storage of a cluster that only restores.
	ReadOnly bool
	// AccessKeyID, SecretAccessKey and SessionToken are the credentials; empty for anonymous
	// access.
	AccessKeyID, SecretAccessKey, SessionToken string
	// PartSize of multipart uploads; zero chooses from SizeHint.
	PartSize int64
	// Parallel is how many parts are uploaded at once; zero means DefaultParallel.
	Parallel int
	// SizeHint is the most an archive may take, such as the backed-up claim's capacity: the
	// part size grows with it so that no archive needs more than MaxParts parts, and the memory
	// of an upload grows with the part size (for hints above about 75 GiB).
	SizeHint int64
}

// AddFlags registers the flags that fill c on fs.
func (c *Config) AddFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.Endpoint, "s3-endpoint", "", "URL of the S3 server, such as https://s3.example.com (the scheme decides TLS)")
	fs.StringVar(&c.Region, "s3-region", "", "region of the bucket (default: ask the server)")
	fs.BoolVar(&c.ForcePathStyle, "s3-force-path-style", false, "address the bucket as ENDPOINT/BUCKET rather than BUCKET.ENDPOINT")
	fs.StringVar(&c.CAFile, "s3-ca-file", "", "PEM file of certificate authorities to trust for the endpoint, besides the system's")
	fs.BoolVar(&c.InsecureSkipTLSVerify, "s3-insecure-skip-tls-verify", false, "do not verify the server's certificate (tests only)")
	fs.StringVar(&c.SSE, "s3-sse", "", "server-side encryption of new objects: SSE-S3 or SSE-KMS")
	fs.StringVar(&c.SSEKMSKeyID, "s3-sse-kms-key-id", "", "KMS key id for SSE-KMS")
	fs.StringVar(&c.ObjectLockMode, "s3-object-lock-mode", "", "retention mode set on new objects: GOVERNANCE or COMPLIANCE")
	fs.IntVar(&c.ObjectLockRetainDays, "s3-object-lock-days", 0, "days new objects are retained under --s3-object-lock-mode")
	fs.BoolVar(&c.ReadOnly, "s3-read-only", false, "refuse every write and delete")
	fs.Int64Var(&c.PartSize, "s3-part-size", 0, "multipart upload part size in bytes (default: 8 MiB, more when --size-hint needs it)")
	fs.IntVar(&c.Parallel, "s3-parallel-parts", DefaultParallel, "parts uploaded at once")
	fs.Int64Var(&c.SizeHint, "size-hint", 0, "the most bytes the archive may take, such as the claim's capacity; sizes the upload's parts")
}

// ReadEnv fills c's credentials from the environment.
func (c *Config) ReadEnv() {
	c.AccessKeyID = os.Getenv(EnvAccessKeyID)
	c.SecretAccessKey = os.Getenv(EnvSecretAccessKey)
	c.SessionToken = os.Getenv(EnvSessionToken)
}

// Scheme starts the location of an object in a bucket: s3://BUCKET/KEY.
const Scheme = "s3://"

// Location is the s3:// URL of key in bucket; with an empty key, of the bucket's root.
func Location(bucket, key string) string {
	if key == "" {
		return Scheme + bucket
	}
	return Scheme + bucket + "/" + strings.TrimPrefix(key, "/")
}

// ParseLocation splits an s3://BUCKET/KEY URL; ok is false for anything else.
func ParseLocation(location string) (bucket, key string, ok bool) {
	rest, ok := strings.CutPrefix(location, Scheme)
	if !ok {
		return "", "", false
	}
	bucket, key, _ = strings.Cut(rest, "/")
	return bucket, key, bucket != ""
}
