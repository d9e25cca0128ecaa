package agentjob

import (
	"encoding/json"
	"fmt"
	"sort"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	corelisters "k8s.io/client-go/listers/core/v1"

	"platform.example.com/backup-operator/pkg/agent"
	platformv1 "platform.example.com/backup-operator/pkg/apis/platform/v1"
)

// State is where an agent Job is in its life.
type State int

const (
	// StatePending: no pod of the Job has started yet.
	StatePending State = iota
	// StateRunning: a pod of the Job has started and the Job has not finished.
	StateRunning
	// StateSucceeded: the Job completed.
	StateSucceeded
	// StateFailed: the Job failed: out of retries, past its deadline, or failed by its pod
	// failure policy.
	StateFailed
)

// String names the state for logs and test failures.
func (s State) String() string {
	switch s {
	case StatePending:
		return "Pending"
	case StateRunning:
		return "Running"
	case StateSucceeded:
		return "Succeeded"
	case StateFailed:
		return "Failed"
	}
	return fmt.Sprintf("State(%d)", int(s))
}

// Finished reports whether the Job has ended, for good or bad.
func (s State) Finished() bool { return s == StateSucceeded || s == StateFailed }

// Observation is what a Job and its pods say about a run.
type Observation struct {
	// State of the Job.
	State State
	// NodeName is the node of the pod that started most recently.
	NodeName string
	// StartTime is when the first pod of the Job started; nil until one has.
	StartTime *metav1.Time
	// FinishTime is when the Job completed or failed; nil until then.
	FinishTime *metav1.Time
	// JobReason and JobMessage are those of the Job's Failed condition, such as
	// DeadlineExceeded; empty unless the Job failed.
	JobReason, JobMessage string
	// Result is the termination message of the agent that ended the run: the one that
	// succeeded, or the last one that failed. Empty when no pod left one (yet).
	Result string
	// ResultPod names the pod Result was read from.
	ResultPod string
	// Stuck says why the pod StuckPod, which has not started, cannot start, with what to do;
	// empty when no pod is known to be stuck.
	Stuck, StuckPod string
	// StuckClaims are the claims of StuckPod when the scheduler cannot place it: one that is
	// not bound is the usual cause, which ExplainClaims names.
	StuckClaims []string
}

// Observe classifies job and reads its pods: those of pods that job controls. Pods of other
// Jobs, including a deleted Job of the same name, are ignored.
func Observe(job *batchv1.Job, pods []*corev1.Pod) Observation {
	var obs Observation
	for _, c := range job.Status.Conditions {
		if c.Status != corev1.ConditionTrue {
			continue
		}
		switch c.Type {
		case batchv1.JobComplete:
			obs.State = StateSucceeded
			obs.FinishTime = finishTime(job.Status.CompletionTime, c.LastTransitionTime)
		case batchv1.JobFailed:
			obs.State = StateFailed
			obs.FinishTime = finishTime(nil, c.LastTransitionTime)
			obs.JobReason, obs.JobMessage = c.Reason, c.Message
		}
	}

	var latest *corev1.Pod
	var result *corev1.ContainerStateTerminated
	for _, pod := range pods {
		if !IsControlledBy(pod, string(job.UID)) {
			continue
		}
		if started := podStart(pod); started != nil {
			if obs.StartTime == nil || started.Before(obs.StartTime) {
				obs.StartTime = started
			}
			if latest == nil || podStart(latest).Before(started) {
				latest = pod
			}
		}
		if podStart(pod) == nil && pod.DeletionTimestamp == nil {
			if why := stuck(pod); why != "" {
				obs.Stuck, obs.StuckPod, obs.StuckClaims = why, pod.Name, nil
				if unschedulable(pod) {
					obs.StuckClaims = podClaims(pod)
				}
			}
		}
		term := agentTermination(pod)
		if term == nil || term.Message == "" {
			continue
		}
		// A success is the result; among failures, the last one is what made the Job give up.
		ok, bestOK := term.ExitCode == 0, result != nil && result.ExitCode == 0
		if result == nil || (ok && !bestOK) || (ok == bestOK && result.FinishedAt.Before(&term.FinishedAt)) {
			result = term
			obs.Result, obs.ResultPod = term.Message, pod.Name
		}
	}
	if latest != nil {
		obs.NodeName = latest.Spec.NodeName
	}
	if obs.State == StatePending && obs.StartTime != nil {
		obs.State = StateRunning
	}
	return obs
}

