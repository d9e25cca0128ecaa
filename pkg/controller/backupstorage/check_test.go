package backupstorage

import (
	"slices"
	"strconv"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/utils/ptr"

	"platform.example.com/backup-operator/pkg/agent"
	platformv1 "platform.example.com/backup-operator/pkg/apis/platform/v1"
	"platform.example.com/backup-operator/pkg/archive"
	"platform.example.com/backup-operator/pkg/controller/agentjob"
	"platform.example.com/backup-operator/pkg/controller/agentjob/agentjobtest"
	"platform.example.com/backup-operator/pkg/storage"
)

var (
	podStart = agentjobtest.Epoch.Add(time.Minute)
	jobEnd   = podStart.Add(3 * time.Second)
)

const location = "s3://backups/prod at https://s3.example.com"

// checkResult is what the agent reports: success with found, or a failure with reason and msg.
func checkResult(found storage.CheckResult, reason agent.Reason, msg string) agent.StorageCheckResult {
	var r agent.StorageCheckResult
	r.Operation, r.ToolVersion, r.Location = agent.OpStorageCheck, "test", "s3://backups/prod"
	if reason != "" {
		r.Error, r.Reason = msg, reason
		return r
	}
	r.CheckResult = found
	return r
}

// finished is job ended at jobEnd, with its pod's agent exiting with code and result.
func finished(job *batchv1.Job, code int32, result any) (*batchv1.Job, *corev1.Pod) {
	pod := agentjobtest.Terminated(agentjobtest.Pod(job, job.Name+"-x1", "node-a", podStart), code, result, jobEnd)
	if code == 0 {
		return agentjobtest.Finish(job, true, "", "", jobEnd), pod
	}
	return agentjobtest.Finish(job, false, batchv1.JobReasonPodFailurePolicy, "Container agent for pod db/"+pod.Name+" failed with exit code 1", jobEnd), pod
}

func TestFirstSyncStartsTheCheck(t *testing.T) {
	f := newFixture(t)
	f.Storages = []*platformv1.BackupStorage{s3Storage()}
	f.sync()
	f.ExpectActions("create jobs check-offsite-1", "update backupstorages/status offsite")

	job := f.CreatedJob()
	if ref := metav1.GetControllerOf(job); ref == nil || ref.UID != storageUID || ref.Kind != "BackupStorage" || !ptr.Deref(ref.BlockOwnerDeletion, false) {
		t.Fatalf("owner %+v, want the BackupStorage as controller", job.OwnerReferences)
	}
	if l := job.Spec.Template.Labels; l[LabelBackupStorage] != "offsite" || l[agentjob.LabelComponent] != ComponentStorageCheck || l[platformv1.LabelManagedBy] != platformv1.ManagedByValue {
		t.Fatalf("pod labels %v, want the storage, the component and managed-by", l)
	}
	if ptr.Deref(job.Spec.ActiveDeadlineSeconds, 0) != CheckDeadlineSeconds || ptr.Deref(job.Spec.BackoffLimit, -1) != 0 || ptr.Deref(job.Spec.TTLSecondsAfterFinished, 0) != CheckJobTTLSeconds {
		t.Fatalf("deadline %v backoff %v ttl %v, want a short run without retries that is cleaned up", job.Spec.ActiveDeadlineSeconds, job.Spec.BackoffLimit, job.Spec.TTLSecondsAfterFinished)
	}
	pod := job.Spec.Template.Spec
	container := pod.Containers[0]
	wantArgs := []string{"agent", "storage", "check", "--location", "s3://backups/prod",
		"--s3-endpoint", "https://s3.example.com", "--s3-region", "eu-west-1", "--s3-force-path-style",
		"--s3-object-lock-mode", "GOVERNANCE", "--s3-object-lock-days", "30",
		"--s3-ca-file", "/etc/backup-operator/s3-ca/ca.crt"}
	if !slices.Equal(container.Args, wantArgs) {
		t.Fatalf("args %q, want %q", container.Args, wantArgs)
	}
	secretRef := func(key string) *corev1.EnvVarSource {
		return &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "s3-creds"}, Key: key}}
	}
	wantEnv := []corev1.EnvVar{{Name: "AWS_ACCESS_KEY_ID", ValueFrom: secretRef("id")}, {Name: "AWS_SECRET_ACCESS_KEY", ValueFrom: secretRef("secret")}}
	if !equality.Semantic.DeepEqual(container.Env, wantEnv) {
		t.Fatalf("env %s, want the credentials from the Secret by reference, never by value", agentjobtest.Describe(container.Env))
	}
	if len(pod.Volumes) != 1 || pod.Volumes[0].ConfigMap == nil || pod.Volumes[0].ConfigMap.Name != "s3-ca" || pod.Volumes[0].ConfigMap.Items[0].Key != "bundle.pem" ||
		len(container.VolumeMounts) != 1 || container.VolumeMounts[0].MountPath != agentjob.CABundleMountPath || !container.VolumeMounts[0].ReadOnly {
		t.Fatalf("volumes %s mounts %s, want only the CA bundle, read-only", agentjobtest.Describe(pod.Volumes), agentjobtest.Describe(container.VolumeMounts))
	}
	if caps := container.SecurityContext.Capabilities; len(caps.Add) != 0 || !slices.Equal(caps.Drop, []corev1.Capability{"ALL"}) {
		t.Fatalf("capabilities %s, want none", agentjobtest.Describe(caps))
	}

	st := f.status().Status
	if st.Backend != platformv1.BackendS3 || st.Location != location || st.Phase != "" || st.ValidatedGeneration != 0 || st.LastValidationTime != nil || st.ObservedGeneration != 1 {
		t.Fatalf("status %s, want the backend and location and nothing validated yet", agentjobtest.Describe(st))
	}
	expectReady(t, f.status(), metav1.ConditionUnknown, ReasonChecking, "Job check-offsite-1 is checking "+location)
	agentjobtest.ExpectEvents(t, f.Events(), "Normal CheckStarted Created Job check-offsite-1 to check "+location+": it was never checked")
}

