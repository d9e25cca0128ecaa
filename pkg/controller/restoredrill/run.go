package restoredrill

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	platformv1 "platform.example.com/backup-operator/pkg/apis/platform/v1"
	"platform.example.com/backup-operator/pkg/controller/agentjob"
	"platform.example.com/backup-operator/pkg/names"
)

// ScratchName is the name of the scratch claim, and of the Restore into it, of one claim in one
// run: a function of the drill, the run and the claim, so a second attempt finds the first.
func ScratchName(drill, runID, pvc string) string { return names.Join("drill", drill, runID, pvc) }

// ProbeJobName is the name of the probe Job of one claim in one run.
func ProbeJobName(drill, runID, pvc string) string {
	return names.Join("drill", drill, runID, pvc, "probe")
}

// startRun records a new run in d's status: one drill per claim the policy selects, each with the
// claim's newest Completed Backup, or a verdict at once when there is none to drill. The next
// step of each claim is taken at once.
func (c *Controller) startRun(ctx context.Context, d *platformv1.RestoreDrill, policy *platformv1.BackupPolicy, t *trigger, now time.Time, events *[]agentjob.Event, out *outcome) error {
	// A failed run's kept scratch claims stay until the next run: this one.
	if err := c.deleteScratchOfOtherRuns(ctx, d, t.id, events); err != nil {
		return err
	}
	run := &platformv1.DrillRun{ID: t.id, ScheduledTime: metav1.NewTime(t.at), StartTime: metav1.NewTime(now), Result: platformv1.DrillRunning}
	d.Status.LastRun = run
	if policy == nil {
		c.endRun(d, run, platformv1.ReasonPolicyNotFound, fmt.Sprintf("BackupPolicy %s does not exist in namespace %s, so there is nothing to drill: fix spec.policyName", d.Spec.PolicyName, d.Namespace), now, events, out)
		return nil
	}
	claims, err := c.policyClaims(policy)
	if err != nil {
		return err
	}
	if len(claims) == 0 {
		c.endRun(d, run, platformv1.ReasonNoClaims, fmt.Sprintf("BackupPolicy %s selects no PersistentVolumeClaim, so there is nothing to drill", policy.Name), now, events, out)
		return nil
	}
	var started []string
	for _, pvc := range claims {
		dc := platformv1.DrillClaim{PVCName: pvc, Result: platformv1.DrillRunning}
		backup, err := c.newestCompleted(policy, pvc)
		if err != nil {
			return err
		}
		if backup == nil {
			verdict(&dc, platformv1.ReasonNoCompletedBackup, fmt.Sprintf("Claim %s has no Completed Backup of policy %s to drill: check the policy's Backups (kubectl get backups -l %s=%s)", pvc, policy.Name, platformv1.LabelPVC, pvc))
			run.Claims = append(run.Claims, dc)
			continue
		}
		age := now.Sub(recoveryPoint(backup))
		dc.BackupName, dc.SHA256, dc.BackupAge = backup.Name, backup.Status.Artifact.SHA256, &metav1.Duration{Duration: age.Round(time.Second)}
		if maxAge := d.Spec.Objectives.MaxBackupAge; maxAge != nil && age > maxAge.Duration {
			verdict(&dc, platformv1.ReasonBackupTooOld, fmt.Sprintf("The newest Completed Backup of claim %s, %s, is %s old, more than maxBackupAge %s: the policy's backups are failing or too rare; check them", pvc, backup.Name, roundDuration(age), maxAge.Duration))
			run.Claims = append(run.Claims, dc)
			continue
		}
		name := ScratchName(d.Name, run.ID, pvc)
		dc.Stage, dc.ScratchClaimName, dc.RestoreName = platformv1.DrillRestoring, name, name
		run.Claims = append(run.Claims, dc)
		started = append(started, fmt.Sprintf("%s (claim %s, %s old)", backup.Name, pvc, roundDuration(age)))
	}
	msg := fmt.Sprintf("Started %s: no Backup to restore", t.describe)
	if len(started) > 0 {
		msg = fmt.Sprintf("Started %s: restoring %s into scratch claims", t.describe, strings.Join(started, ", "))
	}
	*events = append(*events, agentjob.Event{Type: corev1.EventTypeNormal, Reason: EventDrillStarted, Message: msg})
	return c.advanceRun(ctx, d, run, now, events, out)
}