func finishTime(completion *metav1.Time, transition metav1.Time) *metav1.Time {
	if completion != nil {
		return completion.DeepCopy()
	}
	if transition.IsZero() {
		return nil
	}
	return transition.DeepCopy()
}

// podStart is when the pod's agent container started, or nil while it has not. A pod that is
// merely scheduled, pulling its image or waiting for its volume has not started.
func podStart(pod *corev1.Pod) *metav1.Time {
	for _, cs := range pod.Status.ContainerStatuses {
		if cs.Name != ContainerName {
			continue
		}
		switch {
		case cs.State.Running != nil:
			return &cs.State.Running.StartedAt
		case cs.State.Terminated != nil:
			return &cs.State.Terminated.StartedAt
		case cs.LastTerminationState.Terminated != nil:
			return &cs.LastTerminationState.Terminated.StartedAt
		}
	}
	if pod.Status.Phase == corev1.PodRunning && pod.Status.StartTime != nil {
		return pod.Status.StartTime
	}
	return nil
}

// agentTermination is the terminated state of the pod's agent container, from its current or,
// after a restart, its last state.
func agentTermination(pod *corev1.Pod) *corev1.ContainerStateTerminated {
	for _, cs := range pod.Status.ContainerStatuses {
		if cs.Name != ContainerName {
			continue
		}
		if cs.State.Terminated != nil {
			return cs.State.Terminated
		}
		return cs.LastTerminationState.Terminated
	}
	return nil
}

// PodsOf lists, from the cache, the pods labeled for the object the Job works for and controlled
// by the Job.
func PodsOf(lister corelisters.PodLister, job *batchv1.Job, selector labels.Selector) ([]*corev1.Pod, error) {
	pods, err := lister.Pods(job.Namespace).List(selector)
	if err != nil {
		return nil, err
	}
	owned := pods[:0:0]
	for _, p := range pods {
		if IsControlledBy(p, string(job.UID)) {
			owned = append(owned, p)
		}
	}
	sort.Slice(owned, func(i, j int) bool { return owned[i].Name < owned[j].Name })
	return owned, nil
}

// DecodeBackup parses the result of `agent backup` from a termination message.
func DecodeBackup(message string) (*agent.BackupResult, error) {
	r := &agent.BackupResult{}
	return r, decode(message, agent.OpBackup, r, &r.Status)
}

// DecodeRestore parses the result of `agent restore` from a termination message.
func DecodeRestore(message string) (*agent.RestoreResult, error) {
	r := &agent.RestoreResult{}
	return r, decode(message, agent.OpRestore, r, &r.Status)
}

// DecodeDelete parses the result of `agent delete` from a termination message.
func DecodeDelete(message string) (*agent.DeleteResult, error) {
	r := &agent.DeleteResult{}
	return r, decode(message, agent.OpDelete, r, &r.Status)
}

// DecodeStorageCheck parses the result of `agent storage check` from a termination message.
func DecodeStorageCheck(message string) (*agent.StorageCheckResult, error) {
	r := &agent.StorageCheckResult{}
	return r, decode(message, agent.OpStorageCheck, r, &r.Status)
}

// DecodeStorageList parses the result of `agent storage list` from a termination message.
func DecodeStorageList(message string) (*agent.StorageListResult, error) {
	r := &agent.StorageListResult{}
	return r, decode(message, agent.OpStorageList, r, &r.Status)
}

