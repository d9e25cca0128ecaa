package agentjob

import (
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	platformv1 "platform.example.com/backup-operator/pkg/apis/platform/v1"
)

func TestConclude(t *testing.T) {
	end := metav1.NewTime(t0.Add(time.Hour))
	job := testJob()
	job.CreationTimestamp = metav1.NewTime(t0)
	started := job.DeepCopy()
	started.Status.StartTime = &metav1.Time{Time: t0.Add(time.Minute)}
	ok := `{"operation":"backup","sha256":"ab"}`

	t.Run("a completed Job without a result is waited for", func(t *testing.T) {
		c := Conclude(job, Observation{State: StateSucceeded, FinishTime: &end}, nil, end.Add(10*time.Second), BackupDecoder)
		if c.Wait != ResultGracePeriod-10*time.Second || c.CompletionTime != nil {
			t.Fatalf("wait %s, completion %v: want the rest of the grace period and nothing decided", c.Wait, c.CompletionTime)
		}
	})
	t.Run("past the grace period the result is missing", func(t *testing.T) {
		c := Conclude(started, Observation{State: StateSucceeded, FinishTime: &end}, nil, end.Add(ResultGracePeriod), BackupDecoder)
		if c.Wait != 0 || c.Outcome != OutcomeResultMissing || !c.StartTime.Time.Equal(t0.Add(time.Minute)) || !c.CompletionTime.Time.Equal(end.Time) || c.Duration.Duration != 59*time.Minute {
			t.Fatalf("%+v: want ResultMissing from the Job's start to its end", c)
		}
	})
	t.Run("the status's start wins, and is copied", func(t *testing.T) {
		own := &metav1.Time{Time: t0.Add(30 * time.Minute)}
		c := Conclude(started, Observation{State: StateSucceeded, FinishTime: &end, Result: ok}, own, end.Time, BackupDecoder)
		if c.Outcome != OutcomeSucceeded || c.Result.SHA256 != "ab" || c.StartTime == own || !c.StartTime.Equal(own) || c.Duration.Duration != 30*time.Minute {
			t.Fatalf("%+v: want Succeeded from the status's own start", c)
		}
	})
	t.Run("a Job that never started counts from its creation", func(t *testing.T) {
		c := Conclude(job, Observation{State: StateFailed, JobReason: batchv1.JobReasonDeadlineExceeded}, nil, t0.Add(2*time.Hour), BackupDecoder)
		if c.Outcome != OutcomeFailed || c.Reason != platformv1.ReasonDeadlineExceeded || !c.StartTime.Time.Equal(t0) || !c.CompletionTime.Time.Equal(t0.Add(2*time.Hour)) {
			t.Fatalf("%+v: want Failed with DeadlineExceeded from the Job's creation to now", c)
		}
	})
	t.Run("a garbled result is never a success", func(t *testing.T) {
		for _, garbled := range []string{"killed", `{"operation":"backup","sha256":"ab"`} {
			c := Conclude(job, Observation{State: StateSucceeded, FinishTime: &end, Result: garbled}, nil, end.Time, BackupDecoder)
			if c.Outcome != OutcomeResultMissing || c.DecodeErr == nil {
				t.Fatalf("result %q: outcome %v, decode error %v; want ResultMissing", garbled, c.Outcome, c.DecodeErr)
			}
		}
	})
	t.Run("an unreadable result says why", func(t *testing.T) {
		c := Conclude(job, Observation{State: StateSucceeded, FinishTime: &end, Result: `{"operation":"backup","error":"boom"}`}, nil, end.Time, BackupDecoder)
		if c.Outcome != OutcomeResultMissing || c.DecodeErr == nil || c.MissingResult(job) != "Job backup-nightly succeeded but left no readable result ("+c.DecodeErr.Error()+")" {
			t.Fatalf("decode error %v, message %q", c.DecodeErr, c.MissingResult(job))
		}
	})
}

func TestEndAt(t *testing.T) {
	start, ended := &metav1.Time{Time: t0}, &metav1.Time{Time: t0.Add(time.Minute)}
	if c, d := EndAt(start, ended, &metav1.Duration{Duration: time.Minute}, t0.Add(time.Hour)); c != ended || d.Duration != time.Minute {
		t.Fatalf("a run that had ended moved to %v after %v", c, d)
	}
	if c, d := EndAt(start, nil, nil, t0.Add(time.Hour)); !c.Time.Equal(t0.Add(time.Hour)) || d.Duration != time.Hour {
		t.Fatalf("ended at %v after %v, want now after an hour", c, d)
	}
	if _, d := EndAt(nil, nil, nil, t0); d != nil {
		t.Fatalf("a run that never started has duration %v", d)
	}
}
