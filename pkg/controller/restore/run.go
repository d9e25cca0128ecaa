package restore

import (
	"context"
	"fmt"
	"path"
	"strings"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/klog/v2"

	"platform.example.com/backup-operator/pkg/agent"
	platformv1 "platform.example.com/backup-operator/pkg/apis/platform/v1"
	"platform.example.com/backup-operator/pkg/controller/agentjob"
	"platform.example.com/backup-operator/pkg/metrics"
	"platform.example.com/backup-operator/pkg/names"
)

// ResultGracePeriod is how long after its Job ended a Restore waits for the pod's termination
// message to reach the cache before it decides the result is missing: the same for every run.
const ResultGracePeriod = agentjob.ResultGracePeriod

// Sizing of a target claim whose template gives no size: the archive's source bytes plus a
// quarter and a fixed allowance for file system metadata, and never less than MinClaimSize.
var (
	// ClaimHeadroom is added to the source bytes besides a quarter of them.
	ClaimHeadroom = resource.MustParse("256Mi")
	// MinClaimSize is the smallest claim a restore creates.
	MinClaimSize = resource.MustParse("1Gi")
)

// JobName is the name of the Job that runs restore: a function of the Restore alone, so a second
// attempt to create it finds the first.
func JobName(restore *platformv1.Restore) string { return names.Join("restore", restore.Name) }

// ClaimSize is the size of a target claim created for an archive of sourceBytes.
func ClaimSize(sourceBytes int64) resource.Quantity {
	const mi = 1 << 20
	size := sourceBytes + sourceBytes/4 + ClaimHeadroom.Value()
	size = (size + mi - 1) / mi * mi
	if size < MinClaimSize.Value() {
		size = MinClaimSize.Value()
	}
	return *resource.NewQuantity(size, resource.BinarySI)
}

// run advances a Restore that is not finished and writes its status once, if it changed.
func (c *Controller) run(ctx context.Context, restore *platformv1.Restore) (time.Duration, error) {
	r := restore.DeepCopy()
	var events []agentjob.Event
	requeue, err := c.advance(ctx, r, &events)
	if err != nil {
		return 0, err
	}
	r.Status.ObservedGeneration = r.Generation
	changed := !equality.Semantic.DeepEqual(restore.Status, r.Status)
	if err := agentjob.Commit(ctx, c.deps.Recorder, r, changed, c.deps.Client.PlatformV1().Restores(r.Namespace).UpdateStatus, events); err != nil {
		return 0, fmt.Errorf("updating the status of Restore %s/%s: %w", r.Namespace, r.Name, err)
	}
	// Counted once the final phase is written: run only sees unfinished Restores.
	switch r.Status.Phase {
	case platformv1.RestoreCompleted:
		c.deps.Metrics.RestoreFinished(r.Namespace, metrics.ResultCompleted, agentjob.Elapsed(r.Status.Duration))
	case platformv1.RestoreFailed:
		c.deps.Metrics.RestoreFinished(r.Namespace, metrics.ResultFailed, agentjob.Elapsed(r.Status.Duration))
	}
	return requeue, nil
}

func (c *Controller) advance(ctx context.Context, r *platformv1.Restore, events *[]agentjob.Event) (time.Duration, error) {
	name := JobName(r)
	job, lost, err := agentjob.Get(ctx, c.jobs, c.deps.KubeClient, r.Namespace, name, r.Status.JobName != "")
	if err != nil {
		return 0, err
	}
	if lost {
		c.fail(r, platformv1.ReasonJobLost, fmt.Sprintf("Job %s was deleted before it finished, so claim %s may hold a partial restore: "+
			"check it, or create a new Restore with overwritePolicy Replace.", name, r.Spec.Target.ClaimName), events)
		return 0, nil
	}
	if job == nil {
		job, err = c.createJob(ctx, r, events)
		if job == nil || err != nil {
			return 0, err
		}
	}
	if !agentjob.IsControlledBy(job, string(r.UID)) {
		c.fail(r, platformv1.ReasonJobConflict, agentjob.ConflictMessage(job, "Restore", r.Name), events)
		return 0, nil
	}
	return c.follow(ctx, r, job, events)
}

