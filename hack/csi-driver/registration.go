package main

import (
	"context"

	"k8s.io/klog/v2"
	registerapi "k8s.io/kubelet/pkg/apis/pluginregistration/v1"
)

// registrationServer answers the kubelet's plugin watcher, which finds the
// socket in its plugins_registry directory. This is what the
// node-driver-registrar sidecar would do for the driver.
type registrationServer struct {
	registerapi.UnimplementedRegistrationServer
	driverName string
	// endpoint is the CSI socket's path as the kubelet sees it.
	endpoint string
}

// GetInfo tells the kubelet which CSI driver this is and where it listens.
func (s *registrationServer) GetInfo(context.Context, *registerapi.InfoRequest) (*registerapi.PluginInfo, error) {
	return &registerapi.PluginInfo{
		Type:              registerapi.CSIPlugin,
		Name:              s.driverName,
		Endpoint:          s.endpoint,
		SupportedVersions: []string{"1.0.0"},
	}, nil
}

// NotifyRegistrationStatus logs the kubelet's verdict. A rejected driver
// keeps serving, since the kubelet's plugin manager retries on its own; the
// log line is what tells a human to look.
func (s *registrationServer) NotifyRegistrationStatus(_ context.Context, st *registerapi.RegistrationStatus) (*registerapi.RegistrationStatusResponse, error) {
	if st.GetPluginRegistered() {
		klog.InfoS("Registered with the kubelet", "driver", s.driverName)
	} else {
		klog.ErrorS(nil, "The kubelet rejected the driver's registration; check the kubelet's log and the endpoint path", "driver", s.driverName, "endpoint", s.endpoint, "error", st.GetError())
	}
	return &registerapi.RegistrationStatusResponse{}, nil
}
