//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"encoding/hex"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"

	platformv1 "platform.example.com/backup-operator/pkg/apis/platform/v1"
	"platform.example.com/backup-operator/pkg/generated/clientset/versioned"
)

// The S3 backend against the real S3 server of the local node (hack/local-cluster.sh s3-env):
// backups to a bucket and restores from it, storage problems named in the BackupStorage's
// status, a tampered object refused, and object lock.

// s3Env is the local node's S3 server, as `hack/local-cluster.sh s3-env` describes it; make e2e
// exports it.
type s3Env struct {
	Endpoint, CAFile, AccessKey, SecretKey, Bucket, LockedBucket, Region string
	CA                                                                   []byte
	Client                                                               *minio.Client
}

func requireS3(t *testing.T) *s3Env {
	t.Helper()
	s := &s3Env{
		Endpoint: os.Getenv("S3_ENDPOINT"), CAFile: os.Getenv("S3_CA_FILE"),
		AccessKey: os.Getenv("AWS_ACCESS_KEY_ID"), SecretKey: os.Getenv("AWS_SECRET_ACCESS_KEY"),
		Bucket: os.Getenv("S3_BUCKET"), LockedBucket: os.Getenv("S3_LOCKED_BUCKET"), Region: os.Getenv("S3_REGION"),
	}
	if s.Endpoint == "" || s.CAFile == "" || s.AccessKey == "" || s.Bucket == "" {
		t.Fatalf("the local node's S3 server is not described: run the e2e tests with make e2e, which exports `hack/local-cluster.sh s3-env`")
	}
	ca, err := os.ReadFile(s.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	s.CA = ca
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca)
	host := strings.TrimPrefix(strings.TrimPrefix(s.Endpoint, "https://"), "http://")
	s.Client, err = minio.New(strings.TrimSuffix(host, "/"), &minio.Options{
		Creds: credentials.NewStaticV4(s.AccessKey, s.SecretKey, ""), Secure: strings.HasPrefix(s.Endpoint, "https://"),
		Region: s.Region, BucketLookup: minio.BucketLookupPath,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}},
	})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// storage creates, in ns, the Secret with the credentials (the given secret key), the ConfigMap
