package restoredrill

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8stypes "k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"

	platformv1 "platform.example.com/backup-operator/pkg/apis/platform/v1"
	"platform.example.com/backup-operator/pkg/controller/agentjob"
	"platform.example.com/backup-operator/pkg/controller/agentjob/agentjobtest"
)

// The fixture syncs the drill "db/proof" of policy "nightly", which backs up the claims labelled
// app=db: claim "data". Its schedule is hourly; the clock is ten minutes past the run due at
// Epoch.
type fixture struct{ *agentjobtest.Fixture }

func newFixture(t *testing.T) *fixture {
	return &fixture{agentjobtest.NewFixture(t, func(f *agentjobtest.Fixture) (time.Duration, error) {
		return agentjobtest.Build(f, NewController).sync(context.Background(), "db", "proof")
	})}
}

var (
	epoch = agentjobtest.Epoch
	// runID is the id of the run scheduled for Epoch.
	runID = strconv.FormatInt(epoch.Unix()/60, 10)
	// scratch is the name of claim data's scratch claim and Restore in that run.
	scratch = ScratchName("proof", runID, "data")
	// probeName is the name of its probe Job.
	probeName = ProbeJobName("proof", runID, "data")
	// restoreJobName is the Job of the run's Restore, named by the restore controller.
	restoreJobName = "restore-" + scratch
)

func newDrill() *platformv1.RestoreDrill {
	return &platformv1.RestoreDrill{
		ObjectMeta: metav1.ObjectMeta{Namespace: "db", Name: "proof", UID: "drill-uid", Generation: 1,
			CreationTimestamp: metav1.NewTime(epoch.Add(-3 * time.Hour))},
		Spec: platformv1.RestoreDrillSpec{
			PolicyName: "nightly",
			Schedule:   "0 * * * *",
			Probe: &platformv1.DrillProbe{
				Image: "postgres:test", Command: []string{"/check.sh"}, MountPath: "/var/lib/postgresql/data",
				TimeoutSeconds: ptr.To[int64](120),
			},
		},
	}
}

func policy() *platformv1.BackupPolicy {
	return &platformv1.BackupPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: "db", Name: "nightly", UID: "policy-uid"},
		Spec: platformv1.BackupPolicySpec{
			Schedule: "@daily",
			Target:   platformv1.BackupTarget{PVCSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "db"}}},
		},
	}
}

func appClaim(name string) *corev1.PersistentVolumeClaim {
	c := agentjobtest.Claim("db", name, corev1.ReadWriteOnce)
	c.Labels = map[string]string{"app": "db"}
	return c
}

// backup is a Backup of claim data by policy nightly whose read started at started.
func backup(name string, phase platformv1.BackupPhase, started time.Time) *platformv1.Backup {
	b := &platformv1.Backup{
		ObjectMeta: metav1.ObjectMeta{Namespace: "db", Name: name, UID: k8stypes.UID("backup-" + name),
			Labels:            map[string]string{platformv1.LabelPolicy: "nightly", platformv1.LabelPVC: "data"},
			CreationTimestamp: metav1.NewTime(started)},
		Spec: platformv1.BackupSpec{PVCName: "data"},
		Status: platformv1.BackupStatus{
			Phase:          phase,
			StartTime:      &metav1.Time{Time: started},
			CompletionTime: &metav1.Time{Time: started.Add(time.Minute)},
		},
	}
	if phase == platformv1.BackupCompleted {
		b.Status.Artifact = &platformv1.Artifact{Path: "db/data/" + name + ".tar.zst", SHA256: strings.Repeat("ab", 32), SourceBytes: 3 << 30, Files: 1200}
	}
	return b
}

