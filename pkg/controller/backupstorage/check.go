package backupstorage

import (
	"context"
	"encoding/json"
	"fmt"
	"path"
	"sort"
	"strconv"
	"strings"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/klog/v2"
	"k8s.io/utils/ptr"

	"platform.example.com/backup-operator/pkg/agent"
	platformv1 "platform.example.com/backup-operator/pkg/apis/platform/v1"
	"platform.example.com/backup-operator/pkg/controller/agentjob"
	"platform.example.com/backup-operator/pkg/names"
	"platform.example.com/backup-operator/pkg/storage/s3"
)

// createContainerConfigError is the kubelet's waiting reason for a container whose pod refers to
// a Secret or key that does not exist.
const createContainerConfigError = "CreateContainerConfigError"

// rootKey stands for an archive right under the storage's root: Access resolves an archive's
// key, and the check's location is that archive's directory, the root itself. For a claim, the
// root is then the mount's subPath, which the kubelet creates when it is missing, as it does for
// a backup.
const rootKey = "check"

// JobName is the name of the Job that checks bs now: a function of the generation for the first
// check of a spec, and of the end of the last check for a re-check. A restarted controller finds
// the Job it made, and a re-check never takes the name of the check before it.
func JobName(bs *platformv1.BackupStorage) string {
	gen := strconv.FormatInt(bs.Generation, 10)
	if !specChecked(bs) {
		return names.Join("check", bs.Name, gen)
	}
	return names.Join("check", bs.Name, gen, strconv.FormatInt(bs.Status.LastValidationTime.Unix(), 10))
}

// specChecked reports whether a check of bs's current spec has ended.
func specChecked(bs *platformv1.BackupStorage) bool {
	return bs.Status.ValidatedGeneration == bs.Generation && bs.Status.LastValidationTime != nil
}

// reconcile sets bs's status from its spec, its check and its imports, starting a check or an
// import when one is due, and writes the status once, if it changed. Check and import Jobs whose
// outcome the status in the cache holds are deleted afterwards.
func (c *Controller) reconcile(ctx context.Context, bs *platformv1.BackupStorage) (time.Duration, error) {
	s := bs.DeepCopy()
	s.Status.ObservedGeneration = s.Generation
	s.Status.Backend, s.Status.Location = describe(&bs.Spec)
	checks, err := c.ownJobs(bs, ComponentStorageCheck)
	if err != nil {
		return 0, err
	}
	imports, err := c.ownJobs(bs, ComponentStorageImport)
	if err != nil {
		return 0, err
	}
	var events []agentjob.Event
	check, requeue, err := c.advance(ctx, bs, s, checks, &events)
	if err != nil {
		return 0, err
	}
	if equality.Semantic.DeepEqual(bs.Status, s.Status) {
		events = nil
	}
	imported, importRequeue, err := c.importArchives(ctx, bs, s, imports, &events)
	if err != nil {
		return 0, err
	}
	changed := !equality.Semantic.DeepEqual(bs.Status, s.Status)
	if err := agentjob.Commit(ctx, c.deps.Recorder, s, changed, c.deps.Client.PlatformV1().BackupStorages(s.Namespace).UpdateStatus, events); err != nil {
		return 0, fmt.Errorf("updating the status of BackupStorage %s/%s: %w", s.Namespace, s.Name, err)
	}
	if err := c.recordRequest(ctx, bs, append(checks, nonNil(check)...), AnnotationCheckNow, AnnotationCheckedNow); err != nil {
		return 0, err
	}
	if err := c.recordRequest(ctx, bs, append(imports, nonNil(imported)...), platformv1.AnnotationSyncNow, AnnotationSyncedNow); err != nil {
		return 0, err
	}
	if err := c.deleteJobs(ctx, append(staleChecks(bs, checks), staleImports(bs, imports)...)); err != nil {
		return 0, err
	}
	return soonest(requeue, importRequeue), nil
}

