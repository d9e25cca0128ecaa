package main

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"
	"k8s.io/klog/v2"
)

// controllerServer is the CSI controller service: it creates and deletes
// volumes and snapshots. Volumes need no attach step, so the CSIDriver
// object must say attachRequired: false.
type controllerServer struct {
	csi.UnimplementedControllerServer
	d *driver
}

// ControllerGetCapabilities lists what the controller implements.
func (s *controllerServer) ControllerGetCapabilities(context.Context, *csi.ControllerGetCapabilitiesRequest) (*csi.ControllerGetCapabilitiesResponse, error) {
	var caps []*csi.ControllerServiceCapability
	for _, t := range []csi.ControllerServiceCapability_RPC_Type{
		csi.ControllerServiceCapability_RPC_CREATE_DELETE_VOLUME,
		csi.ControllerServiceCapability_RPC_CREATE_DELETE_SNAPSHOT,
		csi.ControllerServiceCapability_RPC_LIST_SNAPSHOTS,
		csi.ControllerServiceCapability_RPC_CLONE_VOLUME,
		// Lets Kubernetes offer ReadWriteOncePod.
		csi.ControllerServiceCapability_RPC_SINGLE_NODE_MULTI_WRITER,
	} {
		caps = append(caps, &csi.ControllerServiceCapability{
			Type: &csi.ControllerServiceCapability_Rpc{Rpc: &csi.ControllerServiceCapability_RPC{Type: t}},
		})
	}
	return &csi.ControllerGetCapabilitiesResponse{Capabilities: caps}, nil
}

// CreateVolume creates a subvolume: empty, or a writable snapshot of a
// snapshot (restore) or of another volume (clone). Repeating a call returns
// the same volume.
func (s *controllerServer) CreateVolume(_ context.Context, req *csi.CreateVolumeRequest) (*csi.CreateVolumeResponse, error) {
	name := req.GetName()
	if name == "" {
		return nil, status.Error(codes.InvalidArgument, "name is required")
	}
	if err := checkCapabilities(req.GetVolumeCapabilities()); err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	required, limit := req.GetCapacityRange().GetRequiredBytes(), req.GetCapacityRange().GetLimitBytes()
	if required < 0 || limit < 0 || (limit > 0 && required > limit) {
		return nil, status.Errorf(codes.OutOfRange, "capacity range required=%d limit=%d is invalid", required, limit)
	}
	src := req.GetVolumeContentSource()
	srcSnap, srcVol := src.GetSnapshot().GetSnapshotId(), src.GetVolume().GetVolumeId()
	if src != nil && srcSnap == "" && srcVol == "" {
		return nil, status.Error(codes.InvalidArgument, "volume content source must name a snapshot or a volume")
	}

	id := idFromName(name)
	st := s.d.store
	path := st.volumePath(id)
	s.d.mu.Lock()
	defer s.d.mu.Unlock()

	var meta volumeMeta
	done, err := lookup(st.volumeMetaPath(id), &meta, path)
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	if done {
		if meta.Name != name || meta.SourceSnapshotID != srcSnap || meta.SourceVolumeID != srcVol ||
			meta.CapacityBytes < required || (limit > 0 && meta.CapacityBytes > limit) {
			return nil, status.Errorf(codes.AlreadyExists, "volume %s exists with other parameters (capacity %d, source snapshot %q, source volume %q)",
				id, meta.CapacityBytes, meta.SourceSnapshotID, meta.SourceVolumeID)
		}
		return volumeResponse(id, meta, src), nil
	}

	capacity := required
	if capacity == 0 {
		capacity = limit
	}
	var from string
	switch {
	case srcSnap != "":
		var snap snapshotMeta
		if from, err = s.source("snapshot", srcSnap, st.snapshotMetaPath, st.snapshotPath, &snap); err != nil {
			return nil, err
		}
		capacity = max(capacity, snap.SizeBytes)
	case srcVol != "":
		var vol volumeMeta
		if from, err = s.source("volume", srcVol, st.volumeMetaPath, st.volumePath, &vol); err != nil {
			return nil, err
		}
		capacity = max(capacity, vol.CapacityBytes)
	}
	if limit > 0 && capacity > limit {
		return nil, status.Errorf(codes.OutOfRange, "the source holds %d bytes, more than the limit of %d", capacity, limit)
	}

	// A subvolume without metadata is what a crash during an earlier
	// attempt leaves; start it over.
	if err := deleteSubvolume(path); err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	if from == "" {
		err = createSubvolume(path)
	} else {
		err = snapshotSubvolume(from, path, false)
	}
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	meta = volumeMeta{Name: name, CapacityBytes: capacity, SourceSnapshotID: srcSnap, SourceVolumeID: srcVol}
	if err := writeMeta(st.volumeMetaPath(id), meta); err != nil {
		return nil, status.Error(codes.Internal, errors.Join(err, deleteSubvolume(path)).Error())
	}
	klog.V(2).InfoS("Created volume", "id", id, "name", name, "capacity", capacity, "sourceSnapshot", srcSnap, "sourceVolume", srcVol)
	return volumeResponse(id, meta, src), nil
}

