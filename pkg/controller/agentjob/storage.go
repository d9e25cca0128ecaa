package agentjob

import (
	"fmt"
	"path"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"

	platformv1 "platform.example.com/backup-operator/pkg/apis/platform/v1"
	"platform.example.com/backup-operator/pkg/archive"
	listers "platform.example.com/backup-operator/pkg/generated/listers/platform/v1"
	"platform.example.com/backup-operator/pkg/storage/s3"
)

// Where the agent finds what a BackupStorage gives it besides environment variables.
const (
	// CABundleMountPath is the directory of the mounted CA bundle of an S3 endpoint.
	CABundleMountPath = "/etc/backup-operator/s3-ca"
	// CABundleFile is the bundle's file name in that directory.
	CABundleFile = "ca.crt"
)

// Storage is where archives are kept, resolved from a spec's storage and the BackupStorage it
// names: everything an agent Job needs to reach it. Exactly one of ClaimName and S3 is set.
type Storage struct {
	// Name is the BackupStorage; empty for an inline claim or the default claim.
	Name string
	// ClaimName and SubPath are the volume backend: the claim and the directory on it.
	ClaimName, SubPath string
	// S3 is the bucket backend.
	S3 *platformv1.S3Storage
	// ReadOnly storage is never written or deleted from.
	ReadOnly bool
	// Encryption, when set, encrypts new archives and decrypts old ones.
	Encryption *platformv1.Encryption
}

// IsS3 reports whether the archives are in a bucket.
func (s Storage) IsS3() bool { return s.S3 != nil }

// String names the storage for people: "claim backup-storage" or
// "BackupStorage offsite (s3://bucket/prefix)".
func (s Storage) String() string {
	where := "claim " + s.ClaimName
	if s.S3 != nil {
		where = s3.Location(s.S3.Bucket, s.S3.Prefix)
	}
	if s.Name == "" {
		return where
	}
	return fmt.Sprintf("BackupStorage %s (%s)", s.Name, where)
}

// Root is the key prefix of every archive: the claim's subPath or the bucket's prefix.
func (s Storage) Root() string {
	if s.S3 != nil {
		return strings.Trim(s.S3.Prefix, "/")
	}
	return s.SubPath
}

// ArchiveKey is where the archive name of claim pvc in namespace goes, relative to the
// storage's root: "<root>/<namespace>/<pvc>/<name>". One folder per claim keeps a volume's
// history together and lets people find it without the cluster.
func (s Storage) ArchiveKey(namespace, pvc, name string) string {
	return path.Join(s.Root(), namespace, pvc, name)
}

// Refusal is why a run cannot use its storage: a reason of the Succeeded condition and a
// message that says what to do.
type Refusal struct {
	Reason, Message string
}

// ResolveStorage finds where spec (a Backup's or policy's storage) keeps archives. A storage
// that cannot be used is a Refusal; an error is a failure to read the cache, worth a retry.
func ResolveStorage(lister listers.BackupStorageLister, namespace string, spec *platformv1.Storage) (Storage, *Refusal, error) {
	if spec == nil || spec.Name == "" {
		claim, subPath := StorageClaim(spec)
		s := Storage{ClaimName: claim, SubPath: subPath}
		if spec != nil && spec.Encryption != nil {
			s.Encryption = spec.Encryption.DeepCopy()
		}
		return s, nil, nil
	}
	bs, err := lister.BackupStorages(namespace).Get(spec.Name)
	if apierrors.IsNotFound(err) {
		return Storage{}, &Refusal{platformv1.ReasonStorageNotFound,
			fmt.Sprintf("BackupStorage %s does not exist in namespace %s: create it, or name another storage.", spec.Name, namespace)}, nil
	}
	if err != nil {
		return Storage{}, nil, err
	}
	s := Storage{Name: bs.Name, ReadOnly: bs.Spec.AccessMode == platformv1.StorageReadOnly}
	if bs.Spec.Encryption != nil {
		s.Encryption = bs.Spec.Encryption.DeepCopy()
	}
	switch {
	case bs.Spec.S3 != nil:
		s.S3 = bs.Spec.S3.DeepCopy()
	case bs.Spec.PersistentVolumeClaim != nil:
		s.ClaimName, s.SubPath = StorageClaim(&platformv1.Storage{PersistentVolumeClaim: bs.Spec.PersistentVolumeClaim})
	default:
		return Storage{}, &Refusal{platformv1.ReasonStorageNotFound,
			fmt.Sprintf("BackupStorage %s has no backend: set spec.s3 or spec.persistentVolumeClaim.", bs.Name)}, nil
	}
	return s, nil, nil
}

