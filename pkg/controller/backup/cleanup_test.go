package backup

import (
	"slices"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"platform.example.com/backup-operator/pkg/agent"
	platformv1 "platform.example.com/backup-operator/pkg/apis/platform/v1"
	"platform.example.com/backup-operator/pkg/controller/agentjob"
	"platform.example.com/backup-operator/pkg/controller/agentjob/agentjobtest"
)

// deletedBackup is a Completed Backup that a user deleted.
func deletedBackup() *platformv1.Backup {
	b := withFinalizer(newBackup())
	b.DeletionTimestamp = &metav1.Time{Time: agentjobtest.Epoch.Add(time.Hour)}
	b.Status.Phase, b.Status.JobName = platformv1.BackupCompleted, "backup-nightly"
	b.Status.Artifact = &platformv1.Artifact{Path: "db/data/nightly.tar.zst", SHA256: sum, Compression: platformv1.CompressionZstd}
	return b
}

// cleanupJob is b's cleanup Job as the controller made it.
func cleanupJob(b *platformv1.Backup) *batchv1.Job {
	j := agentjobtest.OwnedJob(b.Namespace, CleanupJobName(b), "", "", "", map[string]string{
		platformv1.LabelManagedBy: platformv1.ManagedByValue, platformv1.LabelBackup: b.Name,
		platformv1.LabelPVC: b.Spec.PVCName, agentjob.LabelComponent: agentjob.ComponentCleanup,
	})
	j.Annotations = map[string]string{platformv1.AnnotationBackupUID: string(b.UID)}
	return j
}

func deleteResult(already bool) agent.DeleteResult {
	var r agent.DeleteResult
	r.Operation, r.ToolVersion = agent.OpDelete, "test"
	r.Archive, r.AlreadyDeleted = "/storage/nightly.tar.zst", already
	return r
}

func TestDeletedBackupStartsACleanupJob(t *testing.T) {
	f := newFixture(t)
	b := deletedBackup()
	f.Backups, f.Claims, f.Jobs = []*platformv1.Backup{b}, defaultClaims(), []*batchv1.Job{agentjobtest.Finish(ownJob(b), true, "", "", jobEnd)}
	f.MustRun()
	f.ExpectActions("create jobs cleanup-nightly")

	job := f.CreatedJob()
	if len(job.OwnerReferences) != 0 || job.Annotations[platformv1.AnnotationBackupUID] != "backup-uid" {
		t.Fatalf("cleanup Job owners %v, annotations %v: want no owner (garbage collection must not stop it) and the Backup's UID", job.OwnerReferences, job.Annotations)
	}
	if job.Labels[agentjob.LabelComponent] != agentjob.ComponentCleanup || job.Spec.Template.Labels[platformv1.LabelBackup] != "nightly" {
		t.Fatalf("labels %v / %v, want the cleanup component and the Backup's name on Job and pods", job.Labels, job.Spec.Template.Labels)
	}
	container := job.Spec.Template.Spec.Containers[0]
	if want := []string{"agent", "delete", "--archive", "/storage/nightly.tar.zst"}; !slices.Equal(container.Args, want) {
		t.Fatalf("args %q, want %q", container.Args, want)
	}
	if m := container.VolumeMounts; len(m) != 1 || m[0].SubPath != "db/data" || m[0].ReadOnly {
		t.Fatalf("mounts %+v, want the archive's directory of the storage claim, writable", m)
	}
	if *job.Spec.ActiveDeadlineSeconds != CleanupActiveDeadlineSeconds || ptr.Deref(job.Spec.TTLSecondsAfterFinished, 0) != CleanupTTLSecondsAfterFinished {
		t.Fatalf("deadline %d, ttl %v: want the cleanup's bounds", *job.Spec.ActiveDeadlineSeconds, job.Spec.TTLSecondsAfterFinished)
	}
	expectLeastPrivilege(t, job, nil)
	agentjobtest.ExpectEvents(t, f.Events(), "Normal CleanupJobCreated Created Job cleanup-nightly to delete archive db/data/nightly.tar.zst from claim backup-storage")
}