// nonNil is job, if any, as a list to append.
func nonNil(job *batchv1.Job) []*batchv1.Job {
	if job == nil {
		return nil
	}
	return []*batchv1.Job{job}
}

// soonest is the shorter of two requeue delays, zero standing for none.
func soonest(a, b time.Duration) time.Duration {
	if a == 0 || (b > 0 && b < a) {
		return b
	}
	return a
}

// advance finds or starts the current check and sets s's status from it. It returns the check
// Job the cache did not hold: the one it created, or found made by an earlier sync.
func (c *Controller) advance(ctx context.Context, bs, s *platformv1.BackupStorage, jobs []*batchv1.Job, events *[]agentjob.Event) (*batchv1.Job, time.Duration, error) {
	now := c.deps.Clock.Now()
	name := JobName(bs)
	for _, job := range jobs {
		if job.Name == name {
			requeue, err := c.follow(s, job, now, events)
			return nil, requeue, err
		}
	}
	why, wait, err := c.due(bs, now)
	if why == "" || err != nil {
		return nil, wait, err
	}
	st, refusal, err := agentjob.ResolveStorage(c.storages, bs.Namespace, &platformv1.Storage{Name: bs.Name})
	if err != nil {
		return nil, 0, err
	}
	if refusal != nil {
		c.unavailable(s, refusal.Reason, refusal.Message, now, now, events)
		return nil, 0, nil
	}
	job, created, conflict, err := c.startJob(ctx, bs, newJob(bs, st, name, c.deps.AgentImage), "check", why)
	if err != nil {
		return nil, 0, err
	}
	if conflict != "" {
		setReady(s, metav1.ConditionFalse, platformv1.ReasonJobConflict, conflict, now)
		return nil, ConflictRetryInterval, nil
	}
	if created {
		c.deps.Recorder.Eventf(bs, corev1.EventTypeNormal, EventCheckStarted, "Created Job %s to check %s: %s", job.Name, s.Status.Location, why)
	}
	requeue, err := c.follow(s, job, now, events)
	return job, requeue, err
}

// due says why bs needs a check now, or else how long until the re-check a failed Backup asks
// for is allowed (zero: nothing asks for one).
func (c *Controller) due(bs *platformv1.BackupStorage, now time.Time) (why string, wait time.Duration, err error) {
	switch {
	case bs.Status.LastValidationTime == nil:
		return "it was never checked", 0, nil
	case bs.Status.ValidatedGeneration != bs.Generation:
		return fmt.Sprintf("its spec changed (generation %d)", bs.Generation), 0, nil
	case pendingRequest(bs, AnnotationCheckNow, AnnotationCheckedNow) != "":
		return fmt.Sprintf("%s was set to %q", AnnotationCheckNow, pendingRequest(bs, AnnotationCheckNow, AnnotationCheckedNow)), 0, nil
	}
	objs, err := c.backups.ByIndex(backupsByStorage, bs.Namespace+"/"+bs.Name)
	if err != nil {
		return "", 0, err
	}
	last := bs.Status.LastValidationTime.Time
	var failed *platformv1.Backup
	var failure *metav1.Condition
	for _, obj := range objs {
		b, ok := obj.(*platformv1.Backup)
		if !ok {
			continue
		}
		cond := storageFailure(b)
		if cond == nil || !cond.LastTransitionTime.After(last) {
			continue
		}
		if failure == nil || cond.LastTransitionTime.After(failure.LastTransitionTime.Time) ||
			(cond.LastTransitionTime.Equal(&failure.LastTransitionTime) && b.Name < failed.Name) {
			failed, failure = b, cond
		}
	}
	if failed == nil {
		return "", 0, nil
	}
	if next := last.Add(RecheckInterval); now.Before(next) {
		return "", next.Sub(now), nil
	}
	return fmt.Sprintf("Backup %s failed with %s after the last check", failed.Name, failure.Reason), 0, nil
}

// pendingRequest is the value of the annotation request (such as AnnotationCheckNow) that no Job
// has started for yet, as the annotation handled records, or "".
func pendingRequest(bs *platformv1.BackupStorage, request, handled string) string {
	token := bs.Annotations[request]
	if token == bs.Annotations[handled] {
		return ""
	}
	return token
}

