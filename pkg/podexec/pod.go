package podexec

import (
	"context"
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// Reasons of a PodError, for callers that set a condition reason or decide whether to retry.
const (
	PodNotFound         = "PodNotFound"
	PodNotRunning       = "PodNotRunning"
	ContainerNotFound   = "ContainerNotFound"
	ContainerNotRunning = "ContainerNotRunning"
	ClaimNotMounted     = "ClaimNotMounted"
)

// PodError means the pod cannot run the command now, so the user must fix the application or
// the policy rather than the agent's permissions.
type PodError struct {
	Namespace, Pod string
	Reason         string
	Message        string
}

func (e *PodError) Error() string { return e.Message }

// RunningContainer checks, before a hook or source command, that the pod is Running and not
// being deleted, mounts claim (unless claim is ""), and has a running container named container:
// a command in any other pod would back up the wrong data or fail halfway.
func RunningContainer(ctx context.Context, client kubernetes.Interface, namespace, pod, container, claim string) error {
	name := namespace + "/" + pod
	fail := func(reason, format string, args ...any) error {
		return &PodError{Namespace: namespace, Pod: pod, Reason: reason, Message: fmt.Sprintf(format, args...)}
	}
	p, err := client.CoreV1().Pods(namespace).Get(ctx, pod, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		return fail(PodNotFound, "pod %s does not exist: start the application, or fix the pod named in the policy, and back up again", name)
	case apierrors.IsForbidden(err):
		return &ForbiddenError{Namespace: namespace, Missing: []string{permGet.name}, Err: err}
	case err != nil:
		return fmt.Errorf("reading pod %s: %w", name, err)
	case p.DeletionTimestamp != nil:
		return fail(PodNotRunning, "pod %s is being deleted: wait until it is replaced and back up again", name)
	case p.Status.Phase != corev1.PodRunning:
		return fail(PodNotRunning, "pod %s is %s, not Running: a command or hook runs only in a running pod that mounts the claim; "+
			"start the application and back up again", name, p.Status.Phase)
	}
	if claim != "" && !mounts(p, claim) {
		return fail(ClaimNotMounted, "pod %s does not mount the claim %q: a command must run in the pod that holds the data; "+
			"point the policy at a pod that mounts it", name, claim)
	}
	var names []string
	for _, c := range p.Spec.Containers {
		names = append(names, c.Name)
	}
	if !slices.Contains(names, container) {
		return fail(ContainerNotFound, "pod %s has no container %q (it has %s): set the policy's container to one of those",
			name, container, strings.Join(names, ", "))
	}
	for _, s := range p.Status.ContainerStatuses {
		if s.Name != container {
			continue
		}
		switch {
		case s.State.Running != nil:
			return nil
		case s.State.Waiting != nil:
			return fail(ContainerNotRunning, "container %q in pod %s is waiting (%s), not running: fix the container and back up again",
				container, name, s.State.Waiting.Reason)
		case s.State.Terminated != nil:
			return fail(ContainerNotRunning, "container %q in pod %s has terminated (%s, exit code %d): fix the container and back up again",
				container, name, s.State.Terminated.Reason, s.State.Terminated.ExitCode)
		}
	}
	return fail(ContainerNotRunning, "container %q in pod %s has not started: wait until it runs and back up again", container, name)
}

// mounts reports whether the pod uses claim in a volume, counting a generic ephemeral volume,
// whose claim is named <pod>-<volume>.
func mounts(p *corev1.Pod, claim string) bool {
	for _, v := range p.Spec.Volumes {
		if v.PersistentVolumeClaim != nil && v.PersistentVolumeClaim.ClaimName == claim ||
			v.Ephemeral != nil && p.Name+"-"+v.Name == claim {
			return true
		}
	}
	return false
}
