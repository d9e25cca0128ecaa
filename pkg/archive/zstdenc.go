//go:build cgo

package archive

/*
// Static, so that the binary runs in an image with no C library of its own
// and the tests need no libzstd.so at run time.
#cgo LDFLAGS: -l:libzstd.a
#include <zstd.h>

#if ZSTD_VERSION_NUMBER < 10400
#error "libzstd 1.4.0 or newer is required (ZSTD_compressStream2)"
#endif

// zstdenc_setup sets the parameters every frame of the context uses; it
// returns 0 or the failing call's error code.
static size_t zstdenc_setup(ZSTD_CCtx* c, int level, int windowLog) {
	size_t r = ZSTD_CCtx_setParameter(c, ZSTD_c_compressionLevel, level);
	if (ZSTD_isError(r)) return r;
	r = ZSTD_CCtx_setParameter(c, ZSTD_c_windowLog, windowLog);
	if (ZSTD_isError(r)) return r;
	return ZSTD_CCtx_setParameter(c, ZSTD_c_checksumFlag, 1);
}

// zstdenc_step is one ZSTD_compressStream2 call: it consumes input from
// in+*inPos and writes output to out from its start, and returns what the
// library returns (an error code, or with end how much is left to flush).
// One crossing into C per call, and no Go pointer kept after it returns:
// the library copies the input into a buffer of its own.
static size_t zstdenc_step(ZSTD_CCtx* c, const void* in, size_t inSize, size_t* inPos,
		void* out, size_t outCap, size_t* outPos, int end) {
	ZSTD_inBuffer ib = { in, inSize, *inPos };
	ZSTD_outBuffer ob = { out, outCap, 0 };
	size_t r = ZSTD_compressStream2(c, &ob, &ib, end ? ZSTD_e_end : ZSTD_e_continue);
	*inPos = ib.pos;
	*outPos = ob.pos;
	return r;
}
*/
import "C"

import (
	"errors"
	"io"
	"unsafe"
)

// zstdEncoder compresses one frame at a time with the reference zstd
// library, libzstd. It is not safe for concurrent use: each frame lane owns
// one. Its memory is C memory, outside Go's heap and garbage collector, so
// it must be released.
type zstdEncoder struct {
	cctx *C.ZSTD_CCtx
	out  []byte    // the library's output of one call, handed to w at once
	w    io.Writer // where the current frame goes
}

// newZstdEncoder returns an encoder with zstdLevel, zstdWindowLog and a
// content checksum in every frame.
func newZstdEncoder() (frameEncoder, error) {
	c := C.ZSTD_createCCtx()
	if c == nil {
		return nil, errors.New("zstd: cannot allocate a compression context")
	}
	if r := C.zstdenc_setup(c, C.int(zstdLevel), C.int(zstdWindowLog)); C.ZSTD_isError(r) != 0 {
		C.ZSTD_freeCCtx(c)
		return nil, zstdError("cannot set the compression parameters", r)
	}
	return &zstdEncoder{cctx: c, out: make([]byte, int(C.ZSTD_CStreamOutSize()))}, nil
}

func zstdError(what string, code C.size_t) error {
	return errors.New("zstd: " + what + ": " + C.GoString(C.ZSTD_getErrorName(code)))
}

// Reset starts a new frame written to w, dropping whatever the previous one
// left unfinished; the parameters stay.
func (e *zstdEncoder) Reset(w io.Writer) error {
	if r := C.ZSTD_CCtx_reset(e.cctx, C.ZSTD_reset_session_only); C.ZSTD_isError(r) != 0 {
		return zstdError("cannot start a frame", r)
	}
	e.w = w
	return nil
}

// Write compresses p into the current frame.
func (e *zstdEncoder) Write(p []byte) (int, error) {
	if err := e.compress(p, false); err != nil {
		return 0, err
	}
	return len(p), nil
}

// Close ends the current frame: it flushes the last block and writes the
// checksum.
func (e *zstdEncoder) Close() error { return e.compress(nil, true) }

func (e *zstdEncoder) compress(p []byte, end bool) error {
	var in unsafe.Pointer
	if len(p) > 0 {
		in = unsafe.Pointer(&p[0])
	}
	mode := C.int(0)
	if end {
		mode = 1
	}
	var inPos C.size_t
	for {
		var outPos C.size_t
		r := C.zstdenc_step(e.cctx, in, C.size_t(len(p)), &inPos, unsafe.Pointer(&e.out[0]), C.size_t(len(e.out)), &outPos, mode)
		if C.ZSTD_isError(r) != 0 {
			return zstdError("cannot compress", r)
		}
		if outPos > 0 {
			if _, err := e.w.Write(e.out[:outPos]); err != nil {
				return err
			}
		}
		// Without end the library returns once it took all the input or
		// filled the output; with end, once nothing is left to flush.
		if (end && r == 0) || (!end && int(inPos) == len(p)) {
			return nil
		}
	}
}

// memory is the C memory the encoder holds.
func (e *zstdEncoder) memory() int { return int(C.ZSTD_sizeof_CCtx(e.cctx)) }

// Release frees the C memory; the encoder must not be used afterwards.
func (e *zstdEncoder) Release() {
	if e.cctx != nil {
		C.ZSTD_freeCCtx(e.cctx)
		e.cctx = nil
	}
}
