package archive

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// DeleteStats describes what Delete removed.
type DeleteStats struct {
	Archive string `json:"archive"`
	// Removed lists the files deleted, including leftovers of interrupted
	// writes.
	Removed []string `json:"removed"`
	// AlreadyDeleted is true when the archive did not exist (deleting twice
	// succeeds); side files and leftovers are still cleaned up.
	AlreadyDeleted bool `json:"alreadyDeleted"`
	// RetainedUntil is set when object storage refused the deletion because object lock
	// retains the archive until then (reason ArchiveRetained).
	RetainedUntil *time.Time `json:"retainedUntil,omitempty"`
}

// Delete removes an archive, its checksum file, its manifest and any
// temporary file of an interrupted backup of the same name. Only names of an
// archive are accepted (see Deletable), so a wrong argument cannot delete an
// unrelated file; fileName is the file name of a file archive (FormatFile),
// empty for a tar archive or one whose manifest says what it is.
func Delete(archive, fileName string) (*DeleteStats, error) {
	if archive == "" {
		return nil, newError(InvalidArgument, nil, "--archive is required: pass the archive file to delete")
	}
	if _, ok := CompressionForName(archive); !ok {
		manifest, err := os.ReadFile(manifestName(archive))
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, newError(ReadFailed, err, "cannot read the manifest of %s", archive)
		}
		if err := Deletable(archive, fileName, manifest); err != nil {
			return nil, err
		}
	}
	// A missing directory means the storage is not mounted, not that the
	// archive is gone: reporting success would leak the archive.
	if di, err := os.Stat(filepath.Dir(archive)); err != nil || !di.IsDir() {
		return nil, newError(ArchiveNotFound, err, "directory of %s does not exist: mount the storage volume that holds the archive, then delete again", archive)
	}
	stats := &DeleteStats{Archive: archive, Removed: []string{}}
	for i, p := range []string{archive, checksumName(archive), manifestName(archive)} {
		err := os.Remove(p)
		switch {
		case err == nil:
			stats.Removed = append(stats.Removed, p)
		case errors.Is(err, os.ErrNotExist):
			if i == 0 {
				stats.AlreadyDeleted = true
			}
		default:
			return stats, writeError(err, "cannot delete %s", p)
		}
	}
	n, err := removeTemps(archive)
	if err != nil {
		return stats, writeError(err, "cannot delete leftovers of interrupted writes of %s", archive)
	}
	if n > 0 {
		stats.Removed = append(stats.Removed, tempPrefix(archive)+"*")
	}
	if len(stats.Removed) > 0 {
		if err := syncDir(filepath.Dir(archive)); err != nil {
			return stats, writeError(err, "cannot make the deletion of %s durable", archive)
		}
	}
	return stats, nil
}

// Deletable checks that name, which has no tar archive's extension, may be deleted as a file
// archive (FormatFile): its name must be one of fileName, as the controller that named the
// archive says, or its manifest (manifest is its content, nil when there is none) must describe
// it. So a Backup whose file archive was never written is still cleaned up, and a wrong name is
// refused rather than reported deleted.
func Deletable(name, fileName string, manifest []byte) error {
	if _, ok := FileFormatForName(name, fileName); ok {
		return nil
	}
	if manifest != nil {
		if m, err := DecodeManifest(manifest); err == nil && m.Describes(name) {
			return nil
		}
	}
	how := "no manifest beside it records it as a file archive"
	if fileName != "" {
		how = fmt.Sprintf("it is not the name of a file archive of %q (--file-name) and %s", fileName, how)
	}
	return newError(InvalidArgument, nil, "%q does not end in .tar.zst, .tar.gz or .tar, and %s: refusing to delete what is not an archive", name, how)
}