func TestCleanupJobOutcomeReleasesTheFinalizer(t *testing.T) {
	tests := []struct {
		name  string
		job   func(*batchv1.Job) *batchv1.Job
		pod   func(*batchv1.Job) *corev1.Pod
		event string
	}{
		{"deleted", func(j *batchv1.Job) *batchv1.Job { return agentjobtest.Finish(j, true, "", "", jobEnd) },
			func(j *batchv1.Job) *corev1.Pod {
				return agentjobtest.Terminated(agentjobtest.Pod(j, "cleanup-nightly-x1", "node-a", podStart), 0, deleteResult(false), jobEnd)
			},
			"Normal ArchiveDeleted Deleted archive db/data/nightly.tar.zst and its checksum and manifest from claim backup-storage"},
		{"already gone", func(j *batchv1.Job) *batchv1.Job { return agentjobtest.Finish(j, true, "", "", jobEnd) },
			func(j *batchv1.Job) *corev1.Pod {
				return agentjobtest.Terminated(agentjobtest.Pod(j, "cleanup-nightly-x1", "node-a", podStart), 0, deleteResult(true), jobEnd)
			},
			"Normal ArchiveDeleted Archive db/data/nightly.tar.zst was not on claim backup-storage"},
		{"failed past its backoff limit", func(j *batchv1.Job) *batchv1.Job {
			return agentjobtest.Finish(j, false, batchv1.JobReasonBackoffLimitExceeded, "Job has reached the specified backoff limit", jobEnd)
		},
			func(j *batchv1.Job) *corev1.Pod {
				r := deleteResult(false)
				r.Error, r.Reason = "cannot remove /storage/nightly.tar.zst: read-only file system", agent.WriteFailed
				return agentjobtest.Terminated(agentjobtest.Pod(j, "cleanup-nightly-x1", "node-a", podStart), 1, r, jobEnd)
			},
			"Warning CleanupFailed Could not delete archive db/data/nightly.tar.zst from claim backup-storage: the agent failed (WriteFailed): cannot remove"},
		{"failed past its deadline without a result", func(j *batchv1.Job) *batchv1.Job {
			return agentjobtest.Finish(j, false, batchv1.JobReasonDeadlineExceeded, "Job was active longer than specified deadline", jobEnd)
		}, nil,
			"Warning CleanupFailed Could not delete archive db/data/nightly.tar.zst from claim backup-storage: Job cleanup-nightly failed (DeadlineExceeded)"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			b := deletedBackup()
			cleanup := tc.job(cleanupJob(b))
			f.Backups, f.Claims, f.Jobs = []*platformv1.Backup{b}, defaultClaims(), []*batchv1.Job{cleanup}
			if tc.pod != nil {
				f.AgentPods = []*corev1.Pod{tc.pod(cleanup)}
			}
			f.MustRun()
			f.ExpectActions("delete jobs cleanup-nightly", "update backups nightly")
			if got := agentjobtest.Object[*platformv1.Backup](t, f.Client.Actions(), "update", "backups"); len(got.Finalizers) != 0 {
				t.Fatalf("finalizers %v after the cleanup ended, want none", got.Finalizers)
			}
			agentjobtest.ExpectEvents(t, f.Events(), tc.event)
		})
	}
}

func TestRunningCleanupJobIsAwaited(t *testing.T) {
	f := newFixture(t)
	b := deletedBackup()
	cleanup := cleanupJob(b)
	f.Backups, f.Claims, f.Jobs = []*platformv1.Backup{b}, defaultClaims(), []*batchv1.Job{cleanup}
	f.AgentPods = []*corev1.Pod{agentjobtest.Pod(cleanup, "cleanup-nightly-x1", "node-a", podStart)}
	f.MustRun()
	f.ExpectActions()
}

func TestCleanupJobWhosePodCannotStartSaysWhy(t *testing.T) {
	f := newFixture(t)
	b := deletedBackup()
	cleanup := cleanupJob(b)
	f.Backups, f.Claims, f.Jobs = []*platformv1.Backup{b}, defaultClaims(), []*batchv1.Job{cleanup}
	f.AgentPods = []*corev1.Pod{agentjobtest.Waiting(cleanup, "cleanup-nightly-x1", "CreateContainerConfigError", `secret "s3-creds" not found`)}
	f.MustRun()
	f.ExpectActions()
	agentjobtest.ExpectEvents(t, f.Events(), `Warning PodNotStarting Pod cleanup-nightly-x1 of cleanup Job cleanup-nightly cannot start (CreateContainerConfigError: secret "s3-creds" not found; create the Secret`)
}

