package metrics

import (
	"context"
	"net/url"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/client-go/tools/leaderelection"
	clientmetrics "k8s.io/client-go/tools/metrics"
	"k8s.io/client-go/util/workqueue"
)

var registerClientGo sync.Once

// RegisterClientGo connects client-go's workqueue, REST client and leader election metrics to m's
// registry. The
// hooks are process-wide and take one provider each, so only the first call has an effect; call
// it before the first workqueue or client is made.
func (m *Metrics) RegisterClientGo() {
	registerClientGo.Do(func() {
		q := newQueueMetrics()
		r := newRESTMetrics()
		m.registry.MustRegister(q.collectors()...)
		m.registry.MustRegister(r.requests, r.latency)
		leader := newLeaderStatus()
		m.registry.MustRegister(leader)
		leaderStatus.Store(leader)
		workqueue.SetProvider(q)
		leaderelection.SetProvider(leaderProvider{leader})
		clientmetrics.Register(clientmetrics.RegisterOpts{RequestResult: r, RequestLatency: r})
	})
}

// queueMetrics implements workqueue.MetricsProvider with the names controller tooling and
// dashboards already know (workqueue_depth, workqueue_adds_total, ...), labeled by queue name.
type queueMetrics struct {
	depth, unfinished, longest *prometheus.GaugeVec
	adds, retries              *prometheus.CounterVec
	latency, workDuration      *prometheus.HistogramVec
}

func newQueueMetrics() *queueMetrics {
	buckets := prometheus.ExponentialBuckets(1e-6, 10, 10)
	gauge := func(name, help string) *prometheus.GaugeVec {
		return prometheus.NewGaugeVec(prometheus.GaugeOpts{Subsystem: "workqueue", Name: name, Help: help}, []string{"name"})
	}
	counter := func(name, help string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Subsystem: "workqueue", Name: name, Help: help}, []string{"name"})
	}
	histogram := func(name, help string) *prometheus.HistogramVec {
		return prometheus.NewHistogramVec(prometheus.HistogramOpts{Subsystem: "workqueue", Name: name, Help: help, Buckets: buckets}, []string{"name"})
	}
	return &queueMetrics{
		depth:        gauge("depth", "Current depth of the workqueue."),
		unfinished:   gauge("unfinished_work_seconds", "Seconds of work in progress that no worker has finished; a steady rise means a stuck worker."),
		longest:      gauge("longest_running_processor_seconds", "Seconds the longest-running worker of the queue has been busy."),
		adds:         counter("adds_total", "Items added to the workqueue."),
		retries:      counter("retries_total", "Items re-added with backoff after a failed sync."),
		latency:      histogram("queue_duration_seconds", "Seconds an item waits in the workqueue before a worker takes it."),
		workDuration: histogram("work_duration_seconds", "Seconds a worker takes to sync one item."),
	}
}

func (q *queueMetrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{q.depth, q.unfinished, q.longest, q.adds, q.retries, q.latency, q.workDuration}
}

func (q *queueMetrics) NewDepthMetric(name string) workqueue.GaugeMetric {
	return q.depth.WithLabelValues(name)
}
func (q *queueMetrics) NewAddsMetric(name string) workqueue.CounterMetric {
	return q.adds.WithLabelValues(name)
}
func (q *queueMetrics) NewLatencyMetric(name string) workqueue.HistogramMetric {
	return q.latency.WithLabelValues(name)
}
func (q *queueMetrics) NewWorkDurationMetric(name string) workqueue.HistogramMetric {
	return q.workDuration.WithLabelValues(name)
}
func (q *queueMetrics) NewUnfinishedWorkSecondsMetric(name string) workqueue.SettableGaugeMetric {
	return q.unfinished.WithLabelValues(name)
}
func (q *queueMetrics) NewLongestRunningProcessorSecondsMetric(name string) workqueue.SettableGaugeMetric {
	return q.longest.WithLabelValues(name)
}
func (q *queueMetrics) NewRetriesMetric(name string) workqueue.CounterMetric {
	return q.retries.WithLabelValues(name)
}

// restMetrics counts the operator's requests to the API server and their latency: the price
// each sync pays, and the first thing to look at when the API server is slow.
type restMetrics struct {
	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec
}

func newRESTMetrics() *restMetrics {
	return &restMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Subsystem: "rest_client", Name: "requests_total",
			Help: "Requests to the Kubernetes API server, by status code and method.",
		}, []string{"code", "method"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Subsystem: "rest_client", Name: "request_duration_seconds",
			Help:    "Latency of requests to the Kubernetes API server, by method.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 14),
		}, []string{"method"}),
	}
}

func (r *restMetrics) Increment(_ context.Context, code, method, _ string) {
	r.requests.WithLabelValues(code, method).Inc()
}

func (r *restMetrics) Observe(_ context.Context, verb string, _ url.URL, latency time.Duration) {
	r.latency.WithLabelValues(verb).Observe(latency.Seconds())
}
