package metrics

import (
	"context"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"k8s.io/client-go/util/workqueue"
)

func TestMetricNamesFollowPrometheusConventions(t *testing.T) {
	m := New()
	m.RegisterClientGo()
	// Touch every vector so the linter sees a sample of each.
	m.BackupFinished("db", "daily", ResultCompleted, 6*time.Second, 1<<30)
	m.RestoreFinished("db", ResultFailed, time.Second)
	m.PolicySucceeded("db", "daily", time.Unix(1_700_000_000, 0))
	m.PolicyScheduled("db", "daily", time.Unix(1_600_000_000, 0), 24*time.Hour)
	m.RunStarted(300 * time.Millisecond)
	m.RetentionDeleted("db", "daily", 2)
	q := workqueue.NewTypedRateLimitingQueueWithConfig(workqueue.DefaultTypedControllerRateLimiter[string](), workqueue.TypedRateLimitingQueueConfig[string]{Name: "lint"})
	q.Add("x")
	defer q.ShutDown()

	problems, err := testutil.GatherAndLint(m.Registry())
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("%s: %s", p.Metric, p.Text)
	}
}

func TestRecording(t *testing.T) {
	m := New()
	m.BackupFinished("db", "daily", ResultCompleted, 6*time.Second, 3<<20)
	m.BackupFinished("db", "daily", ResultFailed, time.Second, 0)
	m.BackupFinished("db", "daily", ResultCompleted, 8*time.Second, 5<<20)
	if got := testutil.ToFloat64(m.backups.WithLabelValues("db", "daily", ResultCompleted)); got != 2 {
		t.Fatalf("completed backups = %v, want 2", got)
	}
	if got := testutil.ToFloat64(m.backups.WithLabelValues("db", "daily", ResultFailed)); got != 1 {
		t.Fatalf("failed backups = %v, want 1", got)
	}
	if n := testutil.CollectAndCount(m.archiveSize); n != 1 {
		t.Fatalf("%d archive size series; failed backups must not record a size", n)
	}

	m.PolicySucceeded("db", "daily", time.Unix(1_700_000_000, 0))
	m.PolicySucceeded("db", "weekly", time.Unix(1_700_000_500, 0))
	if got := testutil.ToFloat64(m.lastSuccess.WithLabelValues("db", "daily")); got != 1_700_000_000 {
		t.Fatalf("last success = %v", got)
	}
	m.ForgetPolicy("db", "daily")
	if n := testutil.CollectAndCount(m.lastSuccess); n != 1 {
		t.Fatalf("%d last-success series after forgetting one of two policies, want 1", n)
	}
	if n := testutil.CollectAndCount(m.backups); n != 0 {
		t.Fatalf("%d backup counters left for a forgotten policy", n)
	}
}

func TestPolicySchedule(t *testing.T) {
	m := New()
	m.PolicyScheduled("db", "daily", time.Unix(1_600_000_000, 0), 24*time.Hour)
	m.PolicyScheduled("db", "weekly", time.Unix(1_600_000_500, 0), 7*24*time.Hour)
	m.PolicyScheduled("db", "daily", time.Unix(1_600_000_000, 0), 23*time.Hour) // across a DST change
	if got := testutil.ToFloat64(m.policyInterval.WithLabelValues("db", "daily")); got != 23*3600 {
		t.Fatalf("interval = %v, want the latest, in seconds", got)
	}
	if got := testutil.ToFloat64(m.policyCreated.WithLabelValues("db", "weekly")); got != 1_600_000_500 {
		t.Fatalf("created = %v", got)
	}
	// Both results of both policies, at zero before any Backup ends.
	if n := testutil.CollectAndCount(m.backups); n != 4 {
		t.Fatalf("%d backup counters for two scheduled policies, want 4 at zero", n)
	}
	m.BackupFinished("db", "daily", ResultFailed, time.Second, 0)
	if got := testutil.ToFloat64(m.backups.WithLabelValues("db", "daily", ResultFailed)); got != 1 {
		t.Fatalf("failed backups = %v, want 1", got)
	}

	m.PolicyUnscheduled("db", "daily")
	if n := testutil.CollectAndCount(m.policyInterval); n != 1 {
		t.Fatalf("%d interval series after unscheduling one of two policies, want 1", n)
	}
	if n := testutil.CollectAndCount(m.policyCreated); n != 1 {
		t.Fatalf("%d created series after unscheduling one of two policies, want 1", n)
	}
	m.PolicyUnscheduled("db", "daily") // again: nothing to drop, no panic

	m.ForgetPolicy("db", "weekly")
	if n := testutil.CollectAndCount(m.policyInterval) + testutil.CollectAndCount(m.policyCreated); n != 0 {
		t.Fatalf("%d schedule series left for a forgotten policy", n)
	}
}