// decode checks, besides the JSON, that the result is of the operation the Job ran and that a
// failure says why: the controller acts on the reason.
func decode(message, operation string, result any, st *agent.Status) error {
	if err := json.Unmarshal([]byte(message), result); err != nil {
		return fmt.Errorf("the agent's termination message is not a JSON result: %w", err)
	}
	if st.Operation != operation {
		return fmt.Errorf("the agent's result is for operation %q, want %q", st.Operation, operation)
	}
	if !st.Succeeded() && st.Reason == "" {
		return fmt.Errorf("the agent's result reports an error without a reason: %s", st.Error)
	}
	return nil
}

// agentReasons maps each reason the agent reports to the condition reason that says the same.
var agentReasons = map[agent.Reason]string{
	agent.InvalidArgument:       platformv1.ReasonInvalidArgument,
	agent.SourceNotFound:        platformv1.ReasonSourceNotFound,
	agent.ReadFailed:            platformv1.ReasonReadFailed,
	agent.WriteFailed:           platformv1.ReasonWriteFailed,
	agent.OutputExists:          platformv1.ReasonOutputExists,
	agent.ArchiveNotFound:       platformv1.ReasonArchiveNotFound,
	agent.ChecksumMismatch:      platformv1.ReasonChecksumMismatch,
	agent.CorruptArchive:        platformv1.ReasonCorruptArchive,
	agent.UnsafeArchive:         platformv1.ReasonUnsafeArchive,
	agent.TargetNotFound:        platformv1.ReasonTargetNotFound,
	agent.TargetNotEmpty:        platformv1.ReasonTargetNotEmpty,
	agent.Canceled:              platformv1.ReasonCanceled,
	agent.StorageUnreachable:    platformv1.ReasonEndpointUnreachable,
	agent.StorageTLSUntrusted:   platformv1.ReasonTLSNotTrusted,
	agent.StorageAccessDenied:   platformv1.ReasonAccessDenied,
	agent.StorageBucketNotFound: platformv1.ReasonBucketNotFound,
	agent.StorageWrongRegion:    platformv1.ReasonWrongRegion,
	agent.StorageReadOnly:       platformv1.ReasonStorageReadOnly,
	agent.StorageError:          platformv1.ReasonStorageError,
	agent.ArchiveTooLarge:       platformv1.ReasonArchiveTooLarge,
	agent.ArchiveRetained:       platformv1.ReasonArchiveRetained,
	agent.EncryptionKeyMissing:  platformv1.ReasonEncryptionKeyMissing,
	agent.WrongEncryptionKey:    platformv1.ReasonWrongEncryptionKey,
	agent.ExecForbidden:         platformv1.ReasonExecForbidden,
	agent.PodNotRunning:         platformv1.ReasonPodNotRunning,
	agent.CommandFailed:         platformv1.ReasonCommandFailed,
	agent.StreamFailed:          platformv1.ReasonStreamFailed,
	agent.HookFailed:            platformv1.ReasonHookFailed,
}

// ConditionReason is the Succeeded condition's reason for a failure the agent reported:
// AgentFailed for a reason this controller does not know, or an internal error.
func ConditionReason(r agent.Reason) string {
	if reason, ok := agentReasons[r]; ok {
		return reason
	}
	return platformv1.ReasonAgentFailed
}

// FailureReason is the Succeeded condition's reason for a Job that failed: the deadline when it
// stopped the run, else what the agent reported, else a Job failure without a result.
func FailureReason(obs Observation, st *agent.Status) string {
	switch {
	case obs.JobReason == batchv1.JobReasonDeadlineExceeded:
		return platformv1.ReasonDeadlineExceeded
	case st != nil && !st.Succeeded():
		return ConditionReason(st.Reason)
	}
	return platformv1.ReasonJobFailed
}