// seed is a drill at its first scheduled run with two Completed Backups of claim data (and a
// newer Failed one that must not be drilled).
func (f *fixture) seed(d *platformv1.RestoreDrill) {
	f.Drills = []*platformv1.RestoreDrill{d}
	f.Policies = []*platformv1.BackupPolicy{policy()}
	f.Claims = []*corev1.PersistentVolumeClaim{appClaim("data")}
	f.Backups = []*platformv1.Backup{
		backup("data-old", platformv1.BackupCompleted, epoch.Add(-26*time.Hour)),
		backup("data-new", platformv1.BackupCompleted, epoch.Add(-2*time.Hour)),
		backup("data-failed", platformv1.BackupFailed, epoch.Add(-time.Hour)),
	}
}

// inRun is d with the run scheduled for Epoch recorded at stage for claim data.
func inRun(d *platformv1.RestoreDrill, stage platformv1.DrillStage) *platformv1.RestoreDrill {
	d = d.DeepCopy()
	d.Status.LastScheduleTime = &metav1.Time{Time: epoch}
	dc := platformv1.DrillClaim{
		PVCName: "data", BackupName: "data-new", BackupAge: &metav1.Duration{Duration: 2*time.Hour + time.Minute},
		SHA256: strings.Repeat("ab", 32), RestoreName: scratch, ScratchClaimName: scratch,
		Stage: stage, Result: platformv1.DrillRunning,
	}
	if stage == platformv1.DrillProbing {
		dc.ProbeJobName = probeName
		dc.RestoreDuration = &metav1.Duration{Duration: 40 * time.Second}
		dc.RestoredBytes, dc.RestoredFiles = 3<<30, 1200
	}
	d.Status.LastRun = &platformv1.DrillRun{ID: runID, ScheduledTime: metav1.NewTime(epoch), StartTime: metav1.NewTime(epoch.Add(time.Minute)),
		Result: platformv1.DrillRunning, Claims: []platformv1.DrillClaim{dc}}
	return d
}

// scratchClaim is the scratch claim of the run, as the drill made it.
func scratchClaim(d *platformv1.RestoreDrill) *corev1.PersistentVolumeClaim {
	c := agentjobtest.Claim("db", scratch, corev1.ReadWriteOnce)
	c.Labels = runLabels(d, runID, "data")
	c.OwnerReferences = []metav1.OwnerReference{ownerRef(d)}
	return c
}

// drillRestore is the run's Restore in phase, as the drill made it.
func drillRestore(d *platformv1.RestoreDrill, phase platformv1.RestorePhase) *platformv1.Restore {
	r := &platformv1.Restore{
		ObjectMeta: metav1.ObjectMeta{Namespace: "db", Name: scratch, UID: "restore-uid", Labels: runLabels(d, runID, "data"),
			OwnerReferences: []metav1.OwnerReference{ownerRef(d)}, CreationTimestamp: metav1.NewTime(epoch.Add(time.Minute))},
		Spec:   platformv1.RestoreSpec{BackupName: "data-new", Target: platformv1.RestoreTarget{ClaimName: scratch}},
		Status: platformv1.RestoreStatus{Phase: phase},
	}
	if phase == platformv1.RestoreCompleted {
		r.Status.CompletionTime = &metav1.Time{Time: epoch.Add(time.Minute + 40*time.Second)}
		r.Status.RestoredBytes, r.Status.RestoredFiles, r.Status.VerifiedSHA256 = 3<<30, 1200, strings.Repeat("ab", 32)
	}
	return r
}

// probeJob is the run's probe Job, finished as asked, with its pod.
func (f *fixture) probeJob(d *platformv1.RestoreDrill, succeeded bool, reason string, exitCode int32, output string) {
	job := agentjobtest.OwnedJob("db", probeName, "RestoreDrill", d.Name, d.UID, runLabels(d, runID, "data"))
	job = agentjobtest.Finish(job, succeeded, reason, "", epoch.Add(2*time.Minute))
	pod := agentjobtest.Pod(job, probeName+"-x", "node-a", epoch.Add(time.Minute+45*time.Second))
	pod.Status.ContainerStatuses[0].Name = ProbeContainerName
	if exitCode >= 0 {
		pod = agentjobtest.Terminated(pod, exitCode, output, epoch.Add(2*time.Minute))
	}
	f.Jobs = append(f.Jobs, job)
	f.AgentPods = append(f.AgentPods, pod)
}

