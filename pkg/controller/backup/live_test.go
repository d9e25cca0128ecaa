package backup

import (
	"encoding/json"
	"slices"
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
	"platform.example.com/backup-operator/pkg/controller/agentjob"
	"platform.example.com/backup-operator/pkg/controller/agentjob/agentjobtest"
)

// basebackup is the source command of a PostgreSQL policy.
func basebackup() *platformv1.CommandSource {
	return &platformv1.CommandSource{Container: "app", Command: []string{"pg_basebackup", "-Ft", "-D", "-", "-X", "fetch"}, Format: platformv1.StreamFormatTar}
}

// liveBackup is a Backup of claim data that streams pg_basebackup from the pod that mounts it,
// with a hook after it, as ServiceAccount backup-exec, as uid 101.
func liveBackup() *platformv1.Backup {
	b := withFinalizer(newBackup())
	b.Spec.Source = &platformv1.BackupSource{CopyMethod: platformv1.CopyMethodDirect, Command: basebackup()}
	b.Spec.Hooks = &platformv1.BackupHooks{Post: []platformv1.Hook{{Container: "app", Command: []string{"psql", "-c", "select 1"}, OnError: platformv1.HookContinue}}}
	b.Spec.ExecServiceAccountName = "backup-exec"
	b.Spec.AgentSecurityContext = &platformv1.AgentSecurityContext{RunAsUser: 101, RunAsGroup: ptr.To[int64](104), FSGroup: ptr.To[int64](104)}
	return b
}

// A command source runs in the application's pod, from an agent pod that runs as the exec
// ServiceAccount and the given user, mounts no claim of the application's and is pinned nowhere.
func TestCommandBackupJobExecsIntoTheApplicationsPod(t *testing.T) {
	f := newFixture(t)
	f.Backups = []*platformv1.Backup{liveBackup()}
	f.Claims = defaultClaims()
	f.APIOnly = []runtime.Object{
		agentjobtest.AppPod("db", "postgres-0", "node-a", "data", false),
		func() *corev1.Pod {
			p := agentjobtest.AppPod("db", "postgres-old", "node-a", "data", false)
			p.Status.Phase = corev1.PodSucceeded
			return p
		}(),
	}
	f.MustRun()
	f.ExpectActions("create jobs backup-nightly", "update backups/status nightly")

	job := f.CreatedJob()
	pod := job.Spec.Template.Spec
	if pod.ServiceAccountName != "backup-exec" || !ptr.Deref(pod.AutomountServiceAccountToken, false) {
		t.Errorf("serviceAccountName %q, automount %v: want backup-exec with its token", pod.ServiceAccountName, pod.AutomountServiceAccountToken)
	}
	if pod.Affinity != nil {
		t.Errorf("affinity %s: a command source reads no volume, so the pod may run anywhere", agentjobtest.Describe(pod.Affinity))
	}
	if env := pod.Containers[0].Env; !equality.Semantic.DeepEqual(env, agentjobtest.APIServer) {
		t.Errorf("env %s, want the controller's address of the API server %s", agentjobtest.Describe(env), agentjobtest.Describe(agentjobtest.APIServer))
	}
	args := pod.Containers[0].Args
	cmd, _ := json.Marshal(basebackup())
	if i := slices.Index(args, "--exec-pod"); i < 0 || args[i+1] != "postgres-0" {
		t.Fatalf("args %q: want --exec-pod postgres-0", args)
	}
	if i := slices.Index(args, "--command"); i < 0 || args[i+1] != string(cmd) {
		t.Fatalf("args %q: want --command %s", args, cmd)
	}
	if i := slices.Index(args, "--hooks"); i < 0 || args[i+1] != `{"post":[{"container":"app","command":["psql","-c","select 1"],"onError":"Continue"}]}` {
		t.Fatalf("args %q: want the hooks as JSON", args)
	}
	if slices.Contains(args, "--source") {
		t.Errorf("args %q: a command source has no --source", args)
	}
	for _, v := range pod.Volumes {
		if v.PersistentVolumeClaim != nil && v.PersistentVolumeClaim.ClaimName == "data" {
			t.Errorf("the agent mounts the application's claim: %s", agentjobtest.Describe(pod.Volumes))
		}
	}
	expectRestricted(t, job, 101)
}

// expectRestricted fails unless job's pod runs as uid with nothing Pod Security "restricted"
// refuses: non-root, no capabilities, no privilege escalation, RuntimeDefault seccomp.
func expectRestricted(t *testing.T, job *batchv1.Job, uid int64) {
	t.Helper()
	pod := job.Spec.Template.Spec
	psc, sc := pod.SecurityContext, pod.Containers[0].SecurityContext
	if ptr.Deref(psc.RunAsUser, 0) != uid || !ptr.Deref(psc.RunAsNonRoot, false) || psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("pod security context %s, want uid %d, runAsNonRoot, RuntimeDefault seccomp", agentjobtest.Describe(psc), uid)
	}
	if !ptr.Deref(sc.RunAsNonRoot, false) || ptr.Deref(sc.AllowPrivilegeEscalation, true) || ptr.Deref(sc.Privileged, true) ||
		!slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(sc.Capabilities.Add) != 0 {
		t.Errorf("container security context %s, want non-root, no escalation, every capability dropped and none added", agentjobtest.Describe(sc))
	}
}

