package main

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
)

// targetDir returns a kubelet-like pod volume directory whose target the
// driver must create itself, and unmounts whatever a failed test left there.
func targetDir(t *testing.T, name string) string {
	t.Helper()
	target := filepath.Join(t.TempDir(), "pods", "uid", "volumes", "kubernetes.io~csi", name, "mount")
	if err := os.MkdirAll(filepath.Dir(target), 0o750); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for {
			if m, err := findMount(target); err != nil || m == nil {
				return
			}
			if err := unix.Unmount(target, unix.MNT_DETACH); err != nil {
				t.Errorf("cleanup: unmount %s: %v", target, err)
				return
			}
		}
	})
	return target
}

func TestPublishUnpublish(t *testing.T) {
	s := newTestServers(t)
	ctx := context.Background()
	vol := s.createVolume(t, "pvc-1", gib, nil)
	volDir := s.d.store.volumePath(vol.GetVolumeId())
	writeFile(t, filepath.Join(volDir, "existing"), "hello")

	rw := targetDir(t, "rw")
	publish := func(target string, readOnly bool, mode csi.VolumeCapability_AccessMode_Mode) error {
		_, err := s.node.NodePublishVolume(ctx, &csi.NodePublishVolumeRequest{
			VolumeId: vol.GetVolumeId(), TargetPath: target, VolumeCapability: mountCap(mode), Readonly: readOnly,
		})
		return err
	}
	unpublish := func(target string) error {
		_, err := s.node.NodeUnpublishVolume(ctx, &csi.NodeUnpublishVolumeRequest{VolumeId: vol.GetVolumeId(), TargetPath: target})
		return err
	}

	for i := range 2 {
		if err := publish(rw, false, csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER); err != nil {
			t.Fatalf("publish #%d: %v", i+1, err)
		}
	}
	if m, err := findMount(rw); err != nil || m == nil || m.readOnly {
		t.Fatalf("after publish, mount at target = %+v, %v; want a read-write mount", m, err)
	}
	if got := readFile(t, filepath.Join(rw, "existing")); got != "hello" {
		t.Errorf("target shows %q, want the volume's content", got)
	}
	writeFile(t, filepath.Join(rw, "from-pod"), "written")
	if got := readFile(t, filepath.Join(volDir, "from-pod")); got != "written" {
		t.Errorf("a write through the target did not reach the volume: %q", got)
	}
	if err := publish(rw, true, csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER); err == nil {
		t.Error("publishing read-only over a read-write publication succeeded")
	} else {
		wantCode(t, "read-only over read-write", err, codes.AlreadyExists)
	}

	// Read-only by flag, and by access mode.
	for name, pub := range map[string]func(string) error{
		"readonly flag": func(tg string) error { return publish(tg, true, csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER) },
		"reader-only mode": func(tg string) error {
			return publish(tg, false, csi.VolumeCapability_AccessMode_MULTI_NODE_READER_ONLY)
		},
		"single-node ro mode": func(tg string) error {
			return publish(tg, false, csi.VolumeCapability_AccessMode_SINGLE_NODE_READER_ONLY)
		},
	} {
		ro := targetDir(t, "ro")
		if err := pub(ro); err != nil {
			t.Fatalf("%s: publish: %v", name, err)
		}
		if err := pub(ro); err != nil {
			t.Errorf("%s: repeated publish: %v", name, err)
		}
		if got := readFile(t, filepath.Join(ro, "existing")); got != "hello" {
			t.Errorf("%s: target shows %q", name, got)
		}
		if err := os.WriteFile(filepath.Join(ro, "x"), nil, 0o644); !errors.Is(err, syscall.EROFS) {
			t.Errorf("%s: write to a read-only publication: %v, want EROFS", name, err)
		}
		if err := unpublish(ro); err != nil {
			t.Errorf("%s: unpublish: %v", name, err)
		}
	}
	// Making the second mount read-only must not have touched the first.
	writeFile(t, filepath.Join(rw, "still-writable"), "yes")

	for i := range 2 {
		if err := unpublish(rw); err != nil {
			t.Fatalf("unpublish #%d: %v", i+1, err)
		}
	}
	if m, err := findMount(rw); err != nil || m != nil {
		t.Errorf("target still mounted after unpublish: %+v, %v", m, err)
	}
	if _, err := os.Stat(rw); !os.IsNotExist(err) {
		t.Errorf("target not removed: %v", err)
	}
	if got := readFile(t, filepath.Join(volDir, "still-writable")); got != "yes" {
		t.Errorf("volume lost data on unpublish: %q", got)
	}
}