// source checks that the snapshot or volume id a new volume is made from
// exists, decodes its metadata into meta and returns its path.
func (s *controllerServer) source(kind, id string, metaPath, subvolPath func(string) string, meta any) (string, error) {
	if !idPattern.MatchString(id) {
		return "", status.Errorf(codes.NotFound, "source %s %q does not exist", kind, id)
	}
	ok, err := lookup(metaPath(id), meta, subvolPath(id))
	if err != nil {
		return "", status.Error(codes.Internal, err.Error())
	}
	if !ok {
		return "", status.Errorf(codes.NotFound, "source %s %q does not exist", kind, id)
	}
	return subvolPath(id), nil
}

func volumeResponse(id string, meta volumeMeta, src *csi.VolumeContentSource) *csi.CreateVolumeResponse {
	return &csi.CreateVolumeResponse{Volume: &csi.Volume{VolumeId: id, CapacityBytes: meta.CapacityBytes, ContentSource: src}}
}

// lookup reads the metadata at metaPath into meta and reports whether both
// it and the subvolume at path exist, that is whether a create finished.
func lookup(metaPath string, meta any, path string) (bool, error) {
	found, err := readMeta(metaPath, meta)
	if err != nil || !found {
		return false, err
	}
	return isSubvolume(path)
}

// DeleteVolume deletes a volume's subvolume; its snapshots stay usable. A
// volume that does not exist is deleted already.
func (s *controllerServer) DeleteVolume(_ context.Context, req *csi.DeleteVolumeRequest) (*csi.DeleteVolumeResponse, error) {
	id := req.GetVolumeId()
	if err := checkID("volume id", id); err != nil {
		return nil, err
	}
	s.d.mu.Lock()
	defer s.d.mu.Unlock()
	// The metadata goes last, so a retry after a crash finds what is left.
	if err := deleteSubvolume(s.d.store.volumePath(id)); err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	if err := removeMeta(s.d.store.volumeMetaPath(id)); err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	klog.V(2).InfoS("Deleted volume", "id", id)
	return &csi.DeleteVolumeResponse{}, nil
}

