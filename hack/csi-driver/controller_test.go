package main

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
)

const gib = 1 << 30

func TestCreateVolumeIdempotent(t *testing.T) {
	s := newTestServers(t)
	ctx := context.Background()
	v := s.createVolume(t, "pvc-1", gib, nil)
	if v.GetVolumeId() != "pvc-1" || v.GetCapacityBytes() != gib {
		t.Fatalf("volume = %v, want id pvc-1 of %d bytes", v, gib)
	}
	if ok, err := isSubvolume(s.d.store.volumePath("pvc-1")); err != nil || !ok {
		t.Fatalf("volumes/pvc-1 is not a subvolume: %v %v", ok, err)
	}
	writeFile(t, filepath.Join(s.d.store.volumePath("pvc-1"), "data"), "keep me")

	// A retry with a compatible range gets the same volume, content and all.
	for _, r := range []*csi.CapacityRange{{RequiredBytes: gib}, {RequiredBytes: gib / 2, LimitBytes: 2 * gib}} {
		resp, err := s.controller.CreateVolume(ctx, &csi.CreateVolumeRequest{Name: "pvc-1", VolumeCapabilities: rwo, CapacityRange: r})
		if err != nil {
			t.Fatalf("repeated CreateVolume with %v: %v", r, err)
		}
		if resp.GetVolume().GetVolumeId() != "pvc-1" || resp.GetVolume().GetCapacityBytes() != gib {
			t.Errorf("repeated CreateVolume with %v = %v", r, resp.GetVolume())
		}
	}
	if got := readFile(t, filepath.Join(s.d.store.volumePath("pvc-1"), "data")); got != "keep me" {
		t.Errorf("a repeated CreateVolume changed the volume's content to %q", got)
	}

	other := s.createVolume(t, "pvc-2", gib, nil)
	snap := s.createSnapshot(t, "snapshot-1", other.GetVolumeId())
	for what, req := range map[string]*csi.CreateVolumeRequest{
		"larger":            {Name: "pvc-1", VolumeCapabilities: rwo, CapacityRange: &csi.CapacityRange{RequiredBytes: 2 * gib}},
		"limit below":       {Name: "pvc-1", VolumeCapabilities: rwo, CapacityRange: &csi.CapacityRange{LimitBytes: gib / 2}},
		"now from snapshot": {Name: "pvc-1", VolumeCapabilities: rwo, CapacityRange: &csi.CapacityRange{RequiredBytes: gib}, VolumeContentSource: fromSnapshot(snap.GetSnapshotId())},
		"now a clone":       {Name: "pvc-1", VolumeCapabilities: rwo, CapacityRange: &csi.CapacityRange{RequiredBytes: gib}, VolumeContentSource: fromVolume("pvc-2")},
	} {
		_, err := s.controller.CreateVolume(ctx, req)
		wantCode(t, what, err, codes.AlreadyExists)
	}
}

func TestCreateVolumeNames(t *testing.T) {
	s := newTestServers(t)
	// A name that is no safe path component gets a hashed, stable id.
	a := s.createVolume(t, "team/db data", gib, nil)
	if a.GetVolumeId() == "team/db data" || !idPattern.MatchString(a.GetVolumeId()) {
		t.Fatalf("id %q for an unsafe name", a.GetVolumeId())
	}
	if again := s.createVolume(t, "team/db data", gib, nil); again.GetVolumeId() != a.GetVolumeId() {
		t.Errorf("ids %q and %q for the same name", a.GetVolumeId(), again.GetVolumeId())
	}
	// A name equal to that hash is another volume, not the same one.
	_, err := s.controller.CreateVolume(context.Background(), &csi.CreateVolumeRequest{Name: a.GetVolumeId(), VolumeCapabilities: rwo})
	wantCode(t, "name equal to another volume's hashed id", err, codes.AlreadyExists)
}