// startJob creates job, bs's next run (a check or an import), started for why. When a Job of its
// name exists, made by an earlier sync, it returns that one, with created false; when that Job
// is another object's, it returns instead the message that says so and what to do.
func (c *Controller) startJob(ctx context.Context, bs *platformv1.BackupStorage, job *batchv1.Job, run, why string) (_ *batchv1.Job, created bool, conflict string, err error) {
	job, created, err = agentjob.Create(ctx, c.deps.KubeClient, job)
	if err != nil {
		return nil, false, "", err
	}
	if !agentjob.IsControlledBy(job, string(bs.UID)) {
		// The Job of an earlier BackupStorage of the same name, which garbage collection has
		// not deleted yet: its result says nothing of this storage.
		return nil, false, fmt.Sprintf("Job %s, the name of this storage's %s, belongs to another object, likely an earlier BackupStorage named %s; nothing was run. "+
			"The %s starts once that Job is gone: delete it if it stays.", job.Name, run, bs.Name, run), nil
	}
	if created {
		klog.FromContext(ctx).V(2).Info("Created storage "+run+" Job", "job", klog.KObj(job), "why", why)
	}
	return job, created, "", nil
}

// newJob is the Job that runs `agent storage check` against st, the storage bs describes.
func newJob(bs *platformv1.BackupStorage, st agentjob.Storage, name, image string) *batchv1.Job {
	access := dirAccess(st, st.Root(), !st.ReadOnly)
	args := append(strings.Fields(agent.OpStorageCheck), "--location", access.Location)
	if st.ReadOnly && !st.IsS3() {
		// Access passes --s3-read-only for a bucket; a claim's check needs the agent's own.
		args = append(args, "--read-only")
	}
	return newAgentJob(bs, name, image, ComponentStorageCheck, AnnotationCheckNow, args, access, CheckDeadlineSeconds)
}

// dirAccess is what the agent needs to reach the directory dir of st, relative to its root, as
// Access gives it for an archive in that directory.
func dirAccess(st agentjob.Storage, dir string, write bool) agentjob.Access {
	access := st.Access(path.Join(dir, rootKey), write)
	access.Location = strings.TrimSuffix(access.Location, "/"+rootKey)
	return access
}

// newAgentJob is a Job of bs that runs the agent with args against storage once, within
// deadlineSeconds, labeled with component and carrying the value of the annotation request it
// was started for.
func newAgentJob(bs *platformv1.BackupStorage, name, image, component, request string, args []string, access agentjob.Access, deadlineSeconds int64) *batchv1.Job {
	job := agentjob.New(agentjob.Spec{
		Namespace: bs.Namespace,
		Name:      name,
		Owner:     metav1.NewControllerRef(bs, platformv1.SchemeGroupVersion.WithKind("BackupStorage")),
		Labels: map[string]string{
			LabelBackupStorage:      bs.Name,
			agentjob.LabelComponent: component,
		},
		Image:   image,
		Args:    args,
		Storage: access,
		// No capabilities: a backup writes to the storage as root without DAC_OVERRIDE too.
		Settings: platformv1.JobSettings{
			ActiveDeadlineSeconds: ptr.To(deadlineSeconds),
			BackoffLimit:          ptr.To[int32](0),
		},
		TTLSecondsAfterFinished: ptr.To(CheckJobTTLSeconds),
	})
	if token := bs.Annotations[request]; token != "" {
		job.Annotations = map[string]string{request: token}
	}
	return job
}

// ownJobs lists, from the cache, the Jobs of component (a check or an import) that bs controls.
func (c *Controller) ownJobs(bs *platformv1.BackupStorage, component string) ([]*batchv1.Job, error) {
	all, err := c.jobs.Jobs(bs.Namespace).List(jobSelector(bs, component))
	if err != nil {
		return nil, err
	}
	var ours []*batchv1.Job
	for _, job := range all {
		if agentjob.IsControlledBy(job, string(bs.UID)) {
			ours = append(ours, job)
		}
	}
	sort.Slice(ours, func(i, j int) bool { return ours[i].Name < ours[j].Name })
	return ours, nil
}

