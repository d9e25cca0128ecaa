package controller

import (
	"context"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	kubeinformers "k8s.io/client-go/informers"
	kubefake "k8s.io/client-go/kubernetes/fake"

	platformv1 "platform.example.com/backup-operator/pkg/apis/platform/v1"
)

func controllerRef(apiVersion, kind, name string, uid types.UID) []metav1.OwnerReference {
	yes := true
	return []metav1.OwnerReference{{APIVersion: apiVersion, Kind: kind, Name: name, UID: uid, Controller: &yes}}
}

// backupUIDs is a UIDLookup over a fixed set of existing Backups.
func backupUIDs(uids map[string]types.UID) UIDLookup {
	return func(namespace, name string) (types.UID, error) {
		if uid, ok := uids[namespace+"/"+name]; ok {
			return uid, nil
		}
		return "", apierrors.NewNotFound(platformv1.Resource("backups"), name)
	}
}

func TestControlledByMatchesKindAndUID(t *testing.T) {
	resolve := ControlledBy(platformv1.Kind("Backup"), backupUIDs(map[string]types.UID{"db/nightly": "uid-1"}))
	job := func(refs []metav1.OwnerReference) metav1.Object {
		return &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Namespace: "db", Name: "job", OwnerReferences: refs}}
	}
	tests := []struct {
		name    string
		obj     metav1.Object
		wantKey string
	}{
		{"owned by the live Backup", job(controllerRef("platform.example.com/v1", "Backup", "nightly", "uid-1")), "db/nightly"},
		{"owned by a deleted Backup of the same name", job(controllerRef("platform.example.com/v1", "Backup", "nightly", "uid-old")), ""},
		{"owned by a Backup that does not exist", job(controllerRef("platform.example.com/v1", "Backup", "other", "uid-1")), ""},
		{"owned by another group's Backup", job(controllerRef("velero.io/v1", "Backup", "nightly", "uid-1")), ""},
		{"owned by a Restore", job(controllerRef("platform.example.com/v1", "Restore", "nightly", "uid-1")), ""},
		{"a non-controller owner reference", &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Namespace: "db", Name: "job",
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "platform.example.com/v1", Kind: "Backup", Name: "nightly", UID: "uid-1"}}}}, ""},
		{"no owner", job(nil), ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			key, ok := resolve(tc.obj)
			if ok != (tc.wantKey != "") || key != tc.wantKey {
				t.Fatalf("resolved to (%q, %v), want %q", key, ok, tc.wantKey)
			}
		})
	}
}

func TestWatchJobsOfRoutesJobAndPodEventsToTheOwner(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	client := kubefake.NewSimpleClientset()
	factory := kubeinformers.NewSharedInformerFactory(client, 0)
	jobs := factory.Batch().V1().Jobs()
	pods := factory.Core().V1().Pods()

	r := newRecorder(nil)
	q := NewQueue("test", r.sync, synced(), jobs.Informer().HasSynced, pods.Informer().HasSynced)
	if err := q.WatchJobsOf(platformv1.Kind("Backup"), backupUIDs(map[string]types.UID{"db/nightly": "uid-1"}), jobs, pods); err != nil {
		t.Fatal(err)
	}
	factory.Start(ctx.Done())
	runQueue(t, q, 1)

	job := &batchv1.Job{ObjectMeta: metav1.ObjectMeta{
		Namespace: "db", Name: "backup-nightly", UID: "job-uid",
		OwnerReferences: controllerRef("platform.example.com/v1", "Backup", "nightly", "uid-1"),
	}}
	if _, err := client.BatchV1().Jobs("db").Create(ctx, job, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	r.expect(t, "db/nightly", 5*time.Second)

	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{
		Namespace: "db", Name: "backup-nightly-abcde",
		OwnerReferences: controllerRef("batch/v1", "Job", "backup-nightly", "job-uid"),
	}}
	if _, err := client.CoreV1().Pods("db").Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	r.expect(t, "db/nightly", 5*time.Second)

	// A pod of a different Job of the same name (a stale UID) and a Job of a Backup that is gone
	// concern no live Backup.
	stalePod := pod.DeepCopy()
	stalePod.Name = "backup-nightly-stale"
	stalePod.OwnerReferences = controllerRef("batch/v1", "Job", "backup-nightly", "old-job-uid")
	if _, err := client.CoreV1().Pods("db").Create(ctx, stalePod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	orphan := job.DeepCopy()
	orphan.Name = "backup-deleted"
	orphan.UID = "orphan-uid"
	orphan.OwnerReferences = controllerRef("platform.example.com/v1", "Backup", "deleted", "uid-9")
	if _, err := client.BatchV1().Jobs("db").Create(ctx, orphan, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	r.expectNone(t, 300*time.Millisecond)

	// The Job's deletion is news for its Backup too.
	if err := client.BatchV1().Jobs("db").Delete(ctx, job.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	r.expect(t, "db/nightly", 5*time.Second)
}

func TestOwnerHandlerIgnoresResyncsOfUnchangedObjects(t *testing.T) {
	r := newRecorder(nil)
	q := NewQueue("test", r.sync, synced())
	runQueue(t, q, 1)
	handler := q.OwnerHandler(func(obj metav1.Object) (string, bool) { return obj.GetNamespace() + "/owner", true })

	old := &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Namespace: "db", Name: "j", ResourceVersion: "7"}}
	handler.OnUpdate(old, old.DeepCopy())
	r.expectNone(t, 200*time.Millisecond)

	changed := old.DeepCopy()
	changed.ResourceVersion = "8"
	handler.OnUpdate(old, changed)
	r.expect(t, "db/owner", 5*time.Second)
}