func TestASecondSyncFindsTheCheckItStarted(t *testing.T) {
	started := s3Storage()
	started.Status.ObservedGeneration, started.Status.Backend, started.Status.Location = 1, platformv1.BackendS3, location
	setReady(started, metav1.ConditionUnknown, ReasonChecking, "Job check-offsite-1 is checking "+location+".", agentjobtest.Epoch)

	t.Run("in the cache", func(t *testing.T) {
		f := newFixture(t)
		f.Storages, f.Jobs = []*platformv1.BackupStorage{started}, []*batchv1.Job{ownJob(started, "check-offsite-1")}
		f.sync()
		f.ExpectActions()
		agentjobtest.ExpectEvents(t, f.Events())
	})
	t.Run("not yet in the cache", func(t *testing.T) {
		f := newFixture(t)
		f.Storages, f.APIOnly = []*platformv1.BackupStorage{started}, []runtime.Object{ownJob(started, "check-offsite-1")}
		f.sync()
		f.ExpectActions("create jobs check-offsite-1", "get jobs check-offsite-1")
		agentjobtest.ExpectEvents(t, f.Events())
	})
}

func TestClaimCheckMountsTheClaim(t *testing.T) {
	for _, tc := range []struct {
		mode     platformv1.StorageAccessMode
		readOnly bool
	}{
		{platformv1.StorageReadWrite, false},
		{platformv1.StorageReadOnly, true},
	} {
		t.Run(string(tc.mode), func(t *testing.T) {
			f := newFixture(t)
			f.Storages = []*platformv1.BackupStorage{claimStorage(tc.mode)}
			f.sync()
			job := f.CreatedJob()
			pod := job.Spec.Template.Spec
			c := pod.Containers[0]
			wantArgs := []string{"agent", "storage", "check", "--location", agentjob.StorageMountPath}
			if tc.readOnly {
				wantArgs = append(wantArgs, "--read-only")
			}
			if !slices.Equal(c.Args, wantArgs) || len(c.Env) != 0 {
				t.Fatalf("args %q env %v, want %q and no credentials", c.Args, c.Env, wantArgs)
			}
			wantMounts := []corev1.VolumeMount{{Name: "storage", MountPath: agentjob.StorageMountPath, SubPath: "team-a", ReadOnly: tc.readOnly}}
			if !equality.Semantic.DeepEqual(c.VolumeMounts, wantMounts) || pod.Volumes[0].PersistentVolumeClaim.ClaimName != "archive" || pod.Volumes[0].PersistentVolumeClaim.ReadOnly != tc.readOnly {
				t.Fatalf("volumes %s mounts %s, want claim archive's team-a at %s, read-only %v", agentjobtest.Describe(pod.Volumes), agentjobtest.Describe(c.VolumeMounts), agentjob.StorageMountPath, tc.readOnly)
			}
			if st := f.status().Status; st.Backend != platformv1.BackendPersistentVolumeClaim || st.Location != "claim archive/team-a" {
				t.Fatalf("backend %q location %q, want the claim and its directory", st.Backend, st.Location)
			}
		})
	}
}

