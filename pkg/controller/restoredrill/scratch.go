package restoredrill

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"
	"k8s.io/apimachinery/pkg/types"

	platformv1 "platform.example.com/backup-operator/pkg/apis/platform/v1"
	"platform.example.com/backup-operator/pkg/controller/agentjob"
	"platform.example.com/backup-operator/pkg/controller/restore"
)

// runLabels are the labels of every object of one claim's drill in a run.
func runLabels(d *platformv1.RestoreDrill, runID, pvc string) map[string]string {
	return map[string]string{
		platformv1.LabelManagedBy: platformv1.ManagedByValue,
		platformv1.LabelDrill:     d.Name,
		platformv1.LabelDrillRun:  runID,
		platformv1.LabelPVC:       pvc,
	}
}

func ownerRef(d *platformv1.RestoreDrill) metav1.OwnerReference {
	return *metav1.NewControllerRef(d, platformv1.SchemeGroupVersion.WithKind("RestoreDrill"))
}

// ensureScratch makes the scratch claim of dc, owned by d. It reports false, with the claim's
// verdict given, when the name is taken by a claim d did not create: that claim is never used.
func (c *Controller) ensureScratch(ctx context.Context, d *platformv1.RestoreDrill, run *platformv1.DrillRun, dc *platformv1.DrillClaim, backup *platformv1.Backup) (bool, error) {
	name := dc.ScratchClaimName
	existing, err := c.claims.PersistentVolumeClaims(d.Namespace).Get(name)
	if apierrors.IsNotFound(err) {
		size := restore.ClaimSize(backup.Status.Artifact.SourceBytes)
		if d.Spec.Scratch.Size != nil {
			size = d.Spec.Scratch.Size.DeepCopy()
		}
		claim := &corev1.PersistentVolumeClaim{
			ObjectMeta: metav1.ObjectMeta{
				Namespace: d.Namespace, Name: name,
				Labels:          runLabels(d, run.ID, dc.PVCName),
				OwnerReferences: []metav1.OwnerReference{ownerRef(d)},
			},
			Spec: corev1.PersistentVolumeClaimSpec{
				AccessModes:      []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
				StorageClassName: d.Spec.Scratch.StorageClassName,
				Resources:        corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: size}},
			},
		}
		existing, err = c.deps.KubeClient.CoreV1().PersistentVolumeClaims(d.Namespace).Create(ctx, claim, metav1.CreateOptions{})
		if apierrors.IsAlreadyExists(err) {
			existing, err = c.deps.KubeClient.CoreV1().PersistentVolumeClaims(d.Namespace).Get(ctx, name, metav1.GetOptions{})
		}
		if apierrors.IsInvalid(err) || apierrors.IsForbidden(err) {
			verdict(dc, platformv1.ReasonRestoreFailed, fmt.Sprintf("Creating scratch claim %s was refused: %v. Fix spec.scratch (or the namespace's quota)", name, err))
			dc.Stage = platformv1.DrillCleaningUp
			return false, nil
		}
	}
	if err != nil {
		return false, err
	}
	if !agentjob.IsControlledBy(existing, string(d.UID)) {
		verdict(dc, platformv1.ReasonScratchConflict, fmt.Sprintf("Claim %s exists and was not made by this drill: it is left alone and nothing is restored for claim %s. Rename or delete it", name, dc.PVCName))
		dc.ScratchClaimName, dc.RestoreName = "", ""
		dc.Stage = platformv1.DrillCleaningUp
		return false, nil
	}
	return true, nil
}

// ensureRestore makes the Restore of dc's Backup into its scratch claim, owned by d, and returns
// it; nil while the cache has not seen it yet. It reports false, with the verdict given, when the
// name is taken by a Restore d did not create.
func (c *Controller) ensureRestore(ctx context.Context, d *platformv1.RestoreDrill, run *platformv1.DrillRun, dc *platformv1.DrillClaim) (*platformv1.Restore, bool, error) {
	r, err := c.restores.Restores(d.Namespace).Get(dc.RestoreName)
	if apierrors.IsNotFound(err) {
		r = &platformv1.Restore{
			ObjectMeta: metav1.ObjectMeta{
				Namespace: d.Namespace, Name: dc.RestoreName,
				Labels:          runLabels(d, run.ID, dc.PVCName),
				OwnerReferences: []metav1.OwnerReference{ownerRef(d)},
			},
			Spec: platformv1.RestoreSpec{
				BackupName:      dc.BackupName,
				Target:          platformv1.RestoreTarget{ClaimName: dc.ScratchClaimName},
				OverwritePolicy: platformv1.OverwriteRefuse,
			},
		}
		r, err = c.deps.Client.PlatformV1().Restores(d.Namespace).Create(ctx, r, metav1.CreateOptions{})
		if apierrors.IsAlreadyExists(err) {
			r, err = c.deps.Client.PlatformV1().Restores(d.Namespace).Get(ctx, dc.RestoreName, metav1.GetOptions{})
		}
	}
	if err != nil {
		return nil, false, err
	}
	if !agentjob.IsControlledBy(r, string(d.UID)) {
		verdict(dc, platformv1.ReasonScratchConflict, fmt.Sprintf("Restore %s exists and was not made by this drill: nothing is restored for claim %s. Rename or delete it", r.Name, dc.PVCName))
		dc.RestoreName = ""
		dc.Stage = platformv1.DrillCleaningUp
		return nil, false, nil
	}
	return r, true, nil
}

