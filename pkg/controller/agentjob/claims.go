package agentjob

import (
	"context"
	"fmt"
	"slices"
	"sort"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// ClaimUser is a pod that holds a claim's volume.
type ClaimUser struct {
	// Pod is the pod's name.
	Pod string
	// NodeName is the node the volume is attached to for the pod.
	NodeName string
	// ReadWrite is true when any of the pod's containers mounts the volume writable.
	ReadWrite bool
	// Running is true when the pod is in phase Running and not being deleted: a pod commands
	// and hooks can run in.
	Running bool
}

// ClaimUsers lists the pods in namespace that hold claim: scheduled to a node and not finished,
// since the volume stays attached from scheduling until the pod ends. It reads the API server,
// not a cache: the answer decides whether a Job may touch the volume, and caching every pod of
// the cluster to answer it once per run would cost far more than one list.
func ClaimUsers(ctx context.Context, client kubernetes.Interface, namespace, claim string) ([]ClaimUser, error) {
	pods, err := client.CoreV1().Pods(namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("listing the pods of namespace %s to see who uses claim %s: %w", namespace, claim, err)
	}
	var users []ClaimUser
	for i := range pods.Items {
		if u, ok := claimUser(&pods.Items[i], claim); ok {
			users = append(users, u)
		}
	}
	sort.Slice(users, func(i, j int) bool { return users[i].Pod < users[j].Pod })
	return users, nil
}

func claimUser(pod *corev1.Pod, claim string) (ClaimUser, bool) {
	if pod.Spec.NodeName == "" || pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed {
		return ClaimUser{}, false
	}
	var volumes []string
	readOnlyVolume := map[string]bool{}
	for _, v := range pod.Spec.Volumes {
		if v.PersistentVolumeClaim != nil && v.PersistentVolumeClaim.ClaimName == claim {
			volumes = append(volumes, v.Name)
			readOnlyVolume[v.Name] = v.PersistentVolumeClaim.ReadOnly
		}
	}
	if len(volumes) == 0 {
		return ClaimUser{}, false
	}
	u := ClaimUser{Pod: pod.Name, NodeName: pod.Spec.NodeName, Running: pod.Status.Phase == corev1.PodRunning && pod.DeletionTimestamp == nil}
	containers := slices.Concat(pod.Spec.InitContainers, pod.Spec.Containers)
	for _, c := range containers {
		for _, m := range c.VolumeMounts {
			if slices.Contains(volumes, m.Name) && !m.ReadOnly && !readOnlyVolume[m.Name] {
				u.ReadWrite = true
			}
		}
	}
	for _, c := range pod.Spec.EphemeralContainers {
		for _, m := range c.VolumeMounts {
			if slices.Contains(volumes, m.Name) && !m.ReadOnly && !readOnlyVolume[m.Name] {
				u.ReadWrite = true
			}
		}
	}
	return u, true
}

// AccessModes are the claim's access modes: those of its bound volume when bound, else those it
// asks for.
func AccessModes(claim *corev1.PersistentVolumeClaim) []corev1.PersistentVolumeAccessMode {
	if len(claim.Status.AccessModes) > 0 {
		return claim.Status.AccessModes
	}
	return claim.Spec.AccessModes
}

// SingleNode reports whether the claim's volume can be attached to one node at a time only: it
// allows neither ReadWriteMany nor ReadOnlyMany.
func SingleNode(claim *corev1.PersistentVolumeClaim) bool {
	modes := AccessModes(claim)
	return !slices.Contains(modes, corev1.ReadWriteMany) && !slices.Contains(modes, corev1.ReadOnlyMany)
}

// SinglePod reports whether the claim's volume may be used by one pod at a time only.
func SinglePod(claim *corev1.PersistentVolumeClaim) bool {
	return slices.Contains(AccessModes(claim), corev1.ReadWriteOncePod)
}

// HumanBytes formats a size for people in binary units with one decimal, such as "1.2 GiB".
func HumanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit && exp < 5; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
