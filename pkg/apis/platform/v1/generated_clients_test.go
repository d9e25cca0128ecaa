package v1_test

import (
	"context"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/tools/cache"

	platformv1 "platform.example.com/backup-operator/pkg/apis/platform/v1"
	"platform.example.com/backup-operator/pkg/generated/clientset/versioned/fake"
	informers "platform.example.com/backup-operator/pkg/generated/informers/externalversions"
)

// The generated clientset, informers and listers are the controller's only view of the API. These
// tests drive each kind through the path the controllers take: create through the clientset, see
// it through an informer's lister, and write status through the status subresource.

func newInformers(t *testing.T, objects ...runtime.Object) (*fake.Clientset, informers.SharedInformerFactory) {
	t.Helper()
	client := fake.NewSimpleClientset(objects...)
	factory := informers.NewSharedInformerFactory(client, 0)
	// Touch each informer before Start so the factory runs it.
	v1 := factory.Platform().V1()
	v1.BackupPolicies().Informer()
	v1.Backups().Informer()
	v1.Restores().Informer()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	factory.Start(ctx.Done())
	for typ, ok := range factory.WaitForCacheSync(ctx.Done()) {
		if !ok {
			t.Fatalf("informer for %v did not sync", typ)
		}
	}
	return client, factory
}

// waitFor polls a lister-backed condition: informers deliver asynchronously.
func waitFor(t *testing.T, what string, cond func() (bool, error)) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		ok, err := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s (last error: %v)", what, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestBackupPolicyClientListerInformer(t *testing.T) {
	ctx := context.Background()
	client, factory := newInformers(t)
	lister := factory.Platform().V1().BackupPolicies().Lister()

	keep := int32(3)
	policy := &platformv1.BackupPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: "db", Name: "daily-backups", Labels: map[string]string{"tier": "gold"}},
		Spec: platformv1.BackupPolicySpec{
			Schedule:  "0 2 * * *",
			Retention: &platformv1.RetentionPolicy{KeepLast: &keep},
			Target: platformv1.BackupTarget{PVCSelector: metav1.LabelSelector{
				MatchLabels: map[string]string{"app": "postgres"},
			}},
		},
	}
	if _, err := client.PlatformV1().BackupPolicies("db").Create(ctx, policy, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create: %v", err)
	}
	waitFor(t, "the policy in the lister", func() (bool, error) {
		got, err := lister.BackupPolicies("db").Get("daily-backups")
		return err == nil && got.Spec.Schedule == "0 2 * * *", err
	})
	selected, err := lister.List(labels.SelectorFromSet(labels.Set{"tier": "gold"}))
	if err != nil || len(selected) != 1 {
		t.Fatalf("list by label: got %d policies, err %v; want 1", len(selected), err)
	}
	if other, _ := lister.BackupPolicies("elsewhere").List(labels.Everything()); len(other) != 0 {
		t.Fatalf("namespace lister leaked %d policies from another namespace", len(other))
	}

	// Status is written on a copy, never on the lister's object.
	cached, _ := lister.BackupPolicies("db").Get("daily-backups")
	updated := cached.DeepCopy()
	next := metav1.NewTime(time.Date(2026, 11, 22, 2, 0, 0, 0, time.UTC))
	updated.Status.NextScheduleTime = &next
	updated.Status.Conditions = []metav1.Condition{{Type: platformv1.ConditionReady, Status: metav1.ConditionTrue, Reason: "Scheduled", LastTransitionTime: next}}
	if _, err := client.PlatformV1().BackupPolicies("db").UpdateStatus(ctx, updated, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("update status: %v", err)
	}
	if cached.Status.NextScheduleTime != nil {
		t.Fatal("DeepCopy shares status with the cached object")
	}
	waitFor(t, "the status in the lister", func() (bool, error) {
		got, err := lister.BackupPolicies("db").Get("daily-backups")
		return err == nil && got.Status.NextScheduleTime != nil && got.Status.NextScheduleTime.Equal(&next), err
	})
}

