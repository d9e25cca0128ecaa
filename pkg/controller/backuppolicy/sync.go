package backuppolicy

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/klog/v2"

	platformv1 "platform.example.com/backup-operator/pkg/apis/platform/v1"
	"platform.example.com/backup-operator/pkg/names"
	"platform.example.com/backup-operator/pkg/retention"
	"platform.example.com/backup-operator/pkg/schedule"
)

// nextSyncDelta is added to the wait for the next scheduled time, so that the sync it triggers
// sees the clock past that time, as upstream does.
const nextSyncDelta = 100 * time.Millisecond

// sync brings one policy up to date: it starts the run that is due (and a run-now request),
// prunes what retention no longer keeps, and writes the status once. It returns the wait until
// the next scheduled time: the policy is not synced again before then unless something changes.
func (c *Controller) sync(ctx context.Context, namespace, name string) (time.Duration, error) {
	logger := klog.FromContext(ctx)
	policy, err := c.policies.BackupPolicies(namespace).Get(name)
	if apierrors.IsNotFound(err) {
		logger.V(4).Info("BackupPolicy is gone; its Backups stay")
		c.deps.Metrics.ForgetPolicy(namespace, name)
		return 0, nil
	}
	if err != nil {
		return 0, err
	}

	p := policy.DeepCopy()
	requeue, syncErr := c.reconcile(ctx, p)
	p.Status.ObservedGeneration = p.Generation
	if !equality.Semantic.DeepEqual(policy.Status, p.Status) {
		if _, err := c.deps.Client.PlatformV1().BackupPolicies(namespace).UpdateStatus(ctx, p, metav1.UpdateOptions{}); err != nil {
			return 0, errors.Join(syncErr, fmt.Errorf("updating the status of BackupPolicy %s/%s: %w", namespace, name, err))
		}
	}
	return requeue, syncErr
}

