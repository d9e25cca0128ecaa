package backup

import (
	"strings"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	platformv1 "platform.example.com/backup-operator/pkg/apis/platform/v1"
	"platform.example.com/backup-operator/pkg/controller/agentjob"
	"platform.example.com/backup-operator/pkg/controller/agentjob/agentjobtest"
)

// pendingBackup is a Backup whose Job, created at Epoch, has no started pod yet.
func pendingBackup() *platformv1.Backup {
	b := withFinalizer(newBackup())
	b.Status = platformv1.BackupStatus{ObservedGeneration: 1, Phase: platformv1.BackupPending, JobName: "backup-nightly"}
	agentjob.SetSucceeded(&b.Status.Conditions, metav1.ConditionUnknown, platformv1.ReasonJobPending,
		"Job backup-nightly was created; waiting for its pod to start.", 1, agentjobtest.Epoch)
	return b
}

func TestAPodThatCannotStartSaysWhyAtOnce(t *testing.T) {
	for _, tc := range []struct {
		name string
		pod  func(*batchv1.Job) *corev1.Pod
		says []string
	}{
		{"missing Secret", func(j *batchv1.Job) *corev1.Pod {
			return agentjobtest.Waiting(j, "backup-nightly-x1", "CreateContainerConfigError", `secret "s3-creds" not found`)
		}, []string{`CreateContainerConfigError: secret "s3-creds" not found; create the Secret or ConfigMap`}},
		{"image", func(j *batchv1.Job) *corev1.Pod {
			return agentjobtest.Waiting(j, "backup-nightly-x1", "ImagePullBackOff", `Back-off pulling image "nope:1"`)
		}, []string{`ImagePullBackOff: Back-off pulling image "nope:1"; check the agent image`}},
		{"unschedulable", func(j *batchv1.Job) *corev1.Pod {
			p := agentjobtest.Waiting(j, "backup-nightly-x1", "", "")
			p.Status.ContainerStatuses = nil
			p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodScheduled, Status: corev1.ConditionFalse, Reason: corev1.PodReasonUnschedulable,
				Message: "0/1 nodes are available: pod has unbound immediate PersistentVolumeClaims."}}
			return p
		}, []string{"the scheduler cannot place it: 0/1 nodes are available: pod has unbound immediate PersistentVolumeClaims; check the claims"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			b := pendingBackup()
			job := ownJob(b)
			f.Backups, f.Claims, f.Jobs, f.AgentPods = []*platformv1.Backup{b}, defaultClaims(), []*batchv1.Job{job}, []*corev1.Pod{tc.pod(job)}
			// Ten minutes after the Job was made: five before the default deadline.
			if d := f.MustRun(); d != 5*time.Minute {
				t.Fatalf("requeue after %s, want at the pending deadline", d)
			}
			f.ExpectActions("update backups/status nightly")
			got := f.status()
			if got.Status.Phase != platformv1.BackupPending {
				t.Fatalf("phase %s, want Pending until the deadline", got.Status.Phase)
			}
			says := append([]string{"Pod backup-nightly-x1 of Job backup-nightly cannot start", "by 2026-03-01T02:15:00Z"}, tc.says...)
			agentjobtest.ExpectCondition(t, got.Status.Conditions, metav1.ConditionUnknown, platformv1.ReasonJobPending, says...)
			agentjobtest.ExpectEvents(t, f.Events(), "Warning PodNotStarting Pod backup-nightly-x1 of Job backup-nightly cannot start")

			// The next sync, with the same news, tells nobody again.
			f2 := newFixture(t)
			f2.Backups, f2.Claims, f2.Jobs, f2.AgentPods = []*platformv1.Backup{got}, defaultClaims(), []*batchv1.Job{job}, []*corev1.Pod{tc.pod(job)}
			f2.MustRun()
			f2.ExpectActions()
			agentjobtest.ExpectEvents(t, f2.Events())
		})
	}
}

func TestAPodThatDoesNotStartInTimeFailsTheBackupAndGoes(t *testing.T) {
	f := newFixture(t)
	b := pendingBackup()
	b.Spec.PendingDeadlineSeconds = ptr.To[int64](300)
	job := ownJob(b)
	f.Backups, f.Claims, f.Jobs = []*platformv1.Backup{b}, defaultClaims(), []*batchv1.Job{job}
	f.AgentPods = []*corev1.Pod{agentjobtest.Waiting(job, "backup-nightly-x1", "CreateContainerConfigError", `secret "s3-creds" not found`)}
	f.MustRun()
	f.ExpectActions("delete jobs backup-nightly", "update backups/status nightly")
	got := f.status()
	if got.Status.Phase != platformv1.BackupFailed {
		t.Fatalf("phase %s, want Failed", got.Status.Phase)
	}
	agentjobtest.ExpectCondition(t, got.Status.Conditions, metav1.ConditionFalse, platformv1.ReasonPodNotStarted,
		"did not start within pendingDeadlineSeconds (5m0s)", `secret "s3-creds" not found`)
	agentjobtest.ExpectEvents(t, f.Events(), "Warning BackupFailed Backup failed (PodNotStarted)")
}

func TestAPodWaitingForAnUnboundClaimNamesIt(t *testing.T) {
	f := newFixture(t)
	b := pendingBackup()
	job := ownJob(b)
	pod := agentjobtest.Waiting(job, "backup-nightly-x1", "", "")
	pod.Status.ContainerStatuses = nil
	pod.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodScheduled, Status: corev1.ConditionFalse, Reason: corev1.PodReasonUnschedulable,
		Message: "0/1 nodes are available: pod has unbound immediate PersistentVolumeClaims."}}
	for _, claim := range []string{"data", platformv1.DefaultStorageClaimName} {
		pod.Spec.Volumes = append(pod.Spec.Volumes, corev1.Volume{Name: claim, VolumeSource: corev1.VolumeSource{
			PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: claim}}})
	}
	claims := defaultClaims()
	claims[1].Status.Phase = corev1.ClaimPending
	f.Backups, f.Claims, f.Jobs, f.AgentPods = []*platformv1.Backup{b}, claims, []*batchv1.Job{job}, []*corev1.Pod{pod}
	f.MustRun()
	got := f.status()
	agentjobtest.ExpectCondition(t, got.Status.Conditions, metav1.ConditionUnknown, platformv1.ReasonJobPending,
		"pod has unbound immediate PersistentVolumeClaims",
		"; PersistentVolumeClaim backup-storage is Pending, not bound to a volume (kubectl describe pvc backup-storage says why)")
	if c := agentjobtest.Condition(t, got.Status.Conditions); strings.Contains(c.Message, "PersistentVolumeClaim data") {
		t.Fatalf("condition %q names the bound claim too", c.Message)
	}
}
