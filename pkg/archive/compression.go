package archive

import (
	"bytes"
	"fmt"
	"io"
	"runtime"
	"strings"

	"github.com/klauspost/compress/zstd"
	"github.com/klauspost/pgzip"
)

// Compression names the compressor wrapped around the tar stream.
type Compression string

// Supported compressions. Zstd is the default: on the reference data it is
// both faster and smaller than gzip.
const (
	Zstd Compression = "zstd"
	Gzip Compression = "gzip"
	None Compression = "none"
)

// Compressions lists the supported values in the order they are documented.
var Compressions = []Compression{Zstd, Gzip, None}

// Extension returns the file name suffix an archive with this compression must
// carry, so that plain tar recognises it in an emergency.
func (c Compression) Extension() string {
	switch c {
	case Zstd:
		return ".tar.zst"
	case Gzip:
		return ".tar.gz"
	case None:
		return ".tar"
	}
	return ""
}

// ParseCompression validates a --compression value.
func ParseCompression(s string) (Compression, error) {
	switch c := Compression(strings.ToLower(s)); c {
	case Zstd, Gzip, None:
		return c, nil
	}
	return "", newError(InvalidArgument, nil, "unknown compression %q: use zstd (default), gzip or none", s)
}

// CompressionForName returns the compression implied by an archive file name's
// extension, and false when the name has none of the supported extensions.
func CompressionForName(name string) (Compression, bool) {
	for _, c := range Compressions {
		if strings.HasSuffix(name, c.Extension()) && len(name) > len(c.Extension()) {
			return c, true
		}
	}
	return "", false
}

const (
	// zstdWindow is the encoder's window, which also sets its block size
	// (the window when smaller than 128 KiB) and, with concurrent blocks,
	// its job size (max(4 windows, 512 KiB)) and the overlap each job is
	// primed with (window/8). Measured on the PostgreSQL data directory of
	// docs/archive-format.md, in the agent: 64 KiB writes 0.7% smaller
	// archives than 128 KiB at the same speed (the smaller blocks let the
	// entropy tables follow the data), 32 KiB 3% larger ones; 512 KiB,
	// 1 MiB and 2 MiB windows are within 0.3% of 128 KiB because every job
	// starts nearly fresh, while they raise the peak heap from 15 MiB to
	// 27, 46 and 85 MiB. Only a large window without concurrent blocks helps
	// (8 MiB: 2.2% smaller), but that compresses on one core, at half the
	// speed. On incompressible data 64 KiB blocks add 3 bytes of block header
	// per 64 KiB (0.002%).
	zstdWindow = 64 << 10
	// maxDecoderWindow bounds what a hostile archive can make the decoder
	// allocate; it is the zstd tool's own default limit.
	maxDecoderWindow = 128 << 20
	// zstdDecoderBlocks is how many blocks (at most 128 KiB each) the zstd
	// decoder keeps in flight on its goroutines ahead of the extraction.
	// GOMAXPROCS (2) was too few to ride out the moments a write into the
	// target stalls: 8 made the in-process restore benchmark 15% faster on
	// incompressible data (1.44-1.54 s instead of 1.76-1.87 s) and on the
	// PostgreSQL data directory (2.29-2.33 s instead of 2.72-2.95 s), for
	// at most 3 MiB more peak RSS.
	zstdDecoderBlocks = 8
	// gzipBlock is the unit pgzip compresses in parallel.
	gzipBlock = 1 << 20
)

// zstdLevel is the encoder level used for backups. Measured on a PostgreSQL
// data directory (docs/archive-format.md), against `zstd -3`: SpeedFastest
// needs 17% less CPU but writes 8% larger archives; SpeedDefault writes 3%
// larger ones; SpeedBetterCompression is still 1.5% larger and needs about
// 2.5 times the CPU, which would make backups far slower than `zstd -T0`.
// SpeedDefault is the best trade.
const zstdLevel = zstd.SpeedDefault

// newCompressor wraps w in the chosen compressor; closing the result flushes
// the compressed stream but does not close w.
func newCompressor(c Compression, w io.Writer) (io.WriteCloser, error) {
	switch c {
	case Zstd:
		return zstd.NewWriter(w,
			zstd.WithEncoderLevel(zstdLevel),
			zstd.WithEncoderConcurrency(runtime.GOMAXPROCS(0)),
			zstd.WithConcurrentBlocks(true),
			zstd.WithWindowSize(zstdWindow),
			// The frame keeps its content checksum (xxhash64, about 0.1 s
			// of CPU per GB). It is not redundant with the archive's
			// sha256, which proves the file is the one written: it proves
			// that decompressing gives back what was compressed, and plain
			// zstd and tar check it in an emergency restore.
			zstd.WithEncoderCRC(true),
			// Smaller encoder tables: 1.3 MiB less heap, no measurable
			// cost in speed or size on either benchmark data set.
			zstd.WithLowerEncoderMem(true),
		)
	case Gzip:
		zw, err := pgzip.NewWriterLevel(w, pgzip.DefaultCompression)
		if err != nil {
			return nil, err
		}
		if err := zw.SetConcurrency(gzipBlock, runtime.GOMAXPROCS(0)); err != nil {
			return nil, err
		}
		return zw, nil
	case None:
		return nopWriteCloser{w}, nil
	}
	return nil, newError(InvalidArgument, nil, "unknown compression %q", c)
}

type nopWriteCloser struct{ io.Writer }

func (nopWriteCloser) Close() error { return nil }

var (
	zstdMagic = []byte{0x28, 0xb5, 0x2f, 0xfd}
	gzipMagic = []byte{0x1f, 0x8b}
)

// sniff identifies the compression of an archive from its first bytes, so a
// renamed archive still restores. Anything that is not zstd or gzip is read
// as plain tar, which fails cleanly on the first header if it is not.
func sniff(head []byte) Compression {
	switch {
	case bytes.HasPrefix(head, zstdMagic):
		return Zstd
	case bytes.HasPrefix(head, gzipMagic):
		return Gzip
	}
	return None
}

// newDecompressor returns a reader of the tar stream inside r. Both
// decompressors read ahead in a separate goroutine, so decompression overlaps
// with writing the restored files.
func newDecompressor(c Compression, r io.Reader) (io.ReadCloser, error) {
	switch c {
	case Zstd:
		d, err := zstd.NewReader(r,
			zstd.WithDecoderConcurrency(zstdDecoderBlocks),
			zstd.WithDecoderMaxWindow(maxDecoderWindow),
		)
		if err != nil {
			return nil, err
		}
		return d.IOReadCloser(), nil
	case Gzip:
		zr, err := pgzip.NewReaderN(r, gzipBlock, 4)
		if err != nil {
			return nil, fmt.Errorf("reading gzip header: %w", err)
		}
		return zr, nil
	case None:
		return io.NopCloser(r), nil
	}
	return nil, newError(InvalidArgument, nil, "unknown compression %q", c)
}
