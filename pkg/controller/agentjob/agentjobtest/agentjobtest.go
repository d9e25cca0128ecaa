// Package agentjobtest holds what the Backup and Restore controller tests share: the fixture that
// syncs one object against fake clients, builders for agent Jobs and pods in each state, and
// readers for the API actions and Events a sync produced.
package agentjobtest

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	clienttesting "k8s.io/client-go/testing"

	platformv1 "platform.example.com/backup-operator/pkg/apis/platform/v1"
	"platform.example.com/backup-operator/pkg/controller/agentjob"
)

// Epoch is the fake clock's start in every controller test.
var Epoch = time.Date(2026, 3, 1, 2, 0, 0, 0, time.UTC)

// Claim is a bound claim with the given access modes.
func Claim(namespace, name string, modes ...corev1.PersistentVolumeAccessMode) *corev1.PersistentVolumeClaim {
	return &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name, UID: types.UID("claim-" + name)},
		Spec:       corev1.PersistentVolumeClaimSpec{AccessModes: modes},
		Status:     corev1.PersistentVolumeClaimStatus{Phase: corev1.ClaimBound, AccessModes: modes},
	}
}

// APIServer is the controller's address of the API server in every fixture, which agent pods
// that call the API server get.
var APIServer = []corev1.EnvVar{{Name: "KUBERNETES_SERVICE_HOST", Value: "10.217.0.1"}, {Name: "KUBERNETES_SERVICE_PORT", Value: "6443"}}

// AppPod is a running application pod on node that mounts claim, read-only or not.
func AppPod(namespace, name, node, claim string, readOnly bool) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name},
		Spec: corev1.PodSpec{
			NodeName: node,
			Volumes: []corev1.Volume{{Name: "data", VolumeSource: corev1.VolumeSource{
				PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: claim},
			}}},
			Containers: []corev1.Container{{Name: "app", VolumeMounts: []corev1.VolumeMount{{Name: "data", MountPath: "/data", ReadOnly: readOnly}}}},
		},
		Status: corev1.PodStatus{Phase: corev1.PodRunning},
	}
}

// OwnedJob is a Job named name, controlled by an object of kind with uid, carrying labels.
func OwnedJob(namespace, name, kind, ownerName string, uid types.UID, labels map[string]string) *batchv1.Job {
	job := &batchv1.Job{ObjectMeta: metav1.ObjectMeta{
		Namespace: namespace, Name: name, UID: types.UID("job-uid-" + name), Labels: labels,
		CreationTimestamp: metav1.NewTime(Epoch),
	}}
	if kind != "" {
		job.OwnerReferences = []metav1.OwnerReference{*metav1.NewControllerRef(
			&metav1.ObjectMeta{Name: ownerName, UID: uid}, platformv1.SchemeGroupVersion.WithKind(kind))}
	}
	return job
}

// Finish marks job Complete or Failed (with reason) at t.
func Finish(job *batchv1.Job, succeeded bool, reason, message string, t time.Time) *batchv1.Job {
	job = job.DeepCopy()
	at := metav1.NewTime(t)
	job.Status.StartTime = &metav1.Time{Time: Epoch}
	if succeeded {
		job.Status.CompletionTime = &at
		job.Status.Conditions = append(job.Status.Conditions, batchv1.JobCondition{Type: batchv1.JobComplete, Status: corev1.ConditionTrue, LastTransitionTime: at})
		return job
	}
	job.Status.Conditions = append(job.Status.Conditions, batchv1.JobCondition{Type: batchv1.JobFailed, Status: corev1.ConditionTrue, Reason: reason, Message: message, LastTransitionTime: at})
	return job
}

// Pod is a pod of job on node whose agent container started at started.
func Pod(job *batchv1.Job, name, node string, started time.Time) *corev1.Pod {
	labels := map[string]string{}
	for k, v := range job.Labels {
		labels[k] = v
	}
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: job.Namespace, Name: name, Labels: labels,
			OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(job, batchv1.SchemeGroupVersion.WithKind("Job"))},
		},
		Spec: corev1.PodSpec{NodeName: node},
		Status: corev1.PodStatus{
			Phase:     corev1.PodRunning,
			StartTime: &metav1.Time{Time: started},
			ContainerStatuses: []corev1.ContainerStatus{{
				Name:  agentjob.ContainerName,
				State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: metav1.NewTime(started)}},
			}},
		},
	}
}

// Terminated returns pod with its agent terminated at t with exitCode and result as termination
// message (JSON-encoded unless it is a string).
func Terminated(pod *corev1.Pod, exitCode int32, result any, t time.Time) *corev1.Pod {
	pod = pod.DeepCopy()
	msg, ok := result.(string)
	if !ok {
		b, err := json.Marshal(result)
		if err != nil {
			panic(err)
		}
		msg = string(b)
	}
	started := pod.Status.ContainerStatuses[0].State.Running.StartedAt
	pod.Status.ContainerStatuses[0].State = corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
		ExitCode: exitCode, Message: msg, StartedAt: started, FinishedAt: metav1.NewTime(t),
	}}
	pod.Status.Phase = corev1.PodSucceeded
	if exitCode != 0 {
		pod.Status.Phase = corev1.PodFailed
	}
	return pod
}

