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
//
// Keys are queued only while Run runs. A replica that does not hold the leader Lease keeps its
// informers warm but queues nothing; when it starts to lead, Run queues every object of the kind
// once, so the new leader syncs each as the informer's first list would have.
type Queue struct {
	name    string
	sync    SyncFunc
	primary Primary
	synced  []cache.InformerSynced

	mu sync.RWMutex
	// queue is nil while Run does not run; each Run gets a fresh one, as a shut-down workqueue
	// cannot be reused.
	queue workqueue.TypedRateLimitingInterface[string]
}

// Primary is the informer of the kind a queue syncs: its cache lists the keys a new run starts with.
type Primary interface {
	HasSynced() bool
	GetStore() cache.Store
}

// NewQueue returns a queue named for its resource (the name labels its workqueue metrics) that
// syncs the objects of primary once primary and the informers behind synced have filled their
// caches.
func NewQueue(name string, sync SyncFunc, primary Primary, synced ...cache.InformerSynced) *Queue {
	return &Queue{
		name:    name,
		sync:    sync,
		primary: primary,
		synced:  append([]cache.InformerSynced{primary.HasSynced}, synced...),
	}
}

// Name is the queue's resource name.
func (q *Queue) Name() string { return q.name }

// active returns the running workqueue, or nil while Run does not run.
func (q *Queue) active() workqueue.TypedRateLimitingInterface[string] {
	q.mu.RLock()
	defer q.mu.RUnlock()
	return q.queue
}

// Add queues a key for a sync.
func (q *Queue) Add(key string) {
	if wq := q.active(); wq != nil {
		wq.Add(key)
	}
}

// AddAfter queues a key for a sync once d has passed.
func (q *Queue) AddAfter(key string, d time.Duration) {
	if wq := q.active(); wq != nil {
		wq.AddAfter(key, d)
	}
}

// Enqueue queues the key of an informer object, including the tombstone of a deleted one.
func (q *Queue) Enqueue(obj interface{}) {
	key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj)
	if err != nil {
		utilruntime.HandleError(fmt.Errorf("%s: cannot make a key for %T: %w", q.name, obj, err))
		return
	}
	q.Add(key)
}

// Handler queues the object itself on every add, update and delete.
func (q *Queue) Handler() cache.ResourceEventHandler {
	return cache.ResourceEventHandlerFuncs{
		AddFunc:    q.Enqueue,
		UpdateFunc: func(_, newObj interface{}) { q.Enqueue(newObj) },
		DeleteFunc: q.Enqueue,
	}
}

// Run waits for the informer caches, queues every object of the primary kind, then runs workers
// until ctx is cancelled. On cancellation it stops queueing and handing out keys, lets each
// worker finish the key in hand, and returns; the keys still waiting are dropped, and the next
// Run queues every object again. Callers that must not wait forever for the caches bound ctx or
// wait for the caches themselves first. Runs must not overlap.
func (q *Queue) Run(ctx context.Context, workers int) {
	defer utilruntime.HandleCrash()
	logger := klog.FromContext(ctx).WithValues("controller", q.name)

	logger.Info("Waiting for informer caches to sync")
	if !cache.WaitForCacheSync(ctx.Done(), q.synced...) {
		// Only a cancelled ctx ends the wait unsynced.
		return
	}

	wq := workqueue.NewTypedRateLimitingQueueWithConfig(
		workqueue.DefaultTypedControllerRateLimiter[string](),
		workqueue.TypedRateLimitingQueueConfig[string]{Name: q.name},
	)
	q.mu.Lock()
	q.queue = wq
	q.mu.Unlock()
	// After the queue is active, so that no change between the listing and now is missed.
	for _, key := range q.primary.GetStore().ListKeys() {
		wq.Add(key)
	}

	logger.Info("Starting workers", "count", workers)
	var wg sync.WaitGroup
	for i := 0; i < workers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// A worker returns only when the queue shuts down. A panicking sync crashes the
			// process, as in the upstream controllers: a restarted pod beats a wedged worker.
			wait.UntilWithContext(ctx, func(ctx context.Context) { q.runWorker(ctx, wq) }, time.Second)
		}()
	}

	<-ctx.Done()
	logger.Info("Shutting down workers")
	q.mu.Lock()
	q.queue = nil
	q.mu.Unlock()
	wq.ShutDown()
	wg.Wait()
	logger.Info("Workers stopped")
}

func (q *Queue) runWorker(ctx context.Context, wq workqueue.TypedRateLimitingInterface[string]) {
	for q.processNextWorkItem(ctx, wq) {
	}
}

func (q *Queue) processNextWorkItem(ctx context.Context, wq workqueue.TypedRateLimitingInterface[string]) bool {
	key, shutdown := wq.Get()
	if shutdown {
		return false
	}
	defer wq.Done(key)
	// A shut-down workqueue still hands out the keys it holds; a stopping controller (one that
	// lost its Lease, above all) must not sync them.
	if ctx.Err() != nil {
		return false
	}

	logger := klog.FromContext(ctx).WithValues("controller", q.name, "key", key)
	namespace, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		// A malformed key can never sync; retrying it would only loop.
		logger.Error(err, "Dropping malformed key")
		wq.Forget(key)
		return true
	}
	requeueAfter, err := q.sync(klog.NewContext(ctx, logger), namespace, name)
	switch {
	case err != nil:
		utilruntime.HandleErrorWithContext(ctx, err, "Sync failed; will retry with backoff", "controller", q.name, "key", key, "retries", wq.NumRequeues(key))
		wq.AddRateLimited(key)
	case requeueAfter > 0:
		wq.Forget(key)
		wq.AddAfter(key, requeueAfter)
	default:
		wq.Forget(key)
	}
	return true
}