func (f *fixture) status() *platformv1.RestoreDrill {
	f.T.Helper()
	return agentjobtest.Object[*platformv1.RestoreDrill](f.T, f.Client.Actions(), "update", "restoredrills/status")
}

func expectCondition(t *testing.T, d *platformv1.RestoreDrill, typ string, status metav1.ConditionStatus, reason string, fragments ...string) {
	t.Helper()
	c := meta.FindStatusCondition(d.Status.Conditions, typ)
	if c == nil || c.Status != status || c.Reason != reason {
		t.Fatalf("condition %s = %+v, want %s/%s", typ, c, status, reason)
	}
	for _, s := range fragments {
		if !strings.Contains(c.Message, s) {
			t.Errorf("condition %s message %q does not say %q", typ, c.Message, s)
		}
	}
}

func TestADueRunRestoresTheNewestCompletedBackupIntoAScratchClaimItOwns(t *testing.T) {
	f := newFixture(t)
	f.seed(newDrill())

	requeue := f.MustRun()

	f.ExpectActions(
		"create persistentvolumeclaims "+scratch,
		"create restores "+scratch,
		"update restoredrills/status proof",
	)
	claim := agentjobtest.Object[*corev1.PersistentVolumeClaim](t, f.KubeClient.Actions(), "create", "persistentvolumeclaims")
	if !agentjob.IsControlledBy(claim, "drill-uid") || claim.Labels[platformv1.LabelDrill] != "proof" || claim.Labels[platformv1.LabelDrillRun] != runID {
		t.Errorf("scratch claim is not the drill's own: owners %v, labels %v", claim.OwnerReferences, claim.Labels)
	}
	// 3 GiB of source data, plus a quarter and 256 MiB.
	if got := claim.Spec.Resources.Requests[corev1.ResourceStorage]; got.Value() != (3<<30 + 3<<30/4 + 256<<20) {
		t.Errorf("scratch claim requests %s, want the Restore's sizing of 3 GiB of data", got.String())
	}
	r := agentjobtest.Object[*platformv1.Restore](t, f.Client.Actions(), "create", "restores")
	if r.Spec.BackupName != "data-new" || r.Spec.Target.ClaimName != scratch || r.Spec.Target.Create != nil || r.Spec.OverwritePolicy != platformv1.OverwriteRefuse {
		t.Errorf("Restore spec = %+v, want the newest Completed Backup into the scratch claim, refusing to overwrite", r.Spec)
	}
	if !agentjob.IsControlledBy(r, "drill-uid") {
		t.Errorf("the Restore is not controlled by the drill: %v", r.OwnerReferences)
	}
	d := f.status()
	run := d.Status.LastRun
	if run == nil || run.ID != runID || run.Result != platformv1.DrillRunning || len(run.Claims) != 1 {
		t.Fatalf("lastRun = %s, want the run %s running for one claim", agentjobtest.Describe(run), runID)
	}
	dc := run.Claims[0]
	if dc.BackupName != "data-new" || dc.Stage != platformv1.DrillRestoring || dc.BackupAge.Duration != 2*time.Hour+10*time.Minute {
		t.Errorf("claim drill = %s, want data-new, 2h10m old, restoring", agentjobtest.Describe(dc))
	}
	if d.Status.LastScheduleTime == nil || !d.Status.LastScheduleTime.Time.Equal(epoch) {
		t.Errorf("lastScheduleTime = %v, want %s", d.Status.LastScheduleTime, epoch)
	}
	expectCondition(t, d, platformv1.ConditionReady, metav1.ConditionTrue, ReasonScheduled, "nightly")
	if want := 50*time.Minute + nextSyncDelta; requeue != want {
		t.Errorf("requeue after %s, want %s (the next hour)", requeue, want)
	}
	agentjobtest.ExpectEvents(t, f.Events(), "Normal DrillStarted")
}