// createJob runs every check a restore must pass before anything is written, makes the target
// claim if the spec asks for it, and creates the Job. It returns a nil Job when the Restore was
// refused, with the refusal in r's status.
func (c *Controller) createJob(ctx context.Context, r *platformv1.Restore, events *[]agentjob.Event) (*batchv1.Job, error) {
	backup, err := c.backups.Backups(r.Namespace).Get(r.Spec.BackupName)
	if apierrors.IsNotFound(err) {
		c.fail(r, platformv1.ReasonBackupNotFound, fmt.Sprintf("Backup %s does not exist in namespace %s: nothing was written. Name an existing Completed Backup in a new Restore.", r.Spec.BackupName, r.Namespace), events)
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if backup.DeletionTimestamp != nil {
		c.fail(r, platformv1.ReasonBackupNotFound, fmt.Sprintf("Backup %s is being deleted with its archive: nothing was written. Name another Backup in a new Restore.", backup.Name), events)
		return nil, nil
	}
	artifact := backup.Status.Artifact
	if backup.Status.Phase != platformv1.BackupCompleted || artifact == nil || !validArtifactPath(artifact.Path) || artifact.SHA256 == "" {
		phase := string(backup.Status.Phase)
		if phase == "" {
			phase = string(platformv1.BackupPending)
		}
		c.fail(r, platformv1.ReasonBackupNotCompleted, fmt.Sprintf("Backup %s is %s and records no usable archive: nothing was written. Wait for it to complete, or name a Completed Backup in a new Restore.", backup.Name, phase), events)
		return nil, nil
	}
	st, refusal, err := agentjob.StorageOf(c.storages, backup)
	if err != nil {
		return nil, err
	}
	if refusal != nil {
		c.fail(r, refusal.Reason, fmt.Sprintf("%s It holds archive %s: nothing was written. Then create a new Restore.", refusal.Message, artifact.Path), events)
		return nil, nil
	}
	if !st.IsS3() {
		if _, err := c.claims.PersistentVolumeClaims(r.Namespace).Get(st.ClaimName); apierrors.IsNotFound(err) {
			c.fail(r, platformv1.ReasonStorageNotFound, fmt.Sprintf("Storage claim %s, which holds archive %s, does not exist: nothing was written. Bring the claim back, then create a new Restore.", st.ClaimName, artifact.Path), events)
			return nil, nil
		} else if err != nil {
			return nil, err
		}
	}
	identity, ok := st.Identity()
	if enc := artifact.Encryption; enc != nil && !ok {
		c.fail(r, platformv1.ReasonEncryptionKeyMissing, fmt.Sprintf("Archive %s is encrypted with %s to the keys with fingerprints %s, and %s names no identity to decrypt it: nothing was written. "+
			"Create a Secret holding the identity (age-keygen's file) of one of those keys, name it in encryption.identitySecretRef, then create a new Restore.",
			artifact.Path, enc.Type, strings.Join(enc.RecipientFingerprints, ", "), st), events)
		return nil, nil
	}
	// Before the target is made: a namespace that would refuse the restore's pod gets no claim.
	if refusal := agentjob.PodSecurityRefusal(ctx, c.deps.KubeClient, agentjob.Spec{
		Namespace: r.Namespace, Capabilities: agentjob.WriteCapabilities, Settings: r.Spec.JobSettings,
	}); refusal != nil {
		c.fail(r, refusal.Reason, refusal.Message+"; nothing was written. Then create a new Restore.", events)
		return nil, nil
	}

	target, ours, justCreated, err := c.targetClaim(ctx, r, backup, events)
	if target == nil || err != nil {
		return nil, err
	}
	r.Status.ClaimCreated = ours
	node := ""
	if !justCreated {
		users, err := agentjob.ClaimUsers(ctx, c.deps.KubeClient, r.Namespace, target.Name)
		if err != nil {
			return nil, err
		}
		for _, u := range users {
			if u.ReadWrite {
				c.fail(r, platformv1.ReasonClaimInUse, fmt.Sprintf("Claim %s is mounted read-write by running pod %s: nothing was written. Stop that pod (scale its workload to zero), then create a new Restore.", target.Name, u.Pod), events)
				return nil, nil
			}
		}
		if len(users) > 0 {
			if agentjob.SinglePod(target) {
				c.fail(r, platformv1.ReasonClaimInUse, fmt.Sprintf("Claim %s is ReadWriteOncePod and pod %s is using it: nothing was written. Stop that pod, then create a new Restore.", target.Name, users[0].Pod), events)
				return nil, nil
			}
			if agentjob.SingleNode(target) {
				node = users[0].NodeName
			}
		}
	}

	overwrite := r.Spec.OverwritePolicy
	if overwrite == "" {
		overwrite = platformv1.OverwriteRefuse
	}
	access := st.Access(artifact.Path, false)
	if enc := artifact.Encryption; enc != nil {
		access.Env = append(access.Env, identity)
		access.Args = append(access.Args, "--recipient-fingerprints", strings.Join(enc.RecipientFingerprints, ","))
	}
	job := agentjob.New(agentjob.Spec{
		Namespace: r.Namespace,
		Name:      JobName(r),
		Owner:     metav1.NewControllerRef(r, platformv1.SchemeGroupVersion.WithKind("Restore")),
		Labels: map[string]string{
			platformv1.LabelRestore: r.Name,
			platformv1.LabelPVC:     target.Name,
			agentjob.LabelComponent: agentjob.ComponentRestore,
		},
		Image: c.deps.AgentImage,
		Args: append([]string{agent.OpRestore,
			"--archive", access.Location,
			"--target", agentjob.TargetMountPath,
			"--sha256", artifact.SHA256,
			"--overwrite", strings.ToLower(string(overwrite)),
		}, agentjob.ArchiveFormatArgs(backup)...),
		Mounts: []agentjob.Mount{
			{Name: "target", ClaimName: target.Name, MountPath: agentjob.TargetMountPath},
		},
		Storage:      access,
		Capabilities: agentjob.WriteCapabilities,
		NodeName:     node,
		Settings:     r.Spec.JobSettings,
	})
	createdJob, isNew, err := agentjob.Create(ctx, c.deps.KubeClient, job)
	if err != nil || !isNew {
		return createdJob, err
	}
	klog.FromContext(ctx).V(2).Info("Created restore Job", "job", klog.KObj(createdJob), "node", node)
	c.deps.Recorder.Eventf(r, corev1.EventTypeNormal, EventJobCreated, "Created Job %s to restore archive %s of Backup %s into claim %s (overwritePolicy %s)",
		createdJob.Name, artifact.Path, backup.Name, target.Name, overwrite)
	return createdJob, nil
}

// targetClaim returns the claim to write into, whether this Restore made it, and whether it made
// it just now, creating it from the template when it does not exist. It returns nil when the
// Restore was refused.
func (c *Controller) targetClaim(ctx context.Context, r *platformv1.Restore, backup *platformv1.Backup, events *[]agentjob.Event) (claim *corev1.PersistentVolumeClaim, ours, justCreated bool, err error) {
	name := r.Spec.Target.ClaimName
	claim, err = c.claims.PersistentVolumeClaims(r.Namespace).Get(name)
	if err == nil {
		return claim, madeBy(claim, r), false, nil
	}
	if !apierrors.IsNotFound(err) {
		return nil, false, false, err
	}
	if r.Spec.Target.Create == nil {
		c.fail(r, platformv1.ReasonClaimNotFound, fmt.Sprintf("Target claim %s does not exist and spec.target.create is not set: nothing was written. Create the claim, or set spec.target.create in a new Restore.", name), events)
		return nil, false, false, nil
	}
	created, err := c.deps.KubeClient.CoreV1().PersistentVolumeClaims(r.Namespace).Create(ctx, newClaim(r, backup), metav1.CreateOptions{})
	switch {
	case apierrors.IsAlreadyExists(err):
		// Made meanwhile, by an earlier sync of this Restore or by someone else: the
		// annotation tells which, and either way it is checked like any existing claim.
		existing, err := c.deps.KubeClient.CoreV1().PersistentVolumeClaims(r.Namespace).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return nil, false, false, fmt.Errorf("reading claim %s/%s, which already exists: %w", r.Namespace, name, err)
		}
		return existing, madeBy(existing, r), false, nil
	case apierrors.IsInvalid(err) || apierrors.IsForbidden(err):
		c.fail(r, platformv1.ReasonClaimCreateFailed, fmt.Sprintf("Creating target claim %s was refused: %v. Nothing was written: fix spec.target.create (or the namespace's quota) in a new Restore.", name, err), events)
		return nil, false, false, nil
	case err != nil:
		return nil, false, false, fmt.Errorf("creating claim %s/%s: %w", r.Namespace, name, err)
	}
	size := created.Spec.Resources.Requests[corev1.ResourceStorage]
	c.deps.Recorder.Eventf(r, corev1.EventTypeNormal, EventClaimCreated, "Created claim %s of %s for the restore; it is not owned by this Restore and stays when the Restore is deleted", name, size.String())
	return created, true, true, nil
}

