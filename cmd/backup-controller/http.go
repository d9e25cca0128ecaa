package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"k8s.io/klog/v2"

	"platform.example.com/backup-operator/pkg/metrics"
	"platform.example.com/backup-operator/pkg/operator"
)

// endpoints serves what the kubelet and Prometheus ask the controller: /metrics, /healthz (the
// process serves requests and, as leader, keeps renewing its Lease) and /readyz (the informer
// caches are full: a standby is ready too, so a rollout proceeds and it can take over at once).
type endpoints struct {
	ready  atomic.Bool
	server *http.Server
	addr   net.Addr
}

// serveEndpoints listens on address and serves until shutdown is called. A nil leader check
// (no leader election) leaves /healthz to the process alone.
func serveEndpoints(ctx context.Context, address string, m *metrics.Metrics, leader *operator.LeaseHealth) (*endpoints, error) {
	e := &endpoints{}
	mux := http.NewServeMux()
	mux.Handle("/metrics", m.Handler())
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		if leader != nil {
			if err := leader.Check(); err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
		}
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !e.ready.Load() {
			http.Error(w, "informer caches are not synced yet", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	listener, err := net.Listen("tcp", address)
	if err != nil {
		return nil, fmt.Errorf("listening on --http-bind-address %s: %w", address, err)
	}
	e.addr = listener.Addr()
	e.server = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := e.server.Serve(listener); err != nil && !errors.Is(err, http.ErrServerClosed) {
			klog.FromContext(ctx).Error(err, "Serving metrics and health endpoints failed")
		}
	}()
	return e, nil
}

// shutdown stops serving, letting requests in flight finish for a moment.
func (e *endpoints) shutdown() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = e.server.Shutdown(ctx)
}
