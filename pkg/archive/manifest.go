package archive

import (
	"encoding/json"
	"time"
)

// ManifestVersion is the version of the manifest layout; it changes only when
// a field changes meaning.
const ManifestVersion = 1

// Manifest describes an archive. It is written beside the archive as
// <archive>.manifest.json so the storage alone explains what each file holds.
type Manifest struct {
	ManifestVersion int         `json:"manifestVersion"`
	Archive         string      `json:"archive"`
	Source          string      `json:"source"`
	Compression     Compression `json:"compression"`
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

func (m *Manifest) encode() ([]byte, error) {
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}
