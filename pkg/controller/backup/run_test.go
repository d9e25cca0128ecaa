package backup

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clienttesting "k8s.io/client-go/testing"
	"k8s.io/utils/ptr"

	"platform.example.com/backup-operator/pkg/agent"
	platformv1 "platform.example.com/backup-operator/pkg/apis/platform/v1"
	"platform.example.com/backup-operator/pkg/archive"
	"platform.example.com/backup-operator/pkg/controller/agentjob"
	"platform.example.com/backup-operator/pkg/controller/agentjob/agentjobtest"
	"platform.example.com/backup-operator/pkg/generated/clientset/versioned/fake"
)

var (
	podStart = agentjobtest.Epoch.Add(time.Minute)
	jobEnd   = podStart.Add(6 * time.Second)
	sum      = "abcd" + strings.Repeat("0123456789abcdef", 3) + "0123456789ab"
)

func successResult() agent.BackupResult {
	var r agent.BackupResult
	r.Operation, r.ToolVersion = agent.OpBackup, "test"
	r.Archive = "/storage/nightly.tar.zst"
	r.Size = 1288490189 // 1.2 GiB
	r.SourceBytes = 3 << 30
	r.Files, r.Directories, r.Symlinks, r.Hardlinks = 100, 10, 2, 1
	r.Skipped, r.Vanished = 1, 2
	r.SHA256 = sum
	r.Compression = archive.Zstd
	return r
}

func failureResult(reason agent.Reason, msg string) agent.BackupResult {
	var r agent.BackupResult
	r.Operation, r.ToolVersion = agent.OpBackup, "test"
	r.Error, r.Reason = msg, reason
	return r
}

