package agent

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"platform.example.com/backup-operator/pkg/archive"
)

// run invokes the agent like the Job does and decodes its JSON result into
// out; it also checks the termination message matches stdout.
func run(t *testing.T, out any, args ...string) (code int, stderr string) {
	t.Helper()
	termLog := filepath.Join(t.TempDir(), "termination-log")
	if len(args) > 0 {
		args = append(args, "--termination-log", termLog)
	}
	var so, se bytes.Buffer
	code = Run(context.Background(), args, &so, &se)
	lines := strings.Split(strings.TrimSpace(so.String()), "\n")
	if len(lines) != 1 {
		t.Fatalf("stdout has %d lines, want exactly one JSON result:\n%s", len(lines), so.String())
	}
	if err := json.Unmarshal([]byte(lines[0]), out); err != nil {
		t.Fatalf("stdout is not a JSON result: %v\n%s", err, so.String())
	}
	if msg, err := os.ReadFile(termLog); err != nil {
		t.Errorf("termination log not written: %v", err)
	} else if string(msg) != lines[0] {
		t.Errorf("termination log differs from stdout:\n%s\n%s", msg, lines[0])
	}
	return code, se.String()
}

func writeFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, data := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func TestBackupVerifyRestoreDelete(t *testing.T) {
	src, store, dst := t.TempDir(), t.TempDir(), t.TempDir()
	writeFiles(t, src, map[string]string{"PG_VERSION": "15\n", "base/1/1259": strings.Repeat("page", 4096)})
	archivePath := filepath.Join(store, "pvc-data.tar.zst")
	Version = "v9.9.9-test"

	var b BackupResult
	code, stderr := run(t, &b, "backup", "--source", src, "--output", archivePath)
	if code != ExitOK || !b.Succeeded() {
		t.Fatalf("backup exit %d: %s", code, stderr)
	}
	if b.Operation != OpBackup || b.Archive != archivePath || b.Files != 2 || b.Directories != 3 || b.Compression != archive.Zstd ||
		!archive.ValidSHA256(b.SHA256) || b.Size == 0 || b.SourceBytes != 3+16384 || b.ToolVersion != "v9.9.9-test" ||
		b.StartTime.IsZero() || b.CompletionTime.Before(b.StartTime) || b.DurationSeconds < 0 {
		t.Errorf("unexpected backup result: %+v", b)
	}

	var v VerifyResult
	if code, stderr := run(t, &v, "verify", "--archive", archivePath, "--sha256", b.SHA256); code != ExitOK {
		t.Fatalf("verify exit %d: %s", code, stderr)
	}
	if v.Files != 2 || v.Bytes != b.SourceBytes || v.SHA256 != b.SHA256 {
		t.Errorf("unexpected verify result: %+v", v)
	}

	var r RestoreResult
	if code, stderr := run(t, &r, "restore", "--archive", archivePath, "--target", dst, "--sha256", strings.ToUpper(b.SHA256)); code != ExitOK {
		t.Fatalf("restore exit %d: %s", code, stderr)
	}
	if r.Files != 2 || r.Bytes != b.SourceBytes || r.Overwrite != archive.OverwriteRefuse {
		t.Errorf("unexpected restore result: %+v", r)
	}
	if got, _ := os.ReadFile(filepath.Join(dst, "PG_VERSION")); string(got) != "15\n" {
		t.Errorf("restored PG_VERSION = %q", got)
	}

	// A second restore into the now non-empty target is refused...
	var r2 RestoreResult
	code, stderr = run(t, &r2, "restore", "--archive", archivePath, "--target", dst, "--sha256", b.SHA256)
	if code != ExitRefused || r2.Reason != TargetNotEmpty || !strings.Contains(r2.Error, "--overwrite") || !strings.Contains(stderr, "not empty") {
		t.Errorf("restore into a non-empty target: exit %d, %+v, stderr %q", code, r2.Status, stderr)
	}
	// ...unless an overwrite mode allows it.
	if code, stderr := run(t, &r2, "restore", "--archive", archivePath, "--target", dst, "--sha256", b.SHA256, "--overwrite", "replace"); code != ExitOK {
		t.Errorf("restore --overwrite replace exit %d: %s", code, stderr)
	}

	var d DeleteResult
	if code, stderr := run(t, &d, "delete", "--archive", archivePath); code != ExitOK || d.AlreadyDeleted || len(d.Removed) != 3 {
		t.Fatalf("delete exit %d %+v: %s", code, d, stderr)
	}
	var d2 DeleteResult
	if code, _ := run(t, &d2, "delete", "--archive", archivePath); code != ExitOK || !d2.AlreadyDeleted {
		t.Errorf("second delete exit %d %+v, want success flagged alreadyDeleted", code, d2)
	}
	var v2 VerifyResult
	if code, _ := run(t, &v2, "verify", "--archive", archivePath, "--sha256", b.SHA256); code != ExitRefused || v2.Reason != ArchiveNotFound {
		t.Errorf("verify of a deleted archive: exit %d, %+v", code, v2.Status)
	}
}