func TestARestartedControllerFindsTheRunsObjectsInsteadOfMakingMore(t *testing.T) {
	f := newFixture(t)
	d := newDrill()
	f.seed(d)
	// An earlier sync made both, and its status write was lost.
	f.Claims = append(f.Claims, scratchClaim(d))
	f.Restores = []*platformv1.Restore{drillRestore(d, platformv1.RestoreRunning)}

	f.MustRun()

	f.ExpectActions("update restoredrills/status proof")
	if dc := f.status().Status.LastRun.Claims[0]; dc.Stage != platformv1.DrillRestoring || dc.RestoreName != scratch {
		t.Errorf("claim drill = %s, want it restoring with the existing Restore", agentjobtest.Describe(dc))
	}
}

func TestAScratchNameTakenByAnotherClaimIsNeverUsed(t *testing.T) {
	f := newFixture(t)
	d := newDrill()
	f.seed(d)
	foreign := agentjobtest.Claim("db", scratch, corev1.ReadWriteOnce) // no owner: someone else's
	f.Claims = append(f.Claims, foreign)

	f.MustRun()

	f.ExpectActions(
		"update restoredrills/status proof",
	)
	got := f.status()
	dc := got.Status.LastRun.Claims[0]
	if dc.Result != platformv1.DrillFailed || dc.Reason != platformv1.ReasonScratchConflict || dc.Stage != platformv1.DrillDone {
		t.Fatalf("claim drill = %s, want ScratchConflict, done", agentjobtest.Describe(dc))
	}
	if got.Status.LastRun.Result != platformv1.DrillFailed || got.Status.ConsecutiveFailures != 1 {
		t.Errorf("run = %s, want failed, one failure in a row", agentjobtest.Describe(got.Status.LastRun))
	}
	expectCondition(t, got, platformv1.ConditionSucceeded, metav1.ConditionFalse, platformv1.ReasonScratchConflict, scratch)
	agentjobtest.ExpectEvents(t, f.Events(), "Normal DrillStarted", "Warning DrillFailed")
}

func TestClaimsWithoutAUsableBackupFailAtOnce(t *testing.T) {
	for _, tc := range []struct {
		name    string
		backups []*platformv1.Backup
		maxAge  time.Duration
		reason  string
		says    string
	}{
		{"no Completed Backup", []*platformv1.Backup{backup("data-failed", platformv1.BackupFailed, epoch.Add(-time.Hour))}, 0,
			platformv1.ReasonNoCompletedBackup, "no Completed Backup"},
		{"newest older than maxBackupAge", nil, 90 * time.Minute, platformv1.ReasonBackupTooOld, "more than maxBackupAge 1h30m0s"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			d := newDrill()
			if tc.maxAge > 0 {
				d.Spec.Objectives.MaxBackupAge = &metav1.Duration{Duration: tc.maxAge}
			}
			f.seed(d)
			if tc.backups != nil {
				f.Backups = tc.backups
			}

			f.MustRun()

			f.ExpectActions("update restoredrills/status proof")
			got := f.status()
			expectCondition(t, got, platformv1.ConditionSucceeded, metav1.ConditionFalse, tc.reason, tc.says)
			if got.Status.LastRun.Result != platformv1.DrillFailed || got.Status.LastRun.CompletionTime == nil {
				t.Errorf("run = %s, want it failed and complete", agentjobtest.Describe(got.Status.LastRun))
			}
			if got := f.Metrics.Sample("backup_operator_drill_runs_total", "result=failed"); got != 1 {
				t.Errorf("drill_runs_total = %v, want 1", got)
			}
		})
	}
}

