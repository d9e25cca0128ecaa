package restore

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	kubefake "k8s.io/client-go/kubernetes/fake"
	clienttesting "k8s.io/client-go/testing"
	"k8s.io/utils/ptr"

	"platform.example.com/backup-operator/pkg/agent"
	platformv1 "platform.example.com/backup-operator/pkg/apis/platform/v1"
	"platform.example.com/backup-operator/pkg/controller/agentjob"
	"platform.example.com/backup-operator/pkg/controller/agentjob/agentjobtest"
)

var (
	podStart = agentjobtest.Epoch.Add(time.Minute)
	jobEnd   = podStart.Add(6 * time.Second)
	sum      = "abcd" + strings.Repeat("0123456789abcdef", 3) + "0123456789ab"
)

func restoreResult(reason agent.Reason, msg string) agent.RestoreResult {
	var r agent.RestoreResult
	r.Operation, r.ToolVersion = agent.OpRestore, "test"
	r.Archive, r.Target, r.SHA256 = "/storage/nightly.tar.zst", "/target", sum
	if reason != "" {
		r.Error, r.Reason = msg, reason
		return r
	}
	r.Bytes = 3 << 30
	r.Files, r.Directories, r.Symlinks, r.Hardlinks = 100, 10, 2, 1
	return r
}

func TestRestoreIntoAnExistingClaimCreatesItsJob(t *testing.T) {
	f := newFixture(t)
	f.Restores, f.Backups, f.Claims = []*platformv1.Restore{newRestore()}, []*platformv1.Backup{completedBackup()}, defaultClaims()
	// A reader of the target on node-b pins the restore there; a writer elsewhere is no matter.
	f.APIOnly = []runtime.Object{
		agentjobtest.AppPod("db", "reader", "node-b", "data-restored", true),
		agentjobtest.AppPod("db", "postgres-0", "node-a", "data", false),
	}
	f.MustRun()
	f.ExpectActions("create jobs restore-recover", "update restores/status recover")

	job := f.CreatedJob()
	if ref := metav1.GetControllerOf(job); ref == nil || ref.UID != "restore-uid" || ref.Kind != "Restore" || !ptr.Deref(ref.BlockOwnerDeletion, false) {
		t.Fatalf("owner %+v, want the Restore as controller with blockOwnerDeletion", job.OwnerReferences)
	}
	if job.Spec.Template.Labels[platformv1.LabelRestore] != "recover" || job.Spec.Template.Labels[platformv1.LabelManagedBy] != platformv1.ManagedByValue {
		t.Fatalf("pod labels %v, want the managed-by and restore labels", job.Spec.Template.Labels)
	}
	pod := job.Spec.Template.Spec
	container := pod.Containers[0]
	wantArgs := []string{"agent", "restore", "--archive", "/storage/nightly.tar.zst", "--target", "/target", "--sha256", sum, "--overwrite", "refuse"}
	if !slices.Equal(container.Args, wantArgs) {
		t.Fatalf("args %q, want %q", container.Args, wantArgs)
	}
	// The target is the run's own claim; the storage follows it, as every storage's access does.
	wantMounts := []corev1.VolumeMount{
		{Name: "target", MountPath: "/target"},
		{Name: "storage", MountPath: "/storage", SubPath: "db/data", ReadOnly: true},
	}
	if !equality.Semantic.DeepEqual(container.VolumeMounts, wantMounts) || pod.Volumes[0].PersistentVolumeClaim.ClaimName != "data-restored" || pod.Volumes[0].PersistentVolumeClaim.ReadOnly || !pod.Volumes[1].PersistentVolumeClaim.ReadOnly {
		t.Fatalf("volumes %s mounts %s, want storage read-only and the target writable", agentjobtest.Describe(pod.Volumes), agentjobtest.Describe(container.VolumeMounts))
	}
	if terms := pod.Affinity.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms; terms[0].MatchFields[0].Values[0] != "node-b" {
		t.Fatalf("pinned to %v, want node-b where the target is attached", terms)
	}
	sc := container.SecurityContext
	if !slices.Equal(sc.Capabilities.Add, []corev1.Capability{"CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID"}) || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) ||
		ptr.Deref(sc.Privileged, true) || ptr.Deref(sc.AllowPrivilegeEscalation, true) || !ptr.Deref(sc.ReadOnlyRootFilesystem, false) {
		t.Fatalf("security context %s, want only the capabilities writing needs", agentjobtest.Describe(sc))
	}
	rules := job.Spec.PodFailurePolicy.Rules
	if rules[0].Action != batchv1.PodFailurePolicyActionFailJob || !slices.Contains(rules[0].OnExitCodes.Values, agent.ExitIntegrity) || !slices.Contains(rules[0].OnExitCodes.Values, agent.ExitRefused) {
		t.Fatalf("podFailurePolicy %s, want no retry of integrity failures or of a non-empty target", agentjobtest.Describe(job.Spec.PodFailurePolicy))
	}

	r := f.status()
	if r.Status.Phase != platformv1.RestorePending || r.Status.JobName != "restore-recover" || r.Status.ClaimCreated {
		t.Fatalf("status %s", agentjobtest.Describe(r.Status))
	}
	agentjobtest.ExpectCondition(t, r.Status.Conditions, metav1.ConditionUnknown, platformv1.ReasonJobPending)
	agentjobtest.ExpectEvents(t, f.Events(), "Normal JobCreated Created Job restore-recover to restore archive db/data/nightly.tar.zst of Backup nightly into claim data-restored (overwritePolicy Refuse)")
}

