package v1

import (
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// +genclient
// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=rst,categories=backup-operator
// +kubebuilder:printcolumn:name="Backup",type=string,JSONPath=`.spec.backupName`
// +kubebuilder:printcolumn:name="Target PVC",type=string,JSONPath=`.spec.target.claimName`
// +kubebuilder:printcolumn:name="Phase",type=string,JSONPath=`.status.phase`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
// +kubebuilder:printcolumn:name="Duration",type=string,JSONPath=`.status.duration`,priority=1
// +kubebuilder:printcolumn:name="Job",type=string,JSONPath=`.status.jobName`,priority=1

// Restore writes a Completed Backup's archive into a PersistentVolumeClaim. It verifies the
// archive's sha256 before writing anything and refuses unsafe targets: a claim another running
// pod writes to, or a non-empty one unless overwritePolicy says how to overwrite. The spec is
// fixed at creation: to try again, create another Restore.
type Restore struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec is which Backup to restore, where, and how.
	Spec RestoreSpec `json:"spec"`
	// status is the restore's progress and result.
	// +optional
	Status RestoreStatus `json:"status,omitempty"`
}

// RestorePhase is where a Restore is in its life: Pending, Running, then Completed or Failed,
// which are final.
// +kubebuilder:validation:Enum=Pending;Running;Completed;Failed
type RestorePhase string

const (
	// RestorePending: accepted, being checked, or its Job's pod is not running yet.
	RestorePending RestorePhase = "Pending"
	// RestoreRunning: the agent's pod is verifying the archive or writing the target.
	RestoreRunning RestorePhase = "Running"
	// RestoreCompleted: the archive's content is in the target claim.
	RestoreCompleted RestorePhase = "Completed"
	// RestoreFailed: the restore was refused or failed; conditions and events say why and whether
	// the target was touched.
	RestoreFailed RestorePhase = "Failed"
)

// Final reports whether p is Completed or Failed: a Restore in a final phase never changes again.
func (p RestorePhase) Final() bool { return p == RestoreCompleted || p == RestoreFailed }

// AnnotationCreatedByRestore on a PersistentVolumeClaim holds the UID of the Restore that created
// it. The claim has no owner, so that restored data outlives the Restore; the annotation lets a
// restarted controller recognise a claim it made itself.
const AnnotationCreatedByRestore = "platform.example.com/created-by-restore"

// OverwritePolicy says what a restore does to a target claim that already holds files.
// +kubebuilder:validation:Enum=Refuse;Merge;Replace
type OverwritePolicy string

const (
	// OverwriteRefuse fails the restore, writing nothing, when the target is not empty: the default.
	OverwriteRefuse OverwritePolicy = "Refuse"
	// OverwriteMerge writes the archive's files over the target's and leaves other files in place.
	OverwriteMerge OverwritePolicy = "Merge"
	// OverwriteReplace empties the target, and only the target, then writes the archive's files.
	OverwriteReplace OverwritePolicy = "Replace"
)

// RestoreSpec is which Backup to restore, where, and how. It cannot change after creation.
// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="a Restore's spec cannot change after creation: create a new Restore instead"
type RestoreSpec struct {
	// backupName is the Backup, in the same namespace, to restore. It must be Completed.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	BackupName string `json:"backupName"`

	// target is the claim the archive is written into.
	Target RestoreTarget `json:"target"`

	// overwritePolicy says what to do when the target already holds files: Refuse (default)
	// fails without writing, Merge writes over existing files, Replace empties the target first.
	// +optional
	// +kubebuilder:default=Refuse
	OverwritePolicy OverwritePolicy `json:"overwritePolicy,omitempty"`

	// JobSettings bound the restore's Job and size its pod.
	JobSettings `json:",inline"`
}

// RestoreTarget is the claim a restore writes into.
type RestoreTarget struct {
	// claimName is the PersistentVolumeClaim, in the Restore's namespace, to write into.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	ClaimName string `json:"claimName"`

	// create makes the claim when it does not exist yet. Without it, a missing claim fails the
	// restore. An existing claim is used as it is.
	// +optional
	Create *TargetClaimTemplate `json:"create,omitempty"`
}

// TargetClaimTemplate is the claim a restore creates when its target does not exist.
type TargetClaimTemplate struct {
	// storageClassName of the new claim; empty uses the cluster's default class.
	// +optional
	StorageClassName *string `json:"storageClassName,omitempty"`

	// accessModes of the new claim. Defaults to ReadWriteOnce.
	// +optional
	// +listType=atomic
	AccessModes []corev1.PersistentVolumeAccessMode `json:"accessModes,omitempty"`

	// size requested for the new claim. Defaults to the Backup's source size plus headroom.
	// +optional
	Size *resource.Quantity `json:"size,omitempty"`

	// labels set on the new claim.
	// +optional
	Labels map[string]string `json:"labels,omitempty"`
}

// RestoreStatus is a restore's progress and result.
type RestoreStatus struct {
	// observedGeneration is the spec generation this status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// phase is Pending, Running, Completed or Failed. Completed and Failed are final.
	// +optional
	Phase RestorePhase `json:"phase,omitempty"`

	// conditions: Succeeded is Unknown while the restore runs, then True or False with the
	// reason, such as ChecksumMismatch or TargetNotEmpty.
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// jobName is the Job that runs the archive agent.
	// +optional
	JobName string `json:"jobName,omitempty"`

	// claimCreated is true when this Restore created its target claim.
	// +optional
	ClaimCreated bool `json:"claimCreated,omitempty"`

	// startTime is when the agent started.
	// +optional
	StartTime *metav1.Time `json:"startTime,omitempty"`

	// completionTime is when the Restore reached Completed or Failed.
	// +optional
	CompletionTime *metav1.Time `json:"completionTime,omitempty"`

	// duration is completionTime minus startTime, such as "6s".
	// +optional
	Duration *metav1.Duration `json:"duration,omitempty"`

	// verifiedSHA256 is the archive checksum that was verified before anything was written.
	// +optional
	VerifiedSHA256 string `json:"verifiedSHA256,omitempty"`

	// restoredFiles is the number of entries written into the target.
	// +optional
	RestoredFiles int64 `json:"restoredFiles,omitempty"`

	// restoredBytes is the size of the regular files written into the target.
	// +optional
	RestoredBytes int64 `json:"restoredBytes,omitempty"`
}

// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object
// +kubebuilder:object:root=true

// RestoreList is a list of Restore objects.
type RestoreList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata"`

	// items are the Restores.
	Items []Restore `json:"items"`
}
