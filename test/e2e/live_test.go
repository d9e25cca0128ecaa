//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	platformv1 "platform.example.com/backup-operator/pkg/apis/platform/v1"
	"platform.example.com/backup-operator/pkg/generated/clientset/versioned"
)

// Backups of a live PostgreSQL: the database runs in a pod on the node under a pgbench write
// load while it is backed up, with pg_basebackup streamed from its own pod, from a CSI snapshot,
// or read directly with hooks around the read. Restored copies start and keep pgbench's
// invariant.

// execServiceAccount is the ServiceAccount of manifests/examples/exec-rbac.yaml.
const execServiceAccount = "backup-exec"

// grantExec applies the shipped example Role and RoleBinding in ns.
func grantExec(t *testing.T, e *Env, ns string) {
	t.Helper()
	e.Kubectl(t, nil, "-n", ns, "apply", "-f", filepath.Join(e.RepoRoot, "manifests", "examples", "exec-rbac.yaml"))
}

// livePostgres runs PostgreSQL in a pod on the data directory of claim, with pgbench writing to
// it from a second container (50 transactions a second, so that the tests beside it keep the
// machine's cores), and waits until pgbench has committed transactions. It returns
// psql, which runs a query in the database pod and returns its unaligned output.
func livePostgres(t *testing.T, e *Env, ns, claim string) (psql func(query string) string) {
	t.Helper()
	ctx := testContext(t)
	uid := int64(postgresUID(t))
	asPostgres := &corev1.SecurityContext{
		RunAsUser: &uid, RunAsNonRoot: ptr.To(true), AllowPrivilegeEscalation: ptr.To(false),
		Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
	}
	mounts := []corev1.VolumeMount{{Name: "data", MountPath: "/data"}, {Name: "sock", MountPath: "/sock"}}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "postgres-0", Labels: map[string]string{"app": "postgres"}},
		Spec: corev1.PodSpec{
			TerminationGracePeriodSeconds: ptr.To[int64](5),
			Volumes: []corev1.Volume{
				{Name: "data", VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: claim}}},
				{Name: "sock", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
			},
			Containers: []corev1.Container{{
				Name:  "postgres",
				Image: postgresImage,
				// WAL is kept long enough for pg_basebackup -X fetch to find every segment the
				// backup spans, however busy pgbench keeps the server.
				Command:         []string{"postgres", "-D", "/data", "-k", "/sock", "-c", "listen_addresses=", "-c", "wal_keep_size=1GB", "-c", "max_wal_senders=4"},
				SecurityContext: asPostgres,
				VolumeMounts:    mounts,
				ReadinessProbe: &corev1.Probe{
					ProbeHandler:  corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"pg_isready", "-h", "/sock", "-q"}}},
					PeriodSeconds: 1,
				},
			}, {
				Name:  "load",
				Image: postgresImage,
				Command: []string{"sh", "-c", `until pg_isready -h /sock -q; do sleep 0.2; done
exec pgbench -h /sock -U postgres -n -c 2 -j 1 -R 50 -T 100000 postgres`},
				SecurityContext: asPostgres,
				VolumeMounts:    mounts,
			}},
		},
	}
	if _, err := e.Kube.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	psql = func(query string) string {
		t.Helper()
		out, err := e.kubectl(ctx, nil, "-n", ns, "exec", "postgres-0", "-c", "postgres", "--", "psql", "-h", "/sock", "-U", "postgres", "-Atc", query, "postgres")
		if err != nil {
			t.Fatalf("psql %q: %v\n%s", query, err, out)
		}
		return strings.TrimSpace(out)
	}
	Eventually(t, 3*time.Minute, time.Second, "PostgreSQL to run under pgbench", func() (bool, error) {
		out, err := e.kubectl(ctx, nil, "-n", ns, "exec", "postgres-0", "-c", "postgres", "--", "psql", "-h", "/sock", "-U", "postgres", "-Atc", "select count(*) from pgbench_history", "postgres")
		if err != nil {
			return false, fmt.Errorf("%v: %s", err, out)
		}
		n, _ := strconv.Atoi(strings.TrimSpace(out))
		return n > 100, fmt.Errorf("%d pgbench transactions so far", n)
	})
	return psql
}