// madeBy reports whether r created claim.
func madeBy(claim *corev1.PersistentVolumeClaim, r *platformv1.Restore) bool {
	return claim.Annotations[platformv1.AnnotationCreatedByRestore] == string(r.UID)
}

// newClaim is the target claim the template describes. It has no owner: restored data must
// outlive the Restore that wrote it.
func newClaim(r *platformv1.Restore, backup *platformv1.Backup) *corev1.PersistentVolumeClaim {
	tmpl := r.Spec.Target.Create
	size := ClaimSize(backup.Status.Artifact.SourceBytes)
	if tmpl.Size != nil {
		size = tmpl.Size.DeepCopy()
	}
	modes := tmpl.AccessModes
	if len(modes) == 0 {
		modes = []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce}
	}
	var claimLabels map[string]string
	if len(tmpl.Labels) > 0 {
		claimLabels = make(map[string]string, len(tmpl.Labels))
		for k, v := range tmpl.Labels {
			claimLabels[k] = v
		}
	}
	return &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{
			Namespace:   r.Namespace,
			Name:        r.Spec.Target.ClaimName,
			Labels:      claimLabels,
			Annotations: map[string]string{platformv1.AnnotationCreatedByRestore: string(r.UID)},
		},
		Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes:      append([]corev1.PersistentVolumeAccessMode(nil), modes...),
			StorageClassName: tmpl.StorageClassName,
			Resources: corev1.VolumeResourceRequirements{
				Requests: corev1.ResourceList{corev1.ResourceStorage: size},
			},
		},
	}
}

