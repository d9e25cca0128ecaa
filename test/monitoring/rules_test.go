package monitoring

import (
	"context"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
	"github.com/prometheus/prometheus/tsdb/chunks"
	"github.com/prometheus/prometheus/util/annotations"
	"go.yaml.in/yaml/v3"
)

const (
	monitoringDir = "../../manifests/monitoring"
	metricsDir    = "../../pkg/metrics"
	// jobName is the job Prometheus gives the operator's targets: the metrics Service's name.
	jobName = "backup-controller-metrics"
)

var severities = set("critical", "warning", "info")

func loadExposition(t *testing.T) *exposition {
	t.Helper()
	exp, err := readExposition(metricsDir)
	if err != nil {
		t.Fatalf("reading the metrics pkg/metrics declares: %v", err)
	}
	// A reader that finds nothing would let every check pass.
	for _, want := range []string{"backup_operator_backups_total", "workqueue_depth", "rest_client_requests_total"} {
		if _, ok := exp.metrics[want]; !ok {
			t.Fatalf("found no %s in pkg/metrics (found %v): the reader is broken", want, exp.families)
		}
	}
	return exp
}

// loadRules reads the PrometheusRule and validates its groups as Prometheus would load them
// (expressions, durations, label and annotation templates).
func loadRules(t *testing.T) *rulefmt.RuleGroups {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(monitoringDir, "prometheusrule.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var obj struct {
		APIVersion string `yaml:"apiVersion"`
		Kind       string `yaml:"kind"`
		Spec       struct {
			Groups any `yaml:"groups"`
		} `yaml:"spec"`
	}
	if err := yaml.Unmarshal(raw, &obj); err != nil {
		t.Fatal(err)
	}
	if obj.APIVersion != "monitoring.coreos.com/v1" || obj.Kind != "PrometheusRule" {
		t.Fatalf("prometheusrule.yaml is a %s %s, want a monitoring.coreos.com/v1 PrometheusRule", obj.APIVersion, obj.Kind)
	}
	groups, err := yaml.Marshal(map[string]any{"groups": obj.Spec.Groups})
	if err != nil {
		t.Fatal(err)
	}
	rgs, errs := rulefmt.Parse(groups, false, model.UTF8Validation, parser.NewParser(parser.Options{}), slog.New(slog.DiscardHandler))
	for _, err := range errs {
		t.Errorf("prometheusrule.yaml: %v", err)
	}
	if len(errs) > 0 {
		t.FailNow()
	}
	return rgs
}

func TestRulesUseOnlyWhatTheOperatorExposes(t *testing.T) {
	exp := loadExposition(t)
	c := newChecker(exp)
	c.job = jobName
	rgs := loadRules(t)
	n := 0
	for _, g := range rgs.Groups {
		for _, r := range g.Rules {
			n++
			name := r.Alert + r.Record
			for _, err := range c.check(r.Expr) {
				t.Errorf("%s: %v", name, err)
			}
		}
	}
	if n == 0 {
		t.Fatal("no rules")
	}
}