// pgbenchInvariant is true in every consistent pgbench database: each transaction adds the same
// delta to an account, a teller and a branch, and records it in the history.
const pgbenchInvariant = `select (select sum(abalance) from pgbench_accounts) = (select sum(bbalance) from pgbench_branches)
 and (select sum(bbalance) from pgbench_branches) = (select sum(tbalance) from pgbench_tellers)
 and (select sum(tbalance) from pgbench_tellers) = (select coalesce(sum(delta), 0) from pgbench_history),
 (select count(*) from pgbench_history), (select count(*) from pgbench_accounts)`

// expectConsistentCopy starts PostgreSQL on a restored data directory on the node, and fails
// unless it recovers and keeps pgbench's invariant with all of its accounts and some history.
func expectConsistentCopy(t *testing.T, dir string) {
	t.Helper()
	out := hostPostgres(t, dir, pgbenchInvariant)
	f := strings.Split(out, "|")
	if len(f) != 3 || f[0] != "t" || f[2] != "200000" || f[1] == "0" {
		t.Fatalf("the restored database answers %q (invariant|history|accounts), want t|<some history>|200000", out)
	}
	t.Logf("restored copy %s: invariant holds over %s pgbench transactions", filepath.Base(dir), f[1])
}

// hostPostgres starts PostgreSQL on the data directory dir of the node, on a private socket,
// runs query with psql, stops it and returns the answer.
func hostPostgres(t *testing.T, dir, query string) string {
	t.Helper()
	// Directly in the temporary directory: t.TempDir's parent is closed to the postgres user.
	sock, err := os.MkdirTemp("", "pg-e2e-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(sock)
	if err := os.Chown(sock, postgresUID(t), 0); err != nil {
		t.Fatal(err)
	}
	port := strconv.Itoa(20000 + int(time.Now().UnixNano()%10000))
	asPostgres := func(args ...string) ([]byte, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		return exec.CommandContext(ctx, "su", "postgres", "-s", "/bin/sh", "-c", strings.Join(args, " ")).CombinedOutput()
	}
	if out, err := asPostgres(postgresBin+"/pg_ctl", "-D", dir, "-o", "'-p "+port+" -k "+sock+" -c listen_addresses='", "-l", sock+"/log", "-w", "-t", "150", "start"); err != nil {
		log, _ := os.ReadFile(filepath.Join(sock, "log"))
		t.Fatalf("PostgreSQL does not start on the restored data directory: %v\n%s\n%s", err, out, log)
	}
	defer asPostgres(postgresBin+"/pg_ctl", "-D", dir, "-m", "fast", "-w", "stop")
	got, err := asPostgres("psql", "-h", sock, "-p", port, "-Atc", "\""+query+"\"", "postgres")
	if err != nil {
		t.Fatalf("psql on the restored copy: %v\n%s", err, got)
	}
	return strings.TrimSpace(string(got))
}

// createLiveBackup creates a Backup of claim from spec's run settings.
func createLiveBackup(t *testing.T, c versioned.Interface, ns, name, claim string, settings platformv1.BackupRunSettings) {
	t.Helper()
	b := &platformv1.Backup{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: platformv1.BackupSpec{PVCName: claim, BackupRunSettings: settings}}
	if _, err := c.PlatformV1().Backups(ns).Create(testContext(t), b, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// restoreIntoNewClaim restores backup into a new hostPath claim and returns its directory.
func restoreIntoNewClaim(t *testing.T, e *Env, c versioned.Interface, ns, backup string) string {
	t.Helper()
	dir := e.HostPathPVC(t, ns, backup+"-restored", "2Gi")
	restoreInto(t, c, ns, backup, backup, backup+"-restored", platformv1.RestoreCompleted, "")
	return dir
}

// The consistency proof: pg_basebackup, streamed from the database's own pod while
// pgbench writes, three times; each archive restores into a new claim where PostgreSQL starts
// and pgbench's invariant holds.
func TestBasebackupOfALiveDatabaseRestoresConsistently(t *testing.T) {
	t.Parallel()
	e := requireEnv(t)
	requirePostgres(t, e)
	c := platformClient(t, e)
	ns := e.Namespace(t)
	postgresClaim(t, e, ns, "pgdata")
	e.HostPathPVC(t, ns, platformv1.DefaultStorageClaimName, "4Gi")
	grantExec(t, e, ns)
	psql := livePostgres(t, e, ns, "pgdata")

	command := []string{"pg_basebackup", "-h", "/sock", "-U", "postgres", "-Ft", "-D", "-", "-X", "fetch", "--checkpoint=fast"}
	for i := 1; i <= 3; i++ {
		name := fmt.Sprintf("basebackup-%d", i)
		before := psql("select count(*) from pgbench_history")
		createLiveBackup(t, c, ns, name, "pgdata", platformv1.BackupRunSettings{
			Source: &platformv1.BackupSource{Command: &platformv1.CommandSource{
				Container: "postgres", Command: command, Format: platformv1.StreamFormatTar, TimeoutSeconds: ptr.To[int64](300),
			}},
			ExecServiceAccountName: execServiceAccount,
		})
		b := waitBackup(t, c, ns, name, platformv1.BackupCompleted)
		after := psql("select count(*) from pgbench_history")
		if before == after {
			t.Fatalf("pgbench committed nothing while %s ran (%s transactions before and after)", name, before)
		}
		src := b.Status.Source
		if src == nil || src.Type != platformv1.SourceCommand || src.Pod != "postgres-0" || src.Container != "postgres" || strings.Join(src.Command, " ") != strings.Join(command, " ") {
			t.Fatalf("status.source %+v, want the command in postgres-0", src)
		}
		expectConsistentCopy(t, restoreIntoNewClaim(t, e, c, ns, name))
	}
}

// A CSI snapshot of the same live database is crash-consistent: the restored copy recovers from
// its WAL and keeps the invariant.
func TestSnapshotOfALiveDatabaseRestoresConsistently(t *testing.T) {
	t.Parallel()
	e, c, ns, pv := csiClaimSetup(t)
	requirePostgres(t, e)
	dir := csiVolumeDir(t, pv)
	// Built where the postgres user may go, then copied into the volume with its owners: the
	// CSI driver's directories on the node are closed to other users.
	build, err := os.MkdirTemp("", "pgdata-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(build)
	if out, err := exec.Command("bash", pgDataScript(e), build, "2").CombinedOutput(); err != nil {
		t.Fatalf("building the data directory: %v\n%s", err, out)
	}
	if out, err := exec.Command("cp", "-a", build+"/.", dir+"/").CombinedOutput(); err != nil {
		t.Fatalf("copying the data directory into the CSI volume: %v\n%s", err, out)
	}
	e.HostPathPVC(t, ns, platformv1.DefaultStorageClaimName, "4Gi")
	psql := livePostgres(t, e, ns, "data")

	before := psql("select count(*) from pgbench_history")
	createSnapshotBackup(t, c, ns, "snap", "data", platformv1.BackupSource{})
	b := waitBackup(t, c, ns, "snap", platformv1.BackupCompleted)
	if b.Status.Source == nil || b.Status.Source.Type != platformv1.SourceSnapshot {
		t.Fatalf("status.source %+v, want Snapshot", b.Status.Source)
	}
	if after := psql("select count(*) from pgbench_history"); after == before {
		t.Fatalf("pgbench committed nothing while the snapshot backup ran")
	}
	expectConsistentCopy(t, restoreIntoNewClaim(t, e, c, ns, "snap"))
}

// Hooks run in the database's pod around a direct read: a pre hook's marker is in the archive
// and the post hook ran. A failing pre hook under Fail fails the Backup before anything is read,
// leaves no archive, and the post hook still runs. Without the exec grant the Backup fails and
// names the permission to add.
func TestHooksRunInTheApplicationsPod(t *testing.T) {
	t.Parallel()
	e := requireEnv(t)
	requirePostgres(t, e)
	c := platformClient(t, e)
	ctx := testContext(t)
	ns := e.Namespace(t)
	dataDir, _ := postgresClaim(t, e, ns, "pgdata")
	storageDir := e.HostPathPVC(t, ns, platformv1.DefaultStorageClaimName, "4Gi")
	grantExec(t, e, ns)
	livePostgres(t, e, ns, "pgdata")

	marker := func(name string) platformv1.Hook {
		return platformv1.Hook{Container: "postgres", Command: []string{"sh", "-c", "echo \"$(date)\" > /data/" + name}}
	}
	createLiveBackup(t, c, ns, "hooked", "pgdata", platformv1.BackupRunSettings{
		Compression:            platformv1.CompressionNone,
		Hooks:                  &platformv1.BackupHooks{Pre: []platformv1.Hook{marker("pre-marker")}, Post: []platformv1.Hook{marker("post-marker")}},
		ExecServiceAccountName: execServiceAccount,
	})
	b := waitBackup(t, c, ns, "hooked", platformv1.BackupCompleted)
	if names := tarNames(t, filepath.Join(storageDir, b.Status.Artifact.Path)); !names["pre-marker"] || names["post-marker"] {
		t.Fatalf("the archive holds pre-marker %t and post-marker %t: want the pre hook's marker only", names["pre-marker"], names["post-marker"])
	}
	if _, err := os.Stat(filepath.Join(dataDir, "post-marker")); err != nil {
		t.Fatalf("the post hook did not run: %v", err)
	}
	if h := b.Status.Hooks; len(h) != 2 || h[0].Phase != platformv1.HookPre || h[0].Result != platformv1.HookSucceeded || h[1].Phase != platformv1.HookPost || h[1].Result != platformv1.HookSucceeded {
		t.Fatalf("status.hooks %+v, want the pre and the post hook, both Succeeded", h)
	}

	os.Remove(filepath.Join(dataDir, "post-marker"))
	createLiveBackup(t, c, ns, "refused", "pgdata", platformv1.BackupRunSettings{
		Hooks: &platformv1.BackupHooks{
			Pre:  []platformv1.Hook{{Container: "postgres", Command: []string{"sh", "-c", "echo 'cannot freeze' >&2; exit 3"}, OnError: platformv1.HookFail}},
			Post: []platformv1.Hook{marker("post-marker")},
		},
		ExecServiceAccountName: execServiceAccount,
	})
	b = waitBackup(t, c, ns, "refused", platformv1.BackupFailed)
	cond := meta.FindStatusCondition(b.Status.Conditions, platformv1.ConditionSucceeded)
	if cond.Reason != platformv1.ReasonHookFailed || !strings.Contains(cond.Message, "exited with code 3") || !strings.Contains(cond.Message, "cannot freeze") {
		t.Fatalf("condition %+v, want HookFailed with the exit code and standard error", cond)
	}
	if h := b.Status.Hooks; len(h) != 2 || h[0].Result != platformv1.HookFailed || ptr.Deref(h[0].ExitCode, 0) != 3 || h[1].Result != platformv1.HookSucceeded {
		t.Fatalf("status.hooks %+v, want the pre hook Failed with exit code 3 and the post hook Succeeded", h)
	}
	if _, err := os.Stat(filepath.Join(dataDir, "post-marker")); err != nil {
		t.Fatalf("the post hook did not run after the failed pre hook: %v", err)
	}
	if left, _ := filepath.Glob(filepath.Join(storageDir, ns, "pgdata", "refused*")); len(left) != 0 {
		t.Fatalf("the failed Backup left %v on storage", left)
	}
	events, err := e.Kube.CoreV1().Events(ns).List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=refused,reason=HookFailed"})
	if err != nil || len(events.Items) == 0 {
		t.Fatalf("no HookFailed Event for Backup refused (%v)", err)
	}

	// A ServiceAccount without the grant.
	e.Kubectl(t, nil, "-n", ns, "create", "serviceaccount", "no-grant")
	createLiveBackup(t, c, ns, "no-grant", "pgdata", platformv1.BackupRunSettings{
		Hooks:                  &platformv1.BackupHooks{Pre: []platformv1.Hook{marker("never")}},
		ExecServiceAccountName: "no-grant",
	})
	b = waitBackup(t, c, ns, "no-grant", platformv1.BackupFailed)
	cond = meta.FindStatusCondition(b.Status.Conditions, platformv1.ConditionSucceeded)
	if cond.Reason != platformv1.ReasonExecForbidden || !strings.Contains(cond.Message, `resources: ["pods/exec"], verbs: ["create"]`) || !strings.Contains(cond.Message, ns) {
		t.Fatalf("condition %+v, want ExecForbidden naming the pods/exec rule and the namespace", cond)
	}
	if _, err := os.Stat(filepath.Join(dataDir, "never")); err == nil {
		t.Fatal("a hook ran without the exec grant")
	}
}

// In a namespace that enforces Pod Security "restricted", a backup and a restore with
// agentSecurityContext complete; a file that user cannot read fails the Backup, naming it.
func TestRestrictedNamespaceBackupAndRestore(t *testing.T) {
	t.Parallel()
	e := requireEnv(t)
	c := platformClient(t, e)
	ns := e.Namespace(t)
	e.Kubectl(t, nil, "label", "namespace", ns, "pod-security.kubernetes.io/enforce=restricted")
	const uid = 1000
	dataDir := e.HostPathPVC(t, ns, "data", "1Gi")
	writeTree(t, dataDir)
	if out, err := exec.Command("chown", "-R", "-h", fmt.Sprintf("%d:%d", uid, uid), dataDir).CombinedOutput(); err != nil {
		t.Fatalf("chown: %v\n%s", err, out)
	}
	want := snapshot(t, dataDir)
	e.HostPathPVC(t, ns, platformv1.DefaultStorageClaimName, "1Gi")
	as := &platformv1.AgentSecurityContext{RunAsUser: uid, RunAsGroup: ptr.To[int64](uid)}

	// The default agent runs as root with DAC_READ_SEARCH, which the namespace refuses: the
	// Backup says so at once instead of waiting for a pod that is never admitted.
	createBackup(t, c, ns, "as-root", "data")
	b := waitBackup(t, c, ns, "as-root", platformv1.BackupFailed)
	if cond := meta.FindStatusCondition(b.Status.Conditions, platformv1.ConditionSucceeded); cond.Reason != platformv1.ReasonPodSecurityRefused || !strings.Contains(cond.Message, "agentSecurityContext") {
		t.Fatalf("condition %+v, want PodSecurityRefused saying to set agentSecurityContext", cond)
	}

	createLiveBackup(t, c, ns, "unprivileged", "data", platformv1.BackupRunSettings{JobSettings: platformv1.JobSettings{AgentSecurityContext: as}})
	waitBackup(t, c, ns, "unprivileged", platformv1.BackupCompleted)

	restoredDir := e.HostPathPVC(t, ns, "restored", "1Gi")
	r := &platformv1.Restore{ObjectMeta: metav1.ObjectMeta{Name: "unprivileged"}, Spec: platformv1.RestoreSpec{
		BackupName: "unprivileged", Target: platformv1.RestoreTarget{ClaimName: "restored"},
		JobSettings: platformv1.JobSettings{AgentSecurityContext: as},
	}}
	if _, err := c.PlatformV1().Restores(ns).Create(testContext(t), r, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitRestore(t, c, ns, "unprivileged", platformv1.RestoreCompleted, "")
	expectSameTree(t, want, snapshot(t, restoredDir))

	// A file the agent's user may not read.
	secret := filepath.Join(dataDir, "root-only.key")
	if err := os.WriteFile(secret, []byte("root's\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	createLiveBackup(t, c, ns, "unreadable", "data", platformv1.BackupRunSettings{JobSettings: platformv1.JobSettings{AgentSecurityContext: as}})
	b = waitBackup(t, c, ns, "unreadable", platformv1.BackupFailed)
	cond := meta.FindStatusCondition(b.Status.Conditions, platformv1.ConditionSucceeded)
	if cond.Reason != platformv1.ReasonReadFailed || !strings.Contains(cond.Message, "root-only.key") || !strings.Contains(cond.Message, "permission denied") {
		t.Fatalf("condition %+v, want ReadFailed naming root-only.key", cond)
	}
}
