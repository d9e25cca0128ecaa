package agentjob

import (
	"fmt"
	"strings"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/utils/ptr"

	platformv1 "platform.example.com/backup-operator/pkg/apis/platform/v1"
)

// EventPodNotStarting tells, once per run, that its pod cannot start and why.
const EventPodNotStarting = "PodNotStarting"

// Waiting reasons of a container that will not start without someone's help. The kubelet keeps
// retrying them, so without a deadline a run would wait for its activeDeadlineSeconds, six hours
// by default.
var stuckReasons = map[string]string{
	"CreateContainerConfigError": "create the Secret or ConfigMap (or the key) it names, in the run's namespace",
	"CreateContainerError":       "see the pod's events (kubectl describe pod)",
	"ErrImagePull":               "check the agent image's name and that the node can pull it",
	"ImagePullBackOff":           "check the agent image's name and that the node can pull it",
	"InvalidImageName":           "fix the agent image's name (the operator's --agent-image)",
	"ErrImageNeverPull":          "load the agent image on the node, or let the node pull it",
}

// stuck says why pod cannot start, with what to do, or "" when nothing is known to keep it.
func stuck(pod *corev1.Pod) string {
	for _, cs := range pod.Status.ContainerStatuses {
		if w := cs.State.Waiting; cs.Name == ContainerName && w != nil {
			if hint, ok := stuckReasons[w.Reason]; ok {
				return fmt.Sprintf("%s: %s; %s", w.Reason, strings.TrimSuffix(w.Message, "."), hint)
			}
		}
	}
	if c := unschedulableCondition(pod); c != nil {
		return fmt.Sprintf("the scheduler cannot place it: %s; check the claims it mounts are bound and a node has room for it", strings.TrimSuffix(c.Message, "."))
	}
	return ""
}

func unschedulableCondition(pod *corev1.Pod) *corev1.PodCondition {
	for i, c := range pod.Status.Conditions {
		if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionFalse && c.Reason == corev1.PodReasonUnschedulable {
			return &pod.Status.Conditions[i]
		}
	}
	return nil
}

func unschedulable(pod *corev1.Pod) bool { return unschedulableCondition(pod) != nil }

// podClaims are the claims pod mounts.
func podClaims(pod *corev1.Pod) []string {
	var names []string
	for _, v := range pod.Spec.Volumes {
		if v.PersistentVolumeClaim != nil {
			names = append(names, v.PersistentVolumeClaim.ClaimName)
		}
	}
	return names
}

// ExplainClaims adds to obs.Stuck which claims of a pod the scheduler cannot place are not
// bound, and what they are: the scheduler only says that some claim is unbound.
func ExplainClaims(obs *Observation, claims corelisters.PersistentVolumeClaimLister, namespace string) {
	var unbound []string
	for _, name := range obs.StuckClaims {
		claim, err := claims.PersistentVolumeClaims(namespace).Get(name)
		switch {
		case apierrors.IsNotFound(err):
			unbound = append(unbound, fmt.Sprintf("PersistentVolumeClaim %s does not exist", name))
		case err == nil && claim.Status.Phase != corev1.ClaimBound:
			phase := claim.Status.Phase
			if phase == "" {
				phase = corev1.ClaimPending
			}
			unbound = append(unbound, fmt.Sprintf("PersistentVolumeClaim %s is %s, not bound to a volume (kubectl describe pvc %s says why)", name, phase, name))
		}
	}
	if len(unbound) > 0 {
		obs.Stuck += "; " + strings.Join(unbound, "; ")
	}
}

// PendingDeadline is how long a run's pod may take to start, from the creation of its Job.
func PendingDeadline(s platformv1.JobSettings) time.Duration {
	return time.Duration(ptr.Deref(s.PendingDeadlineSeconds, platformv1.DefaultPendingDeadlineSeconds)) * time.Second
}

// Pending is the verdict on a run whose Job has no started pod.
type Pending struct {
	// Message is the Succeeded condition's: what the run waits for, or why it failed.
	Message string
	// Event, when set, tells that the pod cannot start: once, when that is first seen.
	Event *Event
	// Expired: the pod did not start within the pending deadline. The run fails with
	// ReasonPodNotStarted and Message, and its Job is deleted.
	Expired bool
	// Requeue is when to look again: at the deadline. Pod changes wake the controller sooner.
	Requeue time.Duration
}

// CheckPending decides on a run whose Job has no started pod, at now: prev is its Succeeded
// condition before this sync.
func CheckPending(prev *metav1.Condition, job *batchv1.Job, obs Observation, settings platformv1.JobSettings, now time.Time) Pending {
	limit := PendingDeadline(settings)
	created := job.CreationTimestamp.Time
	if created.IsZero() {
		created = now // a Job just created, as the create call's answer may show it
	}
	deadline := created.Add(limit)
	if !now.Before(deadline) {
		msg := fmt.Sprintf("The pod of Job %s did not start within pendingDeadlineSeconds (%s), so the Job was deleted and nothing was written", job.Name, limit)
		if obs.Stuck != "" {
			msg += fmt.Sprintf(". Pod %s could not start: %s", obs.StuckPod, obs.Stuck)
		}
		return Pending{Message: msg + ". Fix that, then create a new run.", Expired: true}
	}
	if obs.Stuck == "" {
		return Pending{Message: fmt.Sprintf("Job %s was created; waiting for its pod to start.", job.Name), Requeue: deadline.Sub(now)}
	}
	p := Pending{
		Message: fmt.Sprintf("Pod %s of Job %s cannot start (%s). The run fails if the pod has not started by %s (pendingDeadlineSeconds).",
			obs.StuckPod, job.Name, obs.Stuck, deadline.UTC().Format(time.RFC3339)),
		Requeue: deadline.Sub(now),
	}
	if prev == nil || prev.Reason != platformv1.ReasonJobPending || !strings.Contains(prev.Message, " cannot start (") {
		p.Event = &Event{Type: corev1.EventTypeWarning, Reason: EventPodNotStarting, Message: p.Message}
	}
	return p
}
