package backup

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/klog/v2"

	"platform.example.com/backup-operator/pkg/agent"
	platformv1 "platform.example.com/backup-operator/pkg/apis/platform/v1"
	"platform.example.com/backup-operator/pkg/controller/agentjob"
	"platform.example.com/backup-operator/pkg/metrics"
	"platform.example.com/backup-operator/pkg/names"
)

// ResultGracePeriod is how long after its Job ended a Backup waits for the pod's termination
// message to reach the cache before it decides the result is missing: the same for every run.
const ResultGracePeriod = agentjob.ResultGracePeriod

// JobName is the name of the Job that archives backup: a function of the Backup alone, so a
// second attempt to create it finds the first.
func JobName(backup *platformv1.Backup) string { return names.Join("backup", backup.Name) }

// Annotations on a backup Job that record where it writes the archive: the Job is the record
// of what was run, so the Backup completes with the location its archive really has, even if
// the BackupStorage was edited meanwhile.
const (
	// AnnotationArchiveKey is the archive's key (path) relative to the storage's root.
	AnnotationArchiveKey = "platform.example.com/archive-key"
	// AnnotationArchiveBucket is the bucket of an archive in object storage.
	AnnotationArchiveBucket = "platform.example.com/archive-bucket"
)

// ArchivePath is where backup's archive is written on storage s, relative to its root:
// "<subPath or prefix>/<namespace>/<pvc>/<backup>.tar.<ext>", or for a file archive (a source
// command of format file) "<backup>.<fileName>.<ext>", such as "nightly.dump.zst", which reads
// as what plain zstd gives back.
func ArchivePath(backup *platformv1.Backup, s agentjob.Storage) (string, error) {
	ext, err := agentjob.ArchiveExtension(compression(backup), s.Encrypted(), agentjob.FileArchiveName(backup))
	if err != nil {
		return "", err
	}
	return s.ArchiveKey(backup.Namespace, backup.Spec.PVCName, backup.Name+ext), nil
}

func compression(backup *platformv1.Backup) platformv1.Compression {
	if backup.Spec.Compression == "" {
		return platformv1.DefaultCompression
	}
	return backup.Spec.Compression
}

// run advances a Backup that is not finished: it creates the Job, then follows it, and writes
// the status once at the end if it changed.
func (c *Controller) run(ctx context.Context, backup *platformv1.Backup) (time.Duration, error) {
	if awaitsImport(backup) {
		return 0, nil
	}
	b := backup.DeepCopy()
	if b.Spec.DeletionPolicy != platformv1.DeletionPolicyRetain && !slices.Contains(b.Finalizers, platformv1.FinalizerArchiveCleanup) {
		// Before any Job exists: an archive must never be written that deleting the Backup
		// would leave behind.
		b.Finalizers = append(b.Finalizers, platformv1.FinalizerArchiveCleanup)
		updated, err := c.deps.Client.PlatformV1().Backups(b.Namespace).Update(ctx, b, metav1.UpdateOptions{})
		if err != nil {
			return 0, fmt.Errorf("adding the %s finalizer to Backup %s/%s: %w", platformv1.FinalizerArchiveCleanup, b.Namespace, b.Name, err)
		}
		b = updated.DeepCopy()
	}

	var events []agentjob.Event
	requeue, err := c.advance(ctx, b, &events)
	if err != nil {
		return 0, err
	}
	if b.Status.Snapshot != nil {
		uploadCondition(b, c.deps.Clock.Now())
		b.Status.Snapshot.Kept = c.keepsSnapshot(b)
	}
	b.Status.ObservedGeneration = b.Generation
	changed := !equality.Semantic.DeepEqual(backup.Status, b.Status)
	if err := agentjob.Commit(ctx, c.deps.Recorder, b, changed, c.deps.Client.PlatformV1().Backups(b.Namespace).UpdateStatus, events); err != nil {
		return 0, fmt.Errorf("updating the status of Backup %s/%s: %w", b.Namespace, b.Name, err)
	}
	// Counted once the final phase is written: run only sees unfinished Backups, so this is the
	// transition, and a failed write that is retried is not counted twice.
	switch b.Status.Phase {
	case platformv1.BackupCompleted:
		c.deps.Metrics.BackupFinished(b.Namespace, b.Spec.PolicyName, metrics.ResultCompleted, agentjob.Elapsed(b.Status.Duration), b.Status.Artifact.Size)
	case platformv1.BackupFailed:
		c.deps.Metrics.BackupFinished(b.Namespace, b.Spec.PolicyName, metrics.ResultFailed, agentjob.Elapsed(b.Status.Duration), 0)
	}
	if fromSnapshot(b) && b.Status.Phase.Final() {
		// Once the end is recorded: a failed cleanup is retried by the next sync of the final
		// Backup, and never holds back its result.
		return 0, c.finishSnapshot(ctx, b)
	}
	return requeue, nil
}