// reconcile does a policy's work and records it in p.Status; p is a copy the caller writes.
func (c *Controller) reconcile(ctx context.Context, p *platformv1.BackupPolicy) (time.Duration, error) {
	now := c.deps.Clock.Now()
	backups, err := c.policyBackups(p)
	if err != nil {
		return 0, err
	}
	c.observe(p, backups)

	var errs []error
	sched, parseErr := schedule.Parse(p.Spec.Schedule, ptrString(p.Spec.TimeZone))
	selector, selErr := metav1.LabelSelectorAsSelector(&p.Spec.Target.PVCSelector)
	var claims []*corev1.PersistentVolumeClaim
	if selErr == nil {
		if claims, err = c.selectedClaims(p.Namespace, selector); err != nil {
			return 0, err
		}
	}

	// Run now: each new value of the annotation asks for one run, whatever the schedule says.
	if token := p.Annotations[platformv1.AnnotationRunNow]; token != "" && token != p.Status.LastRunNowToken && selErr == nil {
		if err := c.run(ctx, p, claims, backups, runNow(token, now)); err != nil {
			errs = append(errs, err)
		} else {
			p.Status.LastRunNowToken = token
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
		// Not retried: only a spec change, which queues the policy, can fix it.
		c.setReady(p, metav1.ConditionFalse, reason, parseErr.Error()+"; no backups are scheduled until it is fixed", now)
		p.Status.NextScheduleTime = nil
	case selErr != nil:
		c.setReady(p, metav1.ConditionFalse, ReasonInvalidSelector, fmt.Sprintf("spec.target.pvcSelector is invalid: %v; no backups are scheduled until it is fixed", selErr), now)
		p.Status.NextScheduleTime = nil
	case p.Spec.Suspend != nil && *p.Spec.Suspend:
		c.setReady(p, metav1.ConditionFalse, ReasonSuspended, "spec.suspend is true: no runs start; on resume, at most the most recent missed run is made up", now)
		p.Status.NextScheduleTime = nil
	default:
		plan := sched.Plan(schedule.History{
			Created:       p.CreationTimestamp.Time,
			LastScheduled: timeOf(p.Status.LastScheduleTime),
			LastMissed:    timeOf(p.Status.LastMissedTime),
		}, deadlineOf(p), now)
		if plan.Unrun > tooManyMissed {
			c.deps.Recorder.Eventf(p, corev1.EventTypeWarning, ReasonTooManyMissed,
				"About %d scheduled runs passed without a backup (was the controller down?); only the most recent one is considered. Set spec.startingDeadlineSeconds to bound how late a run may start", plan.Unrun)
		}
		if !plan.Missed.IsZero() {
			c.deps.Recorder.Eventf(p, corev1.EventTypeWarning, ReasonMissedSchedule,
				"Skipped the run scheduled for %s: it could not start within startingDeadlineSeconds=%d; the next run is at %s",
				formatTime(plan.Missed), *p.Spec.StartingDeadlineSeconds, formatTime(plan.Next))
			p.Status.LastMissedTime = &metav1.Time{Time: plan.Missed}
		}
		if !plan.Due.IsZero() {
			if err := c.run(ctx, p, claims, backups, scheduledRun(plan.Due)); err != nil {
				// The run is retried with backoff; the same names make the retry finish it.
				errs = append(errs, err)
			} else {
				p.Status.LastScheduleTime = &metav1.Time{Time: plan.Due}
				c.deps.Metrics.RunStarted(now.Sub(plan.Due))
			}
		}
		if len(claims) == 0 {
			c.setReady(p, metav1.ConditionFalse, ReasonNoMatchingPVCs,
				fmt.Sprintf("spec.target.pvcSelector %q matches no PersistentVolumeClaim in namespace %s: runs back up nothing", selector, p.Namespace), now)
		} else {
			c.setReady(p, metav1.ConditionTrue, ReasonScheduled,
				fmt.Sprintf("%d PersistentVolumeClaim(s) selected; the next run is at %s", len(claims), formatTime(plan.Next)), now)
		}
		if plan.Next.IsZero() {
			p.Status.NextScheduleTime = nil
		} else {
			p.Status.NextScheduleTime = &metav1.Time{Time: plan.Next}
			requeue = plan.Next.Sub(now) + nextSyncDelta
		}
	}
	// A "no recent backup" alert holds the last success against the schedule's interval: it
	// must see one exactly while the policy schedules runs, and none while it is suspended or
	// its spec is to be fixed (the Ready condition says that). A zero interval (no run known
	// after the next one) would make it fire at once.
	var interval time.Duration
	if p.Status.NextScheduleTime != nil {
		interval = sched.Interval(now)
	}
	if interval > 0 {
		c.deps.Metrics.PolicyScheduled(p.Namespace, p.Name, p.CreationTimestamp.Time, interval)
	} else {
		c.deps.Metrics.PolicyUnscheduled(p.Namespace, p.Name)
	}

	// Retention reads days in the policy's zone: with a zone it cannot read, it deletes nothing.
	var perr *schedule.Error
	if parseErr == nil || !errors.As(parseErr, &perr) || perr.Field != schedule.FieldTimeZone {
		loc := time.UTC
		if sched != nil {
			loc = sched.Location()
		}
		if err := c.prune(ctx, p, backups, retention.RulesFor(p.Spec.Retention, loc)); err != nil {
			errs = append(errs, err)
		}
	}
	return requeue, errors.Join(errs...)
}

// policyBackups lists the Backups this policy created: by label, then by the full policy name in
// the spec, since a long name is shortened in the label.
func (c *Controller) policyBackups(p *platformv1.BackupPolicy) ([]*platformv1.Backup, error) {
	all, err := c.backups.Backups(p.Namespace).List(labels.SelectorFromSet(labels.Set{platformv1.LabelPolicy: names.Join(p.Name)}))
	if err != nil {
		return nil, err
	}
	var mine []*platformv1.Backup
	for _, b := range all {
		if b.Spec.PolicyName == p.Name {
			mine = append(mine, b)
		}
	}
	return mine, nil
}

// observe records in status what the policy's Backups show: which are active, and the latest
// success.
func (c *Controller) observe(p *platformv1.BackupPolicy, backups []*platformv1.Backup) {
	var active []platformv1.BackupReference
	for _, b := range backups {
		if isActive(b) {
			active = append(active, platformv1.BackupReference{Name: b.Name, PVCName: b.Spec.PVCName})
		}
		if b.Status.Phase == platformv1.BackupCompleted && b.Status.CompletionTime != nil &&
			(p.Status.LastSuccessfulTime == nil || b.Status.CompletionTime.After(p.Status.LastSuccessfulTime.Time)) {
			t := *b.Status.CompletionTime
			p.Status.LastSuccessfulTime = &t
		}
	}
	sort.Slice(active, func(i, j int) bool { return active[i].Name < active[j].Name })
	p.Status.Active = active
	if p.Status.LastSuccessfulTime != nil {
		c.deps.Metrics.PolicySucceeded(p.Namespace, p.Name, p.Status.LastSuccessfulTime.Time)
	}
}

// isActive: the Backup has not reached a final phase and is not being deleted.
func isActive(b *platformv1.Backup) bool {
	return b.DeletionTimestamp == nil && !b.Status.Phase.Final()
}

func (c *Controller) selectedClaims(namespace string, selector labels.Selector) ([]*corev1.PersistentVolumeClaim, error) {
	all, err := c.claims.PersistentVolumeClaims(namespace).List(selector)
	if err != nil {
		return nil, err
	}
	var claims []*corev1.PersistentVolumeClaim
	for _, claim := range all {
		if claim.DeletionTimestamp == nil {
			claims = append(claims, claim)
		}
	}
	sort.Slice(claims, func(i, j int) bool { return claims[i].Name < claims[j].Name })
	return claims, nil
}

// trigger is why a run happens: its scheduled time, or a run-now token.
type trigger struct {
	// at is the run's point in time, recorded on each Backup.
	at time.Time
	// suffix makes the Backup names of this run: the same run always gets the same names.
	suffix string
	// describe says what the run is for, in events.
	describe string
}

func scheduledRun(at time.Time) trigger {
	// Minutes since the epoch, as the upstream CronJob controller names its Jobs.
	return trigger{at: at, suffix: strconv.FormatInt(at.Unix()/60, 10), describe: "the run scheduled for " + formatTime(at)}
}

func runNow(token string, now time.Time) trigger {
	sum := sha256.Sum256([]byte(token))
	return trigger{at: now, suffix: "now-" + hex.EncodeToString(sum[:])[:8], describe: fmt.Sprintf("the run requested by %s=%q", platformv1.AnnotationRunNow, token)}
}

// run creates one Backup per selected claim for one run, applying the concurrency policy to
// claims whose previous Backup is still active. A Backup that already exists counts as created:
// its name is a function of the run, so it is this run's.
func (c *Controller) run(ctx context.Context, p *platformv1.BackupPolicy, claims []*corev1.PersistentVolumeClaim, backups []*platformv1.Backup, t trigger) error {
	if len(claims) == 0 {
		c.deps.Recorder.Eventf(p, corev1.EventTypeWarning, ReasonNoMatchingPVCs,
			"Nothing backed up for %s: spec.target.pvcSelector matches no PersistentVolumeClaim in namespace %s; label the claims to back up or fix the selector", t.describe, p.Namespace)
		return nil
	}
	activeByClaim := map[string][]*platformv1.Backup{}
	for _, b := range backups {
		if isActive(b) {
			activeByClaim[b.Spec.PVCName] = append(activeByClaim[b.Spec.PVCName], b)
		}
	}

	var created []string
	var errs []error
	for _, claim := range claims {
		if active := activeByClaim[claim.Name]; len(active) > 0 {
			switch policyOf(p) {
			case platformv1.ConcurrencyForbid:
				c.deps.Recorder.Eventf(p, corev1.EventTypeNormal, ReasonAlreadyActive,
					"Skipped claim %s for %s: Backup %s is still %s (concurrencyPolicy Forbid)", claim.Name, t.describe, active[0].Name, phaseOf(active[0]))
				continue
			case platformv1.ConcurrencyReplace:
				if err := c.deleteBackups(ctx, active); err != nil {
					errs = append(errs, err)
					continue
				}
				c.deps.Recorder.Eventf(p, corev1.EventTypeNormal, ReasonReplacedActive,
					"Deleted active Backup(s) %s of claim %s to start %s (concurrencyPolicy Replace)", joinNames(active), claim.Name, t.describe)
			}
		}
		b := newBackup(p, claim, t)
		if _, err := c.deps.Client.PlatformV1().Backups(p.Namespace).Create(ctx, b, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			c.deps.Recorder.Eventf(p, corev1.EventTypeWarning, ReasonFailedCreate, "Could not create Backup %s of claim %s for %s: %v; retrying", b.Name, claim.Name, t.describe, err)
			errs = append(errs, fmt.Errorf("creating Backup %s/%s: %w", p.Namespace, b.Name, err))
			continue
		}
		created = append(created, b.Name)
	}
	if len(created) > 0 {
		c.deps.Recorder.Eventf(p, corev1.EventTypeNormal, ReasonBackupsCreated, "Created %d Backup(s) for %s: %s", len(created), t.describe, strings.Join(created, ", "))
	}
	return errors.Join(errs...)
}

// newBackup is the Backup of one claim for one run. It is not owned by the policy: deleting a
// policy never deletes data.
func newBackup(p *platformv1.BackupPolicy, claim *corev1.PersistentVolumeClaim, t trigger) *platformv1.Backup {
	return &platformv1.Backup{
		ObjectMeta: metav1.ObjectMeta{
			Name:      names.Join(p.Name, claim.Name, t.suffix),
			Namespace: p.Namespace,
			Labels: map[string]string{
				platformv1.LabelPolicy:    names.Join(p.Name),
				platformv1.LabelPVC:       names.Join(claim.Name),
				platformv1.LabelManagedBy: platformv1.ManagedByValue,
			},
			Annotations: map[string]string{platformv1.AnnotationScheduledTime: formatTime(t.at)},
		},
		Spec: platformv1.BackupSpec{
			PVCName:           claim.Name,
			PolicyName:        p.Name,
			BackupRunSettings: *p.Spec.BackupRunSettings.DeepCopy(),
		},
	}
}

// prune deletes, for each claim, the Backups retention no longer keeps, oldest first, and says so
// in one event per claim.
func (c *Controller) prune(ctx context.Context, p *platformv1.BackupPolicy, backups []*platformv1.Backup, rules retention.Rules) error {
	byClaim := map[string][]*platformv1.Backup{}
	for _, b := range backups {
		byClaim[b.Spec.PVCName] = append(byClaim[b.Spec.PVCName], b)
	}
	claims := make([]string, 0, len(byClaim))
	for claim := range byClaim {
		claims = append(claims, claim)
	}
	sort.Strings(claims)

	var errs []error
	for _, claim := range claims {
		doomed := retention.Prune(byClaim[claim], rules)
		if len(doomed) == 0 {
			continue
		}
		err := c.deleteBackups(ctx, doomed)
		if err != nil {
			c.deps.Recorder.Eventf(p, corev1.EventTypeWarning, ReasonFailedCleanup, "Could not delete old Backups of claim %s: %v; retrying", claim, err)
			errs = append(errs, err)
			continue
		}
		c.deps.Recorder.Eventf(p, corev1.EventTypeNormal, ReasonCleanupTriggered, "Deleted %d old Backup(s) of claim %s (%s): %s", len(doomed), claim, rules, joinNames(doomed))
		c.deps.Metrics.RetentionDeleted(p.Namespace, p.Name, len(doomed))
	}
	return errors.Join(errs...)
}

// deleteBackups deletes Backups by name and UID, so a newer Backup that took a name is never hit.
func (c *Controller) deleteBackups(ctx context.Context, backups []*platformv1.Backup) error {
	for _, b := range backups {
		uid := b.UID
		err := c.deps.Client.PlatformV1().Backups(b.Namespace).Delete(ctx, b.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}})
		if err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("deleting Backup %s/%s: %w", b.Namespace, b.Name, err)
		}
	}
	return nil
}