func TestNewBackupAddsTheFinalizerThenCreatesItsJob(t *testing.T) {
	f := newFixture(t)
	f.Backups = []*platformv1.Backup{newBackup()}
	f.Claims = defaultClaims()
	// The Job's news wakes the Backup; the requeue is for a pod that never shows up at all.
	if d := f.MustRun(); d != 15*time.Minute {
		t.Fatalf("requeue after %s, want the pending deadline, 15m", d)
	}
	f.ExpectActions("update backups nightly", "create jobs backup-nightly", "update backups/status nightly")

	added := agentjobtest.Object[*platformv1.Backup](t, f.Client.Actions(), "update", "backups")
	if !slices.Equal(added.Finalizers, []string{platformv1.FinalizerArchiveCleanup}) {
		t.Fatalf("finalizers %v, want the archive-cleanup finalizer before the Job exists", added.Finalizers)
	}

	job := f.CreatedJob()
	if ref := metav1.GetControllerOf(job); ref == nil || ref.UID != "backup-uid" || ref.Kind != "Backup" || !ptr.Deref(ref.BlockOwnerDeletion, false) {
		t.Fatalf("owner %+v, want the Backup as controller with blockOwnerDeletion", job.OwnerReferences)
	}
	wantLabels := map[string]string{
		platformv1.LabelManagedBy: platformv1.ManagedByValue, platformv1.LabelBackup: "nightly",
		platformv1.LabelPVC: "data", agentjob.LabelComponent: agentjob.ComponentBackup,
	}
	if !equality.Semantic.DeepEqual(job.Labels, wantLabels) || !equality.Semantic.DeepEqual(job.Spec.Template.Labels, wantLabels) {
		t.Fatalf("Job labels %v, pod labels %v, want %v on both", job.Labels, job.Spec.Template.Labels, wantLabels)
	}
	if got := ptr.Deref(job.Spec.ActiveDeadlineSeconds, 0); got != platformv1.DefaultActiveDeadlineSeconds {
		t.Errorf("activeDeadlineSeconds %d, want the default %d", got, platformv1.DefaultActiveDeadlineSeconds)
	}
	if got := ptr.Deref(job.Spec.BackoffLimit, -1); got != platformv1.DefaultBackoffLimit {
		t.Errorf("backoffLimit %d, want the default %d", got, platformv1.DefaultBackoffLimit)
	}
	if job.Spec.TTLSecondsAfterFinished != nil {
		t.Errorf("ttlSecondsAfterFinished %d: the Backup owns its Job and keeps it", *job.Spec.TTLSecondsAfterFinished)
	}
	pod := job.Spec.Template.Spec
	if pod.RestartPolicy != corev1.RestartPolicyNever || pod.Affinity != nil {
		t.Errorf("restartPolicy %s, affinity %+v: want Never and no pinning for an unused claim", pod.RestartPolicy, pod.Affinity)
	}
	agent := pod.Containers[0]
	wantArgs := []string{"agent", "backup", "--source", "/source", "--output", "/storage/nightly.tar.zst", "--compression", "zstd",
		"--namespace", "db", "--pvc", "data", "--policy=", "--backup", "nightly", "--backup-uid", "backup-uid"}
	if agent.Image != agentjobtest.Image || !slices.Equal(agent.Args, wantArgs) {
		t.Fatalf("container runs %s %q, want %s %q", agent.Image, agent.Args, agentjobtest.Image, wantArgs)
	}
	if len(agent.Env) != 0 {
		t.Errorf("env %s: an agent that only reads files is not told where the API server is", agentjobtest.Describe(agent.Env))
	}
	if agent.TerminationMessagePolicy != corev1.TerminationMessageReadFile {
		t.Errorf("terminationMessagePolicy %s, want File", agent.TerminationMessagePolicy)
	}
	wantVolumes := []corev1.Volume{
		{Name: "source", VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "data", ReadOnly: true}}},
		{Name: "storage", VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "backup-storage"}}},
	}
	wantMounts := []corev1.VolumeMount{
		{Name: "source", MountPath: "/source", ReadOnly: true},
		{Name: "storage", MountPath: "/storage", SubPath: "db/data"},
	}
	if !equality.Semantic.DeepEqual(pod.Volumes, wantVolumes) || !equality.Semantic.DeepEqual(agent.VolumeMounts, wantMounts) {
		t.Fatalf("volumes %s mounts %s, want %s %s", agentjobtest.Describe(pod.Volumes), agentjobtest.Describe(agent.VolumeMounts), agentjobtest.Describe(wantVolumes), agentjobtest.Describe(wantMounts))
	}
	expectLeastPrivilege(t, job, []corev1.Capability{"DAC_READ_SEARCH"})

	b := f.status()
	if b.Status.Phase != platformv1.BackupPending || b.Status.JobName != "backup-nightly" || b.Status.ObservedGeneration != 1 || b.Status.NodeName != "" {
		t.Fatalf("status %s", agentjobtest.Describe(b.Status))
	}
	agentjobtest.ExpectCondition(t, b.Status.Conditions, metav1.ConditionUnknown, platformv1.ReasonJobPending, "backup-nightly")
	if c := agentjobtest.Condition(t, b.Status.Conditions); !c.LastTransitionTime.Time.Equal(f.Clock.Now()) {
		t.Errorf("condition changed at %s, want the fake clock's %s", c.LastTransitionTime, f.Clock.Now())
	}
	agentjobtest.ExpectEvents(t, f.Events(), "Normal JobCreated Created Job backup-nightly to archive PersistentVolumeClaim data to db/data/nightly.tar.zst")
}

func expectLeastPrivilege(t *testing.T, job *batchv1.Job, caps []corev1.Capability) {
	t.Helper()
	pod := job.Spec.Template.Spec
	if ptr.Deref(pod.AutomountServiceAccountToken, true) || pod.SecurityContext.FSGroup != nil {
		t.Errorf("the agent pod mounts API credentials or sets an fsGroup")
	}
	if ptr.Deref(pod.SecurityContext.RunAsUser, -1) != 0 || pod.SecurityContext.SeccompProfile == nil || pod.SecurityContext.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("pod security context %s, want root (for the capabilities) under RuntimeDefault seccomp", agentjobtest.Describe(pod.SecurityContext))
	}
	sc := pod.Containers[0].SecurityContext
	if sc == nil || ptr.Deref(sc.Privileged, true) || ptr.Deref(sc.AllowPrivilegeEscalation, true) || !ptr.Deref(sc.ReadOnlyRootFilesystem, false) {
		t.Fatalf("container security context %s, want unprivileged, no escalation, read-only root", agentjobtest.Describe(sc))
	}
	if !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || !slices.Equal(sc.Capabilities.Add, caps) {
		t.Fatalf("capabilities %+v, want drop ALL, add %v", sc.Capabilities, caps)
	}
	rules := job.Spec.PodFailurePolicy.Rules
	if len(rules) == 0 || rules[0].Action != batchv1.PodFailurePolicyActionFailJob || !slices.Equal(rules[0].OnExitCodes.Values, []int32{agent.ExitUsage, agent.ExitIntegrity, agent.ExitRefused}) {
		t.Fatalf("podFailurePolicy %s, want FailJob on the agent's usage, integrity and refusal exit codes", agentjobtest.Describe(job.Spec.PodFailurePolicy))
	}
}

