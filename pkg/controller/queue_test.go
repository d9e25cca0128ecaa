package controller

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/cache"

	platformv1 "platform.example.com/backup-operator/pkg/apis/platform/v1"
)

// recorder is a SyncFunc that records the keys it saw and answers from a script.
type recorder struct {
	mu     sync.Mutex
	calls  []string
	answer func(call int, key string) (time.Duration, error)
	seen   chan string
}

func newRecorder(answer func(call int, key string) (time.Duration, error)) *recorder {
	return &recorder{answer: answer, seen: make(chan string, 100)}
}

func (r *recorder) sync(_ context.Context, namespace, name string) (time.Duration, error) {
	key := namespace + "/" + name
	r.mu.Lock()
	r.calls = append(r.calls, key)
	n := len(r.calls)
	r.mu.Unlock()
	r.seen <- key
	if r.answer == nil {
		return 0, nil
	}
	return r.answer(n, key)
}

func (r *recorder) expect(t *testing.T, want string, within time.Duration) {
	t.Helper()
	select {
	case got := <-r.seen:
		if got != want {
			t.Fatalf("sync saw %q, want %q", got, want)
		}
	case <-time.After(within):
		t.Fatalf("no sync of %q within %s", want, within)
	}
}

func (r *recorder) expectNone(t *testing.T, within time.Duration) {
	t.Helper()
	select {
	case got := <-r.seen:
		t.Fatalf("unexpected sync of %q", got)
	case <-time.After(within):
	}
}

// fakePrimary is a primary informer: a store of objects and whether it has synced.
type fakePrimary struct {
	cache.Store
	mu     sync.Mutex
	synced bool
}

func newPrimary(synced bool, objs ...interface{}) *fakePrimary {
	p := &fakePrimary{Store: cache.NewStore(cache.MetaNamespaceKeyFunc), synced: synced}
	for _, obj := range objs {
		if err := p.Add(obj); err != nil {
			panic(err)
		}
	}
	return p
}

func (p *fakePrimary) HasSynced() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.synced
}

func (p *fakePrimary) setSynced() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.synced = true
}

func (p *fakePrimary) GetStore() cache.Store { return p.Store }

// synced is a primary informer with nothing in its cache.
func synced() *fakePrimary { return newPrimary(true) }

func backupObject(namespace, name string) *platformv1.Backup {
	return &platformv1.Backup{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name}}
}

// runQueue runs q until the test ends and returns a channel closed when Run has returned.
func runQueue(t *testing.T, q *Queue, workers int) (context.CancelFunc, <-chan struct{}) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		q.Run(ctx, workers)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	// Keys added before Run is active are dropped, as on a standby replica; wait for it unless
	// the test holds the caches back.
	if q.primary.HasSynced() {
		deadline := time.Now().Add(5 * time.Second)
		for q.active() == nil {
			if time.Now().After(deadline) {
				t.Fatal("the queue did not become active within 5s")
			}
			time.Sleep(time.Millisecond)
		}
	}
	return cancel, done
}

func TestQueueSyncsEnqueuedObjectsByNamespaceAndName(t *testing.T) {
	r := newRecorder(nil)
	q := NewQueue("test", r.sync, synced())
	runQueue(t, q, 1)

	q.Enqueue(&platformv1.Backup{ObjectMeta: metav1.ObjectMeta{Namespace: "db", Name: "nightly"}})
	r.expect(t, "db/nightly", 5*time.Second)

	// A deleted object arrives as a tombstone; its key must still reach sync, which then sees
	// that the object is gone.
	q.Enqueue(cache.DeletedFinalStateUnknown{Key: "db/gone", Obj: &platformv1.Backup{ObjectMeta: metav1.ObjectMeta{Namespace: "db", Name: "gone"}}})
	r.expect(t, "db/gone", 5*time.Second)
}

func TestQueueRetriesFailedSyncsWithBackoff(t *testing.T) {
	r := newRecorder(func(call int, _ string) (time.Duration, error) {
		if call < 3 {
			return 0, errors.New("transient")
		}
		return 0, nil
	})
	q := NewQueue("test", r.sync, synced())
	runQueue(t, q, 1)

	q.Add("db/flaky")
	for i := 0; i < 3; i++ {
		r.expect(t, "db/flaky", 5*time.Second)
	}
	// Success forgets the key: no further syncs.
	r.expectNone(t, 200*time.Millisecond)
	if n := q.queue.NumRequeues("db/flaky"); n != 0 {
		t.Fatalf("after success the key still counts %d requeues; backoff would carry over", n)
	}
}