// cleanUp deletes the probe Job and the scratch claim of dc, if d made them; a failed claim's
// scratch claim stays when spec.scratch.keepOnFailure asks for it. The Jobs go first, the probe's
// and the finished Restore's (the Restore itself stays, as the run's history): their finished
// pods would hold the claim in Terminating.
func (c *Controller) cleanUp(ctx context.Context, d *platformv1.RestoreDrill, dc *platformv1.DrillClaim) error {
	if dc.ProbeJobName != "" {
		if err := c.deleteJobOf(ctx, d.Namespace, dc.ProbeJobName, d.UID); err != nil {
			return err
		}
	}
	if dc.RestoreName != "" {
		r, err := c.restores.Restores(d.Namespace).Get(dc.RestoreName)
		switch {
		case apierrors.IsNotFound(err):
		case err != nil:
			return err
		case agentjob.IsControlledBy(r, string(d.UID)) && r.Status.Phase.Final():
			if err := c.deleteJobOf(ctx, d.Namespace, restore.JobName(r), r.UID); err != nil {
				return err
			}
		}
	}
	if dc.ScratchClaimName == "" || (dc.Result == platformv1.DrillFailed && d.Spec.Scratch.KeepOnFailure) {
		return nil
	}
	return c.deleteClaim(ctx, d, dc.ScratchClaimName)
}

// deleteJobOf deletes the Job name, with its pods, if owner controls it.
func (c *Controller) deleteJobOf(ctx context.Context, namespace, name string, owner types.UID) error {
	job, err := c.deps.KubeClient.BatchV1().Jobs(namespace).Get(ctx, name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		return nil
	case err != nil:
		return err
	case !agentjob.IsControlledBy(job, string(owner)):
		return nil
	}
	return agentjob.DeleteJob(ctx, c.deps.KubeClient, job, metav1.DeletePropagationBackground)
}

// deleteClaim deletes the claim name if d controls it, with a UID precondition.
func (c *Controller) deleteClaim(ctx context.Context, d *platformv1.RestoreDrill, name string) error {
	claim, err := c.deps.KubeClient.CoreV1().PersistentVolumeClaims(d.Namespace).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if !agentjob.IsControlledBy(claim, string(d.UID)) || claim.DeletionTimestamp != nil {
		return nil
	}
	err = c.deps.KubeClient.CoreV1().PersistentVolumeClaims(d.Namespace).Delete(ctx, name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &claim.UID}})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("deleting scratch claim %s/%s: %w", d.Namespace, name, err)
	}
	return nil
}

// deleteScratchOfOtherRuns deletes the scratch claims d made for runs other than runID: those a
// failed run kept for diagnosis, and any a lost status left behind.
func (c *Controller) deleteScratchOfOtherRuns(ctx context.Context, d *platformv1.RestoreDrill, runID string, events *[]agentjob.Event) error {
	other, err := labels.NewRequirement(platformv1.LabelDrillRun, selection.NotEquals, []string{runID})
	if err != nil {
		return err
	}
	mine, err := labels.NewRequirement(platformv1.LabelDrill, selection.Equals, []string{d.Name})
	if err != nil {
		return err
	}
	claims, err := c.claims.PersistentVolumeClaims(d.Namespace).List(labels.NewSelector().Add(*mine, *other))
	if err != nil {
		return err
	}
	var errs []error
	for _, claim := range claims {
		if agentjob.IsControlledBy(claim, string(d.UID)) && claim.DeletionTimestamp == nil {
			errs = append(errs, c.deleteClaim(ctx, d, claim.Name))
		}
	}
	if err := errors.Join(errs...); err != nil {
		*events = append(*events, agentjob.Event{Type: corev1.EventTypeWarning, Reason: EventScratchCleanupFailed, Message: fmt.Sprintf(
			"Could not delete the scratch claims of earlier runs: %v; the new run waits and tries again", err)})
		return err
	}
	return nil
}

