// Package controller holds what the operator's controllers share: a rate-limited work queue with
// its worker loop, and the event handlers that map watched objects to the keys of the objects
// that own them. Each resource's sync logic lives in a sub-package named for the resource.
package controller

import (
	"context"
	"fmt"
	"sync"
	"time"

	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/klog/v2"
)

// SyncFunc reconciles the named object, which may no longer exist. It returns how long to wait before the key is synced again when nothing else changes (zero: only
// when a watched object changes), or an error to retry the key with backoff.
type SyncFunc func(ctx context.Context, namespace, name string) (requeueAfter time.Duration, err error)

// Queue is one resource's work queue and its workers, in the shape of the sample-controller:
// event handlers add keys, workers pop them and call the sync function, failures are retried with
// per-key exponential backoff. A key is never synced by two workers at once.
type Queue struct {
	name   string
	queue  workqueue.TypedRateLimitingInterface[string]
	sync   SyncFunc
	synced []cache.InformerSynced
}

// NewQueue returns a queue named for its resource (the name labels its workqueue metrics) that
// calls sync once the informers behind synced have filled their caches.
func NewQueue(name string, sync SyncFunc, synced ...cache.InformerSynced) *Queue {
	return &Queue{
		name: name,
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(
			workqueue.DefaultTypedControllerRateLimiter[string](),
			workqueue.TypedRateLimitingQueueConfig[string]{Name: name},
		),
		sync:   sync,
		synced: synced,
	}
}

// Name is the queue's resource name.
func (q *Queue) Name() string { return q.name }

// Add queues a key for a sync.
func (q *Queue) Add(key string) { q.queue.Add(key) }

// AddAfter queues a key for a sync once d has passed.
func (q *Queue) AddAfter(key string, d time.Duration) { q.queue.AddAfter(key, d) }

// Len is the number of keys waiting; tests use it to assert that nothing was queued.
func (q *Queue) Len() int { return q.queue.Len() }

// Enqueue queues the key of an informer object, including the tombstone of a deleted one.
func (q *Queue) Enqueue(obj interface{}) {
	key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj)
	if err != nil {
		utilruntime.HandleError(fmt.Errorf("%s: cannot make a key for %T: %w", q.name, obj, err))
		return
	}
	q.queue.Add(key)
}

// Handler queues the object itself on every add, update and delete.
func (q *Queue) Handler() cache.ResourceEventHandler {
	return cache.ResourceEventHandlerFuncs{
		AddFunc:    q.Enqueue,
		UpdateFunc: func(_, newObj interface{}) { q.Enqueue(newObj) },
		DeleteFunc: q.Enqueue,
	}
}

// Run waits for the informer caches, then runs workers until ctx is cancelled. On cancellation
// it stops handing out keys, lets each worker finish the key in hand, and returns. Callers that
// must not wait forever for the caches bound ctx or wait for the caches themselves first.
func (q *Queue) Run(ctx context.Context, workers int) {
	defer utilruntime.HandleCrash()
	logger := klog.FromContext(ctx).WithValues("controller", q.name)

	logger.Info("Waiting for informer caches to sync")
	if !cache.WaitForCacheSync(ctx.Done(), q.synced...) {
		// Only a cancelled ctx ends the wait unsynced.
		q.queue.ShutDown()
		return
	}

	logger.Info("Starting workers", "count", workers)
	var wg sync.WaitGroup
	for i := 0; i < workers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// A worker returns only when the queue shuts down. A panicking sync crashes the
			// process, as in the upstream controllers: a restarted pod beats a wedged worker.
			wait.UntilWithContext(ctx, q.runWorker, time.Second)
		}()
	}

	<-ctx.Done()
	logger.Info("Shutting down workers")
	q.queue.ShutDown()
	wg.Wait()
	logger.Info("Workers stopped")
}

func (q *Queue) runWorker(ctx context.Context) {
	for q.processNextWorkItem(ctx) {
	}
}

func (q *Queue) processNextWorkItem(ctx context.Context) bool {
	key, shutdown := q.queue.Get()
	if shutdown {
		return false
	}
	defer q.queue.Done(key)

	logger := klog.FromContext(ctx).WithValues("controller", q.name, "key", key)
	namespace, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		// A malformed key can never sync; retrying it would only loop.
		logger.Error(err, "Dropping malformed key")
		q.queue.Forget(key)
		return true
	}
	requeueAfter, err := q.sync(klog.NewContext(ctx, logger), namespace, name)
	switch {
	case err != nil:
		utilruntime.HandleErrorWithContext(ctx, err, "Sync failed; will retry with backoff", "controller", q.name, "key", key, "retries", q.queue.NumRequeues(key))
		q.queue.AddRateLimited(key)
	case requeueAfter > 0:
		q.queue.Forget(key)
		q.queue.AddAfter(key, requeueAfter)
	default:
		q.queue.Forget(key)
	}
	return true
}