func jobSelector(bs *platformv1.BackupStorage, component string) labels.Selector {
	return labels.SelectorFromSet(labels.Set{LabelBackupStorage: bs.Name, agentjob.LabelComponent: component})
}

// follow sets s's status from its current check Job and the Job's pod.
func (c *Controller) follow(s *platformv1.BackupStorage, job *batchv1.Job, now time.Time, events *[]agentjob.Event) (time.Duration, error) {
	pods, err := agentjob.PodsOf(c.pods, job, jobSelector(s, ComponentStorageCheck))
	if err != nil {
		return 0, err
	}
	obs := agentjob.Observe(job, pods)
	if !obs.State.Finished() {
		kubelet, since, stuck := configError(pods)
		if stuck && obs.State == agentjob.StatePending && !now.Before(since.Add(ConfigErrorGracePeriod)) {
			reason, message := configErrorMessage(s, kubelet)
			c.unavailable(s, reason, message, now, now, events)
			return 0, nil
		}
		// A storage checked before keeps its Ready condition until this check ends.
		if ready := meta.FindStatusCondition(s.Status.Conditions, platformv1.ConditionReady); ready == nil || ready.Reason == platformv1.ReasonJobConflict {
			setReady(s, metav1.ConditionUnknown, ReasonChecking, fmt.Sprintf("Job %s is checking %s.", job.Name, s.Status.Location), now)
		}
		if stuck {
			return since.Add(ConfigErrorGracePeriod).Sub(now), nil
		}
		return 0, nil
	}

	end := agentjob.Conclude(job, obs, nil, now, agentjob.StorageCheckDecoder)
	if end.Wait > 0 {
		return end.Wait, nil
	}
	at := end.CompletionTime.Time
	switch end.Outcome {
	case agentjob.OutcomeSucceeded:
		c.available(s, end.Result, at, now, events)
	case agentjob.OutcomeResultMissing:
		c.unavailable(s, ReasonCheckFailed, end.MissingResult(job)+
			fmt.Sprintf(", so the storage could not be proven usable: see the logs of its pod (kubectl logs -n %s -l batch.kubernetes.io/job-name=%s).", job.Namespace, job.Name), at, now, events)
	default:
		reason, message := failure(job, obs, end.Status, end.DecodeErr, ReasonCheckFailed, recheckHint)
		c.unavailable(s, reason, message, at, now, events)
	}
	return 0, nil
}

// failure is the condition's reason and message for a check or import Job that failed: the
// agent's own when it reported one, followed by hint, else jobFailed with where to look.
func failure(job *batchv1.Job, obs agentjob.Observation, st *agent.Status, decodeErr error, jobFailed, hint string) (reason, message string) {
	pods := fmt.Sprintf("-n %s -l batch.kubernetes.io/job-name=%s", job.Namespace, job.Name)
	switch {
	case decodeErr != nil:
		// A result that does not decode cleanly says nothing to trust.
		return jobFailed, fmt.Sprintf("Job %s failed and its result is unreadable (%v): see the logs of its pod (kubectl logs %s).", job.Name, decodeErr, pods)
	case st != nil && !st.Succeeded():
		return agentjob.ConditionReason(st.Reason), strings.TrimSpace(st.Error + ". " + hint)
	case obs.JobReason == batchv1.JobReasonDeadlineExceeded:
		return jobFailed, fmt.Sprintf("Job %s did not finish within %ds: its pod did not start, or the storage did not answer. See the pod's events and logs (kubectl describe pod %s; kubectl logs %s).",
			job.Name, ptr.Deref(job.Spec.ActiveDeadlineSeconds, CheckDeadlineSeconds), pods, pods)
	}
	return jobFailed, fmt.Sprintf("Job %s failed (%s: %s) without a result from the agent: see its pod's events and logs (kubectl describe pod %s; kubectl logs %s).",
		job.Name, obs.JobReason, obs.JobMessage, pods, pods)
}

