package operator

import (
	"context"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kubefake "k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
	testingclock "k8s.io/utils/clock/testing"

	"platform.example.com/backup-operator/pkg/operator/operatortest"
)

func TestLeaseHealth(t *testing.T) {
	start := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	clk := testingclock.NewFakePassiveClock(start)
	kubeClient := kubefake.NewSimpleClientset()
	apiDown := operatortest.LeaseOutage(kubeClient)
	h := NewLeaseHealth(15*time.Second, 20*time.Second, clk)
	lock := h.Track(&resourcelock.LeaseLock{
		LeaseMeta:  metav1.ObjectMeta{Namespace: "backup-system", Name: "backup-operator"},
		Client:     kubeClient.CoordinationV1(),
		LockConfig: resourcelock.ResourceLockConfig{Identity: "replica-a"},
	})
	ctx := context.Background()
	record := resourcelock.LeaderElectionRecord{HolderIdentity: "replica-a", LeaseDurationSeconds: 15}
	healthy := func(want bool, when string) {
		t.Helper()
		err := h.Check()
		if (err == nil) != want {
			t.Fatalf("%s: Check() = %v, want healthy %v", when, err, want)
		}
		if err != nil && !strings.Contains(err.Error(), "wedged") {
			t.Errorf("%s: Check() = %q, want it to say the election is wedged", when, err)
		}
	}

	if err := lock.Create(ctx, record); err != nil {
		t.Fatal(err)
	}
	clk.SetTime(start.Add(time.Hour))
	healthy(true, "a standby, whatever its last write")

	h.SetLeading(true)
	healthy(false, "leading an hour after the Lease was created")
	if err := lock.Update(ctx, record); err != nil {
		t.Fatal(err)
	}
	healthy(true, "leading right after a renewal")
	clk.SetTime(start.Add(time.Hour + 35*time.Second))
	healthy(true, "leading at the Lease's duration plus the tolerance")

	apiDown.Store(true)
	if err := lock.Update(ctx, record); err == nil {
		t.Fatal("an Update during the outage succeeded")
	}
	clk.SetTime(start.Add(time.Hour + 36*time.Second))
	healthy(false, "leading past the duration and tolerance with failed renewals only")

	h.SetLeading(false)
	healthy(true, "a standby again")
}
