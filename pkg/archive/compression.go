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

// StreamExtension is the suffix the zstd and gzip tools give a compressed file, and what follows
// the file name in the name of a file archive (FormatFile): ".zst", ".gz", or nothing.
func (c Compression) StreamExtension() string {
	switch c {
	case Zstd:
		return ".zst"
	case Gzip:
		return ".gz"
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
	f, ok := FormatForName(name)
	return f.Compression, ok
}

// StreamFormat is what an archive holds once decrypted and decompressed, as the manifest records
// it in "format": a tar stream of a directory (the default, and every volume's archive), or the
// bytes of one file, such as a database dump, which only a tool told so reads as one.
type StreamFormat string

// Stream formats.
const (
	// FormatTar: the archive is a tar stream. Manifests omit it, so one that names no format is
	// a tar, as every manifest written before file archives existed.
	FormatTar StreamFormat = "tar"
	// FormatFile: the archive is one file's content, compressed and maybe encrypted with no tar
	// around it, so that plain zstd, gzip or age give the file back.
	FormatFile StreamFormat = "file"
)

// ParseStreamFormat validates a --format value; empty means tar.
func ParseStreamFormat(s string) (StreamFormat, error) {
	switch f := StreamFormat(strings.ToLower(s)); f {
	case "", FormatTar:
		return FormatTar, nil
	case FormatFile:
		return f, nil
	}
	return "", newError(InvalidArgument, nil, "unknown --format %q: use tar (default) or file, as the backup was made", s)
}

// CheckFileName refuses a file archive's file name that is not a plain name in one directory:
// a restore writes it into the root of its target.
func CheckFileName(name string) error {
	if name == "" || name == "." || name == ".." || strings.ContainsAny(name, "/\x00") || len(name) > 255 {
		return newError(InvalidArgument, nil, "file name %q is not a plain file name: pass the fileName of the backup's source.command (default %q)", name, DefaultFileName)
	}
	return nil
}

// DefaultFileName is the name a file archive's content is restored as when no name is given,
// as the API's default of source.command.fileName.
const DefaultFileName = "dump"

// Format is how an archive is encoded, as its name says: compressed, then maybe encrypted; a
// tar unless FileName is set.
type Format struct {
	Compression Compression
	Encrypted   bool
	// FileName, when set, makes this a file archive (FormatFile) whose content is restored as
	// FileName. Its extension is then "." + FileName and the compression's StreamExtension
	// instead of .tar..., so that a name reads as what plain tools give back.
	FileName string
}

// Extension is the file name suffix of an archive in format f, such as ".tar.zst.age" or, for
// a file archive of "dump", ".dump.zst.age".
func (f Format) Extension() string {
	ext := f.Compression.Extension()
	if f.FileName != "" {
		ext = "." + f.FileName + f.Compression.StreamExtension()
	}
	if f.Encrypted {
		ext += EncryptedExtension
	}
	return ext
}

// Trim is name without the extension of format f: what is left names the Backup.
func (f Format) Trim(name string) string {
	return strings.TrimSuffix(name, f.Extension())
}

// FormatForName returns the format a tar archive's file name implies, and false when the name
// has none of the tar extensions. A file archive's name is read with FileFormatForName.
func FormatForName(name string) (Format, bool) {
	return formatForName(name, "")
}

// FileFormatForName returns the format of a file archive (FormatFile) called name whose content
// is restored as fileName, and false when the name does not end in "." + fileName and a stream
// extension. Without the file name, which only the command line or the manifest knows, nothing
// tells such a name from any other file's: it is never guessed.
func FileFormatForName(name, fileName string) (Format, bool) {
	if fileName == "" {
		return Format{}, false
	}
	return formatForName(name, fileName)
}

// formatForName is FormatForName, or FileFormatForName when fileName is set.
func formatForName(name, fileName string) (Format, bool) {
	plain, encrypted := strings.CutSuffix(name, EncryptedExtension)
	for _, c := range Compressions {
		ext := Format{Compression: c, FileName: fileName}.Extension()
		if strings.HasSuffix(plain, ext) && len(plain) > len(ext) {
			return Format{Compression: c, Encrypted: encrypted, FileName: fileName}, true
		}
	}
	return Format{}, false
}

// TrimExtension is a tar archive's name without its extension: what is left names the Backup.
func TrimExtension(name string) string {
	if f, ok := FormatForName(name); ok {
		return f.Trim(name)
	}
	return name
}

const (
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

// Backups compress with libzstd, the reference implementation, at the zstd
// tool's default level; restores decompress with the klauspost decoder, in
// Go, so that the code that parses untrusted archives is memory-safe.
//
// Measured on the tar of the PostgreSQL data directory of
// docs/archive-format.md in 8 MiB frames on two lanes, the klauspost
// encoder at its default level needed 2.6-3.0 s of CPU and wrote 57.4 MB
// (and only that small with 32 KiB blocks, which cost it 20% more CPU);
// libzstd at level 3 needed 1.55-1.84 s and wrote 57.05 MB, smaller than
// `zstd -T0` (57.25 MB). libzstd at level 2 was 19-35% faster but 6.5%
// larger.
const (
	// zstdLevel is libzstd's compression level, the zstd tool's default.
	zstdLevel = 3
	// zstdWindowLog sets how far back matches reach, and what a decoder
	// must keep: 512 KiB instead of level 3's 2 MiB. It wrote 1.0% smaller
	// archives of the PostgreSQL data directory (56.50 MB) for the same
	// CPU; 256 KiB and 1 MiB windows were larger (57.20 and 56.83 MB), as
	// 128 KiB was (59.32 MB).
	zstdWindowLog = 19
	zstdWindow    = 1 << zstdWindowLog
)

// newCompressor wraps w in the chosen compressor; closing the result flushes
// the compressed stream but does not close w.
func newCompressor(c Compression, w io.Writer) (io.WriteCloser, error) {
	switch c {
	case Zstd:
		lanes := runtime.GOMAXPROCS(0)
		return newFrameWriter(w, lanes, zstdFrame, zstdPiece, zstdPool(lanes)/zstdPiece, newZstdEncoder)
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
