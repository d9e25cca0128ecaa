package metrics

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/client-go/tools/leaderelection"
)

// leaderStatus is leader_election_master_status, the name client-go's leader election has in
// the Kubernetes components, so existing dashboards read it: 1 on the replica holding the Lease,
// 0 on the others. Like client-go's provider hook it is process-wide; RegisterClientGo sets it.
var leaderStatus atomic.Pointer[prometheus.GaugeVec]

func newLeaderStatus() *prometheus.GaugeVec {
	return prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "leader_election_master_status",
		Help: "1 when this replica holds the named leader election Lease and runs the controllers, 0 when it stands by.",
	}, []string{"name"})
}

// leaderProvider implements leaderelection.MetricsProvider: the elector turns the gauge on when
// it acquires the Lease and off when it fails to renew it.
type leaderProvider struct{ status *prometheus.GaugeVec }

func (p leaderProvider) NewLeaderMetric() leaderelection.LeaderMetric { return p }
func (p leaderProvider) On(name string)                               { p.status.WithLabelValues(name).Set(1) }
func (p leaderProvider) Off(name string)                              { p.status.WithLabelValues(name).Set(0) }
func (p leaderProvider) SlowpathExercised(string)                     {}

// SetLeader records whether this replica holds the named Lease. The elector reports acquiring
// and losing it; the operator reports standing by from the start and releasing it, which the
// elector does not, so that a standby's series exists and reads 0.
func (m *Metrics) SetLeader(name string, leading bool) {
	status := leaderStatus.Load()
	if m == nil || status == nil {
		return
	}
	v := 0.0
	if leading {
		v = 1
	}
	status.WithLabelValues(name).Set(v)
}
