// Package storage is where archives are kept: one interface, Backend, and the types its
// backends share. Each kind of storage has its own package beside this one (volume: a directory
// on a mounted claim; s3: a bucket of an S3-compatible object store). The agent chooses the
// backend once, from the archive's location, and the data path (pkg/archive) reads and writes
// through it without asking which it is.
package storage

import (
	"context"
	"time"

	"platform.example.com/backup-operator/pkg/archive"
)

// Backend is one place archives are kept. Keys are slash-separated names below the backend's
// root, such as "db/data-db-0/daily-db-0-29001234.tar.zst"; an archive's checksum and manifest
// are the keys with ".sha256" and ".manifest.json" appended.
type Backend interface {
	// Create starts the archive key for a backup of the directory source. Nothing is visible
	// under key until the returned sink commits, and an existing archive is never replaced.
	Create(ctx context.Context, key, source string) (archive.Sink, error)
	// Open opens the archive key for reading.
	Open(ctx context.Context, key string) (archive.Source, error)
	// Delete removes the archive key, its checksum and manifest, and what unfinished writes of
	// it left behind. Deleting an archive that is gone succeeds and says so. fileName is the
	// file name of a file archive (archive.FormatFile), empty for a tar archive.
	Delete(ctx context.Context, key, fileName string) (*archive.DeleteStats, error)
	// Check proves the storage usable below prefix, for reading and, unless it is read-only,
	// for writing, without leaving anything behind, and says what it found.
	Check(ctx context.Context, prefix string) (*CheckResult, error)
	// Manifests reads the manifest of every complete archive below prefix.
	Manifests(ctx context.Context, prefix string) ([]Listed, error)
}

// CheckResult is what a storage check found.
type CheckResult struct {
	// Writable is true when a write was proven (false for read-only storage).
	Writable bool `json:"writable"`
	// Versioning is true when the bucket keeps old versions of objects.
	Versioning bool `json:"versioning,omitempty"`
	// ObjectLock is true when the bucket has object lock enabled; ObjectLockMode and
	// ObjectLockDays are its default retention, if any.
	ObjectLock     bool   `json:"objectLock,omitempty"`
	ObjectLockMode string `json:"objectLockMode,omitempty"`
	ObjectLockDays int    `json:"objectLockDays,omitempty"`
}

// Listed is a complete archive found on storage: its key and its manifest.
type Listed struct {
	// Key of the archive.
	Key string `json:"key"`
	// Manifest as written beside the archive.
	Manifest archive.Manifest `json:"manifest"`
	// LastModified is when the manifest was written.
	LastModified time.Time `json:"lastModified"`
}
