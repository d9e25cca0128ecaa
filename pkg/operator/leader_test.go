package operator

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes"
	kubefake "k8s.io/client-go/kubernetes/fake"
	clienttesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/record"
	"k8s.io/utils/clock"

	platformv1 "platform.example.com/backup-operator/pkg/apis/platform/v1"
	"platform.example.com/backup-operator/pkg/generated/clientset/versioned/fake"
	"platform.example.com/backup-operator/pkg/operator/operatortest"
)

// fastElection makes turns short enough for tests.
func fastElection(identity string) LeaderElection {
	return LeaderElection{
		Namespace: "backup-system", Name: "backup-operator", Identity: identity,
		LeaseDuration: 1200 * time.Millisecond, RenewDeadline: 800 * time.Millisecond, RetryPeriod: 100 * time.Millisecond,
	}
}

func holder(t *testing.T, kubeClient kubernetes.Interface) string {
	t.Helper()
	h, err := leaseHolder(kubeClient)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// leaseHolder reads who holds the Lease; it is safe outside the test's goroutine.
func leaseHolder(kubeClient kubernetes.Interface) (string, error) {
	lease, err := kubeClient.CoordinationV1().Leases("backup-system").Get(context.Background(), "backup-operator", metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	if lease.Spec.HolderIdentity == nil {
		return "", nil
	}
	return *lease.Spec.HolderIdentity, nil
}

// replica is one process's campaign: it records when its controllers run.
type replica struct {
	name    string
	cancel  context.CancelFunc
	done    chan error
	started chan struct{} // receives each time the controllers start
	stopped chan struct{} // receives each time they stop
	// finishing is how long the controllers take to stop: the item in hand.
	finishing time.Duration
	// holderAtStop is who held the Lease when the controllers had stopped.
	holderAtStop atomic.Value
}

func startReplica(t *testing.T, kubeClient kubernetes.Interface, name string, finishing time.Duration) *replica {
	t.Helper()
	return startElection(t, kubeClient, fastElection(name), finishing)
}

func startElection(t *testing.T, kubeClient kubernetes.Interface, le LeaderElection, finishing time.Duration) *replica {
	t.Helper()
	r := &replica{name: le.Identity, done: make(chan error, 1), started: make(chan struct{}, 10), stopped: make(chan struct{}, 10), finishing: finishing}
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	go func() {
		r.done <- lead(ctx, le, kubeClient, &record.FakeRecorder{}, nil, func(ctx context.Context) {
			r.started <- struct{}{}
			<-ctx.Done()
			time.Sleep(r.finishing)
			h, err := leaseHolder(kubeClient)
			if err != nil {
				h = "unknown: " + err.Error()
			}
			r.holderAtStop.Store(h)
			r.stopped <- struct{}{}
		})
	}()
	t.Cleanup(func() {
		cancel()
		<-r.done
	})
	return r
}

func within(t *testing.T, ch <-chan struct{}, d time.Duration, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(d):
		t.Fatalf("%s did not happen within %s", what, d)
	}
}

func never(t *testing.T, ch <-chan struct{}, d time.Duration, what string) {
	t.Helper()
	select {
	case <-ch:
		t.Fatalf("%s happened", what)
	case <-time.After(d):
	}
}

func TestOneReplicaLeadsAndTheStandbyTakesOverWhenItStops(t *testing.T) {
	kubeClient := kubefake.NewSimpleClientset()
	a := startReplica(t, kubeClient, "replica-a", 300*time.Millisecond)
	within(t, a.started, 5*time.Second, "replica-a leading")
	b := startReplica(t, kubeClient, "replica-b", 0)
	never(t, b.started, 2*time.Second, "a second replica running the controllers while the first holds the Lease")
	if got := holder(t, kubeClient); got != "replica-a" {
		t.Fatalf("the Lease is held by %q, want replica-a", got)
	}

	// SIGTERM to the leader: its controllers finish the item in hand, and only then is the
	// Lease released, so the standby takes over at once rather than after the lease duration.
	stoppedAt := time.Now()
	a.cancel()
	within(t, a.stopped, 5*time.Second, "replica-a stopping")
	if got := a.holderAtStop.Load(); got != "replica-a" {
		t.Fatalf("when replica-a's controllers had stopped the Lease was held by %q: it was released before they finished", got)
	}
	select {
	case err := <-a.done:
		if err != nil {
			t.Fatalf("the leader's campaign ended with %v", err)
		}
		a.done <- err
	case <-time.After(5 * time.Second):
		t.Fatal("the leader's campaign did not end after it was cancelled")
	}
	within(t, b.started, 5*time.Second, "replica-b taking over")
	// Released, not expired: the takeover is faster than the lease duration plus the finishing.
	if took := time.Since(stoppedAt); took > 300*time.Millisecond+fastElection("").LeaseDuration {
		t.Errorf("the standby took over %s after the leader was told to stop; a released Lease is taken at once", took)
	}
	if got := holder(t, kubeClient); got != "replica-b" {
		t.Fatalf("the Lease is held by %q, want replica-b", got)
	}
}

func TestALeaderThatCannotRenewStopsAndCampaignsAgain(t *testing.T) {
	kubeClient := kubefake.NewSimpleClientset()
	apiDown := operatortest.LeaseOutage(kubeClient)
	a := startReplica(t, kubeClient, "replica-a", 0)
	within(t, a.started, 5*time.Second, "replica-a leading")

	// The API server goes away for longer than the renew deadline: the leader must stop its
	// controllers, since a standby may take the Lease once it expires.
	apiDown.Store(true)
	within(t, a.stopped, 5*time.Second, "the leader stopping after it could not renew")
	// It comes back: the same process leads again, without a restart.
	apiDown.Store(false)
	within(t, a.started, 5*time.Second, "replica-a leading again")
	if got := holder(t, kubeClient); got != "replica-a" {
		t.Fatalf("the Lease is held by %q, want replica-a", got)
	}
}

// The liveness check sees the campaign: healthy while the leader renews, failing once it leads
// without renewing past the Lease's duration (its controllers are slow to stop), healthy again
// once it stands by.
func TestLeaseHealthFollowsTheCampaign(t *testing.T) {
	kubeClient := kubefake.NewSimpleClientset()
	apiDown := operatortest.LeaseOutage(kubeClient)
	le := fastElection("replica-a")
	le.Health = NewLeaseHealth(le.LeaseDuration, 0, clock.RealClock{})
	a := startElection(t, kubeClient, le, 3*time.Second)
	within(t, a.started, 5*time.Second, "replica-a leading")
	if err := le.Health.Check(); err != nil {
		t.Fatalf("a leader renewing its Lease is unhealthy: %v", err)
	}
	apiDown.Store(true)
	deadline := time.Now().Add(2500 * time.Millisecond)
	for le.Health.Check() == nil {
		if time.Now().After(deadline) {
			t.Fatal("the check still passes 2.5s after the renewals of a 1.2s Lease stopped")
		}
		time.Sleep(50 * time.Millisecond)
	}
	within(t, a.stopped, 5*time.Second, "the leader stopping after it could not renew")
	// The campaign marks the replica a standby once the elector has ended, after the stop.
	deadline = time.Now().Add(5 * time.Second)
	for err := le.Health.Check(); err != nil; err = le.Health.Check() {
		if time.Now().After(deadline) {
			t.Fatalf("a replica that no longer leads is still unhealthy: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestAStandbyStopsAtOnce(t *testing.T) {
	kubeClient := kubefake.NewSimpleClientset()
	a := startReplica(t, kubeClient, "replica-a", 0)
	within(t, a.started, 5*time.Second, "replica-a leading")
	b := startReplica(t, kubeClient, "replica-b", 0)
	time.Sleep(200 * time.Millisecond)
	b.cancel()
	select {
	case err := <-b.done:
		if err != nil {
			t.Fatal(err)
		}
		b.done <- err
	case <-time.After(2 * time.Second):
		t.Fatal("a standby did not stop promptly when cancelled")
	}
	if got := holder(t, kubeClient); got != "replica-a" {
		t.Fatalf("a stopping standby disturbed the Lease: held by %q", got)
	}
}

func TestRunWithLeaderElectionSyncsOnlyWhileLeading(t *testing.T) {
	keep := int32(3)
	policy := &platformv1.BackupPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: "db", Name: "daily-backups", CreationTimestamp: metav1.Now()},
		Spec:       platformv1.BackupPolicySpec{Schedule: "0 2 * * *", Retention: &platformv1.RetentionPolicy{KeepLast: &keep}},
	}
	kubeClient := kubefake.NewSimpleClientset()
	// Another replica holds the Lease, and keeps renewing it.
	other := "replica-other"
	now := metav1.NewMicroTime(time.Now())
	duration := int32(3600)
	if _, err := kubeClient.CoordinationV1().Leases("backup-system").Create(context.Background(), &coordinationv1.Lease{
		ObjectMeta: metav1.ObjectMeta{Namespace: "backup-system", Name: "backup-operator"},
		Spec:       coordinationv1.LeaseSpec{HolderIdentity: &other, LeaseDurationSeconds: &duration, AcquireTime: &now, RenewTime: &now},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	client := fake.NewSimpleClientset(policy)
	cfg := testConfig()
	le := fastElection("replica-a")
	cfg.LeaderElection = &le
	var synced sync.Once
	ready := make(chan struct{})
	cfg.Synced = func() { synced.Do(func() { close(ready) }) }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, cfg, kubeClient, client) }()
	defer func() {
		cancel()
		<-done
	}()

	// A standby is ready (its caches are full) but writes nothing.
	within(t, ready, 5*time.Second, "the standby's caches filling")
	time.Sleep(500 * time.Millisecond)
	for _, a := range client.Actions() {
		if a.GetVerb() != "list" && a.GetVerb() != "watch" {
			t.Fatalf("a standby wrote: %s %s", a.GetVerb(), a.GetResource().Resource)
		}
	}

	// The other replica is gone: its Lease is released. This one takes over and syncs.
	if err := kubeClient.CoordinationV1().Leases("backup-system").Delete(ctx, "backup-operator", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitPolicySynced(t, client, "db", "daily-backups")
	if got := holder(t, kubeClient); got != "replica-a" {
		t.Fatalf("the Lease is held by %q, want replica-a", got)
	}
}

func TestRunRefusesALeaseItCouldNeverTake(t *testing.T) {
	tests := []struct {
		name    string
		err     error
		wantErr string
	}{
		{"namespace missing", apierrors.NewNotFound(schema.GroupResource{Resource: "namespaces"}, "backup-system"), "namespace backup-system does not exist"},
		{"RBAC refuses", apierrors.NewForbidden(schema.GroupResource{Group: "coordination.k8s.io", Resource: "leases"}, "backup-operator", errors.New("RBAC: access denied")), "grant get, create and update on leases"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			kubeClient := kubefake.NewSimpleClientset()
			kubeClient.PrependReactor("create", "leases", func(clienttesting.Action) (bool, runtime.Object, error) {
				return true, nil, tc.err
			})
			cfg := testConfig()
			le := fastElection("replica-a")
			cfg.LeaderElection = &le
			err := Run(context.Background(), cfg, kubeClient, fake.NewSimpleClientset())
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
			}
		})
	}
}

func TestLeaderElectionValidate(t *testing.T) {
	le := fastElection("replica-a")
	if err := le.Validate(); err != nil {
		t.Fatal(err)
	}
	bad := le
	bad.LeaseDuration = bad.RenewDeadline
	if err := bad.Validate(); err == nil || !strings.Contains(err.Error(), "lease duration") {
		t.Fatalf("lease duration = renew deadline: %v", err)
	}
	bad = le
	bad.RenewDeadline = bad.RetryPeriod
	if err := bad.Validate(); err == nil || !strings.Contains(err.Error(), "renew deadline") {
		t.Fatalf("renew deadline = retry period: %v", err)
	}
	bad = le
	bad.Identity = ""
	if err := bad.Validate(); err == nil {
		t.Fatal("an empty identity was accepted")
	}
}
