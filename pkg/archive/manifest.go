package archive

import (
	"encoding/json"
	"path"
	"time"
)

// ManifestVersion is the newest version of the manifest layout; it changes only when a field
// changes meaning. Version 2 adds encryption: a manifest is written as version 1 unless its
// archive is encrypted, so that a tool that predates encryption refuses to read an encrypted
// archive as if it were plain, and still reads every other. File archives (format "file") added
// fields but changed none: a manifest without format is a tar's, as before, and a tool that
// predates them never takes one for a tar archive, because it only lists archives whose names
// end in .tar...
const ManifestVersion = 2

// manifestVersionFor is the version a manifest of an archive encrypted as e is written as.
func manifestVersionFor(e *Encryption) int {
	if e != nil {
		return 2
	}
	return 1
}

// Manifest describes an archive. It is written beside the archive as
// <archive>.manifest.json so the storage alone explains what each file holds.
type Manifest struct {
	ManifestVersion int    `json:"manifestVersion"`
	Archive         string `json:"archive"`
	Source          string `json:"source"`
	// Command is the command whose standard output was archived instead of Source's files.
	Command []string `json:"command,omitempty"`
	// Container is the container the Command ran in, and ExecServiceAccountName the
	// ServiceAccount it ran as: with Command, what a cluster that has only the storage needs to
	// describe how the Backup was taken.
	Container              string `json:"container,omitempty"`
	ExecServiceAccountName string `json:"execServiceAccountName,omitempty"`
	// Format is FormatFile for a file archive, and omitted for a tar.
	Format StreamFormat `json:"format,omitempty"`
	// FileName is the name a file archive's content is restored as; only with FormatFile.
	FileName string `json:"fileName,omitempty"`
	// Origin says what was backed up, so that the storage alone can rebuild the Backup.
	Origin      `json:",inline"`
	Compression Compression `json:"compression"`
	// Encryption says how the archive is encrypted; absent when it is not.
	Encryption      *Encryption `json:"encryption,omitempty"`
	SHA256          string      `json:"sha256"`
	Size            int64       `json:"size"`
	SourceBytes     int64       `json:"sourceBytes"`
	Files           int64       `json:"files"`
	Directories     int64       `json:"directories"`
	Symlinks        int64       `json:"symlinks"`
	Hardlinks       int64       `json:"hardlinks"`
	Skipped         int64       `json:"skipped"`
	Vanished        int64       `json:"vanished"`
	ChangedFiles    int64       `json:"changedFiles"`
	ChangedFileList []string    `json:"changedFileList,omitempty"`
	StartTime       time.Time   `json:"startTime"`
	CompletionTime  time.Time   `json:"completionTime"`
	ToolVersion     string      `json:"toolVersion"`
}

// Origin is what a backup archived, in the cluster's terms: recorded in the manifest so that a
// cluster that has only the storage can tell which claim, policy and Backup an archive is of.
type Origin struct {
	// Namespace and PVC are the claim that was archived.
	Namespace string `json:"namespace,omitempty"`
	PVC       string `json:"pvc,omitempty"`
	// Policy is the BackupPolicy that made the Backup; empty for one made by hand.
	Policy string `json:"policy,omitempty"`
	// Backup is the Backup's name and BackupUID its UID.
	Backup    string `json:"backup,omitempty"`
	BackupUID string `json:"backupUID,omitempty"`
}

// DecodeManifest parses a manifest, refusing versions this tool does not know.
func DecodeManifest(b []byte) (*Manifest, error) {
	var m Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, newError(CorruptArchive, err, "manifest is not valid JSON")
	}
	if m.ManifestVersion < 1 || m.ManifestVersion > ManifestVersion {
		return nil, newError(CorruptArchive, nil, "manifest version %d is not one this tool reads (1 to %d): upgrade the operator", m.ManifestVersion, ManifestVersion)
	}
	return &m, nil
}

// ArchiveFormat is the format of m's archive as its name must say it: the manifest, not the
// name, tells a file archive, so that a file archive's name is never guessed.
func (m *Manifest) ArchiveFormat() (Format, bool) {
	if m.Format == FormatFile {
		return FileFormatForName(m.Archive, m.FileName)
	}
	return FormatForName(m.Archive)
}

// Describes reports whether m is the manifest of the archive called name (its base name is
// compared): the name must be the one m records, with the extension of m's format.
func (m *Manifest) Describes(name string) bool {
	_, ok := m.ArchiveFormat()
	return ok && m.Archive == path.Base(name)
}

func (m *Manifest) encode() ([]byte, error) {
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}