// WriteRefusal refuses to write a new archive to s: it is ReadOnly, or its encryption names no
// recipient, so nobody could read the archive. A storage that only restores needs neither.
func (s Storage) WriteRefusal() *Refusal {
	if s.ReadOnly {
		return &Refusal{platformv1.ReasonStorageReadOnly, fmt.Sprintf("%s is ReadOnly: it serves restores only, so nothing was written. Name a ReadWrite storage", s)}
	}
	if e := s.Encryption; e != nil && len(e.Recipients) == 0 && e.RecipientsConfigMapRef == nil {
		return &Refusal{platformv1.ReasonInvalidEncryption, fmt.Sprintf("The encryption of %s names only an identity, no recipient to encrypt new archives to, so nothing was written. "+
			"Add the age public keys to encryption.recipients or encryption.recipientsConfigMapRef, or name another storage", s)}
	}
	return nil
}

// Encrypted reports whether new archives on s are encrypted.
func (s Storage) Encrypted() bool { return s.Encryption != nil }

// Recipients is what a backup needs to encrypt its archive to s's recipients: flags for the keys
// in the spec, and the ConfigMap's keys as an environment variable. Both are empty when s is not
// encrypted.
func (s Storage) Recipients() (args []string, env []corev1.EnvVar) {
	e := s.Encryption
	if e == nil {
		return nil, nil
	}
	for _, r := range e.Recipients {
		args = append(args, "--recipient", r)
	}
	if ref := e.RecipientsConfigMapRef; ref != nil {
		env = append(env, corev1.EnvVar{Name: archive.EnvRecipients, ValueFrom: &corev1.EnvVarSource{ConfigMapKeyRef: ref.DeepCopy()}})
	}
	return args, env
}

// Identity is the environment variable that gives a restore the identity of s's archives, from
// the Secret the encryption names; false when it names none. The controller never reads it.
func (s Storage) Identity() (corev1.EnvVar, bool) {
	if s.Encryption == nil || s.Encryption.IdentitySecretRef == nil {
		return corev1.EnvVar{}, false
	}
	return corev1.EnvVar{Name: archive.EnvIdentity, ValueFrom: &corev1.EnvVarSource{SecretKeyRef: s.Encryption.IdentitySecretRef.DeepCopy()}}, true
}

// StorageOf is the storage that holds a Completed Backup's archive: the storage its spec names,
// in the bucket its artifact records, so that the archive stays reachable when the
// BackupStorage is later pointed at another bucket.
func StorageOf(lister listers.BackupStorageLister, b *platformv1.Backup) (Storage, *Refusal, error) {
	s, refusal, err := ResolveStorage(lister, b.Namespace, b.Spec.Storage)
	if refusal != nil || err != nil {
		return s, refusal, err
	}
	if a := b.Status.Artifact; a != nil && a.Bucket != "" && s.S3 != nil {
		s.S3.Bucket = a.Bucket
	}
	return s, nil, nil
}

// Access is what an agent needs to reach one archive: the location it passes as --output or
// --archive, the storage flags that follow it, and the claims, environment and volumes the pod
// gets.
type Access struct {
	// Location is the archive's file name in the pod, or its s3:// URL.
	Location string
	// Args are the storage flags.
	Args []string
	// Mounts are the storage claim, for the volume backend.
	Mounts []Mount
	// Env carries the credentials from the storage's Secret: the controller never reads it.
	Env []corev1.EnvVar
	// Volumes are mounted read-only into the agent's container: the CA bundle.
	Volumes []ConfigVolume
}

// ConfigVolume is a ConfigMap or Secret mounted read-only into the agent's container.
type ConfigVolume struct {
	// Name of the pod volume.
	Name string
	// Source is the ConfigMap or Secret, projected to the files the agent reads.
	Source corev1.VolumeSource
	// MountPath is where the agent sees it.
	MountPath string
}

