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
	// zstdBlock is the encoder's block size, the unit its Huffman and FSE
	// tables are built for. It matters more than anything else for size.
	// Measured on the PostgreSQL data directory of docs/archive-format.md
	// with 8 MiB frames: 32 KiB blocks write archives 3.7% smaller than the
	// encoder's default of 128 KiB, 16 KiB 0.8% and 64 KiB 0.9% larger than
	// 32 KiB. Because the tables are built per block, compressing costs
	// about 20% more CPU than with 128 KiB blocks, and decompressing about
	// 25% more than with 64 KiB. The encoder has no option for it:
	// WithWindowSize lowers the block size to a window smaller than 128 KiB
	// and never raises it, so zstdEncoderOptions sets the window to
	// zstdBlock before setting it to zstdWindow (TestZstdBlockSize checks
	// the outcome).
	zstdBlock = 32 << 10
	// zstdWindow is how far back matches reach, and what a decoder must
	// keep. With 32 KiB blocks and 8 MiB frames, 256 KiB wrote 0.16% and
	// 1 MiB 0.21% larger archives than 512 KiB.
	zstdWindow = 512 << 10
	// zstdFrame is the input of one independent frame (see frameWriter).
	// Each frame starts with no history and no tables: against 8 MiB,
	// 1 MiB frames were 0.64% larger, 2 MiB 0.33%, 4 MiB 0.11%, and 16 MiB
	// 0.05% smaller, while the pool grows with the frame (zstdPool). Cutting
	// frames at tar entries instead, when one starts in the second half of
	// a frame, was 1.1% larger.
	zstdFrame = 8 << 20
	// zstdPiece is the unit of the frame writer's pool. It is large enough
	// for the writes to the archive to bypass the hashing writer's buffer
	// (see hashingWriter) and small enough to not matter for memory.
	zstdPiece = 256 << 10
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

// zstdPool is the size of the frame writer's pool for lanes lanes, most of
// the compressor's memory. A lane can only start its frame once the
// previous frame's input is all queued, so the lanes need about that much
// queued input between them to all stay busy: with half of it (4 MiB for
// two lanes), the lanes of a 2 s backup of the PostgreSQL data directory
// waited 0.9 s in total for input; with a whole frame, 35 ms. A single lane
// needs only a few pieces, to read the next while it compresses.
func zstdPool(lanes int) int {
	return max((lanes-1)*zstdFrame, 4*zstdPiece)
}

// zstdLevel is the encoder level used for backups. Measured on a PostgreSQL
// data directory (docs/archive-format.md) against `zstd -3`, with blocks
// larger than zstdBlock: SpeedFastest needs 17% less CPU than SpeedDefault
// but writes 8% larger archives than `zstd -3`, SpeedDefault 3% larger ones,
// SpeedBetterCompression still 1.5% larger ones for about 2.5 times the CPU,
// which would make backups far slower than `zstd -T0`. With zstdBlock,
// SpeedDefault is as small as `zstd -3`.
const zstdLevel = zstd.SpeedDefault

// zstdEncoderOptions configures each of the frame writer's encoders.
func zstdEncoderOptions() []zstd.EOption {
	return []zstd.EOption{
		zstd.WithEncoderLevel(zstdLevel),
		zstd.WithWindowSize(zstdBlock), // sets the block size, see zstdBlock
		zstd.WithWindowSize(zstdWindow),
		// Each frame keeps its content checksum (xxhash64, about 0.1 s of
		// CPU per GB, computed by the lanes). It is not redundant with
		// the archive's sha256, which proves the file is the one written:
		// it proves that decompressing gives back what was compressed, and
		// plain zstd and tar check it in an emergency restore.
		zstd.WithEncoderCRC(true),
		// WithLowerEncoderMem stays off: it would keep only 128 KiB of
		// history beyond the window, and the encoder would move the
		// window down every 128 KiB instead of every window, copying four
		// times the input for 384 KiB less per lane.
	}
}

// newCompressor wraps w in the chosen compressor; closing the result flushes
// the compressed stream but does not close w.
func newCompressor(c Compression, w io.Writer) (io.WriteCloser, error) {
	switch c {
	case Zstd:
		lanes := runtime.GOMAXPROCS(0)
		return newFrameWriter(w, lanes, zstdFrame, zstdPiece, zstdPool(lanes)/zstdPiece, zstdEncoderOptions()...)
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
