package agentjob

import (
	"regexp"
	"strings"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"platform.example.com/backup-operator/pkg/agent"
	platformv1 "platform.example.com/backup-operator/pkg/apis/platform/v1"
)

var t0 = time.Date(2026, 3, 1, 2, 0, 0, 0, time.UTC)

func testJob() *batchv1.Job {
	return &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Namespace: "db", Name: "backup-nightly", UID: "job-uid"}}
}

func podOf(uid types.UID, name string, status corev1.ContainerStatus, phase corev1.PodPhase) *corev1.Pod {
	yes := true
	status.Name = ContainerName
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "db", Name: name, OwnerReferences: []metav1.OwnerReference{
			{APIVersion: "batch/v1", Kind: "Job", Name: "backup-nightly", UID: uid, Controller: &yes}}},
		Spec:   corev1.PodSpec{NodeName: "node-" + name},
		Status: corev1.PodStatus{Phase: phase, ContainerStatuses: []corev1.ContainerStatus{status}},
	}
}

func terminated(code int32, msg string, start, end time.Time) corev1.ContainerStatus {
	return corev1.ContainerStatus{State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
		ExitCode: code, Message: msg, StartedAt: metav1.NewTime(start), FinishedAt: metav1.NewTime(end)}}}
}

func TestObserve(t *testing.T) {
	waiting := corev1.ContainerStatus{State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ContainerCreating"}}}
	running := corev1.ContainerStatus{State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: metav1.NewTime(t0.Add(time.Minute))}}}
	complete := testJob()
	complete.Status.CompletionTime = &metav1.Time{Time: t0.Add(time.Hour)}
	complete.Status.Conditions = []batchv1.JobCondition{
		{Type: batchv1.JobSuccessCriteriaMet, Status: corev1.ConditionTrue},
		{Type: batchv1.JobComplete, Status: corev1.ConditionTrue},
	}
	failed := testJob()
	failed.Status.Conditions = []batchv1.JobCondition{{Type: batchv1.JobFailed, Status: corev1.ConditionTrue, Reason: "BackoffLimitExceeded", Message: "limit", LastTransitionTime: metav1.NewTime(t0.Add(2 * time.Hour))}}

	tests := []struct {
		name       string
		job        *batchv1.Job
		pods       []*corev1.Pod
		state      State
		node       string
		result     string
		resultPod  string
		finishedAt time.Time
	}{
		{"no pod yet", testJob(), nil, StatePending, "", "", "", time.Time{}},
		{"a pod waiting for its volume has not started", testJob(), []*corev1.Pod{podOf("job-uid", "a", waiting, corev1.PodPending)}, StatePending, "", "", "", time.Time{}},
		{"a running pod", testJob(), []*corev1.Pod{podOf("job-uid", "a", running, corev1.PodRunning)}, StateRunning, "node-a", "", "", time.Time{}},
		{"a running pod of another Job of the same name is ignored", testJob(), []*corev1.Pod{podOf("old-uid", "a", running, corev1.PodRunning)}, StatePending, "", "", "", time.Time{}},
		{"complete: the success is the result, even before a later failure", complete, []*corev1.Pod{
			podOf("job-uid", "a", terminated(0, `{"ok":1}`, t0, t0.Add(time.Minute)), corev1.PodSucceeded),
			podOf("job-uid", "b", terminated(1, `{"failed":1}`, t0, t0.Add(2*time.Minute)), corev1.PodFailed),
		}, StateSucceeded, "node-a", `{"ok":1}`, "a", t0.Add(time.Hour)},
		{"failed: the last failure is the result", failed, []*corev1.Pod{
			podOf("job-uid", "b", terminated(1, `{"second":1}`, t0.Add(2*time.Minute), t0.Add(3*time.Minute)), corev1.PodFailed),
			podOf("job-uid", "a", terminated(1, `{"first":1}`, t0, t0.Add(time.Minute)), corev1.PodFailed),
			podOf("other-uid", "c", terminated(1, `{"stale":1}`, t0, t0.Add(time.Hour)), corev1.PodFailed),
		}, StateFailed, "node-b", `{"second":1}`, "b", t0.Add(2 * time.Hour)},
		{"a restarted container's last state counts", failed, []*corev1.Pod{
			podOf("job-uid", "a", corev1.ContainerStatus{LastTerminationState: terminated(1, `{"last":1}`, t0, t0.Add(time.Minute)).State}, corev1.PodFailed),
		}, StateFailed, "node-a", `{"last":1}`, "a", t0.Add(2 * time.Hour)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			obs := Observe(tc.job, tc.pods)
			if obs.State != tc.state || obs.NodeName != tc.node || obs.Result != tc.result || obs.ResultPod != tc.resultPod {
				t.Fatalf("observed %s on %q with result %q from %q, want %s on %q with %q from %q",
					obs.State, obs.NodeName, obs.Result, obs.ResultPod, tc.state, tc.node, tc.result, tc.resultPod)
			}
			if !tc.finishedAt.IsZero() && (obs.FinishTime == nil || !obs.FinishTime.Time.Equal(tc.finishedAt)) {
				t.Fatalf("finished at %v, want %s", obs.FinishTime, tc.finishedAt)
			}
		})
	}
	if obs := Observe(failed, nil); obs.JobReason != "BackoffLimitExceeded" || obs.JobMessage != "limit" {
		t.Fatalf("Job failure %q %q, want the Failed condition's reason and message", obs.JobReason, obs.JobMessage)
	}
}