func TestACompletedRestoreStartsAnUnprivilegedProbeOnTheCopy(t *testing.T) {
	f := newFixture(t)
	d := inRun(newDrill(), platformv1.DrillRestoring)
	f.seed(d)
	f.Claims = append(f.Claims, scratchClaim(d))
	f.Restores = []*platformv1.Restore{drillRestore(d, platformv1.RestoreCompleted)}

	f.MustRun()

	f.ExpectActions("create jobs "+probeName, "update restoredrills/status proof")
	job := f.CreatedJob()
	pod := job.Spec.Template.Spec
	c := pod.Containers[0]
	switch {
	case !agentjob.IsControlledBy(job, "drill-uid"):
		t.Errorf("probe Job owners = %v, want the drill", job.OwnerReferences)
	case job.Labels[platformv1.LabelManagedBy] != platformv1.ManagedByValue || pod.AutomountServiceAccountToken == nil || *pod.AutomountServiceAccountToken:
		t.Errorf("probe Job labels %v, token %v: want the operator's label and no token", job.Labels, pod.AutomountServiceAccountToken)
	case *job.Spec.ActiveDeadlineSeconds != 120 || *job.Spec.BackoffLimit != 0:
		t.Errorf("probe Job deadline %d, backoff %d; want the probe's timeout and no retry", *job.Spec.ActiveDeadlineSeconds, *job.Spec.BackoffLimit)
	case c.Image != "postgres:test" || c.Command[0] != "/check.sh" || c.TerminationMessagePolicy != corev1.TerminationMessageFallbackToLogsOnError:
		t.Errorf("probe container = %+v", c)
	case *c.SecurityContext.Privileged || *c.SecurityContext.AllowPrivilegeEscalation:
		t.Errorf("probe security context = %+v, want no privileges", c.SecurityContext)
	case pod.Volumes[0].PersistentVolumeClaim.ClaimName != scratch || pod.Volumes[0].PersistentVolumeClaim.ReadOnly ||
		c.VolumeMounts[0].MountPath != "/var/lib/postgresql/data" || c.VolumeMounts[0].ReadOnly:
		t.Errorf("probe mounts %+v of %+v, want the scratch claim read-write at the probe's path", c.VolumeMounts, pod.Volumes)
	}
	dc := f.status().Status.LastRun.Claims[0]
	if dc.Stage != platformv1.DrillProbing || dc.RestoreDuration.Duration != 40*time.Second || dc.RestoredBytes != 3<<30 {
		t.Errorf("claim drill = %s, want probing after a 40s restore of 3 GiB", agentjobtest.Describe(dc))
	}
}