// advanceRun takes the next step of each claim of run, and ends the run once every claim has
// its verdict and its scratch objects are gone.
func (c *Controller) advanceRun(ctx context.Context, d *platformv1.RestoreDrill, run *platformv1.DrillRun, now time.Time, events *[]agentjob.Event, out *outcome) error {
	var errs []error
	for i := range run.Claims {
		errs = append(errs, c.advanceClaim(ctx, d, run, &run.Claims[i], now, events, out))
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	for _, dc := range run.Claims {
		if dc.Stage != platformv1.DrillDone {
			return nil
		}
	}
	// Every verdict is in: the Backups learn theirs before the run is recorded as ended, so a
	// failed write is retried with the run.
	if err := c.markVerified(ctx, d, run, now); err != nil {
		return err
	}
	reason, msg := platformv1.ReasonDrillPassed, ""
	for _, dc := range run.Claims {
		if dc.Result == platformv1.DrillFailed {
			reason, msg = dc.Reason, dc.Message
			break
		}
	}
	c.endRun(d, run, reason, msg, now, events, out)
	return c.pruneHistory(ctx, d, run)
}

// advanceClaim takes the next step of one claim's drill: restore, probe, verdict, cleanup.
func (c *Controller) advanceClaim(ctx context.Context, d *platformv1.RestoreDrill, run *platformv1.DrillRun, dc *platformv1.DrillClaim, now time.Time, events *[]agentjob.Event, out *outcome) error {
	if dc.Stage == "" {
		// A verdict given before anything was made: nothing to clean up.
		dc.Stage = platformv1.DrillDone
	}
	if dc.Stage == platformv1.DrillRestoring {
		if err := c.restoreStep(ctx, d, run, dc, now, out); err != nil {
			return err
		}
	}
	if dc.Stage == platformv1.DrillProbing {
		if err := c.probeStep(ctx, d, run, dc, now, out); err != nil {
			return err
		}
	}
	if dc.Stage == platformv1.DrillCleaningUp {
		if err := c.cleanUp(ctx, d, dc); err != nil {
			*events = append(*events, agentjob.Event{Type: corev1.EventTypeWarning, Reason: EventScratchCleanupFailed, Message: fmt.Sprintf(
				"Could not delete the scratch objects of claim %s's drill: %v; trying again", dc.PVCName, err)})
			return err
		}
		dc.Stage = platformv1.DrillDone
	}
	return nil
}

// restoreStep makes the scratch claim and the Restore into it, and reads the Restore's result.
func (c *Controller) restoreStep(ctx context.Context, d *platformv1.RestoreDrill, run *platformv1.DrillRun, dc *platformv1.DrillClaim, now time.Time, out *outcome) error {
	backup, err := c.backups.Backups(d.Namespace).Get(dc.BackupName)
	if apierrors.IsNotFound(err) || (err == nil && backup.DeletionTimestamp != nil) {
		verdict(dc, platformv1.ReasonRestoreFailed, fmt.Sprintf("Backup %s was deleted before the drill restored it (retention?); the next run drills the newest one", dc.BackupName))
		dc.Stage = platformv1.DrillCleaningUp
		return nil
	}
	if err != nil {
		return err
	}
	ok, err := c.ensureScratch(ctx, d, run, dc, backup)
	if err != nil || !ok {
		return err
	}
	r, ok, err := c.ensureRestore(ctx, d, run, dc)
	if err != nil || !ok || r == nil {
		return err
	}
	switch r.Status.Phase {
	case platformv1.RestoreCompleted:
		done := now
		if r.Status.CompletionTime != nil {
			done = r.Status.CompletionTime.Time
		}
		dc.RestoreDuration = &metav1.Duration{Duration: done.Sub(r.CreationTimestamp.Time).Round(time.Second)}
		dc.RestoredBytes, dc.RestoredFiles = r.Status.RestoredBytes, r.Status.RestoredFiles
		if r.Status.VerifiedSHA256 != "" {
			dc.SHA256 = r.Status.VerifiedSHA256
		}
		if d.Spec.Probe == nil {
			c.pass(d, run, dc, done, out)
			return nil
		}
		dc.Stage, dc.ProbeJobName = platformv1.DrillProbing, ProbeJobName(d.Name, run.ID, dc.PVCName)
	case platformv1.RestoreFailed:
		reason, why := platformv1.ReasonRestoreFailed, "failed"
		if cond := meta.FindStatusCondition(r.Status.Conditions, platformv1.ConditionSucceeded); cond != nil {
			if cond.Reason == platformv1.ReasonChecksumMismatch {
				reason = platformv1.ReasonChecksumMismatch
			}
			why = fmt.Sprintf("failed with %s: %s", cond.Reason, cond.Message)
		}
		verdict(dc, reason, fmt.Sprintf("Restore %s of Backup %s %s", r.Name, dc.BackupName, why))
		dc.Stage = platformv1.DrillCleaningUp
	}
	return nil
}

// pass gives a claim whose data was restored, and probed if asked, at done its verdict against
// the recovery time objective.
func (c *Controller) pass(d *platformv1.RestoreDrill, run *platformv1.DrillRun, dc *platformv1.DrillClaim, done time.Time, out *outcome) {
	ttr := done.Sub(run.StartTime.Time).Round(time.Second)
	dc.TimeToRestore = &metav1.Duration{Duration: ttr}
	dc.Stage = platformv1.DrillCleaningUp
	out.passed = append(out.passed, ttr)
	if rto := d.Spec.Objectives.MaxTimeToRestore; rto != nil && ttr > rto.Duration {
		verdict(dc, platformv1.ReasonRTOExceeded, fmt.Sprintf("Claim %s was restored%s in %s, more than maxTimeToRestore %s: restores of this data take longer than the objective allows; give restores more resources or revise the objective",
			dc.PVCName, probed(d), ttr, rto.Duration))
		return
	}
	dc.Result, dc.Reason = platformv1.DrillSucceeded, platformv1.ReasonDrillPassed
	dc.Message = fmt.Sprintf("Restored %s (%d files) from Backup %s in %s%s; backup %s old", agentjob.HumanBytes(dc.RestoredBytes), dc.RestoredFiles, dc.BackupName, durationOf(dc.RestoreDuration), probeFigure(dc), durationOf(dc.BackupAge))
}

func probed(d *platformv1.RestoreDrill) string {
	if d.Spec.Probe == nil {
		return ""
	}
	return " and probed"
}

func probeFigure(dc *platformv1.DrillClaim) string {
	if dc.ProbeDuration == nil {
		return ""
	}
	return fmt.Sprintf("; probe passed in %s", dc.ProbeDuration.Duration)
}

// verdict fails a claim's drill.
func verdict(dc *platformv1.DrillClaim, reason, message string) {
	dc.Result, dc.Reason, dc.Message = platformv1.DrillFailed, reason, message
}

// endRun records the end of run in d's status and tells it in events.
func (c *Controller) endRun(d *platformv1.RestoreDrill, run *platformv1.DrillRun, reason, message string, now time.Time, events *[]agentjob.Event, out *outcome) {
	run.CompletionTime = &metav1.Time{Time: now}
	run.Reason = reason
	run.TimeToRestore, run.MaxBackupAge = nil, nil
	for _, dc := range run.Claims {
		if dc.TimeToRestore != nil && (run.TimeToRestore == nil || dc.TimeToRestore.Duration > run.TimeToRestore.Duration) {
			run.TimeToRestore = dc.TimeToRestore.DeepCopy()
		}
		if dc.BackupAge != nil && (run.MaxBackupAge == nil || dc.BackupAge.Duration > run.MaxBackupAge.Duration) {
			run.MaxBackupAge = dc.BackupAge.DeepCopy()
		}
	}
	out.finished = run
	for _, dc := range run.Claims {
		if dc.Reason == platformv1.ReasonRTOExceeded {
			*events = append(*events, agentjob.Event{Type: corev1.EventTypeWarning, Reason: EventRTOExceeded, Message: dc.Message})
		}
	}
	if reason == platformv1.ReasonDrillPassed {
		run.Result = platformv1.DrillSucceeded
		d.Status.LastSuccessfulTime = &metav1.Time{Time: now}
		d.Status.ConsecutiveFailures = 0
		var parts []string
		for _, dc := range run.Claims {
			parts = append(parts, fmt.Sprintf("claim %s: %s", dc.PVCName, dc.Message))
		}
		msg := strings.Join(parts, "; ")
		setCondition(d, platformv1.ConditionSucceeded, metav1.ConditionTrue, reason, msg, now)
		*events = append(*events, agentjob.Event{Type: corev1.EventTypeNormal, Reason: EventDrillSucceeded, Message: msg})
		return
	}
	run.Result = platformv1.DrillFailed
	d.Status.ConsecutiveFailures++
	setCondition(d, platformv1.ConditionSucceeded, metav1.ConditionFalse, reason, message, now)
	*events = append(*events, agentjob.Event{Type: corev1.EventTypeWarning, Reason: EventDrillFailed, Message: fmt.Sprintf("%s: %s", reason, message)})
}

// policyClaims are the names of the claims policy selects now, sorted.
func (c *Controller) policyClaims(policy *platformv1.BackupPolicy) ([]string, error) {
	selector, err := metav1.LabelSelectorAsSelector(&policy.Spec.Target.PVCSelector)
	if err != nil {
		return nil, nil
	}
	claims, err := c.claims.PersistentVolumeClaims(policy.Namespace).List(selector)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, pvc := range claims {
		if metav1.GetControllerOf(pvc) != nil && isScratch(pvc) {
			continue // a drill's own scratch claim that the selector happens to match
		}
		out = append(out, pvc.Name)
	}
	sort.Strings(out)
	return out, nil
}

func isScratch(pvc *corev1.PersistentVolumeClaim) bool {
	_, ok := pvc.Labels[platformv1.LabelDrill]
	return ok
}

// newestCompleted is the Completed Backup of pvc by policy with the most recent data, or nil.
func (c *Controller) newestCompleted(policy *platformv1.BackupPolicy, pvc string) (*platformv1.Backup, error) {
	backups, err := c.backups.Backups(policy.Namespace).List(labels.SelectorFromSet(labels.Set{
		platformv1.LabelPolicy: policy.Name, platformv1.LabelPVC: pvc,
	}))
	if err != nil {
		return nil, err
	}
	var newest *platformv1.Backup
	for _, b := range backups {
		if b.Status.Phase != platformv1.BackupCompleted || b.DeletionTimestamp != nil || b.Status.Artifact == nil {
			continue
		}
		if newest == nil || recoveryPoint(b).After(recoveryPoint(newest)) {
			newest = b
		}
	}
	return newest, nil
}

// recoveryPoint is when a Backup's data is from: the snapshot's cut, else the start of the read,
// else the latest time known.
func recoveryPoint(b *platformv1.Backup) time.Time {
	switch {
	case b.Status.Snapshot != nil && b.Status.Snapshot.CreationTime != nil:
		return b.Status.Snapshot.CreationTime.Time
	case b.Status.StartTime != nil:
		return b.Status.StartTime.Time
	case b.Status.CompletionTime != nil:
		return b.Status.CompletionTime.Time
	}
	return b.CreationTimestamp.Time
}

func roundDuration(d time.Duration) time.Duration { return d.Round(time.Second) }

func durationOf(d *metav1.Duration) string {
	if d == nil {
		return "?"
	}
	return d.Duration.String()
}
