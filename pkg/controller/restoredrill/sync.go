package restoredrill

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	platformv1 "platform.example.com/backup-operator/pkg/apis/platform/v1"
	"platform.example.com/backup-operator/pkg/controller/agentjob"
	"platform.example.com/backup-operator/pkg/metrics"
	"platform.example.com/backup-operator/pkg/schedule"
)

// nextSyncDelta is added to the wait for the next scheduled time, so that the sync it triggers
// sees the clock past that time.
const nextSyncDelta = 10 * time.Millisecond

// outcome is what a sync did that is counted in metrics once its status is written.
type outcome struct {
	// finished is the run that ended in this sync.
	finished *platformv1.DrillRun
	// passed are the times to restore of the claims that passed in this sync.
	passed []time.Duration
}

// reconcile advances the drill's running run, starts a due run, and writes the status at most
// once, on a copy. It returns the wait until the next scheduled time.
func (c *Controller) reconcile(ctx context.Context, drill *platformv1.RestoreDrill) (time.Duration, error) {
	if c.written.Stale(drill) {
		// The informer has not delivered the status this controller last wrote; its update
		// event syncs the drill again, and the requeue covers a missed one.
		return time.Second, nil
	}
	d := drill.DeepCopy()
	var events []agentjob.Event
	var out outcome
	requeue, syncErr := c.advance(ctx, d, &events, &out)
	d.Status.ObservedGeneration = d.Generation
	changed := !equality.Semantic.DeepEqual(drill.Status, d.Status)
	if err := agentjob.Commit(ctx, c.deps.Recorder, d, changed, c.deps.Client.PlatformV1().RestoreDrills(d.Namespace).UpdateStatus, events); err != nil {
		return 0, errors.Join(syncErr, fmt.Errorf("updating the status of RestoreDrill %s/%s: %w", d.Namespace, d.Name, err))
	}
	if changed {
		c.written.Record(drill)
	}
	for _, ttr := range out.passed {
		c.deps.Metrics.DrillTimeToRestore(d.Namespace, d.Name, ttr)
	}
	if run := out.finished; run != nil {
		result := metrics.ResultFailed
		if run.Result == platformv1.DrillSucceeded {
			result = metrics.ResultSucceeded
		}
		c.deps.Metrics.DrillRunFinished(d.Namespace, d.Name, result)
	}
	var rto *time.Duration
	if o := d.Spec.Objectives.MaxTimeToRestore; o != nil {
		rto = &o.Duration
	}
	c.deps.Metrics.DrillObserved(d.Namespace, d.Name, timeOf(d.Status.LastSuccessfulTime), rto, figures(d.Status.LastRun))
	return requeue, syncErr
}