func TestAPassedProbeSucceedsTheRunVerifiesTheBackupAndCleansUp(t *testing.T) {
	f := newFixture(t)
	d := inRun(newDrill(), platformv1.DrillProbing)
	f.seed(d)
	f.Claims = append(f.Claims, scratchClaim(d))
	f.Restores = []*platformv1.Restore{drillRestore(d, platformv1.RestoreCompleted)}
	f.probeJob(d, true, "", 0, "pgbench_accounts: 200000 rows")
	// The Restore's finished Job: its pod would keep the scratch claim Terminating.
	restoreJob := agentjobtest.OwnedJob("db", restoreJobName, "Restore", scratch, "restore-uid", runLabels(d, runID, "data"))
	f.Jobs = append(f.Jobs, agentjobtest.Finish(restoreJob, true, "", "", epoch.Add(time.Minute+40*time.Second)))

	f.MustRun()

	f.ExpectActions(
		"get jobs "+probeName, "delete jobs "+probeName,
		"get jobs "+restoreJobName, "delete jobs "+restoreJobName,
		"get persistentvolumeclaims "+scratch, "delete persistentvolumeclaims "+scratch,
		"update backups/status data-new",
		"patch restores "+scratch,
		"update restoredrills/status proof",
	)
	verified := agentjobtest.Object[*platformv1.Backup](t, f.Client.Actions(), "update", "backups/status")
	if v := verified.Status.LastVerified; v == nil || v.DrillName != "proof" || v.Result != platformv1.DrillSucceeded {
		t.Errorf("Backup data-new lastVerified = %+v, want proof's success", v)
	}
	got := f.status()
	run := got.Status.LastRun
	dc := run.Claims[0]
	if run.Result != platformv1.DrillSucceeded || dc.Stage != platformv1.DrillDone || dc.ProbeExitCode == nil || *dc.ProbeExitCode != 0 ||
		dc.ProbeLogTail != "pgbench_accounts: 200000 rows" {
		t.Fatalf("run = %s, want it succeeded, the claim done with exit code 0 and the probe's termination message", agentjobtest.Describe(run))
	}
	// Started a minute after Epoch; the probe ended at two minutes.
	if dc.TimeToRestore.Duration != time.Minute || dc.ProbeDuration.Duration != 2*time.Minute {
		t.Errorf("time to restore %s, probe %s; want 1m0s and 2m0s (from the Job's creation)", dc.TimeToRestore, dc.ProbeDuration)
	}
	if got.Status.LastSuccessfulTime == nil || got.Status.ConsecutiveFailures != 0 {
		t.Errorf("lastSuccessfulTime %v, consecutiveFailures %d", got.Status.LastSuccessfulTime, got.Status.ConsecutiveFailures)
	}
	expectCondition(t, got, platformv1.ConditionSucceeded, metav1.ConditionTrue, platformv1.ReasonDrillPassed, "Restored 3.0 GiB", "probe passed", "backup 2h1m0s old")
	agentjobtest.ExpectEvents(t, f.Events(), "Normal DrillSucceeded")
	succeeded := f.Metrics.Sample("backup_operator_drill_runs_total", "result=succeeded")
	failed := f.Metrics.Sample("backup_operator_drill_runs_total", "result=failed")
	ttr := f.Metrics.Sample("backup_operator_drill_time_to_restore_seconds")
	if succeeded != 1 || failed != 0 || ttr != 1 {
		t.Errorf("metrics: succeeded runs %v, failed runs %v, time to restore samples %v; want 1, 0, 1", succeeded, failed, ttr)
	}
}

func TestAFailedProbeFailsTheRunWithItsExitCodeAndOutput(t *testing.T) {
	f := newFixture(t)
	d := newDrill()
	d.Spec.Scratch.KeepOnFailure = true
	d = inRun(d, platformv1.DrillProbing)
	f.seed(d)
	f.Claims = append(f.Claims, scratchClaim(d))
	f.Restores = []*platformv1.Restore{drillRestore(d, platformv1.RestoreCompleted)}
	f.probeJob(d, false, "PodFailurePolicy", 3, "starting\nFATAL: could not open relation: pgbench_accounts\n")

	f.MustRun()

	// keepOnFailure: the Job goes, the scratch claim stays for diagnosis.
	f.ExpectActions(
		"get jobs "+probeName, "delete jobs "+probeName, "get jobs "+restoreJobName,
		"update backups/status data-new",
		"patch restores "+scratch,
		"update restoredrills/status proof",
	)
	got := f.status()
	dc := got.Status.LastRun.Claims[0]
	if dc.Reason != platformv1.ReasonProbeFailed || *dc.ProbeExitCode != 3 || !strings.HasSuffix(dc.ProbeLogTail, "pgbench_accounts") {
		t.Errorf("claim drill = %s, want ProbeFailed, exit 3, the output's tail", agentjobtest.Describe(dc))
	}
	expectCondition(t, got, platformv1.ConditionSucceeded, metav1.ConditionFalse, platformv1.ReasonProbeFailed, "exited with 3", "could not open relation")
	agentjobtest.ExpectEvents(t, f.Events(), "Warning DrillFailed")
}