func TestCheckOutcomes(t *testing.T) {
	features := storage.CheckResult{Writable: true, Versioning: true, ObjectLock: true, ObjectLockMode: "GOVERNANCE", ObjectLockDays: 30}
	denied := "cannot list s3://backups/prod/: the credentials are not allowed to do this: grant them list, read, write, delete and multipart-upload rights on the bucket"
	tests := []struct {
		name       string
		code       int32
		result     any
		phase      platformv1.BackupStoragePhase
		reason     string
		says       []string
		versioning bool
		event      string
	}{
		{"available", 0, checkResult(features, "", ""), platformv1.StorageAvailable, ReasonAvailable,
			[]string{"Read and write access to " + location + " proven; versioning on; object lock on (GOVERNANCE 30d)."}, true,
			"Normal StorageAvailable Read and write access to " + location + " proven"},
		{"read-only, without bucket features", 0, checkResult(storage.CheckResult{}, "", ""), platformv1.StorageAvailable, ReasonAvailable,
			[]string{"Read access to " + location + " proven (ReadOnly: nothing was written); versioning off; object lock off."}, false,
			"Normal StorageAvailable"},
		{"access denied", 1, checkResult(storage.CheckResult{}, archive.StorageAccessDenied, denied), platformv1.StorageUnavailable, "AccessDenied",
			[]string{denied, AnnotationCheckNow}, false, "Warning StorageUnavailable Storage check failed (AccessDenied): " + denied},
		{"bucket not found", 1, checkResult(storage.CheckResult{}, archive.StorageBucketNotFound, "bucket backups does not exist"), platformv1.StorageUnavailable, "BucketNotFound",
			[]string{"bucket backups does not exist"}, false, "Warning StorageUnavailable"},
		{"an internal error", 1, checkResult(storage.CheckResult{}, archive.Internal, "boom"), platformv1.StorageUnavailable, platformv1.ReasonAgentFailed,
			[]string{"boom"}, false, "Warning StorageUnavailable"},
		{"a failure without a result", 1, "", platformv1.StorageUnavailable, ReasonCheckFailed,
			[]string{"Job check-offsite-1 failed", "without a result from the agent", "kubectl describe pod -n db -l batch.kubernetes.io/job-name=check-offsite-1"}, false, "Warning StorageUnavailable"},
		{"a result of another operation", 1, `{"operation":"backup","error":"x","reason":"ReadFailed"}`, platformv1.StorageUnavailable, ReasonCheckFailed,
			[]string{"result is unreadable", `operation "backup"`}, false, "Warning StorageUnavailable"},
		{"success without a result", 0, "", platformv1.StorageUnavailable, ReasonCheckFailed,
			[]string{"Job check-offsite-1 succeeded but left no readable result", "kubectl logs"}, false, "Warning StorageUnavailable"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			bs := s3Storage()
			job, pod := finished(ownJob(bs, "check-offsite-1"), tc.code, tc.result)
			if tc.result == "" {
				pod = nil
			}
			f.Storages, f.Jobs = []*platformv1.BackupStorage{bs}, []*batchv1.Job{job}
			if pod != nil {
				f.AgentPods = []*corev1.Pod{pod}
			}
			f.Clock.SetTime(jobEnd.Add(agentjob.ResultGracePeriod))
			f.sync()
			// The Job is deleted by the next sync, once the cache shows this status.
			f.ExpectActions("update backupstorages/status offsite")
			got := f.status()
			st := got.Status
			if st.Phase != tc.phase || st.ValidatedGeneration != 1 || !st.LastValidationTime.Time.Equal(jobEnd) || st.Versioning != tc.versioning || st.ObjectLock != tc.versioning {
				t.Fatalf("status %s, want %s validated at the Job's end", agentjobtest.Describe(st), tc.phase)
			}
			status := metav1.ConditionTrue
			if tc.phase == platformv1.StorageUnavailable {
				status = metav1.ConditionFalse
			}
			expectReady(t, got, status, tc.reason, tc.says...)
			agentjobtest.ExpectEvents(t, f.Events(), tc.event)
		})
	}
}

