//go:build e2e

package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"

	platformv1 "platform.example.com/backup-operator/pkg/apis/platform/v1"
	"platform.example.com/backup-operator/pkg/generated/clientset/versioned"
)

// postgresImage is the image hack/postgres-image.sh builds from this machine's postgresql-15
// files, imported into the node by make e2e.
const postgresImage = "backup-operator-postgres:dev"

// postgresProbe starts PostgreSQL in the probe's pod on the restored copy, counts the rows of
// pgbench_accounts and fails unless there are want; it runs as the data directory's owner.
func postgresProbe(t *testing.T, want string) *platformv1.DrillProbe {
	t.Helper()
	uid := int64(postgresUID(t))
	script := `set -e
pg_ctl -D /data -o "-k /tmp -c listen_addresses=" -l /tmp/pg.log -w -t 300 start || { tail -n 20 /tmp/pg.log; exit 1; }
n=$(psql -h /tmp -U postgres -Atc 'select count(*) from pgbench_accounts' postgres)
pg_ctl -D /data -m fast -w stop >/dev/null
echo "pgbench_accounts: $n rows, want $WANT" >/dev/termination-log
cat /dev/termination-log
test "$n" = "$WANT"`
	return &platformv1.DrillProbe{
		Image:   postgresImage,
		Command: []string{"/bin/sh", "-c", script},
		Env:     []corev1.EnvVar{{Name: "WANT", Value: want}},
		SecurityContext: &corev1.SecurityContext{
			RunAsUser: &uid, RunAsNonRoot: ptr.To(true),
			Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
		},
		TimeoutSeconds: ptr.To[int64](300),
	}
}