// Actions describes the API actions a fake client recorded, without lists and watches (informers
// and live lists make those) and reads of namespaces (the Pod Security check before every agent
// Job, which its own tests cover), as "verb resource[/subresource] name".
func Actions(recorded []clienttesting.Action) []string {
	var out []string
	for _, a := range recorded {
		if a.GetVerb() == "list" || a.GetVerb() == "watch" || a.GetVerb() == "get" && a.GetResource().Resource == "namespaces" {
			continue
		}
		s := a.GetVerb() + " " + a.GetResource().Resource
		if sub := a.GetSubresource(); sub != "" {
			s += "/" + sub
		}
		switch a := a.(type) {
		case clienttesting.CreateAction:
			if m, err := meta.Accessor(a.GetObject()); err == nil {
				s += " " + m.GetName()
			}
		case clienttesting.UpdateAction:
			if m, err := meta.Accessor(a.GetObject()); err == nil {
				s += " " + m.GetName()
			}
		case clienttesting.DeleteAction:
			s += " " + a.GetName()
		case clienttesting.GetAction:
			s += " " + a.GetName()
		}
		out = append(out, s)
	}
	return out
}

// ExpectActions fails t unless the recorded actions are exactly want, in order.
func ExpectActions(t *testing.T, what string, recorded []clienttesting.Action, want ...string) {
	t.Helper()
	got := Actions(recorded)
	if !slices.Equal(got, want) {
		t.Fatalf("%s actions:\n  got  %q\n  want %q", what, got, want)
	}
}

// Object returns the object of the first recorded action with verb on resource[/subresource].
func Object[T any](t *testing.T, recorded []clienttesting.Action, verb, resource string) T {
	t.Helper()
	for _, a := range recorded {
		r := a.GetResource().Resource
		if sub := a.GetSubresource(); sub != "" {
			r += "/" + sub
		}
		if a.GetVerb() != verb || r != resource {
			continue
		}
		var obj any
		switch a := a.(type) {
		case clienttesting.CreateAction:
			obj = a.GetObject()
		case clienttesting.UpdateAction:
			obj = a.GetObject()
		}
		if v, ok := obj.(T); ok {
			return v
		}
	}
	var zero T
	t.Fatalf("no %s %s action", verb, resource)
	return zero
}

// Events drains the events a FakeRecorder holds.
func Events(ch <-chan string) []string {
	var out []string
	for {
		select {
		case e := <-ch:
			out = append(out, e)
		default:
			return out
		}
	}
}

// ExpectEvents fails t unless the events start with the wanted "Type Reason" prefixes and
// contain each wanted fragment, in order and nothing more.
func ExpectEvents(t *testing.T, events []string, want ...string) {
	t.Helper()
	if len(events) != len(want) {
		t.Fatalf("events:\n  got  %q\n  want %q", events, want)
	}
	for i := range want {
		if !strings.HasPrefix(events[i], want[i]) {
			t.Fatalf("event %d is %q, want it to start with %q", i, events[i], want[i])
		}
	}
}

// Condition returns the Succeeded condition, failing t when there is none.
func Condition(t *testing.T, conditions []metav1.Condition) metav1.Condition {
	t.Helper()
	c := meta.FindStatusCondition(conditions, platformv1.ConditionSucceeded)
	if c == nil {
		t.Fatalf("no %s condition in %v", platformv1.ConditionSucceeded, conditions)
	}
	return *c
}

// ExpectCondition fails t unless the Succeeded condition has status and reason and its message
// contains every fragment.
func ExpectCondition(t *testing.T, conditions []metav1.Condition, status metav1.ConditionStatus, reason string, fragments ...string) {
	t.Helper()
	c := Condition(t, conditions)
	if c.Status != status || c.Reason != reason {
		t.Fatalf("condition %s is %s/%s (%q), want %s/%s", c.Type, c.Status, c.Reason, c.Message, status, reason)
	}
	for _, f := range fragments {
		if !strings.Contains(c.Message, f) {
			t.Fatalf("condition message %q does not say %q", c.Message, f)
		}
	}
}

// Describe formats v for failure messages.
func Describe(v any) string {
	b, _ := json.MarshalIndent(v, "", "  ")
	return fmt.Sprint(string(b))
}

// Waiting is a pod of job whose agent container has not started and waits with reason and
// message, as the kubelet reports a missing Secret (CreateContainerConfigError) or an image it
// cannot pull.
func Waiting(job *batchv1.Job, name, reason, message string) *corev1.Pod {
	pod := Pod(job, name, "node-a", Epoch)
	pod.Status.Phase, pod.Status.StartTime = corev1.PodPending, nil
	pod.Status.ContainerStatuses[0].State = corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: reason, Message: message}}
	return pod
}
