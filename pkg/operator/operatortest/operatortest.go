// Package operatortest holds test helpers for the operator's leader election, shared by the
// tests of pkg/operator and of the binary.
package operatortest

import (
	"errors"
	"sync/atomic"

	"k8s.io/apimachinery/pkg/runtime"
	kubefake "k8s.io/client-go/kubernetes/fake"
	clienttesting "k8s.io/client-go/testing"
)

// LeaseOutage makes every Lease request of the fake clientset fail, as when the API server is
// away, while the returned switch is on. It starts off.
func LeaseOutage(c *kubefake.Clientset) *atomic.Bool {
	var down atomic.Bool
	c.PrependReactor("*", "leases", func(clienttesting.Action) (bool, runtime.Object, error) {
		if down.Load() {
			return true, nil, errors.New("connection refused")
		}
		return false, nil, nil
	})
	return &down
}