// validArtifactPath accepts only a clean relative path: a status can be edited by anyone allowed
// to write it, and the path decides what the restore pod mounts.
func validArtifactPath(p string) bool {
	if p == "" || path.IsAbs(p) || path.Clean(p) != p {
		return false
	}
	for _, seg := range strings.Split(p, "/") {
		if seg == ".." {
			return false
		}
	}
	return true
}

// follow sets r's status from its Job and the Job's pods.
func (c *Controller) follow(ctx context.Context, r *platformv1.Restore, job *batchv1.Job, events *[]agentjob.Event) (time.Duration, error) {
	now := c.deps.Clock.Now()
	obs, err := agentjob.Follow(c.pods, job, platformv1.LabelRestore, r.Name)
	if err != nil {
		return 0, err
	}
	agentjob.ExplainClaims(&obs, c.claims, r.Namespace)
	r.Status.JobName = job.Name
	if r.Status.StartTime == nil && obs.StartTime != nil {
		r.Status.StartTime = obs.StartTime.DeepCopy()
	}

	switch obs.State {
	case agentjob.StatePending:
		p := agentjob.CheckPending(meta.FindStatusCondition(r.Status.Conditions, platformv1.ConditionSucceeded), job, obs, r.Spec.JobSettings, now)
		if p.Expired {
			c.fail(r, platformv1.ReasonPodNotStarted, p.Message, events)
			return 0, agentjob.DeleteJob(ctx, c.deps.KubeClient, job, metav1.DeletePropagationBackground)
		}
		r.Status.Phase = platformv1.RestorePending
		agentjob.SetSucceeded(&r.Status.Conditions, metav1.ConditionUnknown, platformv1.ReasonJobPending, p.Message, r.Generation, now)
		if p.Event != nil {
			*events = append(*events, *p.Event)
		}
		return p.Requeue, nil
	case agentjob.StateRunning:
		if r.Status.Phase != platformv1.RestoreRunning {
			*events = append(*events, started(r, obs))
		}
		r.Status.Phase = platformv1.RestoreRunning
		agentjob.SetSucceeded(&r.Status.Conditions, metav1.ConditionUnknown, platformv1.ReasonRunning,
			fmt.Sprintf("The agent is restoring Backup %s into claim %s.", r.Spec.BackupName, r.Spec.Target.ClaimName), r.Generation, now)
		return 0, nil
	}

	end := agentjob.Conclude(job, obs, r.Status.StartTime, now, agentjob.RestoreDecoder)
	if end.Wait > 0 {
		return end.Wait, nil
	}
	if r.Status.Phase != platformv1.RestoreRunning && obs.StartTime != nil {
		// The pod started and ended between two syncs: the story still has its start.
		*events = append(*events, started(r, obs))
	}
	r.Status.StartTime, r.Status.CompletionTime, r.Status.Duration = end.StartTime, end.CompletionTime, end.Duration
	switch end.Outcome {
	case agentjob.OutcomeSucceeded:
		c.complete(r, end.Result, events)
	case agentjob.OutcomeResultMissing:
		c.fail(r, platformv1.ReasonResultMissing, end.MissingResult(job)+fmt.Sprintf(": claim %s was probably restored, but it cannot be confirmed. Check its content.", r.Spec.Target.ClaimName), events)
	default:
		c.fail(r, end.Reason, failureMessage(r, job, obs, end.Status, end.DecodeErr, end.Reason), events)
	}
	return 0, nil
}

