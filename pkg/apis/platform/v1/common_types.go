package v1

import (
	corev1 "k8s.io/api/core/v1"
)

// Compression is how an archive's tar stream is compressed.
// +kubebuilder:validation:Enum=zstd;gzip;none
type Compression string

const (
	// CompressionZstd writes a .tar.zst archive: the default, fast on every core.
	CompressionZstd Compression = "zstd"
	// CompressionGzip writes a .tar.gz archive, for tools that cannot read zstd.
	CompressionGzip Compression = "gzip"
	// CompressionNone writes a plain .tar archive, for data that is already compressed.
	CompressionNone Compression = "none"
)

// DeletionPolicy says what happens to a Backup's archive when the Backup object is deleted.
// +kubebuilder:validation:Enum=Delete;Retain
type DeletionPolicy string

const (
	// DeletionPolicyDelete removes the archive and its checksum and manifest files with the Backup.
	DeletionPolicyDelete DeletionPolicy = "Delete"
	// DeletionPolicyRetain keeps the archive on storage after the Backup object is gone.
	DeletionPolicyRetain DeletionPolicy = "Retain"
)

// Defaults that apply when a field is left empty. The CRD schema sets the same values, so an
// object read back from the API server shows them; the controllers apply them too because objects
// can also come from clients that skip schema defaulting (tests, older CRD versions).
const (
	// DefaultStorageClaimName is the claim that stores archives when a spec names none.
	DefaultStorageClaimName = "backup-storage"
	// DefaultCompression is the compression of an archive when a spec names none.
	DefaultCompression = CompressionZstd
	// DefaultActiveDeadlineSeconds bounds one backup or restore run: six hours.
	DefaultActiveDeadlineSeconds int64 = 21600
	// DefaultBackoffLimit is how many times a failed backup or restore pod is retried.
	DefaultBackoffLimit int32 = 2
	// DefaultKeepFailed is how many Failed Backups of each claim a policy keeps.
	DefaultKeepFailed int32 = 3
	// DefaultPendingDeadlineSeconds is how long a run's pod may take to start: fifteen minutes,
	// time enough to pull an image and attach a volume.
	DefaultPendingDeadlineSeconds int64 = 900
)

// Storage says where archives are kept: a BackupStorage by name, or a claim inline.
// +kubebuilder:validation:XValidation:rule="has(self.name) != has(self.persistentVolumeClaim)",message="storage needs exactly one of name (a BackupStorage) and persistentVolumeClaim.claimName"
// +kubebuilder:validation:XValidation:rule="!has(self.name) || !has(self.encryption)",message="the encryption of a BackupStorage is set on the BackupStorage, not where it is named"
type Storage struct {
	// name of a BackupStorage in the same namespace that keeps the archives, such as an S3
	// bucket.
	// +optional
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name,omitempty"`

	// persistentVolumeClaim keeps archives on the volume of a claim in the same namespace. Give it
	// an access mode that lets backup pods on any node mount it (ReadWriteMany), or keep all
	// backed-up volumes on one node.
	// +optional
	PersistentVolumeClaim *StorageVolumeClaim `json:"persistentVolumeClaim,omitempty"`

	// encryption encrypts the archives on the inline claim before they are written. A
	// BackupStorage carries its own, in its spec.
	// +optional
	Encryption *Encryption `json:"encryption,omitempty"`
}

// Encryption encrypts archives in the agent, before they leave it, with age (X25519 recipients,
// ChaCha20-Poly1305): <name>.tar.zst.age. Writing a backup needs only the public keys; reading
// one needs a private key (an identity), so the pods that write backups cannot read older ones.
// Losing every identity of an archive loses its data: keep one offline, as an escrow recipient.
// +kubebuilder:validation:XValidation:rule="has(self.recipients) || has(self.recipientsConfigMapRef) || has(self.identitySecretRef)",message="encryption needs recipients or recipientsConfigMapRef (the public keys new archives are encrypted to), or identitySecretRef alone on a storage that only restores"
type Encryption struct {
	// recipients are age public keys (age1...). Every new archive is encrypted so that each of
	// them can decrypt it; adding one applies to new backups only.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:Pattern=`^age1[02-9ac-hj-np-z]{58}$`
	Recipients []string `json:"recipients,omitempty"`

	// recipientsConfigMapRef selects a ConfigMap key, in the same namespace, that lists more
	// recipients, one per line ("#" starts a comment), as age -R reads them.
	// +optional
	RecipientsConfigMapRef *corev1.ConfigMapKeySelector `json:"recipientsConfigMapRef,omitempty"`

	// identitySecretRef selects a Secret key, in the same namespace, holding age identities
	// (AGE-SECRET-KEY-1..., one per line), as age-keygen writes them. Only restore pods get it;
	// the controller never reads it. Without it, encrypted archives are written but cannot be
	// restored in the cluster.
	// +optional
	IdentitySecretRef *corev1.SecretKeySelector `json:"identitySecretRef,omitempty"`
}