func TestSnapshotIsPointInTime(t *testing.T) {
	s := newTestServers(t)
	vol := s.createVolume(t, "pvc-db", 3*gib, nil)
	file := filepath.Join(s.d.store.volumePath(vol.GetVolumeId()), "PG_VERSION")
	writeFile(t, file, "before")

	before := time.Now()
	snap := s.createSnapshot(t, "snapshot-db", vol.GetVolumeId())
	if !snap.GetReadyToUse() || snap.GetSizeBytes() != 3*gib || snap.GetSourceVolumeId() != "pvc-db" || snap.GetSnapshotId() != "snapshot-db" {
		t.Errorf("snapshot = %v", snap)
	}
	if ct := snap.GetCreationTime().AsTime(); ct.Before(before.Add(-time.Second)) || ct.After(time.Now()) {
		t.Errorf("creation time %v, want about %v", ct, before)
	}
	writeFile(t, file, "after")

	// The snapshot itself is read-only.
	err := os.WriteFile(filepath.Join(s.d.store.snapshotPath("snapshot-db"), "PG_VERSION"), []byte("x"), 0o644)
	if !errors.Is(err, syscall.EROFS) {
		t.Errorf("writing into the snapshot: %v, want EROFS", err)
	}

	// Asking for less than the snapshot holds still restores all of it.
	restored := s.createVolume(t, "pvc-restored", gib, fromSnapshot("snapshot-db"))
	if restored.GetCapacityBytes() != 3*gib {
		t.Errorf("restored capacity %d, want the snapshot's %d", restored.GetCapacityBytes(), 3*gib)
	}
	if restored.GetContentSource().GetSnapshot().GetSnapshotId() != "snapshot-db" {
		t.Errorf("restored content source = %v", restored.GetContentSource())
	}
	restoredFile := filepath.Join(s.d.store.volumePath(restored.GetVolumeId()), "PG_VERSION")
	if got := readFile(t, restoredFile); got != "before" {
		t.Errorf("restored volume holds %q, want the snapshot's %q", got, "before")
	}
	// The restored volume is writable and independent of the live one.
	writeFile(t, restoredFile, "restored")
	if got := readFile(t, file); got != "after" {
		t.Errorf("writing the restored volume changed the source to %q", got)
	}
	_, err = s.controller.CreateVolume(context.Background(), &csi.CreateVolumeRequest{
		Name: "pvc-too-small", VolumeCapabilities: rwo, VolumeContentSource: fromSnapshot("snapshot-db"),
		CapacityRange: &csi.CapacityRange{LimitBytes: gib},
	})
	wantCode(t, "restore with a limit below the snapshot's size", err, codes.OutOfRange)

	// CreateSnapshot is idempotent, and a name is bound to its source.
	if again := s.createSnapshot(t, "snapshot-db", "pvc-db"); !again.GetCreationTime().AsTime().Equal(snap.GetCreationTime().AsTime()) {
		t.Errorf("repeated CreateSnapshot made a new snapshot at %v", again.GetCreationTime().AsTime())
	}
	if got := readFile(t, filepath.Join(s.d.store.snapshotPath("snapshot-db"), "PG_VERSION")); got != "before" {
		t.Errorf("a repeated CreateSnapshot changed the snapshot to %q", got)
	}
	_, err = s.controller.CreateSnapshot(context.Background(), &csi.CreateSnapshotRequest{Name: "snapshot-db", SourceVolumeId: "pvc-restored"})
	wantCode(t, "snapshot name reused for another volume", err, codes.AlreadyExists)
}

