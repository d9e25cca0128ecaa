package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"k8s.io/klog/v2"
)

// nodeServer is the CSI node service: it bind-mounts a volume's subvolume
// where the kubelet wants it. There is no staging step.
type nodeServer struct {
	csi.UnimplementedNodeServer
	d *driver
}

// NodeGetInfo returns the node id. There is no limit on volumes per node.
func (s *nodeServer) NodeGetInfo(context.Context, *csi.NodeGetInfoRequest) (*csi.NodeGetInfoResponse, error) {
	return &csi.NodeGetInfoResponse{NodeId: s.d.nodeID}, nil
}

// NodeGetCapabilities lists what the node service implements.
func (s *nodeServer) NodeGetCapabilities(context.Context, *csi.NodeGetCapabilitiesRequest) (*csi.NodeGetCapabilitiesResponse, error) {
	var caps []*csi.NodeServiceCapability
	for _, t := range []csi.NodeServiceCapability_RPC_Type{
		csi.NodeServiceCapability_RPC_GET_VOLUME_STATS,
		csi.NodeServiceCapability_RPC_SINGLE_NODE_MULTI_WRITER,
	} {
		caps = append(caps, &csi.NodeServiceCapability{
			Type: &csi.NodeServiceCapability_Rpc{Rpc: &csi.NodeServiceCapability_RPC{Type: t}},
		})
	}
	return &csi.NodeGetCapabilitiesResponse{Capabilities: caps}, nil
}

// NodePublishVolume bind-mounts the volume at the target path, read-only if
// the request or the access mode says so. Mount flags are ignored: a bind
// mount takes no file system options.
func (s *nodeServer) NodePublishVolume(_ context.Context, req *csi.NodePublishVolumeRequest) (*csi.NodePublishVolumeResponse, error) {
	id, target := req.GetVolumeId(), req.GetTargetPath()
	if err := checkID("volume id", id); err != nil {
		return nil, err
	}
	if target == "" {
		return nil, status.Error(codes.InvalidArgument, "target path is required")
	}
	c := req.GetVolumeCapability()
	if c == nil {
		return nil, status.Error(codes.InvalidArgument, "volume capability is required")
	}
	if err := checkCapability(c); err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	src := s.d.store.volumePath(id)
	if ok, err := isSubvolume(src); err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	} else if !ok {
		return nil, status.Errorf(codes.NotFound, "volume %q does not exist", id)
	}
	mode := c.GetAccessMode().GetMode()
	readOnly := req.GetReadonly() || mode == csi.VolumeCapability_AccessMode_SINGLE_NODE_READER_ONLY ||
		mode == csi.VolumeCapability_AccessMode_MULTI_NODE_READER_ONLY

	s.d.nodeMu.Lock()
	defer s.d.nodeMu.Unlock()
	m, err := findMount(target)
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	if m != nil {
		if !sameFile(src, target) {
			return nil, status.Errorf(codes.AlreadyExists, "%s has something other than volume %s mounted on it", target, id)
		}
		if m.readOnly != readOnly {
			return nil, status.Errorf(codes.AlreadyExists, "volume %s is published at %s with read-only=%t", id, target, m.readOnly)
		}
		return &csi.NodePublishVolumeResponse{}, nil
	}

	if err := os.MkdirAll(target, 0o750); err != nil {
		return nil, status.Errorf(codes.Internal, "create target: %v", err)
	}
	if err := unix.Mount(src, target, "", unix.MS_BIND, ""); err != nil {
		return nil, status.Errorf(codes.Internal, "bind-mount %s on %s: %v", src, target, err)
	}
	// A bind mount takes the read-only flag only on a remount.
	if readOnly {
		if err := unix.Mount("", target, "", unix.MS_BIND|unix.MS_REMOUNT|unix.MS_RDONLY, ""); err != nil {
			uerr := unix.Unmount(target, 0)
			return nil, status.Errorf(codes.Internal, "make %s read-only: %v", target, errors.Join(err, uerr))
		}
	}
	klog.V(2).InfoS("Published volume", "id", id, "target", target, "readOnly", readOnly)
	return &csi.NodePublishVolumeResponse{}, nil
}