// awaitsImport reports whether b was made from an archive found on storage and waits for the
// status the BackupStorage controller writes right after creating it: it has no run of its own,
// so it gets neither a Job nor, here, a finalizer (the import sets the finalizer when it creates
// the Backup).
func awaitsImport(b *platformv1.Backup) bool {
	return b.Annotations[platformv1.AnnotationImportedFrom] != "" && b.Status.Phase == ""
}

// advance moves b's status one step on from what the Job and its pods show.
func (c *Controller) advance(ctx context.Context, b *platformv1.Backup, events *[]agentjob.Event) (time.Duration, error) {
	name := JobName(b)
	job, lost, err := agentjob.Get(ctx, c.jobs, c.deps.KubeClient, b.Namespace, name, b.Status.JobName != "")
	if err != nil {
		return 0, err
	}
	if lost {
		c.fail(b, platformv1.ReasonJobLost, fmt.Sprintf("Job %s was deleted before it finished. No archive was made under the final name (an unfinished archive is never visible); "+
			"create a new Backup. Deleting this Backup removes any leftovers from storage.", name), events)
		return 0, nil
	}
	if job == nil {
		var requeue time.Duration
		job, requeue, err = c.createJob(ctx, b, events)
		if job == nil || err != nil {
			return requeue, err
		}
	}
	if !agentjob.IsControlledBy(job, string(b.UID)) {
		c.fail(b, platformv1.ReasonJobConflict, agentjob.ConflictMessage(job, "Backup", b.Name), events)
		return 0, nil
	}
	return c.follow(ctx, b, job, events)
}

