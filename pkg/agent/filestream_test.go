package agent

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	platformv1 "platform.example.com/backup-operator/pkg/apis/platform/v1"
	"platform.example.com/backup-operator/pkg/archive"
)

// A pg_dump-like command's output is archived as one file, named after it, and restored and
// verified as "dump" when the agent is told the format; as a tar it is refused.
func TestCommandFileBackupAndRestore(t *testing.T) {
	store := t.TempDir()
	dump := append([]byte("PGDMP\x01\x0e\x00"), bytes.Repeat([]byte("COPY public.t (id) FROM stdin;\n1\n\\.\n"), 500)...)
	ex := writes("pg_dump", dump)
	withExec(t, ex, "", appPod())
	cmd := `{"container":"postgres","command":["pg_dump","-Fc","app"],"format":"file"}`
	out := filepath.Join(store, "nightly.dump.zst")
	var res BackupResult
	code, stderr := run(t, &res, "backup", "--output", out, "--compression", "zstd", "--namespace", "db", "--pvc", "data",
		"--exec-pod", "postgres-0", "--command", cmd, "--exec-service-account", "db-backup")
	if code != ExitOK {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if res.Files != 1 || res.SourceBytes != int64(len(dump)) || res.Source == nil || res.Source.Format != platformv1.StreamFormatFile {
		t.Errorf("result %+v, source %+v", res.BackupStats, res.Source)
	}
	if got := callArgv(ex); !slices.Equal(got, []string{"pg_dump -Fc app"}) {
		t.Errorf("ran %v", got)
	}
	mb, err := os.ReadFile(out + ".manifest.json")
	if err != nil {
		t.Fatal(err)
	}
	var m archive.Manifest
	if err := json.Unmarshal(mb, &m); err != nil || m.Format != archive.FormatFile || m.FileName != "dump" || m.Container != "postgres" ||
		m.ExecServiceAccountName != "db-backup" || strings.Join(m.Command, " ") != "pg_dump -Fc app" {
		t.Errorf("manifest %s (%v)", mb, err)
	}

	var vr VerifyResult
	if code, stderr := run(t, &vr, "verify", "--archive", out, "--sha256", res.SHA256, "--format", "file", "--file-name", "dump"); code != ExitOK {
		t.Fatalf("verify exit %d: %s", code, stderr)
	}
	if vr.Format != archive.FormatFile || vr.FileName != "dump" || vr.Bytes != int64(len(dump)) || vr.Files != 1 {
		t.Errorf("verify result %+v", vr.VerifyStats)
	}

	dst := t.TempDir()
	var rr RestoreResult
	if code, stderr := run(t, &rr, "restore", "--archive", out, "--target", dst, "--sha256", res.SHA256, "--format", "file"); code != ExitOK {
		t.Fatalf("restore exit %d: %s", code, stderr)
	}
	if b, err := os.ReadFile(filepath.Join(dst, "dump")); err != nil || !bytes.Equal(b, dump) {
		t.Errorf("restored dump %d bytes (%v), want %d", len(b), err, len(dump))
	}
	if rr.Format != archive.FormatFile || rr.FileName != "dump" || rr.Files != 1 || rr.Bytes != int64(len(dump)) {
		t.Errorf("restore result %+v", rr.RestoreStats)
	}

	// Not told the format, the agent reads a tar and finds none; told another name, it refuses.
	var bad RestoreResult
	if code, _ := run(t, &bad, "restore", "--archive", out, "--target", t.TempDir(), "--sha256", res.SHA256); code != ExitIntegrity || bad.Reason != CorruptArchive {
		t.Errorf("restore as a tar: exit %d reason %s", code, bad.Reason)
	}
	if code, _ := run(t, &bad, "restore", "--archive", out, "--target", t.TempDir(), "--sha256", res.SHA256, "--format", "file", "--file-name", "db.sql"); code != ExitUsage || bad.Reason != InvalidArgument {
		t.Errorf("restore as db.sql: exit %d reason %s", code, bad.Reason)
	}
	if code, _ := run(t, &bad, "restore", "--archive", out, "--target", t.TempDir(), "--sha256", res.SHA256, "--format", "zip"); code != ExitUsage {
		t.Errorf("--format zip: exit %d", code)
	}
}