// with the CA (unless noCA), and the BackupStorage name on bucket under the prefix ns.
func (s *s3Env) storage(t *testing.T, e *Env, c versioned.Interface, ns, name, bucket, secretKey string, noCA bool, lock *platformv1.ObjectLock) {
	t.Helper()
	ctx := testContext(t)
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name + "-creds"}, StringData: map[string]string{
		"AWS_ACCESS_KEY_ID": s.AccessKey, "AWS_SECRET_ACCESS_KEY": secretKey}}
	if _, err := e.Kube.CoreV1().Secrets(ns).Create(ctx, secret, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	spec := &platformv1.S3Storage{
		Endpoint: s.Endpoint, Region: s.Region, Bucket: bucket, Prefix: ns, ForcePathStyle: true,
		CredentialsSecretRef: &platformv1.S3CredentialsSecretRef{Name: secret.Name},
		ObjectLock:           lock,
	}
	if !noCA {
		cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name + "-ca"}, Data: map[string]string{"ca.crt": string(s.CA)}}
		if _, err := e.Kube.CoreV1().ConfigMaps(ns).Create(ctx, cm, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		spec.CABundle = &platformv1.CABundleSource{ConfigMapKeyRef: &corev1.ConfigMapKeySelector{
			LocalObjectReference: corev1.LocalObjectReference{Name: cm.Name}, Key: "ca.crt"}}
	}
	bs := &platformv1.BackupStorage{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: platformv1.BackupStorageSpec{S3: spec}}
	if _, err := c.PlatformV1().BackupStorages(ns).Create(ctx, bs, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// waitStorage waits for the storage's first check and fails unless it ended in phase with reason.
func waitStorage(t *testing.T, c versioned.Interface, ns, name string, phase platformv1.BackupStoragePhase, reason string) *platformv1.BackupStorage {
	t.Helper()
	var bs *platformv1.BackupStorage
	Eventually(t, 2*time.Minute, time.Second, "BackupStorage "+name+" to be checked", func() (bool, error) {
		var err error
		bs, err = c.PlatformV1().BackupStorages(ns).Get(testContext(t), name, metav1.GetOptions{})
		return err == nil && bs.Status.Phase != "", err
	})
	ready := meta.FindStatusCondition(bs.Status.Conditions, platformv1.ConditionReady)
	if bs.Status.Phase != phase || ready == nil || ready.Reason != reason {
		t.Fatalf("BackupStorage %s is %s with %+v, want %s with reason %s", name, bs.Status.Phase, ready, phase, reason)
	}
	return bs
}

// readOnly makes the BackupStorage name ReadOnly.
func readOnly(t *testing.T, c versioned.Interface, ns, name string) {
	t.Helper()
	editStorage(t, c, ns, name, func(bs *platformv1.BackupStorage) { bs.Spec.AccessMode = platformv1.StorageReadOnly })
}

// editStorage changes the BackupStorage name with edit. The controller adds its finalizer and
// annotations concurrently: a conflict is retried on a fresh copy.
func editStorage(t *testing.T, c versioned.Interface, ns, name string, edit func(*platformv1.BackupStorage)) {
	t.Helper()
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		bs, err := c.PlatformV1().BackupStorages(ns).Get(testContext(t), name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		edit(bs)
		_, err = c.PlatformV1().BackupStorages(ns).Update(testContext(t), bs, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

// backupTo creates the Backup name of claim pvc to the storage.
func backupTo(t *testing.T, c versioned.Interface, ns, name, pvc, storage string) {
	t.Helper()
	b := &platformv1.Backup{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: platformv1.BackupSpec{PVCName: pvc,
		BackupRunSettings: platformv1.BackupRunSettings{Storage: &platformv1.Storage{Name: storage}}}}
	if _, err := c.PlatformV1().Backups(ns).Create(testContext(t), b, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// keys lists the objects below prefix in bucket.
func (s *s3Env) keys(t *testing.T, bucket, prefix string) []string {
	t.Helper()
	var keys []string
	for o := range s.Client.ListObjects(testContext(t), bucket, minio.ListObjectsOptions{Prefix: prefix + "/", Recursive: true}) {
		if o.Err != nil {
			t.Fatal(o.Err)
		}
		keys = append(keys, o.Key)
	}
	return keys
}

// openUploads lists the multipart uploads left open below prefix in bucket.
func (s *s3Env) openUploads(t *testing.T, bucket, prefix string) []string {
	t.Helper()
	var open []string
	for u := range s.Client.ListIncompleteUploads(testContext(t), bucket, prefix+"/", true) {
		if u.Err != nil {
			t.Fatal(u.Err)
		}
		open = append(open, u.Key)
	}
	return open
}

func TestBackupToS3AndRestoreFromIt(t *testing.T) {
	t.Parallel()
	e := requireEnv(t)
	s := requireS3(t)
	c := platformClient(t, e)
	ns := e.Namespace(t)
	s.storage(t, e, c, ns, "offsite", s.Bucket, s.SecretKey, false, nil)
	bs := waitStorage(t, c, ns, "offsite", platformv1.StorageAvailable, "Available")
	if bs.Status.Backend != platformv1.BackendS3 || !strings.Contains(bs.Status.Location, s.Bucket) {
		t.Errorf("status backend %q location %q, want s3 and the bucket", bs.Status.Backend, bs.Status.Location)
	}

	dataDir := e.HostPathPVC(t, ns, "data", "1Gi")
	writeTree(t, dataDir)
	backupTo(t, c, ns, "nightly", "data", "offsite")
	b := waitBackup(t, c, ns, "nightly", platformv1.BackupCompleted)
	a := b.Status.Artifact
	key := ns + "/" + ns + "/data/nightly.tar.zst"
	if a.Path != key || a.Bucket != s.Bucket || a.StorageName != "offsite" {
		t.Fatalf("artifact %+v, want key %s in bucket %s of storage offsite", a, key, s.Bucket)
	}
	if got := s.keys(t, s.Bucket, ns); !reflect.DeepEqual(got, []string{key, key + ".manifest.json", key + ".sha256"}) {
		t.Fatalf("objects %q, want the archive, its manifest and its checksum", got)
	}
	obj, err := s.Client.GetObject(testContext(t), s.Bucket, key, minio.GetObjectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	n, err := io.Copy(h, obj)
	obj.Close()
	if err != nil || n != a.Size || hex.EncodeToString(h.Sum(nil)) != a.SHA256 {
		t.Fatalf("the object has %d bytes hashing to %x (%v); the Backup recorded %d bytes, %s", n, h.Sum(nil), err, a.Size, a.SHA256)
	}

	restoredDir := e.HostPathPV(t, ns, "restored", "1Gi")
	class, size := storageClass, resource.MustParse("1Gi")
	createRestore(t, c, ns, "rehearsal", "nightly", platformv1.RestoreTarget{
		ClaimName: "restored", Create: &platformv1.TargetClaimTemplate{StorageClassName: &class, Size: &size},
	}, "")
	r := waitRestore(t, c, ns, "rehearsal", platformv1.RestoreCompleted, "")
	if r.Status.VerifiedSHA256 != a.SHA256 {
		t.Fatalf("restore verified %q, want %s", r.Status.VerifiedSHA256, a.SHA256)
	}
	want := snapshot(t, dataDir)
	if got := snapshot(t, restoredDir); !reflect.DeepEqual(want, got) {
		t.Fatalf("restored tree differs from the backed-up one:\nwant %v\ngot  %v", want, got)
	}

	// The emergency restore of docs/storage.md, without the operator: the objects as any S3
	// client fetches them, sha256sum -c, and tar.
	emergency := t.TempDir()
	for _, k := range []string{key, key + ".sha256"} {
		if err := s.Client.FGetObject(testContext(t), s.Bucket, k, filepath.Join(emergency, path.Base(k)), minio.GetObjectOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	emergencyRestore(t, emergency, path.Base(key), want, `tar --zstd -xpf "$1" -C "$2"`)

	// Deleting the Backup deletes its three objects.
	if err := c.PlatformV1().Backups(ns).Delete(testContext(t), "nightly", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	Eventually(t, 2*time.Minute, time.Second, "the archive's objects to be deleted", func() (bool, error) {
		return len(s.keys(t, s.Bucket, ns)) == 0, nil
	})
}

func TestS3StorageProblemsAreNamed(t *testing.T) {
	t.Parallel()
	e := requireEnv(t)
	s := requireS3(t)
	c := platformClient(t, e)
	ns := e.Namespace(t)
	s.storage(t, e, c, ns, "wrong-key", s.Bucket, "not-the-secret", false, nil)
	s.storage(t, e, c, ns, "no-bucket", "no-such-bucket-"+ns[len(ns)-4:], s.SecretKey, false, nil)
	s.storage(t, e, c, ns, "untrusted", s.Bucket, s.SecretKey, true, nil)
	waitStorage(t, c, ns, "wrong-key", platformv1.StorageUnavailable, "AccessDenied")
	waitStorage(t, c, ns, "no-bucket", platformv1.StorageUnavailable, "BucketNotFound")
	waitStorage(t, c, ns, "untrusted", platformv1.StorageUnavailable, "TLSNotTrusted")

	// A backup to a storage that refuses it fails with the storage's reason and leaves nothing.
	dataDir := e.HostPathPVC(t, ns, "data", "1Gi")
	writeTree(t, dataDir)
	backupTo(t, c, ns, "refused", "data", "wrong-key")
	b := waitBackup(t, c, ns, "refused", platformv1.BackupFailed)
	if cond := meta.FindStatusCondition(b.Status.Conditions, platformv1.ConditionSucceeded); cond == nil || cond.Reason != "AccessDenied" {
		t.Fatalf("Succeeded condition %+v, want reason AccessDenied", cond)
	}
	if keys, open := s.keys(t, s.Bucket, ns), s.openUploads(t, s.Bucket, ns); len(keys)+len(open) > 0 {
		t.Fatalf("a refused backup left objects %q and open uploads %q", keys, open)
	}
}

func TestTamperedS3ObjectFailsTheRestoreWithoutTouchingTheTarget(t *testing.T) {
	t.Parallel()
	e := requireEnv(t)
	s := requireS3(t)
	c := platformClient(t, e)
	ns := e.Namespace(t)
	s.storage(t, e, c, ns, "offsite", s.Bucket, s.SecretKey, false, nil)
	dataDir := e.HostPathPVC(t, ns, "data", "1Gi")
	writeTree(t, dataDir)
	backupTo(t, c, ns, "nightly", "data", "offsite")
	a := waitBackup(t, c, ns, "nightly", platformv1.BackupCompleted).Status.Artifact

	// Someone with write access to the bucket replaces the archive with one of the same size.
	forged := bytes.Repeat([]byte{0x28}, int(a.Size))
	if _, err := s.Client.PutObject(testContext(t), s.Bucket, a.Path, bytes.NewReader(forged), a.Size, minio.PutObjectOptions{}); err != nil {
		t.Fatal(err)
	}
	targetDir := e.HostPathPVC(t, ns, "target", "1Gi")
	before := snapshot(t, targetDir)
	createRestore(t, c, ns, "forged", "nightly", platformv1.RestoreTarget{ClaimName: "target"}, "")
	waitRestore(t, c, ns, "forged", platformv1.RestoreFailed, platformv1.ReasonChecksumMismatch)
	if after := snapshot(t, targetDir); !reflect.DeepEqual(before, after) {
		t.Fatalf("a restore of a tampered archive changed the target:\nbefore %v\nafter  %v", before, after)
	}
}

func TestObjectLockedArchiveOutlivesItsBackup(t *testing.T) {
	t.Parallel()
	e := requireEnv(t)
	s := requireS3(t)
	if s.LockedBucket == "" {
		t.Fatal("S3_LOCKED_BUCKET is not set: the local node's S3 server has a bucket with object lock")
	}
	c := platformClient(t, e)
	ns := e.Namespace(t)
	s.storage(t, e, c, ns, "vault", s.LockedBucket, s.SecretKey, false, &platformv1.ObjectLock{Mode: platformv1.ObjectLockGovernance, RetainDays: 1})
	bs := waitStorage(t, c, ns, "vault", platformv1.StorageAvailable, "Available")
	if !bs.Status.ObjectLock {
		t.Errorf("status objectLock false, want the bucket's object lock detected")
	}
	dataDir := e.HostPathPVC(t, ns, "data", "1Gi")
	writeTree(t, dataDir)
	backupTo(t, c, ns, "locked", "data", "vault")
	a := waitBackup(t, c, ns, "locked", platformv1.BackupCompleted).Status.Artifact

	ctx := testContext(t)
	// The retention as the server reports it on the object (GetObjectRetention's reply is
	// not one every client parses).
	info, err := s.Client.StatObject(ctx, s.LockedBucket, a.Path, minio.StatObjectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	mode := info.Metadata.Get("X-Amz-Object-Lock-Mode")
	until, uerr := time.Parse(time.RFC3339, info.Metadata.Get("X-Amz-Object-Lock-Retain-Until-Date"))
	if mode != "GOVERNANCE" || uerr != nil || until.Before(time.Now().Add(23*time.Hour)) {
		t.Fatalf("retention %q until %v (%v), want GOVERNANCE for a day", mode, until, uerr)
	}
	if err := c.PlatformV1().Backups(ns).Delete(ctx, "locked", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	Eventually(t, 2*time.Minute, time.Second, "the Backup to go", func() (bool, error) {
		_, err := c.PlatformV1().Backups(ns).Get(ctx, "locked", metav1.GetOptions{})
		return err != nil, nil
	})
	events, err := e.Kube.CoreV1().Events(ns).List(ctx, metav1.ListOptions{FieldSelector: "reason=ArchiveLocked"})
	if err != nil || len(events.Items) != 1 || !strings.Contains(events.Items[0].Message, "kept by object lock until") {
		t.Fatalf("ArchiveLocked events %+v (%v), want one naming the date", events, err)
	}
	if _, err := s.Client.StatObject(ctx, s.LockedBucket, a.Path, minio.StatObjectOptions{}); err != nil {
		t.Fatalf("the locked archive is gone: %v", err)
	}
	// The test's own cleanup: governance retention yields to a bypass.
	t.Cleanup(func() {
		for _, k := range s.keys(t, s.LockedBucket, ns) {
			_ = s.Client.RemoveObject(context.Background(), s.LockedBucket, k, minio.RemoveObjectOptions{GovernanceBypass: true})
		}
	})
}

func TestReadOnlyStorageIsNeverWritten(t *testing.T) {
	t.Parallel()
	e := requireEnv(t)
	s := requireS3(t)
	c := platformClient(t, e)
	ns := e.Namespace(t)
	s.storage(t, e, c, ns, "mirror", s.Bucket, s.SecretKey, false, nil)
	readOnly(t, c, ns, "mirror")
	Eventually(t, 2*time.Minute, time.Second, "the ReadOnly storage to be checked", func() (bool, error) {
		got, err := c.PlatformV1().BackupStorages(ns).Get(testContext(t), "mirror", metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		ready := meta.FindStatusCondition(got.Status.Conditions, platformv1.ConditionReady)
		return got.Status.ValidatedGeneration == got.Generation && got.Status.Phase == platformv1.StorageAvailable && ready != nil, nil
	})

	dataDir := e.HostPathPVC(t, ns, "data", "1Gi")
	writeTree(t, dataDir)
	backupTo(t, c, ns, "refused", "data", "mirror")
	b := waitBackup(t, c, ns, "refused", platformv1.BackupFailed)
	if cond := meta.FindStatusCondition(b.Status.Conditions, platformv1.ConditionSucceeded); cond == nil || cond.Reason != platformv1.ReasonStorageReadOnly {
		t.Fatalf("Succeeded condition %+v, want reason %s", cond, platformv1.ReasonStorageReadOnly)
	}
	if keys, open := s.keys(t, s.Bucket, ns), s.openUploads(t, s.Bucket, ns); len(keys)+len(open) > 0 {
		t.Fatalf("a ReadOnly storage got objects %q and uploads %q", keys, open)
	}
}

func TestAgentStoppedMidUploadLeavesNothing(t *testing.T) {
	t.Parallel()
	e := requireEnv(t)
	s := requireS3(t)
	c := platformClient(t, e)
	ns := e.Namespace(t)
	s.storage(t, e, c, ns, "offsite", s.Bucket, s.SecretKey, false, nil)
	waitStorage(t, c, ns, "offsite", platformv1.StorageAvailable, "Available")

	// 256 MiB that does not compress, read by an agent held to a tenth of a core: the upload
	// runs long enough to be caught in the middle.
	dataDir := e.HostPathPVC(t, ns, "data", "1Gi")
	noise := make([]byte, 256<<20)
	for i := 0; i < len(noise); i += 8 {
		binary.LittleEndian.PutUint64(noise[i:], rand.Uint64())
	}
	if err := os.WriteFile(filepath.Join(dataDir, "noise.bin"), noise, 0o644); err != nil {
		t.Fatal(err)
	}
	b := &platformv1.Backup{ObjectMeta: metav1.ObjectMeta{Name: "stopped"}, Spec: platformv1.BackupSpec{PVCName: "data",
		BackupRunSettings: platformv1.BackupRunSettings{
			Storage: &platformv1.Storage{Name: "offsite"},
			JobSettings: platformv1.JobSettings{BackoffLimit: ptr.To[int32](0), Resources: &corev1.ResourceRequirements{
				Limits: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m")}}},
		}}}
	if _, err := c.PlatformV1().Backups(ns).Create(testContext(t), b, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	Eventually(t, 2*time.Minute, 100*time.Millisecond, "the upload to start", func() (bool, error) {
		return len(s.openUploads(t, s.Bucket, ns)) > 0, nil
	})
	// What an eviction or a rollout does: the agent gets SIGTERM and its grace period.
	if err := e.Kube.CoreV1().Pods(ns).DeleteCollection(testContext(t), metav1.DeleteOptions{},
		metav1.ListOptions{LabelSelector: platformv1.LabelBackup + "=stopped"}); err != nil {
		t.Fatal(err)
	}
	waitBackup(t, c, ns, "stopped", platformv1.BackupFailed)
	if keys, open := s.keys(t, s.Bucket, ns), s.openUploads(t, s.Bucket, ns); len(keys)+len(open) > 0 {
		t.Fatalf("a stopped upload left objects %q and open uploads %q", keys, open)
	}
}

// TestNamespaceRecoversFromTheBucketAlone is the disaster the object storage is for: the
// namespace is deleted with every Backup object, and a new namespace of the same name, given
// only a ReadOnly BackupStorage on the same bucket, sees its Backups again and restores them.
func TestNamespaceRecoversFromTheBucketAlone(t *testing.T) {
	t.Parallel()
	e := requireEnv(t)
	s := requireS3(t)
	c := platformClient(t, e)
	ctx := testContext(t)
	ns := e.Namespace(t)
	s.storage(t, e, c, ns, "offsite", s.Bucket, s.SecretKey, false, nil)
	dataDir := e.HostPathPVC(t, ns, "data", "1Gi")
	writeTree(t, dataDir)
	want := snapshot(t, dataDir)
	backupTo(t, c, ns, "nightly", "data", "offsite")
	a := waitBackup(t, c, ns, "nightly", platformv1.BackupCompleted).Status.Artifact

	// The disaster.
	if err := e.Kube.CoreV1().Namespaces().Delete(ctx, ns, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	Eventually(t, 3*time.Minute, time.Second, "namespace "+ns+" to be gone", func() (bool, error) {
		_, err := e.Kube.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
		return apierrors.IsNotFound(err), err
	})
	if keys := s.keys(t, s.Bucket, ns); len(keys) != 3 {
		t.Fatalf("after the namespace was deleted the bucket holds %q, want the archive and its two side objects", keys)
	}

	// The recovery: the same name, the bucket, read-only, and nothing else.
	if _, err := e.Kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns,
		Labels: map[string]string{"e2e.platform.example.com/test": "true"}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	Eventually(t, serviceAccountProvisionTimeout, 250*time.Millisecond, "the default ServiceAccount", func() (bool, error) {
		_, err := e.Kube.CoreV1().ServiceAccounts(ns).Get(ctx, "default", metav1.GetOptions{})
		return err == nil, err
	})
	s.storage(t, e, c, ns, "offsite", s.Bucket, s.SecretKey, false, nil)
	readOnly(t, c, ns, "offsite")
	var b *platformv1.Backup
	var err error
	Eventually(t, 3*time.Minute, time.Second, "the Backup to be imported", func() (bool, error) {
		b, err = c.PlatformV1().Backups(ns).Get(ctx, "nightly", metav1.GetOptions{})
		return err == nil && b.Status.Phase == platformv1.BackupCompleted, err
	})
	got := b.Status.Artifact
	if b.Labels[platformv1.LabelImported] != "true" || got.SHA256 != a.SHA256 || got.Path != a.Path || got.Size != a.Size || got.SourceBytes != a.SourceBytes {
		t.Fatalf("imported Backup labels %v artifact %+v, want the imported label and the archive %+v", b.Labels, got, a)
	}
	restoredDir := e.HostPathPV(t, ns, "restored", "1Gi")
	class, size := storageClass, resource.MustParse("1Gi")
	createRestore(t, c, ns, "recovery", "nightly", platformv1.RestoreTarget{
		ClaimName: "restored", Create: &platformv1.TargetClaimTemplate{StorageClassName: &class, Size: &size},
	}, "")
	waitRestore(t, c, ns, "recovery", platformv1.RestoreCompleted, "")
	if restored := snapshot(t, restoredDir); !reflect.DeepEqual(want, restored) {
		t.Fatalf("recovered tree differs from the backed-up one:\nwant %v\ngot  %v", want, restored)
	}
	// A read-only storage keeps what it holds when the Backup goes.
	if err := c.PlatformV1().Backups(ns).Delete(ctx, "nightly", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	Eventually(t, 2*time.Minute, time.Second, "the imported Backup to go", func() (bool, error) {
		_, err := c.PlatformV1().Backups(ns).Get(ctx, "nightly", metav1.GetOptions{})
		return apierrors.IsNotFound(err), nil
	})
	if keys := s.keys(t, s.Bucket, ns); len(keys) != 3 {
		t.Fatalf("deleting a Backup of a ReadOnly storage changed the bucket: %q", keys)
	}
	t.Cleanup(func() {
		for _, k := range s.keys(t, s.Bucket, ns) {
			_ = s.Client.RemoveObject(context.Background(), s.Bucket, k, minio.RemoveObjectOptions{})
		}
	})
}

// emergencyRestore is the restore of docs/storage.md without the operator, in dir, which holds
// the archive name and its .sha256: sha256sum -c, then script (sh, with the archive as $1 and an
// empty directory as $2), whose result must be the tree want.
func emergencyRestore(t *testing.T, dir, name string, want map[string]entry, script string) {
	t.Helper()
	check := exec.Command("sha256sum", "-c", name+".sha256")
	check.Dir = dir
	if out, err := check.CombinedOutput(); err != nil || !strings.Contains(string(out), ": OK") {
		t.Fatalf("sha256sum -c: %v\n%s", err, out)
	}
	plain, err := os.MkdirTemp(dir, "tree")
	if err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("sh", "-c", script, "sh", filepath.Join(dir, name), plain).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", script, err, out)
	}
	if got := snapshot(t, plain); !reflect.DeepEqual(want, got) {
		t.Fatalf("the tree %q restored differs from the backed-up one:\nwant %v\ngot  %v", script, want, got)
	}
}
