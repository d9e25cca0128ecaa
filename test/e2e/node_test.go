//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

// localImage is an image every node of the local cluster has without a
// registry: its pod sandbox image (hack/pause), which waits for SIGTERM.
const localImage = "backup-operator-pause:dev"

// storageClass is the class of the local cluster's static hostPath volumes.
const storageClass = "local-hostpath"

// HostPathPV creates a hostPath PersistentVolume reserved for the claim ns/name
// (its claimRef names the claim), so that a PVC of that name in the class
// local-hostpath binds to it at once when something creates it later, e.g. a
// Restore that creates its target claim. The directory is on the node, which is
// this machine: under $E2E_HOSTPATH_DIR (set by make e2e) or the temp dir. It
// returns the directory; the PV and the directory are removed when the test ends.
func (e *Env) HostPathPV(t *testing.T, ns, name, size string) string {
	t.Helper()
	ctx := testContext(t)
	base := os.Getenv("E2E_HOSTPATH_DIR")
	if base == "" {
		base = filepath.Join(os.TempDir(), "backup-operator-e2e")
	}
	dir := filepath.Join(base, ns, name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	// World-writable like a dynamic local-path volume, so non-root pods can write.
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	pvName := fmt.Sprintf("e2e-%s-%s", ns, name)
	pv := &corev1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{Name: pvName, Labels: map[string]string{"e2e.platform.example.com/test": "true"}},
		Spec: corev1.PersistentVolumeSpec{
			Capacity:                      corev1.ResourceList{corev1.ResourceStorage: resource.MustParse(size)},
			AccessModes:                   []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			PersistentVolumeReclaimPolicy: corev1.PersistentVolumeReclaimRetain,
			StorageClassName:              storageClass,
			ClaimRef:                      &corev1.ObjectReference{Namespace: ns, Name: name},
			PersistentVolumeSource: corev1.PersistentVolumeSource{
				HostPath: &corev1.HostPathVolumeSource{Path: dir, Type: ptr.To(corev1.HostPathDirectory)},
			},
		},
	}
	if _, err := e.Kube.CoreV1().PersistentVolumes().Create(ctx, pv, metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating PV %s: %v", pvName, err)
	}
	t.Cleanup(func() {
		err := e.Kube.CoreV1().PersistentVolumes().Delete(context.Background(), pvName, metav1.DeleteOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			t.Errorf("deleting PV %s: %v", pvName, err)
		}
		os.RemoveAll(dir)
	})
	return dir
}

// HostPathPVC creates a hostPath PersistentVolume (HostPathPV) and the PVC
// bound to it at once (the claim's volumeName names the PV), like
// `hack/local-cluster.sh pvc`, and waits until it is Bound. It returns the
// volume's directory on the node.
func (e *Env) HostPathPVC(t *testing.T, ns, name, size string) string {
	t.Helper()
	ctx := testContext(t)
	dir := e.HostPathPV(t, ns, name, size)
	qty := resource.MustParse(size)
	pvc := &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes:      []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			StorageClassName: ptr.To(storageClass),
			VolumeName:       fmt.Sprintf("e2e-%s-%s", ns, name),
			Resources:        corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: qty}},
		},
	}
	if _, err := e.Kube.CoreV1().PersistentVolumeClaims(ns).Create(ctx, pvc, metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating PVC %s/%s: %v", ns, name, err)
	}
	Eventually(t, time.Minute, 500*time.Millisecond, "PVC "+ns+"/"+name+" to be Bound", func() (bool, error) {
		got, err := e.Kube.CoreV1().PersistentVolumeClaims(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		return got.Status.Phase == corev1.ClaimBound, fmt.Errorf("phase %s", got.Status.Phase)
	})
	return dir
}

// TestNodeRunsPodsWithVolumes checks the node itself: a pod with a local image
// and a hostPath PVC is scheduled, gets its volume and runs, and goes away.
func TestNodeRunsPodsWithVolumes(t *testing.T) {
	t.Parallel()
	e := requireEnv(t)
	ctx := testContext(t)
	ns := e.Namespace(t)
	e.HostPathPVC(t, ns, "data", "64Mi")
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "smoke", Namespace: ns},
		Spec: corev1.PodSpec{
			TerminationGracePeriodSeconds: ptr.To[int64](5),
			Containers: []corev1.Container{{
				Name:            "smoke",
				Image:           localImage,
				ImagePullPolicy: corev1.PullNever,
				VolumeMounts:    []corev1.VolumeMount{{Name: "data", MountPath: "/data", ReadOnly: true}},
				SecurityContext: &corev1.SecurityContext{
					RunAsNonRoot:             ptr.To(true),
					AllowPrivilegeEscalation: ptr.To(false),
					ReadOnlyRootFilesystem:   ptr.To(true),
					Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
				},
			}},
			Volumes: []corev1.Volume{{Name: "data", VolumeSource: corev1.VolumeSource{
				PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "data", ReadOnly: true},
			}}},
		},
	}
	if _, err := e.Kube.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	Eventually(t, 2*time.Minute, time.Second, "pod "+ns+"/smoke to run", func() (bool, error) {
		p, err := e.Kube.CoreV1().Pods(ns).Get(ctx, "smoke", metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		for _, cs := range p.Status.ContainerStatuses {
			if cs.State.Waiting != nil {
				return false, fmt.Errorf("waiting: %s: %s", cs.State.Waiting.Reason, cs.State.Waiting.Message)
			}
		}
		return p.Status.Phase == corev1.PodRunning, fmt.Errorf("phase %s", p.Status.Phase)
	})
	if err := e.Kube.CoreV1().Pods(ns).Delete(ctx, "smoke", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	Eventually(t, time.Minute, time.Second, "pod "+ns+"/smoke to be gone", func() (bool, error) {
		_, err := e.Kube.CoreV1().Pods(ns).Get(ctx, "smoke", metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return true, nil
		}
		return false, err
	})
}