// EncryptionAge is the only encryption: age, with X25519 recipients.
const EncryptionAge = "age"

// StorageVolumeClaim names the claim whose volume holds archives, and the directory on it.
type StorageVolumeClaim struct {
	// claimName is the PersistentVolumeClaim, in the same namespace, whose volume holds archives.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	ClaimName string `json:"claimName"`

	// subPath is a directory on that volume under which archives are written: relative, without
	// "..". Empty means the volume's root.
	// +optional
	// +kubebuilder:validation:MaxLength=1024
	// +kubebuilder:validation:XValidation:rule="!self.startsWith('/') && !self.split('/').exists(s, s == '..')",message="subPath must be a relative path without '..' segments"
	SubPath string `json:"subPath,omitempty"`
}

// BackupRunSettings are the knobs of one backup run. A BackupPolicy carries them and copies them
// into every Backup it creates, so a Backup records exactly how it was taken.
type BackupRunSettings struct {
	// storage says where the archive is written. Defaults to the claim "backup-storage" in the
	// same namespace.
	// +optional
	// +kubebuilder:default={persistentVolumeClaim: {claimName: backup-storage}}
	Storage *Storage `json:"storage,omitempty"`

	// source says how the claim is read: directly (default), or from a CSI VolumeSnapshot cut
	// at one instant.
	// +optional
	// +kubebuilder:default={copyMethod: Direct}
	Source *BackupSource `json:"source,omitempty"`

	// compression of the tar stream: zstd (default, .tar.zst), gzip (.tar.gz) or none (.tar).
	// Every choice can be restored with plain tar.
	// +optional
	// +kubebuilder:default=zstd
	Compression Compression `json:"compression,omitempty"`

	// hooks run commands in the pod that mounts the claim before and after it is read, such as
	// a CHECKPOINT, a flush or a freeze; they run from the agent pod, as execServiceAccountName.
	// +optional
	Hooks *BackupHooks `json:"hooks,omitempty"`

	// execServiceAccountName is the ServiceAccount the agent pod runs as when source.command or
	// hooks are set: grant it get on pods and create on pods/exec in this namespace only (see
	// manifests/examples/exec-rbac.yaml). The operator itself never holds pods/exec.
	// +optional
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	ExecServiceAccountName string `json:"execServiceAccountName,omitempty"`

	// JobSettings bound the run's Job and size its pod.
	JobSettings `json:",inline"`

	// deletionPolicy says what deleting a Backup does to its archive: Delete (default) removes
	// it, Retain keeps it on storage.
	// +optional
	// +kubebuilder:default=Delete
	DeletionPolicy DeletionPolicy `json:"deletionPolicy,omitempty"`
}

// CopyMethod is how a backup reads its claim.
// +kubebuilder:validation:Enum=Direct;Snapshot
type CopyMethod string

const (
	// CopyMethodDirect mounts the live claim read-only: files are copied at different moments,
	// and a ReadWriteOnce claim is read on the node where it is attached.
	CopyMethodDirect CopyMethod = "Direct"
	// CopyMethodSnapshot cuts a CSI VolumeSnapshot of the claim, makes a temporary claim from it
	// and reads that: every file as of one instant (crash-consistent), read on any node. The
	// snapshot and the temporary claim are deleted when the Backup ends.
	CopyMethodSnapshot CopyMethod = "Snapshot"
)

// BackupSource says how the claim is read.
// +kubebuilder:validation:XValidation:rule="self.copyMethod == 'Snapshot' || (!has(self.volumeSnapshotClassName) && !has(self.keepSnapshot))",message="volumeSnapshotClassName and keepSnapshot apply only to copyMethod Snapshot"
// +kubebuilder:validation:XValidation:rule="!has(self.command) || self.copyMethod != 'Snapshot'",message="source.command streams from the running application, so it cannot be combined with copyMethod Snapshot: use one or the other"
type BackupSource struct {
	// copyMethod is Direct (default: read the live claim) or Snapshot (read a CSI VolumeSnapshot
	// of it, which needs the snapshot.storage.k8s.io API and a CSI driver that snapshots).
	// +optional
	// +kubebuilder:default=Direct
	CopyMethod CopyMethod `json:"copyMethod,omitempty"`

	// volumeSnapshotClassName is the VolumeSnapshotClass of the snapshot. Defaults to the class
	// marked default (annotation snapshot.storage.kubernetes.io/is-default-class) for the
	// claim's CSI driver.
	// +optional
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	VolumeSnapshotClassName string `json:"volumeSnapshotClassName,omitempty"`

	// keepSnapshot keeps the VolumeSnapshot after the archive is written, for fast restores in
	// the cluster; it is deleted with its Backup (by retention, too). Default false: the
	// snapshot is deleted as soon as the archive is on storage.
	// +optional
	KeepSnapshot bool `json:"keepSnapshot,omitempty"`

	// command, instead of reading the volume, runs a command in the running pod that mounts the
	// claim and archives its standard output, such as pg_basebackup or pg_dump: an
	// application-consistent copy of a live database. It needs execServiceAccountName.
	// +optional
	Command *CommandSource `json:"command,omitempty"`
}