func TestCloneVolume(t *testing.T) {
	s := newTestServers(t)
	src := s.createVolume(t, "pvc-src", 2*gib, nil)
	srcDir := s.d.store.volumePath(src.GetVolumeId())
	if err := os.MkdirAll(filepath.Join(srcDir, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(srcDir, "sub", "f"), "source")

	clone := s.createVolume(t, "pvc-clone", gib, fromVolume("pvc-src"))
	if clone.GetCapacityBytes() != 2*gib || clone.GetContentSource().GetVolume().GetVolumeId() != "pvc-src" {
		t.Errorf("clone = %v", clone)
	}
	cloneFile := filepath.Join(s.d.store.volumePath(clone.GetVolumeId()), "sub", "f")
	if got := readFile(t, cloneFile); got != "source" {
		t.Errorf("clone holds %q", got)
	}
	writeFile(t, cloneFile, "clone")
	if got := readFile(t, filepath.Join(srcDir, "sub", "f")); got != "source" {
		t.Errorf("writing the clone changed the source to %q", got)
	}
	// The source can go while the clone stays.
	if _, err := s.controller.DeleteVolume(context.Background(), &csi.DeleteVolumeRequest{VolumeId: "pvc-src"}); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, cloneFile); got != "clone" {
		t.Errorf("clone holds %q after its source was deleted", got)
	}
}

func TestDeleteIsIdempotent(t *testing.T) {
	s := newTestServers(t)
	ctx := context.Background()
	vol := s.createVolume(t, "pvc-1", gib, nil)
	snap := s.createSnapshot(t, "snapshot-1", vol.GetVolumeId())
	writeFile(t, filepath.Join(s.d.store.volumePath("pvc-1"), "f"), "x")

	for i := range 2 {
		if _, err := s.controller.DeleteSnapshot(ctx, &csi.DeleteSnapshotRequest{SnapshotId: snap.GetSnapshotId()}); err != nil {
			t.Fatalf("DeleteSnapshot #%d: %v", i+1, err)
		}
		if _, err := s.controller.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: vol.GetVolumeId()}); err != nil {
			t.Fatalf("DeleteVolume #%d: %v", i+1, err)
		}
	}
	for _, p := range []string{s.d.store.volumePath("pvc-1"), s.d.store.snapshotPath("snapshot-1"), s.d.store.volumeMetaPath("pvc-1"), s.d.store.snapshotMetaPath("snapshot-1")} {
		if _, err := os.Lstat(p); !os.IsNotExist(err) {
			t.Errorf("%s is still there after delete (%v)", p, err)
		}
	}
	if _, err := s.controller.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: "pvc-never"}); err != nil {
		t.Errorf("deleting a volume that never existed: %v", err)
	}
	// Deleted means gone: the name can be used afresh and starts empty.
	s.createVolume(t, "pvc-1", 2*gib, nil)
	if _, err := os.Stat(filepath.Join(s.d.store.volumePath("pvc-1"), "f")); !os.IsNotExist(err) {
		t.Errorf("recreated volume is not empty: %v", err)
	}
	_, err := s.controller.CreateVolume(ctx, &csi.CreateVolumeRequest{Name: "pvc-x", VolumeCapabilities: rwo, VolumeContentSource: fromSnapshot("snapshot-1")})
	wantCode(t, "restore from a deleted snapshot", err, codes.NotFound)
}

// TestCreateAfterCrash covers a create that died between making the
// subvolume and writing its metadata: the retry must finish the job.
func TestCreateAfterCrash(t *testing.T) {
	s := newTestServers(t)
	if err := createSubvolume(s.d.store.volumePath("pvc-1")); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(s.d.store.volumePath("pvc-1"), "half"), "x")
	s.createVolume(t, "pvc-1", gib, nil)
	if _, err := os.Stat(filepath.Join(s.d.store.volumePath("pvc-1"), "half")); !os.IsNotExist(err) {
		t.Errorf("the half-made volume was kept: %v", err)
	}
	_, err := s.controller.ValidateVolumeCapabilities(context.Background(), &csi.ValidateVolumeCapabilitiesRequest{VolumeId: "pvc-1", VolumeCapabilities: rwo})
	if err != nil {
		t.Errorf("the volume is not usable after the retry: %v", err)
	}
}