func TestRestoreOverwritePolicyReachesTheAgent(t *testing.T) {
	f := newFixture(t)
	r := newRestore()
	r.Spec.OverwritePolicy = platformv1.OverwriteReplace
	f.Restores, f.Backups, f.Claims = []*platformv1.Restore{r}, []*platformv1.Backup{completedBackup()}, defaultClaims()
	f.MustRun()
	if args := f.CreatedJob().Spec.Template.Spec.Containers[0].Args; !slices.Equal(args[len(args)-2:], []string{"--overwrite", "replace"}) {
		t.Fatalf("args %q, want --overwrite replace", args)
	}
}

func TestRestoreRefusals(t *testing.T) {
	tests := []struct {
		name   string
		setup  func(f *fixture)
		reason string
		says   string
	}{
		{"the Backup does not exist", func(f *fixture) { f.Backups = nil },
			platformv1.ReasonBackupNotFound, "Backup nightly does not exist"},
		{"the Backup is being deleted", func(f *fixture) {
			f.Backups[0].DeletionTimestamp = &metav1.Time{Time: agentjobtest.Epoch}
		}, platformv1.ReasonBackupNotFound, "is being deleted"},
		{"the Backup is not Completed", func(f *fixture) {
			f.Backups[0].Status = platformv1.BackupStatus{Phase: platformv1.BackupRunning}
		}, platformv1.ReasonBackupNotCompleted, "Backup nightly is Running"},
		{"the Backup's artifact path leaves the storage", func(f *fixture) {
			f.Backups[0].Status.Artifact.Path = "../etc/nightly.tar.zst"
		}, platformv1.ReasonBackupNotCompleted, "no usable archive"},
		{"the storage claim is gone", func(f *fixture) { f.Claims = defaultClaims()[:1] },
			platformv1.ReasonStorageNotFound, "Storage claim backup-storage"},
		{"the target does not exist and there is no template", func(f *fixture) { f.Claims = defaultClaims()[1:] },
			platformv1.ReasonClaimNotFound, "spec.target.create is not set"},
		{"the target is mounted read-write by a running pod", func(f *fixture) {
			f.APIOnly = []runtime.Object{agentjobtest.AppPod("db", "postgres-0", "node-a", "data-restored", false)}
		}, platformv1.ReasonClaimInUse, "mounted read-write by running pod postgres-0"},
		{"the target is ReadWriteOncePod and in use", func(f *fixture) {
			f.Claims[0] = agentjobtest.Claim("db", "data-restored", corev1.ReadWriteOncePod)
			f.APIOnly = []runtime.Object{agentjobtest.AppPod("db", "reader", "node-a", "data-restored", true)}
		}, platformv1.ReasonClaimInUse, "ReadWriteOncePod and pod reader"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			f.Restores, f.Backups, f.Claims = []*platformv1.Restore{newRestore()}, []*platformv1.Backup{completedBackup()}, defaultClaims()
			tc.setup(f)
			f.MustRun()
			f.ExpectActions("update restores/status recover")
			r := f.status()
			if r.Status.Phase != platformv1.RestoreFailed || r.Status.JobName != "" || r.Status.CompletionTime == nil {
				t.Fatalf("status %s, want Failed without a Job", agentjobtest.Describe(r.Status))
			}
			agentjobtest.ExpectCondition(t, r.Status.Conditions, metav1.ConditionFalse, tc.reason, tc.says, "nothing was written")
			agentjobtest.ExpectEvents(t, f.Events(), "Warning RestoreFailed Restore failed ("+tc.reason+")")
		})
	}
}

