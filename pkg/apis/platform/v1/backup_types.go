package v1

import (
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// +genclient
// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=bk,categories=backup-operator
// +kubebuilder:printcolumn:name="PVC",type=string,JSONPath=`.spec.pvcName`
// +kubebuilder:printcolumn:name="Policy",type=string,JSONPath=`.spec.policyName`
// +kubebuilder:printcolumn:name="Phase",type=string,JSONPath=`.status.phase`
// +kubebuilder:printcolumn:name="Size",type=string,JSONPath=`.status.artifact.displaySize`
// +kubebuilder:printcolumn:name="Duration",type=string,JSONPath=`.status.duration`
// +kubebuilder:printcolumn:name="Verified",type=string,JSONPath=`.status.lastVerified.result`,description="Result of the latest RestoreDrill of this Backup"
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
// +kubebuilder:printcolumn:name="SHA256",type=string,JSONPath=`.status.artifact.sha256`,priority=1
// +kubebuilder:printcolumn:name="Method",type=string,JSONPath=`.spec.source.copyMethod`,priority=1
// +kubebuilder:printcolumn:name="Source",type=string,JSONPath=`.status.source.type`,priority=1,description="What the archive was read from: Volume, Snapshot or Command"
// +kubebuilder:printcolumn:name="Job",type=string,JSONPath=`.status.jobName`,priority=1

// Backup is one archive of one PersistentVolumeClaim at one point in time. A Job reads the claim
// read-only and writes a compressed tar archive with its sha256 to storage. The spec is fixed at
// creation: to back up again, create another Backup.
type Backup struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec is what to archive and how.
	Spec BackupSpec `json:"spec"`
	// status is the run's progress and, once Completed, its archive.
	// +optional
	Status BackupStatus `json:"status,omitempty"`
}

// AnnotationBackupUID on a cleanup Job holds the UID of the Backup whose archive it deletes. The
// Job has no owner, so that garbage collection of the deleted Backup cannot stop it halfway; the
// annotation is how the controller tells its own cleanup from that of an earlier Backup of the
// same name.
const AnnotationBackupUID = "platform.example.com/backup-uid"

// BackupPhase is where a Backup is in its life: Pending, Running, then Completed or Failed,
// which are final.
// +kubebuilder:validation:Enum=Pending;Running;Completed;Failed
type BackupPhase string

const (
	// BackupPending: accepted, the Job is being created or its pod is not running yet.
	BackupPending BackupPhase = "Pending"
	// BackupRunning: the agent's pod is reading the claim.
	BackupRunning BackupPhase = "Running"
	// BackupCompleted: the archive is on storage under its final name with a verified checksum.
	BackupCompleted BackupPhase = "Completed"
	// BackupFailed: no archive was made; conditions and events say why.
	BackupFailed BackupPhase = "Failed"
)

// Final reports whether p is Completed or Failed: a Backup in a final phase never changes again.
func (p BackupPhase) Final() bool { return p == BackupCompleted || p == BackupFailed }

// BackupSpec is what to archive and how. It cannot change after creation.
// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="a Backup's spec cannot change after creation: create a new Backup instead"
// +kubebuilder:validation:XValidation:rule="!((has(self.source) && has(self.source.command)) || has(self.hooks)) || has(self.execServiceAccountName)",message="source.command and hooks run as the ServiceAccount named in execServiceAccountName: set it (see manifests/examples/exec-rbac.yaml)"
// +kubebuilder:validation:XValidation:rule="!has(self.hooks) || !has(self.source) || self.source.copyMethod != 'Snapshot'",message="hooks run around a Direct read of the claim; with copyMethod Snapshot the snapshot is the consistent instant: remove hooks or use copyMethod Direct"
type BackupSpec struct {
	// pvcName is the PersistentVolumeClaim, in the Backup's namespace, to archive. It is mounted
	// read-only.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	PVCName string `json:"pvcName"`

	// policyName is the BackupPolicy that created this Backup; empty for a Backup made by hand.
	// Retention only ever deletes Backups of its own policy.
	// +optional
	PolicyName string `json:"policyName,omitempty"`

	// BackupRunSettings are how the archive is made and kept.
	BackupRunSettings `json:",inline"`
}