func TestBackupOfAClaimInUseRunsOnTheNodeItIsAttachedTo(t *testing.T) {
	f := newFixture(t)
	b := withFinalizer(newBackup())
	b.Spec.Compression = platformv1.CompressionGzip
	b.Spec.Storage = &platformv1.Storage{PersistentVolumeClaim: &platformv1.StorageVolumeClaim{ClaimName: "archives", SubPath: "cluster-a"}}
	b.Spec.ActiveDeadlineSeconds = ptr.To[int64](600)
	b.Spec.BackoffLimit = ptr.To[int32](0)
	b.Spec.Resources = &corev1.ResourceRequirements{Limits: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("128Mi")}}
	f.Backups = []*platformv1.Backup{b}
	f.Claims = []*corev1.PersistentVolumeClaim{agentjobtest.Claim("db", "data", corev1.ReadWriteOnce), agentjobtest.Claim("db", "archives", corev1.ReadWriteMany)}
	f.APIOnly = []runtime.Object{
		agentjobtest.AppPod("db", "postgres-0", "node-a", "data", false),
		agentjobtest.AppPod("db", "other", "node-b", "unrelated", false),
	}
	f.MustRun()
	f.ExpectActions("create jobs backup-nightly", "update backups/status nightly")

	job := f.CreatedJob()
	terms := job.Spec.Template.Spec.Affinity.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms
	if len(terms) != 1 || !slices.Equal(terms[0].MatchFields[0].Values, []string{"node-a"}) || terms[0].MatchFields[0].Key != "metadata.name" {
		t.Fatalf("node affinity %s, want the pod pinned to node-a", agentjobtest.Describe(terms))
	}
	container := job.Spec.Template.Spec.Containers[0]
	if !slices.Contains(container.Args, "/storage/nightly.tar.gz") || container.VolumeMounts[1].SubPath != "cluster-a/db/data" {
		t.Fatalf("args %q, storage mount %+v: want the gzip archive under the storage subPath", container.Args, container.VolumeMounts[1])
	}
	if *job.Spec.ActiveDeadlineSeconds != 600 || *job.Spec.BackoffLimit != 0 || !container.Resources.Limits.Memory().Equal(resource.MustParse("128Mi")) {
		t.Fatalf("deadline %d, backoff %d, resources %v: want the spec's", *job.Spec.ActiveDeadlineSeconds, *job.Spec.BackoffLimit, container.Resources)
	}
	if got := f.status().Status.NodeName; got != "node-a" {
		t.Fatalf("status.nodeName %q, want node-a", got)
	}
}

func TestBackupRefusals(t *testing.T) {
	rwop := func(f *fixture) {
		f.Claims = []*corev1.PersistentVolumeClaim{agentjobtest.Claim("db", "data", corev1.ReadWriteOncePod), agentjobtest.Claim("db", "backup-storage", corev1.ReadWriteMany)}
		f.APIOnly = []runtime.Object{agentjobtest.AppPod("db", "postgres-0", "node-a", "data", true)}
	}
	tests := []struct {
		name   string
		setup  func(f *fixture)
		reason string
		says   string
	}{
		{"the claim does not exist", func(f *fixture) {
			f.Claims = []*corev1.PersistentVolumeClaim{agentjobtest.Claim("db", "backup-storage", corev1.ReadWriteMany)}
		}, platformv1.ReasonClaimNotFound, "PersistentVolumeClaim data does not exist"},
		{"the claim is not bound", func(f *fixture) {
			f.Claims = defaultClaims()
			f.Claims[0].Status.Phase = corev1.ClaimPending
		}, platformv1.ReasonClaimNotBound, "is Pending, not Bound"},
		{"the storage claim does not exist", func(f *fixture) {
			f.Claims = defaultClaims()[:1]
		}, platformv1.ReasonStorageNotFound, "Storage PersistentVolumeClaim backup-storage does not exist"},
		{"a ReadWriteOncePod claim is in use", rwop, platformv1.ReasonClaimInUse, "pod postgres-0 is using it"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			f.Backups = []*platformv1.Backup{withFinalizer(newBackup())}
			tc.setup(f)
			f.MustRun()
			f.ExpectActions("update backups/status nightly")
			b := f.status()
			if b.Status.Phase != platformv1.BackupFailed || b.Status.JobName != "" || b.Status.CompletionTime == nil {
				t.Fatalf("status %s, want Failed without a Job", agentjobtest.Describe(b.Status))
			}
			agentjobtest.ExpectCondition(t, b.Status.Conditions, metav1.ConditionFalse, tc.reason, tc.says)
			agentjobtest.ExpectEvents(t, f.Events(), "Warning BackupFailed Backup failed ("+tc.reason+")")
		})
	}
}