// createJob checks that the Backup can run and creates its Job; with copyMethod Snapshot, once
// its snapshot is ready. It returns a nil Job when the Backup failed a check, with the failure
// in b's status, or when it waits for its snapshot, with when to look again.
func (c *Controller) createJob(ctx context.Context, b *platformv1.Backup, events *[]agentjob.Event) (*batchv1.Job, time.Duration, error) {
	claim, err := c.claims.PersistentVolumeClaims(b.Namespace).Get(b.Spec.PVCName)
	if apierrors.IsNotFound(err) {
		c.fail(b, platformv1.ReasonClaimNotFound, fmt.Sprintf("PersistentVolumeClaim %s does not exist in namespace %s: create a Backup of an existing claim.", b.Spec.PVCName, b.Namespace), events)
		return nil, 0, nil
	}
	if err != nil {
		return nil, 0, err
	}
	if claim.Status.Phase != corev1.ClaimBound {
		c.fail(b, platformv1.ReasonClaimNotBound, fmt.Sprintf("PersistentVolumeClaim %s is %s, not Bound: it has no data to back up yet. Create a new Backup once the claim is bound.", claim.Name, phaseOf(claim)), events)
		return nil, 0, nil
	}
	st, refusal, err := agentjob.ResolveStorage(c.storages, b.Namespace, b.Spec.Storage)
	if err != nil {
		return nil, 0, err
	}
	if refusal != nil {
		c.fail(b, refusal.Reason, refusal.Message+" Then create a new Backup.", events)
		return nil, 0, nil
	}
	if refusal := st.WriteRefusal(); refusal != nil {
		c.fail(b, refusal.Reason, refusal.Message+" in a new Backup.", events)
		return nil, 0, nil
	}
	if !st.IsS3() {
		if _, err := c.claims.PersistentVolumeClaims(b.Namespace).Get(st.ClaimName); apierrors.IsNotFound(err) {
			c.fail(b, platformv1.ReasonStorageNotFound, fmt.Sprintf("Storage PersistentVolumeClaim %s does not exist in namespace %s: create it (ReadWriteMany, or on the node of the claims it stores), then create a new Backup.", st.ClaimName, b.Namespace), events)
			return nil, 0, nil
		} else if err != nil {
			return nil, 0, err
		}
	}
	archivePath, err := ArchivePath(b, st)
	if err != nil {
		c.fail(b, platformv1.ReasonInvalidArgument, err.Error(), events)
		return nil, 0, nil
	}

	source, node := claim, ""
	var execArgs []string
	if live(b) {
		var ok bool
		if execArgs, node, ok, err = c.execTarget(ctx, b, claim, events); !ok || err != nil {
			return nil, 0, err
		}
	}
	if fromSnapshot(b) {
		// The agent reads a new claim made from the snapshot: no pod uses it, and it can be
		// read on any node.
		tmp, requeue, err := c.snapshotSource(ctx, b, claim, events)
		if tmp == nil || err != nil {
			return nil, requeue, err
		}
		source = tmp
	} else if !fromCommand(b) {
		var ok bool
		if node, ok, err = c.directReadNode(ctx, b, claim, events); !ok || err != nil {
			return nil, 0, err
		}
	}

	access := st.Access(archivePath, true)
	keys, keyEnv := st.Recipients()
	access.Args, access.Env = append(access.Args, keys...), append(access.Env, keyEnv...)
	if st.IsS3() {
		// The upload's parts grow with the claim, so that no archive of it needs more parts
		// than an upload may have.
		if capacity, ok := claim.Status.Capacity[corev1.ResourceStorage]; ok {
			access.Args = append(access.Args, "--size-hint", strconv.FormatInt(capacity.Value(), 10))
		}
	}
	owner := metav1.NewControllerRef(b, platformv1.SchemeGroupVersion.WithKind("Backup"))
	spec := agentjob.Spec{
		Namespace: b.Namespace,
		Name:      JobName(b),
		Owner:     owner,
		Labels: map[string]string{
			platformv1.LabelBackup:  b.Name,
			platformv1.LabelPVC:     b.Spec.PVCName,
			agentjob.LabelComponent: agentjob.ComponentBackup,
		},
		Image: c.deps.AgentImage,
		Args: slices.Concat(sourceArgs(b), []string{
			"--output", access.Location,
			"--compression", string(compression(b)),
			"--namespace", b.Namespace,
			"--pvc", claim.Name,
			"--policy=" + b.Spec.PolicyName,
			"--backup", b.Name,
			"--backup-uid", string(b.UID),
		}, execArgs),
		Storage:            access,
		NodeName:           node,
		Settings:           b.Spec.JobSettings,
		ServiceAccountName: b.Spec.ExecServiceAccountName,
	}
	if live(b) {
		spec.APIServer = c.deps.AgentAPIServer
	}
	if !fromCommand(b) {
		// A command's output is the archive: the agent itself never mounts the claim then.
		spec.Mounts = []agentjob.Mount{{Name: "source", ClaimName: source.Name, MountPath: agentjob.SourceMountPath, ReadOnly: true}}
		spec.Capabilities = agentjob.ReadCapabilities
	}
	if refusal := agentjob.PodSecurityRefusal(ctx, c.deps.KubeClient, spec); refusal != nil {
		c.fail(b, refusal.Reason, refusal.Message+", then create a new Backup.", events)
		return nil, 0, nil
	}
	job := agentjob.New(spec)
	job.Annotations = map[string]string{AnnotationArchiveKey: archivePath}
	if st.IsS3() {
		job.Annotations[AnnotationArchiveBucket] = st.S3.Bucket
	}

	created, isNew, err := agentjob.Create(ctx, c.deps.KubeClient, job)
	if err != nil || !isNew {
		return created, 0, err
	}
	klog.FromContext(ctx).V(2).Info("Created backup Job", "job", klog.KObj(created), "node", node)
	where := ""
	if node != "" {
		where = fmt.Sprintf(" on node %s, where the claim is attached", node)
	}
	if source != claim {
		where = fmt.Sprintf(" from VolumeSnapshot %s, through claim %s", b.Status.Snapshot.Name, source.Name)
	}
	*events = append(*events, agentjob.Event{Type: corev1.EventTypeNormal, Reason: EventJobCreated,
		Message: fmt.Sprintf("Created Job %s to archive PersistentVolumeClaim %s to %s on %s%s", created.Name, claim.Name, archivePath, st, where)})
	b.Status.NodeName = node
	return created, 0, nil
}

// sourceArgs are the agent's subcommand and, unless a command's output is the archive, the
// mount it reads.
func sourceArgs(b *platformv1.Backup) []string {
	if fromCommand(b) {
		return []string{agent.OpBackup}
	}
	return []string{agent.OpBackup, "--source", agentjob.SourceMountPath}
}

