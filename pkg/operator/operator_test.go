package operator

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	snapshotfake "github.com/kubernetes-csi/external-snapshotter/client/v8/clientset/versioned/fake"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	kubefake "k8s.io/client-go/kubernetes/fake"
	clienttesting "k8s.io/client-go/testing"

	platformv1 "platform.example.com/backup-operator/pkg/apis/platform/v1"
	"platform.example.com/backup-operator/pkg/generated/clientset/versioned"
	"platform.example.com/backup-operator/pkg/generated/clientset/versioned/fake"
)

func testConfig() Config {
	return Config{Workers: 1, CacheSyncTimeout: 5 * time.Second, AgentImage: "backup-operator:test"}
}

func TestRunStartsAndStopsCleanly(t *testing.T) {
	keep := int32(3)
	policy := &platformv1.BackupPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: "db", Name: "daily-backups", CreationTimestamp: metav1.Now()},
		Spec: platformv1.BackupPolicySpec{
			Schedule:  "0 2 * * *",
			Retention: &platformv1.RetentionPolicy{KeepLast: &keep},
		},
	}
	kubeClient := kubefake.NewSimpleClientset()
	client := fake.NewSimpleClientset(policy)

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, testConfig(), kubeClient, client) }()

	// The controllers list every kind they watch once their informers start.
	waitForList := func(client interface{ Actions() []clienttesting.Action }, resource string) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for time.Now().Before(deadline) {
			for _, a := range client.Actions() {
				if a.GetVerb() == "list" && a.GetResource().Resource == resource {
					return
				}
			}
			time.Sleep(20 * time.Millisecond)
		}
		t.Fatalf("nothing listed %s", resource)
	}
	for _, r := range []string{"backuppolicies", "backups", "restores"} {
		waitForList(client, r)
	}
	for _, r := range []string{"jobs", "pods", "persistentvolumeclaims"} {
		waitForList(kubeClient, r)
	}
	for _, a := range kubeClient.Actions() {
		if list, ok := a.(clienttesting.ListAction); ok && (a.GetResource().Resource == "jobs" || a.GetResource().Resource == "pods") {
			if got := list.GetListRestrictions().Labels.String(); got != "app.kubernetes.io/managed-by=backup-operator" {
				t.Errorf("%s are listed with selector %q; the operator must only watch its own", a.GetResource().Resource, got)
			}
		}
	}

	// The wiring reaches the sync handlers: the policy's status gets its next run.
	waitPolicySynced(t, client, "db", "daily-backups")

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run returned %v after a clean shutdown", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not stop after its context was cancelled")
	}
	// Nothing was due and nothing selected: the only write is the policy's status.
	for _, a := range append(client.Actions(), kubeClient.Actions()...) {
		switch {
		case a.GetVerb() == "list" || a.GetVerb() == "watch" || a.GetVerb() == "get":
		case a.GetVerb() == "update" && a.GetResource().Resource == "backuppolicies" && a.GetSubresource() == "status":
		case a.GetVerb() == "create" && a.GetResource().Resource == "events":
		default:
			t.Errorf("unexpected API write: %s %s/%s", a.GetVerb(), a.GetResource().Resource, a.GetSubresource())
		}
	}
}