// StreamFormat is what a source command writes to its standard output.
// +kubebuilder:validation:Enum=tar;file
type StreamFormat string

const (
	// StreamFormatTar: the output is a tar stream of a directory, such as
	// "pg_basebackup -Ft -D - -X fetch". The archive is a tar like a volume's, and a restore
	// extracts it into the target claim with every rule a volume restore has.
	StreamFormatTar StreamFormat = "tar"
	// StreamFormatFile: the output is one file, such as "pg_dump -Fc". The archive is that file,
	// compressed; a restore writes it into the target claim as fileName.
	StreamFormatFile StreamFormat = "file"
)

// DefaultStreamFileName is the name a file-format stream is restored as when fileName is unset.
const DefaultStreamFileName = "dump"

// CommandSource is a command whose standard output is the backup. Its archive is compressed,
// hashed and published atomically like a volume's; a non-zero exit, a broken stream or a timeout
// fails the Backup and leaves no archive.
// +kubebuilder:validation:XValidation:rule="self.format == 'file' || !has(self.fileName)",message="fileName applies only to format file"
type CommandSource struct {
	// container in the pod that mounts the claim, in which the command runs.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	Container string `json:"container"`

	// command is the program and its arguments, as an argv: it is not run through a shell (use
	// ["sh", "-c", "..."] for one).
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=64
	// +listType=atomic
	Command []string `json:"command"`

	// timeoutSeconds bounds the command. Unset, the run's activeDeadlineSeconds bounds it.
	// +optional
	// +kubebuilder:validation:Minimum=1
	TimeoutSeconds *int64 `json:"timeoutSeconds,omitempty"`

	// format of the output: tar (a tar stream of a directory) or file (one file).
	Format StreamFormat `json:"format"`

	// fileName is the name a file-format stream is restored as, in the target claim's root.
	// Defaults to "dump".
	// +optional
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=255
	// +kubebuilder:validation:Pattern=`^[^/]+$`
	// +kubebuilder:validation:XValidation:rule="self != '.' && self != '..'",message="fileName must be a file name, not . or .."
	FileName string `json:"fileName,omitempty"`
}

// BackupHooks are commands run in the pod that mounts the claim around the read.
type BackupHooks struct {
	// pre hooks run in order before the claim is read; one that fails under onError Fail fails
	// the Backup before anything is read.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=8
	Pre []Hook `json:"pre,omitempty"`

	// post hooks run in order after the read, whenever a pre hook ran: also when the backup
	// failed, so that what a pre hook froze is thawed.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=8
	Post []Hook `json:"post,omitempty"`
}

// HookOnError says what a failed hook does to the Backup.
// +kubebuilder:validation:Enum=Fail;Continue
type HookOnError string

const (
	// HookFail: a failed hook fails the Backup (the default).
	HookFail HookOnError = "Fail"
	// HookContinue: a failed hook is recorded and reported, and the Backup goes on.
	HookContinue HookOnError = "Continue"
)

// DefaultHookTimeoutSeconds bounds a hook whose timeoutSeconds is unset.
const DefaultHookTimeoutSeconds int64 = 300

// Hook is one command run in the pod that mounts the claim.
type Hook struct {
	// container in the pod that mounts the claim, in which the command runs.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	Container string `json:"container"`

	// command is the program and its arguments, as an argv (not run through a shell).
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=64
	// +listType=atomic
	Command []string `json:"command"`

	// timeoutSeconds bounds the hook. Defaults to 300.
	// +optional
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:default=300
	TimeoutSeconds *int64 `json:"timeoutSeconds,omitempty"`

	// onError is Fail (default: a failed hook fails the Backup) or Continue.
	// +optional
	// +kubebuilder:default=Fail
	OnError HookOnError `json:"onError,omitempty"`
}