// directReadNode is the node where the agent must read claim directly: the node of the pod using
// it when its volume attaches to one node only, else "" (any node). A claim that no other pod may
// share fails b, with ok false.
func (c *Controller) directReadNode(ctx context.Context, b *platformv1.Backup, claim *corev1.PersistentVolumeClaim, events *[]agentjob.Event) (node string, ok bool, err error) {
	users, err := agentjob.ClaimUsers(ctx, c.deps.KubeClient, b.Namespace, claim.Name)
	if err != nil || len(users) == 0 {
		return "", err == nil, err
	}
	if agentjob.SinglePod(claim) {
		c.fail(b, platformv1.ReasonClaimInUse, fmt.Sprintf("PersistentVolumeClaim %s is ReadWriteOncePod and pod %s is using it, so no other pod can read it: stop that pod (scale its workload to zero), or back it up with copyMethod Snapshot; then create a new Backup.", claim.Name, users[0].Pod), events)
		return "", false, nil
	}
	if agentjob.SingleNode(claim) {
		// A volume attached to one node can only be read there.
		return users[0].NodeName, true, nil
	}
	return "", true, nil
}

// follow sets b's status from its Job and the Job's pods.
func (c *Controller) follow(ctx context.Context, b *platformv1.Backup, job *batchv1.Job, events *[]agentjob.Event) (time.Duration, error) {
	now := c.deps.Clock.Now()
	obs, err := agentjob.Follow(c.pods, job, platformv1.LabelBackup, b.Name)
	if err != nil {
		return 0, err
	}
	agentjob.ExplainClaims(&obs, c.claims, b.Namespace)
	b.Status.JobName = job.Name
	if obs.NodeName != "" {
		b.Status.NodeName = obs.NodeName
	}
	if b.Status.StartTime == nil && obs.StartTime != nil {
		b.Status.StartTime = obs.StartTime.DeepCopy()
	}

	switch obs.State {
	case agentjob.StatePending:
		p := agentjob.CheckPending(meta.FindStatusCondition(b.Status.Conditions, platformv1.ConditionSucceeded), job, obs, b.Spec.JobSettings, now)
		if p.Expired {
			c.fail(b, platformv1.ReasonPodNotStarted, p.Message, events)
			return 0, agentjob.DeleteJob(ctx, c.deps.KubeClient, job, metav1.DeletePropagationBackground)
		}
		b.Status.Phase = platformv1.BackupPending
		agentjob.SetSucceeded(&b.Status.Conditions, metav1.ConditionUnknown, platformv1.ReasonJobPending, p.Message, b.Generation, now)
		if p.Event != nil {
			*events = append(*events, *p.Event)
		}
		return p.Requeue, nil
	case agentjob.StateRunning:
		if b.Status.Phase != platformv1.BackupRunning {
			*events = append(*events, started(b, obs))
		}
		b.Status.Phase = platformv1.BackupRunning
		agentjob.SetSucceeded(&b.Status.Conditions, metav1.ConditionUnknown, platformv1.ReasonRunning,
			fmt.Sprintf("The agent is archiving PersistentVolumeClaim %s.", b.Spec.PVCName), b.Generation, now)
		return 0, nil
	}

	end := agentjob.Conclude(job, obs, b.Status.StartTime, now, agentjob.BackupDecoder)
	if end.Wait > 0 {
		return end.Wait, nil
	}
	if b.Status.Phase != platformv1.BackupRunning && obs.StartTime != nil {
		// The pod started and ended between two syncs: the story still has its start.
		*events = append(*events, started(b, obs))
	}
	b.Status.StartTime, b.Status.CompletionTime, b.Status.Duration = end.StartTime, end.CompletionTime, end.Duration
	recordSource(b, end.Result, events)
	switch end.Outcome {
	case agentjob.OutcomeSucceeded:
		c.complete(b, job, end.Result, events)
	case agentjob.OutcomeResultMissing:
		c.fail(b, platformv1.ReasonResultMissing, end.MissingResult(job)+": the archive cannot be trusted without its checksum. Create a new Backup; deleting this one removes what the Job wrote.", events)
	default:
		c.fail(b, end.Reason, failureMessage(job, obs, end.Status, end.DecodeErr), events)
	}
	return 0, nil
}

// started tells that the agent's pod started reading the claim.
func started(b *platformv1.Backup, obs agentjob.Observation) agentjob.Event {
	return agentjob.Event{Type: corev1.EventTypeNormal, Reason: EventBackupStarted,
		Message: fmt.Sprintf("Started reading PersistentVolumeClaim %s on node %s", b.Spec.PVCName, obs.NodeName)}
}

