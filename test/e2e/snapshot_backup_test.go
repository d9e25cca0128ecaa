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
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"

	platformv1 "platform.example.com/backup-operator/pkg/apis/platform/v1"
	"platform.example.com/backup-operator/pkg/generated/clientset/versioned"
)

// csiVolumeDir is the directory on this node that holds the CSI claim's volume, so the test can
// write into the live volume directly. It skips the test where the driver's root is unknown.
func csiVolumeDir(t *testing.T, pv *corev1.PersistentVolume) string {
	t.Helper()
	root := os.Getenv("E2E_CSI_ROOT")
	if root == "" {
		t.Skip("E2E_CSI_ROOT is not set (make e2e sets it): the test writes into the CSI volume on the node")
	}
	return filepath.Join(root, "volumes", pv.Spec.CSI.VolumeHandle)
}

// requireCSI skips the test on a cluster without the local node's CSI driver and snapshots.
func requireCSI(t *testing.T, e *Env) {
	t.Helper()
	if _, err := e.Kube.StorageV1().StorageClasses().Get(testContext(t), csiStorageClass, metav1.GetOptions{}); apierrors.IsNotFound(err) {
		t.Skipf("no StorageClass %s: this cluster has no local CSI driver (hack/local-cluster.sh up makes one)", csiStorageClass)
	}
}

// pendingStorageClaim creates the default storage claim bound in advance to a hostPath volume
// that does not exist yet, so the Backup's pod cannot be scheduled until bindStorage makes it.
func pendingStorageClaim(t *testing.T, e *Env, ns string) (bindStorage func() string) {
	t.Helper()
	pvc := &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: platformv1.DefaultStorageClaimName, Namespace: ns},
		Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes:      []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			StorageClassName: ptr.To(storageClass),
			VolumeName:       fmt.Sprintf("e2e-%s-%s", ns, platformv1.DefaultStorageClaimName),
			Resources:        corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")}},
		},
	}
	if _, err := e.Kube.CoreV1().PersistentVolumeClaims(ns).Create(testContext(t), pvc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	return func() string { return e.HostPathPV(t, ns, platformv1.DefaultStorageClaimName, "1Gi") }
}