// Hooks around a Direct read mount the claim on the node where it is attached, and run in the
// pod there.
func TestHooksAroundADirectReadRunOnTheClaimsNode(t *testing.T) {
	f := newFixture(t)
	b := withFinalizer(newBackup())
	b.Spec.Hooks = &platformv1.BackupHooks{Pre: []platformv1.Hook{{Container: "app", Command: []string{"sync"}}}}
	b.Spec.ExecServiceAccountName = "backup-exec"
	f.Backups, f.Claims = []*platformv1.Backup{b}, defaultClaims()
	f.APIOnly = []runtime.Object{agentjobtest.AppPod("db", "postgres-0", "node-a", "data", false)}
	f.MustRun()
	job := f.CreatedJob()
	args := job.Spec.Template.Spec.Containers[0].Args
	if i := slices.Index(args, "--exec-pod"); i < 0 || args[i+1] != "postgres-0" || !slices.Contains(args, "--source") || slices.Contains(args, "--command") {
		t.Fatalf("args %q: want --source, --exec-pod postgres-0 and no --command", args)
	}
	terms := job.Spec.Template.Spec.Affinity.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms
	if !slices.Equal(terms[0].MatchFields[0].Values, []string{"node-a"}) {
		t.Fatalf("node affinity %s, want node-a", agentjobtest.Describe(terms))
	}
	expectLeastPrivilegeWithToken(t, job)
}

// expectLeastPrivilegeWithToken is the default security context, with the exec token mounted.
func expectLeastPrivilegeWithToken(t *testing.T, job *batchv1.Job) {
	t.Helper()
	spec := job.Spec.Template.Spec
	if !ptr.Deref(spec.AutomountServiceAccountToken, false) || spec.ServiceAccountName != "backup-exec" {
		t.Fatalf("service account %q, automount %v", spec.ServiceAccountName, spec.AutomountServiceAccountToken)
	}
	sc := spec.Containers[0].SecurityContext
	if !slices.Equal(sc.Capabilities.Add, []corev1.Capability{"DAC_READ_SEARCH"}) {
		t.Errorf("capabilities %+v, want DAC_READ_SEARCH to read the claim", sc.Capabilities)
	}
}

// A command or hooks never run in a guessed pod.
func TestLiveBackupRefusals(t *testing.T) {
	stopped := agentjobtest.AppPod("db", "postgres-0", "node-a", "data", false)
	stopped.Status.Phase = corev1.PodPending
	tests := []struct {
		name   string
		setup  func(f *fixture, b *platformv1.Backup)
		reason string
		says   string
	}{
		{"no pod mounts the claim", func(f *fixture, b *platformv1.Backup) {}, platformv1.ReasonNoRunningPod, "No running pod mounts PersistentVolumeClaim data"},
		{"the pod is not running", func(f *fixture, b *platformv1.Backup) {
			f.APIOnly = []runtime.Object{stopped}
		}, platformv1.ReasonNoRunningPod, "Start the application"},
		{"two running pods mount it", func(f *fixture, b *platformv1.Backup) {
			f.Claims[0] = agentjobtest.Claim("db", "data", corev1.ReadWriteMany)
			f.APIOnly = []runtime.Object{agentjobtest.AppPod("db", "web-1", "node-a", "data", false), agentjobtest.AppPod("db", "web-0", "node-b", "data", false)}
		}, platformv1.ReasonPodNotUnique, "Pods web-0, web-1 all mount PersistentVolumeClaim data"},
		{"no ServiceAccount to exec as", func(f *fixture, b *platformv1.Backup) {
			b.Spec.ExecServiceAccountName = ""
			f.APIOnly = []runtime.Object{agentjobtest.AppPod("db", "postgres-0", "node-a", "data", false)}
		}, platformv1.ReasonInvalidArgument, "execServiceAccountName"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			b := liveBackup()
			f.Backups, f.Claims = []*platformv1.Backup{b}, defaultClaims()
			tc.setup(f, b)
			f.MustRun()
			f.ExpectActions("update backups/status nightly")
			got := f.status()
			if got.Status.Phase != platformv1.BackupFailed || got.Status.JobName != "" {
				t.Fatalf("status %s, want Failed without a Job", agentjobtest.Describe(got.Status))
			}
			agentjobtest.ExpectCondition(t, got.Status.Conditions, metav1.ConditionFalse, tc.reason, tc.says)
		})
	}
}