// BackupStatus is a run's progress and, once Completed, its archive.
type BackupStatus struct {
	// observedGeneration is the spec generation this status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// phase is Pending, Running, Completed or Failed. Completed and Failed are final.
	// +optional
	Phase BackupPhase `json:"phase,omitempty"`

	// conditions: Succeeded is Unknown while the backup runs, then True or False with the reason.
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// jobName is the Job that runs the archive agent.
	// +optional
	JobName string `json:"jobName,omitempty"`

	// nodeName is the node the claim was read on.
	// +optional
	NodeName string `json:"nodeName,omitempty"`

	// startTime is when the agent started reading the claim.
	// +optional
	StartTime *metav1.Time `json:"startTime,omitempty"`

	// completionTime is when the Backup reached Completed or Failed.
	// +optional
	CompletionTime *metav1.Time `json:"completionTime,omitempty"`

	// duration is completionTime minus startTime, such as "6s" or "1h2m3s".
	// +optional
	Duration *metav1.Duration `json:"duration,omitempty"`

	// source says what the archive was read from: the volume, a snapshot of it, or the output
	// of a command in the application's pod.
	// +optional
	Source *SourceStatus `json:"source,omitempty"`

	// hooks are the hooks that ran, in order, with their results.
	// +optional
	// +listType=atomic
	Hooks []HookStatus `json:"hooks,omitempty"`

	// snapshot is the VolumeSnapshot a Backup with copyMethod Snapshot reads, and how long
	// cutting it took.
	// +optional
	Snapshot *SnapshotStatus `json:"snapshot,omitempty"`

	// artifact is the archive on storage; set once the backup is Completed.
	// +optional
	Artifact *Artifact `json:"artifact,omitempty"`

	// lastVerified is the latest RestoreDrill of this Backup: when, which drill, and its
	// verdict. A Backup that a drill restored and probed is proven, not hoped for.
	// +optional
	LastVerified *BackupVerification `json:"lastVerified,omitempty"`
}

// Artifact is an archive on storage and what is known about it.
type Artifact struct {
	// path of the archive relative to the storage's root (the volume's root, or the bucket's),
	// such as "backups/db/data-db-0/daily-backups-data-db-0-29001234.tar.zst".
	Path string `json:"path"`

	// storageName is the BackupStorage that holds the archive; empty for an inline claim.
	// +optional
	StorageName string `json:"storageName,omitempty"`

	// bucket that holds the archive, for object storage. Recorded so that the archive stays
	// restorable when the BackupStorage is later pointed elsewhere.
	// +optional
	Bucket string `json:"bucket,omitempty"`

	// size of the archive file in bytes.
	// +kubebuilder:validation:Minimum=0
	Size int64 `json:"size"`

	// displaySize is size for people, such as "1.2 GiB".
	// +optional
	DisplaySize string `json:"displaySize,omitempty"`

	// sha256 of the archive file, hex encoded; a restore verifies it before writing anything.
	// +kubebuilder:validation:Pattern=`^[0-9a-f]{64}$`
	SHA256 string `json:"sha256"`

	// compression of the archive: zstd, gzip or none.
	Compression Compression `json:"compression"`

	// encryption says how the archive is encrypted; absent for an archive that is not.
	// +optional
	Encryption *ArtifactEncryption `json:"encryption,omitempty"`

	// sourceBytes is the size of the regular files read from the claim.
	// +kubebuilder:validation:Minimum=0
	SourceBytes int64 `json:"sourceBytes"`

	// files is the number of entries archived: regular files, directories and links.
	// +kubebuilder:validation:Minimum=0
	Files int64 `json:"files"`

	// changedFiles is the number of files that changed while they were read, as happens on a
	// volume in use; their archived copies may be inconsistent.
	// +optional
	// +kubebuilder:validation:Minimum=0
	ChangedFiles int64 `json:"changedFiles,omitempty"`

	// skippedFiles is the number of entries that could not be archived, such as sockets or
	// files that vanished during the walk.
	// +optional
	// +kubebuilder:validation:Minimum=0
	SkippedFiles int64 `json:"skippedFiles,omitempty"`
}

// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object
// +kubebuilder:object:root=true

// BackupList is a list of Backup objects.
type BackupList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata"`

	// items are the Backups.
	Items []Backup `json:"items"`
}