// AgentSecurityContext runs the agent pods as an unprivileged user, with no added capabilities,
// so that backups and restores work in namespaces under Pod Security "restricted". The agent
// then reads only what that user may read (a file it cannot read fails the Backup, naming the
// file), and a restore cannot give files back their owners: they belong to that user.
type AgentSecurityContext struct {
	// runAsUser is the uid the agent runs as; it must not be 0. Use the uid that owns the
	// application's files, such as the database's user.
	// +kubebuilder:validation:Minimum=1
	RunAsUser int64 `json:"runAsUser"`

	// runAsGroup is the gid the agent runs as. Defaults to the image's (0 when it names none).
	// +optional
	// +kubebuilder:validation:Minimum=0
	RunAsGroup *int64 `json:"runAsGroup,omitempty"`

	// fsGroup is a supplementary group of the agent. The kubelet makes a restore's target
	// volume writable by it; on a backup's source the volume is mounted read-only, so fsGroup
	// only helps where the files are already group-readable.
	// +optional
	// +kubebuilder:validation:Minimum=0
	FSGroup *int64 `json:"fsGroup,omitempty"`
}

// CopyMethodOf is the copy method of settings, Direct when none is set.
func CopyMethodOf(s BackupRunSettings) CopyMethod {
	if s.Source == nil || s.Source.CopyMethod == "" {
		return CopyMethodDirect
	}
	return s.Source.CopyMethod
}

// JobSettings bound a backup or restore Job and size its pod.
type JobSettings struct {
	// activeDeadlineSeconds bounds how long one run may take before it is stopped and marked
	// Failed. Defaults to 21600 (six hours).
	// +optional
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:default=21600
	ActiveDeadlineSeconds *int64 `json:"activeDeadlineSeconds,omitempty"`

	// pendingDeadlineSeconds bounds how long the run's pod may take to start, from the
	// creation of its Job. A pod that cannot start (a missing Secret, an image that cannot be
	// pulled, a pod that cannot be scheduled) is reported within seconds in the Succeeded
	// condition and a Warning Event; past this deadline the run fails with reason
	// PodNotStarted and its Job is deleted. Defaults to 900 (fifteen minutes).
	// +optional
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:default=900
	PendingDeadlineSeconds *int64 `json:"pendingDeadlineSeconds,omitempty"`

	// backoffLimit is how many times a failed run's pod is retried before the run is Failed.
	// Defaults to 2.
	// +optional
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=10
	// +kubebuilder:default=2
	BackoffLimit *int32 `json:"backoffLimit,omitempty"`

	// resources of the pod that runs the archive agent. Compression uses every core it is given.
	// +optional
	Resources *corev1.ResourceRequirements `json:"resources,omitempty"`

	// agentSecurityContext runs the agent as an unprivileged user, for namespaces under Pod
	// Security "restricted". Unset, the agent runs as root with only the capabilities it needs:
	// DAC_READ_SEARCH to read every file, which only Pod Security "privileged" allows, and for a
	// restore CHOWN, DAC_OVERRIDE, FOWNER and FSETID to give files back their owners and modes,
	// which "baseline" allows.
	// +optional
	AgentSecurityContext *AgentSecurityContext `json:"agentSecurityContext,omitempty"`
}

// Condition types set on the operator's objects.
const (
	// ConditionReady is True on a BackupPolicy whose schedule, time zone and target are valid and
	// which is scheduling runs.
	ConditionReady = "Ready"
	// ConditionSucceeded is Unknown while a Backup or Restore runs, then True or False when it ends.
	ConditionSucceeded = "Succeeded"
	// ConditionSnapshotReady on a Backup with copyMethod Snapshot is Unknown while its
	// VolumeSnapshot is cut, True once the snapshot is ready to use, False when it failed.
	ConditionSnapshotReady = "SnapshotReady"
	// ConditionDataUploaded on a Backup with copyMethod Snapshot is Unknown while the agent
	// reads the snapshot, True once the archive is on storage, False when that failed.
	ConditionDataUploaded = "DataUploaded"
)

// Labels and annotations the operator sets or reads. Their keys are part of the API: tools select
// on them.
const (
	// LabelManagedBy marks objects the operator creates, so its informers watch only those.
	LabelManagedBy = "app.kubernetes.io/managed-by"
	// ManagedByValue is the value of LabelManagedBy on the operator's objects.
	ManagedByValue = "backup-operator"
	// LabelPolicy names the BackupPolicy that created a Backup.
	LabelPolicy = "platform.example.com/policy"
	// LabelPVC names the PersistentVolumeClaim a Backup archives.
	LabelPVC = "platform.example.com/pvc"
	// LabelBackup names the Backup a Job or pod works for.
	LabelBackup = "platform.example.com/backup"
	// LabelRestore names the Restore a Job or pod works for.
	LabelRestore = "platform.example.com/restore"
	// AnnotationScheduledTime records the scheduled time, in RFC 3339, a policy run was made for.
	AnnotationScheduledTime = "platform.example.com/scheduled-time"
	// AnnotationRunNow on a BackupPolicy asks for one run now for each distinct value it is set to.
	AnnotationRunNow = "platform.example.com/run-now"
)
