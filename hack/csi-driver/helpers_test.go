package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

const testDriverName = "btrfs.csi.test.example.com"

// unavailable skips the test because the environment cannot run it, or
// fails it when CSI_BTRFS_REQUIRED is set (CI, where skipping would hide
// that the driver went untested).
func unavailable(t *testing.T, format string, args ...any) {
	t.Helper()
	if os.Getenv("CSI_BTRFS_REQUIRED") != "" {
		t.Fatalf("CSI_BTRFS_REQUIRED is set, but: "+format, args...)
	}
	t.Skipf(format, args...)
}

// btrfsRoot loop-mounts a fresh 512 MiB btrfs file system for the test and
// returns its mount point.
func btrfsRoot(t *testing.T) string {
	t.Helper()
	if os.Geteuid() != 0 {
		unavailable(t, "not running as root: loop-mounting a btrfs image needs root")
	}
	for _, tool := range []string{"mkfs.btrfs", "btrfs", "mount", "umount"} {
		if _, err := exec.LookPath(tool); err != nil {
			unavailable(t, "%s not found in PATH (on Debian: apt-get install btrfs-progs)", tool)
		}
	}
	dir := t.TempDir()
	img := filepath.Join(dir, "btrfs.img")
	f, err := os.Create(img)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(512 << 20); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if out, err := exec.Command("mkfs.btrfs", "-q", img).CombinedOutput(); err != nil {
		t.Fatalf("mkfs.btrfs: %v: %s", err, out)
	}
	mnt := filepath.Join(dir, "mnt")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-o", "loop", img, mnt).CombinedOutput(); err != nil {
		unavailable(t, "loop mount of a btrfs image refused (no loop devices or btrfs in this kernel/container?): %v: %s", err, out)
	}
	// Registered after t.TempDir, so it runs before the directory is removed.
	t.Cleanup(func() {
		if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", mnt, err, out)
		}
	})
	return mnt
}

// testServers are the three CSI services of a driver on a fresh btrfs.
type testServers struct {
	d          *driver
	identity   *identityServer
	controller *controllerServer
	node       *nodeServer
}

func newTestServers(t *testing.T) *testServers {
	t.Helper()
	d, err := newDriver(testDriverName, "node-1", btrfsRoot(t))
	if err != nil {
		t.Fatal(err)
	}
	return &testServers{d: d, identity: &identityServer{d: d}, controller: &controllerServer{d: d}, node: &nodeServer{d: d}}
}

func mountCap(mode csi.VolumeCapability_AccessMode_Mode) *csi.VolumeCapability {
	return &csi.VolumeCapability{
		AccessType: &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{}},
		AccessMode: &csi.VolumeCapability_AccessMode{Mode: mode},
	}
}

var rwo = []*csi.VolumeCapability{mountCap(csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER)}

// createVolume creates a volume of size bytes, optionally from a source,
// and fails the test on error.
func (s *testServers) createVolume(t *testing.T, name string, size int64, src *csi.VolumeContentSource) *csi.Volume {
	t.Helper()
	resp, err := s.controller.CreateVolume(context.Background(), &csi.CreateVolumeRequest{
		Name: name, VolumeCapabilities: rwo, CapacityRange: &csi.CapacityRange{RequiredBytes: size}, VolumeContentSource: src,
	})
	if err != nil {
		t.Fatalf("CreateVolume %s: %v", name, err)
	}
	return resp.GetVolume()
}

func (s *testServers) createSnapshot(t *testing.T, name, volID string) *csi.Snapshot {
	t.Helper()
	resp, err := s.controller.CreateSnapshot(context.Background(), &csi.CreateSnapshotRequest{Name: name, SourceVolumeId: volID})
	if err != nil {
		t.Fatalf("CreateSnapshot %s of %s: %v", name, volID, err)
	}
	return resp.GetSnapshot()
}

func fromSnapshot(id string) *csi.VolumeContentSource {
	return &csi.VolumeContentSource{Type: &csi.VolumeContentSource_Snapshot{Snapshot: &csi.VolumeContentSource_SnapshotSource{SnapshotId: id}}}
}

func fromVolume(id string) *csi.VolumeContentSource {
	return &csi.VolumeContentSource{Type: &csi.VolumeContentSource_Volume{Volume: &csi.VolumeContentSource_VolumeSource{VolumeId: id}}}
}

// wantCode fails the test unless err is a gRPC status with code want.
func wantCode(t *testing.T, what string, err error, want codes.Code) {
	t.Helper()
	if got := status.Code(err); got != want {
		t.Errorf("%s: got code %v (%v), want %v", what, got, err, want)
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}
