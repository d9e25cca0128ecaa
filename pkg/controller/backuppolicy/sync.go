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
// sees the clock past that time, as upstream does. Every run starts this late, so it is kept
// small: a sync that still finds its run not due (the wait is measured on the wall clock, the
// timer runs on the monotonic one) only waits again, without API requests.
const nextSyncDelta = 10 * time.Millisecond

// recordRunAfter is the wait a sync that created a run's Backups asks for before the sync that
// records the run. Any positive wait sends the policy to the back of the work queue, behind
// every policy queued meanwhile: when many policies are due at once, every due run creates its
// Backups before any run spends API requests on its events and its status (a status update
// costs the API server more than a Backup create). The wait itself only needs to be positive.
const recordRunAfter = time.Millisecond

// sync brings one policy up to date: it starts the runs that are due (the scheduled one and a
// run-now request), records them, prunes what retention no longer keeps, and writes the status
// at most once, on a copy. It returns the wait until the next scheduled time: the policy is not
// synced again before then unless something changes.
//
// A run that creates Backups takes two syncs, so that the creates of all due runs come first:
//   - the sync that creates any Backup of a due run returns right after the creates, with
//     recordRunAfter. It writes no status (not even conditions), emits no BackupsCreated or
//     AlreadyActive event and prunes nothing; only what cannot wait is said at once
//     (FailedCreate, and ReplacedActiveBackup when a Backup is deleted).
//   - the next sync finds the run still due, as its status does not record it yet, and all its
//     Backups there, so it creates nothing: it announces the run, records it, prunes, and
//     writes the status, as a run that creates nothing does in a single sync.
//
// Nothing is remembered between the two: the second is whichever sync next finds the run's
// Backups, on this replica or on another after a restart or a change of leader. The Backup
// names are a function of the run, so the run is never made twice, and it is recorded once.
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
	requeue, record, syncErr := c.reconcile(ctx, p)
	if !record {
		// Backups were created: the next sync records their runs.
		return requeue, syncErr
	}
	p.Status.ObservedGeneration = p.Generation
	if !equality.Semantic.DeepEqual(policy.Status, p.Status) {
		if _, err := c.deps.Client.PlatformV1().BackupPolicies(namespace).UpdateStatus(ctx, p, metav1.UpdateOptions{}); err != nil {
			return 0, errors.Join(syncErr, fmt.Errorf("updating the status of BackupPolicy %s/%s: %w", namespace, name, err))
		}
	}
	return requeue, syncErr
}

// dueRun is a run a sync found due.
type dueRun struct {
	trigger
	// scheduled: the schedule's run, recorded in lastScheduleTime; otherwise a run-now request,
	// recorded in lastRunNowToken.
	scheduled bool
	token     string
}

// reconcile does a policy's work and records it in p.Status; p is a copy the caller writes when
// record is true. It is false when the sync created Backups: it then returns recordRunAfter,
// having touched neither p.Status nor anything but the Backups (see sync).
func (c *Controller) reconcile(ctx context.Context, p *platformv1.BackupPolicy) (requeue time.Duration, record bool, err error) {
	now := c.deps.Clock.Now()
	backups, err := c.policyBackups(p)
	if err != nil {
		return 0, true, err
	}

	sched, parseErr := schedule.Parse(p.Spec.Schedule, ptrString(p.Spec.TimeZone))
	selector, selErr := metav1.LabelSelectorAsSelector(&p.Spec.Target.PVCSelector)
	var claims []*corev1.PersistentVolumeClaim
	if selErr == nil {
		if claims, err = c.selectedClaims(p.Namespace, selector); err != nil {
			return 0, true, err
		}
	}
	suspended := p.Spec.Suspend != nil && *p.Spec.Suspend

	// What is due. Run now: each new value of the annotation asks for one run, whatever the
	// schedule says.
	var due []dueRun
	if token := p.Annotations[platformv1.AnnotationRunNow]; token != "" && token != p.Status.LastRunNowToken && selErr == nil {
		due = append(due, dueRun{trigger: runNow(token, now), token: token})
	}
	var plan schedule.Plan
	scheduling := parseErr == nil && selErr == nil && !suspended
	if scheduling {
		plan = sched.Plan(schedule.History{
			Created:       p.CreationTimestamp.Time,
			LastScheduled: timeOf(p.Status.LastScheduleTime),
			LastMissed:    timeOf(p.Status.LastMissedTime),
		}, deadlineOf(p), now)
		// A run that started within its deadline may be recorded after it: the sync that
		// records it is not the one that started it. Its Backups show it started.
		if !plan.Missed.IsZero() && begun(p, backups, scheduledRun(plan.Missed)) {
			plan.Due, plan.Missed = plan.Missed, time.Time{}
		}
		if !plan.Due.IsZero() {
			due = append(due, dueRun{trigger: scheduledRun(plan.Due), scheduled: true})
		}
	}

	// Start every due run: create the Backups it still lacks.
	results := make([]runResult, len(due))
	created := false
	for i, d := range due {
		results[i] = c.run(ctx, p, claims, backups, d.trigger)
		created = created || len(results[i].created) > 0
		if d.scheduled && results[i].starts() {
			c.deps.Metrics.RunStarted(now.Sub(d.at))
		}
	}
	if created {
		var errs []error
		for _, r := range results {
			errs = append(errs, r.err)
		}
		return recordRunAfter, false, errors.Join(errs...)
	}

	// Record: nothing was created, so every due run's Backups are there, or it has none to make.
	c.observe(p, backups)
	var errs []error
	if scheduling {
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
	}
	for i, d := range due {
		r := results[i]
		if r.err != nil {
			// The run is retried with backoff; the same names make the retry finish it.
			errs = append(errs, r.err)
			continue
		}
		c.announce(p, claims, d.trigger, r)
		if d.scheduled {
			p.Status.LastScheduleTime = &metav1.Time{Time: d.at}
		} else {
			p.Status.LastRunNowToken = d.token
		}
	}

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
	case suspended:
		c.setReady(p, metav1.ConditionFalse, ReasonSuspended, "spec.suspend is true: no runs start; on resume, at most the most recent missed run is made up", now)
		p.Status.NextScheduleTime = nil
	default:
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
	return requeue, true, errors.Join(errs...)
}

