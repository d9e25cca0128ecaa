//go:build e2e

package e2e

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	platformv1 "platform.example.com/backup-operator/pkg/apis/platform/v1"
	"platform.example.com/backup-operator/pkg/generated/clientset/versioned"
)

// High availability on the real node: two replicas, one leading; a leader killed while backups
// run is replaced by the standby within the lease duration and nothing runs twice; a stopping
// leader hands over at once; an API server restart is ridden out without a restart.

const (
	leaseName = "backup-operator"
	// leaseDuration and retryPeriod are the Deployment's (the flags' defaults).
	leaseDuration = 15 * time.Second
	retryPeriod   = 2 * time.Second
)

// leaderPod returns the name of the pod that holds the Lease.
func leaderPod(t *testing.T, e *Env) string {
	t.Helper()
	pod, _ := leader(t, e)
	return pod
}

// leader returns the pod that holds the Lease and the holder's identity: the pod name and a
// suffix of the process, so that a restarted container is a new candidate.
func leader(t *testing.T, e *Env) (pod, identity string) {
	t.Helper()
	Eventually(t, time.Minute, 200*time.Millisecond, "a replica to hold the Lease", func() (bool, error) {
		var err error
		pod, identity, err = leaseHolder(t, e)
		return pod != "", err
	})
	return pod, identity
}

func leaseHolder(t *testing.T, e *Env) (pod, identity string, err error) {
	lease, err := e.Kube.CoordinationV1().Leases(operatorNamespace).Get(testContext(t), leaseName, metav1.GetOptions{})
	if err != nil {
		return "", "", err
	}
	if lease.Spec.HolderIdentity == nil || *lease.Spec.HolderIdentity == "" {
		return "", "", fmt.Errorf("the Lease is not held")
	}
	pod, _, _ = strings.Cut(*lease.Spec.HolderIdentity, "_")
	return pod, *lease.Spec.HolderIdentity, nil
}

// scrape reads a controller pod's /metrics over the pod network.
func scrape(t *testing.T, p corev1.Pod) string {
	t.Helper()
	client := &http.Client{Timeout: 5 * time.Second}
	resp, err := client.Get("http://" + p.Status.PodIP + ":8080/metrics")
	if err != nil {
		t.Fatalf("scraping %s: %v", p.Name, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("scraping %s: %d %v", p.Name, resp.StatusCode, err)
	}
	return string(body)
}

// killController sends SIGKILL to the controller process of a pod, found on this node by the
// POD_NAME its environment carries: the process dies without a word, as on a crash or an OOM
// kill, so it releases nothing.
func killController(t *testing.T, pod string) {
	t.Helper()
	procs, err := filepath.Glob("/proc/[0-9]*/environ")
	if err != nil {
		t.Fatal(err)
	}
	killed := 0
	for _, environ := range procs {
		dir := filepath.Dir(environ)
		comm, err := os.ReadFile(filepath.Join(dir, "comm"))
		if err != nil || strings.TrimSpace(string(comm)) != "backup-controll" && strings.TrimSpace(string(comm)) != "backup-controller" {
			continue
		}
		env, err := os.ReadFile(environ)
		if err != nil || !bytes.Contains(append([]byte{0}, env...), []byte("\x00POD_NAME="+pod+"\x00")) {
			continue
		}
		pid, _ := strconv.Atoi(filepath.Base(dir))
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Fatalf("killing the controller of %s (pid %d): %v", pod, pid, err)
		}
		killed++
	}
	if killed != 1 {
		t.Fatalf("found %d controller processes of pod %s on this node, want 1 (the e2e tests run as root on the node)", killed, pod)
	}
}

// fillClaims makes claims data-0..n-1 with a few MiB each, so that their backups take a moment,
// and the storage claim.
func fillClaims(t *testing.T, e *Env, ns string, n int) {
	t.Helper()
	for i := 0; i < n; i++ {
		dir := e.HostPathPVC(t, ns, fmt.Sprintf("data-%d", i), "1Gi")
		blob := make([]byte, 24<<20)
		if _, err := rand.Read(blob); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "blob.bin"), blob, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	e.HostPathPVC(t, ns, platformv1.DefaultStorageClaimName, "4Gi")
}