// recheckHint says how a storage that failed its check is checked again.
const recheckHint = "Changing the spec checks again; after fixing anything else, such as the credentials Secret or the bucket's permissions, set annotation " +
	AnnotationCheckNow + " to a new value."

// configError is the kubelet's message when the agent's container cannot be created because the
// pod refers to something missing, such as the credentials Secret or a key of it, and since when
// that pod exists.
func configError(pods []*corev1.Pod) (message string, since time.Time, ok bool) {
	for _, pod := range pods {
		for _, cs := range pod.Status.ContainerStatuses {
			if w := cs.State.Waiting; cs.Name == agentjob.ContainerName && w != nil && w.Reason == createContainerConfigError {
				return w.Message, pod.CreationTimestamp.Time, true
			}
		}
	}
	return "", time.Time{}, false
}

// configErrorMessage says what a check's pod that cannot start lacks. The controller never reads
// Secrets: the kubelet's message is all it knows.
func configErrorMessage(s *platformv1.BackupStorage, kubelet string) (reason, message string) {
	if s.Spec.S3 == nil || s.Spec.S3.CredentialsSecretRef == nil {
		return ReasonCheckFailed, fmt.Sprintf("The check's pod cannot start: %s. Fix what it names, then set annotation %s to a new value.", kubelet, AnnotationCheckNow)
	}
	secret := s.Spec.S3.CredentialsSecretRef.Name
	what := "does not exist in namespace " + s.Namespace
	if !strings.Contains(kubelet, "not found") {
		what = "lacks a key that spec.s3.credentialsSecretRef names"
	}
	return ReasonCredentialsNotFound, fmt.Sprintf("Secret %s, named by spec.s3.credentialsSecretRef, %s, so the check's pod cannot start (the kubelet says: %s). "+
		"Create it with the access key, then set annotation %s to a new value.", secret, what, kubelet, AnnotationCheckNow)
}

// available records a check, ended at at, that proved s usable.
func (c *Controller) available(s *platformv1.BackupStorage, res *agent.StorageCheckResult, at, now time.Time, events *[]agentjob.Event) {
	was := s.Status.Phase
	validated(s, platformv1.StorageAvailable, at)
	s.Status.Versioning, s.Status.ObjectLock = res.Versioning, res.ObjectLock
	message := proven(s, res)
	setReady(s, metav1.ConditionTrue, ReasonAvailable, message, now)
	if was != platformv1.StorageAvailable {
		*events = append(*events, agentjob.Event{Type: corev1.EventTypeNormal, Reason: EventStorageAvailable, Message: message})
	}
}

// unavailable records a check, ended at at, that failed with reason. What versioning and object
// lock were last found stays: a failed check learns nothing new of them.
func (c *Controller) unavailable(s *platformv1.BackupStorage, reason, message string, at, now time.Time, events *[]agentjob.Event) {
	validated(s, platformv1.StorageUnavailable, at)
	setReady(s, metav1.ConditionFalse, reason, message, now)
	*events = append(*events, agentjob.Event{Type: corev1.EventTypeWarning, Reason: EventStorageUnavailable,
		Message: fmt.Sprintf("Storage check failed (%s): %s", reason, message)})
}

func validated(s *platformv1.BackupStorage, phase platformv1.BackupStoragePhase, at time.Time) {
	s.Status.Phase = phase
	s.Status.LastValidationTime = &metav1.Time{Time: at}
	s.Status.ValidatedGeneration = s.Generation
}

