package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// The on-disk layout under the driver's root:
//
//	volumes/<id>               writable subvolume, one per volume
//	snapshots/<id>             read-only subvolume, one per snapshot
//	meta/volume-<id>.json      volumeMeta; written last, so it marks a complete volume
//	meta/snapshot-<id>.json    snapshotMeta; likewise for a snapshot
//
// Metadata lives outside the subvolumes so that a pod can neither read nor
// change it, and so that a snapshot does not carry its source's metadata.

// btrfsFirstInode is the inode number of the root directory of every btrfs
// subvolume (BTRFS_FIRST_FREE_OBJECTID); btrfs-progs uses it the same way to
// tell a subvolume from a plain directory.
const btrfsFirstInode = 256

// idPattern is what a volume or snapshot id looks like. It is a single safe
// path component, so an id from a request can never escape the root.
var idPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$`)

// idFromName derives the id of a volume or snapshot from the name that the
// CO gave it, so a retried create finds the object it made before. The
// sidecars' names (pvc-<uid>, snapshot-<uid>) are used as they are, which keeps
// ids readable; any other name is hashed. The name is also kept in the
// metadata, so a name that merely looks like another's hash is still told apart.
func idFromName(name string) string {
	if idPattern.MatchString(name) {
		return name
	}
	sum := sha256.Sum256([]byte(name))
	return "h-" + hex.EncodeToString(sum[:20])
}

// volumeMeta is what the driver remembers about a volume.
type volumeMeta struct {
	Name string `json:"name"`
	// CapacityBytes is the size the CO asked for. It is not enforced (there
	// are no quotas); it is returned to the CO and handed on to snapshots.
	CapacityBytes    int64  `json:"capacityBytes"`
	SourceSnapshotID string `json:"sourceSnapshotId,omitempty"`
	SourceVolumeID   string `json:"sourceVolumeId,omitempty"`
}

// snapshotMeta is what the driver remembers about a snapshot.
type snapshotMeta struct {
	Name           string `json:"name"`
	SourceVolumeID string `json:"sourceVolumeId"`
	// SizeBytes is the source volume's capacity when the snapshot was taken,
	// the minimum size of a volume restored from it.
	SizeBytes    int64 `json:"sizeBytes"`
	CreationTime int64 `json:"creationTimeUnixNano"`
}

// store is the driver's root directory on a btrfs file system.
type store struct {
	root string
}

// openStore creates root and its layout and checks that it is on btrfs.
func openStore(root string) (*store, error) {
	root, err := filepath.Abs(root)
	if err != nil {
		return nil, err
	}
	// Creating the root first is harmless when the file system is not
	// mounted yet: the check below then fails on the type.
	if err := os.MkdirAll(root, 0o700); err != nil {
		return nil, fmt.Errorf("create root: %w", err)
	}
	s := &store{root: root}
	if err := s.checkBtrfs(); err != nil {
		return nil, err
	}
	for _, dir := range []string{"volumes", "snapshots", "meta"} {
		if err := os.MkdirAll(filepath.Join(root, dir), 0o700); err != nil {
			return nil, fmt.Errorf("create %s under the root: %w", dir, err)
		}
	}
	return s, nil
}

func (s *store) volumePath(id string) string   { return filepath.Join(s.root, "volumes", id) }
func (s *store) snapshotPath(id string) string { return filepath.Join(s.root, "snapshots", id) }
func (s *store) volumeMetaPath(id string) string {
	return filepath.Join(s.root, "meta", "volume-"+id+".json")
}
func (s *store) snapshotMetaPath(id string) string {
	return filepath.Join(s.root, "meta", "snapshot-"+id+".json")
}

// checkBtrfs fails unless the root is a directory on a btrfs file system.
func (s *store) checkBtrfs() error {
	var st unix.Statfs_t
	if err := unix.Statfs(s.root, &st); err != nil {
		return fmt.Errorf("root %s: %w", s.root, err)
	}
	if st.Type != unix.BTRFS_SUPER_MAGIC {
		return fmt.Errorf("root %s is not on a btrfs file system (type %#x); mount one there or pass another --root", s.root, st.Type)
	}
	return nil
}

// checkWritable creates and removes a file in the root's metadata directory.
func (s *store) checkWritable() error {
	f, err := os.CreateTemp(filepath.Join(s.root, "meta"), ".probe-*")
	if err != nil {
		return fmt.Errorf("root %s is not writable: %w", s.root, err)
	}
	f.Close()
	return os.Remove(f.Name())
}

// isSubvolume reports whether path exists and is the root of a subvolume.
func isSubvolume(path string) (bool, error) {
	fi, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	return ok && fi.IsDir() && st.Ino == btrfsFirstInode, nil
}

// createSubvolume runs `btrfs subvolume create path`.
func createSubvolume(path string) error {
	return runBtrfs("subvolume", "create", path)
}

// snapshotSubvolume snapshots src to dst. A read-only snapshot is taken in one
// instant, so a snapshot of a live database's volume is crash-consistent.
func snapshotSubvolume(src, dst string, readOnly bool) error {
	args := []string{"subvolume", "snapshot"}
	if readOnly {
		args = append(args, "-r")
	}
	return runBtrfs(append(args, src, dst)...)
}

// deleteSubvolume deletes the subvolume at path; a missing one is no error.
func deleteSubvolume(path string) error {
	ok, err := isSubvolume(path)
	if err != nil {
		return err
	}
	if ok {
		return runBtrfs("subvolume", "delete", path)
	}
	// Not a subvolume: nothing, or an empty directory someone left behind.
	// Anything else is not the driver's to delete.
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%s is not a btrfs subvolume and cannot be removed; inspect it by hand: %w", path, err)
	}
	return nil
}

// runBtrfs runs the btrfs command and turns a failure into an error that
// carries the command line and its stderr.
func runBtrfs(args ...string) error {
	var stderr bytes.Buffer
	cmd := exec.Command("btrfs", args...)
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		if errors.Is(err, exec.ErrNotFound) {
			return fmt.Errorf("btrfs command not found: install btrfs-progs in the driver's image: %w", err)
		}
		return fmt.Errorf("btrfs %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return nil
}

// readMeta decodes the JSON file at path into v; found is false if the file
// does not exist.
func readMeta(path string, v any) (found bool, err error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if err := json.Unmarshal(data, v); err != nil {
		return false, fmt.Errorf("metadata %s is corrupt (%w): fix or remove it together with its subvolume", path, err)
	}
	return true, nil
}

// writeMeta writes v as JSON to path atomically: a reader sees the old file
// or the complete new one, never a torn one, even after a crash.
func writeMeta(path string, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write metadata %s: %w", path, err)
	}
	return nil
}

// removeMeta removes a metadata file; a missing one is no error.
func removeMeta(path string) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}
