package backup

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/klog/v2"
	"k8s.io/utils/ptr"

	"platform.example.com/backup-operator/pkg/agent"
	platformv1 "platform.example.com/backup-operator/pkg/apis/platform/v1"
	"platform.example.com/backup-operator/pkg/controller/agentjob"
	"platform.example.com/backup-operator/pkg/names"
)

// Bounds of a cleanup Job. Deleting three files takes seconds; the deadline covers a pod that
// waits for its volume, and past it the finalizer is released so a Backup never hangs in deletion.
const (
	// CleanupActiveDeadlineSeconds bounds one cleanup Job, retries included.
	CleanupActiveDeadlineSeconds int64 = 600
	// CleanupTTLSecondsAfterFinished lets Kubernetes delete a finished cleanup Job that the
	// controller did not delete itself, for example because the Backup was gone by then.
	CleanupTTLSecondsAfterFinished int32 = 86400
)

// CleanupJobName is the name of the Job that deletes backup's archive.
func CleanupJobName(backup *platformv1.Backup) string { return names.Join("cleanup", backup.Name) }

// finalize runs the archive-cleanup finalizer of a Backup being deleted: it stops the backup Job
// if it still runs, deletes the archive with a cleanup Job, and releases the finalizer when the
// archive is gone, kept by policy, or cannot be deleted.
func (c *Controller) finalize(ctx context.Context, b *platformv1.Backup) (time.Duration, error) {
	if !slices.Contains(b.Finalizers, platformv1.FinalizerArchiveCleanup) {
		return 0, nil
	}
	if fromSnapshot(b) {
		// Garbage collection would delete them after the Backup is gone; this is sooner, and
		// takes a kept snapshot with its Backup.
		if err := c.dropSnapshot(ctx, b, false, "with the Backup"); err != nil {
			return 0, err
		}
	}
	st, refusal, err := agentjob.StorageOf(c.storages, b)
	if err != nil {
		return 0, err
	}
	archivePath := ""
	if b.Status.Artifact != nil {
		archivePath = b.Status.Artifact.Path
	} else if p, err := ArchivePath(b, st); err == nil && refusal == nil {
		archivePath = p
	}
	if b.Spec.DeletionPolicy == platformv1.DeletionPolicyRetain {
		return 0, c.release(ctx, b, corev1.EventTypeNormal, EventArchiveRetained,
			fmt.Sprintf("Kept archive %s on %s: deletionPolicy is Retain.", archivePath, storageName(b, st, refusal)))
	}

	job, err := c.jobs.Jobs(b.Namespace).Get(JobName(b))
	if err != nil && !apierrors.IsNotFound(err) {
		return 0, err
	}
	ours := err == nil && agentjob.IsControlledBy(job, string(b.UID))
	if ours && !agentjob.Observe(job, nil).State.Finished() {
		// A backup still writing could finish its archive after the cleanup looked: stop it
		// first, and clean up once it and its pods are gone.
		if job.DeletionTimestamp == nil {
			if err := agentjob.DeleteJob(ctx, c.deps.KubeClient, job, metav1.DeletePropagationForeground); err != nil {
				return 0, err
			}
			c.deps.Recorder.Eventf(b, corev1.EventTypeNormal, EventStoppingJob, "Stopping Job %s before deleting the archive it writes", job.Name)
		}
		return 0, nil
	}
	if readers, err := c.activeRestores(b); err != nil || len(readers) > 0 {
		// Deleting the archive under a restore would fail it halfway through the target.
		if err == nil {
			klog.FromContext(ctx).V(2).Info("Waiting for Restores that read the archive", "restores", readers)
		}
		return 0, err
	}
	if b.Status.JobName == "" && b.Status.Artifact == nil && !ours {
		// No Job ever ran for this Backup: nothing was written.
		return 0, c.release(ctx, b, "", "", "")
	}
	if refusal != nil {
		return 0, c.release(ctx, b, corev1.EventTypeWarning, EventStorageGone,
			fmt.Sprintf("%s, so archive %s could not be deleted: if the storage comes back, delete the archive and its .sha256 and .manifest.json by hand.", strings.TrimSuffix(refusal.Message, "."), archivePath))
	}
	if st.ReadOnly {
		return 0, c.release(ctx, b, corev1.EventTypeNormal, EventArchiveRetained,
			fmt.Sprintf("Kept archive %s on %s: the storage is ReadOnly, so the operator never deletes from it.", archivePath, st))
	}
	if archivePath == "" {
		return 0, c.release(ctx, b, corev1.EventTypeWarning, EventCleanupFailed,
			fmt.Sprintf("Cannot tell where the archive is (unknown compression); nothing was deleted from %s: look for it by hand.", st))
	}

	cleanup, err := c.jobs.Jobs(b.Namespace).Get(CleanupJobName(b))
	if apierrors.IsNotFound(err) {
		cleanup = nil
	} else if err != nil {
		return 0, err
	}
	if !st.IsS3() {
		if _, err := c.claims.PersistentVolumeClaims(b.Namespace).Get(st.ClaimName); apierrors.IsNotFound(err) {
			if cleanup != nil && cleanup.Annotations[platformv1.AnnotationBackupUID] == string(b.UID) {
				if err := agentjob.DeleteJob(ctx, c.deps.KubeClient, cleanup, metav1.DeletePropagationBackground); err != nil {
					return 0, err
				}
			}
			return 0, c.release(ctx, b, corev1.EventTypeWarning, EventStorageGone,
				fmt.Sprintf("Storage claim %s no longer exists, so archive %s could not be deleted: if the claim comes back, delete the archive and its .sha256 and .manifest.json files by hand.", st.ClaimName, archivePath))
		} else if err != nil {
			return 0, err
		}
	}

	if cleanup == nil {
		return 0, c.createCleanupJob(ctx, b, st, archivePath)
	}
	if cleanup.Annotations[platformv1.AnnotationBackupUID] != string(b.UID) {
		// The cleanup of an earlier Backup of the same name: let it finish, then remove it.
		if agentjob.Observe(cleanup, nil).State.Finished() && cleanup.DeletionTimestamp == nil {
			return 0, agentjob.DeleteJob(ctx, c.deps.KubeClient, cleanup, metav1.DeletePropagationBackground)
		}
		return 0, nil
	}

	obs, err := agentjob.Follow(c.pods, cleanup, platformv1.LabelBackup, b.Name)
	if err != nil {
		return 0, err
	}
	agentjob.ExplainClaims(&obs, c.claims, b.Namespace)
	if !obs.State.Finished() {
		if obs.Stuck != "" {
			// The Backup is going, so there is no status to say it in. The same message on each
			// sync only adds to the Event's count.
			c.deps.Recorder.Eventf(b, corev1.EventTypeWarning, agentjob.EventPodNotStarting,
				"Pod %s of cleanup Job %s cannot start (%s). The archive is deleted once it starts; if it has not within %s, the Backup goes and the archive is left on storage (CleanupFailed).",
				obs.StuckPod, cleanup.Name, obs.Stuck, time.Duration(CleanupActiveDeadlineSeconds)*time.Second)
		}
		return 0, nil
	}
	var result *agent.DeleteResult
	if obs.Result != "" {
		result, _ = agentjob.DecodeDelete(obs.Result)
	}
	// The Job is ours to remove: nothing owns it.
	if err := agentjob.DeleteJob(ctx, c.deps.KubeClient, cleanup, metav1.DeletePropagationBackground); err != nil {
		return 0, err
	}
	if obs.State == agentjob.StateSucceeded {
		msg := fmt.Sprintf("Deleted archive %s and its checksum and manifest from %s.", archivePath, st)
		if result != nil && result.AlreadyDeleted {
			msg = fmt.Sprintf("Archive %s was not on %s; removed any leftovers of an unfinished write.", archivePath, st)
		}
		return 0, c.release(ctx, b, corev1.EventTypeNormal, EventArchiveDeleted, msg)
	}
	if result != nil && result.Reason == agent.ArchiveRetained {
		until := "a date the server did not say"
		if result.RetainedUntil != nil {
			until = result.RetainedUntil.UTC().Format(time.RFC3339)
		}
		return 0, c.release(ctx, b, corev1.EventTypeWarning, EventArchiveLocked,
			fmt.Sprintf("Archive %s on %s is kept by object lock until %s, so it was not deleted; the Backup is gone. Delete the archive and its .sha256 and .manifest.json after that date, or let a bucket lifecycle rule do it.", archivePath, st, until))
	}
	why := fmt.Sprintf("Job %s failed", cleanup.Name)
	switch {
	case result != nil && !result.Succeeded():
		why = fmt.Sprintf("the agent failed (%s): %s", result.Reason, result.Error)
	case obs.JobMessage != "":
		why = fmt.Sprintf("Job %s failed (%s): %s", cleanup.Name, obs.JobReason, obs.JobMessage)
	}
	return 0, c.release(ctx, b, corev1.EventTypeWarning, EventCleanupFailed,
		fmt.Sprintf("Could not delete archive %s from %s: %s. The archive is left on storage: delete it and its .sha256 and .manifest.json files by hand.", archivePath, st, why))
}

