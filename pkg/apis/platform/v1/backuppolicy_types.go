package v1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// +genclient
// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=bp;bpol,categories=backup-operator
// +kubebuilder:printcolumn:name="Schedule",type=string,JSONPath=`.spec.schedule`
// +kubebuilder:printcolumn:name="Suspend",type=boolean,JSONPath=`.spec.suspend`
// +kubebuilder:printcolumn:name="Last Schedule",type=date,JSONPath=`.status.lastScheduleTime`
// +kubebuilder:printcolumn:name="Next Schedule",type=string,JSONPath=`.status.nextScheduleTime`,description="Next run, in UTC (kubectl prints future dates as <invalid>)"
// +kubebuilder:printcolumn:name="Last Success",type=date,JSONPath=`.status.lastSuccessfulTime`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`

// BackupPolicy is the intent to back up a set of PersistentVolumeClaims on a schedule and keep a
// bounded history of them. Each run creates one Backup per selected claim. Deleting a policy
// never deletes its Backups or their archives.
type BackupPolicy struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec is what to back up, when, and how long to keep it.
	Spec BackupPolicySpec `json:"spec"`
	// status is what the controller observed and did.
	// +optional
	Status BackupPolicyStatus `json:"status,omitempty"`
}

// ConcurrencyPolicy says what a scheduled run does while an earlier run for the same claim is
// still Pending or Running.
// +kubebuilder:validation:Enum=Allow;Forbid;Replace
type ConcurrencyPolicy string

const (
	// ConcurrencyAllow starts the new run alongside the running one.
	ConcurrencyAllow ConcurrencyPolicy = "Allow"
	// ConcurrencyForbid skips the new run while one is active: the default.
	ConcurrencyForbid ConcurrencyPolicy = "Forbid"
	// ConcurrencyReplace stops the active run and starts the new one.
	ConcurrencyReplace ConcurrencyPolicy = "Replace"
)

// BackupPolicySpec is what to back up, when, and how long to keep it.
// +kubebuilder:validation:XValidation:rule="!self.schedule.startsWith('CRON_TZ=') && !self.schedule.startsWith('TZ=')",message="schedule must not carry a CRON_TZ= or TZ= prefix: set spec.timeZone instead"
// +kubebuilder:validation:XValidation:rule="!((has(self.source) && has(self.source.command)) || has(self.hooks)) || has(self.execServiceAccountName)",message="source.command and hooks run as the ServiceAccount named in execServiceAccountName: set it (see manifests/examples/exec-rbac.yaml)"
// +kubebuilder:validation:XValidation:rule="!has(self.hooks) || !has(self.source) || self.source.copyMethod != 'Snapshot'",message="hooks run around a Direct read of the claim; with copyMethod Snapshot the snapshot is the consistent instant: remove hooks or use copyMethod Direct"
type BackupPolicySpec struct {
	// schedule in cron format: five fields (minute hour day-of-month month day-of-week) or a
	// descriptor such as @daily, @hourly or @every 6h. Times are in timeZone.
	// +kubebuilder:validation:MinLength=1
	Schedule string `json:"schedule"`

	// timeZone is the IANA time zone the schedule and the daily, weekly and monthly retention
	// buckets are read in, such as "Europe/Berlin". Defaults to the controller's local time zone
	// (UTC in the shipped image).
	// +optional
	// +kubebuilder:validation:MinLength=1
	TimeZone *string `json:"timeZone,omitempty"`

	// suspend stops new runs while true; runs already started finish. On resume, at most the most
	// recent missed run is made up, and only within startingDeadlineSeconds.
	// +optional
	// +kubebuilder:default=false
	Suspend *bool `json:"suspend,omitempty"`

	// startingDeadlineSeconds is how late a run may start after its scheduled time, for example
	// after the controller was down; a run missed by more is skipped with a MissedSchedule event.
	// Unset means no deadline.
	// +optional
	// +kubebuilder:validation:Minimum=0
	StartingDeadlineSeconds *int64 `json:"startingDeadlineSeconds,omitempty"`

	// concurrencyPolicy says what a run does while an earlier run for the same claim is still
	// active: Forbid (default) skips it, Allow runs both, Replace stops the earlier one.
	// +optional
	// +kubebuilder:default=Forbid
	ConcurrencyPolicy ConcurrencyPolicy `json:"concurrencyPolicy,omitempty"`

	// target selects the PersistentVolumeClaims each run backs up.
	Target BackupTarget `json:"target"`

	// retention bounds how many Completed Backups of each claim are kept. A Backup that any rule
	// keeps is kept; Pending and Running Backups are never deleted. Unset keeps every Backup.
	// +optional
	Retention *RetentionPolicy `json:"retention,omitempty"`

	// BackupRunSettings are copied into every Backup a run creates.
	BackupRunSettings `json:",inline"`
}

