package archive

import (
	"runtime"
	"time"
)

// samplePeakHeap samples the live heap until done is closed.
func samplePeakHeap(done <-chan struct{}) uint64 {
	var peak uint64
	var ms runtime.MemStats
	for {
		runtime.ReadMemStats(&ms)
		peak = max(peak, ms.HeapInuse)
		select {
		case <-done:
			return peak
		case <-time.After(20 * time.Millisecond):
		}
	}
}
