package operator

import (
	"context"
	"fmt"
	"sync"
	"time"

	"k8s.io/client-go/tools/leaderelection/resourcelock"
	"k8s.io/utils/clock"
)

// LeaseHealth is the liveness check of a replica that may lead: it fails while the replica
// leads but has not renewed its Lease for longer than the Lease's duration plus a tolerance, so
// that the kubelet restarts a wedged leader. A standby is always healthy.
//
// It stands in for client-go's HealthzAdaptor, whose check reads the elector's last renewal
// time without the elector's lock: a data race with every renewal (kubernetes/kubernetes#136062,
// fixed after the client-go release this module uses). Here the renewals are seen by wrapping
// the Lease lock, under a lock of our own.
type LeaseHealth struct {
	limit time.Duration
	clock clock.PassiveClock

	mu      sync.Mutex
	leading bool
	renewed time.Time // the last successful write of the Lease
}

// NewLeaseHealth checks a Lease of leaseDuration, tolerating tolerance past it.
func NewLeaseHealth(leaseDuration, tolerance time.Duration, c clock.PassiveClock) *LeaseHealth {
	return &LeaseHealth{limit: leaseDuration + tolerance, clock: c}
}

// Track returns lock, noting each successful write of the Lease: the elector writes it when it
// acquires the Lease and when it renews it.
func (h *LeaseHealth) Track(lock resourcelock.Interface) resourcelock.Interface {
	return &trackedLock{Interface: lock, h: h}
}

// SetLeading says whether this replica leads now.
func (h *LeaseHealth) SetLeading(leading bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.leading = leading
}

// Check fails when this replica leads and its last renewal is older than the limit.
func (h *LeaseHealth) Check() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.leading {
		return nil
	}
	if since := h.clock.Since(h.renewed); since > h.limit {
		return fmt.Errorf("leading, but the Lease was last renewed %s ago, more than its duration and tolerance (%s): the leader election is wedged", since.Round(time.Millisecond), h.limit)
	}
	return nil
}

func (h *LeaseHealth) renewedNow() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.renewed = h.clock.Now()
}

// trackedLock is a Lease lock that tells its LeaseHealth about each successful write.
type trackedLock struct {
	resourcelock.Interface
	h *LeaseHealth
}

func (l *trackedLock) Create(ctx context.Context, r resourcelock.LeaderElectionRecord) error {
	err := l.Interface.Create(ctx, r)
	if err == nil {
		l.h.renewedNow()
	}
	return err
}

func (l *trackedLock) Update(ctx context.Context, r resourcelock.LeaderElectionRecord) error {
	err := l.Interface.Update(ctx, r)
	if err == nil {
		l.h.renewedNow()
	}
	return err
}