func TestIntegrityFailures(t *testing.T) {
	src, store := t.TempDir(), t.TempDir()
	writeFiles(t, src, map[string]string{"a": strings.Repeat("data", 10000)})
	archivePath := filepath.Join(store, "a.tar.gz")
	var b BackupResult
	if code, stderr := run(t, &b, "backup", "--source", src, "--output", archivePath, "--compression", "gzip"); code != ExitOK {
		t.Fatalf("backup: %s", stderr)
	}
	data, err := os.ReadFile(archivePath)
	if err != nil {
		t.Fatal(err)
	}
	data[len(data)/2] ^= 1
	if err := os.WriteFile(archivePath, data, 0o600); err != nil {
		t.Fatal(err)
	}
	var v VerifyResult
	if code, _ := run(t, &v, "verify", "--archive", archivePath, "--sha256", b.SHA256); code != ExitIntegrity || v.Reason != ChecksumMismatch {
		t.Errorf("verify of a corrupted archive: exit %d, %+v", code, v.Status)
	}
	dst := t.TempDir()
	var r RestoreResult
	if code, _ := run(t, &r, "restore", "--archive", archivePath, "--target", dst, "--sha256", b.SHA256); code != ExitIntegrity || r.Reason != ChecksumMismatch {
		t.Errorf("restore of a corrupted archive: exit %d, %+v", code, r.Status)
	}
	if entries, _ := os.ReadDir(dst); len(entries) != 0 {
		t.Errorf("restore of a corrupted archive wrote %d entries", len(entries))
	}
}

func TestInvalidArguments(t *testing.T) {
	dir := t.TempDir()
	cases := [][]string{
		{"backup"},
		{"backup", "--source", dir},
		{"backup", "--source", dir, "--output", filepath.Join(dir, "x.zip")},
		{"backup", "--source", dir, "--output", filepath.Join(t.TempDir(), "x.tar.zst"), "--compression", "lz4"},
		{"backup", "--source", dir, "--output", filepath.Join(t.TempDir(), "x.tar.zst"), "stray"},
		{"backup", "--no-such-flag"},
		{"restore", "--archive", "a.tar.zst", "--target", dir},
		{"restore", "--archive", "a.tar.zst", "--target", dir, "--sha256", strings.Repeat("0", 64), "--overwrite", "always"},
		{"verify", "--archive", "a.tar.zst", "--sha256", "xyz"},
		{"delete"},
		{"delete", "--archive", filepath.Join(dir, "important.txt")},
	}
	for _, args := range cases {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			var st Status
			code, stderr := run(t, &st, args...)
			if code != ExitUsage || st.Reason != InvalidArgument || st.Error == "" || !strings.Contains(stderr, "error:") {
				t.Errorf("exit %d, %+v, stderr %q; want exit %d with reason InvalidArgument", code, st, stderr, ExitUsage)
			}
			if st.Operation != args[0] {
				t.Errorf("operation %q, want %q", st.Operation, args[0])
			}
		})
	}
}

func TestCommandErrors(t *testing.T) {
	for _, args := range [][]string{nil, {"frobnicate"}} {
		var so, se bytes.Buffer
		code := Run(context.Background(), args, &so, &se)
		var st Status
		if err := json.Unmarshal(so.Bytes(), &st); err != nil {
			t.Fatalf("%v: stdout is not JSON: %q", args, so.String())
		}
		if code != ExitUsage || st.Reason != InvalidArgument || !strings.Contains(se.String(), "usage:") {
			t.Errorf("%v: exit %d, %+v, stderr %q", args, code, st, se.String())
		}
	}
	var so, se bytes.Buffer
	if code := Run(context.Background(), []string{"backup", "-h"}, &so, &se); code != ExitOK || !strings.Contains(se.String(), "--source") {
		t.Errorf("backup -h: exit %d, stderr %q", code, se.String())
	}
}

