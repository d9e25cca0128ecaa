package agent

import (
	"time"

	platformv1 "platform.example.com/backup-operator/pkg/apis/platform/v1"

	"platform.example.com/backup-operator/pkg/archive"
	"platform.example.com/backup-operator/pkg/storage"
)

// Reason is the machine-readable cause carried by a failed result.
type Reason = archive.Reason

// Reasons a result can carry. The controller decides what to do on them
// (retry, fail the Backup, surface a condition), so they never change meaning.
const (
	InvalidArgument  = archive.InvalidArgument
	SourceNotFound   = archive.SourceNotFound
	ReadFailed       = archive.ReadFailed
	WriteFailed      = archive.WriteFailed
	OutputExists     = archive.OutputExists
	ArchiveNotFound  = archive.ArchiveNotFound
	ChecksumMismatch = archive.ChecksumMismatch
	CorruptArchive   = archive.CorruptArchive
	UnsafeArchive    = archive.UnsafeArchive
	TargetNotFound   = archive.TargetNotFound
	TargetNotEmpty   = archive.TargetNotEmpty
	Canceled         = archive.Canceled
	Internal         = archive.Internal
	ArchiveRetained  = archive.ArchiveRetained

	EncryptionKeyMissing = archive.EncryptionKeyMissing
	WrongEncryptionKey   = archive.WrongEncryptionKey

	StorageUnreachable    = archive.StorageUnreachable
	StorageTLSUntrusted   = archive.StorageTLSUntrusted
	StorageAccessDenied   = archive.StorageAccessDenied
	StorageBucketNotFound = archive.StorageBucketNotFound
	StorageWrongRegion    = archive.StorageWrongRegion
	StorageReadOnly       = archive.StorageReadOnly
	StorageError          = archive.StorageError
	ArchiveTooLarge       = archive.ArchiveTooLarge
)

// Exit codes of the agent.
const (
	// ExitOK: the operation succeeded.
	ExitOK = 0
	// ExitFailed: the operation failed; the result's reason says why.
	ExitFailed = 1
	// ExitUsage: the command line is invalid (reason InvalidArgument).
	ExitUsage = 2
	// ExitIntegrity: the archive failed verification or is unsafe to
	// extract (ChecksumMismatch, CorruptArchive, UnsafeArchive); retrying
	// cannot help.
	ExitIntegrity = 3
	// ExitRefused: the operation was refused because of the state of the source, target or
	// storage or its keys (TargetNotEmpty, TargetNotFound, SourceNotFound, ArchiveNotFound,
	// OutputExists, EncryptionKeyMissing, WrongEncryptionKey);
	// nothing was written, and retrying cannot help until someone changes that state.
	ExitRefused = 4
)

// Operations, as reported in Status.Operation.
const (
	OpBackup  = "backup"
	OpRestore = "restore"
	OpVerify  = "verify"
	OpDelete  = "delete"
	// OpStorageCheck proves a storage usable; see StorageCheckResult.
	OpStorageCheck = "storage check"
	// OpStorageList lists the complete archives on a storage; see StorageListResult.
	OpStorageList = "storage list"
)

// Status is the part of every result that says how the run ended.
type Status struct {
	Operation string `json:"operation"`
	// Error says what was wrong and what to do; empty on success.
	Error string `json:"error,omitempty"`
	// Reason is set exactly when Error is.
	Reason          Reason    `json:"reason,omitempty"`
	StartTime       time.Time `json:"startTime"`
	CompletionTime  time.Time `json:"completionTime"`
	DurationSeconds float64   `json:"durationSeconds"`
	ToolVersion     string    `json:"toolVersion"`
}

// Succeeded reports whether the run succeeded.
func (s *Status) Succeeded() bool { return s.Error == "" }

// BackupResult is printed by `agent backup`.
type BackupResult struct {
	Status
	archive.BackupStats
	// Source is the command whose output was archived; absent for a volume.
	Source *platformv1.SourceStatus `json:"source,omitempty"`
	// Hooks are the hooks that ran, in order.
	Hooks []platformv1.HookStatus `json:"hooks,omitempty"`
}

// RestoreResult is printed by `agent restore`.
type RestoreResult struct {
	Status
	archive.RestoreStats
}

// VerifyResult is printed by `agent verify`.
type VerifyResult struct {
	Status
	archive.VerifyStats
}

// DeleteResult is printed by `agent delete`.
type DeleteResult struct {
	Status
	archive.DeleteStats
}

// StorageCheckResult is printed by `agent storage check`: what the check proved of the storage
// at Location, which the BackupStorage controller turns into the storage's phase and features.
type StorageCheckResult struct {
	Status
	// Location is the storage checked, as passed with --location.
	Location string `json:"location"`
	storage.CheckResult
}

// StorageListResult is printed by `agent storage list` after the list itself, one
// storage.Listed JSON line per archive. The list goes to the log only, because the termination
// message holds 4 KiB: Archives, which this result carries to the controller, is how it tells a
// complete list in the log from one that was cut.
type StorageListResult struct {
	Status
	// Location is the storage listed, as passed with --location.
	Location string `json:"location"`
	// Archives is how many archives were listed: the number of lines before this result.
	Archives int `json:"archives"`
}
