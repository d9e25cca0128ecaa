package archive

import (
	"errors"
	"io"
	"sync"
)

// readAhead reads r on a goroutine of its own, up to depth buffers of size bytes ahead of its
// caller. It sits behind the decryption of an encrypted archive: without it, age decrypts each
// chunk only when the decompressor asks for it, so the two take turns on one goroutine instead
// of running side by side. Close stops the goroutine; a Read after Close is an error.
type readAhead struct {
	full chan aheadChunk
	free chan []byte
	done chan struct{}
	stop sync.Once

	cur []byte // what the caller has not read yet of the current buffer
	buf []byte // the current buffer, to give back when cur is used up
	err error  // the error after cur, once cur is used up
}

type aheadChunk struct {
	b   []byte
	err error
}

var errReadAheadClosed = errors.New("read from a closed read-ahead")

func newReadAhead(r io.Reader, depth, size int) *readAhead {
	a := &readAhead{
		full: make(chan aheadChunk, depth),
		free: make(chan []byte, depth),
		done: make(chan struct{}),
	}
	for range depth {
		a.free <- make([]byte, size)
	}
	go a.fill(r)
	return a
}

// fill reads whole buffers from r until an error, which ends the stream after the bytes read
// with it (io.EOF at the end).
func (a *readAhead) fill(r io.Reader) {
	for {
		var b []byte
		select {
		case b = <-a.free:
		case <-a.done:
			return
		}
		// Not io.ReadFull: it turns an early io.EOF into io.ErrUnexpectedEOF, and a reader's own
		// io.ErrUnexpectedEOF (age's, for a truncated archive) must reach the caller as it is.
		n, err := 0, error(nil)
		for n < len(b) && err == nil {
			var m int
			m, err = r.Read(b[n:])
			n += m
		}
		select {
		case a.full <- aheadChunk{b[:n], err}:
		case <-a.done:
			return
		}
		if err != nil {
			return
		}
	}
}

func (a *readAhead) Read(p []byte) (int, error) {
	for len(a.cur) == 0 {
		if a.err != nil {
			return 0, a.err
		}
		if a.buf != nil {
			a.free <- a.buf[:cap(a.buf)] // never blocks: free holds every buffer
			a.buf = nil
		}
		select {
		case c := <-a.full:
			a.cur, a.buf, a.err = c.b, c.b, c.err
		case <-a.done:
			a.err = errReadAheadClosed
		}
	}
	n := copy(p, a.cur)
	a.cur = a.cur[n:]
	return n, nil
}

// Close stops the reading goroutine once its current read of r returns; closing r makes that
// happen at once.
func (a *readAhead) Close() error {
	a.stop.Do(func() { close(a.done) })
	return nil
}
