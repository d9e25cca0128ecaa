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
// +kubebuilder:resource:shortName=drill,categories=backup-operator
// +kubebuilder:printcolumn:name="Policy",type=string,JSONPath=`.spec.policyName`
// +kubebuilder:printcolumn:name="Schedule",type=string,JSONPath=`.spec.schedule`
// +kubebuilder:printcolumn:name="Last Result",type=string,JSONPath=`.status.lastRun.result`
// +kubebuilder:printcolumn:name="Time To Restore",type=string,JSONPath=`.status.lastRun.timeToRestore`
// +kubebuilder:printcolumn:name="Backup Age",type=string,JSONPath=`.status.lastRun.maxBackupAge`
// +kubebuilder:printcolumn:name="Last Success",type=date,JSONPath=`.status.lastSuccessfulTime`
// +kubebuilder:printcolumn:name="Next Run",type=string,JSONPath=`.status.nextScheduleTime`,priority=1,description="Next run, in UTC"
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`

// RestoreDrill proves on a schedule that a policy's backups restore and work: each run restores
// the newest Completed Backup of every claim of the policy into a scratch claim it creates, runs
// an optional probe on the restored copy, measures the time to restore and the backup's age
// against the objectives, and deletes the scratch claim. The source claims are never touched.
type RestoreDrill struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec is what to drill, when, and what counts as a pass.
	Spec RestoreDrillSpec `json:"spec"`
	// status is the latest run and the drill's record.
	// +optional
	Status RestoreDrillStatus `json:"status,omitempty"`
}

// RestoreDrillSpec is what to drill, when, and what counts as a pass.
// +kubebuilder:validation:XValidation:rule="!self.schedule.startsWith('CRON_TZ=') && !self.schedule.startsWith('TZ=')",message="schedule must not carry a CRON_TZ= or TZ= prefix: set spec.timeZone instead"
type RestoreDrillSpec struct {
	// policyName is the BackupPolicy, in the same namespace, whose claims are drilled: each run
	// restores the newest Completed Backup of each claim that policy backs up.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	PolicyName string `json:"policyName"`

	// schedule in cron format, read in timeZone, with the BackupPolicy's semantics.
	// +kubebuilder:validation:MinLength=1
	Schedule string `json:"schedule"`

	// timeZone is the IANA time zone the schedule is read in. Defaults to the controller's
	// local time zone (UTC in the shipped image).
	// +optional
	// +kubebuilder:validation:MinLength=1
	TimeZone *string `json:"timeZone,omitempty"`

	// suspend stops new runs while true; a run already started finishes.
	// +optional
	// +kubebuilder:default=false
	Suspend *bool `json:"suspend,omitempty"`

	// startingDeadlineSeconds is how late a run may start after its scheduled time; a run
	// missed by more is skipped with a MissedSchedule event. Unset means no deadline.
	// +optional
	// +kubebuilder:validation:Minimum=0
	StartingDeadlineSeconds *int64 `json:"startingDeadlineSeconds,omitempty"`

	// scratch is the claim each drilled backup is restored into.
	// +optional
	Scratch DrillScratch `json:"scratch,omitempty"`

	// probe runs on the restored copy and decides the verdict by its exit code. Without it, a
	// restore whose checksum and counts verify passes.
	// +optional
	Probe *DrillProbe `json:"probe,omitempty"`

	// objectives are the recovery time and point objectives a run is held to.
	// +optional
	Objectives DrillObjectives `json:"objectives,omitempty"`

	// successfulRunsHistoryLimit is how many successful runs keep their Restores. Defaults to 3.
	// +optional
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:default=3
	SuccessfulRunsHistoryLimit *int32 `json:"successfulRunsHistoryLimit,omitempty"`

	// failedRunsHistoryLimit is how many failed runs keep their Restores. Defaults to 1.
	// +optional
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:default=1
	FailedRunsHistoryLimit *int32 `json:"failedRunsHistoryLimit,omitempty"`
}

// DrillScratch is the claim a drill restores into. It is created for the run, owned by the
// drill, and deleted when the run ends.
type DrillScratch struct {
	// storageClassName of the scratch claims; empty uses the cluster's default class.
	// +optional
	StorageClassName *string `json:"storageClassName,omitempty"`

	// size of each scratch claim. Defaults to the backup's source bytes plus headroom, as a
	// Restore that creates its target does.
	// +optional
	Size *resource.Quantity `json:"size,omitempty"`

	// keepOnFailure keeps the scratch claim of a failed run for diagnosis, until the next run
	// starts or the drill is deleted.
	// +optional
	KeepOnFailure bool `json:"keepOnFailure,omitempty"`
}

// DrillProbe is a container that runs with the restored copy mounted read-write and passes the
// drill by exiting 0, such as one that starts PostgreSQL on the copy and counts rows. Its pod gets
// no service account token, no privileges and no privilege escalation.
type DrillProbe struct {
	// image of the probe container.
	// +kubebuilder:validation:MinLength=1
	Image string `json:"image"`

	// command is the container's entrypoint, as argv.
	// +optional
	// +listType=atomic
	Command []string `json:"command,omitempty"`

	// args are the arguments to command.
	// +optional
	// +listType=atomic
	Args []string `json:"args,omitempty"`

	// env of the container.
	// +optional
	// +listType=map
	// +listMapKey=name
	Env []corev1.EnvVar `json:"env,omitempty"`

	// mountPath is where the restored copy is mounted. Defaults to /data.
	// +optional
	// +kubebuilder:default=/data
	// +kubebuilder:validation:Pattern=`^/`
	MountPath string `json:"mountPath,omitempty"`

	// securityContext of the container. Privileged and allowPrivilegeEscalation are refused.
	// +optional
	// +kubebuilder:validation:XValidation:rule="!has(self.privileged) || !self.privileged",message="a probe never runs privileged"
	// +kubebuilder:validation:XValidation:rule="!has(self.allowPrivilegeEscalation) || !self.allowPrivilegeEscalation",message="a probe never escalates privileges"
	SecurityContext *corev1.SecurityContext `json:"securityContext,omitempty"`

	// resources of the container.
	// +optional
	Resources *corev1.ResourceRequirements `json:"resources,omitempty"`

	// timeoutSeconds bounds the probe, from its Job's creation; past it the claim's drill fails
	// with ProbeTimedOut. Defaults to 600.
	// +optional
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:default=600
	TimeoutSeconds *int64 `json:"timeoutSeconds,omitempty"`
}

// DrillObjectives are what a run is held to.
type DrillObjectives struct {
	// maxTimeToRestore is the recovery time objective: from the run's start to the data restored
	// and the probe passed, per claim. A claim over it fails with RTOExceeded.
	// +optional
	MaxTimeToRestore *metav1.Duration `json:"maxTimeToRestore,omitempty"`

	// maxBackupAge is the recovery point objective: the newest Completed Backup of each claim
	// must be at most this old when the run starts, or the claim fails with BackupTooOld.
	// +optional
	MaxBackupAge *metav1.Duration `json:"maxBackupAge,omitempty"`
}

// DrillResult is the outcome of a run, or of one claim in it.
// +kubebuilder:validation:Enum=Running;Succeeded;Failed
type DrillResult string

const (
	// DrillRunning: the run, or the claim's drill, has not ended.
	DrillRunning DrillResult = "Running"
	// DrillSucceeded: restored, verified, probed and within the objectives.
	DrillSucceeded DrillResult = "Succeeded"
	// DrillFailed: the reason says which step failed.
	DrillFailed DrillResult = "Failed"
)

// DrillStage is where one claim's drill is.
// +kubebuilder:validation:Enum=Restoring;Probing;CleaningUp;Done
type DrillStage string

const (
	// DrillRestoring: the Restore into the scratch claim runs.
	DrillRestoring DrillStage = "Restoring"
	// DrillProbing: the probe Job runs on the restored copy.
	DrillProbing DrillStage = "Probing"
	// DrillCleaningUp: the verdict is in; the probe Job and scratch claim are being deleted.
	DrillCleaningUp DrillStage = "CleaningUp"
	// DrillDone: the verdict is in and the scratch objects are gone (or kept on failure).
	DrillDone DrillStage = "Done"
)

// Reasons of a drill's Succeeded condition and of each claim's verdict.
const (
	// ReasonNoCompletedBackup: the claim has no Completed Backup of the policy to drill.
	ReasonNoCompletedBackup = "NoCompletedBackup"
	// ReasonBackupTooOld: the newest Completed Backup is older than maxBackupAge.
	ReasonBackupTooOld = "BackupTooOld"
	// ReasonRestoreFailed: the Restore into the scratch claim failed; its message says why.
	ReasonRestoreFailed = "RestoreFailed"
	// ReasonProbeFailed: the probe exited non-zero.
	ReasonProbeFailed = "ProbeFailed"
	// ReasonProbeTimedOut: the probe did not finish within timeoutSeconds.
	ReasonProbeTimedOut = "ProbeTimedOut"
	// ReasonRTOExceeded: the claim was restored and probed, but later than maxTimeToRestore.
	ReasonRTOExceeded = "RTOExceeded"
	// ReasonDrillPassed: every claim restored, verified and passed its probe in time.
	ReasonDrillPassed = "DrillPassed"
	// ReasonPolicyNotFound: the drill names a BackupPolicy that does not exist.
	ReasonPolicyNotFound = "PolicyNotFound"
	// ReasonNoClaims: the policy selects no claim, so there is nothing to drill.
	ReasonNoClaims = "NoClaims"
	// ReasonScratchConflict: the scratch claim's name is taken by a claim the drill did not
	// create; the drill refuses to touch it.
	ReasonScratchConflict = "ScratchConflict"
)

// DrillClaim is one claim's drill in a run.
type DrillClaim struct {
	// pvcName is the drilled claim (never mounted by the drill).
	PVCName string `json:"pvcName"`

	// backupName is the Backup restored: the claim's newest Completed Backup at the run's start.
	// +optional
	BackupName string `json:"backupName,omitempty"`

	// backupAge is how old that Backup was at the run's start.
	// +optional
	BackupAge *metav1.Duration `json:"backupAge,omitempty"`

	// sha256 of the archive restored, verified before anything was written.
	// +optional
	SHA256 string `json:"sha256,omitempty"`

	// restoreName is the Restore into the scratch claim.
	// +optional
	RestoreName string `json:"restoreName,omitempty"`

	// scratchClaimName is the claim restored into.
	// +optional
	ScratchClaimName string `json:"scratchClaimName,omitempty"`

	// probeJobName is the probe's Job.
	// +optional
	ProbeJobName string `json:"probeJobName,omitempty"`

	// stage is where this claim's drill is.
	// +optional
	Stage DrillStage `json:"stage,omitempty"`

	// result is Running, then Succeeded or Failed.
	// +optional
	Result DrillResult `json:"result,omitempty"`

	// reason is the verdict's reason, such as ProbeFailed.
	// +optional
	Reason string `json:"reason,omitempty"`

	// message says what happened and what to do.
	// +optional
	Message string `json:"message,omitempty"`

	// restoreDuration is how long the Restore took, from its creation to Completed.
	// +optional
	RestoreDuration *metav1.Duration `json:"restoreDuration,omitempty"`

	// probeDuration is how long the probe took, from its Job's creation to its end.
	// +optional
	ProbeDuration *metav1.Duration `json:"probeDuration,omitempty"`

	// timeToRestore is from the run's start to the data restored and the probe passed.
	// +optional
	TimeToRestore *metav1.Duration `json:"timeToRestore,omitempty"`

	// restoredBytes is the size of the regular files restored.
	// +optional
	RestoredBytes int64 `json:"restoredBytes,omitempty"`

	// restoredFiles is the number of entries restored.
	// +optional
	RestoredFiles int64 `json:"restoredFiles,omitempty"`

	// probeExitCode is the probe container's exit code.
	// +optional
	ProbeExitCode *int32 `json:"probeExitCode,omitempty"`

	// probeLogTail is the end of the probe's termination message: its output when it failed, and
	// what it wrote to /dev/termination-log (such as a row count) when it passed.
	// +optional
	ProbeLogTail string `json:"probeLogTail,omitempty"`
}

// DrillRun is one run of a drill.
type DrillRun struct {
	// id names the run in the names and labels of its objects.
	ID string `json:"id"`

	// scheduledTime is the scheduled time the run is for; for a run-now request, when it was
	// asked for.
	ScheduledTime metav1.Time `json:"scheduledTime"`

	// startTime is when the run started.
	StartTime metav1.Time `json:"startTime"`

	// completionTime is when its last claim's verdict came in.
	// +optional
	CompletionTime *metav1.Time `json:"completionTime,omitempty"`

	// result is Running, then Succeeded when every claim succeeded, else Failed.
	Result DrillResult `json:"result"`

	// reason is the first failed claim's reason, or DrillPassed.
	// +optional
	Reason string `json:"reason,omitempty"`

	// timeToRestore is the longest time to restore of the run's claims.
	// +optional
	TimeToRestore *metav1.Duration `json:"timeToRestore,omitempty"`

	// maxBackupAge is the age of the oldest Backup the run drilled.
	// +optional
	MaxBackupAge *metav1.Duration `json:"maxBackupAge,omitempty"`

	// claims are the drills of each claim of the policy.
	// +optional
	// +listType=map
	// +listMapKey=pvcName
	Claims []DrillClaim `json:"claims,omitempty"`
}

// RestoreDrillStatus is the latest run and the drill's record.
type RestoreDrillStatus struct {
	// observedGeneration is the spec generation this status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// conditions: Ready says whether the schedule, time zone and policy are valid and runs are
	// being scheduled; Succeeded is the latest finished run's verdict, with its reason.
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// lastRun is the latest run, running or finished.
	// +optional
	LastRun *DrillRun `json:"lastRun,omitempty"`

	// lastScheduleTime is the scheduled time of the latest run that was started.
	// +optional
	LastScheduleTime *metav1.Time `json:"lastScheduleTime,omitempty"`

	// lastMissedTime is the scheduled time of the latest run skipped for its deadline.
	// +optional
	LastMissedTime *metav1.Time `json:"lastMissedTime,omitempty"`

	// nextScheduleTime is when the next run is due; empty while suspended or invalid.
	// +optional
	NextScheduleTime *metav1.Time `json:"nextScheduleTime,omitempty"`

	// lastSuccessfulTime is when the latest successful run completed.
	// +optional
	LastSuccessfulTime *metav1.Time `json:"lastSuccessfulTime,omitempty"`

	// consecutiveFailures counts the failed runs since the latest successful one.
	// +optional
	ConsecutiveFailures int32 `json:"consecutiveFailures,omitempty"`

	// lastRunNowToken is the latest value of the platform.example.com/run-now annotation that
	// was acted on, so each value triggers exactly one run.
	// +optional
	LastRunNowToken string `json:"lastRunNowToken,omitempty"`
}

// Labels on the objects of a drill run.
const (
	// LabelDrill names the RestoreDrill that made a Restore, scratch claim or probe Job.
	LabelDrill = "platform.example.com/drill"
	// LabelDrillRun is the run's id.
	LabelDrillRun = "platform.example.com/drill-run"
)

// BackupVerification is the latest drill of a Backup.
type BackupVerification struct {
	// time the drill's verdict came in.
	Time metav1.Time `json:"time"`
	// drillName is the RestoreDrill.
	DrillName string `json:"drillName"`
	// result is Succeeded or Failed.
	Result DrillResult `json:"result"`
	// reason of the verdict, such as DrillPassed or ProbeFailed.
	// +optional
	Reason string `json:"reason,omitempty"`
}

// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object
// +kubebuilder:object:root=true

// RestoreDrillList is a list of RestoreDrill objects.
type RestoreDrillList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata"`

	// items are the drills.
	Items []RestoreDrill `json:"items"`
}