func TestAProbePastItsTimeoutFailsWithProbeTimedOut(t *testing.T) {
	f := newFixture(t)
	d := inRun(newDrill(), platformv1.DrillProbing)
	f.seed(d)
	f.Claims = append(f.Claims, scratchClaim(d))
	f.Restores = []*platformv1.Restore{drillRestore(d, platformv1.RestoreCompleted)}
	f.probeJob(d, false, batchv1.JobReasonDeadlineExceeded, -1, "")

	f.MustRun()

	got := f.status()
	expectCondition(t, got, platformv1.ConditionSucceeded, metav1.ConditionFalse, platformv1.ReasonProbeTimedOut, "timeoutSeconds=120")
}

func TestAChecksumMismatchFailsTheDrillWithoutAProbe(t *testing.T) {
	f := newFixture(t)
	d := inRun(newDrill(), platformv1.DrillRestoring)
	f.seed(d)
	f.Claims = append(f.Claims, scratchClaim(d))
	r := drillRestore(d, platformv1.RestoreFailed)
	r.Status.Conditions = []metav1.Condition{{Type: platformv1.ConditionSucceeded, Status: metav1.ConditionFalse,
		Reason: platformv1.ReasonChecksumMismatch, Message: "the archive's sha256 is cd..., the Backup recorded ab...: nothing was written"}}
	f.Restores = []*platformv1.Restore{r}

	f.MustRun()

	f.ExpectActions(
		"get jobs "+restoreJobName,
		"get persistentvolumeclaims "+scratch, "delete persistentvolumeclaims "+scratch,
		"update backups/status data-new",
		"patch restores "+scratch,
		"update restoredrills/status proof",
	)
	got := f.status()
	expectCondition(t, got, platformv1.ConditionSucceeded, metav1.ConditionFalse, platformv1.ReasonChecksumMismatch, "nothing was written")
	if got.Status.LastRun.Claims[0].ProbeJobName != "" {
		t.Errorf("a probe was started on a copy that failed its checksum")
	}
}

func TestARestoreSlowerThanTheRTOFailsWithRTOExceeded(t *testing.T) {
	f := newFixture(t)
	d := newDrill()
	d.Spec.Objectives.MaxTimeToRestore = &metav1.Duration{Duration: 30 * time.Second}
	d = inRun(d, platformv1.DrillProbing)
	f.seed(d)
	f.Claims = append(f.Claims, scratchClaim(d))
	f.Restores = []*platformv1.Restore{drillRestore(d, platformv1.RestoreCompleted)}
	f.probeJob(d, true, "", 0, "")

	f.MustRun()

	got := f.status()
	expectCondition(t, got, platformv1.ConditionSucceeded, metav1.ConditionFalse, platformv1.ReasonRTOExceeded, "more than maxTimeToRestore 30s")
	agentjobtest.ExpectEvents(t, f.Events(), "Warning RTOExceeded", "Warning DrillFailed")
}

func TestRunNowStartsOneRunPerToken(t *testing.T) {
	f := newFixture(t)
	d := newDrill()
	d.Status.LastScheduleTime = &metav1.Time{Time: epoch} // the scheduled run is done
	d.Annotations = map[string]string{platformv1.AnnotationRunNow: "check-1"}
	f.seed(d)

	f.MustRun()

	got := f.status()
	if got.Status.LastRunNowToken != "check-1" || got.Status.LastRun == nil || !strings.HasPrefix(got.Status.LastRun.ID, "now-") {
		t.Fatalf("status = %s, want a run-now run recorded with its token", agentjobtest.Describe(got.Status))
	}

	// The token was acted on: the next sync, which finds the run's objects, starts nothing.
	f2 := newFixture(t)
	f2.seed(got)
	f2.Claims = append(f2.Claims, agentjobtest.Object[*corev1.PersistentVolumeClaim](t, f.KubeClient.Actions(), "create", "persistentvolumeclaims"))
	f2.Restores = []*platformv1.Restore{agentjobtest.Object[*platformv1.Restore](t, f.Client.Actions(), "create", "restores")}
	f2.MustRun()
	f2.ExpectActions()
}

