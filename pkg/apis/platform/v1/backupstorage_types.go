package v1

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// +genclient
// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=bs,categories=backup-operator
// +kubebuilder:printcolumn:name="Backend",type=string,JSONPath=`.status.backend`
// +kubebuilder:printcolumn:name="Location",type=string,JSONPath=`.status.location`
// +kubebuilder:printcolumn:name="Access",type=string,JSONPath=`.spec.accessMode`
// +kubebuilder:printcolumn:name="Phase",type=string,JSONPath=`.status.phase`
// +kubebuilder:printcolumn:name="Last Validated",type=date,JSONPath=`.status.lastValidationTime`
// +kubebuilder:printcolumn:name="Archives",type=integer,JSONPath=`.status.archives`,priority=1
// +kubebuilder:printcolumn:name="Last Import",type=date,JSONPath=`.status.lastImportTime`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`

// BackupStorage names one place archives are kept: a bucket of an S3-compatible object store,
// or a claim's volume. BackupPolicies and Backups in the same namespace refer to it by name.
// The controller proves it usable with a short agent pod whenever it is created or changed, and
// the storage alone is enough to find every archive again (see status.lastImportTime).
type BackupStorage struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec says where archives go and how to reach it.
	Spec BackupStorageSpec `json:"spec"`
	// status is whether the storage works, and what was found on it.
	// +optional
	Status BackupStorageStatus `json:"status,omitempty"`
}

// StorageAccessMode says whether the operator may write to a storage.
// +kubebuilder:validation:Enum=ReadWrite;ReadOnly
type StorageAccessMode string

const (
	// StorageReadWrite lets backups write and retention delete: the default.
	StorageReadWrite StorageAccessMode = "ReadWrite"
	// StorageReadOnly allows restores and imports only: nothing is ever written or deleted,
	// as for a cluster that recovers from another cluster's bucket.
	StorageReadOnly StorageAccessMode = "ReadOnly"
)

// BackupStorageSpec says where archives go and how to reach it: exactly one backend.
// +kubebuilder:validation:XValidation:rule="has(self.s3) != has(self.persistentVolumeClaim)",message="set exactly one backend: s3 or persistentVolumeClaim"
type BackupStorageSpec struct {
	// s3 keeps archives in a bucket of an S3-compatible object store.
	// +optional
	S3 *S3Storage `json:"s3,omitempty"`

	// persistentVolumeClaim keeps archives on a claim's volume in the same namespace.
	// +optional
	PersistentVolumeClaim *StorageVolumeClaim `json:"persistentVolumeClaim,omitempty"`

	// accessMode is ReadWrite (default) or ReadOnly. A ReadOnly storage serves restores and
	// imports only: Backups that name it fail, and deleting a Backup leaves its archive.
	// +optional
	// +kubebuilder:default=ReadWrite
	AccessMode StorageAccessMode `json:"accessMode,omitempty"`

	// syncInterval is how often the storage is listed to import archives that have no Backup
	// in the namespace, besides on creation, on change and on demand (annotation
	// platform.example.com/sync-now). Defaults to 1h; 0s turns the periodic import off.
	// +optional
	// +kubebuilder:default="1h"
	SyncInterval *metav1.Duration `json:"syncInterval,omitempty"`

	// encryption encrypts every new archive in the agent, before it reaches the storage, and
	// gives restores the identity that decrypts archives.
	// +optional
	Encryption *Encryption `json:"encryption,omitempty"`
}