func TestPublishRefusesForeignMount(t *testing.T) {
	s := newTestServers(t)
	ctx := context.Background()
	s.createVolume(t, "pvc-1", gib, nil)
	s.createVolume(t, "pvc-2", gib, nil)
	target := targetDir(t, "t")
	req := func(id string) *csi.NodePublishVolumeRequest {
		return &csi.NodePublishVolumeRequest{VolumeId: id, TargetPath: target, VolumeCapability: rwo[0]}
	}
	if _, err := s.node.NodePublishVolume(ctx, req("pvc-1")); err != nil {
		t.Fatal(err)
	}
	_, err := s.node.NodePublishVolume(ctx, req("pvc-2"))
	wantCode(t, "publish another volume on a used target", err, codes.AlreadyExists)

	stats, err := s.node.NodeGetVolumeStats(ctx, &csi.NodeGetVolumeStatsRequest{VolumeId: "pvc-1", VolumePath: target})
	if err != nil {
		t.Fatal(err)
	}
	if u := stats.GetUsage(); len(u) == 0 || u[0].GetUnit() != csi.VolumeUsage_BYTES || u[0].GetTotal() <= 0 || u[0].GetAvailable() <= 0 {
		t.Errorf("volume stats = %v", u)
	}
	_, err = s.node.NodeGetVolumeStats(ctx, &csi.NodeGetVolumeStatsRequest{VolumeId: "pvc-2", VolumePath: target})
	wantCode(t, "stats of a volume that is not at the path", err, codes.NotFound)
	if _, err := s.node.NodeUnpublishVolume(ctx, &csi.NodeUnpublishVolumeRequest{VolumeId: "pvc-1", TargetPath: target}); err != nil {
		t.Fatal(err)
	}
}

func TestNodeInvalidArguments(t *testing.T) {
	s := newTestServers(t)
	ctx := context.Background()
	s.createVolume(t, "pvc-1", gib, nil)
	target := targetDir(t, "t")
	block := &csi.VolumeCapability{
		AccessType: &csi.VolumeCapability_Block{Block: &csi.VolumeCapability_BlockVolume{}},
		AccessMode: &csi.VolumeCapability_AccessMode{Mode: csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER},
	}
	for _, tc := range []struct {
		what string
		req  *csi.NodePublishVolumeRequest
		want codes.Code
	}{
		{"no volume id", &csi.NodePublishVolumeRequest{TargetPath: target, VolumeCapability: rwo[0]}, codes.InvalidArgument},
		{"no target", &csi.NodePublishVolumeRequest{VolumeId: "pvc-1", VolumeCapability: rwo[0]}, codes.InvalidArgument},
		{"no capability", &csi.NodePublishVolumeRequest{VolumeId: "pvc-1", TargetPath: target}, codes.InvalidArgument},
		{"block", &csi.NodePublishVolumeRequest{VolumeId: "pvc-1", TargetPath: target, VolumeCapability: block}, codes.InvalidArgument},
		{"unknown volume", &csi.NodePublishVolumeRequest{VolumeId: "pvc-none", TargetPath: target, VolumeCapability: rwo[0]}, codes.NotFound},
		{"path as id", &csi.NodePublishVolumeRequest{VolumeId: "../snapshots", TargetPath: target, VolumeCapability: rwo[0]}, codes.InvalidArgument},
	} {
		_, err := s.node.NodePublishVolume(ctx, tc.req)
		wantCode(t, tc.what, err, tc.want)
	}
	if _, err := os.Stat(target); !os.IsNotExist(err) {
		t.Errorf("a refused publish created the target: %v", err)
	}
	_, err := s.node.NodeUnpublishVolume(ctx, &csi.NodeUnpublishVolumeRequest{VolumeId: "pvc-1"})
	wantCode(t, "unpublish without target", err, codes.InvalidArgument)
	_, err = s.node.NodeStageVolume(ctx, &csi.NodeStageVolumeRequest{VolumeId: "pvc-1"})
	wantCode(t, "NodeStageVolume", err, codes.Unimplemented)

	info, err := s.node.NodeGetInfo(ctx, &csi.NodeGetInfoRequest{})
	if err != nil || info.GetNodeId() != "node-1" || info.GetMaxVolumesPerNode() != 0 {
		t.Errorf("NodeGetInfo = %v, %v", info, err)
	}
	caps, err := s.node.NodeGetCapabilities(ctx, &csi.NodeGetCapabilitiesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range caps.GetCapabilities() {
		if c.GetRpc().GetType() == csi.NodeServiceCapability_RPC_STAGE_UNSTAGE_VOLUME {
			t.Error("node advertises STAGE_UNSTAGE_VOLUME but implements no staging")
		}
	}
}

func TestUnescapeMountinfo(t *testing.T) {
	for in, want := range map[string]string{
		`/var/lib/kubelet/pods/x/mount`: "/var/lib/kubelet/pods/x/mount",
		`/mnt/with\040space`:            "/mnt/with space",
		`/a\134b\011c\012`:              "/a\\b\tc\n",
		`/trailing\04`:                  `/trailing\04`,
	} {
		if got := unescapeMountinfo(in); got != want {
			t.Errorf("unescapeMountinfo(%q) = %q, want %q", in, got, want)
		}
	}
}
