package metrics

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"k8s.io/client-go/tools/leaderelection"
)

func TestLeaderStatus(t *testing.T) {
	var none *Metrics
	none.SetLeader("backup-operator", true) // a nil Metrics records nothing, and does not panic

	m := New()
	m.RegisterClientGo()
	status := leaderStatus.Load()
	if status == nil {
		t.Fatal("RegisterClientGo did not make the leader gauge")
	}
	gauge := func() float64 { return testutil.ToFloat64(status.WithLabelValues("backup-operator")) }

	m.SetLeader("backup-operator", false)
	if got := gauge(); got != 0 {
		t.Fatalf("a standby reads %v, want 0", got)
	}
	// The elector reports through the provider client-go was given.
	var provider leaderelection.MetricsProvider = leaderProvider{status}
	provider.NewLeaderMetric().On("backup-operator")
	if got := gauge(); got != 1 {
		t.Fatalf("after acquiring the Lease the gauge reads %v, want 1", got)
	}
	provider.NewLeaderMetric().Off("backup-operator")
	if got := gauge(); got != 0 {
		t.Fatalf("after losing the Lease the gauge reads %v, want 0", got)
	}
	problems, err := testutil.GatherAndLint(m.Registry(), "leader_election_master_status")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("%s: %s", p.Metric, p.Text)
	}
}

func TestForgetPoliciesKeepsCounters(t *testing.T) {
	m := New()
	m.PolicySucceeded("db", "daily", time.Unix(1_700_000_000, 0))
	m.PolicyScheduled("db", "daily", time.Unix(1_600_000_000, 0), 24*time.Hour)
	m.BackupFinished("db", "daily", ResultCompleted, time.Second, 1<<20)
	m.ForgetPolicies()
	for name, c := range map[string]prometheus.Collector{"last success": m.lastSuccess, "interval": m.policyInterval, "created": m.policyCreated} {
		if n := testutil.CollectAndCount(c); n != 0 {
			t.Errorf("%d %s series left on a replica that stopped leading", n, name)
		}
	}
	if got := testutil.ToFloat64(m.backups.WithLabelValues("db", "daily", ResultCompleted)); got != 1 {
		t.Errorf("completed backups = %v after ForgetPolicies, want 1: counters stay", got)
	}
	var none *Metrics
	none.ForgetPolicies()
}