// BackupTarget selects the claims a policy backs up.
type BackupTarget struct {
	// pvcSelector selects PersistentVolumeClaims in the policy's namespace by label; each run
	// backs up every claim it matches at that moment, one Backup per claim.
	PVCSelector metav1.LabelSelector `json:"pvcSelector"`
}

// RetentionPolicy says which Completed Backups of each claim are kept; the rest are deleted,
// oldest first, after each successful backup.
// +kubebuilder:validation:XValidation:rule="has(self.keepLast) || has(self.keepDaily) || has(self.keepWeekly) || has(self.keepMonthly)",message="retention needs at least one of keepLast, keepDaily, keepWeekly or keepMonthly; omit retention to keep every backup"
type RetentionPolicy struct {
	// keepLast keeps the newest N Completed Backups of each claim.
	// +optional
	// +kubebuilder:validation:Minimum=1
	KeepLast *int32 `json:"keepLast,omitempty"`

	// keepDaily keeps the newest Completed Backup of each of the last N days that have one.
	// +optional
	// +kubebuilder:validation:Minimum=0
	KeepDaily *int32 `json:"keepDaily,omitempty"`

	// keepWeekly keeps the newest Completed Backup of each of the last N ISO weeks that have one.
	// +optional
	// +kubebuilder:validation:Minimum=0
	KeepWeekly *int32 `json:"keepWeekly,omitempty"`

	// keepMonthly keeps the newest Completed Backup of each of the last N months that have one.
	// +optional
	// +kubebuilder:validation:Minimum=0
	KeepMonthly *int32 `json:"keepMonthly,omitempty"`

	// keepFailed bounds how many Failed Backups of each claim are kept for diagnosis; older ones
	// are deleted. Defaults to 3.
	// +optional
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:default=3
	KeepFailed *int32 `json:"keepFailed,omitempty"`
}

// BackupPolicyStatus is what the controller observed and did for a policy.
type BackupPolicyStatus struct {
	// observedGeneration is the spec generation this status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// conditions: Ready says whether the schedule, time zone and target are valid and runs are
	// being scheduled, with the reason when not.
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// lastScheduleTime is the scheduled time of the latest run that was started.
	// +optional
	LastScheduleTime *metav1.Time `json:"lastScheduleTime,omitempty"`

	// lastMissedTime is the scheduled time of the latest run that was skipped because it could
	// not start within startingDeadlineSeconds.
	// +optional
	LastMissedTime *metav1.Time `json:"lastMissedTime,omitempty"`

	// nextScheduleTime is when the next run is due; empty while suspended or invalid.
	// +optional
	NextScheduleTime *metav1.Time `json:"nextScheduleTime,omitempty"`

	// lastSuccessfulTime is when the latest Backup of this policy completed.
	// +optional
	LastSuccessfulTime *metav1.Time `json:"lastSuccessfulTime,omitempty"`

	// active lists the Backups of this policy that are Pending or Running.
	// +optional
	// +listType=atomic
	Active []BackupReference `json:"active,omitempty"`

	// lastRunNowToken is the latest value of the platform.example.com/run-now annotation that
	// was acted on, so each value triggers exactly one run.
	// +optional
	LastRunNowToken string `json:"lastRunNowToken,omitempty"`
}

// BackupReference names a Backup and the claim it archives.
type BackupReference struct {
	// name of the Backup.
	Name string `json:"name"`
	// pvcName is the claim the Backup archives.
	PVCName string `json:"pvcName"`
}

// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object
// +kubebuilder:object:root=true

// BackupPolicyList is a list of BackupPolicy objects.
type BackupPolicyList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata"`

	// items are the policies.
	Items []BackupPolicy `json:"items"`
}