func TestRestoreCreatesItsTargetFromTheTemplate(t *testing.T) {
	class := "fast"
	tests := []struct {
		name     string
		tmpl     platformv1.TargetClaimTemplate
		wantSize string
		wantMode corev1.PersistentVolumeAccessMode
	}{
		{"sized from the backup", platformv1.TargetClaimTemplate{StorageClassName: &class, Labels: map[string]string{"app": "postgres"}}, "4Gi", corev1.ReadWriteOnce},
		{"sized by the template", platformv1.TargetClaimTemplate{Size: ptr.To(resource.MustParse("10Gi")), AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOncePod}}, "10Gi", corev1.ReadWriteOncePod},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			r := newRestore()
			r.Spec.Target.Create = &tc.tmpl
			f.Restores, f.Backups, f.Claims = []*platformv1.Restore{r}, []*platformv1.Backup{completedBackup()}, defaultClaims()[1:]
			f.MustRun()
			f.ExpectActions("create persistentvolumeclaims data-restored", "create jobs restore-recover", "update restores/status recover")

			claim := agentjobtest.Object[*corev1.PersistentVolumeClaim](t, f.KubeClient.Actions(), "create", "persistentvolumeclaims")
			size := claim.Spec.Resources.Requests[corev1.ResourceStorage]
			if size.Cmp(resource.MustParse(tc.wantSize)) != 0 || !slices.Equal(claim.Spec.AccessModes, []corev1.PersistentVolumeAccessMode{tc.wantMode}) {
				t.Fatalf("claim of %s %v, want %s %s", size.String(), claim.Spec.AccessModes, tc.wantSize, tc.wantMode)
			}
			if len(claim.OwnerReferences) != 0 || claim.Annotations[platformv1.AnnotationCreatedByRestore] != "restore-uid" {
				t.Fatalf("claim owners %v annotations %v: want no owner (the data outlives the Restore) and the Restore's UID", claim.OwnerReferences, claim.Annotations)
			}
			if !equality.Semantic.DeepEqual(claim.Spec.StorageClassName, tc.tmpl.StorageClassName) || !equality.Semantic.DeepEqual(claim.Labels, tc.tmpl.Labels) {
				t.Fatalf("claim class %v labels %v, want the template's", claim.Spec.StorageClassName, claim.Labels)
			}
			if st := f.status(); !st.Status.ClaimCreated || st.Status.Phase != platformv1.RestorePending {
				t.Fatalf("status %s, want claimCreated and Pending", agentjobtest.Describe(st.Status))
			}
			agentjobtest.ExpectEvents(t, f.Events(), "Normal ClaimCreated Created claim data-restored of "+tc.wantSize, "Normal JobCreated")
		})
	}
}

