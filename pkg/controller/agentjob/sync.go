package agentjob

import (
	"context"
	"fmt"
	"sync"

	batchv1 "k8s.io/api/batch/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	batchlisters "k8s.io/client-go/listers/batch/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/record"
)

// Event is one Event to emit once the status that tells the same story is written, so that a
// story never runs ahead of a status write that failed and will be retried.
type Event struct {
	// Type is corev1.EventTypeNormal or corev1.EventTypeWarning.
	Type string
	// Reason and Message are the Event's.
	Reason, Message string
}

// Get returns the Job called name, from the cache, or from the API server when the object
// recorded that it made one (made): the cache may lag behind a Job just created, and only the
// API server can say it is gone, which Get reports as lost. Without a Job made yet it returns
// none.
func Get(ctx context.Context, jobs batchlisters.JobLister, client kubernetes.Interface, namespace, name string, made bool) (job *batchv1.Job, lost bool, err error) {
	job, err = jobs.Jobs(namespace).Get(name)
	switch {
	case apierrors.IsNotFound(err):
		job = nil
	case err != nil:
		return nil, false, err
	}
	if job != nil || !made {
		return job, false, nil
	}
	job, err = client.BatchV1().Jobs(namespace).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, true, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("reading Job %s/%s: %w", namespace, name, err)
	}
	return job, false, nil
}

// Create creates job. When a Job of its name exists, made by an earlier sync whose news has not
// reached the cache, that one is returned instead, with created false: the caller checks that
// it is its own.
func Create(ctx context.Context, client kubernetes.Interface, job *batchv1.Job) (_ *batchv1.Job, created bool, err error) {
	made, err := client.BatchV1().Jobs(job.Namespace).Create(ctx, job, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		made, err = client.BatchV1().Jobs(job.Namespace).Get(ctx, job.Name, metav1.GetOptions{})
		if err != nil {
			return nil, false, fmt.Errorf("reading Job %s/%s, which already exists: %w", job.Namespace, job.Name, err)
		}
		return made, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("creating Job %s/%s: %w", job.Namespace, job.Name, err)
	}
	return made, true, nil
}

// Follow reads what job and its pods in the cache, those labeled label=name for the object the
// Job works for, say about the run.
func Follow(pods corelisters.PodLister, job *batchv1.Job, label, name string) (Observation, error) {
	owned, err := PodsOf(pods, job, labels.SelectorFromSet(labels.Set{label: name}))
	if err != nil {
		return Observation{}, err
	}
	return Observe(job, owned), nil
}

// Commit writes obj's status with updateStatus when it changed, then emits events: the story is
// told only once the status that tells the same is stored, so a sync retried after a failed
// write does not tell it twice.
func Commit[T runtime.Object](ctx context.Context, recorder record.EventRecorder, obj T, changed bool,
	updateStatus func(context.Context, T, metav1.UpdateOptions) (T, error), events []Event) error {
	if changed {
		if _, err := updateStatus(ctx, obj, metav1.UpdateOptions{}); err != nil {
			return err
		}
	}
	for _, e := range events {
		recorder.Event(obj, e.Type, e.Reason, e.Message)
	}
	return nil
}

// DeleteJob deletes job, only if it is still the Job that was read (same UID), with propagation
// deciding whether its pods go first (Foreground) or after (Background). A Job that is already
// gone is not an error.
func DeleteJob(ctx context.Context, client kubernetes.Interface, job *batchv1.Job, propagation metav1.DeletionPropagation) error {
	err := client.BatchV1().Jobs(job.Namespace).Delete(ctx, job.Name, metav1.DeleteOptions{
		PropagationPolicy: &propagation,
		Preconditions:     &metav1.Preconditions{UID: &job.UID},
	})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("deleting Job %s/%s: %w", job.Namespace, job.Name, err)
	}
	return nil
}

// Written remembers, for each object a controller wrote the status of, the resourceVersion that
// write replaced. The informer's copy lags behind a controller's own writes: a sync that acts on
// the replaced copy redoes what the write recorded as done, such as creating again a child that
// was just deleted, and its own status write then fails on the stale version, so nothing
// records the child. Stale tells a sync to wait for the informer instead.
type Written struct{ m sync.Map }

// Record notes that a status write replaced obj, the copy it was computed from.
func (w *Written) Record(obj metav1.Object) {
	w.m.Store(writtenKey(obj), obj.GetResourceVersion())
}

// Stale reports whether obj is a copy that a write recorded with Record has replaced. The
// workqueue syncs one key at a time, so the answer cannot change under a sync.
func (w *Written) Stale(obj metav1.Object) bool {
	key := writtenKey(obj)
	rv, ok := w.m.Load(key)
	if !ok {
		return false
	}
	if rv == obj.GetResourceVersion() {
		return true
	}
	w.m.Delete(key) // the informer caught up
	return false
}

// Forget drops what is remembered of the object namespace/name, once it is gone.
func (w *Written) Forget(namespace, name string) { w.m.Delete(namespace + "/" + name) }

func writtenKey(obj metav1.Object) string { return obj.GetNamespace() + "/" + obj.GetName() }
