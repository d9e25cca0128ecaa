// Package metrics is what the operator tells Prometheus: when each policy last succeeded and
// how long it may go without a success, how backups and restores end and how long they take,
// how large archives are, how late scheduled runs start, what retention deleted; plus
// client-go's workqueue and API client metrics and the Go and process collectors. Alerts key on
// these names, so they follow Prometheus conventions and do not change meaning.
package metrics

import (
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
)

const namespace = "backup_operator"

// Results of a backup or restore, as the result label says them.
const (
	ResultCompleted = "completed"
	ResultFailed    = "failed"
	// ResultSucceeded is a drill run's success.
	ResultSucceeded = "succeeded"
)

// Metrics holds the operator's metrics and the registry that serves them. A nil *Metrics
// records nothing, so code under test need not build one.
type Metrics struct {
	registry *prometheus.Registry

	lastSuccess      *prometheus.GaugeVec
	policyInterval   *prometheus.GaugeVec
	policyCreated    *prometheus.GaugeVec
	backups          *prometheus.CounterVec
	restores         *prometheus.CounterVec
	backupDuration   *prometheus.HistogramVec
	restoreDuration  *prometheus.HistogramVec
	archiveSize      *prometheus.HistogramVec
	scheduleSkew     prometheus.Histogram
	retentionDeleted *prometheus.CounterVec

	drillRuns          *prometheus.CounterVec
	drillLastSuccess   *prometheus.GaugeVec
	drillInterval      *prometheus.GaugeVec
	drillCreated       *prometheus.GaugeVec
	drillTimeToRestore *prometheus.HistogramVec
	drillLastTTR       *prometheus.GaugeVec
	drillBackupAge     *prometheus.GaugeVec
	drillRTO           *prometheus.GaugeVec

	// mu guards drillClaims: the claims each drill's per-claim gauges have series for, so that
	// those of a claim that left the drill can be dropped.
	mu          sync.Mutex
	drillClaims map[string]map[string]bool
}