// checkRanOnce fails unless every Backup of the namespace has exactly one Job, which succeeded
// with its first pod: no backup ran twice, before or after a failover.
func checkRanOnce(t *testing.T, e *Env, c versioned.Interface, ns string) {
	t.Helper()
	ctx := testContext(t)
	backups, err := c.PlatformV1().Backups(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	jobs, err := e.Kube.BatchV1().Jobs(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	byOwner := map[types.UID][]batchv1.Job{}
	for _, j := range jobs.Items {
		if ref := metav1.GetControllerOf(&j); ref != nil && ref.Kind == "Backup" {
			byOwner[ref.UID] = append(byOwner[ref.UID], j)
		}
	}
	for _, b := range backups.Items {
		jobs := byOwner[b.UID]
		if len(jobs) != 1 {
			t.Errorf("Backup %s has %d Jobs, want 1", b.Name, len(jobs))
			continue
		}
		j := jobs[0]
		if j.Status.Succeeded != 1 || j.Status.Failed != 0 {
			t.Errorf("Job %s of Backup %s: %d succeeded, %d failed; want one run that succeeded", j.Name, b.Name, j.Status.Succeeded, j.Status.Failed)
		}
		pods, err := e.Kube.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "batch.kubernetes.io/job-name=" + j.Name})
		if err != nil {
			t.Fatal(err)
		}
		if len(pods.Items) != 1 {
			t.Errorf("Job %s of Backup %s ran %d pods, want 1", j.Name, b.Name, len(pods.Items))
		}
	}
}