func TestSample(t *testing.T) {
	m := New()
	if got := m.Sample("backup_operator_backups_total"); got != 0 {
		t.Fatalf("an unrecorded counter samples %v", got)
	}
	m.BackupFinished("db", "daily", ResultCompleted, time.Second, 10)
	m.PolicySucceeded("db", "daily", time.Unix(42, 0))
	if got := m.Sample("backup_operator_backups_total"); got != 1 {
		t.Fatalf("counter = %v", got)
	}
	if got := m.Sample("backup_operator_backup_duration_seconds"); got != 1 {
		t.Fatalf("histogram count = %v", got)
	}
	if got := m.Sample("backup_operator_last_successful_backup_timestamp_seconds"); got != 42 {
		t.Fatalf("gauge = %v", got)
	}
	m.BackupFinished("db", "daily", ResultFailed, time.Second, 0)
	m.BackupFinished("db", "daily", ResultFailed, time.Second, 0)
	for _, tc := range []struct {
		match []string
		want  float64
	}{
		{nil, 3},
		{[]string{"result=" + ResultFailed}, 2},
		{[]string{"policy=daily", "result=" + ResultCompleted}, 1},
		{[]string{"policy=weekly"}, 0},
	} {
		if got := m.Sample("backup_operator_backups_total", tc.match...); got != tc.want {
			t.Errorf("backups_total matching %q = %v, want %v", tc.match, got, tc.want)
		}
	}
}

func TestNilMetricsRecordNothing(t *testing.T) {
	var m *Metrics
	m.BackupFinished("db", "daily", ResultCompleted, time.Second, 1)
	m.RestoreFinished("db", ResultCompleted, time.Second)
	m.PolicySucceeded("db", "daily", time.Now())
	m.PolicyScheduled("db", "daily", time.Now(), time.Hour)
	m.PolicyUnscheduled("db", "daily")
	m.RunStarted(time.Second)
	m.RetentionDeleted("db", "daily", 1)
	m.ForgetPolicy("db", "daily")
}

func TestHandlerServesTheExpositionFormat(t *testing.T) {
	m := New()
	m.RunStarted(1500 * time.Millisecond)
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body := rec.Body.String()
	for _, want := range []string{"backup_operator_schedule_skew_seconds_count 1", "go_goroutines", "process_cpu_seconds_total"} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}

func TestRESTMetricsCountRequests(t *testing.T) {
	r := newRESTMetrics()
	r.Increment(context.Background(), "201", "POST", "host")
	r.Increment(context.Background(), "201", "POST", "host")
	if got := testutil.ToFloat64(r.requests.WithLabelValues("201", "POST")); got != 2 {
		t.Fatalf("requests = %v, want 2", got)
	}
}

// A claim that leaves a drill loses its per-claim series; a claim of the run in progress keeps
// its previous run's figures until it has new ones; other drills are not touched.
func TestDrillClaimSeriesFollowTheLatestRun(t *testing.T) {
	m := New()
	d := func(s int) *time.Duration { v := time.Duration(s) * time.Second; return &v }
	m.DrillObserved("db", "proof", nil, nil, []DrillClaimFigures{{PVC: "a", TimeToRestore: d(10), BackupAge: d(60)}, {PVC: "b", TimeToRestore: d(700), BackupAge: d(60)}})
	m.DrillObserved("db", "other", nil, nil, []DrillClaimFigures{{PVC: "b", TimeToRestore: d(5), BackupAge: d(5)}})
	// The next run: claim b left the selector; claim a is not restored yet.
	m.DrillObserved("db", "proof", nil, nil, []DrillClaimFigures{{PVC: "a"}})
	for _, name := range []string{"backup_operator_drill_last_time_to_restore_seconds", "backup_operator_drill_backup_age_seconds"} {
		if got := m.Sample(name, "drill=proof", "pvc=b"); got != 0 {
			t.Errorf("%s of the claim that left: %v, want no series", name, got)
		}
		if got := m.Sample(name, "drill=other", "pvc=b"); got != 5 {
			t.Errorf("%s of another drill's claim: %v, want 5", name, got)
		}
	}
	if got := m.Sample("backup_operator_drill_last_time_to_restore_seconds", "drill=proof", "pvc=a"); got != 10 {
		t.Errorf("time to restore of the claim in progress: %v, want its last run's 10", got)
	}
	m.ForgetDrill("db", "proof")
	if got := m.Sample("backup_operator_drill_last_time_to_restore_seconds", "drill=proof"); got != 0 {
		t.Errorf("a forgotten drill keeps %v", got)
	}
}