// ArtifactEncryption is how an archive was encrypted, without any key.
type ArtifactEncryption struct {
	// type is "age".
	Type string `json:"type"`

	// recipientFingerprints name the public keys that can decrypt the archive: the first 16 hex
	// digits of the sha256 of each key's text (age1...). A restore needs the identity of one.
	// +optional
	// +listType=atomic
	RecipientFingerprints []string `json:"recipientFingerprints,omitempty"`
}

// SnapshotStatus is the VolumeSnapshot of a Backup with copyMethod Snapshot.
type SnapshotStatus struct {
	// name of the VolumeSnapshot, in the Backup's namespace.
	Name string `json:"name"`

	// className is the VolumeSnapshotClass it was cut with.
	// +optional
	ClassName string `json:"className,omitempty"`

	// temporaryClaimName is the claim made from the snapshot that the agent reads.
	// +optional
	TemporaryClaimName string `json:"temporaryClaimName,omitempty"`

	// creationTime is when the snapshot was asked for.
	// +optional
	CreationTime *metav1.Time `json:"creationTime,omitempty"`

	// readyTime is when the snapshot was first seen ready to use.
	// +optional
	ReadyTime *metav1.Time `json:"readyTime,omitempty"`

	// snapshotDuration is readyTime minus creationTime: how long cutting the snapshot took.
	// +optional
	SnapshotDuration *metav1.Duration `json:"snapshotDuration,omitempty"`

	// restoreSize is the smallest volume that holds the snapshot, as its CSI driver reports it.
	// +optional
	RestoreSize *resource.Quantity `json:"restoreSize,omitempty"`

	// kept says the snapshot is kept after the backup (keepSnapshot); it is deleted with the
	// Backup.
	// +optional
	Kept bool `json:"kept,omitempty"`
}

// SourceType is what a Backup's archive was read from.
type SourceType string

const (
	// SourceVolume: the claim's files, read through a read-only mount.
	SourceVolume SourceType = "Volume"
	// SourceSnapshot: the files of a CSI VolumeSnapshot of the claim.
	SourceSnapshot SourceType = "Snapshot"
	// SourceCommand: the standard output of a command in the pod that mounts the claim.
	SourceCommand SourceType = "Command"
)

// SourceStatus is what a Backup's archive was read from.
type SourceStatus struct {
	// type is Volume, Snapshot or Command.
	Type SourceType `json:"type"`

	// pod that mounts the claim, in which the command and the hooks ran.
	// +optional
	Pod string `json:"pod,omitempty"`

	// container the command ran in.
	// +optional
	Container string `json:"container,omitempty"`

	// command whose output is the archive.
	// +optional
	// +listType=atomic
	Command []string `json:"command,omitempty"`

	// format of the command's output: tar or file.
	// +optional
	Format StreamFormat `json:"format,omitempty"`
}

// HookPhase says when a hook ran.
type HookPhase string

const (
	// HookPre ran before the claim was read.
	HookPre HookPhase = "pre"
	// HookPost ran after the read.
	HookPost HookPhase = "post"
)

// HookResult is how a hook ended.
type HookResult string

const (
	// HookSucceeded: the command exited 0.
	HookSucceeded HookResult = "Succeeded"
	// HookFailed: the command exited non-zero, timed out, or could not be run.
	HookFailed HookResult = "Failed"
)

// HookStatus is what one hook did.
type HookStatus struct {
	// phase is pre or post.
	Phase HookPhase `json:"phase"`

	// index of the hook in its list, from 0.
	Index int32 `json:"index"`

	// container the hook ran in.
	Container string `json:"container"`

	// result is Succeeded or Failed.
	Result HookResult `json:"result"`

	// exitCode of the command; absent when it did not run to an exit.
	// +optional
	ExitCode *int32 `json:"exitCode,omitempty"`

	// duration the hook took.
	// +optional
	Duration *metav1.Duration `json:"duration,omitempty"`

	// message says why a hook failed, with the tail of its standard error.
	// +optional
	Message string `json:"message,omitempty"`

	// outputTail is the end of the hook's standard output and error.
	// +optional
	OutputTail string `json:"outputTail,omitempty"`
}