// runDrill asks a drill for a run now and waits for that run's verdict.
func runDrill(t *testing.T, c versioned.Interface, ns, name, token string) *platformv1.RestoreDrill {
	t.Helper()
	ctx := testContext(t)
	// A merge patch of the annotation alone: the controller writes the drill's status meanwhile.
	patch := fmt.Sprintf(`{"metadata":{"annotations":{%q:%q}}}`, platformv1.AnnotationRunNow, token)
	d, err := c.PlatformV1().RestoreDrills(ns).Patch(ctx, name, types.MergePatchType, []byte(patch), metav1.PatchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	Eventually(t, 6*time.Minute, time.Second, "drill "+name+" to finish the run "+token+" asked for", func() (bool, error) {
		d, err = c.PlatformV1().RestoreDrills(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		run := d.Status.LastRun
		if d.Status.LastRunNowToken != token || run == nil {
			return false, fmt.Errorf("not started (run-now token %q)", d.Status.LastRunNowToken)
		}
		if run.CompletionTime == nil {
			return false, fmt.Errorf("run %s is %s", run.ID, run.Result)
		}
		return true, nil
	})
	return d
}

// expectDrill fails unless the run ended with result and reason, and its claim's message has
// every fragment.
func expectDrill(t *testing.T, d *platformv1.RestoreDrill, result platformv1.DrillResult, reason string, fragments ...string) platformv1.DrillClaim {
	t.Helper()
	run := d.Status.LastRun
	if run.Result != result || run.Reason != reason || len(run.Claims) != 1 {
		t.Fatalf("drill %s ran %+v, want %s with reason %s for one claim", d.Name, run, result, reason)
	}
	cond := meta.FindStatusCondition(d.Status.Conditions, platformv1.ConditionSucceeded)
	if cond == nil || cond.Reason != reason {
		t.Errorf("drill %s: Succeeded condition %+v, want reason %s", d.Name, cond, reason)
	}
	dc := run.Claims[0]
	for _, f := range fragments {
		if !strings.Contains(dc.Message, f) {
			t.Errorf("drill %s: claim message %q does not say %q", d.Name, dc.Message, f)
		}
	}
	return dc
}

// expectNoDrillObjects fails while a drill's scratch claims, Restores or probe Jobs remain.
func expectNoDrillObjects(t *testing.T, e *Env, c versioned.Interface, ns, drill string) {
	t.Helper()
	ctx := testContext(t)
	sel := metav1.ListOptions{LabelSelector: platformv1.LabelDrill + "=" + drill}
	Eventually(t, 2*time.Minute, time.Second, "drill "+drill+"'s scratch claim and probe Job to go", func() (bool, error) {
		pvcs, err := e.Kube.CoreV1().PersistentVolumeClaims(ns).List(ctx, sel)
		if err != nil {
			return false, err
		}
		jobs, err := e.Kube.BatchV1().Jobs(ns).List(ctx, sel)
		if err != nil {
			return false, err
		}
		return len(pvcs.Items)+len(jobs.Items) == 0, fmt.Errorf("%d claims and %d Jobs left", len(pvcs.Items), len(jobs.Items))
	})
}

// The rehearsal: a policy backs up a PostgreSQL data directory; a drill restores it
// into a scratch claim on the CSI driver, starts PostgreSQL on it in a pod and counts the rows,
// and the Backup is Verified; the same drill of a tampered archive fails with ChecksumMismatch,
// counts a failed run and leaves no scratch claim; a drill that wants a newer backup fails
// with BackupTooOld without restoring anything; a drill deleted while its probe runs leaves
// nothing behind.
func TestDrillStartsPostgresOnTheRestoredCopy(t *testing.T) {
	t.Parallel()
	e := requireEnv(t)
	c := platformClient(t, e)
	ctx := testContext(t)
	requirePostgres(t, e)
	ns := e.Namespace(t)
	dataDir, rows := postgresClaim(t, e, ns, "pgdata")
	storageDir := e.HostPathPVC(t, ns, platformv1.DefaultStorageClaimName, "2Gi")
	e.Kubectl(t, nil, "-n", ns, "label", "pvc", "pgdata", "app=pg-drill")

	// A policy that runs only when asked.
	policy := &platformv1.BackupPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: "pg", Annotations: map[string]string{platformv1.AnnotationRunNow: "first"}},
		Spec: platformv1.BackupPolicySpec{
			Schedule: "0 3 1 1 *",
			Target:   platformv1.BackupTarget{PVCSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "pg-drill"}}},
		},
	}
	if _, err := c.PlatformV1().BackupPolicies(ns).Create(ctx, policy, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var backup *platformv1.Backup
	Eventually(t, 3*time.Minute, time.Second, "the policy's Backup to complete", func() (bool, error) {
		list, err := c.PlatformV1().Backups(ns).List(ctx, metav1.ListOptions{LabelSelector: platformv1.LabelPolicy + "=pg"})
		if err != nil || len(list.Items) == 0 {
			return false, err
		}
		backup = &list.Items[0]
		if backup.Status.Phase == platformv1.BackupFailed {
			t.Fatalf("Backup %s failed: %+v", backup.Name, backup.Status.Conditions)
		}
		return backup.Status.Phase == platformv1.BackupCompleted, fmt.Errorf("Backup %s is %q", backup.Name, backup.Status.Phase)
	})

	drill := &platformv1.RestoreDrill{
		ObjectMeta: metav1.ObjectMeta{Name: "pg-weekly"},
		Spec: platformv1.RestoreDrillSpec{
			PolicyName: "pg",
			Schedule:   "0 4 1 1 *",
			Probe:      postgresProbe(t, rows),
			Objectives: platformv1.DrillObjectives{
				MaxTimeToRestore: &metav1.Duration{Duration: 10 * time.Minute},
				MaxBackupAge:     &metav1.Duration{Duration: time.Hour},
			},
		},
	}
	if _, err := c.PlatformV1().RestoreDrills(ns).Create(ctx, drill, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	// 1. The drill passes: restored, checked and started.
	d := runDrill(t, c, ns, "pg-weekly", "1")
	dc := expectDrill(t, d, platformv1.DrillSucceeded, platformv1.ReasonDrillPassed)
	if dc.BackupName != backup.Name || dc.SHA256 != backup.Status.Artifact.SHA256 || dc.ProbeExitCode == nil || *dc.ProbeExitCode != 0 ||
		dc.RestoredBytes == 0 || dc.TimeToRestore == nil || d.Status.LastSuccessfulTime == nil {
		t.Errorf("claim drill %+v: want Backup %s (sha256 %s) restored with bytes and a time, probe exit code 0", dc, backup.Name, backup.Status.Artifact.SHA256)
	}
	if want := "pgbench_accounts: " + rows + " rows"; !strings.Contains(dc.ProbeLogTail, want) {
		t.Errorf("probe log tail %q, want the count it wrote to its termination log, %q", dc.ProbeLogTail, want)
	}
	b, err := c.PlatformV1().Backups(ns).Get(ctx, backup.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if v := b.Status.LastVerified; v == nil || v.DrillName != "pg-weekly" || v.Result != platformv1.DrillSucceeded {
		t.Errorf("Backup %s lastVerified = %+v, want the drill's success", b.Name, v)
	}
	verified := columns(e.Kubectl(t, nil, "-n", ns, "get", "backup", b.Name, "--no-headers", "-o", "custom-columns=V:.status.lastVerified.result"))
	if len(verified) != 1 || verified[0] != string(platformv1.DrillSucceeded) {
		t.Errorf("kubectl shows the Backup's verification as %q", verified)
	}
	expectNoDrillObjects(t, e, c, ns, "pg-weekly")
	events, err := e.Kube.CoreV1().Events(ns).List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=pg-weekly,reason=DrillSucceeded"})
	if err != nil || len(events.Items) == 0 {
		t.Errorf("no DrillSucceeded Event (%v)", err)
	} else if msg := events.Items[0].Message; !strings.Contains(msg, "probe passed") {
		t.Errorf("DrillSucceeded says %q, want the probe's verdict", msg)
	}
	if _, err := os.Stat(filepath.Join(dataDir, "postmaster.pid")); err == nil {
		t.Errorf("the source data directory has a postmaster.pid: the drill started PostgreSQL on the source")
	}

	// 2. The archive rots: the same drill fails before anything is written, and cleans up.
	flipByte(t, filepath.Join(storageDir, backup.Status.Artifact.Path), 4096)
	d = runDrill(t, c, ns, "pg-weekly", "2")
	expectDrill(t, d, platformv1.DrillFailed, platformv1.ReasonChecksumMismatch)
	if d.Status.ConsecutiveFailures != 1 {
		t.Errorf("consecutiveFailures = %d, want 1", d.Status.ConsecutiveFailures)
	}
	expectNoDrillObjects(t, e, c, ns, "pg-weekly")
	leader := leaderPod(t, e)
	pod, err := e.Kube.CoreV1().Pods(operatorNamespace).Get(ctx, leader, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	metrics := scrape(t, *pod)
	for _, want := range []string{
		fmt.Sprintf(`backup_operator_drill_runs_total{drill="pg-weekly",namespace="%s",result="failed"} 1`, ns),
		fmt.Sprintf(`backup_operator_drill_runs_total{drill="pg-weekly",namespace="%s",result="succeeded"} 1`, ns),
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("the leader's metrics have no %s", want)
		}
	}

	// 3. A drill that wants a backup newer than any: BackupTooOld, and no Restore at all.
	tooOld := &platformv1.RestoreDrill{
		ObjectMeta: metav1.ObjectMeta{Name: "pg-fresh"},
		Spec: platformv1.RestoreDrillSpec{
			PolicyName: "pg",
			Schedule:   "0 4 1 1 *",
			Objectives: platformv1.DrillObjectives{MaxBackupAge: &metav1.Duration{Duration: time.Second}},
		},
	}
	if _, err := c.PlatformV1().RestoreDrills(ns).Create(ctx, tooOld, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	d = runDrill(t, c, ns, "pg-fresh", "1")
	expectDrill(t, d, platformv1.DrillFailed, platformv1.ReasonBackupTooOld, backup.Name, "more than maxBackupAge 1s")
	restores, err := c.PlatformV1().Restores(ns).List(ctx, metav1.ListOptions{LabelSelector: platformv1.LabelDrill + "=pg-fresh"})
	if err != nil || len(restores.Items) != 0 {
		t.Errorf("a drill of a too-old backup made Restores %v (%v)", restores.Items, err)
	}

	// 4. A drill deleted in the middle of a run: its Restore, scratch claim and probe Job go with
	// it, through their owner references, while the probe still runs. The archive is mended
	// first (flipped back), so that the run gets that far.
	flipByte(t, filepath.Join(storageDir, backup.Status.Artifact.Path), 4096)
	slow := &platformv1.RestoreDrill{
		ObjectMeta: metav1.ObjectMeta{Name: "pg-deleted"},
		Spec: platformv1.RestoreDrillSpec{
			PolicyName: "pg",
			Schedule:   "0 4 1 1 *",
			Probe: &platformv1.DrillProbe{
				Image: postgresImage, Command: []string{"sleep", "600"},
				SecurityContext: &corev1.SecurityContext{RunAsNonRoot: ptr.To(true)},
			},
		},
	}
	if _, err := c.PlatformV1().RestoreDrills(ns).Create(ctx, slow, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	patch := fmt.Sprintf(`{"metadata":{"annotations":{%q:"1"}}}`, platformv1.AnnotationRunNow)
	if _, err := c.PlatformV1().RestoreDrills(ns).Patch(ctx, "pg-deleted", types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	sel := metav1.ListOptions{LabelSelector: platformv1.LabelDrill + "=pg-deleted"}
	Eventually(t, 4*time.Minute, time.Second, "drill pg-deleted's probe to run", func() (bool, error) {
		d, err := c.PlatformV1().RestoreDrills(ns).Get(ctx, "pg-deleted", metav1.GetOptions{})
		if err != nil || d.Status.LastRun == nil || len(d.Status.LastRun.Claims) == 0 {
			return false, err
		}
		if d.Status.LastRun.CompletionTime != nil {
			t.Fatalf("drill pg-deleted ended before its probe was seen running: %+v", d.Status.LastRun)
		}
		pods, err := e.Kube.CoreV1().Pods(ns).List(ctx, sel)
		if err != nil {
			return false, err
		}
		for _, p := range pods.Items {
			if strings.HasSuffix(p.Labels["job-name"], "-probe") && p.Status.Phase == corev1.PodRunning {
				return true, nil
			}
		}
		return false, fmt.Errorf("stage %s, %d pods", d.Status.LastRun.Claims[0].Stage, len(pods.Items))
	})
	if err := c.PlatformV1().RestoreDrills(ns).Delete(ctx, "pg-deleted", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	expectNoDrillObjects(t, e, c, ns, "pg-deleted")
	Eventually(t, time.Minute, time.Second, "drill pg-deleted's Restore to go", func() (bool, error) {
		list, err := c.PlatformV1().Restores(ns).List(ctx, sel)
		if err != nil {
			return false, err
		}
		return len(list.Items) == 0, fmt.Errorf("%d Restores left", len(list.Items))
	})
}
