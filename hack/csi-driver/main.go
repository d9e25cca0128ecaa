// Command csi-driver is the CSI driver of the local development node
// (hack/local-cluster.sh). It keeps every volume as a btrfs subvolume under
// one directory, so that dynamic provisioning, VolumeSnapshots (instant,
// read-only btrfs snapshots), restores and clones work on a single node
// without any cloud storage.
//
// It serves the CSI identity, controller and node services on one unix
// socket and registers itself with the kubelet through the plugin
// registration socket, so it needs no node-driver-registrar sidecar. The
// external-provisioner and csi-snapshotter sidecars talk to the CSI socket.
//
// Usage:
//
//	csi-driver --endpoint /var/lib/kubelet/plugins/btrfs.csi.platform.example.com/csi.sock \
//	    --root /var/lib/btrfs-csi --node-id "$(hostname)"
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"
	"k8s.io/klog/v2"
	registerapi "k8s.io/kubelet/pkg/apis/pluginregistration/v1"
)

// version is the driver's vendor version; set it with
// -ldflags "-X main.version=...".
var version = "dev"

// driver holds what the CSI services share.
type driver struct {
	name    string
	version string
	nodeID  string
	store   *store

	// mu serializes the controller's mutations. One lock for all ids is
	// plenty on a single node, and it also orders a restore against a
	// concurrent delete of its source.
	mu sync.Mutex
	// nodeMu serializes mounts and unmounts.
	nodeMu sync.Mutex
}

// newDriver returns a driver that keeps its volumes under root.
func newDriver(name, nodeID, root string) (*driver, error) {
	if name == "" || nodeID == "" {
		return nil, errors.New("driver name and node id must not be empty")
	}
	s, err := openStore(root)
	if err != nil {
		return nil, err
	}
	return &driver{name: name, version: version, nodeID: nodeID, store: s}, nil
}

func main() {
	klog.InitFlags(nil)
	endpoint := flag.String("endpoint", "", "unix socket path to serve CSI on, e.g. /var/lib/kubelet/plugins/btrfs.csi.platform.example.com/csi.sock (required)")
	regDir := flag.String("registration-dir", "/var/lib/kubelet/plugins_registry", "the kubelet's plugin registration directory; empty disables registration")
	root := flag.String("root", "", "directory on a mounted btrfs file system that holds the volumes and snapshots (required)")
	nodeID := flag.String("node-id", "", "id of this node, reported to the kubelet (required)")
	name := flag.String("driver-name", "btrfs.csi.platform.example.com", "CSI driver name, as in the StorageClass provisioner")
	flag.Parse()
	if *endpoint == "" || *root == "" || *nodeID == "" {
		fmt.Fprintln(os.Stderr, "csi-driver: --endpoint, --root and --node-id are required")
		flag.Usage()
		os.Exit(2)
	}
	d, err := newDriver(*name, *nodeID, *root)
	if err != nil {
		klog.ErrorS(err, "Cannot use the root")
		os.Exit(1)
	}
	regSocket := ""
	if *regDir != "" {
		regSocket = filepath.Join(*regDir, *name+"-reg.sock")
	}
	srv, err := startServers(d, strings.TrimPrefix(*endpoint, "unix://"), regSocket)
	if err != nil {
		klog.ErrorS(err, "Cannot start serving")
		os.Exit(1)
	}
	klog.InfoS("Serving", "driver", d.name, "version", d.version, "node", d.nodeID, "root", d.store.root, "endpoint", srv.endpoint, "registration", regSocket)

	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	select {
	case sig := <-sigs:
		klog.InfoS("Stopping", "signal", sig)
		srv.stop()
	case err := <-srv.errs:
		srv.stop()
		klog.ErrorS(err, "Server failed")
		os.Exit(1)
	}
}

// servers are the running gRPC servers and the sockets they own.
type servers struct {
	endpoint string
	grpc     []*grpc.Server // in the order they are stopped
	sockets  []string
	errs     chan error
}

// startServers serves CSI on endpoint and, unless regSocket is empty, the
// kubelet's registration API on regSocket. CSI starts first because the
// kubelet calls NodeGetInfo on it as soon as it sees the registration socket.
func startServers(d *driver, endpoint, regSocket string) (*servers, error) {
	s := &servers{endpoint: endpoint, errs: make(chan error, 2)}
	csiSrv := grpc.NewServer(grpc.UnaryInterceptor(logCalls))
	csi.RegisterIdentityServer(csiSrv, &identityServer{d: d})
	csi.RegisterControllerServer(csiSrv, &controllerServer{d: d})
	csi.RegisterNodeServer(csiSrv, &nodeServer{d: d})
	if err := s.serve(csiSrv, endpoint); err != nil {
		return nil, err
	}
	if regSocket != "" {
		regSrv := grpc.NewServer(grpc.UnaryInterceptor(logCalls))
		registerapi.RegisterRegistrationServer(regSrv, &registrationServer{driverName: d.name, endpoint: endpoint})
		if err := s.serve(regSrv, regSocket); err != nil {
			s.stop()
			return nil, err
		}
	}
	return s, nil
}

// serve listens on the unix socket path and serves srv on it in the
// background.
func (s *servers) serve(srv *grpc.Server, path string) error {
	l, err := listenUnix(path)
	if err != nil {
		return err
	}
	// Stop the registration server first, so the kubelet forgets the
	// driver before the CSI socket goes away.
	s.grpc = append([]*grpc.Server{srv}, s.grpc...)
	s.sockets = append(s.sockets, path)
	go func() {
		if err := srv.Serve(l); err != nil {
			s.errs <- fmt.Errorf("serve %s: %w", path, err)
		}
	}()
	return nil
}

// stop lets in-flight calls finish for a while, then closes the servers
// and removes their sockets.
func (s *servers) stop() {
	for _, srv := range s.grpc {
		done := make(chan struct{})
		go func() { srv.GracefulStop(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			srv.Stop()
		}
	}
	for _, path := range s.sockets {
		if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			klog.ErrorS(err, "Cannot remove socket", "path", path)
		}
	}
}

// listenUnix listens on a unix socket at path, replacing the socket a
// previous, killed instance left behind.
func listenUnix(path string) (net.Listener, error) {
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode().Type() != fs.ModeSocket {
			return nil, fmt.Errorf("%s exists and is not a socket; remove it or choose another path", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("remove stale socket: %w", err)
		}
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, err
	}
	l, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", path, err)
	}
	return l, nil
}

// logCalls logs every call at -v=4 and every failed one as an error.
// Requests are not logged: CSI requests may carry secrets.
func logCalls(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	start := time.Now()
	resp, err := handler(ctx, req)
	if err != nil {
		klog.ErrorS(err, "Call failed", "method", info.FullMethod)
	} else {
		klog.V(4).InfoS("Call", "method", info.FullMethod, "duration", time.Since(start))
	}
	return resp, err
}