// ValidateVolumeCapabilities confirms the capabilities the driver supports
// for an existing volume.
func (s *controllerServer) ValidateVolumeCapabilities(_ context.Context, req *csi.ValidateVolumeCapabilitiesRequest) (*csi.ValidateVolumeCapabilitiesResponse, error) {
	id := req.GetVolumeId()
	if err := checkID("volume id", id); err != nil {
		return nil, err
	}
	if len(req.GetVolumeCapabilities()) == 0 {
		return nil, status.Error(codes.InvalidArgument, "volume capabilities are required")
	}
	var meta volumeMeta
	ok, err := lookup(s.d.store.volumeMetaPath(id), &meta, s.d.store.volumePath(id))
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	if !ok {
		return nil, status.Errorf(codes.NotFound, "volume %q does not exist", id)
	}
	if err := checkCapabilities(req.GetVolumeCapabilities()); err != nil {
		return &csi.ValidateVolumeCapabilitiesResponse{Message: err.Error()}, nil
	}
	return &csi.ValidateVolumeCapabilitiesResponse{Confirmed: &csi.ValidateVolumeCapabilitiesResponse_Confirmed{
		VolumeContext:      req.GetVolumeContext(),
		VolumeCapabilities: req.GetVolumeCapabilities(),
		Parameters:         req.GetParameters(),
	}}, nil
}

// CreateSnapshot takes a read-only snapshot of a volume. Repeating a call
// returns the same snapshot.
func (s *controllerServer) CreateSnapshot(_ context.Context, req *csi.CreateSnapshotRequest) (*csi.CreateSnapshotResponse, error) {
	name, srcID := req.GetName(), req.GetSourceVolumeId()
	if name == "" {
		return nil, status.Error(codes.InvalidArgument, "name is required")
	}
	if err := checkID("source volume id", srcID); err != nil {
		return nil, err
	}
	id := idFromName(name)
	st := s.d.store
	path := st.snapshotPath(id)
	s.d.mu.Lock()
	defer s.d.mu.Unlock()

	var meta snapshotMeta
	done, err := lookup(st.snapshotMetaPath(id), &meta, path)
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	if done {
		if meta.Name != name || meta.SourceVolumeID != srcID {
			return nil, status.Errorf(codes.AlreadyExists, "snapshot %s exists and is of volume %q", id, meta.SourceVolumeID)
		}
		return &csi.CreateSnapshotResponse{Snapshot: snapshotInfo(id, meta)}, nil
	}
	var vol volumeMeta
	from, err := s.source("volume", srcID, st.volumeMetaPath, st.volumePath, &vol)
	if err != nil {
		return nil, err
	}
	if err := deleteSubvolume(path); err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	if err := snapshotSubvolume(from, path, true); err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	meta = snapshotMeta{Name: name, SourceVolumeID: srcID, SizeBytes: vol.CapacityBytes, CreationTime: time.Now().UnixNano()}
	if err := writeMeta(st.snapshotMetaPath(id), meta); err != nil {
		return nil, status.Error(codes.Internal, errors.Join(err, deleteSubvolume(path)).Error())
	}
	klog.V(2).InfoS("Created snapshot", "id", id, "name", name, "sourceVolume", srcID)
	return &csi.CreateSnapshotResponse{Snapshot: snapshotInfo(id, meta)}, nil
}

func snapshotInfo(id string, meta snapshotMeta) *csi.Snapshot {
	return &csi.Snapshot{
		SnapshotId:     id,
		SourceVolumeId: meta.SourceVolumeID,
		SizeBytes:      meta.SizeBytes,
		CreationTime:   timestamppb.New(time.Unix(0, meta.CreationTime)),
		ReadyToUse:     true,
	}
}

// DeleteSnapshot deletes a snapshot; volumes restored from it stay intact.
// A snapshot that does not exist is deleted already.
func (s *controllerServer) DeleteSnapshot(_ context.Context, req *csi.DeleteSnapshotRequest) (*csi.DeleteSnapshotResponse, error) {
	id := req.GetSnapshotId()
	if err := checkID("snapshot id", id); err != nil {
		return nil, err
	}
	s.d.mu.Lock()
	defer s.d.mu.Unlock()
	if err := deleteSubvolume(s.d.store.snapshotPath(id)); err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	if err := removeMeta(s.d.store.snapshotMetaPath(id)); err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	klog.V(2).InfoS("Deleted snapshot", "id", id)
	return &csi.DeleteSnapshotResponse{}, nil
}

