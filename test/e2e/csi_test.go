//go:build e2e

package e2e

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/utils/ptr"
)

// The local node's CSI driver and its classes (hack/local-cluster.sh).
const (
	csiDriverName    = "btrfs.csi.platform.example.com"
	csiStorageClass  = "local-csi"
	csiSnapshotClass = "local-csi-snapshots"
	// csiAgentImage is the operator's image, imported into the node by make
	// deploy; its agent writes files (archives) into a claim and reads one.
	csiAgentImage = "backup-operator:dev"
	// btrfsSubvolumeInode is the inode number of every btrfs subvolume's root.
	btrfsSubvolumeInode = 256
)

var (
	volumeSnapshotsGVR        = schema.GroupVersionResource{Group: "snapshot.storage.k8s.io", Version: "v1", Resource: "volumesnapshots"}
	volumeSnapshotContentsGVR = schema.GroupVersionResource{Group: "snapshot.storage.k8s.io", Version: "v1", Resource: "volumesnapshotcontents"}
)

// TestCSIProvisioningAndSnapshots checks the node's CSI driver with the real
// sidecars: a claim without a class is provisioned dynamically by the default
// class (a btrfs subvolume), a pod writes a file into it, a VolumeSnapshot of
// it becomes ready, a file written after that is not in a claim restored
// from the snapshot (a pod reads it), and deleting the snapshot and the
// claims removes the VolumeSnapshotContent, the PVs and the subvolumes.
//
// The subvolumes are checked on the node (this machine) under $E2E_CSI_ROOT,
// which make e2e sets to the driver's root; without it those checks are left out.
func TestCSIProvisioningAndSnapshots(t *testing.T) {
	t.Parallel()
	e := requireEnv(t)
	ctx := testContext(t)
	sc, err := e.Kube.StorageV1().StorageClasses().Get(ctx, csiStorageClass, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		t.Skipf("no StorageClass %s: this cluster has no local CSI driver (hack/local-cluster.sh up makes one)", csiStorageClass)
	}
	if err != nil {
		t.Fatal(err)
	}
	if sc.Annotations["storageclass.kubernetes.io/is-default-class"] != "true" || sc.Provisioner != csiDriverName {
		t.Fatalf("StorageClass %s: provisioner %s, annotations %v; want the default class of %s", csiStorageClass, sc.Provisioner, sc.Annotations, csiDriverName)
	}
	root := os.Getenv("E2E_CSI_ROOT")
	if root == "" {
		t.Log("E2E_CSI_ROOT is not set: the subvolumes on the node are not checked")
	}
	ns := e.Namespace(t)
	out := csiOutputDir(t, ns)

	// A claim without storageClassName gets the default class and a subvolume.
	createCSIClaim(t, e, ns, "data", nil)
	pv := waitCSIClaimBound(t, e, ns, "data")
	volume := pv.Spec.CSI.VolumeHandle
	if root != "" {
		requireSubvolume(t, filepath.Join(root, "volumes", volume))
	}
	runCSIAgentPod(t, e, ns, "write-first", "data", false, out, "backup", "--source", "/etc", "--output", "/data/first.tar")

	// A snapshot of it, with the default VolumeSnapshotClass.
	snap := Object(t, `
apiVersion: snapshot.storage.k8s.io/v1
kind: VolumeSnapshot
metadata: {name: snap}
spec:
  source: {persistentVolumeClaimName: data}
`)
	if _, err := e.Create(ctx, volumeSnapshotsGVR, ns, snap); err != nil {
		t.Fatalf("creating VolumeSnapshot: %v", err)
	}
	var content, snapshotHandle string
	Eventually(t, 2*time.Minute, 500*time.Millisecond, "VolumeSnapshot "+ns+"/snap to be readyToUse", func() (bool, error) {
		s, err := e.Dynamic.Resource(volumeSnapshotsGVR).Namespace(ns).Get(ctx, "snap", metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		if msg, found, _ := unstructured.NestedString(s.Object, "status", "error", "message"); found {
			return false, fmt.Errorf("snapshot error: %s", msg)
		}
		ready, _, _ := unstructured.NestedBool(s.Object, "status", "readyToUse")
		content, _, _ = unstructured.NestedString(s.Object, "status", "boundVolumeSnapshotContentName")
		class, _, _ := unstructured.NestedString(s.Object, "spec", "volumeSnapshotClassName")
		if ready && class != csiSnapshotClass {
			t.Fatalf("snapshot class %q, want the default %s", class, csiSnapshotClass)
		}
		return ready, fmt.Errorf("readyToUse %t", ready)
	})
	c, err := e.Dynamic.Resource(volumeSnapshotContentsGVR).Get(ctx, content, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	snapshotHandle, _, _ = unstructured.NestedString(c.Object, "status", "snapshotHandle")
	if root != "" {
		requireSubvolume(t, filepath.Join(root, "snapshots", snapshotHandle))
		if _, err := exec.LookPath("btrfs"); err == nil {
			got, err := exec.Command("btrfs", "property", "get", "-ts", filepath.Join(root, "snapshots", snapshotHandle), "ro").CombinedOutput()
			if err != nil || strings.TrimSpace(string(got)) != "ro=true" {
				t.Errorf("snapshot subvolume: btrfs property get ro: %q, %v; want ro=true", got, err)
			}
		}
	}

	// Written after the snapshot was ready: must not be in the restored claim.
	runCSIAgentPod(t, e, ns, "write-second", "data", false, out, "backup", "--source", "/etc", "--output", "/data/second.tar")

	createCSIClaim(t, e, ns, "restored", &corev1.TypedLocalObjectReference{
		APIGroup: ptr.To("snapshot.storage.k8s.io"), Kind: "VolumeSnapshot", Name: "snap",
	})
	restoredPV := waitCSIClaimBound(t, e, ns, "restored")
	runCSIAgentPod(t, e, ns, "read-restored", "restored", true, out, "backup", "--source", "/data", "--output", "/out/restored.tar")
	names := tarNames(t, filepath.Join(out, "restored.tar"))
	if !names["first.tar"] || names["second.tar"] {
		t.Fatalf("the pod saw %v in the claim restored from the snapshot; want first.tar and not second.tar", names)
	}

	// Deleting the snapshot and the claims removes the content, the PVs and the subvolumes.
	for _, pod := range []string{"write-first", "write-second", "read-restored"} {
		if err := e.Kube.CoreV1().Pods(ns).Delete(ctx, pod, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			t.Fatal(err)
		}
	}
	if err := e.Dynamic.Resource(volumeSnapshotsGVR).Namespace(ns).Delete(ctx, "snap", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, claim := range []string{"data", "restored"} {
		if err := e.Kube.CoreV1().PersistentVolumeClaims(ns).Delete(ctx, claim, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	Eventually(t, 2*time.Minute, time.Second, "the VolumeSnapshotContent, the PVs and the subvolumes to be gone", func() (bool, error) {
		if _, err := e.Dynamic.Resource(volumeSnapshotContentsGVR).Get(ctx, content, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			return false, fmt.Errorf("VolumeSnapshotContent %s: %v", content, err)
		}
		for _, name := range []string{pv.Name, restoredPV.Name} {
			if _, err := e.Kube.CoreV1().PersistentVolumes().Get(ctx, name, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
				return false, fmt.Errorf("PV %s: %v", name, err)
			}
		}
		if root != "" {
			for _, p := range []string{
				filepath.Join(root, "volumes", volume),
				filepath.Join(root, "volumes", restoredPV.Spec.CSI.VolumeHandle),
				filepath.Join(root, "snapshots", snapshotHandle),
			} {
				if _, err := os.Lstat(p); !errors.Is(err, os.ErrNotExist) {
					return false, fmt.Errorf("%s is still there (%v)", p, err)
				}
			}
		}
		return true, nil
	})
}

// csiOutputDir is a directory on the node for the pods' output, under
// $E2E_HOSTPATH_DIR like the hostPath volumes, removed when the test ends.
func csiOutputDir(t *testing.T, ns string) string {
	t.Helper()
	base := os.Getenv("E2E_HOSTPATH_DIR")
	if base == "" {
		base = filepath.Join(os.TempDir(), "backup-operator-e2e")
	}
	dir := filepath.Join(base, ns, "csi-out")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// createCSIClaim creates a 1Gi ReadWriteOnce claim without a storageClassName
// (so the default class applies), from dataSource if it is not nil.
func createCSIClaim(t *testing.T, e *Env, ns, name string, dataSource *corev1.TypedLocalObjectReference) {
	t.Helper()
	pvc := &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			Resources:   corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")}},
			DataSource:  dataSource,
		},
	}
	if _, err := e.Kube.CoreV1().PersistentVolumeClaims(ns).Create(testContext(t), pvc, metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating PVC %s/%s: %v", ns, name, err)
	}
}

// waitCSIClaimBound waits until the claim is Bound to a PV of the CSI driver
// in the default class, and returns the PV.
func waitCSIClaimBound(t *testing.T, e *Env, ns, name string) *corev1.PersistentVolume {
	t.Helper()
	ctx := testContext(t)
	var pvc *corev1.PersistentVolumeClaim
	Eventually(t, 2*time.Minute, 500*time.Millisecond, "PVC "+ns+"/"+name+" to be Bound", func() (bool, error) {
		var err error
		pvc, err = e.Kube.CoreV1().PersistentVolumeClaims(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		return pvc.Status.Phase == corev1.ClaimBound, fmt.Errorf("phase %s", pvc.Status.Phase)
	})
	if got := ptr.Deref(pvc.Spec.StorageClassName, ""); got != csiStorageClass {
		t.Fatalf("PVC %s/%s has class %q, want the default %s", ns, name, got, csiStorageClass)
	}
	pv, err := e.Kube.CoreV1().PersistentVolumes().Get(ctx, pvc.Spec.VolumeName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if pv.Spec.CSI == nil || pv.Spec.CSI.Driver != csiDriverName || pv.Spec.CSI.VolumeHandle == "" {
		t.Fatalf("PV %s of %s/%s is not a volume of %s: %+v", pv.Name, ns, name, csiDriverName, pv.Spec.PersistentVolumeSource)
	}
	return pv
}

// runCSIAgentPod runs `backup-controller agent ARGS...` as root in a pod with
// the claim at /data (read-only if readOnly) and the node directory out at
// /out, and waits until it has succeeded.
func runCSIAgentPod(t *testing.T, e *Env, ns, name, claim string, readOnly bool, out string, args ...string) {
	t.Helper()
	ctx := testContext(t)
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: corev1.PodSpec{
			RestartPolicy:                 corev1.RestartPolicyNever,
			TerminationGracePeriodSeconds: ptr.To[int64](5),
			Containers: []corev1.Container{{
				Name:            "agent",
				Image:           csiAgentImage,
				ImagePullPolicy: corev1.PullNever,
				Command:         append([]string{"/backup-controller", "agent"}, args...),
				SecurityContext: &corev1.SecurityContext{RunAsUser: ptr.To[int64](0)},
				VolumeMounts: []corev1.VolumeMount{
					{Name: "data", MountPath: "/data", ReadOnly: readOnly},
					{Name: "out", MountPath: "/out"},
				},
			}},
			Volumes: []corev1.Volume{
				{Name: "data", VolumeSource: corev1.VolumeSource{
					PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: claim, ReadOnly: readOnly},
				}},
				{Name: "out", VolumeSource: corev1.VolumeSource{
					HostPath: &corev1.HostPathVolumeSource{Path: out, Type: ptr.To(corev1.HostPathDirectory)},
				}},
			},
		},
	}
	if _, err := e.Kube.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating pod %s/%s: %v", ns, name, err)
	}
	Eventually(t, 2*time.Minute, time.Second, "pod "+ns+"/"+name+" to succeed", func() (bool, error) {
		p, err := e.Kube.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		for _, cs := range p.Status.ContainerStatuses {
			if term := cs.State.Terminated; term != nil && term.ExitCode != 0 {
				t.Fatalf("pod %s/%s failed with exit code %d: %s", ns, name, term.ExitCode, term.Message)
			}
			if cs.State.Waiting != nil {
				return false, fmt.Errorf("waiting: %s: %s", cs.State.Waiting.Reason, cs.State.Waiting.Message)
			}
		}
		return p.Status.Phase == corev1.PodSucceeded, fmt.Errorf("phase %s", p.Status.Phase)
	})
}

// requireSubvolume fails the test unless p is the root of a btrfs subvolume.
func requireSubvolume(t *testing.T, p string) {
	t.Helper()
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatalf("subvolume %s: %v", p, err)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok || !fi.IsDir() || st.Ino != btrfsSubvolumeInode {
		t.Fatalf("%s is not the root of a btrfs subvolume", p)
	}
}

// tarNames returns the base names of the regular files in a tar archive.
func tarNames(t *testing.T, file string) map[string]bool {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	names := map[string]bool{}
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return names
		}
		if err != nil {
			t.Fatalf("reading %s: %v", file, err)
		}
		if h.Typeflag == tar.TypeReg {
			names[path.Base(h.Name)] = true
		}
	}
}
