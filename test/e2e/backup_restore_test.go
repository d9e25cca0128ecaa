//go:build e2e

package e2e

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	platformv1 "platform.example.com/backup-operator/pkg/apis/platform/v1"
	"platform.example.com/backup-operator/pkg/generated/clientset/versioned"
)

// The Backup and Restore controllers on the real node, with the deployed operator: archives
// that match their checksums, restores that give back the same tree, and refusals that leave
// the target as it was.

func platformClient(t *testing.T, e *Env) versioned.Interface {
	t.Helper()
	c, err := versioned.NewForConfig(e.Config)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// entry is what a restore must give back of one file.
type entry struct {
	Mode    fs.FileMode
	UID     uint32
	GID     uint32
	ModTime time.Time
	SHA256  string
	Link    string
}

// snapshot describes every entry below dir, the directory's own mtime aside (the kubelet and
// the test touch it).
func snapshot(t *testing.T, dir string) map[string]entry {
	t.Helper()
	out := map[string]entry{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if rel == "." {
			return nil
		}
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		st := fi.Sys().(*syscall.Stat_t)
		e := entry{Mode: fi.Mode(), UID: st.Uid, GID: st.Gid, ModTime: fi.ModTime().Truncate(time.Second)}
		switch {
		case fi.Mode()&fs.ModeSymlink != 0:
			e.Link, err = os.Readlink(p)
		case fi.Mode().IsRegular():
			e.SHA256, err = fileSHA256(p)
		}
		out[rel] = e
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// writeTree fills dir with files of every kind a restore must give back.
func writeTree(t *testing.T, dir string) {
	t.Helper()
	old := time.Date(2024, 2, 29, 12, 34, 56, 0, time.UTC)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(dir, "conf", "deep", "deeper"), 0o750))
	must(os.MkdirAll(filepath.Join(dir, "empty-dir"), 0o700))
	must(os.WriteFile(filepath.Join(dir, "conf", "app.yaml"), []byte("replicas: 3\n"), 0o640))
	must(os.WriteFile(filepath.Join(dir, "conf", "deep", "deeper", "secret.key"), []byte("not really a key\n"), 0o600))
	must(os.WriteFile(filepath.Join(dir, "run.sh"), []byte("#!/bin/sh\necho hi\n"), 0o755))
	must(os.WriteFile(filepath.Join(dir, "empty"), nil, 0o644))
	must(os.WriteFile(filepath.Join(dir, "données-ünïcode.txt"), []byte(strings.Repeat("grüße ", 1000)), 0o644))
	big := make([]byte, 3<<20)
	for i := range big {
		big[i] = byte(i * 7 % 251)
	}
	must(os.WriteFile(filepath.Join(dir, "blob.bin"), big, 0o644))
	must(os.Symlink("conf/app.yaml", filepath.Join(dir, "current.yaml")))
	must(os.Chown(filepath.Join(dir, "conf", "app.yaml"), 999, 999))
	for _, p := range []string{"conf/app.yaml", "conf/deep/deeper/secret.key", "run.sh", "empty", "blob.bin", "conf/deep/deeper", "empty-dir"} {
		must(os.Chtimes(filepath.Join(dir, p), old, old))
	}
}

func createBackup(t *testing.T, c versioned.Interface, ns, name, pvc string) {
	t.Helper()
	b := &platformv1.Backup{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: platformv1.BackupSpec{PVCName: pvc}}
	if _, err := c.PlatformV1().Backups(ns).Create(testContext(t), b, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// waitBackup waits for a final phase and fails unless it is want.
func waitBackup(t *testing.T, c versioned.Interface, ns, name string, want platformv1.BackupPhase) *platformv1.Backup {
	t.Helper()
	var b *platformv1.Backup
	Eventually(t, 3*time.Minute, time.Second, "Backup "+name+" to finish", func() (bool, error) {
		var err error
		b, err = c.PlatformV1().Backups(ns).Get(testContext(t), name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		return b.Status.Phase == platformv1.BackupCompleted || b.Status.Phase == platformv1.BackupFailed, fmt.Errorf("phase %q", b.Status.Phase)
	})
	if b.Status.Phase != want {
		t.Fatalf("Backup %s is %s, want %s: %+v", name, b.Status.Phase, want, b.Status.Conditions)
	}
	return b
}

func createRestore(t *testing.T, c versioned.Interface, ns, name, backup string, target platformv1.RestoreTarget, overwrite platformv1.OverwritePolicy) {
	t.Helper()
	r := &platformv1.Restore{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: platformv1.RestoreSpec{BackupName: backup, Target: target, OverwritePolicy: overwrite}}
	if _, err := c.PlatformV1().Restores(ns).Create(testContext(t), r, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// waitRestore waits for a final phase and fails unless it is want with reason.
func waitRestore(t *testing.T, c versioned.Interface, ns, name string, want platformv1.RestorePhase, reason string) *platformv1.Restore {
	t.Helper()
	var r *platformv1.Restore
	Eventually(t, 3*time.Minute, time.Second, "Restore "+name+" to finish", func() (bool, error) {
		var err error
		r, err = c.PlatformV1().Restores(ns).Get(testContext(t), name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		return r.Status.Phase == platformv1.RestoreCompleted || r.Status.Phase == platformv1.RestoreFailed, fmt.Errorf("phase %q", r.Status.Phase)
	})
	cond := meta.FindStatusCondition(r.Status.Conditions, platformv1.ConditionSucceeded)
	if r.Status.Phase != want || cond == nil || (reason != "" && cond.Reason != reason) {
		t.Fatalf("Restore %s is %s with %+v, want %s with reason %q", name, r.Status.Phase, cond, want, reason)
	}
	return r
}

// backedUp sets up a namespace with a claim holding a tree, storage, and a Completed Backup of it.
func backedUp(t *testing.T, e *Env, c versioned.Interface) (ns, dataDir, storageDir string, b *platformv1.Backup) {
	t.Helper()
	ns = e.Namespace(t)
	dataDir = e.HostPathPVC(t, ns, "data", "1Gi")
	writeTree(t, dataDir)
	storageDir = e.HostPathPVC(t, ns, platformv1.DefaultStorageClaimName, "1Gi")
	createBackup(t, c, ns, "nightly", "data")
	return ns, dataDir, storageDir, waitBackup(t, c, ns, "nightly", platformv1.BackupCompleted)
}

func TestBackupAndRestoreGiveBackTheSameTree(t *testing.T) {
	t.Parallel()
	e := requireEnv(t)
	c := platformClient(t, e)
	ns, dataDir, storageDir, b := backedUp(t, e, c)

	a := b.Status.Artifact
	if a == nil || !strings.HasSuffix(a.Path, ".tar.zst") || a.Files == 0 || a.SourceBytes < 3<<20 {
		t.Fatalf("artifact %+v", a)
	}
	archive := filepath.Join(storageDir, a.Path)
	if got, err := fileSHA256(archive); err != nil || got != a.SHA256 {
		t.Fatalf("the archive on storage hashes to %s (%v); the Backup recorded %s", got, err, a.SHA256)
	}
	sidecar, err := os.ReadFile(archive + ".sha256")
	if err != nil || !strings.HasPrefix(string(sidecar), a.SHA256+"  ") {
		t.Fatalf("checksum file %q (%v) does not carry the Backup's sha256", sidecar, err)
	}

	// Into a claim the Restore creates, bound to a volume made ready for it.
	restoredDir := e.HostPathPV(t, ns, "restored", "1Gi")
	class := storageClass
	size := resource.MustParse("1Gi")
	createRestore(t, c, ns, "rehearsal", "nightly", platformv1.RestoreTarget{
		ClaimName: "restored",
		Create:    &platformv1.TargetClaimTemplate{StorageClassName: &class, Size: &size},
	}, "")
	r := waitRestore(t, c, ns, "rehearsal", platformv1.RestoreCompleted, "")
	if r.Status.VerifiedSHA256 != a.SHA256 || !r.Status.ClaimCreated || r.Status.RestoredBytes != a.SourceBytes {
		t.Fatalf("restore status %+v, want the Backup's sha256 verified, the claim created and %d bytes", r.Status, a.SourceBytes)
	}
	expectSameTree(t, snapshot(t, dataDir), snapshot(t, restoredDir))
}

// expectSameTree fails t, naming each difference, unless the restored tree got is the backed-up
// tree want.
func expectSameTree(t *testing.T, want, got map[string]entry) {
	t.Helper()
	if reflect.DeepEqual(want, got) {
		return
	}
	for name, w := range want {
		if g, ok := got[name]; !ok || g != w {
			t.Errorf("%s: restored %+v, backed up %+v", name, g, w)
		}
	}
	for name := range got {
		if _, ok := want[name]; !ok {
			t.Errorf("%s: restored but never backed up", name)
		}
	}
}

func TestRestoreRefusesANonEmptyTarget(t *testing.T) {
	t.Parallel()
	e := requireEnv(t)
	c := platformClient(t, e)
	ns, _, _, _ := backedUp(t, e, c)

	targetDir := e.HostPathPVC(t, ns, "in-use", "1Gi")
	if err := os.WriteFile(filepath.Join(targetDir, "precious.db"), []byte("do not touch"), 0o600); err != nil {
		t.Fatal(err)
	}
	before := snapshot(t, targetDir)
	createRestore(t, c, ns, "careless", "nightly", platformv1.RestoreTarget{ClaimName: "in-use"}, platformv1.OverwriteRefuse)
	waitRestore(t, c, ns, "careless", platformv1.RestoreFailed, platformv1.ReasonTargetNotEmpty)
	if after := snapshot(t, targetDir); !reflect.DeepEqual(before, after) {
		t.Fatalf("a refused restore changed the target:\nbefore %v\nafter  %v", before, after)
	}
}

func TestCorruptedArchiveFailsWithChecksumMismatch(t *testing.T) {
	t.Parallel()
	e := requireEnv(t)
	c := platformClient(t, e)
	ns, _, storageDir, b := backedUp(t, e, c)

	flipByte(t, filepath.Join(storageDir, b.Status.Artifact.Path), 100)

	targetDir := e.HostPathPVC(t, ns, "fresh", "1Gi")
	createRestore(t, c, ns, "from-rot", "nightly", platformv1.RestoreTarget{ClaimName: "fresh"}, "")
	waitRestore(t, c, ns, "from-rot", platformv1.RestoreFailed, platformv1.ReasonChecksumMismatch)
	if left := snapshot(t, targetDir); len(left) != 0 {
		t.Fatalf("a restore from a corrupted archive wrote %v", left)
	}
}

func TestDeletingABackupRemovesItsArchive(t *testing.T) {
	t.Parallel()
	e := requireEnv(t)
	c := platformClient(t, e)
	ns, _, storageDir, b := backedUp(t, e, c)

	archive := filepath.Join(storageDir, b.Status.Artifact.Path)
	if err := c.PlatformV1().Backups(ns).Delete(testContext(t), b.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	Eventually(t, 2*time.Minute, time.Second, "Backup "+b.Name+" to be gone", func() (bool, error) {
		_, err := c.PlatformV1().Backups(ns).Get(testContext(t), b.Name, metav1.GetOptions{})
		return apierrors.IsNotFound(err), err
	})
	for _, p := range []string{archive, archive + ".sha256", archive + ".manifest.json"} {
		if _, err := os.Lstat(p); !os.IsNotExist(err) {
			t.Errorf("%s is still on storage after its Backup was deleted (%v)", p, err)
		}
	}
}

// TestPostgresRestoresToARunningDatabase backs up a real PostgreSQL data directory, restores it
// into a new claim, and starts PostgreSQL on the restored copy.
func TestPostgresRestoresToARunningDatabase(t *testing.T) {
	t.Parallel()
	e := requireEnv(t)
	c := platformClient(t, e)
	requirePostgres(t, e)
	ns := e.Namespace(t)
	_, wantRows := postgresClaim(t, e, ns, "pgdata")
	e.HostPathPVC(t, ns, platformv1.DefaultStorageClaimName, "2Gi")

	createBackup(t, c, ns, "pg", "pgdata")
	waitBackup(t, c, ns, "pg", platformv1.BackupCompleted)
	restoredDir := e.HostPathPVC(t, ns, "pgdata-restored", "2Gi")
	createRestore(t, c, ns, "pg-drill", "pg", platformv1.RestoreTarget{ClaimName: "pgdata-restored"}, "")
	waitRestore(t, c, ns, "pg-drill", platformv1.RestoreCompleted, "")

	// Start PostgreSQL on the restored copy and count again.
	if got := hostPostgres(t, restoredDir, "select count(*) from pgbench_accounts"); got != wantRows {
		t.Fatalf("the restored database counts %q, the source %s", got, wantRows)
	}
}

// postgresBin is where Debian's postgresql-15 puts the server's programs.
const postgresBin = "/usr/lib/postgresql/15/bin"

// pgDataScript is the builder of a real PostgreSQL data directory, beside the repository or where
// E2E_PGDATA_SCRIPT says.
func pgDataScript(e *Env) string {
	if script := os.Getenv("E2E_PGDATA_SCRIPT"); script != "" {
		return script
	}
	return filepath.Join(e.RepoRoot, "..", "shared", "bench", "make-pgdata.sh")
}

// requirePostgres skips the test without the data directory builder or PostgreSQL 15.
func requirePostgres(t *testing.T, e *Env) {
	t.Helper()
	if _, err := os.Stat(pgDataScript(e)); err != nil {
		t.Skipf("no PostgreSQL data directory builder at %s (set E2E_PGDATA_SCRIPT): %v", pgDataScript(e), err)
	}
	if _, err := os.Stat(filepath.Join(postgresBin, "pg_ctl")); err != nil {
		t.Skipf("PostgreSQL 15 is not installed (apt-get install postgresql-15): %v", err)
	}
}

// postgresClaim makes the claim name holding a stopped pgbench database at scale 2, and returns
// its directory on the node and the rows of pgbench_accounts.
func postgresClaim(t *testing.T, e *Env, ns, name string) (dir, rows string) {
	t.Helper()
	dir = e.HostPathPVC(t, ns, name, "2Gi")
	const scale = 2
	out, err := exec.Command("bash", pgDataScript(e), dir, strconv.Itoa(scale)).CombinedOutput()
	if err != nil {
		t.Fatalf("building the data directory: %v\n%s", err, out)
	}
	rows = strings.TrimSpace(string(out))
	if rows != strconv.Itoa(scale*100000) {
		t.Fatalf("the source database counts %q accounts, want %d", rows, scale*100000)
	}
	return dir, rows
}

// flipByte inverts the byte at offset of a file: an archive that rotted in storage.
func flipByte(t *testing.T, path string, offset int64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	one := make([]byte, 1)
	if _, err := f.ReadAt(one, offset); err != nil {
		t.Fatal(err)
	}
	one[0] ^= 0xff
	if _, err := f.WriteAt(one, offset); err != nil {
		t.Fatal(err)
	}
}

func postgresUID(t *testing.T) int {
	t.Helper()
	out, err := exec.Command("id", "-u", "postgres").Output()
	if err != nil {
		t.Fatalf("no postgres user: %v", err)
	}
	uid, err := strconv.Atoi(strings.TrimSpace(string(out)))
	if err != nil {
		t.Fatal(err)
	}
	return uid
}