// ListSnapshots lists one snapshot, the snapshots of one volume, or all, in
// id order. The page token is the id of the first snapshot of the next page,
// so a page stays right when snapshots come and go between calls.
func (s *controllerServer) ListSnapshots(_ context.Context, req *csi.ListSnapshotsRequest) (*csi.ListSnapshotsResponse, error) {
	if req.GetMaxEntries() < 0 {
		return nil, status.Error(codes.InvalidArgument, "max_entries must not be negative")
	}
	token := req.GetStartingToken()
	if token != "" && !idPattern.MatchString(token) {
		return nil, status.Errorf(codes.Aborted, "starting token %q is not one this driver returned", token)
	}
	var ids []string
	if want := req.GetSnapshotId(); want != "" {
		if idPattern.MatchString(want) {
			ids = []string{want}
		}
	} else {
		files, err := filepath.Glob(filepath.Join(s.d.store.root, "meta", "snapshot-*.json"))
		if err != nil {
			return nil, status.Error(codes.Internal, err.Error())
		}
		for _, f := range files {
			ids = append(ids, strings.TrimSuffix(strings.TrimPrefix(filepath.Base(f), "snapshot-"), ".json"))
		}
		slices.Sort(ids)
	}

	resp := &csi.ListSnapshotsResponse{}
	for _, id := range ids {
		if id < token {
			continue
		}
		var meta snapshotMeta
		ok, err := lookup(s.d.store.snapshotMetaPath(id), &meta, s.d.store.snapshotPath(id))
		if err != nil {
			return nil, status.Error(codes.Internal, err.Error())
		}
		if !ok || (req.GetSourceVolumeId() != "" && meta.SourceVolumeID != req.GetSourceVolumeId()) {
			continue
		}
		if n := int(req.GetMaxEntries()); n > 0 && len(resp.Entries) == n {
			resp.NextToken = id
			break
		}
		resp.Entries = append(resp.Entries, &csi.ListSnapshotsResponse_Entry{Snapshot: snapshotInfo(id, meta)})
	}
	return resp, nil
}

// checkID returns INVALID_ARGUMENT unless id is one the driver could have
// made; this also keeps a request from naming a path outside the root.
func checkID(what, id string) error {
	if id == "" {
		return status.Errorf(codes.InvalidArgument, "%s is required", what)
	}
	if !idPattern.MatchString(id) {
		return status.Errorf(codes.InvalidArgument, "%s %q is not one this driver made", what, id)
	}
	return nil
}

// checkCapabilities returns why the driver cannot serve one of caps.
func checkCapabilities(caps []*csi.VolumeCapability) error {
	if len(caps) == 0 {
		return errors.New("volume capabilities are required")
	}
	for _, c := range caps {
		if err := checkCapability(c); err != nil {
			return err
		}
	}
	return nil
}

// checkCapability returns why the driver cannot serve c. Every access mode
// is fine: all pods run on the one node.
func checkCapability(c *csi.VolumeCapability) error {
	if c.GetBlock() != nil {
		return errors.New("block access is not supported: volumes are directories; use volumeMode: Filesystem")
	}
	m := c.GetMount()
	if m == nil {
		return errors.New("volume capability must have the mount access type")
	}
	if fs := m.GetFsType(); fs != "" && fs != "btrfs" {
		return fmt.Errorf("fs type %q is not supported: volumes are btrfs subvolumes; leave csi.storage.k8s.io/fstype unset", fs)
	}
	mode := c.GetAccessMode().GetMode()
	if _, known := csi.VolumeCapability_AccessMode_Mode_name[int32(mode)]; !known || mode == csi.VolumeCapability_AccessMode_UNKNOWN {
		return fmt.Errorf("access mode %v is not supported", mode)
	}
	return nil
}