func TestSourceAndOutputErrors(t *testing.T) {
	src, store := t.TempDir(), t.TempDir()
	var b BackupResult
	code, _ := run(t, &b, "backup", "--source", filepath.Join(src, "missing"), "--output", filepath.Join(store, "a.tar.zst"))
	if code != ExitRefused || b.Reason != SourceNotFound {
		t.Errorf("missing source: exit %d %+v", code, b.Status)
	}
	existing := filepath.Join(store, "b.tar")
	if err := os.WriteFile(existing, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	code, _ = run(t, &b, "backup", "--source", src, "--output", existing)
	if code != ExitRefused || b.Reason != OutputExists {
		t.Errorf("existing output: exit %d %+v", code, b.Status)
	}
}

func TestTerminationMessageFitsTheKubeletLimit(t *testing.T) {
	res := &BackupResult{Status: Status{Operation: OpBackup, Error: strings.Repeat("very long error ", 400), Reason: WriteFailed}}
	res.ChangedFiles = 5000
	for i := 0; i < archive.DefaultMaxChangedList; i++ {
		res.ChangedFileList = append(res.ChangedFileList, strings.Repeat("deep/", 40)+"file")
	}
	msg, err := terminationMessage(res)
	if err != nil {
		t.Fatal(err)
	}
	if len(msg) > maxTerminationMessage {
		t.Fatalf("termination message is %d bytes", len(msg))
	}
	var got BackupResult
	if err := json.Unmarshal(msg, &got); err != nil {
		t.Fatalf("termination message is not JSON: %v", err)
	}
	if got.ChangedFiles != 5000 || got.Reason != WriteFailed || got.Error == "" {
		t.Errorf("counts or reason lost: %+v", got)
	}

	small := &DeleteResult{Status: Status{Operation: OpDelete}}
	msg, _ = terminationMessage(small)
	want, _ := json.Marshal(small)
	if !bytes.Equal(msg, want) {
		t.Errorf("a short result was altered: %s", msg)
	}
}

func TestDefaultTerminationLogOnlyInContainers(t *testing.T) {
	p := filepath.Join(t.TempDir(), "termination-log")
	if err := writeTerminationLog(p, false, []byte("{}")); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(p); err == nil {
		t.Error("the default path was created although it did not exist")
	}
	if err := os.WriteFile(p, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := writeTerminationLog(p, false, []byte("{}")); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(p); string(b) != "{}" {
		t.Errorf("existing termination log holds %q", b)
	}
	// An unwritable path is a warning, never a failed command.
	var so, se bytes.Buffer
	code := Run(context.Background(), []string{"delete", "--archive", filepath.Join(t.TempDir(), "x.tar"), "--termination-log", filepath.Join(t.TempDir(), "missing-dir", "log")}, &so, &se)
	if code != ExitOK {
		t.Errorf("exit %d because of the termination log: %s", code, se.String())
	}
}

func TestUnsafeArchiveIsRefused(t *testing.T) {
	parent := t.TempDir()
	target := filepath.Join(parent, "target")
	if err := os.Mkdir(target, 0o755); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, h := range []*tar.Header{
		{Name: "ok.txt", Typeflag: tar.TypeReg, Mode: 0o644, Size: 2},
		{Name: "../escaped.txt", Typeflag: tar.TypeReg, Mode: 0o644, Size: 2},
	} {
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		tw.Write([]byte("hi"))
	}
	tw.Close()
	archivePath := filepath.Join(t.TempDir(), "evil.tar")
	if err := os.WriteFile(archivePath, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(buf.Bytes())
	var r RestoreResult
	code, stderr := run(t, &r, "restore", "--archive", archivePath, "--target", target, "--sha256", hex.EncodeToString(sum[:]))
	if code != ExitIntegrity || r.Reason != UnsafeArchive || !strings.Contains(stderr, "../escaped.txt") {
		t.Errorf("exit %d, %+v, stderr %q; want exit %d with UnsafeArchive naming the entry", code, r.Status, stderr, ExitIntegrity)
	}
	if _, err := os.Lstat(filepath.Join(parent, "escaped.txt")); err == nil {
		t.Error("the archive wrote outside the target")
	}
}