// storageName names b's storage for people, also when it cannot be resolved.
func storageName(b *platformv1.Backup, st agentjob.Storage, refusal *agentjob.Refusal) string {
	if refusal != nil {
		return "BackupStorage " + b.Spec.Storage.Name
	}
	return st.String()
}

// activeRestores names the Restores of b that have not finished: they may be reading its archive.
func (c *Controller) activeRestores(b *platformv1.Backup) ([]string, error) {
	restores, err := c.restores.Restores(b.Namespace).List(labels.Everything())
	if err != nil {
		return nil, err
	}
	var active []string
	for _, r := range restores {
		if r.Spec.BackupName == b.Name && !r.Status.Phase.Final() {
			active = append(active, r.Name)
		}
	}
	slices.Sort(active)
	return active, nil
}

// createCleanupJob starts the Job that deletes the archive. It has no owner: a Backup deleted
// with foreground propagation has its dependents deleted, which would kill the cleanup halfway
// and start it again forever.
func (c *Controller) createCleanupJob(ctx context.Context, b *platformv1.Backup, st agentjob.Storage, archivePath string) error {
	_, backoff, _ := agentjob.Settings(b.Spec.JobSettings)
	access := st.Access(archivePath, true)
	job := agentjob.New(agentjob.Spec{
		Namespace: b.Namespace,
		Name:      CleanupJobName(b),
		Labels: map[string]string{
			platformv1.LabelBackup:  b.Name,
			platformv1.LabelPVC:     b.Spec.PVCName,
			agentjob.LabelComponent: agentjob.ComponentCleanup,
		},
		Image:   c.deps.AgentImage,
		Args:    slices.Concat([]string{agent.OpDelete, "--archive", access.Location}, agentjob.ArchiveFormatArgs(b)),
		Storage: access,
		Settings: platformv1.JobSettings{
			ActiveDeadlineSeconds: ptr.To(CleanupActiveDeadlineSeconds),
			BackoffLimit:          ptr.To(backoff),
			Resources:             b.Spec.Resources,
			// As the backup ran: a namespace that admitted only that user's pods still
			// admits its cleanup.
			AgentSecurityContext: b.Spec.AgentSecurityContext,
		},
		TTLSecondsAfterFinished: ptr.To(CleanupTTLSecondsAfterFinished),
	})
	job.Annotations = map[string]string{platformv1.AnnotationBackupUID: string(b.UID)}
	created, err := c.deps.KubeClient.BatchV1().Jobs(b.Namespace).Create(ctx, job, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		// An earlier sync made it; its news will bring the Backup back here.
		return nil
	}
	if apierrors.HasStatusCause(err, corev1.NamespaceTerminatingCause) {
		// The whole namespace is going, which is the very loss its archives are for: they
		// stay on storage, where a new namespace of the same name finds them again. No Job can
		// be made here any more anyway, and waiting would hold the namespace forever.
		return c.release(ctx, b, corev1.EventTypeNormal, EventArchiveRetained,
			fmt.Sprintf("Kept archive %s on %s: namespace %s is being deleted, and archives outlive their namespace so that it can be recovered from storage. Delete the archive by hand if it is not wanted.", archivePath, st, b.Namespace))
	}
	if err != nil {
		return fmt.Errorf("creating cleanup Job %s/%s: %w", b.Namespace, job.Name, err)
	}
	klog.FromContext(ctx).V(2).Info("Created cleanup Job", "job", klog.KObj(created), "archive", archivePath)
	c.deps.Recorder.Eventf(b, corev1.EventTypeNormal, EventCleanupJobCreated, "Created Job %s to delete archive %s from %s", created.Name, archivePath, st)
	return nil
}

// release removes the archive-cleanup finalizer, letting the Backup go, and tells why in an Event
// when reason is set.
func (c *Controller) release(ctx context.Context, backup *platformv1.Backup, eventType, reason, message string) error {
	b := backup.DeepCopy()
	b.Finalizers = slices.DeleteFunc(b.Finalizers, func(f string) bool { return f == platformv1.FinalizerArchiveCleanup })
	if _, err := c.deps.Client.PlatformV1().Backups(b.Namespace).Update(ctx, b, metav1.UpdateOptions{}); err != nil {
		if apierrors.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("removing the %s finalizer from Backup %s/%s: %w", platformv1.FinalizerArchiveCleanup, b.Namespace, b.Name, err)
	}
	if reason != "" {
		c.deps.Recorder.Event(b, eventType, reason, message)
	}
	return nil
}