func TestListSnapshots(t *testing.T) {
	s := newTestServers(t)
	ctx := context.Background()
	s.createVolume(t, "pvc-a", gib, nil)
	s.createVolume(t, "pvc-b", 2*gib, nil)
	s.createSnapshot(t, "snapshot-a1", "pvc-a")
	s.createSnapshot(t, "snapshot-a2", "pvc-a")
	s.createSnapshot(t, "snapshot-b1", "pvc-b")

	list := func(req *csi.ListSnapshotsRequest) ([]string, string) {
		t.Helper()
		resp, err := s.controller.ListSnapshots(ctx, req)
		if err != nil {
			t.Fatalf("ListSnapshots(%v): %v", req, err)
		}
		var ids []string
		for _, e := range resp.GetEntries() {
			if !e.GetSnapshot().GetReadyToUse() || e.GetSnapshot().GetCreationTime() == nil {
				t.Errorf("entry %v", e.GetSnapshot())
			}
			ids = append(ids, e.GetSnapshot().GetSnapshotId())
		}
		return ids, resp.GetNextToken()
	}
	for _, tc := range []struct {
		req  *csi.ListSnapshotsRequest
		want []string
	}{
		{&csi.ListSnapshotsRequest{}, []string{"snapshot-a1", "snapshot-a2", "snapshot-b1"}},
		{&csi.ListSnapshotsRequest{SourceVolumeId: "pvc-a"}, []string{"snapshot-a1", "snapshot-a2"}},
		{&csi.ListSnapshotsRequest{SourceVolumeId: "pvc-none"}, nil},
		{&csi.ListSnapshotsRequest{SnapshotId: "snapshot-b1"}, []string{"snapshot-b1"}},
		{&csi.ListSnapshotsRequest{SnapshotId: "snapshot-b1", SourceVolumeId: "pvc-a"}, nil},
		{&csi.ListSnapshotsRequest{SnapshotId: "snapshot-none"}, nil},
		{&csi.ListSnapshotsRequest{SnapshotId: "../../etc"}, nil},
	} {
		if got, next := list(tc.req); !slices.Equal(got, tc.want) || next != "" {
			t.Errorf("ListSnapshots(%v) = %v, next %q; want %v", tc.req, got, next, tc.want)
		}
	}
	resp, err := s.controller.ListSnapshots(ctx, &csi.ListSnapshotsRequest{SnapshotId: "snapshot-b1"})
	if err != nil || resp.GetEntries()[0].GetSnapshot().GetSizeBytes() != 2*gib {
		t.Errorf("snapshot-b1 = %v, %v; want the size of pvc-b", resp, err)
	}

	// Pages of two.
	page1, next := list(&csi.ListSnapshotsRequest{MaxEntries: 2})
	if !slices.Equal(page1, []string{"snapshot-a1", "snapshot-a2"}) || next == "" {
		t.Fatalf("page 1 = %v, next %q", page1, next)
	}
	page2, next2 := list(&csi.ListSnapshotsRequest{MaxEntries: 2, StartingToken: next})
	if !slices.Equal(page2, []string{"snapshot-b1"}) || next2 != "" {
		t.Errorf("page 2 = %v, next %q", page2, next2)
	}
	_, err = s.controller.ListSnapshots(ctx, &csi.ListSnapshotsRequest{StartingToken: "not a token"})
	wantCode(t, "invalid starting token", err, codes.Aborted)
	_, err = s.controller.ListSnapshots(ctx, &csi.ListSnapshotsRequest{MaxEntries: -1})
	wantCode(t, "negative max entries", err, codes.InvalidArgument)
}