// started tells that the agent's pod started verifying the archive.
func started(r *platformv1.Restore, obs agentjob.Observation) agentjob.Event {
	return agentjob.Event{Type: corev1.EventTypeNormal, Reason: EventRestoreStarted,
		Message: fmt.Sprintf("Started verifying the archive of Backup %s, then writing claim %s, on node %s", r.Spec.BackupName, r.Spec.Target.ClaimName, obs.NodeName)}
}

func (c *Controller) complete(r *platformv1.Restore, res *agent.RestoreResult, events *[]agentjob.Event) {
	r.Status.Phase = platformv1.RestoreCompleted
	r.Status.VerifiedSHA256 = res.SHA256
	r.Status.RestoredFiles = res.Files + res.Directories + res.Symlinks + res.Hardlinks
	r.Status.RestoredBytes = res.Bytes
	agentjob.SetSucceeded(&r.Status.Conditions, metav1.ConditionTrue, platformv1.ReasonCompleted,
		fmt.Sprintf("Restored %d entries (%s) of Backup %s into claim %s after verifying sha256 %s.", r.Status.RestoredFiles, agentjob.HumanBytes(res.Bytes), r.Spec.BackupName, r.Spec.Target.ClaimName, res.SHA256), r.Generation, c.deps.Clock.Now())
	*events = append(*events, agentjob.Event{Type: corev1.EventTypeNormal, Reason: EventRestoreCompleted,
		Message: fmt.Sprintf("Restore completed in %s: %s in %d entries into claim %s, sha256 %s verified", r.Status.Duration.Duration, agentjob.HumanBytes(res.Bytes), r.Status.RestoredFiles, r.Spec.Target.ClaimName, agentjob.ShortSHA256(res.SHA256))})
	if res.OwnershipSkipped > 0 {
		*events = append(*events, agentjob.Event{Type: corev1.EventTypeWarning, Reason: EventOwnershipNotRestored,
			Message: fmt.Sprintf("%d entries kept the agent's owner instead of the archived one: the agent lacked CHOWN. Fix their ownership by hand if the application needs it.", res.OwnershipSkipped)})
	}
}