func TestAnInvalidScheduleSaysWhatToFix(t *testing.T) {
	f := newFixture(t)
	d := newDrill()
	d.Spec.Schedule = "every day"
	f.seed(d)

	requeue := f.MustRun()

	f.ExpectActions("update restoredrills/status proof")
	got := f.status()
	expectCondition(t, got, platformv1.ConditionReady, metav1.ConditionFalse, ReasonInvalidSchedule, "no drills are scheduled")
	if got.Status.LastRun != nil || requeue != 0 {
		t.Errorf("an invalid schedule started a run (%v) or asked for a requeue (%s)", got.Status.LastRun, requeue)
	}
}

func TestHistoryKeepsTheNewestRunsOfEachResult(t *testing.T) {
	f := newFixture(t)
	d := newDrill()
	d.Spec.SuccessfulRunsHistoryLimit, d.Spec.FailedRunsHistoryLimit = ptr.To[int32](1), ptr.To[int32](1)
	d.Spec.Probe = nil
	d = inRun(d, platformv1.DrillRestoring)
	f.seed(d)
	f.Claims = append(f.Claims, scratchClaim(d))
	f.Restores = []*platformv1.Restore{drillRestore(d, platformv1.RestoreCompleted)}
	old := func(name, run string, result platformv1.DrillResult, age time.Duration) *platformv1.Restore {
		r := drillRestore(d, platformv1.RestoreCompleted)
		r.Name, r.UID, r.CreationTimestamp = name, k8stypes.UID("uid-"+name), metav1.NewTime(epoch.Add(-age))
		r.Labels = runLabels(d, run, "data")
		r.Labels[LabelDrillResult] = string(result)
		return r
	}
	f.Restores = append(f.Restores,
		old("ok-1", "r1", platformv1.DrillSucceeded, time.Hour),
		old("failed-1", "r2", platformv1.DrillFailed, 2*time.Hour),
		old("failed-2", "r3", platformv1.DrillFailed, 3*time.Hour),
	)

	f.MustRun()

	// This run succeeded and takes the only successful place; the newest failure stays.
	var deleted []string
	for _, a := range agentjobtest.Actions(f.Client.Actions()) {
		if strings.HasPrefix(a, "delete restores") {
			deleted = append(deleted, strings.TrimPrefix(a, "delete restores "))
		}
	}
	if strings.Join(deleted, ",") != "ok-1,failed-2" {
		t.Errorf("deleted Restores %v, want ok-1 and failed-2", deleted)
	}
}

// A sync of the copy that the controller's own status write replaced, before the informer
// delivers the new one, does nothing: acting on it would pass the claim again and delete, or
// make anew, what the write recorded as done.
func TestASyncOfTheCopyItsWriteReplacedWaitsForTheInformer(t *testing.T) {
	var c *Controller
	f := &fixture{agentjobtest.NewFixture(t, func(f *agentjobtest.Fixture) (time.Duration, error) {
		if c == nil {
			c = agentjobtest.Build(f, NewController)
		}
		return c.sync(context.Background(), "db", "proof")
	})}
	d := inRun(newDrill(), platformv1.DrillProbing)
	f.seed(d)
	f.Claims = append(f.Claims, scratchClaim(d))
	f.Restores = []*platformv1.Restore{drillRestore(d, platformv1.RestoreCompleted)}
	f.probeJob(d, true, "", 0, "pgbench_accounts: 200000 rows")
	f.MustRun()
	before := len(f.Client.Actions()) + len(f.KubeClient.Actions())

	if requeue := f.MustRun(); requeue != time.Second {
		t.Errorf("requeue after %s, want 1s in case the informer's update is missed", requeue)
	}
	if after := len(f.Client.Actions()) + len(f.KubeClient.Actions()); after != before {
		t.Fatalf("the second sync acted on the replaced copy: %q", agentjobtest.Actions(append(f.Client.Actions(), f.KubeClient.Actions()...)[before:]))
	}
}
