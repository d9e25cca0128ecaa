package controller

import (
	"fmt"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	batchinformers "k8s.io/client-go/informers/batch/v1"
	coreinformers "k8s.io/client-go/informers/core/v1"
	"k8s.io/client-go/tools/cache"
)

// OwnerResolver returns the "namespace/name" key of the object that controls obj, or false when
// no object the caller syncs controls it.
type OwnerResolver func(obj metav1.Object) (key string, ok bool)

// UIDLookup returns the UID of the named object from a lister, or an error when it is not there.
type UIDLookup func(namespace, name string) (types.UID, error)

// ObjectLookup returns the named object from a lister, or an error when it is not there.
type ObjectLookup func(namespace, name string) (metav1.Object, error)

// ControlledBy resolves objects whose controller reference is of kind gk and names an object
// that lookup finds with the same UID. Matching the UID, not only the name, keeps a Job of a
// deleted Backup from being taken for the Job of a new Backup of the same name.
func ControlledBy(gk schema.GroupKind, lookup UIDLookup) OwnerResolver {
	return func(obj metav1.Object) (string, bool) {
		ref := metav1.GetControllerOf(obj)
		if ref == nil || !refIsKind(ref, gk) {
			return "", false
		}
		uid, err := lookup(obj.GetNamespace(), ref.Name)
		if err != nil || uid != ref.UID {
			return "", false
		}
		return obj.GetNamespace() + "/" + ref.Name, true
	}
}

// Through resolves objects controlled by an intermediate object of kind gk, such as a Pod by its
// Job, by resolving that intermediate object with next.
func Through(gk schema.GroupKind, lookup ObjectLookup, next OwnerResolver) OwnerResolver {
	return func(obj metav1.Object) (string, bool) {
		ref := metav1.GetControllerOf(obj)
		if ref == nil || !refIsKind(ref, gk) {
			return "", false
		}
		parent, err := lookup(obj.GetNamespace(), ref.Name)
		if err != nil || parent.GetUID() != ref.UID {
			return "", false
		}
		return next(parent)
	}
}

func refIsKind(ref *metav1.OwnerReference, gk schema.GroupKind) bool {
	gv, err := schema.ParseGroupVersion(ref.APIVersion)
	return err == nil && gv.Group == gk.Group && ref.Kind == gk.Kind
}

// OwnerHandler queues the key of the object that controls each added, updated or deleted
// object, as resolve finds it. Objects nothing of this queue's kind controls are ignored.
func (q *Queue) OwnerHandler(resolve OwnerResolver) cache.ResourceEventHandler {
	enqueue := func(obj interface{}) {
		if tombstone, ok := obj.(cache.DeletedFinalStateUnknown); ok {
			obj = tombstone.Obj
		}
		accessor, err := meta.Accessor(obj)
		if err != nil {
			return
		}
		if key, ok := resolve(accessor); ok {
			q.Add(key)
		}
	}
	return cache.ResourceEventHandlerFuncs{
		AddFunc: enqueue,
		UpdateFunc: func(oldObj, newObj interface{}) {
			// Periodic resyncs send unchanged objects; they carry no news for the owner.
			if o, n := metaOf(oldObj), metaOf(newObj); o != nil && n != nil && o.GetResourceVersion() == n.GetResourceVersion() {
				return
			}
			enqueue(newObj)
		},
		DeleteFunc: enqueue,
	}
}

func metaOf(obj interface{}) metav1.Object {
	accessor, err := meta.Accessor(obj)
	if err != nil {
		return nil
	}
	return accessor
}

// WatchJobsOf routes the events of Jobs controlled by an object of kind gk, and of those Jobs'
// pods, to the queue as that object's key: a Backup or Restore hears about its Job's progress.
func (q *Queue) WatchJobsOf(gk schema.GroupKind, lookup UIDLookup, jobs batchinformers.JobInformer, pods coreinformers.PodInformer) error {
	jobOwner := ControlledBy(gk, lookup)
	podOwner := Through(JobKind, func(namespace, name string) (metav1.Object, error) {
		return jobs.Lister().Jobs(namespace).Get(name)
	}, jobOwner)
	if _, err := jobs.Informer().AddEventHandler(q.OwnerHandler(jobOwner)); err != nil {
		return fmt.Errorf("%s: watching Jobs: %w", q.name, err)
	}
	if _, err := pods.Informer().AddEventHandler(q.OwnerHandler(podOwner)); err != nil {
		return fmt.Errorf("%s: watching pods: %w", q.name, err)
	}
	return nil
}