func TestAvailableIsToldOnlyWhenThePhaseChanges(t *testing.T) {
	f := newFixture(t)
	bs := validatedAt(s3Storage(), platformv1.StorageAvailable, agentjobtest.Epoch)
	bs.Annotations = map[string]string{AnnotationCheckNow: "1", AnnotationCheckedNow: "1"}
	name := JobName(bs)
	job, pod := finished(ownJob(bs, name), 0, checkResult(storage.CheckResult{Writable: true}, "", ""))
	f.Storages, f.Jobs, f.AgentPods = []*platformv1.BackupStorage{bs}, []*batchv1.Job{job}, []*corev1.Pod{pod}
	f.sync()
	// The storage was checked again after its last import: what it holds is listed again too.
	f.ExpectActions("create jobs "+firstImport, "update backupstorages/status offsite")
	if st := f.status().Status; st.Phase != platformv1.StorageAvailable || !st.LastValidationTime.Time.Equal(jobEnd) {
		t.Fatalf("status %s, want Available, validated again", agentjobtest.Describe(st))
	}
	agentjobtest.ExpectEvents(t, f.Events())
}

func TestAConcludedCheckJobIsDeleted(t *testing.T) {
	f := newFixture(t)
	bs := validatedAt(s3Storage(), platformv1.StorageAvailable, jobEnd)
	job, pod := finished(ownJob(bs, "check-offsite-1"), 0, checkResult(storage.CheckResult{Writable: true}, "", ""))
	other := agentjobtest.OwnedJob("db", "check-offsite-0", "BackupStorage", "offsite", "earlier-uid", job.Labels)
	f.Storages, f.Jobs, f.AgentPods = []*platformv1.BackupStorage{bs}, []*batchv1.Job{job, other}, []*corev1.Pod{pod}
	f.sync()
	// Only this storage's Jobs are its to delete.
	f.ExpectActions("delete jobs check-offsite-1")
	agentjobtest.ExpectEvents(t, f.Events())
}

func TestASpecChangeStartsANewCheck(t *testing.T) {
	f := newFixture(t)
	bs := validatedAt(s3Storage(), platformv1.StorageAvailable, agentjobtest.Epoch)
	// A check of generation 1 still runs when the spec changes: its result would describe the
	// old spec.
	running := ownJob(bs, "check-offsite-1-"+strconv.FormatInt(agentjobtest.Epoch.Unix(), 10))
	bs.Generation = 2
	bs.Spec.S3.Bucket = "backups-2"
	f.Storages, f.Jobs = []*platformv1.BackupStorage{bs}, []*batchv1.Job{running}
	f.AgentPods = []*corev1.Pod{agentjobtest.Pod(running, "old-x1", "node-a", podStart)}
	f.sync()
	f.ExpectActions("create jobs check-offsite-2", "update backupstorages/status offsite", "delete jobs "+running.Name)
	if args := f.CreatedJob().Spec.Template.Spec.Containers[0].Args; args[4] != "s3://backups-2/prod" {
		t.Fatalf("args %q, want the new bucket", args)
	}
	if st := f.status().Status; st.Location != "s3://backups-2/prod at https://s3.example.com" || st.Phase != platformv1.StorageAvailable {
		t.Fatalf("status %s, want the new location and the last phase until the check ends", agentjobtest.Describe(st))
	}
	agentjobtest.ExpectEvents(t, f.Events(), "Normal CheckStarted Created Job check-offsite-2 to check s3://backups-2/prod at https://s3.example.com: its spec changed (generation 2)")
}

