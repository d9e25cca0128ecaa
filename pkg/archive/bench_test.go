package archive

import (
	"context"
	"os"
	"path/filepath"
	"testing"
)

// BenchmarkBackup and BenchmarkRestore measure the data path on a real tree:
// set ARCHIVE_BENCH_SOURCE to a directory (bench/archive.sh builds a
// PostgreSQL data directory and an incompressible one) and optionally
// ARCHIVE_BENCH_COMPRESSION (zstd, gzip or none; default zstd), and
// ARCHIVE_BENCH_ENCRYPT=1 to encrypt with age. Without the source they are
// skipped. For example:
//
//	ARCHIVE_BENCH_SOURCE=_output/bench/pgdata-40 go test ./pkg/archive \
//	    -run '^$' -bench . -benchtime 3x -cpuprofile cpu.out
func benchSource(b *testing.B) (string, Compression) {
	src := os.Getenv("ARCHIVE_BENCH_SOURCE")
	if src == "" {
		b.Skip("ARCHIVE_BENCH_SOURCE is not set")
	}
	c := Zstd
	if s := os.Getenv("ARCHIVE_BENCH_COMPRESSION"); s != "" {
		var err error
		if c, err = ParseCompression(s); err != nil {
			b.Fatal(err)
		}
	}
	return src, c
}

// benchKeys are the keys of an encrypted benchmark: nil unless ARCHIVE_BENCH_ENCRYPT is set.
func benchKeys(b *testing.B) (*Recipients, *Identities) {
	if os.Getenv("ARCHIVE_BENCH_ENCRYPT") == "" {
		return nil, nil
	}
	id, pub := keyPair(b)
	return recipientsOf(b, pub), identitiesOf(b, id)
}

func benchBackup(b *testing.B, src, dir string, c Compression, r *Recipients) *BackupStats {
	f := Format{Compression: c, Encrypted: r != nil}
	out := filepath.Join(dir, "bench"+f.Extension())
	stats, err := Backup(context.Background(), BackupOptions{Source: src, Output: out, Compression: c, Recipients: r})
	if err != nil {
		b.Fatal(err)
	}
	return stats
}

func removeArchive(out string) {
	os.Remove(out)
	os.Remove(checksumName(out))
	os.Remove(manifestName(out))
}

func BenchmarkBackup(b *testing.B) {
	src, c := benchSource(b)
	r, _ := benchKeys(b)
	dir := b.TempDir()
	var size int64
	for b.Loop() {
		stats := benchBackup(b, src, dir, c, r)
		b.SetBytes(stats.SourceBytes)
		size = stats.Size
		b.StopTimer()
		removeArchive(stats.Archive)
		b.StartTimer()
	}
	b.ReportMetric(float64(size), "archive-bytes")
}

func BenchmarkRestore(b *testing.B) {
	src, c := benchSource(b)
	r, ids := benchKeys(b)
	dir := b.TempDir()
	stats := benchBackup(b, src, dir, c, r)
	target := filepath.Join(dir, "target")
	b.SetBytes(stats.SourceBytes)
	for b.Loop() {
		b.StopTimer()
		os.RemoveAll(target)
		if err := os.Mkdir(target, 0o755); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		if _, err := Restore(context.Background(), RestoreOptions{Archive: stats.Archive, Target: target, SHA256: stats.SHA256, Identities: ids}); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	os.RemoveAll(target)
}