func TestJobWhosePodStartedMakesTheBackupRunning(t *testing.T) {
	f := newFixture(t)
	b := withFinalizer(newBackup())
	b.Status.Phase, b.Status.JobName = platformv1.BackupPending, "backup-nightly"
	job := ownJob(b)
	f.Backups, f.Claims, f.Jobs = []*platformv1.Backup{b}, defaultClaims(), []*batchv1.Job{job}
	f.AgentPods = []*corev1.Pod{agentjobtest.Pod(job, "backup-nightly-x1", "node-a", podStart)}
	f.MustRun()
	f.ExpectActions("update backups/status nightly")
	got := f.status()
	if got.Status.Phase != platformv1.BackupRunning || got.Status.NodeName != "node-a" || got.Status.StartTime == nil || !got.Status.StartTime.Time.Equal(podStart) {
		t.Fatalf("status %s, want Running on node-a since the pod started", agentjobtest.Describe(got.Status))
	}
	agentjobtest.ExpectCondition(t, got.Status.Conditions, metav1.ConditionUnknown, platformv1.ReasonRunning)
	agentjobtest.ExpectEvents(t, f.Events(), "Normal BackupStarted Started reading PersistentVolumeClaim data on node node-a")
}

func TestUnchangedPendingBackupWritesNothing(t *testing.T) {
	f := newFixture(t)
	b := withFinalizer(newBackup())
	b.Status = platformv1.BackupStatus{ObservedGeneration: 1, Phase: platformv1.BackupPending, JobName: "backup-nightly"}
	agentjob.SetSucceeded(&b.Status.Conditions, metav1.ConditionUnknown, platformv1.ReasonJobPending,
		"Job backup-nightly was created; waiting for its pod to start.", 1, agentjobtest.Epoch)
	f.Backups, f.Claims, f.Jobs = []*platformv1.Backup{b}, defaultClaims(), []*batchv1.Job{ownJob(b)}
	f.MustRun()
	f.ExpectActions()
	agentjobtest.ExpectEvents(t, f.Events())
}

func runningBackup() *platformv1.Backup {
	b := withFinalizer(newBackup())
	b.Status.Phase, b.Status.JobName, b.Status.NodeName = platformv1.BackupRunning, "backup-nightly", "node-a"
	b.Status.StartTime = &metav1.Time{Time: podStart}
	b.Status.ObservedGeneration = 1
	agentjob.SetSucceeded(&b.Status.Conditions, metav1.ConditionUnknown, platformv1.ReasonRunning,
		"The agent is archiving PersistentVolumeClaim data.", 1, podStart)
	return b
}

