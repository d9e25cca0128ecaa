package main

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kubefake "k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
	"k8s.io/utils/clock"

	"platform.example.com/backup-operator/pkg/metrics"
	"platform.example.com/backup-operator/pkg/operator"
	"platform.example.com/backup-operator/pkg/operator/operatortest"
)

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	client := &http.Client{Timeout: 5 * time.Second}
	resp, err := client.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

func TestEndpoints(t *testing.T) {
	m := metrics.New()
	m.RunStarted(time.Second)
	e, err := serveEndpoints(context.Background(), "127.0.0.1:0", m, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer e.shutdown()
	base := "http://" + e.addr.String()

	if code, _ := get(t, base+"/healthz"); code != http.StatusOK {
		t.Fatalf("/healthz = %d, want 200", code)
	}
	if code, body := get(t, base+"/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "not synced") {
		t.Fatalf("/readyz before the caches sync = %d %q, want 503", code, body)
	}
	e.ready.Store(true)
	if code, _ := get(t, base+"/readyz"); code != http.StatusOK {
		t.Fatalf("/readyz after the caches sync = %d, want 200", code)
	}
	if code, body := get(t, base+"/metrics"); code != http.StatusOK || !strings.Contains(body, "backup_operator_schedule_skew_seconds_count 1") {
		t.Fatalf("/metrics = %d, lacking the operator's metrics", code)
	}
}

func TestEndpointsReportABusyAddress(t *testing.T) {
	e, err := serveEndpoints(context.Background(), "127.0.0.1:0", metrics.New(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer e.shutdown()
	if _, err := serveEndpoints(context.Background(), e.addr.String(), metrics.New(), nil); err == nil || !strings.Contains(err.Error(), "--http-bind-address") {
		t.Fatalf("a second server on %s: %v; want an error naming the flag", e.addr, err)
	}
}

func TestHealthzFailsForALeaderThatStoppedRenewing(t *testing.T) {
	kubeClient := kubefake.NewSimpleClientset()
	apiDown := operatortest.LeaseOutage(kubeClient)
	health := operator.NewLeaseHealth(time.Second, 0, clock.RealClock{})
	acquired := make(chan struct{})
	elector, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
		Lock: health.Track(&resourcelock.LeaseLock{
			LeaseMeta:  metav1.ObjectMeta{Namespace: "backup-system", Name: "backup-operator"},
			Client:     kubeClient.CoordinationV1(),
			LockConfig: resourcelock.ResourceLockConfig{Identity: "replica-a"},
		}),
		LeaseDuration: time.Second, RenewDeadline: 500 * time.Millisecond, RetryPeriod: 100 * time.Millisecond,
		Callbacks: leaderelection.LeaderCallbacks{
			OnStartedLeading: func(context.Context) { health.SetLeading(true); close(acquired) },
			OnStoppedLeading: func() {},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	e, err := serveEndpoints(context.Background(), "127.0.0.1:0", metrics.New(), health)
	if err != nil {
		t.Fatal(err)
	}
	defer e.shutdown()
	base := "http://" + e.addr.String()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go elector.Run(ctx)
	<-acquired
	if code, body := get(t, base+"/healthz"); code != http.StatusOK {
		t.Fatalf("/healthz of a leader renewing its Lease = %d %q, want 200", code, body)
	}
	// The renewals stop reaching the API server; the elector still believes it leads. Past
	// the lease duration, the liveness probe must say so.
	apiDown.Store(true)
	deadline := time.Now().Add(5 * time.Second)
	for {
		code, _ := get(t, base+"/healthz")
		if code == http.StatusInternalServerError {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/healthz still %d 5s after the leader stopped renewing a 1s Lease", code)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