func TestClaimSizeLeavesHeadroom(t *testing.T) {
	for _, tc := range []struct {
		source int64
		want   string
	}{
		{0, "1Gi"},
		{100 << 20, "1Gi"},
		{3 << 30, "4096Mi"},
		{10<<30 + 1, "13057Mi"},
	} {
		if got := ClaimSize(tc.source); got.Cmp(resource.MustParse(tc.want)) != 0 {
			t.Errorf("ClaimSize(%d) = %s, want %s", tc.source, got.String(), tc.want)
		}
	}
}

func runningRestore() *platformv1.Restore {
	r := newRestore()
	r.Status = platformv1.RestoreStatus{ObservedGeneration: 1, Phase: platformv1.RestoreRunning, JobName: "restore-recover", StartTime: &metav1.Time{Time: podStart}}
	agentjob.SetSucceeded(&r.Status.Conditions, metav1.ConditionUnknown, platformv1.ReasonRunning, "running", 1, podStart)
	return r
}

func TestRestoreJobPodStartedMakesItRunning(t *testing.T) {
	f := newFixture(t)
	r := newRestore()
	r.Status.Phase, r.Status.JobName = platformv1.RestorePending, "restore-recover"
	job := ownJob(r)
	f.Restores, f.Backups, f.Claims, f.Jobs = []*platformv1.Restore{r}, []*platformv1.Backup{completedBackup()}, defaultClaims(), []*batchv1.Job{job}
	f.AgentPods = []*corev1.Pod{agentjobtest.Pod(job, "restore-recover-x1", "node-a", podStart)}
	f.MustRun()
	f.ExpectActions("update restores/status recover")
	got := f.status()
	if got.Status.Phase != platformv1.RestoreRunning || !got.Status.StartTime.Time.Equal(podStart) {
		t.Fatalf("status %s, want Running since the pod started", agentjobtest.Describe(got.Status))
	}
	agentjobtest.ExpectEvents(t, f.Events(), "Normal RestoreStarted Started verifying the archive of Backup nightly, then writing claim data-restored, on node node-a")
}

func TestRestoreJobOutcomes(t *testing.T) {
	tests := []struct {
		name      string
		succeeded bool
		exitCode  int32
		jobReason string
		result    agent.RestoreResult
		reason    string
		says      []string
		event     string
	}{
		{"success", true, 0, "", restoreResult("", ""), platformv1.ReasonCompleted, []string{"Restored 113 entries (3.0 GiB)", sum},
			"Normal RestoreCompleted Restore completed in 6s: 3.0 GiB in 113 entries into claim data-restored, sha256 abcd01234567… verified"},
		{"checksum mismatch", false, agent.ExitIntegrity, batchv1.JobReasonPodFailurePolicy,
			restoreResult(agent.ChecksumMismatch, "archive sha256 is 9999…, want abcd…"), platformv1.ReasonChecksumMismatch,
			[]string{"archive sha256 is 9999", "The target was not touched"}, "Warning RestoreFailed Restore failed (ChecksumMismatch)"},
		{"target not empty", false, agent.ExitFailed, batchv1.JobReasonBackoffLimitExceeded,
			restoreResult(agent.TargetNotEmpty, "/target holds 4 entries"), platformv1.ReasonTargetNotEmpty,
			[]string{"/target holds 4 entries", "overwritePolicy Merge or Replace"}, "Warning RestoreFailed Restore failed (TargetNotEmpty)"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			r := runningRestore()
			job := agentjobtest.Finish(ownJob(r), tc.succeeded, tc.jobReason, "", jobEnd)
			f.Restores, f.Backups, f.Claims, f.Jobs = []*platformv1.Restore{r}, []*platformv1.Backup{completedBackup()}, defaultClaims(), []*batchv1.Job{job}
			f.AgentPods = []*corev1.Pod{agentjobtest.Terminated(agentjobtest.Pod(job, "restore-recover-x1", "node-a", podStart), tc.exitCode, tc.result, jobEnd)}
			f.MustRun()
			f.ExpectActions("update restores/status recover")
			got := f.status()
			wantPhase, wantStatus := platformv1.RestoreFailed, metav1.ConditionFalse
			if tc.succeeded {
				wantPhase, wantStatus = platformv1.RestoreCompleted, metav1.ConditionTrue
				if got.Status.VerifiedSHA256 != sum || got.Status.RestoredFiles != 113 || got.Status.RestoredBytes != 3<<30 {
					t.Fatalf("status %s, want the verified checksum and what was restored", agentjobtest.Describe(got.Status))
				}
			} else if got.Status.VerifiedSHA256 != "" {
				t.Fatalf("a failed restore claims checksum %s was verified", got.Status.VerifiedSHA256)
			}
			if got.Status.Phase != wantPhase || got.Status.Duration.Duration != 6*time.Second || !got.Status.CompletionTime.Time.Equal(jobEnd) {
				t.Fatalf("status %s, want %s after 6s", agentjobtest.Describe(got.Status), wantPhase)
			}
			agentjobtest.ExpectCondition(t, got.Status.Conditions, wantStatus, tc.reason, tc.says...)
			agentjobtest.ExpectEvents(t, f.Events(), tc.event)
		})
	}
}

