package archive

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"math/rand/v2"
	"testing"
)

// TestHashingWriter mixes the small writes it gathers with the large ones
// it hashes on its own goroutine while passing them through: the output,
// the count and the hash must be those of the input, in order.
func TestHashingWriter(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var in, out bytes.Buffer
	hw := newHashingWriter(&out)
	defer hw.close()
	for _, size := range []int{1, 512, 10, hashingWriterBuffer - 3, 7, hashingWriterBuffer, 1 << 20, 100, hashingWriterBuffer / 2, 3 << 20, 0, 5} {
		p := make([]byte, size)
		for i := range p {
			p[i] = byte(rng.IntN(256))
		}
		in.Write(p)
		if n, err := hw.Write(p); n != size || err != nil {
			t.Fatalf("Write(%d bytes) = %d, %v", size, n, err)
		}
	}
	if err := hw.flush(); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(in.Bytes())
	if !bytes.Equal(out.Bytes(), in.Bytes()) || hw.n != int64(in.Len()) || hw.sum() != hex.EncodeToString(sum[:]) {
		t.Errorf("wrote %d bytes (counted %d, sum %s), want %d (sum %x)", out.Len(), hw.n, hw.sum(), in.Len(), sum)
	}
}

// TestHashFile checks the double-buffered hash on sizes around its buffer.
func TestHashFile(t *testing.T) {
	const bufSize = 4096
	for _, size := range []int{0, 1, bufSize - 1, bufSize, bufSize + 1, 3 * bufSize, 5*bufSize + 17} {
		data := bytes.Repeat([]byte("0123456789abcdef"), size/16+1)[:size]
		got, n, err := hashFile(bytes.NewReader(data), make([]byte, bufSize))
		want := sha256.Sum256(data)
		if err != nil || n != int64(size) || got != hex.EncodeToString(want[:]) {
			t.Errorf("size %d: hashFile = %s, %d, %v; want %x", size, got, n, err, want)
		}
	}
}

type failingReader struct{ left int }

func (r *failingReader) Read(p []byte) (int, error) {
	if r.left == 0 {
		return 0, errBroken
	}
	n := min(len(p), r.left)
	r.left -= n
	return n, nil
}

var errBroken = errors.New("broken")

func TestHashFileReadError(t *testing.T) {
	if _, _, err := hashFile(&failingReader{left: 10000}, make([]byte, 4096)); !errors.Is(err, errBroken) {
		t.Errorf("hashFile of a failing reader: %v, want %v", err, errBroken)
	}
}
