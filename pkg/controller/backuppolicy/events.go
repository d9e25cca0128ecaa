package backuppolicy

// Reasons of the policy's Ready condition and of its Events. Tools and alerts match on them, so
// their meaning never changes.
const (
	// ReasonScheduled: Ready; runs are scheduled.
	ReasonScheduled = "Scheduled"
	// ReasonSuspended: not Ready; spec.suspend is true and no runs start.
	ReasonSuspended = "Suspended"
	// ReasonInvalidSchedule: not Ready; spec.schedule cannot be parsed or never runs.
	ReasonInvalidSchedule = "InvalidSchedule"
	// ReasonInvalidTimeZone: not Ready; spec.timeZone is not a known IANA zone.
	ReasonInvalidTimeZone = "InvalidTimeZone"
	// ReasonInvalidSelector: not Ready; spec.target.pvcSelector is not a valid label selector.
	ReasonInvalidSelector = "InvalidSelector"
	// ReasonNoMatchingPVCs: not Ready; the selector matches no claim, so a run backs up nothing.
	ReasonNoMatchingPVCs = "NoMatchingPVCs"

	// ReasonBackupsCreated: a run created its Backups. Said once, by the sync that records the
	// run, naming all its Backups, whichever sync created them.
	ReasonBackupsCreated = "BackupsCreated"
	// ReasonAlreadyActive: a run skipped a claim whose previous Backup is still active
	// (concurrencyPolicy Forbid). Said once, by the sync that records the run.
	ReasonAlreadyActive = "AlreadyActive"
	// ReasonReplacedActive: a run deleted a claim's active Backup to start a new one
	// (concurrencyPolicy Replace). Said when the Backup is deleted.
	ReasonReplacedActive = "ReplacedActiveBackup"
	// ReasonMissedSchedule: a run was skipped because it could not start within
	// startingDeadlineSeconds.
	ReasonMissedSchedule = "MissedSchedule"
	// ReasonTooManyMissed: many scheduled times passed without a run (the controller was down or
	// the policy suspended); only the latest one was considered.
	ReasonTooManyMissed = "TooManyMissedTimes"
	// ReasonFailedCreate: a Backup could not be created; the run is retried.
	ReasonFailedCreate = "FailedCreate"
	// ReasonCleanupTriggered: retention deleted Backups it no longer keeps.
	ReasonCleanupTriggered = "CleanupTriggered"
	// ReasonFailedCleanup: retention could not delete a Backup; it is retried.
	ReasonFailedCleanup = "FailedCleanup"
)

// tooManyMissed is how many unrun scheduled times earn a TooManyMissedTimes warning, as upstream.
const tooManyMissed = 100