// waitPolicySynced waits for a policy's status to show its next run: a controller synced it.
func waitPolicySynced(t *testing.T, client versioned.Interface, namespace, name string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		p, err := client.PlatformV1().BackupPolicies(namespace).Get(context.Background(), name, metav1.GetOptions{})
		if err == nil && p.Status.NextScheduleTime != nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("policy %s/%s was not synced: status %+v, err %v", namespace, name, p.Status, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestRunNamesTheInformerThatCannotList(t *testing.T) {
	kubeClient := kubefake.NewSimpleClientset()
	kubeClient.PrependReactor("list", "jobs", func(clienttesting.Action) (bool, runtime.Object, error) {
		return true, nil, apierrors.NewForbidden(schema.GroupResource{Group: "batch", Resource: "jobs"}, "", fmt.Errorf("RBAC: access denied"))
	})
	cfg := testConfig()
	cfg.CacheSyncTimeout = time.Second
	err := Run(context.Background(), cfg, kubeClient, fake.NewSimpleClientset())
	if err == nil || !strings.Contains(err.Error(), "Job") || !strings.Contains(err.Error(), "RBAC") {
		t.Fatalf("error %v, want one naming the Job informer and RBAC", err)
	}
}

func TestRunOnlyTheChosenControllers(t *testing.T) {
	kubeClient := kubefake.NewSimpleClientset()
	client := fake.NewSimpleClientset()
	cfg := testConfig()
	cfg.Controllers = []string{"backuppolicy"}
	synced := make(chan struct{})
	cfg.Synced = func() { close(synced) }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, cfg, kubeClient, client) }()
	select {
	case <-synced:
	case <-time.After(5 * time.Second):
		t.Fatal("Synced was not called")
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	// The policy controller needs policies, Backups and claims; nothing of Jobs, pods or Restores.
	for _, a := range append(client.Actions(), kubeClient.Actions()...) {
		if r := a.GetResource().Resource; r == "jobs" || r == "pods" || r == "restores" {
			t.Errorf("the policy controller alone still %s %s", a.GetVerb(), r)
		}
	}
}

func TestValidate(t *testing.T) {
	if err := Validate([]string{"backuppolicy", "backup", "restore"}); err != nil {
		t.Fatal(err)
	}
	if err := Validate([]string{"backups"}); err == nil || !strings.Contains(err.Error(), "backup, backuppolicy, backupstorage, restore") {
		t.Fatalf("Validate(backups) = %v; want an error listing the controllers", err)
	}
}

func TestEventsGoThroughTheirOwnClient(t *testing.T) {
	keep := int32(3)
	invalid := &platformv1.BackupPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: "db", Name: "broken", CreationTimestamp: metav1.Now()},
		Spec:       platformv1.BackupPolicySpec{Schedule: "every night", Retention: &platformv1.RetentionPolicy{KeepLast: &keep}},
	}
	kubeClient, events := kubefake.NewSimpleClientset(), kubefake.NewSimpleClientset()
	cfg := testConfig()
	cfg.EventClient = events
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, cfg, kubeClient, fake.NewSimpleClientset(invalid)) }()
	defer func() {
		cancel()
		<-done
	}()

	// The invalid schedule is reported with a Warning event, through the events client only.
	deadline := time.Now().Add(10 * time.Second)
	for {
		list, _ := events.CoreV1().Events("db").List(ctx, metav1.ListOptions{})
		if list != nil && len(list.Items) > 0 {
			if list.Items[0].Reason != "InvalidSchedule" {
				t.Fatalf("event %q, want InvalidSchedule", list.Items[0].Reason)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no event reached the events client")
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, a := range kubeClient.Actions() {
		if a.GetResource().Resource == "events" {
			t.Fatalf("an event went through the main client: %s", a.GetVerb())
		}
	}
}

func TestSnapshotAPIIsUsedOnlyWhenTheServerServesIt(t *testing.T) {
	snapshots := snapshotfake.NewSimpleClientset()
	served := kubefake.NewSimpleClientset()
	served.Resources = []*metav1.APIResourceList{{GroupVersion: "snapshot.storage.k8s.io/v1",
		APIResources: []metav1.APIResource{{Name: "volumesnapshots", Namespaced: true, Kind: "VolumeSnapshot"}}}}
	if got, err := snapshotAPI(context.Background(), served, snapshots); err != nil || got == nil {
		t.Fatalf("with the API served: client %v, error %v; want the client", got, err)
	}
	if got, err := snapshotAPI(context.Background(), kubefake.NewSimpleClientset(), snapshots); err != nil || got != nil {
		t.Fatalf("without the API: client %v, error %v; want none and no error, so the operator runs on", got, err)
	}
	if got, err := snapshotAPI(context.Background(), served, nil); err != nil || got != nil {
		t.Fatalf("without a client: %v, %v", got, err)
	}
}

func TestRunWatchesItsOwnVolumeSnapshots(t *testing.T) {
	kubeClient := kubefake.NewSimpleClientset()
	kubeClient.Resources = []*metav1.APIResourceList{{GroupVersion: "snapshot.storage.k8s.io/v1"}}
	snapshots := snapshotfake.NewSimpleClientset()
	cfg := testConfig()
	cfg.SnapshotClient = snapshots
	synced := make(chan struct{})
	cfg.Synced = func() { close(synced) }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, cfg, kubeClient, fake.NewSimpleClientset()) }()
	select {
	case <-synced:
	case err := <-done:
		t.Fatalf("Run: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("the caches did not sync")
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	listed := false
	for _, a := range snapshots.Actions() {
		if list, ok := a.(clienttesting.ListAction); ok && a.GetResource().Resource == "volumesnapshots" {
			listed = true
			if got := list.GetListRestrictions().Labels.String(); got != "app.kubernetes.io/managed-by=backup-operator" {
				t.Errorf("VolumeSnapshots are listed with selector %q; the operator must only watch its own", got)
			}
		}
	}
	if !listed {
		t.Fatal("the operator did not watch VolumeSnapshots although the API is served")
	}
}