func TestBackupClientListerInformer(t *testing.T) {
	ctx := context.Background()
	existing := &platformv1.Backup{
		ObjectMeta: metav1.ObjectMeta{Namespace: "db", Name: "old", Labels: map[string]string{platformv1.LabelPolicy: "daily-backups"}},
		Spec:       platformv1.BackupSpec{PVCName: "data-db-0", PolicyName: "daily-backups"},
		Status:     platformv1.BackupStatus{Phase: platformv1.BackupCompleted},
	}
	client, factory := newInformers(t, existing)
	lister := factory.Platform().V1().Backups().Lister()

	fresh := &platformv1.Backup{
		ObjectMeta: metav1.ObjectMeta{Namespace: "db", Name: "new", Labels: map[string]string{platformv1.LabelPolicy: "daily-backups"}},
		Spec:       platformv1.BackupSpec{PVCName: "data-db-0", PolicyName: "daily-backups"},
	}
	if _, err := client.PlatformV1().Backups("db").Create(ctx, fresh, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create: %v", err)
	}
	waitFor(t, "both backups of the policy in the lister", func() (bool, error) {
		got, err := lister.Backups("db").List(labels.SelectorFromSet(labels.Set{platformv1.LabelPolicy: "daily-backups"}))
		return err == nil && len(got) == 2, err
	})

	cached, err := lister.Backups("db").Get("new")
	if err != nil {
		t.Fatal(err)
	}
	running := cached.DeepCopy()
	running.Status.Phase = platformv1.BackupRunning
	running.Status.Artifact = &platformv1.Artifact{Path: "db/new.tar.zst", Size: 42, SHA256: "00", Compression: platformv1.CompressionZstd}
	if _, err := client.PlatformV1().Backups("db").UpdateStatus(ctx, running, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("update status: %v", err)
	}
	if cached.Status.Phase != "" || cached.Status.Artifact != nil {
		t.Fatal("DeepCopy shares status with the cached object")
	}
	waitFor(t, "the Running phase in the lister", func() (bool, error) {
		got, err := lister.Backups("db").Get("new")
		return err == nil && got.Status.Phase == platformv1.BackupRunning && got.Status.Artifact.Size == 42, err
	})

	if err := client.PlatformV1().Backups("db").Delete(ctx, "old", metav1.DeleteOptions{}); err != nil {
		t.Fatalf("delete: %v", err)
	}
	waitFor(t, "the deleted backup to leave the lister", func() (bool, error) {
		_, err := lister.Backups("db").Get("old")
		return err != nil, nil
	})
}

func TestRestoreClientListerInformer(t *testing.T) {
	ctx := context.Background()
	client, factory := newInformers(t)
	informer := factory.Platform().V1().Restores()

	added := make(chan string, 4)
	if _, err := informer.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(obj interface{}) {
			added <- obj.(*platformv1.Restore).Name
		},
	}); err != nil {
		t.Fatal(err)
	}

	restore := &platformv1.Restore{
		ObjectMeta: metav1.ObjectMeta{Namespace: "db", Name: "rehearsal"},
		Spec: platformv1.RestoreSpec{
			BackupName:      "new",
			Target:          platformv1.RestoreTarget{ClaimName: "data-restored"},
			OverwritePolicy: platformv1.OverwriteRefuse,
		},
	}
	if _, err := client.PlatformV1().Restores("db").Create(ctx, restore, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create: %v", err)
	}
	select {
	case name := <-added:
		if name != "rehearsal" {
			t.Fatalf("event handler saw %q, want rehearsal", name)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the informer delivered no add event")
	}

	cached, err := informer.Lister().Restores("db").Get("rehearsal")
	if err != nil {
		t.Fatal(err)
	}
	done := cached.DeepCopy()
	done.Status.Phase = platformv1.RestoreCompleted
	done.Status.RestoredFiles = 7
	if _, err := client.PlatformV1().Restores("db").UpdateStatus(ctx, done, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("update status: %v", err)
	}
	waitFor(t, "the Completed phase in the lister", func() (bool, error) {
		got, err := informer.Lister().Restores("db").Get("rehearsal")
		return err == nil && got.Status.Phase == platformv1.RestoreCompleted && got.Status.RestoredFiles == 7, err
	})
}

func TestDeepCopyIsIndependent(t *testing.T) {
	keep := int32(3)
	deadline := int64(60)
	in := &platformv1.BackupPolicy{Spec: platformv1.BackupPolicySpec{
		Retention:         &platformv1.RetentionPolicy{KeepLast: &keep},
		BackupRunSettings: platformv1.BackupRunSettings{JobSettings: platformv1.JobSettings{ActiveDeadlineSeconds: &deadline}},
		Target:            platformv1.BackupTarget{PVCSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "postgres"}}},
	}}
	out := in.DeepCopy()
	*out.Spec.Retention.KeepLast = 9
	*out.Spec.ActiveDeadlineSeconds = 1
	out.Spec.Target.PVCSelector.MatchLabels["app"] = "mysql"
	if *in.Spec.Retention.KeepLast != 3 || *in.Spec.ActiveDeadlineSeconds != 60 || in.Spec.Target.PVCSelector.MatchLabels["app"] != "postgres" {
		t.Fatalf("DeepCopy shares memory with its source: %+v", in.Spec)
	}
}

func TestOnlyCompletedAndFailedAreFinal(t *testing.T) {
	for p, want := range map[platformv1.BackupPhase]bool{"": false, platformv1.BackupPending: false, platformv1.BackupRunning: false, platformv1.BackupCompleted: true, platformv1.BackupFailed: true} {
		if p.Final() != want {
			t.Errorf("BackupPhase(%q).Final() = %v", p, !want)
		}
	}
	for p, want := range map[platformv1.RestorePhase]bool{"": false, platformv1.RestorePending: false, platformv1.RestoreRunning: false, platformv1.RestoreCompleted: true, platformv1.RestoreFailed: true} {
		if p.Final() != want {
			t.Errorf("RestorePhase(%q).Final() = %v", p, !want)
		}
	}
}