// policyBackups lists the Backups this policy created: those naming it in their spec and carrying
// its label, which a long name shortens.
func (c *Controller) policyBackups(p *platformv1.BackupPolicy) ([]*platformv1.Backup, error) {
	objs, err := c.backupIndex.ByIndex(backupsByPolicy, policyKey(p.Namespace, p.Name))
	if err != nil {
		return nil, err
	}
	label := names.Join(p.Name)
	var mine []*platformv1.Backup
	for _, obj := range objs {
		if b := obj.(*platformv1.Backup); b.Labels[platformv1.LabelPolicy] == label {
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
	candidates, err := claimCandidates(c.claimIndex, namespace, selector)
	if err != nil {
		return nil, err
	}
	var claims []*corev1.PersistentVolumeClaim
	for _, obj := range candidates {
		claim := obj.(*corev1.PersistentVolumeClaim)
		if claim.DeletionTimestamp == nil && selector.Matches(labels.Set(claim.Labels)) {
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

// runResult is what one sync did for one run. The caller decides from it whether the run is
// recorded in this sync, and then announces it (see sync).
type runResult struct {
	// created are the run's Backups this sync created.
	created []string
	// existing are the run's Backups that were there already, made by an earlier sync of the
	// run: in the cache, or found on the API server.
	existing []string
	// skipped are the claims left out because an earlier Backup of theirs is still active
	// (concurrencyPolicy Forbid).
	skipped []skippedClaim
	// err joins what failed. A run with an error is neither announced nor recorded: it is
	// retried with backoff, and the same names make the retry finish it.
	err error
}

// skippedClaim is a claim a run left out, and the earlier Backup that is still active.
type skippedClaim struct {
	claim  string
	active *platformv1.Backup
}

// starts says whether the run started in this sync: none of its Backups was there before, and
// this sync created one or had none to create. The schedule skew is observed then, so once per
// run, not again by the sync that finishes or records it.
func (r runResult) starts() bool {
	return len(r.existing) == 0 && (len(r.created) > 0 || r.err == nil)
}

// run creates the Backups one run still lacks, one per selected claim, applying the concurrency
// policy to claims whose earlier Backup is still active, and says what it did.
//
// A Backup with the name the run gives a claim is the run's own, made by an earlier sync of it
// (the name is a function of the run): it counts as existing, whether the cache shows it or the
// create finds it. It is looked for before the concurrency policy applies, so a retried or
// second sync of a run never takes its own Backup for an earlier active one: Forbid does not
// skip the claim and Replace does not delete it.
//
// Events are left to announce, but for what cannot wait for the run to be recorded: FailedCreate,
// and ReplacedActiveBackup, emitted when the deletion happens, since the sync that records the
// run no longer sees the deleted Backup as active.
func (c *Controller) run(ctx context.Context, p *platformv1.BackupPolicy, claims []*corev1.PersistentVolumeClaim, backups []*platformv1.Backup, t trigger) runResult {
	cached := make(map[string]bool, len(backups))
	activeByClaim := map[string][]*platformv1.Backup{}
	for _, b := range backups {
		cached[b.Name] = true
		if isActive(b) {
			activeByClaim[b.Spec.PVCName] = append(activeByClaim[b.Spec.PVCName], b)
		}
	}

	var r runResult
	var errs []error
	concurrency := policyOf(p)
	for _, claim := range claims {
		b := newBackup(p, claim, t)
		if cached[b.Name] {
			r.existing = append(r.existing, b.Name)
			continue
		}
		if active := activeByClaim[claim.Name]; len(active) > 0 &&
			(concurrency == platformv1.ConcurrencyForbid || concurrency == platformv1.ConcurrencyReplace) {
			// The cache may not show the run's own Backup yet: the sync that created it may have
			// run a moment ago, or on another replica. Ask the API server before acting on the
			// earlier ones. Only claims with an active earlier Backup pay for this read.
			exists, err := c.backupExists(ctx, p.Namespace, b.Name)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			if exists {
				r.existing = append(r.existing, b.Name)
				continue
			}
			if concurrency == platformv1.ConcurrencyForbid {
				r.skipped = append(r.skipped, skippedClaim{claim: claim.Name, active: active[0]})
				continue
			}
			if err := c.deleteBackups(ctx, active); err != nil {
				errs = append(errs, err)
				continue
			}
			c.deps.Recorder.Eventf(p, corev1.EventTypeNormal, ReasonReplacedActive,
				"Deleted active Backup(s) %s of claim %s to start %s (concurrencyPolicy Replace)", joinNames(active), claim.Name, t.describe)
		}
		_, err := c.deps.Client.PlatformV1().Backups(p.Namespace).Create(ctx, b, metav1.CreateOptions{})
		switch {
		case err == nil:
			r.created = append(r.created, b.Name)
		case apierrors.IsAlreadyExists(err):
			r.existing = append(r.existing, b.Name)
		default:
			c.deps.Recorder.Eventf(p, corev1.EventTypeWarning, ReasonFailedCreate, "Could not create Backup %s of claim %s for %s: %v; retrying", b.Name, claim.Name, t.describe, err)
			errs = append(errs, fmt.Errorf("creating Backup %s/%s: %w", p.Namespace, b.Name, err))
		}
	}
	r.err = errors.Join(errs...)
	return r
}

// announce says in events what a run did. Only the sync that records the run calls it, so each
// event is emitted once however many syncs the run took: BackupsCreated names all the run's
// Backups, whichever sync created them, and AlreadyActive each claim left out.
func (c *Controller) announce(p *platformv1.BackupPolicy, claims []*corev1.PersistentVolumeClaim, t trigger, r runResult) {
	if len(claims) == 0 {
		c.deps.Recorder.Eventf(p, corev1.EventTypeWarning, ReasonNoMatchingPVCs,
			"Nothing backed up for %s: spec.target.pvcSelector matches no PersistentVolumeClaim in namespace %s; label the claims to back up or fix the selector", t.describe, p.Namespace)
		return
	}
	for _, s := range r.skipped {
		c.deps.Recorder.Eventf(p, corev1.EventTypeNormal, ReasonAlreadyActive,
			"Skipped claim %s for %s: Backup %s is still %s (concurrencyPolicy Forbid)", s.claim, t.describe, s.active.Name, phaseOf(s.active))
	}
	all := append(append([]string(nil), r.existing...), r.created...)
	if len(all) > 0 {
		sort.Strings(all)
		c.deps.Recorder.Eventf(p, corev1.EventTypeNormal, ReasonBackupsCreated, "Created %d Backup(s) for %s: %s", len(all), t.describe, strings.Join(all, ", "))
	}
}

// begun says whether the cache holds a Backup of run t, which shows that the run started. Only
// the cache is read, as every missed run would pay for a read per claim otherwise. It can miss a
// Backup created moments ago; a run started and recorded across its deadline is rare, and a new
// leader fills its cache before it syncs anything.
func begun(p *platformv1.BackupPolicy, backups []*platformv1.Backup, t trigger) bool {
	for _, b := range backups {
		if b.Name == backupName(p, b.Spec.PVCName, t) {
			return true
		}
	}
	return false
}

// backupExists reads a Backup from the API server, not the cache.
func (c *Controller) backupExists(ctx context.Context, namespace, name string) (bool, error) {
	_, err := c.deps.Client.PlatformV1().Backups(namespace).Get(ctx, name, metav1.GetOptions{})
	switch {
	case err == nil:
		return true, nil
	case apierrors.IsNotFound(err):
		return false, nil
	default:
		return false, fmt.Errorf("reading Backup %s/%s: %w", namespace, name, err)
	}
}

// backupName is the name of the Backup of one claim for one run: the same run always gets the
// same name, which makes a create that finds it AlreadyExists.
func backupName(p *platformv1.BackupPolicy, claim string, t trigger) string {
	return names.Join(p.Name, claim, t.suffix)
}

// newBackup is the Backup of one claim for one run. It is not owned by the policy: deleting a
// policy never deletes data.
func newBackup(p *platformv1.BackupPolicy, claim *corev1.PersistentVolumeClaim, t trigger) *platformv1.Backup {
	return &platformv1.Backup{
		ObjectMeta: metav1.ObjectMeta{
			Name:      backupName(p, claim.Name, t),
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