func TestLostRestoreJobFailsAndWarnsOfAPartialTarget(t *testing.T) {
	f := newFixture(t)
	f.Restores, f.Backups, f.Claims = []*platformv1.Restore{runningRestore()}, []*platformv1.Backup{completedBackup()}, defaultClaims()
	f.MustRun()
	f.ExpectActions("get jobs restore-recover", "update restores/status recover")
	agentjobtest.ExpectCondition(t, f.status().Status.Conditions, metav1.ConditionFalse, platformv1.ReasonJobLost, "may hold a partial restore")
}

func TestRestoreJobOfAnotherOwnerFailsTheRestore(t *testing.T) {
	f := newFixture(t)
	r := newRestore()
	foreign := ownJob(r)
	foreign.OwnerReferences[0].UID = "uid-of-an-earlier-restore"
	f.Restores, f.Backups, f.Claims = []*platformv1.Restore{r}, []*platformv1.Backup{completedBackup()}, defaultClaims()
	f.APIOnly = []runtime.Object{foreign}
	f.MustRun()
	f.ExpectActions("create jobs restore-recover", "get jobs restore-recover", "update restores/status recover")
	agentjobtest.ExpectCondition(t, f.status().Status.Conditions, metav1.ConditionFalse, platformv1.ReasonJobConflict, "belongs to an earlier Restore named recover")
}

func TestFinishedRestoresAreFinal(t *testing.T) {
	for _, phase := range []platformv1.RestorePhase{platformv1.RestoreCompleted, platformv1.RestoreFailed} {
		t.Run(string(phase), func(t *testing.T) {
			f := newFixture(t)
			r := newRestore()
			r.Status.Phase = phase
			f.Restores, f.Claims = []*platformv1.Restore{r}, defaultClaims()
			f.MustRun()
			f.ExpectActions()
			agentjobtest.ExpectEvents(t, f.Events())
		})
	}
}

