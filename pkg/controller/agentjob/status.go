package agentjob

import (
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	platformv1 "platform.example.com/backup-operator/pkg/apis/platform/v1"
)

// SetSucceeded sets the Succeeded condition. The transition time comes from the caller's clock,
// never from the library's time.Now, so that tests and replays see the time decisions were made.
func SetSucceeded(conditions *[]metav1.Condition, status metav1.ConditionStatus, reason, message string, generation int64, now time.Time) {
	SetCondition(conditions, platformv1.ConditionSucceeded, status, reason, message, generation, now)
}

// SetCondition sets the condition of type typ, at now, like SetSucceeded.
func SetCondition(conditions *[]metav1.Condition, typ string, status metav1.ConditionStatus, reason, message string, generation int64, now time.Time) {
	meta.SetStatusCondition(conditions, metav1.Condition{
		Type:               typ,
		Status:             status,
		Reason:             reason,
		Message:            message,
		ObservedGeneration: generation,
		LastTransitionTime: metav1.NewTime(now),
	})
}

// Duration is the run's length for status: to the second, as people read it.
func Duration(start, end time.Time) *metav1.Duration {
	d := end.Sub(start).Round(time.Second)
	if d < 0 {
		d = 0
	}
	return &metav1.Duration{Duration: d}
}

// Elapsed is a status duration as a time.Duration, zero when the run never started.
func Elapsed(d *metav1.Duration) time.Duration {
	if d == nil {
		return 0
	}
	return d.Duration
}

// ShortSHA256 is the start of a checksum, enough to tell archives apart in an event.
func ShortSHA256(sum string) string {
	if len(sum) <= 12 {
		return sum
	}
	return sum[:12] + "…"
}

// EndAt is the completion time and duration of a run that ended at now; a run that had already
// ended keeps its own, so that a later failure does not move its end.
func EndAt(start, completion *metav1.Time, duration *metav1.Duration, now time.Time) (*metav1.Time, *metav1.Duration) {
	if completion != nil {
		return completion, duration
	}
	if start != nil {
		duration = Duration(start.Time, now)
	}
	return &metav1.Time{Time: now}, duration
}