// S3Storage is a bucket of an S3-compatible object store. Archives are kept under
// <prefix>/<namespace>/<pvc>/<backup>.tar.zst, with .sha256 and .manifest.json objects beside
// them, and are never overwritten.
type S3Storage struct {
	// endpoint is the server's URL, such as https://s3.eu-west-1.amazonaws.com; the scheme
	// decides whether TLS is used.
	// +kubebuilder:validation:Pattern=`^https?://[^/?#\s]+/?$`
	Endpoint string `json:"endpoint"`

	// region of the bucket, such as eu-west-1. Empty asks the server; some servers need it.
	// +optional
	Region string `json:"region,omitempty"`

	// bucket that holds the archives. It must exist.
	// +kubebuilder:validation:MinLength=3
	// +kubebuilder:validation:MaxLength=63
	Bucket string `json:"bucket"`

	// prefix of every key the operator writes, such as "prod-cluster"; empty means the
	// bucket's root. Relative, without "..".
	// +optional
	// +kubebuilder:validation:MaxLength=512
	// +kubebuilder:validation:XValidation:rule="!self.startsWith('/') && !self.endsWith('/') && !self.split('/').exists(s, s == '..' || s == '.' || s == '')",message="prefix must be a relative key prefix such as a/b, without a leading or trailing '/', empty segments, '.' or '..'"
	Prefix string `json:"prefix,omitempty"`

	// forcePathStyle addresses the bucket as ENDPOINT/BUCKET instead of BUCKET.ENDPOINT, as most
	// servers other than AWS need.
	// +optional
	ForcePathStyle bool `json:"forcePathStyle,omitempty"`

	// credentialsSecretRef names the Secret, in the same namespace, that holds the access key.
	// Agent pods read it as environment variables; the controller never reads it. Omit it for
	// anonymous access.
	// +optional
	CredentialsSecretRef *S3CredentialsSecretRef `json:"credentialsSecretRef,omitempty"`

	// caBundle is a ConfigMap or Secret key, in the same namespace, with the PEM certificates of
	// the authorities that sign the endpoint's certificate, trusted besides the system's.
	// +optional
	CABundle *CABundleSource `json:"caBundle,omitempty"`

	// insecureSkipTLSVerify accepts any certificate from the endpoint. For tests only: anyone
	// on the network path can then read and change the archives.
	// +optional
	InsecureSkipTLSVerify bool `json:"insecureSkipTLSVerify,omitempty"`

	// serverSideEncryption asks the server to encrypt every object the operator writes.
	// +optional
	ServerSideEncryption *ServerSideEncryption `json:"serverSideEncryption,omitempty"`

	// objectLock sets a retention on every object the operator writes, so that nobody, the
	// operator included, can delete or overwrite an archive before it expires. The bucket must
	// have been created with object lock enabled.
	// +optional
	ObjectLock *ObjectLock `json:"objectLock,omitempty"`
}

// S3CredentialsSecretRef names a Secret and the keys of the credentials in it.
type S3CredentialsSecretRef struct {
	// name of the Secret, in the storage's namespace.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`

	// accessKeyIDKey is the key of the access key id. Defaults to AWS_ACCESS_KEY_ID.
	// +optional
	// +kubebuilder:default=AWS_ACCESS_KEY_ID
	AccessKeyIDKey string `json:"accessKeyIDKey,omitempty"`

	// secretAccessKeyKey is the key of the secret access key. Defaults to
	// AWS_SECRET_ACCESS_KEY.
	// +optional
	// +kubebuilder:default=AWS_SECRET_ACCESS_KEY
	SecretAccessKeyKey string `json:"secretAccessKeyKey,omitempty"`

	// sessionTokenKey is the key of a session token, for temporary credentials.
	// +optional
	SessionTokenKey string `json:"sessionTokenKey,omitempty"`
}

// CABundleSource is where a PEM bundle of certificate authorities is: exactly one of a
// ConfigMap key or a Secret key.
// +kubebuilder:validation:XValidation:rule="has(self.configMapKeyRef) != has(self.secretKeyRef)",message="set exactly one of configMapKeyRef and secretKeyRef"
type CABundleSource struct {
	// configMapKeyRef selects a key of a ConfigMap in the same namespace.
	// +optional
	ConfigMapKeyRef *corev1.ConfigMapKeySelector `json:"configMapKeyRef,omitempty"`
	// secretKeyRef selects a key of a Secret in the same namespace.
	// +optional
	SecretKeyRef *corev1.SecretKeySelector `json:"secretKeyRef,omitempty"`
}

// ServerSideEncryptionType is how the server encrypts objects.
// +kubebuilder:validation:Enum=SSE-S3;SSE-KMS
type ServerSideEncryptionType string

const (
	// SSES3 encrypts with keys the server manages.
	SSES3 ServerSideEncryptionType = "SSE-S3"
	// SSEKMS encrypts with a key of the server's key management service.
	SSEKMS ServerSideEncryptionType = "SSE-KMS"
)

// ServerSideEncryption asks the server to encrypt every object the operator writes.
// +kubebuilder:validation:XValidation:rule="self.type == 'SSE-KMS' || !has(self.kmsKeyID)",message="kmsKeyID goes with type SSE-KMS only"
type ServerSideEncryption struct {
	// type is SSE-S3 or SSE-KMS.
	Type ServerSideEncryptionType `json:"type"`
	// kmsKeyID is the KMS key of SSE-KMS; empty uses the server's default key.
	// +optional
	KMSKeyID string `json:"kmsKeyID,omitempty"`
}

