package archive

import (
	"context"
	"errors"
	"fmt"
)

// Reason is a stable, machine-readable cause of a failure. The controller
// branches on it, so existing values must never change meaning.
type Reason string

// Reasons reported by the archive operations.
const (
	// InvalidArgument: the command line or an option is wrong.
	InvalidArgument Reason = "InvalidArgument"
	// SourceNotFound: the backup source is missing or not a directory.
	SourceNotFound Reason = "SourceNotFound"
	// ReadFailed: a source file could not be read.
	ReadFailed Reason = "ReadFailed"
	// WriteFailed: writing the archive, its side files or restored files failed.
	WriteFailed Reason = "WriteFailed"
	// OutputExists: the backup would replace an existing archive.
	OutputExists Reason = "OutputExists"
	// ArchiveNotFound: the archive to restore or verify does not exist.
	ArchiveNotFound Reason = "ArchiveNotFound"
	// ChecksumMismatch: the archive's sha256 is not the expected one.
	ChecksumMismatch Reason = "ChecksumMismatch"
	// CorruptArchive: the checksum matches but the archive does not decompress
	// or parse as tar.
	CorruptArchive Reason = "CorruptArchive"
	// UnsafeArchive: an entry would write outside the restore target.
	UnsafeArchive Reason = "UnsafeArchive"
	// TargetNotFound: the restore target is missing or not a directory.
	TargetNotFound Reason = "TargetNotFound"
	// TargetNotEmpty: the restore target has data and no overwrite mode allows it.
	TargetNotEmpty Reason = "TargetNotEmpty"
	// EncryptionKeyMissing: the archive is encrypted and no identity was given.
	EncryptionKeyMissing Reason = "EncryptionKeyMissing"
	// WrongEncryptionKey: the archive is not encrypted to any identity given.
	WrongEncryptionKey Reason = "WrongEncryptionKey"
	// Canceled: the operation was interrupted (for example the Pod was stopped).
	Canceled Reason = "Canceled"
	// Internal: an unexpected failure; the message carries the details.
	Internal Reason = "Internal"
	// StreamFailed: a command's output, archived instead of a volume, was not what its format
	// says, such as a tar stream that ends in the middle or names a file outside its root.
	StreamFailed Reason = "StreamFailed"
)

// Reasons reported by object storage. The message names what to fix; the controller turns them
// into a BackupStorage's Ready condition.
const (
	// StorageUnreachable: the endpoint did not answer (DNS, connection refused, timeout).
	StorageUnreachable Reason = "EndpointUnreachable"
	// StorageTLSUntrusted: the endpoint's certificate is not trusted by the CA bundle.
	StorageTLSUntrusted Reason = "TLSNotTrusted"
	// StorageAccessDenied: the credentials are wrong, or lack a permission the operation needs.
	StorageAccessDenied Reason = "AccessDenied"
	// StorageBucketNotFound: the bucket does not exist.
	StorageBucketNotFound Reason = "BucketNotFound"
	// StorageWrongRegion: the bucket is in another region than the one configured.
	StorageWrongRegion Reason = "WrongRegion"
	// StorageReadOnly: the storage is ReadOnly, and the operation would write or delete.
	StorageReadOnly Reason = "StorageReadOnly"
	// StorageError: the server refused the request for another reason; the message has its
	// code and text.
	StorageError Reason = "StorageError"
	// ArchiveTooLarge: the archive would need more parts than an upload may have; the part
	// size must grow (a larger size hint), and nothing was left under the final name.
	ArchiveTooLarge Reason = "ArchiveTooLarge"
	// ArchiveRetained: the server's object lock keeps the archive until a date; it was not
	// deleted.
	ArchiveRetained Reason = "ArchiveRetained"
)

// IsStorageReason reports whether r says the storage itself is unusable, as opposed to a
// problem with one archive or with the data: a reason to validate the storage again.
func IsStorageReason(r Reason) bool {
	switch r {
	case StorageUnreachable, StorageTLSUntrusted, StorageAccessDenied, StorageBucketNotFound, StorageWrongRegion:
		return true
	}
	return false
}

// Error is a failure with a Reason and a message that says what was wrong and
// what to do about it.
type Error struct {
	Reason Reason
	// Msg states what went wrong and what to do.
	Msg string
	// Err is the underlying cause, if any.
	Err error
}

func (e *Error) Error() string {
	if e.Err != nil {
		return e.Msg + ": " + e.Err.Error()
	}
	return e.Msg
}

func (e *Error) Unwrap() error { return e.Err }

// newError builds an *Error; format follows fmt.Sprintf.
func newError(reason Reason, cause error, format string, args ...any) *Error {
	return &Error{Reason: reason, Msg: fmt.Sprintf(format, args...), Err: cause}
}

// ReasonOf returns the Reason carried by err, Canceled for context errors,
// and Internal for anything else.
func ReasonOf(err error) Reason {
	var e *Error
	if errors.As(err, &e) {
		return e.Reason
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return Canceled
	}
	return Internal
}
