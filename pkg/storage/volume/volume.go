// Package volume keeps archives as files in a directory of a mounted volume: the storage of a
// BackupStorage of type persistentVolumeClaim, and of the inline storage.persistentVolumeClaim.
package volume

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"platform.example.com/backup-operator/pkg/archive"
	"platform.example.com/backup-operator/pkg/storage"
)

// Backend is a directory whose files are archives.
type Backend struct {
	root     string
	readOnly bool
}

var _ storage.Backend = (*Backend)(nil)

// New returns the backend of the directory root.
func New(root string) *Backend { return &Backend{root: root} }

// NewReadOnly returns the backend of the directory root that never writes: Check proves
// reading only.
func NewReadOnly(root string) *Backend { return &Backend{root: root, readOnly: true} }

func (b *Backend) path(key string) string { return filepath.Join(b.root, filepath.FromSlash(key)) }

// Create starts the archive file key; see archive.CreateFile.
func (b *Backend) Create(_ context.Context, key, source string) (archive.Sink, error) {
	return archive.CreateFile(b.path(key), source)
}

// Open opens the archive file key.
func (b *Backend) Open(_ context.Context, key string) (archive.Source, error) {
	return archive.OpenFile(b.path(key))
}

// Delete removes the archive file key with its side files; see archive.Delete.
func (b *Backend) Delete(_ context.Context, key, fileName string) (*archive.DeleteStats, error) {
	return archive.Delete(b.path(key), fileName)
}

// Check proves the directory prefix below the root readable and, unless the backend is
// read-only, writable, with a hidden file that it removes at once.
func (b *Backend) Check(_ context.Context, prefix string) (*storage.CheckResult, error) {
	dir := b.path(prefix)
	if _, err := os.ReadDir(dir); err != nil && !(errors.Is(err, fs.ErrNotExist) && prefix != "") {
		return nil, &archive.Error{Reason: archive.ReadFailed, Msg: "cannot list " + dir + ": check that the storage claim is mounted and readable by the agent", Err: err}
	}
	res := &storage.CheckResult{}
	if b.readOnly {
		return res, nil
	}
	f, err := os.CreateTemp(b.root, ".backup-operator-check-*")
	if err != nil {
		return nil, &archive.Error{Reason: archive.WriteFailed, Msg: "cannot write to " + b.root + ": check that the storage claim is mounted read-write and writable by the agent", Err: err}
	}
	f.Close()
	if err := os.Remove(f.Name()); err != nil {
		return nil, &archive.Error{Reason: archive.WriteFailed, Msg: "cannot delete the check file " + f.Name() + ": delete it by hand", Err: err}
	}
	res.Writable = true
	return res, nil
}

// Manifests reads the manifest of every archive below prefix whose archive file exists too.
// A manifest that does not parse is skipped: it describes no archive this tool can restore.
func (b *Backend) Manifests(_ context.Context, prefix string) ([]storage.Listed, error) {
	var listed []storage.Listed
	top := b.path(prefix)
	err := filepath.WalkDir(top, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if p == top && errors.Is(err, fs.ErrNotExist) {
				return filepath.SkipDir
			}
			return err
		}
		archiveFile, ok := strings.CutSuffix(p, ".manifest.json")
		if d.IsDir() || !ok || strings.HasPrefix(d.Name(), ".") {
			return nil
		}
		if _, err := os.Lstat(archiveFile); err != nil {
			return nil // an archive that is not (or no longer) there: nothing to import
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		m, err := archive.DecodeManifest(data)
		if err != nil {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(b.root, archiveFile)
		if err != nil {
			return err
		}
		listed = append(listed, storage.Listed{Key: filepath.ToSlash(rel), Manifest: *m, LastModified: info.ModTime().UTC()})
		return nil
	})
	if err != nil {
		return nil, &archive.Error{Reason: archive.ReadFailed, Msg: "cannot list the archives below " + top, Err: err}
	}
	slices.SortFunc(listed, func(a, b storage.Listed) int { return strings.Compare(a.Key, b.Key) })
	return listed, nil
}