func TestCheckNowAsksForOneCheckPerValue(t *testing.T) {
	validated := agentjobtest.Epoch.Add(2 * time.Minute)
	recheck := "check-offsite-1-" + strconv.FormatInt(validated.Unix(), 10)
	t.Run("a new value starts a check and is recorded", func(t *testing.T) {
		f := newFixture(t)
		bs := validatedAt(s3Storage(), platformv1.StorageUnavailable, validated)
		bs.Annotations = map[string]string{AnnotationCheckNow: "fixed-the-secret", AnnotationCheckedNow: "before"}
		f.Storages = []*platformv1.BackupStorage{bs}
		f.sync()
		// The status keeps what the last check found until this one ends.
		f.ExpectActions("create jobs "+recheck, "patch backupstorages offsite")
		if a := f.CreatedJob().Annotations[AnnotationCheckNow]; a != "fixed-the-secret" {
			t.Fatalf("job annotation %q, want the value the check was started for", a)
		}
		if got := f.stored(); got.Annotations[AnnotationCheckedNow] != "fixed-the-secret" || got.Annotations[AnnotationCheckNow] != "fixed-the-secret" || !equality.Semantic.DeepEqual(got.Spec, bs.Spec) {
			t.Fatalf("stored annotations %v, spec changed %v: want the value recorded and nothing else touched", got.Annotations, !equality.Semantic.DeepEqual(got.Spec, bs.Spec))
		}
		agentjobtest.ExpectEvents(t, f.Events(), `Normal CheckStarted Created Job `+recheck+` to check `+location+`: `+AnnotationCheckNow+` was set to "fixed-the-secret"`)
	})
	t.Run("a value a running check was started for is recorded", func(t *testing.T) {
		f := newFixture(t)
		bs := validatedAt(s3Storage(), platformv1.StorageUnavailable, validated)
		bs.Annotations = map[string]string{AnnotationCheckNow: "fixed-the-secret"}
		job := ownJob(bs, recheck)
		job.Annotations = map[string]string{AnnotationCheckNow: "fixed-the-secret"}
		f.Storages, f.Jobs = []*platformv1.BackupStorage{bs}, []*batchv1.Job{job}
		f.sync()
		f.ExpectActions("patch backupstorages offsite")
	})
	t.Run("a value set while a check runs waits for the next one", func(t *testing.T) {
		f := newFixture(t)
		bs := validatedAt(s3Storage(), platformv1.StorageUnavailable, validated)
		bs.Annotations = map[string]string{AnnotationCheckNow: "fixed-the-secret"}
		f.Storages, f.Jobs = []*platformv1.BackupStorage{bs}, []*batchv1.Job{ownJob(bs, recheck)}
		f.sync()
		f.ExpectActions()
	})
	t.Run("a handled value asks for nothing", func(t *testing.T) {
		f := newFixture(t)
		bs := validatedAt(s3Storage(), platformv1.StorageUnavailable, validated)
		bs.Annotations = map[string]string{AnnotationCheckNow: "fixed-the-secret", AnnotationCheckedNow: "fixed-the-secret"}
		f.Storages = []*platformv1.BackupStorage{bs}
		f.sync()
		f.ExpectActions()
	})
}

// failedBackup is a Backup of the storage "offsite" that failed with reason at t.
func failedBackup(name, reason string, t time.Time) *platformv1.Backup {
	b := &platformv1.Backup{
		ObjectMeta: metav1.ObjectMeta{Namespace: "db", Name: name, UID: "backup-" + "uid-" + "x"},
		Spec:       platformv1.BackupSpec{PVCName: "data", BackupRunSettings: platformv1.BackupRunSettings{Storage: &platformv1.Storage{Name: "offsite"}}},
		Status:     platformv1.BackupStatus{Phase: platformv1.BackupFailed},
	}
	agentjob.SetSucceeded(&b.Status.Conditions, metav1.ConditionFalse, reason, "failed", 1, t)
	return b
}