func TestDecode(t *testing.T) {
	if r, err := DecodeBackup(`{"operation":"backup","sha256":"ab","size":5,"files":2}`); err != nil || r.SHA256 != "ab" || r.Size != 5 || r.Files != 2 || !r.Succeeded() {
		t.Fatalf("DecodeBackup = %+v, %v", r, err)
	}
	if r, err := DecodeRestore(`{"operation":"restore","error":"not empty","reason":"TargetNotEmpty"}`); err != nil || r.Succeeded() || r.Reason != agent.TargetNotEmpty {
		t.Fatalf("DecodeRestore = %+v, %v", r, err)
	}
	for _, bad := range []struct{ msg, says string }{
		{`{"operation":"restore"}`, `operation "restore", want "backup"`},
		{`{"operation":"backup","error":"boom"}`, "without a reason"},
		{`{"operation":"backup","sha256":"ab`, "not a JSON result"},
		{`killed`, "not a JSON result"},
	} {
		if _, err := DecodeBackup(bad.msg); err == nil || !strings.Contains(err.Error(), bad.says) {
			t.Errorf("DecodeBackup(%q) error %v, want one saying %q", bad.msg, err, bad.says)
		}
	}
}

func TestEveryAgentReasonIsAConditionReason(t *testing.T) {
	for _, r := range []agent.Reason{agent.InvalidArgument, agent.SourceNotFound, agent.ReadFailed, agent.WriteFailed,
		agent.OutputExists, agent.ArchiveNotFound, agent.ChecksumMismatch, agent.CorruptArchive, agent.UnsafeArchive,
		agent.TargetNotFound, agent.TargetNotEmpty, agent.Canceled} {
		if got := ConditionReason(r); got != string(r) {
			t.Errorf("agent reason %s maps to condition reason %s; a known reason keeps its name", r, got)
		}
	}
	if got := ConditionReason(agent.Internal); got != platformv1.ReasonAgentFailed {
		t.Errorf("an internal error maps to %s, want %s", got, platformv1.ReasonAgentFailed)
	}
	if got := ConditionReason("SomethingNew"); got != platformv1.ReasonAgentFailed {
		t.Errorf("an unknown reason maps to %s, want %s", got, platformv1.ReasonAgentFailed)
	}
	deadline := Observation{JobReason: batchv1.JobReasonDeadlineExceeded}
	st := &agent.Status{Error: "canceled", Reason: agent.Canceled}
	if got := FailureReason(deadline, st); got != platformv1.ReasonDeadlineExceeded {
		t.Errorf("a Job stopped at its deadline fails with %s, want DeadlineExceeded over the agent's Canceled", got)
	}
	if got := FailureReason(Observation{JobReason: "BackoffLimitExceeded"}, nil); got != platformv1.ReasonJobFailed {
		t.Errorf("a Job failure without a result is %s, want JobFailed", got)
	}
}