func createSnapshotBackup(t *testing.T, c versioned.Interface, ns, name, pvc string, source platformv1.BackupSource) {
	t.Helper()
	source.CopyMethod = platformv1.CopyMethodSnapshot
	b := &platformv1.Backup{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: platformv1.BackupSpec{PVCName: pvc}}
	b.Spec.Source = &source
	if _, err := c.PlatformV1().Backups(ns).Create(testContext(t), b, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// waitSnapshotRead waits until the Backup's snapshot is ready and its Job exists, and returns it.
func waitSnapshotRead(t *testing.T, c versioned.Interface, ns, name string) *platformv1.Backup {
	t.Helper()
	var b *platformv1.Backup
	Eventually(t, 2*time.Minute, 500*time.Millisecond, "the snapshot of Backup "+name+" to be ready and its Job made", func() (bool, error) {
		var err error
		if b, err = c.PlatformV1().Backups(ns).Get(testContext(t), name, metav1.GetOptions{}); err != nil {
			return false, err
		}
		if b.Status.Phase.Final() {
			t.Fatalf("Backup %s ended %s before its snapshot was read: %+v", name, b.Status.Phase, b.Status.Conditions)
		}
		ready := meta.IsStatusConditionTrue(b.Status.Conditions, platformv1.ConditionSnapshotReady)
		return ready && b.Status.JobName != "", fmt.Errorf("SnapshotReady %t, Job %q", ready, b.Status.JobName)
	})
	return b
}

// expectNoSnapshotLeftovers waits until ns holds no VolumeSnapshot (but keep), no claim made
// from one, and no VolumeSnapshotContent of one of its snapshots.
func expectNoSnapshotLeftovers(t *testing.T, e *Env, ns string, keep ...string) {
	t.Helper()
	ctx := testContext(t)
	Eventually(t, 2*time.Minute, time.Second, "the snapshots and temporary claims of "+ns+" to be gone", func() (bool, error) {
		snaps, err := e.Dynamic.Resource(volumeSnapshotsGVR).Namespace(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, err
		}
		for _, s := range snaps.Items {
			if !contains(keep, s.GetName()) {
				return false, fmt.Errorf("VolumeSnapshot %s is still there", s.GetName())
			}
		}
		claims, err := e.Kube.CoreV1().PersistentVolumeClaims(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, err
		}
		for _, cl := range claims.Items {
			if cl.Spec.DataSource != nil && cl.Spec.DataSource.Kind == "VolumeSnapshot" {
				return false, fmt.Errorf("claim %s made from VolumeSnapshot %s is still there", cl.Name, cl.Spec.DataSource.Name)
			}
		}
		contents, err := e.Dynamic.Resource(volumeSnapshotContentsGVR).List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, err
		}
		for _, content := range contents.Items {
			refNS, _, _ := unstructured.NestedString(content.Object, "spec", "volumeSnapshotRef", "namespace")
			refName, _, _ := unstructured.NestedString(content.Object, "spec", "volumeSnapshotRef", "name")
			if refNS == ns && !contains(keep, refName) {
				return false, fmt.Errorf("VolumeSnapshotContent %s of %s/%s is still there", content.GetName(), refNS, refName)
			}
		}
		return true, nil
	})
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// csiClaimSetup is a namespace with the claim "data" provisioned by the CSI class, for the
// tests of snapshot backups; it returns the claim's volume.
func csiClaimSetup(t *testing.T) (*Env, versioned.Interface, string, *corev1.PersistentVolume) {
	t.Helper()
	e := requireEnv(t)
	requireCSI(t, e)
	c := platformClient(t, e)
	ns := e.Namespace(t)
	createCSIClaim(t, e, ns, "data", nil)
	return e, c, ns, waitCSIClaimBound(t, e, ns, "data")
}

// TestSnapshotBackupReadsTheClaimAsItWasWhenCut backs up a claim of the CSI class with
// copyMethod Snapshot. The Backup's pod waits for its storage, and says why; meanwhile a file
// is written to the live claim after the snapshot is ready. The archive holds the claim as it
// was when the snapshot was cut, restores byte-identical into a claim the Restore provisions,
// and nothing of the snapshot is left behind.
func TestSnapshotBackupReadsTheClaimAsItWasWhenCut(t *testing.T) {
	t.Parallel()
	e, c, ns, pv := csiClaimSetup(t)
	ctx := testContext(t)
	dataDir := csiVolumeDir(t, pv)
	writeTree(t, dataDir)
	want := snapshot(t, dataDir)
	bindStorage := pendingStorageClaim(t, e, ns)

	createSnapshotBackup(t, c, ns, "nightly", "data", platformv1.BackupSource{})
	b := waitSnapshotRead(t, c, ns, "nightly")
	if b.Status.Snapshot == nil || b.Status.Snapshot.ClassName != csiSnapshotClass || b.Status.Snapshot.TemporaryClaimName == "" {
		t.Fatalf("snapshot status %+v, want the default class %s and a temporary claim", b.Status.Snapshot, csiSnapshotClass)
	}
	// The pod waits for the storage claim, and the Backup says why within seconds.
	Eventually(t, 2*time.Minute, time.Second, "the Backup to say why its pod cannot start", func() (bool, error) {
		got, err := c.PlatformV1().Backups(ns).Get(ctx, "nightly", metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		cond := meta.FindStatusCondition(got.Status.Conditions, platformv1.ConditionSucceeded)
		return cond != nil && strings.Contains(cond.Message, "cannot start") &&
			strings.Contains(cond.Message, "PersistentVolumeClaim backup-storage is Pending, not bound to a volume"), fmt.Errorf("condition %+v", cond)
	})

	// Written to the live claim after the snapshot was cut: not in the backup.
	if err := os.WriteFile(filepath.Join(dataDir, "after-the-snapshot.txt"), []byte("too late\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	bindStorage()
	b = waitBackup(t, c, ns, "nightly", platformv1.BackupCompleted)
	if !meta.IsStatusConditionTrue(b.Status.Conditions, platformv1.ConditionDataUploaded) {
		t.Fatalf("conditions %+v, want DataUploaded True", b.Status.Conditions)
	}
	st := b.Status.Snapshot
	if st.ReadyTime == nil || st.SnapshotDuration == nil || st.RestoreSize == nil || st.Kept {
		t.Fatalf("snapshot status %+v, want its ready time, duration and restoreSize, and not kept", st)
	}
	expectNoSnapshotLeftovers(t, e, ns)

	// Restored into a claim the Restore provisions with the default (CSI) class.
	createRestore(t, c, ns, "rehearsal", "nightly", platformv1.RestoreTarget{
		ClaimName: "restored",
		Create:    &platformv1.TargetClaimTemplate{},
	}, "")
	waitRestore(t, c, ns, "rehearsal", platformv1.RestoreCompleted, "")
	// after-the-snapshot.txt would show as restored but never backed up.
	expectSameTree(t, want, snapshot(t, csiVolumeDir(t, waitCSIClaimBound(t, e, ns, "restored"))))
}

// TestSnapshotBackupWithAMissingClassFails names a VolumeSnapshotClass that does not exist.
func TestSnapshotBackupWithAMissingClassFails(t *testing.T) {
	t.Parallel()
	e, c, ns, _ := csiClaimSetup(t)
	e.HostPathPVC(t, ns, platformv1.DefaultStorageClaimName, "1Gi")

	createSnapshotBackup(t, c, ns, "nightly", "data", platformv1.BackupSource{VolumeSnapshotClassName: "no-such-class"})
	b := waitBackup(t, c, ns, "nightly", platformv1.BackupFailed)
	cond := meta.FindStatusCondition(b.Status.Conditions, platformv1.ConditionSucceeded)
	if cond.Reason != platformv1.ReasonSnapshotClassNotFound || !strings.Contains(cond.Message, "VolumeSnapshotClass no-such-class does not exist") {
		t.Fatalf("condition %+v, want %s naming the class", cond, platformv1.ReasonSnapshotClassNotFound)
	}
	expectNoSnapshotLeftovers(t, e, ns)
}

// TestDeletingASnapshotBackupMidRunCleansUp deletes a Backup whose snapshot is ready and whose
// pod waits for its storage: the snapshot (kept otherwise), its content and the temporary claim
// go with it.
func TestDeletingASnapshotBackupMidRunCleansUp(t *testing.T) {
	t.Parallel()
	e, c, ns, _ := csiClaimSetup(t)
	ctx := testContext(t)
	bindStorage := pendingStorageClaim(t, e, ns)

	createSnapshotBackup(t, c, ns, "nightly", "data", platformv1.BackupSource{KeepSnapshot: true})
	waitSnapshotRead(t, c, ns, "nightly")
	if err := c.PlatformV1().Backups(ns).Delete(ctx, "nightly", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	// The archive's cleanup Job mounts the storage too.
	bindStorage()
	Eventually(t, 2*time.Minute, time.Second, "Backup nightly to be gone", func() (bool, error) {
		_, err := c.PlatformV1().Backups(ns).Get(ctx, "nightly", metav1.GetOptions{})
		return apierrors.IsNotFound(err), err
	})
	expectNoSnapshotLeftovers(t, e, ns)
}

// TestSnapshotBackupSurvivesAControllerRestart kills the leading controller while a Backup's
// snapshot is ready and its pod waits: the next leader adopts the snapshot, the temporary claim
// and the Job by their names, completes the Backup and leaves nothing behind.
func TestSnapshotBackupSurvivesAControllerRestart(t *testing.T) {
	e, c, ns, _ := csiClaimSetup(t)
	bindStorage := pendingStorageClaim(t, e, ns)
	createSnapshotBackup(t, c, ns, "nightly", "data", platformv1.BackupSource{})
	waitSnapshotRead(t, c, ns, "nightly")

	killController(t, leaderPod(t, e))
	bindStorage()
	b := waitBackup(t, c, ns, "nightly", platformv1.BackupCompleted)
	if !meta.IsStatusConditionTrue(b.Status.Conditions, platformv1.ConditionDataUploaded) {
		t.Fatalf("conditions %+v, want DataUploaded True", b.Status.Conditions)
	}
	expectNoSnapshotLeftovers(t, e, ns)
	waitControllerReady(t, e)
}

// TestSnapshotPolicyKeepsItsSnapshotsWithItsBackups runs a policy with copyMethod Snapshot,
// keepSnapshot and keepLast 1 twice: the pruned Backup's snapshot goes with it, the kept one's
// stays until its Backup goes.
func TestSnapshotPolicyKeepsItsSnapshotsWithItsBackups(t *testing.T) {
	t.Parallel()
	e, c, ns, _ := csiClaimSetup(t)
	ctx := testContext(t)
	e.HostPathPVC(t, ns, platformv1.DefaultStorageClaimName, "1Gi")
	if _, err := e.Kube.CoreV1().PersistentVolumeClaims(ns).Patch(ctx, "data", types.MergePatchType,
		[]byte(`{"metadata":{"labels":{"app":"snapshot-policy"}}}`), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	keep := int32(1)
	policy := &platformv1.BackupPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: "snapshots"},
		Spec: platformv1.BackupPolicySpec{
			Schedule:  "0 0 1 1 *", // runs only when asked to
			Retention: &platformv1.RetentionPolicy{KeepLast: &keep},
			Target:    platformv1.BackupTarget{PVCSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "snapshot-policy"}}},
		},
	}
	policy.Spec.Source = &platformv1.BackupSource{CopyMethod: platformv1.CopyMethodSnapshot, KeepSnapshot: true}
	if _, err := c.PlatformV1().BackupPolicies(ns).Create(ctx, policy, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// runNow asks for a run and returns its Completed Backup: the one not named in earlier.
	runNow := func(value string, earlier ...string) *platformv1.Backup {
		t.Helper()
		if _, err := c.PlatformV1().BackupPolicies(ns).Patch(ctx, policy.Name, types.MergePatchType,
			[]byte(`{"metadata":{"annotations":{"`+platformv1.AnnotationRunNow+`":"`+value+`"}}}`), metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
		var done *platformv1.Backup
		Eventually(t, 3*time.Minute, time.Second, "the run "+value+" to complete", func() (bool, error) {
			list, err := c.PlatformV1().Backups(ns).List(ctx, metav1.ListOptions{})
			if err != nil {
				return false, err
			}
			for i, b := range list.Items {
				if b.Status.Phase == platformv1.BackupFailed {
					t.Fatalf("Backup %s failed: %+v", b.Name, b.Status.Conditions)
				}
				if b.Status.Phase == platformv1.BackupCompleted && !contains(earlier, b.Name) {
					done = &list.Items[i]
				}
			}
			return done != nil, fmt.Errorf("%d Backups, none of the run Completed", len(list.Items))
		})
		if platformv1.CopyMethodOf(done.Spec.BackupRunSettings) != platformv1.CopyMethodSnapshot {
			t.Fatalf("the policy's Backup %s has source %+v, want the policy's copyMethod Snapshot", done.Name, done.Spec.Source)
		}
		return done
	}
	first := runNow("first")
	if st := first.Status.Snapshot; st == nil || !st.Kept {
		t.Fatalf("snapshot status %+v, want it kept", st)
	}
	expectNoSnapshotLeftovers(t, e, ns, first.Status.Snapshot.Name)

	second := runNow("second", first.Name)
	var kept *platformv1.Backup
	Eventually(t, 2*time.Minute, time.Second, "retention to keep only the newest Backup", func() (bool, error) {
		list, err := c.PlatformV1().Backups(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, err
		}
		if len(list.Items) != 1 || list.Items[0].Name != second.Name {
			return false, fmt.Errorf("%d Backups", len(list.Items))
		}
		kept = &list.Items[0]
		return true, nil
	})
	expectNoSnapshotLeftovers(t, e, ns, kept.Status.Snapshot.Name)
	if _, err := e.Dynamic.Resource(volumeSnapshotsGVR).Namespace(ns).Get(ctx, kept.Status.Snapshot.Name, metav1.GetOptions{}); err != nil {
		t.Fatalf("the kept Backup's snapshot: %v", err)
	}
}
