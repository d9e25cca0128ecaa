package archive

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"runtime"
	"testing"
	"testing/iotest"
	"time"
)

func TestReadAheadPassesTheStreamThrough(t *testing.T) {
	data := make([]byte, 1<<20+12345)
	r := rand.New(rand.NewPCG(1, 2))
	for i := range data {
		data[i] = byte(r.Uint32())
	}
	for _, tc := range []struct {
		name        string
		src         io.Reader
		depth, size int
	}{
		{"buffers smaller than the stream", bytes.NewReader(data), 3, 4096},
		{"one buffer", bytes.NewReader(data), 1, 1000},
		{"a buffer larger than the stream", bytes.NewReader(data), 2, 4 << 20},
		{"a source of one-byte reads", iotest.OneByteReader(bytes.NewReader(data[:50000])), 2, 777},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := newReadAhead(tc.src, tc.depth, tc.size)
			defer a.Close()
			got, err := io.ReadAll(iotest.HalfReader(a))
			if err != nil {
				t.Fatalf("ReadAll: %v", err)
			}
			want := data
			if tc.name == "a source of one-byte reads" {
				want = data[:50000]
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("read %d bytes that differ from the %d written", len(got), len(want))
			}
		})
	}
}

func TestReadAheadReturnsTheSourceErrorAfterItsData(t *testing.T) {
	boom := errors.New("boom")
	src := io.MultiReader(bytes.NewReader([]byte("0123456789")), iotest.ErrReader(boom))
	a := newReadAhead(src, 2, 4)
	defer a.Close()
	got, err := io.ReadAll(a)
	if !errors.Is(err, boom) {
		t.Fatalf("error = %v, want %v", err, boom)
	}
	if string(got) != "0123456789" {
		t.Fatalf("read %q before the error, want all ten bytes", got)
	}
	// The error stays.
	if n, err := a.Read(make([]byte, 8)); n != 0 || !errors.Is(err, boom) {
		t.Fatalf("Read after the error = %d, %v", n, err)
	}
}

// endless is a source that never ends, so only Close can stop the reading goroutine.
type endless struct{}

func (endless) Read(p []byte) (int, error) { return len(p), nil }

func TestReadAheadCloseStopsItsGoroutine(t *testing.T) {
	before := runtime.NumGoroutine()
	a := newReadAhead(endless{}, 2, 16)
	if _, err := io.ReadFull(a, make([]byte, 100)); err != nil {
		t.Fatalf("ReadFull: %v", err)
	}
	a.Close()
	a.Close() // twice is fine
	// What was buffered may still be served; reading on ends in the closed error.
	var err error
	for i := 0; err == nil; i++ {
		if i > 10 {
			t.Fatal("Read after Close still returns data after 10 reads")
		}
		_, err = a.Read(make([]byte, 1000))
	}
	if !errors.Is(err, errReadAheadClosed) {
		t.Fatalf("Read after Close = %v, want %v", err, errReadAheadClosed)
	}
	// Without Close, the goroutine would wait forever to hand over its next buffer.
	deadline := time.Now().Add(10 * time.Second)
	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines after Close, %d before the read-ahead started", runtime.NumGoroutine(), before)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestReadAheadKeepsTheSourcesUnexpectedEOF(t *testing.T) {
	// age reports a truncated archive as io.ErrUnexpectedEOF; it must not become a clean end.
	src := io.MultiReader(bytes.NewReader([]byte("abc")), iotest.ErrReader(io.ErrUnexpectedEOF))
	a := newReadAhead(src, 2, 16)
	defer a.Close()
	got, err := io.ReadAll(a)
	if !errors.Is(err, io.ErrUnexpectedEOF) || string(got) != "abc" {
		t.Fatalf("ReadAll = %q, %v; want the bytes and io.ErrUnexpectedEOF", got, err)
	}
}