func TestDeletionWithoutCleanup(t *testing.T) {
	tests := []struct {
		name  string
		setup func(f *fixture, b *platformv1.Backup)
		event []string
	}{
		{"deletionPolicy Retain", func(f *fixture, b *platformv1.Backup) { b.Spec.DeletionPolicy = platformv1.DeletionPolicyRetain },
			[]string{"Normal ArchiveRetained Kept archive db/data/nightly.tar.zst on claim backup-storage"}},
		{"the storage claim is gone", func(f *fixture, b *platformv1.Backup) { f.Claims = defaultClaims()[:1] },
			[]string{"Warning StorageGone Storage claim backup-storage no longer exists, so archive db/data/nightly.tar.zst could not be deleted"}},
		{"no Job ever ran", func(f *fixture, b *platformv1.Backup) {
			b.Status = platformv1.BackupStatus{Phase: platformv1.BackupFailed}
		}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			b := deletedBackup()
			f.Claims = defaultClaims()
			tc.setup(f, b)
			f.Backups = []*platformv1.Backup{b}
			f.MustRun()
			f.ExpectActions("update backups nightly")
			if got := agentjobtest.Object[*platformv1.Backup](t, f.Client.Actions(), "update", "backups"); len(got.Finalizers) != 0 {
				t.Fatalf("finalizers %v, want none", got.Finalizers)
			}
			agentjobtest.ExpectEvents(t, f.Events(), tc.event...)
		})
	}
}

func TestDeletingARunningBackupStopsItsJobFirst(t *testing.T) {
	f := newFixture(t)
	b := deletedBackup()
	b.Status = runningBackup().Status
	f.Backups, f.Claims, f.Jobs = []*platformv1.Backup{b}, defaultClaims(), []*batchv1.Job{ownJob(b)}
	f.MustRun()
	f.ExpectActions("delete jobs backup-nightly")
	for _, a := range f.KubeClient.Actions() {
		if d, ok := a.(interface {
			GetDeleteOptions() metav1.DeleteOptions
		}); ok {
			opts := d.GetDeleteOptions()
			if ptr.Deref(opts.PropagationPolicy, "") != metav1.DeletePropagationForeground || opts.Preconditions == nil || *opts.Preconditions.UID != "job-uid-backup-nightly" {
				t.Fatalf("delete options %+v, want foreground propagation (the pods go first) for that very Job", opts)
			}
		}
	}
	agentjobtest.ExpectEvents(t, f.Events(), "Normal StoppingJob Stopping Job backup-nightly")

	// Once the Job is gone, the cleanup starts.
	f = newFixture(t)
	f.Backups, f.Claims = []*platformv1.Backup{b}, defaultClaims()
	f.MustRun()
	f.ExpectActions("create jobs cleanup-nightly")
}

func TestStaleCleanupJobOfAnEarlierBackupIsRemovedFirst(t *testing.T) {
	f := newFixture(t)
	b := deletedBackup()
	stale := agentjobtest.Finish(cleanupJob(b), true, "", "", jobEnd)
	stale.Annotations[platformv1.AnnotationBackupUID] = "uid-of-an-earlier-backup"
	f.Backups, f.Claims, f.Jobs = []*platformv1.Backup{b}, defaultClaims(), []*batchv1.Job{stale}
	f.MustRun()
	f.ExpectActions("delete jobs cleanup-nightly")
	agentjobtest.ExpectEvents(t, f.Events())
}

func TestCleanupOwnerRoutesByLabel(t *testing.T) {
	b := deletedBackup()
	if key, ok := cleanupOwner(cleanupJob(b)); !ok || key != "db/nightly" {
		t.Fatalf("cleanup Job routed to (%q, %v), want db/nightly", key, ok)
	}
	if _, ok := cleanupOwner(ownJob(b)); ok {
		t.Fatal("a backup Job was routed as a cleanup Job; its owner reference routes it")
	}
}

func TestCleanupWaitsForRestoresReadingTheArchive(t *testing.T) {
	restore := func(name, backup string, phase platformv1.RestorePhase) *platformv1.Restore {
		return &platformv1.Restore{
			ObjectMeta: metav1.ObjectMeta{Namespace: "db", Name: name},
			Spec:       platformv1.RestoreSpec{BackupName: backup},
			Status:     platformv1.RestoreStatus{Phase: phase},
		}
	}
	f := newFixture(t)
	b := deletedBackup()
	f.Backups, f.Claims = []*platformv1.Backup{b}, defaultClaims()
	f.Restores = []*platformv1.Restore{restore("recover", "nightly", platformv1.RestoreRunning)}
	f.MustRun()
	f.ExpectActions()

	// Finished Restores, and Restores of other Backups, do not hold it back.
	f = newFixture(t)
	f.Backups, f.Claims = []*platformv1.Backup{b}, defaultClaims()
	f.Restores = []*platformv1.Restore{
		restore("done", "nightly", platformv1.RestoreCompleted),
		restore("refused", "nightly", platformv1.RestoreFailed),
		restore("other", "weekly", platformv1.RestoreRunning),
	}
	f.MustRun()
	f.ExpectActions("create jobs cleanup-nightly")

	if key, ok := restoredBackup(restore("recover", "nightly", "")); !ok || key != "db/nightly" {
		t.Fatalf("a Restore's events go to (%q, %v), want the Backup it reads", key, ok)
	}
}