func TestClaimUser(t *testing.T) {
	pod := func(phase corev1.PodPhase, node string, volumeRO, mountRO bool) *corev1.Pod {
		return &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "app"},
			Spec: corev1.PodSpec{NodeName: node,
				Volumes: []corev1.Volume{{Name: "v", VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "data", ReadOnly: volumeRO}}}},
				Containers: []corev1.Container{
					{Name: "sidecar"},
					{Name: "app", VolumeMounts: []corev1.VolumeMount{{Name: "v", MountPath: "/d", ReadOnly: mountRO}}},
				},
			},
			Status: corev1.PodStatus{Phase: phase},
		}
	}
	tests := []struct {
		name      string
		pod       *corev1.Pod
		uses, rw  bool
		claimName string
	}{
		{"a running writer", pod(corev1.PodRunning, "n", false, false), true, true, "data"},
		{"a read-only mount", pod(corev1.PodRunning, "n", false, true), true, false, "data"},
		{"a read-only volume", pod(corev1.PodRunning, "n", true, false), true, false, "data"},
		{"a scheduled pod still starting holds the volume", pod(corev1.PodPending, "n", false, false), true, true, "data"},
		{"an unscheduled pod does not", pod(corev1.PodPending, "", false, false), false, false, "data"},
		{"a finished pod does not", pod(corev1.PodSucceeded, "n", false, false), false, false, "data"},
		{"another claim", pod(corev1.PodRunning, "n", false, false), false, false, "other"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			u, ok := claimUser(tc.pod, tc.claimName)
			if ok != tc.uses || u.ReadWrite != tc.rw {
				t.Fatalf("claimUser = %+v, %v; want uses=%v readWrite=%v", u, ok, tc.uses, tc.rw)
			}
		})
	}
}

func TestAccessModes(t *testing.T) {
	claim := func(spec, status []corev1.PersistentVolumeAccessMode) *corev1.PersistentVolumeClaim {
		return &corev1.PersistentVolumeClaim{Spec: corev1.PersistentVolumeClaimSpec{AccessModes: spec}, Status: corev1.PersistentVolumeClaimStatus{AccessModes: status}}
	}
	rwo, rwx, rwop := corev1.ReadWriteOnce, corev1.ReadWriteMany, corev1.ReadWriteOncePod
	if !SingleNode(claim([]corev1.PersistentVolumeAccessMode{rwo}, nil)) || SingleNode(claim([]corev1.PersistentVolumeAccessMode{rwo}, []corev1.PersistentVolumeAccessMode{rwo, rwx})) {
		t.Error("SingleNode must follow the bound volume's modes when the claim is bound")
	}
	if !SinglePod(claim([]corev1.PersistentVolumeAccessMode{rwop}, nil)) || SinglePod(claim([]corev1.PersistentVolumeAccessMode{rwo}, nil)) {
		t.Error("SinglePod must be true for ReadWriteOncePod only")
	}
}

func TestHumanBytes(t *testing.T) {
	for n, want := range map[int64]string{0: "0 B", 1023: "1023 B", 1024: "1.0 KiB", 1288490189: "1.2 GiB", 5 << 40: "5.0 TiB"} {
		if got := HumanBytes(n); got != want {
			t.Errorf("HumanBytes(%d) = %q, want %q", n, got, want)
		}
	}
}

func TestNewPinsToANodeOnlyWhenAsked(t *testing.T) {
	job := New(Spec{Namespace: "db", Name: "j", NodeName: "node-a", Args: []string{"verify"}})
	req := job.Spec.Template.Spec.Affinity.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution
	if f := req.NodeSelectorTerms[0].MatchFields[0]; f.Key != "metadata.name" || f.Values[0] != "node-a" {
		t.Fatalf("pinned by %+v, want metadata.name In [node-a]", f)
	}
	if job.Spec.Template.Spec.Containers[0].Args[0] != "agent" {
		t.Fatalf("args %q, want the agent subcommand first", job.Spec.Template.Spec.Containers[0].Args)
	}
	if New(Spec{Namespace: "db", Name: "j"}).Spec.Template.Spec.Affinity != nil {
		t.Fatal("an unpinned Job has an affinity")
	}
}

func TestConditionReasonsAreValid(t *testing.T) {
	// The API server rejects a condition whose reason does not match metav1.Condition's pattern,
	// and the status write would then fail forever.
	valid := regexp.MustCompile(`^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$`)
	reasons := []string{
		platformv1.ReasonJobPending, platformv1.ReasonRunning, platformv1.ReasonCompleted,
		platformv1.ReasonClaimNotFound, platformv1.ReasonClaimNotBound, platformv1.ReasonStorageNotFound,
		platformv1.ReasonClaimInUse, platformv1.ReasonClaimCreateFailed, platformv1.ReasonBackupNotFound,
		platformv1.ReasonBackupNotCompleted, platformv1.ReasonJobConflict, platformv1.ReasonJobLost,
		platformv1.ReasonDeadlineExceeded, platformv1.ReasonJobFailed, platformv1.ReasonResultMissing,
		platformv1.ReasonAgentFailed, platformv1.ReasonNoRunningPod, platformv1.ReasonPodNotUnique,
	}
	for r := range agentReasons {
		reasons = append(reasons, ConditionReason(r))
	}
	for _, r := range reasons {
		if !valid.MatchString(r) {
			t.Errorf("condition reason %q does not match %s", r, valid)
		}
	}
}