func TestAlertsSayWhatToDo(t *testing.T) {
	readme, err := os.ReadFile(filepath.Join(monitoringDir, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, g := range loadRules(t).Groups {
		for _, r := range g.Rules {
			if r.Alert == "" {
				continue
			}
			if seen[r.Alert] {
				t.Errorf("alert %s is defined twice", r.Alert)
			}
			seen[r.Alert] = true
			if !severities[r.Labels["severity"]] {
				t.Errorf("%s: severity %q, want one of %v", r.Alert, r.Labels["severity"], keys(severities))
			}
			for _, a := range []string{"summary", "description", "runbook"} {
				if strings.TrimSpace(r.Annotations[a]) == "" {
					t.Errorf("%s: no %s annotation", r.Alert, a)
				}
			}
			if !strings.Contains(r.Annotations["description"], "kubectl ") {
				t.Errorf("%s: the description names no kubectl command to start from", r.Alert)
			}
			// The runbook is the alert's section in the README beside the rules.
			if want := "manifests/monitoring/README.md#" + strings.ToLower(r.Alert); r.Annotations["runbook"] != want {
				t.Errorf("%s: runbook %q, want %q", r.Alert, r.Annotations["runbook"], want)
			}
			if !regexp.MustCompile(`(?m)^### ` + regexp.QuoteMeta(r.Alert) + `\s*$`).Match(readme) {
				t.Errorf("%s: manifests/monitoring/README.md has no section \"### %s\"", r.Alert, r.Alert)
			}
		}
	}
	for _, want := range []string{"BackupPolicyNoRecentSuccess", "BackupFailed", "RestoreFailed", "BackupOperatorDown", "BackupOperatorNoLeader",
		"RestoreDrillFailed", "RestoreDrillNoRecentSuccess", "RestoreDrillRTOExceeded"} {
		if !seen[want] {
			t.Errorf("no alert %s", want)
		}
	}
}

func TestEveryOperatorMetricIsDocumented(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range loadExposition(t).families {
		if strings.HasPrefix(f, "backup_operator_") && !strings.Contains(string(readme), "`"+f+"`") {
			t.Errorf("README.md's metrics table does not list %s", f)
		}
	}
}

// The alerts evaluated by the PromQL engine on series such as the operator exposes: each case
// holds the series (one sample a minute from time zero, in the notation of Prometheus' rule
// tests) and the series the alert's expression returns at the given time.
func TestAlertsFireWhenTheyShould(t *testing.T) {
	exprs := map[string]string{}
	for _, g := range loadRules(t).Groups {
		for _, r := range g.Rules {
			exprs[r.Alert] = r.Expr
		}
	}
	const (
		last     = `backup_operator_last_successful_backup_timestamp_seconds`
		interval = `backup_operator_policy_schedule_interval_seconds`
		created  = `backup_operator_policy_created_timestamp_seconds`
		leader   = `leader_election_master_status`
		// Replica a leads; replica b stood down and still has the series it had then.
		a = `job="backup-controller-metrics", instance="a"`
		b = `job="backup-controller-metrics", instance="b"`
	)
	tests := []struct {
		name   string
		alert  string
		series []string
		at     time.Duration
		want   map[string]float64 // the alert's series by label set, to their values
	}{
		{
			name:  "no recent success: late and never-succeeded policies, nothing else",
			alert: "BackupPolicyNoRecentSuccess",
			at:    2 * time.Hour, // time() is 7200; 1.5 times an hourly interval is 5400
			series: []string{
				leader + `{` + a + `, name="backup-operator"} 1x120`,
				leader + `{` + b + `, name="backup-operator"} 0x120`,
				// Succeeded 20 minutes ago.
				interval + `{` + a + `, namespace="db", policy="ok"} 3600x120`,
				created + `{` + a + `, namespace="db", policy="ok"} 0x120`,
				last + `{` + a + `, namespace="db", policy="ok"} 6000x120`,
				// Succeeded 6200s ago, which the standby remembers as even longer ago.
				interval + `{` + a + `, namespace="db", policy="late"} 3600x120`,
				created + `{` + a + `, namespace="db", policy="late"} 0x120`,
				last + `{` + a + `, namespace="db", policy="late"} 1000x120`,
				interval + `{` + b + `, namespace="db", policy="late"} 3600x120`,
				last + `{` + b + `, namespace="db", policy="late"} 500x120`,
				// Never succeeded, created 5700s ago.
				interval + `{` + a + `, namespace="db", policy="never"} 3600x120`,
				created + `{` + a + `, namespace="db", policy="never"} 1500x120`,
				// Never succeeded, created 4200s ago: not yet due.
				interval + `{` + a + `, namespace="db", policy="young"} 3600x120`,
				created + `{` + a + `, namespace="db", policy="young"} 3000x120`,
				// A weekday schedule on a weekend: 72h between runs.
				interval + `{` + a + `, namespace="db", policy="weekdays"} 259200x120`,
				created + `{` + a + `, namespace="db", policy="weekdays"} 0x120`,
				last + `{` + a + `, namespace="db", policy="weekdays"} 1000x120`,
				// Suspended: no interval.
				created + `{` + a + `, namespace="db", policy="suspended"} 0x120`,
				last + `{` + a + `, namespace="db", policy="suspended"} 0x120`,
				// Deleted while b led: only b still has its series.
				interval + `{` + b + `, namespace="db", policy="deleted"} 3600x120`,
				created + `{` + b + `, namespace="db", policy="deleted"} 0x120`,
				last + `{` + b + `, namespace="db", policy="deleted"} 0x120`,
			},
			want: map[string]float64{
				`{namespace="db", policy="late"}`:  6200,
				`{namespace="db", policy="never"}`: 5700,
			},
		},
		{
			name:  "no recent success without leader election",
			alert: "BackupPolicyNoRecentSuccess",
			at:    2 * time.Hour,
			series: []string{
				interval + `{` + a + `, namespace="db", policy="late"} 3600x120`,
				created + `{` + a + `, namespace="db", policy="late"} 0x120`,
				last + `{` + a + `, namespace="db", policy="late"} 1000x120`,
			},
			want: map[string]float64{`{namespace="db", policy="late"}`: 6200},
		},
		{
			name:  "a backup failed, the first of its policy, and earlier failures count no more",
			alert: "BackupFailed",
			at:    30 * time.Minute,
			series: []string{
				`backup_operator_backups_total{` + a + `, namespace="db", policy="daily", result="failed"} 0x10 1x20`,
				`backup_operator_backups_total{` + a + `, namespace="db", policy="daily", result="completed"} 0+1x30`,
				`backup_operator_backups_total{` + a + `, namespace="db", policy="weekly", result="failed"} 2x30`,
				`backup_operator_backups_total{` + a + `, namespace="db", policy="weekly", result="completed"} 0+1x30`,
			},
			want: map[string]float64{`{namespace="db", policy="daily"}`: 1},
		},
		{
			name:  "a restore failed",
			alert: "RestoreFailed",
			at:    30 * time.Minute,
			series: []string{
				`backup_operator_restores_total{` + a + `, namespace="db", result="failed"} 0x10 1x20`,
				`backup_operator_restores_total{` + a + `, namespace="db", result="completed"} 0+1x30`,
				`backup_operator_restores_total{` + a + `, namespace="web", result="completed"} 0+1x30`,
			},
			want: map[string]float64{`{namespace="db"}`: 1},
		},
		{
			name:  "a drill failed; another only ever succeeded",
			alert: "RestoreDrillFailed",
			at:    30 * time.Minute,
			series: []string{
				`backup_operator_drill_runs_total{` + a + `, namespace="db", drill="nightly", result="failed"} 0x10 1x20`,
				`backup_operator_drill_runs_total{` + a + `, namespace="db", drill="nightly", result="succeeded"} 0x30`,
				`backup_operator_drill_runs_total{` + a + `, namespace="db", drill="weekly", result="failed"} 0x30`,
				`backup_operator_drill_runs_total{` + a + `, namespace="db", drill="weekly", result="succeeded"} 0+1x30`,
			},
			want: map[string]float64{`{drill="nightly", namespace="db"}`: 1},
		},
		{
			name:  "no recent drill success: twice the interval, not 1.5 times",
			alert: "RestoreDrillNoRecentSuccess",
			at:    4 * time.Hour, // time() is 14400; twice an hourly interval is 7200
			series: []string{
				leader + `{` + a + `, name="backup-operator"} 1x240`,
				leader + `{` + b + `, name="backup-operator"} 0x240`,
				// Succeeded 6400s ago: late for a policy's alert, not for a drill's.
				`backup_operator_drill_schedule_interval_seconds{` + a + `, namespace="db", drill="ok"} 3600x240`,
				`backup_operator_drill_created_timestamp_seconds{` + a + `, namespace="db", drill="ok"} 0x240`,
				`backup_operator_last_successful_drill_timestamp_seconds{` + a + `, namespace="db", drill="ok"} 8000x240`,
				// Succeeded 7400s ago.
				`backup_operator_drill_schedule_interval_seconds{` + a + `, namespace="db", drill="late"} 3600x240`,
				`backup_operator_drill_created_timestamp_seconds{` + a + `, namespace="db", drill="late"} 0x240`,
				`backup_operator_last_successful_drill_timestamp_seconds{` + a + `, namespace="db", drill="late"} 7000x240`,
				// Never succeeded, created 8400s ago.
				`backup_operator_drill_schedule_interval_seconds{` + a + `, namespace="db", drill="never"} 3600x240`,
				`backup_operator_drill_created_timestamp_seconds{` + a + `, namespace="db", drill="never"} 6000x240`,
				// Suspended: no interval.
				`backup_operator_drill_created_timestamp_seconds{` + a + `, namespace="db", drill="suspended"} 0x240`,
				// Deleted while b led.
				`backup_operator_drill_schedule_interval_seconds{` + b + `, namespace="db", drill="deleted"} 3600x240`,
				`backup_operator_drill_created_timestamp_seconds{` + b + `, namespace="db", drill="deleted"} 0x240`,
			},
			want: map[string]float64{
				`{drill="late", namespace="db"}`:  7400,
				`{drill="never", namespace="db"}`: 8400,
			},
		},
		{
			name:  "a claim restored slower than its drill's objective",
			alert: "RestoreDrillRTOExceeded",
			at:    30 * time.Minute,
			series: []string{
				leader + `{` + a + `, name="backup-operator"} 1x30`,
				leader + `{` + b + `, name="backup-operator"} 0x30`,
				`backup_operator_drill_max_time_to_restore_seconds{` + a + `, namespace="db", drill="nightly"} 600x30`,
				`backup_operator_drill_last_time_to_restore_seconds{` + a + `, namespace="db", drill="nightly", pvc="data"} 900x30`,
				`backup_operator_drill_last_time_to_restore_seconds{` + a + `, namespace="db", drill="nightly", pvc="wal"} 30x30`,
				// No objective: nothing to exceed.
				`backup_operator_drill_last_time_to_restore_seconds{` + a + `, namespace="db", drill="free"} 5000x30`,
				// What the standby remembers from before the objective was relaxed.
				`backup_operator_drill_max_time_to_restore_seconds{` + b + `, namespace="web", drill="nightly"} 60x30`,
				`backup_operator_drill_max_time_to_restore_seconds{` + a + `, namespace="web", drill="nightly"} 1200x30`,
				`backup_operator_drill_last_time_to_restore_seconds{` + a + `, namespace="web", drill="nightly", pvc="site"} 300x30`,
			},
			want: map[string]float64{`{drill="nightly", namespace="db", pvc="data"}`: 900},
		},
		{
			name:   "the operator's only target is down",
			alert:  "BackupOperatorDown",
			at:     30 * time.Minute,
			series: []string{`up{` + a + `} 0x30`},
			want:   map[string]float64{`{}`: 1},
		},
		{
			name:   "the operator is not scraped at all",
			alert:  "BackupOperatorDown",
			at:     30 * time.Minute,
			series: []string{`up{job="something-else", instance="c"} 1x30`},
			want:   map[string]float64{`{}`: 1},
		},
		{
			name:   "one of two targets is up",
			alert:  "BackupOperatorDown",
			at:     30 * time.Minute,
			series: []string{`up{` + a + `} 1x30`, `up{` + b + `} 0x30`},
			want:   map[string]float64{},
		},
		{
			name:  "no replica leads",
			alert: "BackupOperatorNoLeader",
			at:    30 * time.Minute,
			series: []string{
				leader + `{` + a + `, name="backup-operator"} 1x10 0x20`,
				leader + `{` + b + `, name="backup-operator"} 0x30`,
			},
			want: map[string]float64{`{name="backup-operator"}`: 0},
		},
		{
			name:  "one replica leads",
			alert: "BackupOperatorNoLeader",
			at:    30 * time.Minute,
			series: []string{
				leader + `{` + a + `, name="backup-operator"} 0x10 1x20`,
				leader + `{` + b + `, name="backup-operator"} 0x30`,
			},
			want: map[string]float64{},
		},
	}
	engine := promql.NewEngine(promql.EngineOpts{MaxSamples: 1_000_000, Timeout: time.Minute, LookbackDelta: 5 * time.Minute})
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			expr, ok := exprs[tc.alert]
			if !ok {
				t.Fatalf("no alert %s", tc.alert)
			}
			got := evaluate(t, engine, loadSeries(t, tc.series), expr, tc.at)
			if !sameValues(got, tc.want) {
				t.Fatalf("%s at %s returned\n  %v\nwant\n  %v", tc.alert, tc.at, got, tc.want)
			}
		})
	}
}

