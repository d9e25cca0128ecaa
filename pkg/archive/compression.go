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
	// zstdWindow bounds the encoder's memory: with concurrent blocks every
	// job in flight holds max(4 windows, 512 KiB) of input and its output,
	// and about eight jobs are in flight. Measured on a PostgreSQL data
	// directory, 128 KiB compresses within 0.2% of 512 KiB and 2 MiB windows
	// (2% of 8 MiB) at the same speed, and keeps the agent under 64 MiB RSS
	// even inside the controller binary and on incompressible data, where
	// 512 KiB reaches 80 MiB and 8 MiB 250 MiB.
	zstdWindow = 128 << 10
	// maxDecoderWindow bounds what a hostile archive can make the decoder
	// allocate; it is the zstd tool's own default limit.
	maxDecoderWindow = 128 << 20
	// gzipBlock is the unit pgzip compresses in parallel.
	gzipBlock = 1 << 20
)

// zstdLevel is the encoder level used for backups. Measured on a PostgreSQL
// data directory (docs/archive-format.md), against `zstd -3`: SpeedFastest
// needs 17% less CPU but writes 8% larger archives; SpeedDefault writes 4%
// larger ones; SpeedBetterCompression is still 1.6% larger and needs nearly
// three times the CPU, which would make backups far slower than `zstd -T0`.
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
			zstd.WithDecoderConcurrency(runtime.GOMAXPROCS(0)),
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
