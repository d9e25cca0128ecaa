package archive

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
)

// zstdFrameInfo is what parseZstdFrames learns about one frame.
type zstdFrameInfo struct {
	window   int   // from the window descriptor; 0 for single-segment frames
	blocks   []int // compressed size of each block
	raw      []int // for raw blocks, their size; -1 for the others
	checksum bool
}

// parseZstdFrames walks the frame and block headers of a zstd stream
// (RFC 8878, section 3.1.1), so tests can check what the encoder produced
// without trusting the decoder that reads it back.
func parseZstdFrames(t *testing.T, b []byte) []zstdFrameInfo {
	t.Helper()
	var frames []zstdFrameInfo
	for len(b) > 0 {
		if len(b) < 6 || !bytes.Equal(b[:4], zstdMagic) {
			t.Fatalf("frame %d: no zstd magic", len(frames))
		}
		fhd := b[4]
		b = b[5:]
		var f zstdFrameInfo
		single := fhd&0x20 != 0
		f.checksum = fhd&0x04 != 0
		if !single {
			exp := int(b[0] >> 3)
			f.window = 1 << (10 + exp)
			f.window += f.window / 8 * int(b[0]&7)
			b = b[1:]
		}
		b = b[[]int{0, 1, 2, 4}[fhd&3]:] // dictionary id
		fcs := []int{0, 2, 4, 8}[fhd>>6]
		if fcs == 0 && single {
			fcs = 1
		}
		b = b[fcs:]
		for {
			if len(b) < 3 {
				t.Fatalf("frame %d: truncated block header", len(frames))
			}
			h := int(b[0]) | int(b[1])<<8 | int(b[2])<<16
			b = b[3:]
			last, typ, size := h&1 != 0, (h>>1)&3, h>>3
			stored := size
			if typ == 1 { // RLE
				stored = 1
			}
			f.blocks = append(f.blocks, size)
			if typ == 0 {
				f.raw = append(f.raw, size)
			} else {
				f.raw = append(f.raw, -1)
			}
			b = b[stored:]
			if last {
				break
			}
		}
		if f.checksum {
			b = b[4:]
		}
		frames = append(frames, f)
	}
	return frames
}

// testFrameWriter writes data through a small frameWriter in writes of
// random sizes, some of them read into readBuffer, and returns the output.
func testFrameWriter(t *testing.T, data []byte, lanes, chunk, piece, pieces int) []byte {
	t.Helper()
	var out bytes.Buffer
	fw, err := newFrameWriter(&out, lanes, chunk, piece, pieces, newZstdEncoder)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(uint64(len(data)), 1))
	for p := data; len(p) > 0; {
		n := min(len(p), 1+rng.IntN(3*piece))
		if rng.IntN(2) == 0 {
			buf, err := fw.readBuffer()
			if err != nil {
				t.Fatal(err)
			}
			n = copy(buf, p[:n])
			if _, err := fw.Write(buf[:n]); err != nil {
				t.Fatal(err)
			}
		} else if _, err := fw.Write(p[:n]); err != nil {
			t.Fatal(err)
		}
		p = p[n:]
	}
	if err := fw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := fw.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := fw.Write([]byte("late")); !errors.Is(err, errFrameWriterClosed) {
		t.Errorf("Write after Close returned %v", err)
	}
	return out.Bytes()
}

// testData is compressible text with stretches of random bytes.
func testData(n int) []byte {
	rng := rand.New(rand.NewPCG(uint64(n), 2))
	b := make([]byte, 0, n)
	for len(b) < n {
		if rng.IntN(4) == 0 {
			r := make([]byte, 1+rng.IntN(40_000))
			for i := range r {
				r[i] = byte(rng.Uint32())
			}
			b = append(b, r...)
		} else {
			b = append(b, strings.Repeat("page "+string(rune('a'+rng.IntN(26)))+" of the volume; ", 1+rng.IntN(2000))...)
		}
	}
	return b[:n]
}

func TestFrameWriterRoundTrip(t *testing.T) {
	const chunk, piece = 64 << 10, 16 << 10
	_, zstdErr := exec.LookPath("zstd")
	for _, n := range []int{0, 1, chunk - 1, chunk, chunk + 1, 3*chunk + 17, 10 * chunk} {
		for _, lanes := range []int{1, 2, 3} {
			data := testData(n)
			out := testFrameWriter(t, data, lanes, chunk, piece, 4)

			frames := parseZstdFrames(t, out)
			if want := max(1, (n+chunk-1)/chunk); len(frames) != want {
				t.Errorf("%d bytes, %d lanes: %d frames, want %d", n, lanes, len(frames), want)
			}
			for i, f := range frames {
				if !f.checksum && n > 0 {
					t.Errorf("%d bytes, %d lanes: frame %d has no checksum", n, lanes, i)
				}
			}

			r, err := newDecompressor(Zstd, bytes.NewReader(out))
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(r)
			r.Close()
			if err != nil || !bytes.Equal(got, data) {
				t.Errorf("%d bytes, %d lanes: decoded %d bytes (%v), want the %d written", n, lanes, len(got), err, n)
			}

			if zstdErr == nil {
				cmd := exec.Command("zstd", "-dc")
				cmd.Stdin = bytes.NewReader(out)
				var stderr bytes.Buffer
				cmd.Stderr = &stderr
				got, err := cmd.Output()
				if err != nil || !bytes.Equal(got, data) {
					t.Errorf("%d bytes, %d lanes: zstd -dc gave %d bytes (%v %s), want the %d written", n, lanes, len(got), err, stderr.Bytes(), n)
				}
			}
		}
	}
	if zstdErr != nil {
		t.Log("zstd is not installed: only the klauspost decoder was checked")
	}
}

