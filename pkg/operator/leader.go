package operator

import (
	"context"
	"errors"
	"fmt"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
	"k8s.io/klog/v2"

	"platform.example.com/backup-operator/pkg/metrics"
)

// LeaderElection is how replicas take turns. The replica holding the Lease runs the controllers;
// the others keep their informer caches full, so that they are ready and take over at once, but
// queue and change nothing.
type LeaderElection struct {
	// Namespace and Name name the coordination.k8s.io Lease.
	Namespace string
	Name      string
	// Identity is this replica's name in the Lease; it must differ between replicas.
	Identity string
	// LeaseDuration is how long the standbys wait after the last renewal before they take over.
	LeaseDuration time.Duration
	// RenewDeadline is how long the leader keeps trying to renew before it stops its controllers.
	RenewDeadline time.Duration
	// RetryPeriod is how often the candidates try to acquire, and the leader to renew.
	RetryPeriod time.Duration
	// Health, when set, sees each renewal and whether this replica leads, so that a liveness
	// probe fails when the leader has not renewed its Lease for long past its duration: a
	// wedged leader is restarted.
	Health *LeaseHealth
}

// Validate checks the durations as client-go's elector will, with the reason in words.
func (le LeaderElection) Validate() error {
	switch {
	case le.Namespace == "" || le.Name == "" || le.Identity == "":
		return errors.New("the leader election Lease needs a namespace, a name and an identity")
	case le.RetryPeriod <= 0:
		return fmt.Errorf("the leader election retry period must be positive, got %s", le.RetryPeriod)
	case float64(le.RenewDeadline) <= leaderelection.JitterFactor*float64(le.RetryPeriod):
		return fmt.Errorf("the leader election renew deadline (%s) must be longer than %.1f times the retry period (%s)", le.RenewDeadline, leaderelection.JitterFactor, le.RetryPeriod)
	case le.LeaseDuration <= le.RenewDeadline:
		return fmt.Errorf("the leader election lease duration (%s) must be longer than the renew deadline (%s), so that a leader stops before a standby takes over", le.LeaseDuration, le.RenewDeadline)
	}
	return nil
}

// checkLease fails at start, with what to fix, when this replica could never take the Lease: the
// namespace is missing or RBAC refuses it. Otherwise the elector would only log and retry forever.
// A dry-run create is checked by authorization and admission like a real one, and writes nothing.
func checkLease(ctx context.Context, kubeClient kubernetes.Interface, le LeaderElection) error {
	lease := &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Namespace: le.Namespace, Name: le.Name}}
	_, err := kubeClient.CoordinationV1().Leases(le.Namespace).Create(ctx, lease, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
	if err == nil || apierrors.IsAlreadyExists(err) {
		_, err = kubeClient.CoordinationV1().Leases(le.Namespace).Get(ctx, le.Name, metav1.GetOptions{})
		if err == nil || apierrors.IsNotFound(err) {
			return nil
		}
	}
	where := fmt.Sprintf("the leader election Lease %s/%s", le.Namespace, le.Name)
	switch {
	case apierrors.IsNotFound(err):
		return fmt.Errorf("%s: namespace %s does not exist: create it, or set --leader-elect-resource-namespace (or --leader-elect=false for a single replica): %w", where, le.Namespace, err)
	case apierrors.IsForbidden(err):
		return fmt.Errorf("%s: %w; grant get, create and update on leases in %s (manifests/rbac.yaml does), or set --leader-elect=false for a single replica", where, err, le.Namespace)
	}
	return fmt.Errorf("checking %s: %w", where, err)
}

// lead campaigns for the Lease and runs the controllers with run while this replica holds it,
// until ctx is cancelled. A replica that loses the Lease (it could not renew in time, as when
// the API server is away) stops its controllers and campaigns again, with its caches still
// full: it recovers without a restart.
func lead(ctx context.Context, le LeaderElection, kubeClient kubernetes.Interface, recorder resourcelock.EventRecorder, m *metrics.Metrics, run func(context.Context)) error {
	var lock resourcelock.Interface = &resourcelock.LeaseLock{
		LeaseMeta:  metav1.ObjectMeta{Namespace: le.Namespace, Name: le.Name},
		Client:     kubeClient.CoordinationV1(),
		LockConfig: resourcelock.ResourceLockConfig{Identity: le.Identity, EventRecorder: recorder},
	}
	if le.Health != nil {
		lock = le.Health.Track(lock)
	}
	for ctx.Err() == nil {
		if err := term(ctx, le, lock, m, run); err != nil {
			return err
		}
	}
	return nil
}

// term is one campaign: it waits for the Lease and, once it holds it, runs the controllers until
// the Lease is lost or ctx is cancelled. It releases the Lease only after the controllers have
// stopped, each finishing the item in hand, so that a successor never works beside them; and it
// returns only then.
func term(ctx context.Context, le LeaderElection, lock resourcelock.Interface, m *metrics.Metrics, run func(context.Context)) error {
	logger := klog.FromContext(ctx).WithValues("lease", le.Namespace+"/"+le.Name, "identity", le.Identity)
	// The elector's context is not ctx: cancelling it releases the Lease, which must wait for
	// the controllers.
	electCtx, stopElecting := context.WithCancel(context.WithoutCancel(ctx))
	defer stopElecting()
	leading := make(chan context.Context, 1)
	elector, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
		Lock:            lock,
		Name:            le.Name,
		LeaseDuration:   le.LeaseDuration,
		RenewDeadline:   le.RenewDeadline,
		RetryPeriod:     le.RetryPeriod,
		ReleaseOnCancel: true,
		Callbacks: leaderelection.LeaderCallbacks{
			OnStartedLeading: func(leaderCtx context.Context) { leading <- leaderCtx },
			OnStoppedLeading: func() {},
			OnNewLeader: func(identity string) {
				if identity != le.Identity {
					logger.Info("Another replica leads; standing by with warm caches", "leader", identity)
				}
			},
		},
	})
	if err != nil {
		return fmt.Errorf("leader election: %w", err)
	}
	m.SetLeader(le.Name, false)

	elected := make(chan struct{})
	go func() {
		defer close(elected)
		elector.Run(electCtx)
	}()
	logger.Info("Campaigning for the Lease")
	select {
	case <-ctx.Done():
		stopElecting()
		<-elected
		return nil
	case <-elected:
		// The elector ends without leading only when electCtx ends, which only this function does.
		return nil
	case leaderCtx := <-leading:
		logger.Info("Leading: starting the controllers")
		if le.Health != nil {
			le.Health.SetLeading(true)
		}
		runCtx, cancel := context.WithCancel(leaderCtx)
		stop := context.AfterFunc(ctx, cancel)
		run(runCtx)
		stop()
		cancel()
		lost := leaderCtx.Err() != nil && ctx.Err() == nil
		stopElecting()
		<-elected
		if le.Health != nil {
			le.Health.SetLeading(false)
		}
		m.SetLeader(le.Name, false)
		m.ForgetPolicies()
		if lost {
			logger.Info("Lost the Lease; the controllers stopped, a standby may take over. Campaigning again")
		} else {
			logger.Info("Released the Lease")
		}
		return nil
	}
}