// loadSeries makes a storage of series written as in Prometheus' rule unit tests
// ("name{labels} 0x10 1x20"), one sample a minute from time zero.
func loadSeries(t *testing.T, lines []string) storage.Queryable {
	t.Helper()
	p := parser.NewParser(parser.Options{})
	var all []storage.Series
	for _, line := range lines {
		lset, values, err := p.ParseSeriesDesc(line)
		if err != nil {
			t.Fatalf("%s: %v", line, err)
		}
		var samples []chunks.Sample
		for i, v := range values {
			if !v.Omitted {
				samples = append(samples, floatSample{t: int64(i) * time.Minute.Milliseconds(), f: v.Value})
			}
		}
		all = append(all, storage.NewListSeries(lset, samples))
	}
	sort.Slice(all, func(i, j int) bool { return labels.Compare(all[i].Labels(), all[j].Labels()) < 0 })
	return &storage.MockQueryable{MockQuerier: &storage.MockQuerier{
		SelectMockFunction: func(_ bool, _ *storage.SelectHints, ms ...*labels.Matcher) storage.SeriesSet {
			var out []storage.Series
			for _, s := range all {
				if matchesAll(s.Labels(), ms) {
					out = append(out, s)
				}
			}
			return &seriesSet{series: out, i: -1}
		},
	}}
}