// TestFrameWriterTinyPool runs many lanes on the smallest pool, one piece
// per frame, where any wait for the pool in the wrong place deadlocks.
func TestFrameWriterTinyPool(t *testing.T) {
	data := testData(2 << 20)
	for _, lanes := range []int{2, 5} {
		out := testFrameWriter(t, data, lanes, 4<<10, 4<<10, 2)
		got, err := zstd.NewReader(bytes.NewReader(out))
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(got)
		got.Close()
		if err != nil || !bytes.Equal(b, data) {
			t.Errorf("%d lanes: round trip failed: %v", lanes, err)
		}
	}
}

// TestZstdEncoderFrames checks what the libzstd parameters produce: every
// frame announces zstdWindow and carries a checksum, incompressible data is
// stored in raw blocks of at most 128 KiB with little overhead, and the C
// memory an encoder holds stays small.
func TestZstdEncoderFrames(t *testing.T) {
	data := make([]byte, zstdFrame+3*zstdPiece+8)
	rng := rand.New(rand.NewPCG(3, 4))
	for i := 0; i < len(data); i += 8 {
		binary.LittleEndian.PutUint64(data[i:], rng.Uint64())
	}
	out := testFrameWriter(t, data, 2, zstdFrame, zstdPiece, 4)
	frames := parseZstdFrames(t, out)
	if len(frames) != 2 {
		t.Fatalf("%d frames, want 2", len(frames))
	}
	stored := 0
	for i, f := range frames {
		if f.window != zstdWindow {
			t.Errorf("frame %d announces a window of %d bytes, want %d", i, f.window, zstdWindow)
		}
		if !f.checksum {
			t.Errorf("frame %d has no checksum", i)
		}
		for j, raw := range f.raw {
			if raw < 0 || raw > 128<<10 {
				t.Fatalf("frame %d block %d: %d bytes (stored %d), want a raw block of at most 128 KiB", i, j, raw, f.blocks[j])
			}
			stored += raw
		}
	}
	if stored != len(data) {
		t.Errorf("raw blocks hold %d bytes, want %d", stored, len(data))
	}
	if n := len(out) - len(data); n > 100+len(data)/(128<<10)*3 {
		t.Errorf("incompressible data grew by %d bytes", n)
	}

	enc, err := newZstdEncoder()
	if err != nil {
		t.Fatal(err)
	}
	defer enc.Release()
	var sink bytes.Buffer
	if err := enc.Reset(&sink); err != nil {
		t.Fatal(err)
	}
	if _, err := enc.Write(testData(zstdFrame)); err != nil {
		t.Fatal(err)
	}
	if err := enc.Close(); err != nil {
		t.Fatal(err)
	}
	m := enc.(*zstdEncoder).memory()
	t.Logf("encoder C memory after a frame: %d KiB", m>>10)
	if m > 4<<20 {
		t.Errorf("an encoder holds %d KiB of C memory after a frame, want at most 4 MiB", m>>10)
	}
}

// failAfter fails every write once limit bytes were written.
type failAfter struct {
	limit, n int
}

func (f *failAfter) Write(p []byte) (int, error) {
	if f.n+len(p) > f.limit {
		return 0, errDiskFull
	}
	f.n += len(p)
	return len(p), nil
}

func TestFrameWriterSinkErrors(t *testing.T) {
	data := testData(1 << 20)
	for _, limit := range []int{0, 1000, 50 << 10} {
		fw, err := newFrameWriter(&failAfter{limit: limit}, 2, 16<<10, 4<<10, 4, newZstdEncoder)
		if err != nil {
			t.Fatal(err)
		}
		var werr error
		for p := data; len(p) > 0 && werr == nil; p = p[min(len(p), 10_000):] {
			_, werr = fw.Write(p[:min(len(p), 10_000)])
		}
		cerr := fw.Close()
		if !errors.Is(cerr, errDiskFull) || (werr != nil && !errors.Is(werr, errDiskFull)) {
			t.Errorf("limit %d: Write returned %v, Close %v; want the sink's error", limit, werr, cerr)
		}
		if again := fw.Close(); again != cerr {
			t.Errorf("limit %d: second Close returned %v, first %v", limit, again, cerr)
		}
	}
}

// TestBackupFailsBetweenFrames fails the storage after the first frames of a
// backup that spans several, while the lanes are busy with the next.
func TestBackupFailsBetweenFrames(t *testing.T) {
	if testing.Short() {
		t.Skip("writes 40 MiB")
	}
	src, out := t.TempDir(), t.TempDir()
	data := testData(5 * zstdFrame)
	if err := os.WriteFile(filepath.Join(src, "data"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	stats := backupTree(t, src, t.TempDir(), Zstd)
	for _, limit := range []int64{stats.Size / 5, stats.Size * 4 / 5} {
		_, err := Backup(context.Background(), BackupOptions{
			Source: src, Output: filepath.Join(out, "b.tar.zst"),
			wrapOutput: func(w io.Writer) io.Writer { return &failingWriter{w: w, limit: int(limit)} },
		})
		wantReason(t, err, WriteFailed)
		if !errors.Is(err, errDiskFull) {
			t.Errorf("error does not carry the cause: %v", err)
		}
		if names := listDir(t, out); len(names) != 0 {
			t.Errorf("a failed backup left %v", names)
		}
	}
}