// New makes the operator's metrics in a registry of their own, with the Go and process
// collectors.
func New() *Metrics {
	// Durations from seconds to a day; sizes from 1 MiB to 4 TiB.
	durationBuckets := prometheus.ExponentialBucketsRange(1, 86400, 12)
	sizeBuckets := prometheus.ExponentialBuckets(1<<20, 4, 12)
	m := &Metrics{
		registry: prometheus.NewRegistry(),
		lastSuccess: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: namespace, Name: "last_successful_backup_timestamp_seconds",
			Help: "Unix time at which the latest Backup of a policy completed. Alert when time() minus this exceeds the policy's interval.",
		}, []string{"namespace", "policy"}),
		policyInterval: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: namespace, Name: "policy_schedule_interval_seconds",
			Help: "Seconds from a policy's latest scheduled time to its next one, while it schedules runs (not suspended, valid spec). Alert when the last success is older than a multiple of it.",
		}, []string{"namespace", "policy"}),
		policyCreated: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: namespace, Name: "policy_created_timestamp_seconds",
			Help: "Unix creation time of a policy, while it schedules runs: the age to alert on for a policy that never succeeded.",
		}, []string{"namespace", "policy"}),
		backups: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "backups_total",
			Help: "Backups that reached a final phase, by result (completed or failed). Backups made by hand have an empty policy.",
		}, []string{"namespace", "policy", "result"}),
		restores: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "restores_total",
			Help: "Restores that reached a final phase, by result (completed or failed).",
		}, []string{"namespace", "result"}),
		backupDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Name: "backup_duration_seconds",
			Help:    "Time from a Backup's start to its final phase.",
			Buckets: durationBuckets,
		}, []string{"namespace", "policy", "result"}),
		restoreDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Name: "restore_duration_seconds",
			Help:    "Time from a Restore's start to its final phase.",
			Buckets: durationBuckets,
		}, []string{"namespace", "result"}),
		archiveSize: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Name: "backup_archive_size_bytes",
			Help:    "Size of the archives of Completed Backups.",
			Buckets: sizeBuckets,
		}, []string{"namespace", "policy"}),
		scheduleSkew: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: namespace, Name: "schedule_skew_seconds",
			Help:    "Delay from a run's scheduled time to the creation of its Backups.",
			Buckets: []float64{0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, 900},
		}),
		retentionDeleted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "retention_deleted_backups_total",
			Help: "Backups deleted by retention because no rule keeps them.",
		}, []string{"namespace", "policy"}),
		drillRuns: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "drill_runs_total",
			Help: "RestoreDrill runs that ended, by result (succeeded or failed). A scheduled drill's series start at 0.",
		}, []string{"namespace", "drill", "result"}),
		drillLastSuccess: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: namespace, Name: "last_successful_drill_timestamp_seconds",
			Help: "Unix time at which the latest successful run of a RestoreDrill completed.",
		}, []string{"namespace", "drill"}),
		drillInterval: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: namespace, Name: "drill_schedule_interval_seconds",
			Help: "Seconds from a drill's latest scheduled time to its next one, while it schedules runs. Alert when the last success is older than two of them.",
		}, []string{"namespace", "drill"}),
		drillCreated: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: namespace, Name: "drill_created_timestamp_seconds",
			Help: "Unix creation time of a drill, while it schedules runs: the age to alert on for a drill that never succeeded.",
		}, []string{"namespace", "drill"}),
		drillTimeToRestore: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Name: "drill_time_to_restore_seconds",
			Help:    "Time from a drill run's start to a claim's data restored and its probe passed.",
			Buckets: durationBuckets,
		}, []string{"namespace", "drill"}),
		drillLastTTR: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: namespace, Name: "drill_last_time_to_restore_seconds",
			Help: "Time to restore of each claim in the latest run of a drill that restored it.",
		}, []string{"namespace", "drill", "pvc"}),
		drillBackupAge: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: namespace, Name: "drill_backup_age_seconds",
			Help: "Age of the Backup each claim's latest drill restored, at the run's start: the recovery point it proved.",
		}, []string{"namespace", "drill", "pvc"}),
		drillRTO: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: namespace, Name: "drill_max_time_to_restore_seconds",
			Help: "A drill's recovery time objective (spec.objectives.maxTimeToRestore), when it sets one. Alert when a claim's last time to restore exceeds it.",
		}, []string{"namespace", "drill"}),
	}
	m.registry.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.lastSuccess, m.policyInterval, m.policyCreated, m.backups, m.restores,
		m.backupDuration, m.restoreDuration, m.archiveSize, m.scheduleSkew, m.retentionDeleted,
		m.drillRuns, m.drillLastSuccess, m.drillInterval, m.drillCreated, m.drillTimeToRestore,
		m.drillLastTTR, m.drillBackupAge, m.drillRTO,
	)
	return m
}

// Registry is where the metrics live; client-go's metrics are added to it too.
func (m *Metrics) Registry() *prometheus.Registry { return m.registry }

// Handler serves the registry in the Prometheus exposition format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.registry, promhttp.HandlerOpts{Registry: m.registry})
}

// BackupFinished records a Backup that reached a final phase.
func (m *Metrics) BackupFinished(namespace, policy, result string, duration time.Duration, archiveBytes int64) {
	if m == nil {
		return
	}
	m.backups.WithLabelValues(namespace, policy, result).Inc()
	m.backupDuration.WithLabelValues(namespace, policy, result).Observe(duration.Seconds())
	if result == ResultCompleted {
		m.archiveSize.WithLabelValues(namespace, policy).Observe(float64(archiveBytes))
	}
}

// RestoreFinished records a Restore that reached a final phase.
func (m *Metrics) RestoreFinished(namespace, result string, duration time.Duration) {
	if m == nil {
		return
	}
	m.restores.WithLabelValues(namespace, result).Inc()
	m.restoreDuration.WithLabelValues(namespace, result).Observe(duration.Seconds())
}

// PolicySucceeded records the completion time of a policy's latest Completed Backup.
func (m *Metrics) PolicySucceeded(namespace, policy string, at time.Time) {
	if m == nil {
		return
	}
	m.lastSuccess.WithLabelValues(namespace, policy).Set(float64(at.Unix()))
}

