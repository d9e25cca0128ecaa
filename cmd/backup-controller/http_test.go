package main

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"platform.example.com/backup-operator/pkg/metrics"
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
	e, err := serveEndpoints(context.Background(), "127.0.0.1:0", m)
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
	e, err := serveEndpoints(context.Background(), "127.0.0.1:0", metrics.New())
	if err != nil {
		t.Fatal(err)
	}
	defer e.shutdown()
	if _, err := serveEndpoints(context.Background(), e.addr.String(), metrics.New()); err == nil || !strings.Contains(err.Error(), "--http-bind-address") {
		t.Fatalf("a second server on %s: %v; want an error naming the flag", e.addr, err)
	}
}
