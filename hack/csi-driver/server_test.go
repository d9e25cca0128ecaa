package main

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	registerapi "k8s.io/kubelet/pkg/apis/pluginregistration/v1"
)

// dial connects to a unix socket the way the kubelet and the sidecars do.
func dial(t *testing.T, path string) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient("unix://"+path, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func callCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// staleSocket leaves a socket file at path with nobody listening, as a
// killed driver does.
func staleSocket(t *testing.T, path string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	l.Close()
}

// TestRegistration serves the registration API on a real socket and calls
// it as the kubelet's plugin watcher does. It needs no btrfs.
func TestRegistration(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "plugins_registry", testDriverName+"-reg.sock")
	staleSocket(t, sock)
	l, err := listenUnix(sock)
	if err != nil {
		t.Fatalf("listen over a stale socket: %v", err)
	}
	srv := grpc.NewServer()
	endpoint := "/var/lib/kubelet/plugins/" + testDriverName + "/csi.sock"
	registerapi.RegisterRegistrationServer(srv, &registrationServer{driverName: testDriverName, endpoint: endpoint})
	go srv.Serve(l)
	defer srv.Stop()

	client := registerapi.NewRegistrationClient(dial(t, sock))
	info, err := client.GetInfo(callCtx(t), &registerapi.InfoRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if info.GetType() != "CSIPlugin" || info.GetName() != testDriverName || info.GetEndpoint() != endpoint ||
		!slices.Equal(info.GetSupportedVersions(), []string{"1.0.0"}) {
		t.Errorf("GetInfo = %v", info)
	}
	for _, st := range []*registerapi.RegistrationStatus{{PluginRegistered: true}, {PluginRegistered: false, Error: "version mismatch"}} {
		if _, err := client.NotifyRegistrationStatus(callCtx(t), st); err != nil {
			t.Errorf("NotifyRegistrationStatus(%v): %v", st, err)
		}
	}
}

func TestListenRefusesNonSocket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "csi.sock")
	writeFile(t, path, "not a socket")
	if _, err := listenUnix(path); err == nil {
		t.Error("listenUnix replaced a regular file")
	}
	if got := readFile(t, path); got != "not a socket" {
		t.Errorf("the file was changed to %q", got)
	}
}

// TestServeOverSockets starts the driver as main does and makes one round
// trip through each API, then stops it and checks that its sockets are gone.
func TestServeOverSockets(t *testing.T) {
	root := btrfsRoot(t)
	d, err := newDriver(testDriverName, "node-1", root)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	endpoint := filepath.Join(dir, "plugins", testDriverName, "csi.sock")
	regSocket := filepath.Join(dir, "plugins_registry", testDriverName+"-reg.sock")
	staleSocket(t, endpoint)
	srv, err := startServers(d, endpoint, regSocket)
	if err != nil {
		t.Fatal(err)
	}
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			srv.stop()
		}
	})

	info, err := registerapi.NewRegistrationClient(dial(t, regSocket)).GetInfo(callCtx(t), &registerapi.InfoRequest{})
	if err != nil || info.GetEndpoint() != endpoint || info.GetName() != testDriverName {
		t.Fatalf("GetInfo = %v, %v", info, err)
	}

	conn := dial(t, endpoint)
	pi, err := csi.NewIdentityClient(conn).GetPluginInfo(callCtx(t), &csi.GetPluginInfoRequest{})
	if err != nil || pi.GetName() != testDriverName || pi.GetVendorVersion() == "" {
		t.Errorf("GetPluginInfo = %v, %v", pi, err)
	}
	if p, err := csi.NewIdentityClient(conn).Probe(callCtx(t), &csi.ProbeRequest{}); err != nil || !p.GetReady().GetValue() {
		t.Errorf("Probe = %v, %v", p, err)
	}
	cv, err := csi.NewControllerClient(conn).CreateVolume(callCtx(t), &csi.CreateVolumeRequest{
		Name: "pvc-over-socket", VolumeCapabilities: rwo, CapacityRange: &csi.CapacityRange{RequiredBytes: gib},
	})
	if err != nil || cv.GetVolume().GetVolumeId() != "pvc-over-socket" {
		t.Fatalf("CreateVolume = %v, %v", cv, err)
	}
	if ok, _ := isSubvolume(d.store.volumePath("pvc-over-socket")); !ok {
		t.Error("CreateVolume over the socket made no subvolume")
	}
	ni, err := csi.NewNodeClient(conn).NodeGetInfo(callCtx(t), &csi.NodeGetInfoRequest{})
	if err != nil || ni.GetNodeId() != "node-1" {
		t.Errorf("NodeGetInfo = %v, %v", ni, err)
	}

	srv.stop()
	stopped = true
	for _, p := range []string{endpoint, regSocket} {
		if _, err := os.Lstat(p); !os.IsNotExist(err) {
			t.Errorf("socket %s is still there after stop: %v", p, err)
		}
	}
}