// PolicyScheduled records that a policy schedules runs, and how long it may now go without a
// new backup, so that a "no recent backup" alert can follow each policy's own schedule and
// fire for a policy that never succeeded, once it is older than that.
func (m *Metrics) PolicyScheduled(namespace, policy string, created time.Time, interval time.Duration) {
	if m == nil {
		return
	}
	m.policyInterval.WithLabelValues(namespace, policy).Set(interval.Seconds())
	m.policyCreated.WithLabelValues(namespace, policy).Set(float64(created.Unix()))
	// increase() cannot see the increment a series is born with: with the policy's counters at
	// zero from the start, its first failure after a restart raises the failure alert too.
	m.backups.WithLabelValues(namespace, policy, ResultCompleted)
	m.backups.WithLabelValues(namespace, policy, ResultFailed)
}

// PolicyUnscheduled drops the series of PolicyScheduled for a policy that schedules no runs
// (suspended, or with a spec to fix), so that no "no recent backup" alert fires for it.
func (m *Metrics) PolicyUnscheduled(namespace, policy string) {
	if m == nil {
		return
	}
	m.policyInterval.DeleteLabelValues(namespace, policy)
	m.policyCreated.DeleteLabelValues(namespace, policy)
}

// RunStarted records how late a scheduled run created its Backups.
func (m *Metrics) RunStarted(skew time.Duration) {
	if m == nil {
		return
	}
	m.scheduleSkew.Observe(skew.Seconds())
}

// RetentionDeleted records Backups that retention deleted.
func (m *Metrics) RetentionDeleted(namespace, policy string, count int) {
	if m == nil {
		return
	}
	m.retentionDeleted.WithLabelValues(namespace, policy).Add(float64(count))
}

// DrillTimeToRestore records the time to restore of one claim's drill, once, when it passed.
func (m *Metrics) DrillTimeToRestore(namespace, drill string, d time.Duration) {
	if m == nil {
		return
	}
	m.drillTimeToRestore.WithLabelValues(namespace, drill).Observe(d.Seconds())
}

// DrillRunFinished records a drill run that ended, once.
func (m *Metrics) DrillRunFinished(namespace, drill, result string) {
	if m == nil {
		return
	}
	m.drillRuns.WithLabelValues(namespace, drill, result).Inc()
}

// DrillObserved sets a drill's gauges from its status, on every sync, so that a new leader
// reports them too: its last success, and for each claim of its latest run the time to restore
// and the age of the Backup restored, where known; and its recovery time objective, if any.
func (m *Metrics) DrillObserved(namespace, drill string, lastSuccess *time.Time, rto *time.Duration, claims []DrillClaimFigures) {
	if m == nil {
		return
	}
	if rto != nil {
		m.drillRTO.WithLabelValues(namespace, drill).Set(rto.Seconds())
	} else {
		m.drillRTO.DeleteLabelValues(namespace, drill)
	}
	if lastSuccess != nil {
		m.drillLastSuccess.WithLabelValues(namespace, drill).Set(float64(lastSuccess.Unix()))
	}
	current := map[string]bool{}
	for _, c := range claims {
		current[c.PVC] = true
		if c.TimeToRestore != nil {
			m.drillLastTTR.WithLabelValues(namespace, drill, c.PVC).Set(c.TimeToRestore.Seconds())
		}
		if c.BackupAge != nil {
			m.drillBackupAge.WithLabelValues(namespace, drill, c.PVC).Set(c.BackupAge.Seconds())
		}
	}
	// A claim the latest run no longer has (it left the policy's selector) keeps no series: its
	// last time to restore would hold RestoreDrillRTOExceeded firing for a claim nobody drills.
	// A claim of the running run keeps its previous run's figures until it has new ones.
	key := namespace + "/" + drill
	m.mu.Lock()
	defer m.mu.Unlock()
	for pvc := range m.drillClaims[key] {
		if !current[pvc] {
			m.drillLastTTR.DeleteLabelValues(namespace, drill, pvc)
			m.drillBackupAge.DeleteLabelValues(namespace, drill, pvc)
		}
	}
	if m.drillClaims == nil {
		m.drillClaims = map[string]map[string]bool{}
	}
	m.drillClaims[key] = current
}

// DrillClaimFigures are one claim's figures in a drill's latest run.
type DrillClaimFigures struct {
	PVC                      string
	TimeToRestore, BackupAge *time.Duration
}