func TestCompletedJobCompletesTheBackupWithItsArtifact(t *testing.T) {
	f := newFixture(t)
	b := runningBackup()
	job := agentjobtest.Finish(ownJob(b), true, "", "", jobEnd)
	result := successResult()
	result.ChangedFiles = 3
	f.Backups, f.Claims, f.Jobs = []*platformv1.Backup{b}, defaultClaims(), []*batchv1.Job{job}
	f.AgentPods = []*corev1.Pod{agentjobtest.Terminated(agentjobtest.Pod(job, "backup-nightly-x1", "node-a", podStart), 0, result, jobEnd)}
	f.MustRun()
	f.ExpectActions("update backups/status nightly")

	got := f.status()
	want := &platformv1.Artifact{
		Path: "db/data/nightly.tar.zst", Size: 1288490189, DisplaySize: "1.2 GiB", SHA256: sum,
		Compression: platformv1.CompressionZstd, SourceBytes: 3 << 30, Files: 113, ChangedFiles: 3, SkippedFiles: 3,
	}
	if got.Status.Phase != platformv1.BackupCompleted || !equality.Semantic.DeepEqual(got.Status.Artifact, want) {
		t.Fatalf("status %s, want Completed with artifact %s", agentjobtest.Describe(got.Status), agentjobtest.Describe(want))
	}
	if !got.Status.CompletionTime.Time.Equal(jobEnd) || got.Status.Duration.Duration != 6*time.Second {
		t.Fatalf("completed at %s after %s, want %s after 6s", got.Status.CompletionTime, got.Status.Duration, jobEnd)
	}
	agentjobtest.ExpectCondition(t, got.Status.Conditions, metav1.ConditionTrue, platformv1.ReasonCompleted, "db/data/nightly.tar.zst")
	agentjobtest.ExpectEvents(t, f.Events(),
		"Normal BackupCompleted Backup completed in 6s: 1.2 GiB, sha256 abcd01234567…",
		"Warning FilesChanged 3 files changed while they were read")
}

func TestFailedJobFailsTheBackupWithTheAgentsReason(t *testing.T) {
	f := newFixture(t)
	b := runningBackup()
	job := agentjobtest.Finish(ownJob(b), false, batchv1.JobReasonBackoffLimitExceeded, "Job has reached the specified backoff limit", jobEnd)
	pod := agentjobtest.Pod(job, "backup-nightly-x1", "node-a", podStart)
	earlier := agentjobtest.Terminated(pod, 1, failureResult(agent.WriteFailed, "cannot write archive: no space left on device"), podStart.Add(time.Second))
	earlier.Name = "backup-nightly-x0"
	last := agentjobtest.Terminated(pod, 1, failureResult(agent.ReadFailed, "cannot read /source/base/1234: input/output error"), jobEnd)
	f.Backups, f.Claims, f.Jobs = []*platformv1.Backup{b}, defaultClaims(), []*batchv1.Job{job}
	f.AgentPods = []*corev1.Pod{earlier, last}
	f.MustRun()
	f.ExpectActions("update backups/status nightly")
	got := f.status()
	if got.Status.Phase != platformv1.BackupFailed || got.Status.Artifact != nil {
		t.Fatalf("status %s, want Failed without an artifact", agentjobtest.Describe(got.Status))
	}
	agentjobtest.ExpectCondition(t, got.Status.Conditions, metav1.ConditionFalse, platformv1.ReasonReadFailed, "backup-nightly-x1", "input/output error")
	agentjobtest.ExpectEvents(t, f.Events(), "Warning BackupFailed Backup failed (ReadFailed): the agent in pod backup-nightly-x1 failed: cannot read /source/base/1234")
}

func TestJobPastItsDeadlineFailsTheBackupWithDeadlineExceeded(t *testing.T) {
	f := newFixture(t)
	b := runningBackup()
	job := agentjobtest.Finish(ownJob(b), false, batchv1.JobReasonDeadlineExceeded, "Job was active longer than specified deadline", jobEnd)
	f.Backups, f.Claims, f.Jobs = []*platformv1.Backup{b}, defaultClaims(), []*batchv1.Job{job}
	f.AgentPods = []*corev1.Pod{agentjobtest.Terminated(agentjobtest.Pod(job, "backup-nightly-x1", "node-a", podStart), 1, failureResult(agent.Canceled, "canceled"), jobEnd)}
	f.MustRun()
	f.ExpectActions("update backups/status nightly")
	agentjobtest.ExpectCondition(t, f.status().Status.Conditions, metav1.ConditionFalse, platformv1.ReasonDeadlineExceeded, "activeDeadlineSeconds")
}