// proven says what a successful check proved, such as "Read and write access to s3://b/p at
// https://s3.example.com proven; versioning on; object lock on (GOVERNANCE 30d)."
func proven(s *platformv1.BackupStorage, res *agent.StorageCheckResult) string {
	access := "Read and write access"
	if !res.Writable {
		access = "Read access"
	}
	msg := fmt.Sprintf("%s to %s proven", access, s.Status.Location)
	if !res.Writable {
		msg += " (ReadOnly: nothing was written)"
	}
	if s.Spec.S3 == nil {
		return msg + "."
	}
	msg += "; versioning " + onOff(res.Versioning) + "; object lock " + onOff(res.ObjectLock)
	switch {
	case res.ObjectLock && res.ObjectLockMode != "":
		msg += fmt.Sprintf(" (%s %dd)", res.ObjectLockMode, res.ObjectLockDays)
	case res.ObjectLock:
		msg += " (no default retention)"
	}
	return msg + "."
}

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}

// setReady sets the Ready condition; the transition time is the controller's clock's.
func setReady(s *platformv1.BackupStorage, status metav1.ConditionStatus, reason, message string, now time.Time) {
	setCondition(s, platformv1.ConditionReady, status, reason, message, now)
}

// setCondition sets the condition of type kind; the transition time is the controller's clock's.
func setCondition(s *platformv1.BackupStorage, kind string, status metav1.ConditionStatus, reason, message string, now time.Time) {
	meta.SetStatusCondition(&s.Status.Conditions, metav1.Condition{
		Type:               kind,
		Status:             status,
		Reason:             reason,
		Message:            message,
		ObservedGeneration: s.Generation,
		LastTransitionTime: metav1.NewTime(now),
	})
}

// describe is the backend and location of status: for people, short enough for a column.
func describe(spec *platformv1.BackupStorageSpec) (backend, location string) {
	switch {
	case spec.S3 != nil:
		return platformv1.BackendS3, s3.Location(spec.S3.Bucket, strings.Trim(spec.S3.Prefix, "/")) + " at " + strings.TrimSuffix(spec.S3.Endpoint, "/")
	case spec.PersistentVolumeClaim != nil:
		claim := spec.PersistentVolumeClaim
		return platformv1.BackendPersistentVolumeClaim, "claim " + path.Join(claim.ClaimName, strings.Trim(claim.SubPath, "/"))
	}
	return "", ""
}

// recordRequest records, in the annotation handled, the value of the annotation request (such
// as AnnotationCheckNow) that one of jobs was started for, so that the value asks for no other
// Job. It patches only that annotation: the controller never writes the spec.
func (c *Controller) recordRequest(ctx context.Context, bs *platformv1.BackupStorage, jobs []*batchv1.Job, request, handled string) error {
	token := pendingRequest(bs, request, handled)
	if token == "" {
		return nil
	}
	for _, job := range jobs {
		if job.Annotations[request] != token {
			continue
		}
		patch, err := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]string{handled: token}}})
		if err != nil {
			return err
		}
		if _, err := c.deps.Client.PlatformV1().BackupStorages(bs.Namespace).Patch(ctx, bs.Name, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
			return fmt.Errorf("recording %s=%q on BackupStorage %s/%s: %w", handled, token, bs.Namespace, bs.Name, err)
		}
		return nil
	}
	return nil
}

// staleChecks are bs's check Jobs other than the current one: those concluded by an earlier
// sync, whose result the status now holds, and those of an older spec, whose result would not
// describe this one. A concluded Job is stale only once the cache shows the status that
// concluded it, so that a sync on a stale cache cannot start its check again.
func staleChecks(bs *platformv1.BackupStorage, jobs []*batchv1.Job) []*batchv1.Job {
	current := JobName(bs)
	var stale []*batchv1.Job
	for _, job := range jobs {
		if job.Name != current {
			stale = append(stale, job)
		}
	}
	return stale
}

// deleteJobs deletes jobs, those the same UIDs only, with their pods.
func (c *Controller) deleteJobs(ctx context.Context, jobs []*batchv1.Job) error {
	for _, job := range jobs {
		if job.DeletionTimestamp != nil {
			continue
		}
		if err := agentjob.DeleteJob(ctx, c.deps.KubeClient, job, metav1.DeletePropagationBackground); err != nil {
			return err
		}
	}
	return nil
}