// Access returns what the agent needs to reach the archive key. write says whether the run
// writes to the storage (a backup, a delete): only then is a claim mounted read-write and the
// object lock retention passed on.
func (s Storage) Access(key string, write bool) Access {
	if s.S3 == nil {
		return Access{
			Location: path.Join(StorageMountPath, path.Base(key)),
			Mounts:   []Mount{{Name: "storage", ClaimName: s.ClaimName, SubPath: dirOf(key), MountPath: StorageMountPath, ReadOnly: !write}},
		}
	}
	c := s.S3
	a := Access{Location: s3.Location(c.Bucket, key), Args: []string{"--s3-endpoint", strings.TrimSuffix(c.Endpoint, "/")}}
	if c.Region != "" {
		a.Args = append(a.Args, "--s3-region", c.Region)
	}
	if c.ForcePathStyle {
		a.Args = append(a.Args, "--s3-force-path-style")
	}
	if c.InsecureSkipTLSVerify {
		a.Args = append(a.Args, "--s3-insecure-skip-tls-verify")
	}
	if s.ReadOnly {
		a.Args = append(a.Args, "--s3-read-only")
	}
	if write {
		if e := c.ServerSideEncryption; e != nil {
			a.Args = append(a.Args, "--s3-sse", string(e.Type))
			if e.KMSKeyID != "" {
				a.Args = append(a.Args, "--s3-sse-kms-key-id", e.KMSKeyID)
			}
		}
		if l := c.ObjectLock; l != nil {
			a.Args = append(a.Args, "--s3-object-lock-mode", string(l.Mode), "--s3-object-lock-days", strconv.Itoa(int(l.RetainDays)))
		}
	}
	if ref := c.CredentialsSecretRef; ref != nil {
		a.Env = append(a.Env,
			secretEnv(s3.EnvAccessKeyID, ref.Name, orDefault(ref.AccessKeyIDKey, s3.EnvAccessKeyID)),
			secretEnv(s3.EnvSecretAccessKey, ref.Name, orDefault(ref.SecretAccessKeyKey, s3.EnvSecretAccessKey)))
		if ref.SessionTokenKey != "" {
			a.Env = append(a.Env, secretEnv(s3.EnvSessionToken, ref.Name, ref.SessionTokenKey))
		}
	}
	if ca := c.CABundle; ca != nil {
		v := ConfigVolume{Name: "s3-ca", MountPath: CABundleMountPath}
		switch {
		case ca.ConfigMapKeyRef != nil:
			v.Source.ConfigMap = &corev1.ConfigMapVolumeSource{
				LocalObjectReference: ca.ConfigMapKeyRef.LocalObjectReference,
				Items:                []corev1.KeyToPath{{Key: ca.ConfigMapKeyRef.Key, Path: CABundleFile}},
			}
		case ca.SecretKeyRef != nil:
			v.Source.Secret = &corev1.SecretVolumeSource{
				SecretName: ca.SecretKeyRef.Name,
				Items:      []corev1.KeyToPath{{Key: ca.SecretKeyRef.Key, Path: CABundleFile}},
			}
		}
		a.Volumes = append(a.Volumes, v)
		a.Args = append(a.Args, "--s3-ca-file", path.Join(CABundleMountPath, CABundleFile))
	}
	return a
}

func secretEnv(name, secret, key string) corev1.EnvVar {
	return corev1.EnvVar{Name: name, ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
		LocalObjectReference: corev1.LocalObjectReference{Name: secret}, Key: key,
	}}}
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// dirOf is the directory of key, or "" for a key at the root.
func dirOf(key string) string {
	if d := path.Dir(key); d != "." {
		return d
	}
	return ""
}

// ArtifactEncryption is what a Backup records of its archive's encryption, as the agent or the
// archive's manifest tells it.
func ArtifactEncryption(e *archive.Encryption) *platformv1.ArtifactEncryption {
	if e == nil {
		return nil
	}
	return &platformv1.ArtifactEncryption{Type: e.Type, RecipientFingerprints: slices.Clone(e.RecipientFingerprints)}
}