// complete records the archive the agent wrote.
func (c *Controller) complete(b *platformv1.Backup, job *batchv1.Job, r *agent.BackupResult, events *[]agentjob.Event) {
	archivePath := job.Annotations[AnnotationArchiveKey]
	if archivePath == "" {
		// A Job created before Jobs recorded the key wrote to a claim, where the key follows
		// from the Backup's own spec.
		claim, subPath := agentjob.StorageClaim(b.Spec.Storage)
		archivePath, _ = ArchivePath(b, agentjob.Storage{ClaimName: claim, SubPath: subPath})
	}
	storageName := ""
	if b.Spec.Storage != nil {
		storageName = b.Spec.Storage.Name
	}
	b.Status.Phase = platformv1.BackupCompleted
	b.Status.Artifact = &platformv1.Artifact{
		Path:         archivePath,
		StorageName:  storageName,
		Bucket:       job.Annotations[AnnotationArchiveBucket],
		Size:         r.Size,
		DisplaySize:  agentjob.HumanBytes(r.Size),
		SHA256:       r.SHA256,
		Compression:  platformv1.Compression(r.Compression),
		Encryption:   agentjob.ArtifactEncryption(r.Encryption),
		SourceBytes:  r.SourceBytes,
		Files:        r.Files + r.Directories + r.Symlinks + r.Hardlinks,
		ChangedFiles: r.ChangedFiles,
		SkippedFiles: r.Skipped + r.Vanished,
	}
	agentjob.SetSucceeded(&b.Status.Conditions, metav1.ConditionTrue, platformv1.ReasonCompleted,
		fmt.Sprintf("Archived %s of PersistentVolumeClaim %s to %s.", agentjob.HumanBytes(r.SourceBytes), b.Spec.PVCName, archivePath), b.Generation, c.deps.Clock.Now())
	*events = append(*events, agentjob.Event{Type: corev1.EventTypeNormal, Reason: EventBackupCompleted,
		Message: fmt.Sprintf("Backup completed in %s: %s, sha256 %s", b.Status.Duration.Duration, b.Status.Artifact.DisplaySize, agentjob.ShortSHA256(r.SHA256))})
	if r.ChangedFiles > 0 {
		*events = append(*events, agentjob.Event{Type: corev1.EventTypeWarning, Reason: EventFilesChanged,
			Message: fmt.Sprintf("%d files changed while they were read, so their archived copies may be inconsistent: for a consistent backup, stop writes to the claim (or scale its workload down) while it is backed up.", r.ChangedFiles)})
	}
}

// fail ends b as Failed with reason and a message that says what happened and what to do.
func (c *Controller) fail(b *platformv1.Backup, reason, message string, events *[]agentjob.Event) {
	now := c.deps.Clock.Now()
	b.Status.Phase = platformv1.BackupFailed
	b.Status.CompletionTime, b.Status.Duration = agentjob.EndAt(b.Status.StartTime, b.Status.CompletionTime, b.Status.Duration, now)
	agentjob.SetSucceeded(&b.Status.Conditions, metav1.ConditionFalse, reason, message, b.Generation, now)
	*events = append(*events, agentjob.Event{Type: corev1.EventTypeWarning, Reason: EventBackupFailed, Message: fmt.Sprintf("Backup failed (%s): %s", reason, message)})
}

// failureMessage says why a Job failed: the agent's own error when it left one, else the Job's.
func failureMessage(job *batchv1.Job, obs agentjob.Observation, st *agent.Status, decodeErr error) string {
	switch {
	case obs.JobReason == batchv1.JobReasonDeadlineExceeded:
		return fmt.Sprintf("Job %s ran longer than its activeDeadlineSeconds and was stopped: raise spec.activeDeadlineSeconds or the pod's resources in a new Backup.", job.Name)
	case st != nil && !st.Succeeded():
		return fmt.Sprintf("the agent in pod %s failed: %s", obs.ResultPod, st.Error)
	case decodeErr != nil:
		return fmt.Sprintf("Job %s failed and its result is unreadable (%v): see the logs of its pods.", job.Name, decodeErr)
	case obs.JobMessage != "":
		return fmt.Sprintf("Job %s failed (%s: %s) without a result from the agent: see its pods' events and logs.", job.Name, obs.JobReason, obs.JobMessage)
	}
	return fmt.Sprintf("Job %s failed without a result from the agent: see its pods' events and logs.", job.Name)
}

func phaseOf(claim *corev1.PersistentVolumeClaim) string {
	if claim.Status.Phase == "" {
		return string(corev1.ClaimPending)
	}
	return string(claim.Status.Phase)
}