func TestAFailedBackupAsksForARecheck(t *testing.T) {
	validated := agentjobtest.Epoch.Add(5 * time.Minute)
	now := validated.Add(RecheckInterval + time.Second) // the fixture's clock, unless a case sets it
	recheck := "check-offsite-1-" + strconv.FormatInt(validated.Unix(), 10)
	tests := []struct {
		name    string
		backups []*platformv1.Backup
		now     time.Time
		actions []string
		requeue time.Duration
	}{
		{"a storage failure after the last check", []*platformv1.Backup{
			failedBackup("nightly", string(archive.StorageBucketNotFound), validated.Add(30*time.Second)),
		}, now, []string{"create jobs " + recheck}, 0},
		{"within a minute of the last check, later", []*platformv1.Backup{
			failedBackup("nightly", string(archive.StorageBucketNotFound), validated.Add(10*time.Second)),
		}, validated.Add(20 * time.Second), nil, RecheckInterval - 20*time.Second},
		{"a storage failure before the last check", []*platformv1.Backup{
			failedBackup("nightly", string(archive.StorageAccessDenied), validated.Add(-time.Second)),
		}, now, nil, 0},
		{"a failure that is not the storage's", []*platformv1.Backup{
			failedBackup("nightly", platformv1.ReasonChecksumMismatch, validated.Add(30*time.Second)),
		}, now, nil, 0},
		{"a storage failure of another storage", []*platformv1.Backup{func() *platformv1.Backup {
			b := failedBackup("nightly", string(archive.StorageBucketNotFound), validated.Add(30*time.Second))
			b.Spec.Storage.Name = "onsite"
			return b
		}()}, now, nil, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			f.Storages = []*platformv1.BackupStorage{validatedAt(s3Storage(), platformv1.StorageAvailable, validated)}
			f.Backups = tc.backups
			f.Clock.SetTime(tc.now)
			f.sync()
			f.ExpectActions(tc.actions...)
			if f.requeue != tc.requeue {
				t.Fatalf("requeue after %s, want %s", f.requeue, tc.requeue)
			}
			if tc.actions != nil {
				agentjobtest.ExpectEvents(t, f.Events(), "Normal CheckStarted Created Job "+recheck+" to check "+location+": Backup nightly failed with BucketNotFound after the last check")
			}
		})
	}
}

func TestARecheckIsNotRepeatedWithinTheRateLimit(t *testing.T) {
	// A re-check for Backup "nightly" ended at jobEnd; "hourly" failed for the same cause just
	// after it. The next one waits a minute from the end of the last.
	f := newFixture(t)
	f.Storages = []*platformv1.BackupStorage{validatedAt(s3Storage(), platformv1.StorageUnavailable, jobEnd)}
	f.Backups = []*platformv1.Backup{
		failedBackup("nightly", string(archive.StorageBucketNotFound), jobEnd.Add(-time.Minute)),
		failedBackup("hourly", string(archive.StorageBucketNotFound), jobEnd.Add(5*time.Second)),
	}
	f.Clock.SetTime(jobEnd.Add(10 * time.Second))
	f.sync()
	f.ExpectActions()
	if f.requeue != 50*time.Second {
		t.Fatalf("requeue after %s, want 50s, a minute after the last check", f.requeue)
	}
}

func TestAJobOfAnotherStorageIsNotTrusted(t *testing.T) {
	f := newFixture(t)
	bs := s3Storage()
	// The check Job of an earlier BackupStorage "offsite", which garbage collection has not
	// removed yet, succeeded: its result says nothing of this one.
	earlier, pod := finished(agentjobtest.OwnedJob("db", "check-offsite-1", "BackupStorage", "offsite", "earlier-uid", ownJob(bs, "x").Labels), 0,
		checkResult(storage.CheckResult{Writable: true}, "", ""))
	f.Storages, f.Jobs, f.AgentPods = []*platformv1.BackupStorage{bs}, []*batchv1.Job{earlier}, []*corev1.Pod{pod}
	f.sync()
	f.ExpectActions("create jobs check-offsite-1", "get jobs check-offsite-1", "update backupstorages/status offsite")
	got := f.status()
	if got.Status.Phase != "" || got.Status.LastValidationTime != nil {
		t.Fatalf("status %s, want nothing validated", agentjobtest.Describe(got.Status))
	}
	expectReady(t, got, metav1.ConditionFalse, platformv1.ReasonJobConflict, "belongs to another object")
	if f.requeue != ConflictRetryInterval {
		t.Fatalf("requeue after %s, want %s: the other Job's deletion does not reach this storage", f.requeue, ConflictRetryInterval)
	}
	agentjobtest.ExpectEvents(t, f.Events())
}