// DrillScheduled records that a drill schedules runs every interval.
func (m *Metrics) DrillScheduled(namespace, drill string, created time.Time, interval time.Duration) {
	if m == nil {
		return
	}
	m.drillInterval.WithLabelValues(namespace, drill).Set(interval.Seconds())
	m.drillCreated.WithLabelValues(namespace, drill).Set(float64(created.Unix()))
	// At zero from the start, so that increase() sees a scheduled drill's first failure.
	m.drillRuns.WithLabelValues(namespace, drill, ResultSucceeded)
	m.drillRuns.WithLabelValues(namespace, drill, ResultFailed)
}

// DrillUnscheduled records that a drill schedules no runs (suspended or invalid), so that no
// "no recent drill" alert fires for it.
func (m *Metrics) DrillUnscheduled(namespace, drill string) {
	if m == nil {
		return
	}
	labels := prometheus.Labels{"namespace": namespace, "drill": drill}
	m.drillInterval.DeletePartialMatch(labels)
	m.drillCreated.DeletePartialMatch(labels)
}

// ForgetDrill drops a deleted drill's series.
func (m *Metrics) ForgetDrill(namespace, drill string) {
	if m == nil {
		return
	}
	labels := prometheus.Labels{"namespace": namespace, "drill": drill}
	for _, v := range []interface {
		DeletePartialMatch(prometheus.Labels) int
	}{m.drillRuns, m.drillLastSuccess, m.drillInterval, m.drillCreated, m.drillTimeToRestore, m.drillLastTTR, m.drillBackupAge, m.drillRTO} {
		v.DeletePartialMatch(labels)
	}
	m.mu.Lock()
	delete(m.drillClaims, namespace+"/"+drill)
	m.mu.Unlock()
}

// ForgetPolicy drops a deleted policy's series, so that its last success does not raise a
// "no recent backup" alert forever.
func (m *Metrics) ForgetPolicy(namespace, policy string) {
	if m == nil {
		return
	}
	labels := prometheus.Labels{"namespace": namespace, "policy": policy}
	m.lastSuccess.DeletePartialMatch(labels)
	m.policyInterval.DeletePartialMatch(labels)
	m.policyCreated.DeletePartialMatch(labels)
	m.backups.DeletePartialMatch(labels)
	m.backupDuration.DeletePartialMatch(labels)
	m.archiveSize.DeletePartialMatch(labels)
	m.retentionDeleted.DeletePartialMatch(labels)
}

// ForgetPolicies drops every policy's gauges when this replica stops leading: the new leader
// reports them from its own syncs, and a standby's would only go stale beside them. Counters
// and histograms stay; they only ever grow.
func (m *Metrics) ForgetPolicies() {
	if m == nil {
		return
	}
	m.lastSuccess.Reset()
	m.policyInterval.Reset()
	m.policyCreated.Reset()
	m.drillLastSuccess.Reset()
	m.drillInterval.Reset()
	m.drillCreated.Reset()
	m.drillLastTTR.Reset()
	m.drillBackupAge.Reset()
	m.drillRTO.Reset()
}

// Sample sums the named metric over its series whose labels match every "label=value" of match:
// counters' and gauges' values, histograms' sample counts; zero when none matches. Tests read
// metrics with it.
func (m *Metrics) Sample(name string, match ...string) float64 {
	families, err := m.registry.Gather()
	if err != nil {
		return 0
	}
	var sum float64
	for _, mf := range families {
		if mf.GetName() != name {
			continue
		}
		for _, s := range mf.GetMetric() {
			if !labelsMatch(s.GetLabel(), match) {
				continue
			}
			switch {
			case s.GetCounter() != nil:
				sum += s.GetCounter().GetValue()
			case s.GetGauge() != nil:
				sum += s.GetGauge().GetValue()
			case s.GetHistogram() != nil:
				sum += float64(s.GetHistogram().GetSampleCount())
			}
		}
	}
	return sum
}

func labelsMatch(labels []*dto.LabelPair, match []string) bool {
	for _, want := range match {
		found := false
		for _, l := range labels {
			if l.GetName()+"="+l.GetValue() == want {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}