// fail ends r as Failed with reason and a message that says what happened and what to do.
func (c *Controller) fail(r *platformv1.Restore, reason, message string, events *[]agentjob.Event) {
	now := c.deps.Clock.Now()
	r.Status.Phase = platformv1.RestoreFailed
	r.Status.CompletionTime, r.Status.Duration = agentjob.EndAt(r.Status.StartTime, r.Status.CompletionTime, r.Status.Duration, now)
	agentjob.SetSucceeded(&r.Status.Conditions, metav1.ConditionFalse, reason, message, r.Generation, now)
	*events = append(*events, agentjob.Event{Type: corev1.EventTypeWarning, Reason: EventRestoreFailed, Message: fmt.Sprintf("Restore failed (%s): %s", reason, message)})
}

// hints say, for the agent's failures that leave the target untouched or are the user's to fix,
// what state the target is in and what to do.
var hints = map[string]string{
	platformv1.ReasonChecksumMismatch:     "The target was not touched: the archive on storage is not the one the Backup recorded. Restore another Backup.",
	platformv1.ReasonCorruptArchive:       "The archive cannot be read; the target may hold the entries before the damage. Restore another Backup, with overwritePolicy Replace.",
	platformv1.ReasonUnsafeArchive:        "The archive tries to write outside the target and was stopped. Restore another Backup.",
	platformv1.ReasonTargetNotEmpty:       "Nothing was written. Empty the claim, or create a new Restore with overwritePolicy Merge or Replace.",
	platformv1.ReasonArchiveNotFound:      "Nothing was written: the archive is not on storage any more. Restore another Backup.",
	platformv1.ReasonWrongEncryptionKey:   "Put the identity of one of those keys in the Secret that the storage's encryption.identitySecretRef names, then create a new Restore.",
	platformv1.ReasonEncryptionKeyMissing: "Name a Secret holding the identity in the storage's encryption.identitySecretRef, then create a new Restore.",
}

func failureMessage(r *platformv1.Restore, job *batchv1.Job, obs agentjob.Observation, st *agent.Status, decodeErr error, reason string) string {
	switch {
	case obs.JobReason == batchv1.JobReasonDeadlineExceeded:
		return fmt.Sprintf("Job %s ran longer than its activeDeadlineSeconds and was stopped; claim %s may hold a partial restore. Raise spec.activeDeadlineSeconds in a new Restore with overwritePolicy Replace.", job.Name, r.Spec.Target.ClaimName)
	case st != nil && !st.Succeeded():
		msg := fmt.Sprintf("the agent in pod %s failed: %s", obs.ResultPod, st.Error)
		if hint := hints[reason]; hint != "" {
			msg += ". " + hint
		}
		return msg
	case decodeErr != nil:
		return fmt.Sprintf("Job %s failed and its result is unreadable (%v): see the logs of its pods. Claim %s may hold a partial restore.", job.Name, decodeErr, r.Spec.Target.ClaimName)
	case obs.JobMessage != "":
		return fmt.Sprintf("Job %s failed (%s: %s) without a result from the agent: see its pods' events and logs. Claim %s may hold a partial restore.", job.Name, obs.JobReason, obs.JobMessage, r.Spec.Target.ClaimName)
	}
	return fmt.Sprintf("Job %s failed without a result from the agent: see its pods' events and logs. Claim %s may hold a partial restore.", job.Name, r.Spec.Target.ClaimName)
}