// setReady sets the Ready condition, and emits a Warning event when it turns to a new reason
// that needs a fix, so a broken spec is reported once, not on every sync.
func (c *Controller) setReady(p *platformv1.BackupPolicy, status metav1.ConditionStatus, reason, message string, now time.Time) {
	old := meta.FindStatusCondition(p.Status.Conditions, platformv1.ConditionReady)
	changed := old == nil || old.Status != status || old.Reason != reason || old.ObservedGeneration != p.Generation
	meta.SetStatusCondition(&p.Status.Conditions, metav1.Condition{
		Type:               platformv1.ConditionReady,
		Status:             status,
		Reason:             reason,
		Message:            message,
		ObservedGeneration: p.Generation,
		LastTransitionTime: metav1.NewTime(now),
	})
	switch reason {
	case ReasonInvalidSchedule, ReasonInvalidTimeZone, ReasonInvalidSelector:
		if changed {
			c.deps.Recorder.Event(p, corev1.EventTypeWarning, reason, message)
		}
	}
}

func policyOf(p *platformv1.BackupPolicy) platformv1.ConcurrencyPolicy {
	if p.Spec.ConcurrencyPolicy == "" {
		return platformv1.ConcurrencyForbid
	}
	return p.Spec.ConcurrencyPolicy
}

func deadlineOf(p *platformv1.BackupPolicy) *time.Duration {
	if p.Spec.StartingDeadlineSeconds == nil {
		return nil
	}
	d := time.Duration(*p.Spec.StartingDeadlineSeconds) * time.Second
	return &d
}

func phaseOf(b *platformv1.Backup) platformv1.BackupPhase {
	if b.Status.Phase == "" {
		return platformv1.BackupPending
	}
	return b.Status.Phase
}

func joinNames(backups []*platformv1.Backup) string {
	out := make([]string, len(backups))
	for i, b := range backups {
		out[i] = b.Name
	}
	return strings.Join(out, ", ")
}

func timeOf(t *metav1.Time) *time.Time {
	if t == nil {
		return nil
	}
	return &t.Time
}

func ptrString(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

func formatTime(t time.Time) string { return t.UTC().Format(time.RFC3339) }