// advance does one sync's work on d, which it may change.
func (c *Controller) advance(ctx context.Context, d *platformv1.RestoreDrill, events *[]agentjob.Event, out *outcome) (time.Duration, error) {
	now := c.deps.Clock.Now()
	var errs []error
	if run := d.Status.LastRun; run != nil && run.Result == platformv1.DrillRunning {
		errs = append(errs, c.advanceRun(ctx, d, run, now, events, out))
	}

	sched, parseErr := schedule.Parse(d.Spec.Schedule, ptrString(d.Spec.TimeZone))
	suspended := d.Spec.Suspend != nil && *d.Spec.Suspend
	policy, err := c.policies.BackupPolicies(d.Namespace).Get(d.Spec.PolicyName)
	if apierrors.IsNotFound(err) {
		policy, err = nil, nil
	}
	if err != nil {
		return 0, errors.Join(append(errs, err)...)
	}

	// What is due: each new value of the run-now annotation asks for one run; the schedule for
	// the others.
	var due *trigger
	if token := d.Annotations[platformv1.AnnotationRunNow]; token != "" && token != d.Status.LastRunNowToken {
		due = runNow(token, now)
	}
	var plan schedule.Plan
	scheduling := parseErr == nil && !suspended
	if scheduling {
		plan = sched.Plan(schedule.History{
			Created:       d.CreationTimestamp.Time,
			LastScheduled: timeOf(d.Status.LastScheduleTime),
			LastMissed:    timeOf(d.Status.LastMissedTime),
		}, deadlineOf(d), now)
		if !plan.Missed.IsZero() {
			*events = append(*events, agentjob.Event{Type: corev1.EventTypeWarning, Reason: EventMissedSchedule, Message: fmt.Sprintf(
				"Skipped the drill scheduled for %s: it could not start within startingDeadlineSeconds=%d; the next run is at %s",
				formatTime(plan.Missed), *d.Spec.StartingDeadlineSeconds, formatTime(plan.Next))})
			d.Status.LastMissedTime = &metav1.Time{Time: plan.Missed}
		}
		if due == nil && !plan.Due.IsZero() {
			due = scheduledRun(plan.Due)
		}
	}
	// One run at a time: a run that falls due while another runs starts when it ends, if its
	// starting deadline allows.
	if due != nil && !running(d) {
		if err := c.startRun(ctx, d, policy, due, now, events, out); err != nil {
			errs = append(errs, err)
		} else if due.token != "" {
			d.Status.LastRunNowToken = due.token
		} else {
			d.Status.LastScheduleTime = &metav1.Time{Time: due.at}
		}
	}

	var requeue time.Duration
	switch {
	case parseErr != nil:
		reason := ReasonInvalidSchedule
		var perr *schedule.Error
		if errors.As(parseErr, &perr) && perr.Field == schedule.FieldTimeZone {
			reason = ReasonInvalidTimeZone
		}
		setCondition(d, platformv1.ConditionReady, metav1.ConditionFalse, reason, parseErr.Error()+"; no drills are scheduled until it is fixed", now)
		d.Status.NextScheduleTime = nil
	case policy == nil:
		setCondition(d, platformv1.ConditionReady, metav1.ConditionFalse, platformv1.ReasonPolicyNotFound, fmt.Sprintf(
			"BackupPolicy %s does not exist in namespace %s: each run fails until it does. Fix spec.policyName, or create the policy", d.Spec.PolicyName, d.Namespace), now)
	case suspended:
		setCondition(d, platformv1.ConditionReady, metav1.ConditionFalse, ReasonSuspended, "spec.suspend is true: no runs start; on resume, at most the most recent missed run is made up", now)
	default:
		setCondition(d, platformv1.ConditionReady, metav1.ConditionTrue, ReasonScheduled, fmt.Sprintf(
			"Drills the claims of BackupPolicy %s; the next run is at %s", policy.Name, formatTime(plan.Next)), now)
	}
	if scheduling && !plan.Next.IsZero() {
		d.Status.NextScheduleTime = &metav1.Time{Time: plan.Next}
		requeue = plan.Next.Sub(now) + nextSyncDelta
		c.deps.Metrics.DrillScheduled(d.Namespace, d.Name, d.CreationTimestamp.Time, sched.Interval(now))
	} else {
		d.Status.NextScheduleTime = nil
		c.deps.Metrics.DrillUnscheduled(d.Namespace, d.Name)
	}
	return requeue, errors.Join(errs...)
}

func running(d *platformv1.RestoreDrill) bool {
	return d.Status.LastRun != nil && d.Status.LastRun.Result == platformv1.DrillRunning
}

// trigger is what a run is for.
type trigger struct {
	// at is the scheduled time, or when a run-now request was seen.
	at time.Time
	// id names the run's objects: the same run always gets the same names.
	id string
	// token is the run-now annotation's value; empty for a scheduled run.
	token string
	// describe says what the run is for, in events.
	describe string
}

func scheduledRun(at time.Time) *trigger {
	// Minutes since the epoch, as the upstream CronJob controller names its Jobs.
	return &trigger{at: at, id: strconv.FormatInt(at.Unix()/60, 10), describe: "the drill scheduled for " + formatTime(at)}
}

func runNow(token string, now time.Time) *trigger {
	sum := sha256.Sum256([]byte(token))
	return &trigger{at: now, id: "now-" + hex.EncodeToString(sum[:])[:8], token: token,
		describe: fmt.Sprintf("the drill requested by %s=%q", platformv1.AnnotationRunNow, token)}
}

// setCondition sets a condition of d; its transition time moves only when its status does.
func setCondition(d *platformv1.RestoreDrill, typ string, status metav1.ConditionStatus, reason, message string, now time.Time) {
	meta.SetStatusCondition(&d.Status.Conditions, metav1.Condition{
		Type: typ, Status: status, Reason: reason, Message: message,
		ObservedGeneration: d.Generation, LastTransitionTime: metav1.NewTime(now),
	})
}

func deadlineOf(d *platformv1.RestoreDrill) *time.Duration {
	if d.Spec.StartingDeadlineSeconds == nil {
		return nil
	}
	v := time.Duration(*d.Spec.StartingDeadlineSeconds) * time.Second
	return &v
}

func ptrString(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

func timeOf(t *metav1.Time) *time.Time {
	if t == nil {
		return nil
	}
	v := t.Time
	return &v
}

func formatTime(t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return t.UTC().Format(time.RFC3339)
}

// figures are the metrics of the claims of run.
func figures(run *platformv1.DrillRun) []metrics.DrillClaimFigures {
	if run == nil {
		return nil
	}
	var out []metrics.DrillClaimFigures
	for _, c := range run.Claims {
		f := metrics.DrillClaimFigures{PVC: c.PVCName}
		if c.TimeToRestore != nil {
			f.TimeToRestore = &c.TimeToRestore.Duration
		}
		if c.BackupAge != nil {
			f.BackupAge = &c.BackupAge.Duration
		}
		out = append(out, f)
	}
	return out
}