func TestRestoreTargetCreation(t *testing.T) {
	withTemplate := func() *platformv1.Restore {
		r := newRestore()
		r.Spec.Target.Create = &platformv1.TargetClaimTemplate{}
		return r
	}
	t.Run("a claim this Restore made before the cache saw it", func(t *testing.T) {
		f := newFixture(t)
		f.Restores, f.Backups, f.Claims = []*platformv1.Restore{withTemplate()}, []*platformv1.Backup{completedBackup()}, defaultClaims()[1:]
		made := agentjobtest.Claim("db", "data-restored", corev1.ReadWriteOnce)
		made.Annotations = map[string]string{platformv1.AnnotationCreatedByRestore: "restore-uid"}
		f.APIOnly = []runtime.Object{made}
		f.MustRun()
		f.ExpectActions("create persistentvolumeclaims data-restored", "get persistentvolumeclaims data-restored", "create jobs restore-recover", "update restores/status recover")
		if !f.status().Status.ClaimCreated {
			t.Fatal("claimCreated is false for a claim this Restore made")
		}
	})
	t.Run("a claim someone else made meanwhile is checked like any other", func(t *testing.T) {
		f := newFixture(t)
		f.Restores, f.Backups, f.Claims = []*platformv1.Restore{withTemplate()}, []*platformv1.Backup{completedBackup()}, defaultClaims()[1:]
		f.APIOnly = []runtime.Object{
			agentjobtest.Claim("db", "data-restored", corev1.ReadWriteOnce),
			agentjobtest.AppPod("db", "writer", "node-a", "data-restored", false),
		}
		f.MustRun()
		f.ExpectActions("create persistentvolumeclaims data-restored", "get persistentvolumeclaims data-restored", "update restores/status recover")
		st := f.status().Status
		if st.ClaimCreated {
			t.Fatal("claimCreated is true for a claim someone else made")
		}
		agentjobtest.ExpectCondition(t, st.Conditions, metav1.ConditionFalse, platformv1.ReasonClaimInUse, "pod writer")
	})
	t.Run("the API server refuses the claim", func(t *testing.T) {
		f := newFixture(t)
		f.Restores, f.Backups, f.Claims = []*platformv1.Restore{withTemplate()}, []*platformv1.Backup{completedBackup()}, defaultClaims()[1:]
		f.React = func(c *kubefake.Clientset) {
			c.PrependReactor("create", "persistentvolumeclaims", func(clienttesting.Action) (bool, runtime.Object, error) {
				return true, nil, apierrors.NewForbidden(corev1.Resource("persistentvolumeclaims"), "data-restored", errors.New("exceeded quota: storage"))
			})
		}
		f.MustRun()
		f.ExpectActions("create persistentvolumeclaims data-restored", "update restores/status recover")
		agentjobtest.ExpectCondition(t, f.status().Status.Conditions, metav1.ConditionFalse, platformv1.ReasonClaimCreateFailed, "exceeded quota", "Nothing was written")
	})
	t.Run("a transient error is retried", func(t *testing.T) {
		f := newFixture(t)
		f.Restores, f.Backups, f.Claims = []*platformv1.Restore{withTemplate()}, []*platformv1.Backup{completedBackup()}, defaultClaims()[1:]
		f.React = func(c *kubefake.Clientset) {
			c.PrependReactor("create", "persistentvolumeclaims", func(clienttesting.Action) (bool, runtime.Object, error) {
				return true, nil, apierrors.NewServiceUnavailable("etcd is slow")
			})
		}
		if _, err := f.Run(); err == nil {
			t.Fatal("a failed create was not returned for a retry")
		}
		f.ExpectActions("create persistentvolumeclaims data-restored")
	})
}

func TestRestoreJobPastItsDeadlineWarnsOfAPartialTarget(t *testing.T) {
	f := newFixture(t)
	r := runningRestore()
	job := agentjobtest.Finish(ownJob(r), false, batchv1.JobReasonDeadlineExceeded, "Job was active longer than specified deadline", jobEnd)
	f.Restores, f.Backups, f.Claims, f.Jobs = []*platformv1.Restore{r}, []*platformv1.Backup{completedBackup()}, defaultClaims(), []*batchv1.Job{job}
	f.Clock.SetTime(jobEnd.Add(ResultGracePeriod))
	f.MustRun()
	f.ExpectActions("update restores/status recover")
	agentjobtest.ExpectCondition(t, f.status().Status.Conditions, metav1.ConditionFalse, platformv1.ReasonDeadlineExceeded, "may hold a partial restore")
}