// markVerified records each drilled Backup's verdict in its status.
func (c *Controller) markVerified(ctx context.Context, d *platformv1.RestoreDrill, run *platformv1.DrillRun, now time.Time) error {
	for _, dc := range run.Claims {
		if dc.BackupName == "" || dc.RestoreName == "" {
			continue // nothing was restored from it: a too old Backup is not disproved
		}
		b, err := c.backups.Backups(d.Namespace).Get(dc.BackupName)
		if apierrors.IsNotFound(err) {
			continue
		}
		if err != nil {
			return err
		}
		v := &platformv1.BackupVerification{Time: metav1.NewTime(now), DrillName: d.Name, Result: dc.Result, Reason: dc.Reason}
		if lv := b.Status.LastVerified; lv != nil && lv.DrillName == v.DrillName && lv.Result == v.Result && lv.Reason == v.Reason && !lv.Time.Time.Before(run.StartTime.Time) {
			continue // recorded by an earlier sync of this run
		}
		b = b.DeepCopy()
		b.Status.LastVerified = v
		if _, err := c.deps.Client.PlatformV1().Backups(d.Namespace).UpdateStatus(ctx, b, metav1.UpdateOptions{}); err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("recording the drill's verdict on Backup %s/%s: %w", d.Namespace, b.Name, err)
		}
	}
	return nil
}

// pruneHistory labels the Restores of run with its result and deletes the Restores of the runs
// beyond the history limits, oldest first.
func (c *Controller) pruneHistory(ctx context.Context, d *platformv1.RestoreDrill, run *platformv1.DrillRun) error {
	restores, err := c.restores.Restores(d.Namespace).List(labels.SelectorFromSet(labels.Set{platformv1.LabelDrill: d.Name}))
	if err != nil {
		return err
	}
	type past struct {
		id      string
		result  platformv1.DrillResult
		started time.Time
		objs    []*platformv1.Restore
	}
	runs := map[string]*past{}
	var errs []error
	for _, r := range restores {
		if !agentjob.IsControlledBy(r, string(d.UID)) {
			continue
		}
		id := r.Labels[platformv1.LabelDrillRun]
		result := platformv1.DrillResult(r.Labels[LabelDrillResult])
		if id == run.ID && result != run.Result {
			patch := fmt.Sprintf(`{"metadata":{"labels":{%q:%q}}}`, LabelDrillResult, run.Result)
			if _, err := c.deps.Client.PlatformV1().Restores(d.Namespace).Patch(ctx, r.Name, types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil && !apierrors.IsNotFound(err) {
				errs = append(errs, fmt.Errorf("labelling Restore %s/%s with its run's result: %w", d.Namespace, r.Name, err))
			}
			result = run.Result
		}
		p := runs[id]
		if p == nil {
			p = &past{id: id, result: result, started: r.CreationTimestamp.Time}
			runs[id] = p
		}
		p.objs = append(p.objs, r)
	}
	var ordered []*past
	for _, p := range runs {
		ordered = append(ordered, p)
	}
	sort.Slice(ordered, func(i, j int) bool { return ordered[i].started.After(ordered[j].started) })
	keep := map[platformv1.DrillResult]int32{
		platformv1.DrillSucceeded: limit(d.Spec.SuccessfulRunsHistoryLimit, 3),
		platformv1.DrillFailed:    limit(d.Spec.FailedRunsHistoryLimit, 1),
	}
	for _, p := range ordered {
		result := p.result
		if result != platformv1.DrillSucceeded {
			result = platformv1.DrillFailed // a run whose end was never labelled counts as failed
		}
		if keep[result] > 0 {
			keep[result]--
			continue
		}
		for _, r := range p.objs {
			err := c.deps.Client.PlatformV1().Restores(d.Namespace).Delete(ctx, r.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &r.UID}})
			if err != nil && !apierrors.IsNotFound(err) {
				errs = append(errs, fmt.Errorf("deleting Restore %s/%s of an old drill run: %w", d.Namespace, r.Name, err))
			}
		}
	}
	return errors.Join(errs...)
}

// LabelDrillResult is set on a run's Restores when the run ends: its result, which the history
// limits count by.
const LabelDrillResult = "platform.example.com/drill-result"

func limit(v *int32, def int32) int32 {
	if v == nil {
		return def
	}
	return *v
}