func TestCompletedJobWithoutAResultWaitsThenFails(t *testing.T) {
	setup := func(f *fixture) {
		b := runningBackup()
		job := agentjobtest.Finish(ownJob(b), true, "", "", jobEnd)
		f.Backups, f.Claims, f.Jobs = []*platformv1.Backup{b}, defaultClaims(), []*batchv1.Job{job}
		f.AgentPods = []*corev1.Pod{agentjobtest.Pod(job, "backup-nightly-x1", "node-a", podStart)}
	}

	f := newFixture(t)
	setup(f)
	f.Clock.SetTime(jobEnd.Add(10 * time.Second))
	if d := f.MustRun(); d != ResultGracePeriod-10*time.Second {
		t.Fatalf("requeue after %s, want the rest of the grace period", d)
	}
	f.ExpectActions()

	f = newFixture(t)
	setup(f)
	f.Clock.SetTime(jobEnd.Add(ResultGracePeriod))
	f.MustRun()
	f.ExpectActions("update backups/status nightly")
	agentjobtest.ExpectCondition(t, f.status().Status.Conditions, metav1.ConditionFalse, platformv1.ReasonResultMissing, "no readable result")
}

func TestFinishedBackupsAreFinal(t *testing.T) {
	for _, phase := range []platformv1.BackupPhase{platformv1.BackupCompleted, platformv1.BackupFailed} {
		t.Run(string(phase), func(t *testing.T) {
			f := newFixture(t)
			b := withFinalizer(newBackup())
			b.Status.Phase, b.Status.JobName = phase, "backup-nightly"
			// Even a Job that now says otherwise changes nothing.
			job := agentjobtest.Finish(ownJob(b), phase == platformv1.BackupFailed, "", "", jobEnd)
			f.Backups, f.Claims, f.Jobs = []*platformv1.Backup{b}, defaultClaims(), []*batchv1.Job{job}
			f.MustRun()
			f.ExpectActions()
			agentjobtest.ExpectEvents(t, f.Events())
		})
	}
}

func TestLostJobFailsTheBackup(t *testing.T) {
	f := newFixture(t)
	f.Backups, f.Claims = []*platformv1.Backup{runningBackup()}, defaultClaims()
	f.MustRun()
	f.ExpectActions("get jobs backup-nightly", "update backups/status nightly")
	got := f.status()
	agentjobtest.ExpectCondition(t, got.Status.Conditions, metav1.ConditionFalse, platformv1.ReasonJobLost, "was deleted before it finished", "create a new Backup")
	if got.Status.Phase != platformv1.BackupFailed || got.Status.Duration == nil {
		t.Fatalf("status %s, want Failed with its duration", agentjobtest.Describe(got.Status))
	}
}

func TestJobTheCacheHasNotSeenYetIsNotLost(t *testing.T) {
	f := newFixture(t)
	b := withFinalizer(newBackup())
	b.Status.Phase, b.Status.JobName = platformv1.BackupPending, "backup-nightly"
	agentjob.SetSucceeded(&b.Status.Conditions, metav1.ConditionUnknown, platformv1.ReasonJobPending,
		"Job backup-nightly was created; waiting for its pod to start.", 1, agentjobtest.Epoch)
	b.Status.ObservedGeneration = 1
	f.Backups, f.Claims = []*platformv1.Backup{b}, defaultClaims()
	f.APIOnly = []runtime.Object{ownJob(b)}
	f.MustRun()
	f.ExpectActions("get jobs backup-nightly")
}

func TestJobOfAnotherOwnerFailsTheBackup(t *testing.T) {
	foreign := func(b *platformv1.Backup) *batchv1.Job {
		j := ownJob(b)
		j.OwnerReferences[0].UID = "uid-of-an-earlier-backup"
		return j
	}
	t.Run("in the cache", func(t *testing.T) {
		f := newFixture(t)
		b := withFinalizer(newBackup())
		f.Backups, f.Claims, f.Jobs = []*platformv1.Backup{b}, defaultClaims(), []*batchv1.Job{foreign(b)}
		f.MustRun()
		f.ExpectActions("update backups/status nightly")
		agentjobtest.ExpectCondition(t, f.status().Status.Conditions, metav1.ConditionFalse, platformv1.ReasonJobConflict, "belongs to an earlier Backup named nightly")
	})
	t.Run("found on create", func(t *testing.T) {
		f := newFixture(t)
		b := withFinalizer(newBackup())
		f.Backups, f.Claims = []*platformv1.Backup{b}, defaultClaims()
		f.APIOnly = []runtime.Object{foreign(b)}
		f.MustRun()
		f.ExpectActions("create jobs backup-nightly", "get jobs backup-nightly", "update backups/status nightly")
		agentjobtest.ExpectCondition(t, f.status().Status.Conditions, metav1.ConditionFalse, platformv1.ReasonJobConflict, "belongs to an earlier Backup named nightly")
	})
	t.Run("a Job nothing of ours owns", func(t *testing.T) {
		f := newFixture(t)
		b := withFinalizer(newBackup())
		j := ownJob(b)
		j.OwnerReferences = nil
		f.Backups, f.Claims, f.Jobs = []*platformv1.Backup{b}, defaultClaims(), []*batchv1.Job{j}
		f.MustRun()
		f.ExpectActions("update backups/status nightly")
		agentjobtest.ExpectCondition(t, f.status().Status.Conditions, metav1.ConditionFalse, platformv1.ReasonJobConflict, "does not belong to this Backup", "Delete that Job")
	})
}