// The Backup records the command it archived and the hooks that ran, and a failed hook is a
// Warning Event even when the Backup goes on.
func TestLiveBackupRecordsItsSourceAndHooks(t *testing.T) {
	hooks := []platformv1.HookStatus{
		{Phase: platformv1.HookPre, Index: 0, Container: "app", Result: platformv1.HookFailed, ExitCode: ptr.To[int32](2), Message: "pre hook 0: exited with code 2: no such table"},
		{Phase: platformv1.HookPost, Index: 0, Container: "app", Result: platformv1.HookSucceeded, ExitCode: ptr.To[int32](0), Duration: &metav1.Duration{Duration: time.Second}},
	}
	source := &platformv1.SourceStatus{Type: platformv1.SourceCommand, Pod: "postgres-0", Container: "app", Command: basebackup().Command, Format: platformv1.StreamFormatTar}
	for _, tc := range []struct {
		name   string
		ok     bool
		result agent.BackupResult
		events []string
	}{
		{"completed", true, successResult(), []string{"Warning HookFailed pre hook 0 in container app failed: pre hook 0: exited with code 2", "Normal BackupCompleted"}},
		{"failed", false, failureResult(agent.HookFailed, "post hook 0 failed"), []string{"Warning HookFailed pre hook 0", "Warning BackupFailed Backup failed (HookFailed)"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			b := liveBackup()
			b.Status = runningBackup().Status
			job := agentjobtest.Finish(ownJob(b), tc.ok, "", "", jobEnd)
			if !tc.ok {
				job = agentjobtest.Finish(ownJob(b), false, batchv1.JobReasonPodFailurePolicy, "refused", jobEnd)
			}
			r := tc.result
			r.Source, r.Hooks = source, hooks
			code := int32(0)
			if !tc.ok {
				code = agent.ExitRefused
			}
			f.Backups, f.Claims, f.Jobs = []*platformv1.Backup{b}, defaultClaims(), []*batchv1.Job{job}
			f.AgentPods = []*corev1.Pod{agentjobtest.Terminated(agentjobtest.Pod(job, "backup-nightly-x1", "node-a", podStart), code, r, jobEnd)}
			f.MustRun()
			got := f.status()
			if got.Status.Source == nil || got.Status.Source.Type != platformv1.SourceCommand || got.Status.Source.Pod != "postgres-0" ||
				len(got.Status.Hooks) != 2 || got.Status.Hooks[0].Result != platformv1.HookFailed || *got.Status.Hooks[0].ExitCode != 2 {
				t.Fatalf("status %s, want the command source and both hooks", agentjobtest.Describe(got.Status))
			}
			agentjobtest.ExpectEvents(t, f.Events(), tc.events...)
		})
	}
}

// A namespace that enforces Pod Security "restricted" would refuse the agent's default pod: the
// Backup fails at once, saying to set agentSecurityContext, and with it the Job is made.
func TestRestrictedNamespaceNeedsAgentSecurityContext(t *testing.T) {
	restricted := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "db", Labels: map[string]string{agentjob.LabelPodSecurityEnforce: "restricted"}}}
	f := newFixture(t)
	f.Backups, f.Claims, f.APIOnly = []*platformv1.Backup{withFinalizer(newBackup())}, defaultClaims(), []runtime.Object{restricted}
	f.MustRun()
	f.ExpectActions("update backups/status nightly")
	agentjobtest.ExpectCondition(t, f.status().Status.Conditions, metav1.ConditionFalse, platformv1.ReasonPodSecurityRefused, `enforces Pod Security "restricted"`, "agentSecurityContext")

	f = newFixture(t)
	b := withFinalizer(newBackup())
	b.Spec.AgentSecurityContext = &platformv1.AgentSecurityContext{RunAsUser: 1000}
	f.Backups, f.Claims, f.APIOnly = []*platformv1.Backup{b}, defaultClaims(), []runtime.Object{restricted}
	f.MustRun()
	f.ExpectActions("create jobs backup-nightly", "update backups/status nightly")
	expectRestricted(t, f.CreatedJob(), 1000)
}

// The cleanup of a dump tells the agent it is one, so that the leftovers of a dump that was never
// written go too, and runs as the backup ran.
func TestCleanupOfADumpRunsAsTheBackupDid(t *testing.T) {
	f := newFixture(t)
	b := deletedBackup()
	b.Spec.Source = &platformv1.BackupSource{Command: &platformv1.CommandSource{Container: "app", Command: []string{"pg_dump", "-Fc"}, Format: platformv1.StreamFormatFile}}
	b.Spec.ExecServiceAccountName = "backup-exec"
	b.Spec.AgentSecurityContext = &platformv1.AgentSecurityContext{RunAsUser: 101}
	b.Status.Phase, b.Status.Artifact = platformv1.BackupFailed, nil // the dump was never written
	f.Backups, f.Claims, f.Jobs = []*platformv1.Backup{b}, defaultClaims(), []*batchv1.Job{agentjobtest.Finish(ownJob(b), false, "", "", jobEnd)}
	f.MustRun()
	job := f.CreatedJob()
	if want := []string{"agent", "delete", "--archive", "/storage/nightly.dump.zst", "--format", "file", "--file-name", "dump"}; !slices.Equal(job.Spec.Template.Spec.Containers[0].Args, want) {
		t.Fatalf("args %q, want %q", job.Spec.Template.Spec.Containers[0].Args, want)
	}
	expectRestricted(t, job, 101)
}