func TestAMissingSecretIsNamed(t *testing.T) {
	bs := s3Storage()
	job := ownJob(bs, "check-offsite-1")
	pod := agentjobtest.Pod(job, "check-offsite-1-x1", "node-a", podStart)
	pod.CreationTimestamp = metav1.NewTime(podStart)
	pod.Status.Phase, pod.Status.StartTime = corev1.PodPending, nil
	pod.Status.ContainerStatuses[0].State = corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{
		Reason: "CreateContainerConfigError", Message: `secret "s3-creds" not found`}}

	t.Run("within the grace period the kubelet may still find it", func(t *testing.T) {
		f := newFixture(t)
		f.Storages, f.Jobs, f.AgentPods = []*platformv1.BackupStorage{bs}, []*batchv1.Job{job}, []*corev1.Pod{pod}
		f.Clock.SetTime(podStart.Add(10 * time.Second))
		f.sync()
		f.ExpectActions("update backupstorages/status offsite")
		expectReady(t, f.status(), metav1.ConditionUnknown, ReasonChecking)
		if f.requeue != 20*time.Second {
			t.Fatalf("requeue after %s, want the rest of the grace period", f.requeue)
		}
	})
	t.Run("after it the storage is Unavailable", func(t *testing.T) {
		f := newFixture(t)
		f.Storages, f.Jobs, f.AgentPods = []*platformv1.BackupStorage{bs}, []*batchv1.Job{job}, []*corev1.Pod{pod}
		at := podStart.Add(ConfigErrorGracePeriod)
		f.Clock.SetTime(at)
		f.sync()
		f.ExpectActions("update backupstorages/status offsite")
		got := f.status()
		if got.Status.Phase != platformv1.StorageUnavailable || got.Status.ValidatedGeneration != 1 || !got.Status.LastValidationTime.Time.Equal(at) {
			t.Fatalf("status %s, want Unavailable, validated now", agentjobtest.Describe(got.Status))
		}
		expectReady(t, got, metav1.ConditionFalse, ReasonCredentialsNotFound,
			"Secret s3-creds, named by spec.s3.credentialsSecretRef, does not exist in namespace db", `secret "s3-creds" not found`, AnnotationCheckNow)
		agentjobtest.ExpectEvents(t, f.Events(), "Warning StorageUnavailable Storage check failed (CredentialsNotFound)")
	})
}

func TestCheckPastItsDeadlinePointsToThePod(t *testing.T) {
	f := newFixture(t)
	bs := s3Storage()
	job := ownJob(bs, "check-offsite-1")
	job.Spec.ActiveDeadlineSeconds = ptr.To(CheckDeadlineSeconds)
	job = agentjobtest.Finish(job, false, batchv1.JobReasonDeadlineExceeded, "Job was active longer than specified deadline", jobEnd)
	f.Storages, f.Jobs = []*platformv1.BackupStorage{bs}, []*batchv1.Job{job}
	f.Clock.SetTime(jobEnd.Add(agentjob.ResultGracePeriod))
	f.sync()
	expectReady(t, f.status(), metav1.ConditionFalse, ReasonCheckFailed, "did not finish within 120s", "kubectl describe pod -n db -l batch.kubernetes.io/job-name=check-offsite-1")
}

func TestFailedBackupsReachTheirStorage(t *testing.T) {
	at := agentjobtest.Epoch
	for _, tc := range []struct {
		name string
		b    *platformv1.Backup
		key  string
	}{
		{"a storage failure", failedBackup("nightly", string(archive.StorageTLSUntrusted), at), "db/offsite"},
		{"another failure", failedBackup("nightly", platformv1.ReasonJobFailed, at), ""},
		{"an inline claim", func() *platformv1.Backup {
			b := failedBackup("nightly", string(archive.StorageAccessDenied), at)
			b.Spec.Storage = &platformv1.Storage{PersistentVolumeClaim: &platformv1.StorageVolumeClaim{ClaimName: "backup-storage"}}
			return b
		}(), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			key, ok := storageOfFailedBackup(tc.b)
			if key != tc.key || ok != (tc.key != "") {
				t.Fatalf("storageOfFailedBackup = %q, %v; want %q", key, ok, tc.key)
			}
		})
	}
}
