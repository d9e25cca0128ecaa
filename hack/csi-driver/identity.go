package main

import (
	"context"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// identityServer is the CSI identity service.
type identityServer struct {
	csi.UnimplementedIdentityServer
	d *driver
}

// GetPluginInfo returns the driver's name and version.
func (s *identityServer) GetPluginInfo(context.Context, *csi.GetPluginInfoRequest) (*csi.GetPluginInfoResponse, error) {
	return &csi.GetPluginInfoResponse{Name: s.d.name, VendorVersion: s.d.version}, nil
}

// GetPluginCapabilities tells the CO that the driver has a controller service.
// It has no topology: there is one node.
func (s *identityServer) GetPluginCapabilities(context.Context, *csi.GetPluginCapabilitiesRequest) (*csi.GetPluginCapabilitiesResponse, error) {
	return &csi.GetPluginCapabilitiesResponse{Capabilities: []*csi.PluginCapability{{
		Type: &csi.PluginCapability_Service_{Service: &csi.PluginCapability_Service{
			Type: csi.PluginCapability_Service_CONTROLLER_SERVICE,
		}},
	}}}, nil
}

// Probe fails with FAILED_PRECONDITION when the root is no longer on btrfs
// (the file system was unmounted under the driver) or is not writable
// (btrfs turns read-only after an I/O error, or the disk is full).
func (s *identityServer) Probe(context.Context, *csi.ProbeRequest) (*csi.ProbeResponse, error) {
	if err := s.d.store.checkBtrfs(); err != nil {
		return nil, status.Error(codes.FailedPrecondition, err.Error())
	}
	if err := s.d.store.checkWritable(); err != nil {
		return nil, status.Error(codes.FailedPrecondition, err.Error())
	}
	return &csi.ProbeResponse{Ready: wrapperspb.Bool(true)}, nil
}
