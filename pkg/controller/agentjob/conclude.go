package agentjob

import (
	"time"

	batchv1 "k8s.io/api/batch/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"platform.example.com/backup-operator/pkg/agent"
)

// ResultGracePeriod is how long after its Job ended a run waits for the pod's termination
// message to reach the cache before it decides the result is missing: the Job's and the pod's
// updates come through different watches.
const ResultGracePeriod = 30 * time.Second

// Outcome is how a finished run ended, which decides its object's phase and condition.
type Outcome int

const (
	// OutcomeSucceeded: the Job completed and the agent reported success.
	OutcomeSucceeded Outcome = iota
	// OutcomeResultMissing: the Job completed without a successful result to read, so what it
	// did cannot be confirmed.
	OutcomeResultMissing
	// OutcomeFailed: the Job failed.
	OutcomeFailed
)

// Decoder reads one operation's result from a termination message: whole, for what only its
// kind of run records, and the Status it embeds, for what every run decides on.
type Decoder[R any] func(message string) (*R, *agent.Status, error)

// Decoders of the results the controllers act on.
var (
	// BackupDecoder reads the result of `agent backup`.
	BackupDecoder Decoder[agent.BackupResult] = func(message string) (*agent.BackupResult, *agent.Status, error) {
		r, err := DecodeBackup(message)
		return r, &r.Status, err
	}
	// RestoreDecoder reads the result of `agent restore`.
	RestoreDecoder Decoder[agent.RestoreResult] = func(message string) (*agent.RestoreResult, *agent.Status, error) {
		r, err := DecodeRestore(message)
		return r, &r.Status, err
	}
	// StorageCheckDecoder reads the result of `agent storage check`.
	StorageCheckDecoder Decoder[agent.StorageCheckResult] = func(message string) (*agent.StorageCheckResult, *agent.Status, error) {
		r, err := DecodeStorageCheck(message)
		return r, &r.Status, err
	}
	// StorageListDecoder reads the result of `agent storage list`.
	StorageListDecoder Decoder[agent.StorageListResult] = func(message string) (*agent.StorageListResult, *agent.Status, error) {
		r, err := DecodeStorageList(message)
		return r, &r.Status, err
	}
)

// Conclusion is what a finished Job's run comes to, decided the same way for every kind of run;
// what it means for the object, in words and in the rest of its status, is the controller's.
type Conclusion[R any] struct {
	// Wait, when positive, is how long to wait for the result to reach the cache before
	// deciding anything; every other field is then unset.
	Wait time.Duration
	// StartTime is the status's start, or else the Job's: a run whose pod was never seen
	// running still gets one.
	StartTime *metav1.Time
	// CompletionTime is when the Job ended, or now when it does not say.
	CompletionTime *metav1.Time
	// Duration is from StartTime to CompletionTime.
	Duration *metav1.Duration
	// Result and Status are the agent's result, decoded even when DecodeErr is set; nil when no
	// pod left one.
	Result *R
	Status *agent.Status
	// DecodeErr says why the result could not be read.
	DecodeErr error
	// Outcome is how the run ended.
	Outcome Outcome
	// Reason is the Succeeded condition's reason when Outcome is OutcomeFailed.
	Reason string
}

// Conclude decides a run whose Job finished, as obs shows it at now; startTime is what the
// object's status holds so far. A completed Job whose result has not reached the cache is
// waited for up to ResultGracePeriod after its end.
func Conclude[R any](job *batchv1.Job, obs Observation, startTime *metav1.Time, now time.Time, decode Decoder[R]) Conclusion[R] {
	var c Conclusion[R]
	if obs.Result == "" && obs.FinishTime != nil {
		if wait := obs.FinishTime.Add(ResultGracePeriod).Sub(now); wait > 0 {
			c.Wait = wait
			return c
		}
	}
	if obs.Result != "" {
		c.Result, c.Status, c.DecodeErr = decode(obs.Result)
	}
	finished := now
	if obs.FinishTime != nil {
		finished = obs.FinishTime.Time
	}
	switch {
	case startTime != nil:
		c.StartTime = startTime.DeepCopy()
	case job.Status.StartTime != nil:
		c.StartTime = &metav1.Time{Time: job.Status.StartTime.Time}
	default:
		c.StartTime = &metav1.Time{Time: job.CreationTimestamp.Time}
	}
	c.CompletionTime = &metav1.Time{Time: finished}
	c.Duration = Duration(c.StartTime.Time, finished)

	switch {
	// Success needs a result that decoded cleanly: a garbled one carries no checksum to trust.
	case obs.State == StateSucceeded && c.DecodeErr == nil && c.Status != nil && c.Status.Succeeded():
		c.Outcome = OutcomeSucceeded
	case obs.State == StateSucceeded:
		c.Outcome = OutcomeResultMissing
	default:
		c.Outcome = OutcomeFailed
		c.Reason = FailureReason(obs, c.Status)
	}
	return c
}

// MissingResult says that job succeeded without a readable result, and why it is unreadable
// when it was read; the controller adds what that means for its object.
func (c Conclusion[R]) MissingResult(job *batchv1.Job) string {
	msg := "Job " + job.Name + " succeeded but left no readable result"
	if c.DecodeErr != nil {
		msg += " (" + c.DecodeErr.Error() + ")"
	}
	return msg
}