func matchesAll(lset labels.Labels, ms []*labels.Matcher) bool {
	for _, m := range ms {
		if !m.Matches(lset.Get(m.Name)) {
			return false
		}
	}
	return true
}

// floatSample is a chunks.Sample of a float.
type floatSample struct {
	t int64
	f float64
}

func (s floatSample) T() int64                    { return s.t }
func (floatSample) ST() int64                     { return 0 }
func (s floatSample) F() float64                  { return s.f }
func (floatSample) H() *histogram.Histogram       { return nil }
func (floatSample) FH() *histogram.FloatHistogram { return nil }
func (floatSample) Type() chunkenc.ValueType      { return chunkenc.ValFloat }
func (s floatSample) Copy() chunks.Sample         { return s }

// seriesSet is a storage.SeriesSet over a slice.
type seriesSet struct {
	series []storage.Series
	i      int
}

func (s *seriesSet) Next() bool                      { s.i++; return s.i < len(s.series) }
func (s *seriesSet) At() storage.Series              { return s.series[s.i] }
func (*seriesSet) Err() error                        { return nil }
func (*seriesSet) Warnings() annotations.Annotations { return nil }

// evaluate runs an instant query at time zero plus at, and returns the resulting series by label
// set.
func evaluate(t *testing.T, engine *promql.Engine, q storage.Queryable, expr string, at time.Duration) map[string]float64 {
	t.Helper()
	query, err := engine.NewInstantQuery(context.Background(), q, nil, expr, time.Unix(0, 0).Add(at))
	if err != nil {
		t.Fatal(err)
	}
	defer query.Close()
	res := query.Exec(context.Background())
	if res.Err != nil {
		t.Fatal(res.Err)
	}
	vec, err := res.Vector()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, s := range vec {
		out[s.Metric.String()] = s.F
	}
	return out
}

func sameValues(got, want map[string]float64) bool {
	if len(got) != len(want) {
		return false
	}
	for k, w := range want {
		g, ok := got[k]
		if !ok || math.Abs(g-w) > 1e-6*math.Max(1, math.Abs(w)) {
			return false
		}
	}
	return true
}