func TestValidateVolumeCapabilities(t *testing.T) {
	s := newTestServers(t)
	ctx := context.Background()
	s.createVolume(t, "pvc-1", gib, nil)
	resp, err := s.controller.ValidateVolumeCapabilities(ctx, &csi.ValidateVolumeCapabilitiesRequest{
		VolumeId: "pvc-1", VolumeCapabilities: []*csi.VolumeCapability{mountCap(csi.VolumeCapability_AccessMode_MULTI_NODE_READER_ONLY)},
	})
	if err != nil || resp.GetConfirmed() == nil {
		t.Errorf("mount, multi-node reader: %v, %v; want confirmed", resp, err)
	}
	block := &csi.VolumeCapability{
		AccessType: &csi.VolumeCapability_Block{Block: &csi.VolumeCapability_BlockVolume{}},
		AccessMode: &csi.VolumeCapability_AccessMode{Mode: csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER},
	}
	resp, err = s.controller.ValidateVolumeCapabilities(ctx, &csi.ValidateVolumeCapabilitiesRequest{VolumeId: "pvc-1", VolumeCapabilities: []*csi.VolumeCapability{block}})
	if err != nil || resp.GetConfirmed() != nil || resp.GetMessage() == "" {
		t.Errorf("block: %v, %v; want unconfirmed with a message", resp, err)
	}
	_, err = s.controller.ValidateVolumeCapabilities(ctx, &csi.ValidateVolumeCapabilitiesRequest{VolumeId: "pvc-none", VolumeCapabilities: rwo})
	wantCode(t, "unknown volume", err, codes.NotFound)
}

func TestInvalidArguments(t *testing.T) {
	s := newTestServers(t)
	ctx := context.Background()
	s.createVolume(t, "pvc-1", gib, nil)
	block := []*csi.VolumeCapability{{
		AccessType: &csi.VolumeCapability_Block{Block: &csi.VolumeCapability_BlockVolume{}},
		AccessMode: &csi.VolumeCapability_AccessMode{Mode: csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER},
	}}
	ext4 := []*csi.VolumeCapability{mountCap(csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER)}
	ext4[0].GetMount().FsType = "ext4"
	create := func(req *csi.CreateVolumeRequest) error {
		_, err := s.controller.CreateVolume(ctx, req)
		return err
	}
	for _, tc := range []struct {
		what string
		err  error
		want codes.Code
	}{
		{"create without name", create(&csi.CreateVolumeRequest{VolumeCapabilities: rwo}), codes.InvalidArgument},
		{"create without capabilities", create(&csi.CreateVolumeRequest{Name: "pvc-2"}), codes.InvalidArgument},
		{"create block volume", create(&csi.CreateVolumeRequest{Name: "pvc-2", VolumeCapabilities: block}), codes.InvalidArgument},
		{"create ext4 volume", create(&csi.CreateVolumeRequest{Name: "pvc-2", VolumeCapabilities: ext4}), codes.InvalidArgument},
		{"create with unknown access mode", create(&csi.CreateVolumeRequest{Name: "pvc-2", VolumeCapabilities: []*csi.VolumeCapability{mountCap(csi.VolumeCapability_AccessMode_UNKNOWN)}}), codes.InvalidArgument},
		{"create with required above limit", create(&csi.CreateVolumeRequest{Name: "pvc-2", VolumeCapabilities: rwo, CapacityRange: &csi.CapacityRange{RequiredBytes: 2, LimitBytes: 1}}), codes.OutOfRange},
		{"create from unknown snapshot", create(&csi.CreateVolumeRequest{Name: "pvc-2", VolumeCapabilities: rwo, VolumeContentSource: fromSnapshot("snapshot-none")}), codes.NotFound},
		{"create from unknown volume", create(&csi.CreateVolumeRequest{Name: "pvc-2", VolumeCapabilities: rwo, VolumeContentSource: fromVolume("pvc-none")}), codes.NotFound},
		{"create from a path", create(&csi.CreateVolumeRequest{Name: "pvc-2", VolumeCapabilities: rwo, VolumeContentSource: fromVolume("../volumes/pvc-1")}), codes.NotFound},
		{"create from empty source", create(&csi.CreateVolumeRequest{Name: "pvc-2", VolumeCapabilities: rwo, VolumeContentSource: &csi.VolumeContentSource{}}), codes.InvalidArgument},
		{"delete without id", func() error { _, err := s.controller.DeleteVolume(ctx, &csi.DeleteVolumeRequest{}); return err }(), codes.InvalidArgument},
		{"delete a path", func() error {
			_, err := s.controller.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: "../volumes/pvc-1"})
			return err
		}(), codes.InvalidArgument},
		{"snapshot without name", func() error {
			_, err := s.controller.CreateSnapshot(ctx, &csi.CreateSnapshotRequest{SourceVolumeId: "pvc-1"})
			return err
		}(), codes.InvalidArgument},
		{"snapshot without source", func() error {
			_, err := s.controller.CreateSnapshot(ctx, &csi.CreateSnapshotRequest{Name: "snapshot-1"})
			return err
		}(), codes.InvalidArgument},
		{"snapshot of unknown volume", func() error {
			_, err := s.controller.CreateSnapshot(ctx, &csi.CreateSnapshotRequest{Name: "snapshot-1", SourceVolumeId: "pvc-none"})
			return err
		}(), codes.NotFound},
		{"unimplemented ControllerPublishVolume", func() error {
			_, err := s.controller.ControllerPublishVolume(ctx, &csi.ControllerPublishVolumeRequest{VolumeId: "pvc-1"})
			return err
		}(), codes.Unimplemented},
	} {
		wantCode(t, tc.what, tc.err, tc.want)
	}
	// None of the failed calls left anything behind.
	entries, err := os.ReadDir(filepath.Join(s.d.store.root, "volumes"))
	if err != nil || len(entries) != 1 {
		t.Errorf("volumes/ holds %v (%v), want only pvc-1", entries, err)
	}
	if ok, _ := isSubvolume(s.d.store.volumePath("pvc-1")); !ok {
		t.Error("pvc-1 is gone")
	}
}