func TestQueueRequeuesAfterTheDurationSyncAsksFor(t *testing.T) {
	const after = 300 * time.Millisecond
	r := newRecorder(func(call int, _ string) (time.Duration, error) {
		if call == 1 {
			return after, nil
		}
		return 0, nil
	})
	q := NewQueue("test", r.sync, synced())
	runQueue(t, q, 1)

	start := time.Now()
	q.Add("db/scheduled")
	r.expect(t, "db/scheduled", 5*time.Second)
	r.expect(t, "db/scheduled", 5*time.Second)
	if elapsed := time.Since(start); elapsed < after {
		t.Fatalf("requeued after %s, before the %s sync asked for", elapsed, after)
	}
	r.expectNone(t, 2*after)
}

func TestQueueDropsMalformedKeys(t *testing.T) {
	r := newRecorder(nil)
	q := NewQueue("test", r.sync, synced())
	runQueue(t, q, 1)

	q.Add("a/b/c")
	q.Add("db/after")
	r.expect(t, "db/after", 5*time.Second)
	r.expectNone(t, 100*time.Millisecond)
}

func TestQueueWaitsForCachesBeforeSyncing(t *testing.T) {
	r := newRecorder(nil)
	primary := newPrimary(false, backupObject("db", "early"))
	q := NewQueue("test", r.sync, primary)
	runQueue(t, q, 1)
	r.expectNone(t, 300*time.Millisecond)

	primary.setSynced()
	r.expect(t, "db/early", 5*time.Second)
}

func TestQueueQueuesNothingWhileNotRunning(t *testing.T) {
	r := newRecorder(nil)
	q := NewQueue("test", r.sync, synced())
	// A standby replica's handlers fire, but nothing is kept for later: the next Run lists.
	q.Add("db/standby")
	q.Enqueue(backupObject("db", "standby-too"))
	runQueue(t, q, 1)
	r.expectNone(t, 300*time.Millisecond)
}

func TestQueueEachRunStartsWithEveryPrimaryObject(t *testing.T) {
	r := newRecorder(nil)
	primary := newPrimary(true, backupObject("db", "a"), backupObject("db", "b"))
	q := NewQueue("test", r.sync, primary)

	for run := 1; run <= 2; run++ {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() {
			defer close(done)
			q.Run(ctx, 1)
		}()
		seen := map[string]bool{}
		for len(seen) < 2 {
			select {
			case key := <-r.seen:
				seen[key] = true
			case <-time.After(5 * time.Second):
				t.Fatalf("run %d synced only %v; want db/a and db/b", run, seen)
			}
		}
		cancel()
		<-done
		// Between runs, as on a replica that lost its Lease, keys are not queued.
		q.Add("db/between")
	}
	r.expectNone(t, 100*time.Millisecond)
}

func TestQueueStopsHandingOutKeysOnceStopped(t *testing.T) {
	release := make(chan struct{})
	r := newRecorder(func(call int, _ string) (time.Duration, error) {
		if call == 1 {
			<-release
		}
		return 0, nil
	})
	q := NewQueue("test", r.sync, synced())
	cancel, done := runQueue(t, q, 1)

	q.Add("db/first")
	r.expect(t, "db/first", 5*time.Second)
	q.Add("db/waiting")
	cancel()
	close(release)
	<-done
	// A shut-down workqueue would still hand out db/waiting; a stopped controller must not
	// sync it, as it may no longer hold the Lease.
	r.expectNone(t, 100*time.Millisecond)
}

func TestQueueShutdownFinishesTheKeyInHand(t *testing.T) {
	release := make(chan struct{})
	finished := make(chan struct{})
	q := NewQueue("test", func(ctx context.Context, _, _ string) (time.Duration, error) {
		<-release
		close(finished)
		return 0, nil
	}, synced())
	cancel, done := runQueue(t, q, 1)

	q.Add("db/long")
	time.Sleep(100 * time.Millisecond) // let the worker take the key
	cancel()
	select {
	case <-done:
		t.Fatal("Run returned while a sync was still in progress")
	case <-time.After(200 * time.Millisecond):
	}
	close(release)
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after the in-progress sync finished")
	}
	select {
	case <-finished:
	default:
		t.Fatal("the in-progress sync was abandoned")
	}
}

func TestQueueNeverSyncsOneKeyConcurrently(t *testing.T) {
	var mu sync.Mutex
	running, maxRunning, calls := 0, 0, 0
	q := NewQueue("test", func(context.Context, string, string) (time.Duration, error) {
		mu.Lock()
		running++
		calls++
		if running > maxRunning {
			maxRunning = running
		}
		mu.Unlock()
		time.Sleep(20 * time.Millisecond)
		mu.Lock()
		running--
		mu.Unlock()
		return 0, nil
	}, synced())
	runQueue(t, q, 4)
	for i := 0; i < 20; i++ {
		q.Add("db/hot")
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	if calls == 0 || maxRunning != 1 {
		t.Fatalf("one key was synced by %d workers at once over %d calls; want 1", maxRunning, calls)
	}
}