// waitPhase waits for a Backup to reach a phase (or a later one).
func waitPhase(t *testing.T, c versioned.Interface, ns, name string, phases ...platformv1.BackupPhase) {
	t.Helper()
	Eventually(t, 2*time.Minute, 200*time.Millisecond, "Backup "+name+" to be "+fmt.Sprint(phases), func() (bool, error) {
		b, err := c.PlatformV1().Backups(ns).Get(testContext(t), name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		for _, p := range phases {
			if b.Status.Phase == p {
				return true, nil
			}
		}
		return false, fmt.Errorf("phase %q", b.Status.Phase)
	})
}

func TestLeaderFailover(t *testing.T) {
	e := requireEnv(t)
	c := platformClient(t, e)
	ctx := testContext(t)
	pods := waitControllerReady(t, e)
	if len(pods) < 2 {
		t.Fatalf("%d controller replicas; failover needs two", len(pods))
	}
	ns := e.Namespace(t)
	fillClaims(t, e, ns, 4)
	for i := 0; i < 2; i++ {
		if _, err := e.Kube.CoreV1().PersistentVolumeClaims(ns).Patch(ctx, fmt.Sprintf("data-%d", i), types.MergePatchType,
			[]byte(`{"metadata":{"labels":{"app":"ha-e2e"}}}`), metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	keep := int32(10)
	policy := &platformv1.BackupPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: "on-demand"},
		Spec: platformv1.BackupPolicySpec{
			Schedule:  "0 3 1 1 *", // not due during the test: runs come from run-now only
			Retention: &platformv1.RetentionPolicy{KeepLast: &keep},
			Target:    platformv1.BackupTarget{PVCSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "ha-e2e"}}},
		},
	}
	if _, err := c.PlatformV1().BackupPolicies(ns).Create(ctx, policy, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	// 1. The leader is killed while backups run. The kubelet restarts its container, which
	// campaigns as a new candidate beside the standby: either may take over, once the Lease
	// of the dead process has expired.
	killedPod, killedIdentity := leader(t, e)
	for i := 0; i < 4; i++ {
		createBackup(t, c, ns, fmt.Sprintf("before-%d", i), fmt.Sprintf("data-%d", i))
	}
	waitPhase(t, c, ns, "before-0", platformv1.BackupRunning, platformv1.BackupCompleted)
	killed := time.Now()
	killController(t, killedPod)
	// Work that arrives while nobody leads: a Backup and a policy's run now.
	createBackup(t, c, ns, "leaderless", "data-2")
	if _, err := c.PlatformV1().BackupPolicies(ns).Patch(ctx, policy.Name, types.MergePatchType,
		[]byte(`{"metadata":{"annotations":{"`+platformv1.AnnotationRunNow+`":"failover"}}}`), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	var successor, successorIdentity string
	Eventually(t, leaseDuration+4*retryPeriod+10*time.Second, 200*time.Millisecond, "a standby to take the Lease of the killed leader", func() (bool, error) {
		var err error
		successor, successorIdentity, err = leaseHolder(t, e)
		if err != nil {
			return false, err
		}
		return successorIdentity != killedIdentity, fmt.Errorf("held by %s", successorIdentity)
	})
	tookOver := time.Since(killed)
	t.Logf("%s took over %s after the leader %s was killed (lease duration %s)", successorIdentity, tookOver.Round(100*time.Millisecond), killedIdentity, leaseDuration)
	// A candidate judges the Lease expired by when it last saw it renewed, and polls every
	// retry period plus up to 1.2 times that in jitter: the takeover comes within the lease
	// duration and two such polls of the death.
	if bound := leaseDuration + 2*time.Duration(2.2*float64(retryPeriod)) + 2*time.Second; tookOver > bound {
		t.Errorf("the standby took over %s after the leader died; the lease duration is %s, the bound %s", tookOver, leaseDuration, bound)
	}
	for _, name := range []string{"before-0", "before-1", "before-2", "before-3", "leaderless"} {
		waitBackup(t, c, ns, name, platformv1.BackupCompleted)
	}
	var fromPolicy []string
	Eventually(t, 2*time.Minute, time.Second, "the run-now asked for while nobody led to complete", func() (bool, error) {
		list, err := c.PlatformV1().Backups(ns).List(ctx, metav1.ListOptions{LabelSelector: platformv1.LabelPolicy + "=" + policy.Name})
		if err != nil {
			return false, err
		}
		fromPolicy = fromPolicy[:0]
		for _, b := range list.Items {
			if b.Status.Phase != platformv1.BackupCompleted {
				return false, fmt.Errorf("Backup %s is %q", b.Name, b.Status.Phase)
			}
			fromPolicy = append(fromPolicy, b.Name)
		}
		return len(fromPolicy) >= 2, fmt.Errorf("%d Backups of the policy", len(fromPolicy))
	})
	if len(fromPolicy) != 2 {
		t.Errorf("one run now of a policy selecting 2 claims made %d Backups, want 2: %v", len(fromPolicy), fromPolicy)
	}
	checkRanOnce(t, e, c, ns)

	// 2. A leader told to stop (a rollout, a drain) finishes its item and releases the Lease:
	// the standby, the restarted replica by now, takes over at once, not after the lease duration.
	waitControllerReady(t, e)
	createBackup(t, c, ns, "during-handover", "data-3")
	stopped := time.Now()
	if err := e.Kube.CoreV1().Pods(operatorNamespace).Delete(ctx, successor, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	var third string
	Eventually(t, leaseDuration, 100*time.Millisecond, "the Lease to pass on from the stopping leader", func() (bool, error) {
		pod, _, err := leaseHolder(t, e)
		if err != nil {
			return false, err
		}
		third = pod
		return pod != successor, fmt.Errorf("held by %s", pod)
	})
	handover := time.Since(stopped)
	t.Logf("the stopping leader %s handed over to %s in %s", successor, third, handover.Round(100*time.Millisecond))
	if handover > leaseDuration/2 {
		t.Errorf("a stopping leader handed over in %s: it did not release the Lease", handover)
	}
	waitBackup(t, c, ns, "during-handover", platformv1.BackupCompleted)
	checkRanOnce(t, e, c, ns)

	// The killed replica was restarted by the kubelet; replace it so the next tests see fresh pods.
	if err := e.Kube.CoreV1().Pods(operatorNamespace).Delete(ctx, killedPod, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
		t.Fatal(err)
	}
	waitControllerReady(t, e)
}

func TestAPIServerRestartIsRiddenOut(t *testing.T) {
	e := requireEnv(t)
	c := platformClient(t, e)
	ctx := testContext(t)
	root, err := repoRoot()
	if err != nil {
		t.Fatal(err)
	}
	before := map[string]int32{}
	for _, p := range waitControllerReady(t, e) {
		for _, cs := range p.Status.ContainerStatuses {
			before[p.Name] += cs.RestartCount
		}
	}
	ns := e.Namespace(t)
	fillClaims(t, e, ns, 2)
	createBackup(t, c, ns, "across-the-restart", "data-0")
	waitPhase(t, c, ns, "across-the-restart", platformv1.BackupRunning, platformv1.BackupCompleted)

	out, err := exec.CommandContext(ctx, filepath.Join(root, "hack", "local-cluster.sh"), "restart-apiserver").CombinedOutput()
	if err != nil {
		t.Fatalf("restarting the API server: %v\n%s", err, out)
	}
	t.Logf("%s", bytes.TrimSpace(out))

	createBackup(t, c, ns, "after-the-restart", "data-1")
	waitBackup(t, c, ns, "across-the-restart", platformv1.BackupCompleted)
	waitBackup(t, c, ns, "after-the-restart", platformv1.BackupCompleted)
	checkRanOnce(t, e, c, ns)

	// The same processes recovered: no pod was replaced, no container restarted.
	after := waitControllerReady(t, e)
	if len(after) != len(before) {
		t.Errorf("%d controller pods after the restart, %d before", len(after), len(before))
	}
	for _, p := range after {
		restarts := int32(0)
		for _, cs := range p.Status.ContainerStatuses {
			restarts += cs.RestartCount
		}
		if n, ok := before[p.Name]; !ok || restarts != n {
			t.Errorf("controller pod %s: %d restarts, %d before the API server restart (present before: %v)", p.Name, restarts, n, ok)
		}
	}
	leaderPod(t, e)
}
