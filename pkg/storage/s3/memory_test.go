package s3

import (
	"context"
	"fmt"
	"runtime"
	"sync/atomic"
	"testing"
	"time"
)

// upload writes size bytes of incompressible data as the archive key through b, the same random
// MiB over and over so that neither the data nor making it costs much, and commits it.
func upload(t testing.TB, b *Backend, key string, size int64) {
	t.Helper()
	ctx := context.Background()
	s, err := b.Create(ctx, key, "")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Abort()
	buf := randomData(1<<20, 7)
	for left := size; left > 0; left -= int64(len(buf)) {
		if _, err := s.Write(buf[:min(left, int64(len(buf)))]); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Commit(ctx, size, []byte("not checked  "+key+"\n"), []byte(`{"manifestVersion":1}`)); err != nil {
		t.Fatal(err)
	}
}

// TestUploadMemory uploads 200 MiB at the default part size and parallelism and checks the heap
// stays near the parts in flight: PartSize × (Parallel+1) = 40 MiB.
func TestUploadMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("uploads 200 MiB")
	}
	srv := shared(t)
	b := newBackend(t, newBucket(t, srv, false))
	runtime.GC()
	var peak atomic.Uint64
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		var m runtime.MemStats
		for {
			runtime.ReadMemStats(&m)
			if m.HeapInuse > peak.Load() {
				peak.Store(m.HeapInuse)
			}
			select {
			case <-stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
		}
	}()
	start := time.Now()
	upload(t, b, "mem.tar.zst", 200<<20)
	elapsed := time.Since(start)
	close(stop)
	<-done
	t.Logf("200 MiB in %v (%.0f MiB/s), heap in use peaked at %.1f MiB", elapsed.Round(time.Millisecond), 200/elapsed.Seconds(), float64(peak.Load())/(1<<20))
	if peak.Load() > 64<<20 {
		t.Errorf("heap in use peaked at %.1f MiB, want under 64 MiB", float64(peak.Load())/(1<<20))
	}
}

// BenchmarkUpload uploads 128 MiB archives at the default part size and parallelism.
func BenchmarkUpload(b *testing.B) {
	srv := shared(b)
	be := newBackend(b, newBucket(b, srv, false))
	const size = 128 << 20
	b.SetBytes(size)
	for i := 0; b.Loop(); i++ {
		key := fmt.Sprintf("bench-%d.tar.zst", i)
		upload(b, be, key, size)
		if _, err := be.Delete(context.Background(), key, ""); err != nil {
			b.Fatal(err)
		}
	}
}