// ObjectLockMode is the S3 object lock retention mode.
// +kubebuilder:validation:Enum=GOVERNANCE;COMPLIANCE
type ObjectLockMode string

const (
	// ObjectLockGovernance lets users with a special permission shorten a retention.
	ObjectLockGovernance ObjectLockMode = "GOVERNANCE"
	// ObjectLockCompliance lets nobody shorten a retention, not even the account's root.
	ObjectLockCompliance ObjectLockMode = "COMPLIANCE"
)

// ObjectLock is the retention set on every object the operator writes.
type ObjectLock struct {
	// mode is GOVERNANCE or COMPLIANCE.
	Mode ObjectLockMode `json:"mode"`
	// retainDays is how many days after it is written an object cannot be deleted.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=36500
	RetainDays int32 `json:"retainDays"`
}

// BackupStoragePhase says whether a storage was proven usable.
// +kubebuilder:validation:Enum=Available;Unavailable
type BackupStoragePhase string

const (
	// StorageAvailable: the last check reached the storage and proved it readable and, for
	// ReadWrite, writable.
	StorageAvailable BackupStoragePhase = "Available"
	// StorageUnavailable: the last check failed; the Ready condition says why.
	StorageUnavailable BackupStoragePhase = "Unavailable"
)

// Backend names of status.backend.
const (
	// BackendS3 is an S3-compatible bucket.
	BackendS3 = "s3"
	// BackendPersistentVolumeClaim is a claim's volume.
	BackendPersistentVolumeClaim = "persistentVolumeClaim"
)

// BackupStorageStatus is whether the storage works, and what was found on it.
type BackupStorageStatus struct {
	// observedGeneration is the spec generation this status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// backend is s3 or persistentVolumeClaim.
	// +optional
	Backend string `json:"backend,omitempty"`

	// location is where archives go, for people: the endpoint, bucket and prefix, or the
	// claim and subPath.
	// +optional
	Location string `json:"location,omitempty"`

	// phase is Available or Unavailable; empty until the first check ends.
	// +optional
	Phase BackupStoragePhase `json:"phase,omitempty"`

	// conditions: Ready is True when the last check proved the storage usable, else False with
	// a reason such as AccessDenied, BucketNotFound, TLSNotTrusted, WrongRegion or
	// EndpointUnreachable, and a message that says what to fix.
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// lastValidationTime is when the last check ended.
	// +optional
	LastValidationTime *metav1.Time `json:"lastValidationTime,omitempty"`

	// validatedGeneration is the spec generation the last check ran for, so that a change of
	// the spec checks again.
	// +optional
	ValidatedGeneration int64 `json:"validatedGeneration,omitempty"`

	// versioning is true when the bucket keeps old versions of objects.
	// +optional
	Versioning bool `json:"versioning,omitempty"`

	// objectLock is true when the bucket has object lock enabled.
	// +optional
	ObjectLock bool `json:"objectLock,omitempty"`

	// lastImportTime is when the storage was last listed for archives without a Backup in the
	// namespace; such archives are imported as Completed Backups.
	// +optional
	LastImportTime *metav1.Time `json:"lastImportTime,omitempty"`

	// archives is how many complete archives of this namespace the last listing found.
	// +optional
	Archives int32 `json:"archives,omitempty"`

	// importedBackups is how many Backups the last listing created.
	// +optional
	ImportedBackups int32 `json:"importedBackups,omitempty"`
}

// Labels and annotations of imported Backups and of the import.
const (
	// LabelImported marks a Backup that was created from an archive found on storage, rather
	// than by a run of its own.
	LabelImported = "platform.example.com/imported"
	// AnnotationImportedFrom on an imported Backup names the BackupStorage it was found on.
	AnnotationImportedFrom = "platform.example.com/imported-from"
	// AnnotationSyncNow on a BackupStorage asks for one import now for each distinct value.
	AnnotationSyncNow = "platform.example.com/sync-now"
)

// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object
// +kubebuilder:object:root=true

// BackupStorageList is a list of BackupStorage objects.
type BackupStorageList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata"`

	// items are the BackupStorages.
	Items []BackupStorage `json:"items"`
}