// NodeUnpublishVolume unmounts the target path and removes it. A target
// that is not mounted or does not exist is unpublished already.
func (s *nodeServer) NodeUnpublishVolume(_ context.Context, req *csi.NodeUnpublishVolumeRequest) (*csi.NodeUnpublishVolumeResponse, error) {
	id, target := req.GetVolumeId(), req.GetTargetPath()
	if err := checkID("volume id", id); err != nil {
		return nil, err
	}
	if target == "" {
		return nil, status.Error(codes.InvalidArgument, "target path is required")
	}
	s.d.nodeMu.Lock()
	defer s.d.nodeMu.Unlock()
	// Mounts may be stacked when an earlier publish raced with a crash;
	// take them all off, but do not loop forever on a stubborn one.
	for i := 0; ; i++ {
		m, err := findMount(target)
		if err != nil {
			return nil, status.Error(codes.Internal, err.Error())
		}
		if m == nil {
			break
		}
		if i == 8 {
			return nil, status.Errorf(codes.Internal, "%s is still mounted after %d unmounts", target, i)
		}
		if err := unix.Unmount(target, 0); err != nil {
			return nil, status.Errorf(codes.Internal, "unmount %s: %v", target, err)
		}
	}
	// Remove only an empty directory: data in it is not the volume's.
	if err := os.Remove(target); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, status.Errorf(codes.Internal, "remove target: %v", err)
	}
	klog.V(2).InfoS("Unpublished volume", "id", id, "target", target)
	return &csi.NodeUnpublishVolumeResponse{}, nil
}

// NodeGetVolumeStats reports the usage of the file system that holds the
// volume. Without quotas btrfs cannot tell one subvolume's usage cheaply,
// so every volume shows the whole file system's numbers.
func (s *nodeServer) NodeGetVolumeStats(_ context.Context, req *csi.NodeGetVolumeStatsRequest) (*csi.NodeGetVolumeStatsResponse, error) {
	id, path := req.GetVolumeId(), req.GetVolumePath()
	if err := checkID("volume id", id); err != nil {
		return nil, err
	}
	if path == "" {
		return nil, status.Error(codes.InvalidArgument, "volume path is required")
	}
	if !sameFile(s.d.store.volumePath(id), path) {
		return nil, status.Errorf(codes.NotFound, "volume %s is not published at %s", id, path)
	}
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return nil, status.Errorf(codes.Internal, "statfs %s: %v", path, err)
	}
	bs := st.Bsize
	usage := []*csi.VolumeUsage{{
		Unit:      csi.VolumeUsage_BYTES,
		Total:     int64(st.Blocks) * bs,
		Available: int64(st.Bavail) * bs,
		Used:      int64(st.Blocks-st.Bfree) * bs,
	}}
	// btrfs allocates inodes dynamically and reports no inode counts.
	if st.Files > 0 {
		usage = append(usage, &csi.VolumeUsage{
			Unit:      csi.VolumeUsage_INODES,
			Total:     int64(st.Files),
			Available: int64(st.Ffree),
			Used:      int64(st.Files - st.Ffree),
		})
	}
	return &csi.NodeGetVolumeStatsResponse{Usage: usage}, nil
}

// sameFile reports whether a and b are the same directory, which for a bind
// mount target means the mounted subvolume.
func sameFile(a, b string) bool {
	ai, err := os.Stat(a)
	if err != nil {
		return false
	}
	bi, err := os.Stat(b)
	return err == nil && os.SameFile(ai, bi)
}

// mount is one line of /proc/self/mountinfo, as far as the driver needs it.
type mount struct {
	readOnly bool
}

// findMount returns the topmost mount at path, or nil if path is not a mount
// point.
func findMount(path string) (*mount, error) {
	path = filepath.Clean(path)
	// The kernel lists mount points with symlinks resolved.
	if resolved, err := filepath.EvalSymlinks(path); err == nil {
		path = resolved
	}
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var found *mount
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		// id parent major:minor root mount-point options [optional...] - type source super-options
		fields := strings.Fields(sc.Text())
		if len(fields) < 6 {
			return nil, fmt.Errorf("unexpected line in /proc/self/mountinfo: %q", sc.Text())
		}
		if unescapeMountinfo(fields[4]) == path {
			found = &mount{readOnly: slices.Contains(strings.Split(fields[5], ","), "ro")}
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read /proc/self/mountinfo: %w", err)
	}
	return found, nil
}

// unescapeMountinfo undoes the kernel's octal escapes (\040 for a space,
// \011, \012, \134) in a mountinfo path.
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) && isOctal(s[i+1]) && isOctal(s[i+2]) && isOctal(s[i+3]) {
			b.WriteByte((s[i+1]-'0')<<6 | (s[i+2]-'0')<<3 | (s[i+3] - '0'))
			i += 3
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func isOctal(c byte) bool { return c >= '0' && c <= '7' }