func TestRetainedBackupGetsNoFinalizer(t *testing.T) {
	f := newFixture(t)
	b := newBackup()
	b.Spec.DeletionPolicy = platformv1.DeletionPolicyRetain
	f.Backups, f.Claims = []*platformv1.Backup{b}, defaultClaims()
	f.MustRun()
	f.ExpectActions("create jobs backup-nightly", "update backups/status nightly")
}

func TestBackupThatIsGoneIsIgnored(t *testing.T) {
	f := newFixture(t)
	f.Claims = defaultClaims()
	f.MustRun()
	f.ExpectActions()
}

func TestJobThatStartedAndEndedBetweenSyncsStillTellsItsStart(t *testing.T) {
	f := newFixture(t)
	b := withFinalizer(newBackup())
	b.Status.Phase, b.Status.JobName = platformv1.BackupPending, "backup-nightly"
	job := agentjobtest.Finish(ownJob(b), true, "", "", jobEnd)
	f.Backups, f.Claims, f.Jobs = []*platformv1.Backup{b}, defaultClaims(), []*batchv1.Job{job}
	f.AgentPods = []*corev1.Pod{agentjobtest.Terminated(agentjobtest.Pod(job, "backup-nightly-x1", "node-a", podStart), 0, successResult(), jobEnd)}
	f.MustRun()
	f.ExpectActions("update backups/status nightly")
	got := f.status()
	if got.Status.Phase != platformv1.BackupCompleted || got.Status.NodeName != "node-a" || got.Status.Duration.Duration != 6*time.Second {
		t.Fatalf("status %s, want Completed on node-a after 6s", agentjobtest.Describe(got.Status))
	}
	agentjobtest.ExpectEvents(t, f.Events(), "Normal BackupStarted", "Normal BackupCompleted")
}

func TestFinalPhaseIsCountedOnceItIsWritten(t *testing.T) {
	completing := func(f *fixture) {
		b := runningBackup()
		job := agentjobtest.Finish(ownJob(b), true, "", "", jobEnd)
		f.Backups, f.Claims, f.Jobs = []*platformv1.Backup{b}, defaultClaims(), []*batchv1.Job{job}
		f.AgentPods = []*corev1.Pod{agentjobtest.Terminated(agentjobtest.Pod(job, "backup-nightly-x1", "node-a", podStart), 0, successResult(), jobEnd)}
	}

	f := newFixture(t)
	completing(f)
	f.MustRun()
	if got := f.Metrics.Sample("backup_operator_backups_total"); got != 1 {
		t.Fatalf("backups_total = %v after a Backup completed, want 1", got)
	}
	if got := f.Metrics.Sample("backup_operator_backup_archive_size_bytes"); got != 1 {
		t.Fatalf("archive size samples = %v, want 1", got)
	}

	// A status write that fails is retried; nothing is counted until it succeeds.
	f = newFixture(t)
	completing(f)
	f.ReactPlatform = func(c *fake.Clientset) {
		c.PrependReactor("update", "backups", func(clienttesting.Action) (bool, runtime.Object, error) {
			return true, nil, errors.New("conflict")
		})
	}
	if _, err := f.Run(); err == nil {
		t.Fatal("the failed status write was not returned")
	}
	if got := f.Metrics.Sample("backup_operator_backups_total"); got != 0 {
		t.Fatalf("backups_total = %v though the Completed phase was never written", got)
	}
}