func TestCapabilitiesAndIdentity(t *testing.T) {
	s := newTestServers(t)
	ctx := context.Background()
	caps, err := s.controller.ControllerGetCapabilities(ctx, &csi.ControllerGetCapabilitiesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var got []csi.ControllerServiceCapability_RPC_Type
	for _, c := range caps.GetCapabilities() {
		got = append(got, c.GetRpc().GetType())
	}
	for _, want := range []csi.ControllerServiceCapability_RPC_Type{
		csi.ControllerServiceCapability_RPC_CREATE_DELETE_VOLUME,
		csi.ControllerServiceCapability_RPC_CREATE_DELETE_SNAPSHOT,
		csi.ControllerServiceCapability_RPC_LIST_SNAPSHOTS,
		csi.ControllerServiceCapability_RPC_CLONE_VOLUME,
	} {
		if !slices.Contains(got, want) {
			t.Errorf("controller capabilities %v lack %v", got, want)
		}
	}
	pcaps, err := s.identity.GetPluginCapabilities(ctx, &csi.GetPluginCapabilitiesRequest{})
	if err != nil || len(pcaps.GetCapabilities()) != 1 ||
		pcaps.GetCapabilities()[0].GetService().GetType() != csi.PluginCapability_Service_CONTROLLER_SERVICE {
		t.Errorf("plugin capabilities = %v, %v", pcaps, err)
	}
	probe, err := s.identity.Probe(ctx, &csi.ProbeRequest{})
	if err != nil || !probe.GetReady().GetValue() {
		t.Fatalf("Probe on a healthy root = %v, %v", probe, err)
	}

	// A file system that turned read-only (as btrfs does after an I/O
	// error) fails the probe.
	if out, err := exec.Command("mount", "-o", "remount,ro", s.d.store.root).CombinedOutput(); err != nil {
		t.Fatalf("remount read-only: %v: %s", err, out)
	}
	_, err = s.identity.Probe(ctx, &csi.ProbeRequest{})
	wantCode(t, "Probe on a read-only root", err, codes.FailedPrecondition)
}

func TestNewDriverRefusesNonBtrfs(t *testing.T) {
	dir := t.TempDir()
	if (&store{root: dir}).checkBtrfs() == nil {
		t.Skipf("%s is on btrfs; this test needs a root on another file system", dir)
	}
	if _, err := newDriver(testDriverName, "node-1", dir); err == nil {
		t.Errorf("newDriver accepted %s, which is not on btrfs", dir)
	}
}
