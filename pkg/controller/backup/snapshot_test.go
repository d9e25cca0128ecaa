package backup

import (
	"slices"
	"strings"
	"testing"
	"time"

	snapshotv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	clienttesting "k8s.io/client-go/testing"
	"k8s.io/utils/ptr"

	platformv1 "platform.example.com/backup-operator/pkg/apis/platform/v1"
	"platform.example.com/backup-operator/pkg/controller/agentjob"
	"platform.example.com/backup-operator/pkg/controller/agentjob/agentjobtest"
)

const testDriver = "csi.example.com"

var (
	snapshotCut   = agentjobtest.Epoch.Add(time.Minute)
	snapshotReady = snapshotCut.Add(1500 * time.Millisecond)
)

// snapshotBackup is the Backup "db/nightly" with copyMethod Snapshot and its finalizer.
func snapshotBackup() *platformv1.Backup {
	b := withFinalizer(newBackup())
	b.Spec.Source = &platformv1.BackupSource{CopyMethod: platformv1.CopyMethodSnapshot}
	return b
}

// csiClaims are the claim "data" of class "fast" on a CSI volume of testDriver, 10Gi, and the
// default storage claim.
func csiClaims() []*corev1.PersistentVolumeClaim {
	claims := defaultClaims()
	data := claims[0]
	data.Spec.VolumeName = "pv-data"
	data.Spec.StorageClassName = ptr.To("fast")
	data.Spec.Resources.Requests = corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("10Gi")}
	return claims
}

func csiVolume(driver string) *corev1.PersistentVolume {
	pv := &corev1.PersistentVolume{ObjectMeta: metav1.ObjectMeta{Name: "pv-data"}}
	if driver != "" {
		pv.Spec.CSI = &corev1.CSIPersistentVolumeSource{Driver: driver, VolumeHandle: "vol-1"}
	}
	return pv
}

func snapshotClass(name, driver string, isDefault bool, policy snapshotv1.DeletionPolicy) *snapshotv1.VolumeSnapshotClass {
	c := &snapshotv1.VolumeSnapshotClass{ObjectMeta: metav1.ObjectMeta{Name: name}, Driver: driver, DeletionPolicy: policy}
	if isDefault {
		c.Annotations = map[string]string{AnnotationDefaultSnapshotClass: "true"}
	}
	return c
}

// snapshotFixture is a fixture for b with the CSI claim, its volume and a default class.
func snapshotFixture(t *testing.T, b *platformv1.Backup) *fixture {
	f := newFixture(t)
	f.Backups, f.Claims = []*platformv1.Backup{b}, csiClaims()
	f.APIOnly = []runtime.Object{csiVolume(testDriver)}
	f.SnapshotClasses = []*snapshotv1.VolumeSnapshotClass{
		snapshotClass("other-default", "other.example.com", true, snapshotv1.VolumeSnapshotContentDelete),
		snapshotClass("fast-snapshots", testDriver, true, snapshotv1.VolumeSnapshotContentDelete),
		snapshotClass("slow-snapshots", testDriver, false, snapshotv1.VolumeSnapshotContentDelete),
	}
	return f
}

// ownSnapshot is b's VolumeSnapshot as the controller made it, ready or not.
func ownSnapshot(b *platformv1.Backup, ready bool) *snapshotv1.VolumeSnapshot {
	s := &snapshotv1.VolumeSnapshot{
		ObjectMeta: metav1.ObjectMeta{Namespace: b.Namespace, Name: SnapshotName(b), UID: "snapshot-uid", Labels: snapshotLabels(b),
			OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(b, platformv1.SchemeGroupVersion.WithKind("Backup"))}},
		Spec: snapshotv1.VolumeSnapshotSpec{
			Source:                  snapshotv1.VolumeSnapshotSource{PersistentVolumeClaimName: ptr.To(b.Spec.PVCName)},
			VolumeSnapshotClassName: ptr.To("fast-snapshots"),
		},
		Status: &snapshotv1.VolumeSnapshotStatus{ReadyToUse: ptr.To(ready)},
	}
	if ready {
		s.Status.RestoreSize = ptr.To(resource.MustParse("3Gi"))
	}
	return s
}

// cutBackup is b as the sync that created its snapshot left it.
func cutBackup(b *platformv1.Backup) *platformv1.Backup {
	b.Status = platformv1.BackupStatus{ObservedGeneration: 1, Phase: platformv1.BackupPending,
		Snapshot: &platformv1.SnapshotStatus{Name: SnapshotName(b), ClassName: "fast-snapshots", CreationTime: &metav1.Time{Time: snapshotCut}}}
	agentjob.SetCondition(&b.Status.Conditions, platformv1.ConditionSnapshotReady, metav1.ConditionUnknown, platformv1.ReasonSnapshotPending,
		"Cutting VolumeSnapshot backup-nightly of PersistentVolumeClaim data with class fast-snapshots.", 1, snapshotCut)
	agentjob.SetSucceeded(&b.Status.Conditions, metav1.ConditionUnknown, platformv1.ReasonSnapshotPending,
		"Cutting VolumeSnapshot backup-nightly of PersistentVolumeClaim data with class fast-snapshots.", 1, snapshotCut)
	return b
}

// ownTemporaryClaim is the claim the controller made from b's snapshot.
func ownTemporaryClaim(b *platformv1.Backup) *corev1.PersistentVolumeClaim {
	c := agentjobtest.Claim(b.Namespace, SnapshotName(b), corev1.ReadWriteOnce)
	c.UID, c.Labels = "tmp-claim-uid", snapshotLabels(b)
	c.OwnerReferences = []metav1.OwnerReference{*metav1.NewControllerRef(b, platformv1.SchemeGroupVersion.WithKind("Backup"))}
	return c
}

func expectSnapshotCondition(t *testing.T, b *platformv1.Backup, typ string, status metav1.ConditionStatus, reason string) {
	t.Helper()
	c := meta.FindStatusCondition(b.Status.Conditions, typ)
	if c == nil || c.Status != status || c.Reason != reason {
		t.Fatalf("condition %s is %+v, want %s/%s", typ, c, status, reason)
	}
}

func TestSnapshotBackupCutsASnapshotWithTheDefaultClassOfItsDriver(t *testing.T) {
	f := snapshotFixture(t, snapshotBackup())
	// The snapshot's news wakes the Backup; the requeue is its deadline, six hours from its creation.
	if d := f.MustRun(); d != 6*time.Hour-10*time.Minute {
		t.Fatalf("requeue after %s, want the rest of activeDeadlineSeconds", d)
	}
	f.ExpectActions("get persistentvolumes pv-data", "create volumesnapshots backup-nightly", "update backups/status nightly")

	snap := agentjobtest.Object[*snapshotv1.VolumeSnapshot](t, f.SnapshotClient.Actions(), "create", "volumesnapshots")
	if ref := metav1.GetControllerOf(snap); ref == nil || ref.UID != "backup-uid" || ref.Kind != "Backup" {
		t.Fatalf("snapshot owner %+v, want the Backup", snap.OwnerReferences)
	}
	if ptr.Deref(snap.Spec.Source.PersistentVolumeClaimName, "") != "data" || ptr.Deref(snap.Spec.VolumeSnapshotClassName, "") != "fast-snapshots" {
		t.Fatalf("snapshot spec %s, want claim data with the default class of %s", agentjobtest.Describe(snap.Spec), testDriver)
	}
	if !equality.Semantic.DeepEqual(snap.Labels, snapshotLabels(snapshotBackup())) {
		t.Fatalf("snapshot labels %v", snap.Labels)
	}
	got := f.status()
	want := &platformv1.SnapshotStatus{Name: "backup-nightly", ClassName: "fast-snapshots", CreationTime: &metav1.Time{Time: f.Clock.Now()}}
	if got.Status.Phase != platformv1.BackupPending || !equality.Semantic.DeepEqual(got.Status.Snapshot, want) || got.Status.JobName != "" {
		t.Fatalf("status %s, want Pending with snapshot %s and no Job yet", agentjobtest.Describe(got.Status), agentjobtest.Describe(want))
	}
	expectSnapshotCondition(t, got, platformv1.ConditionSnapshotReady, metav1.ConditionUnknown, platformv1.ReasonSnapshotPending)
	agentjobtest.ExpectCondition(t, got.Status.Conditions, metav1.ConditionUnknown, platformv1.ReasonSnapshotPending, "Cutting VolumeSnapshot backup-nightly")
	agentjobtest.ExpectEvents(t, f.Events(), "Normal SnapshotCreated Created VolumeSnapshot backup-nightly of PersistentVolumeClaim data with class fast-snapshots")
}

func TestSnapshotBackupWithANamedClass(t *testing.T) {
	b := snapshotBackup()
	b.Spec.Source.VolumeSnapshotClassName = "slow-snapshots"
	f := snapshotFixture(t, b)
	f.SnapshotClasses[2].DeletionPolicy = snapshotv1.VolumeSnapshotContentRetain
	f.MustRun()
	f.ExpectActions("get persistentvolumes pv-data", "get volumesnapshotclasses slow-snapshots", "create volumesnapshots backup-nightly", "update backups/status nightly")
	snap := agentjobtest.Object[*snapshotv1.VolumeSnapshot](t, f.SnapshotClient.Actions(), "create", "volumesnapshots")
	if ptr.Deref(snap.Spec.VolumeSnapshotClassName, "") != "slow-snapshots" {
		t.Fatalf("class %v, want the one named", snap.Spec.VolumeSnapshotClassName)
	}
	agentjobtest.ExpectEvents(t, f.Events(),
		"Normal SnapshotCreated Created VolumeSnapshot backup-nightly",
		"Warning SnapshotContentRetained VolumeSnapshotClass slow-snapshots has deletionPolicy Retain")
}

func TestSnapshotBackupRefusals(t *testing.T) {
	for _, tc := range []struct {
		name    string
		setup   func(*fixture)
		reason  string
		says    string
		actions []string
	}{
		{"no VolumeSnapshot API", func(f *fixture) { f.NoSnapshotAPI = true },
			platformv1.ReasonSnapshotAPIMissing, "does not serve the snapshot.storage.k8s.io/v1 API", nil},
		{"a volume that is not CSI", func(f *fixture) { f.APIOnly = []runtime.Object{csiVolume("")} },
			platformv1.ReasonSnapshotClassNotFound, "is not on a CSI volume (its PersistentVolume pv-data has no spec.csi)", []string{"get persistentvolumes pv-data"}},
		{"no default class for the driver", func(f *fixture) { f.SnapshotClasses = f.SnapshotClasses[2:] },
			platformv1.ReasonSnapshotClassNotFound, "No VolumeSnapshotClass is the default for CSI driver csi.example.com", []string{"get persistentvolumes pv-data"}},
		{"two default classes for the driver", func(f *fixture) {
			f.SnapshotClasses = append(f.SnapshotClasses, snapshotClass("also-default", testDriver, true, snapshotv1.VolumeSnapshotContentDelete))
		}, platformv1.ReasonSnapshotClassNotFound, "VolumeSnapshotClasses also-default, fast-snapshots are all marked default", []string{"get persistentvolumes pv-data"}},
		{"a named class that does not exist", func(f *fixture) { f.Backups[0].Spec.Source.VolumeSnapshotClassName = "gone" },
			platformv1.ReasonSnapshotClassNotFound, "VolumeSnapshotClass gone does not exist", []string{"get persistentvolumes pv-data", "get volumesnapshotclasses gone"}},
		{"a named class of another driver", func(f *fixture) { f.Backups[0].Spec.Source.VolumeSnapshotClassName = "other-default" },
			platformv1.ReasonSnapshotClassNotFound, "VolumeSnapshotClass other-default is for CSI driver other.example.com, but PersistentVolumeClaim data is on csi.example.com",
			[]string{"get persistentvolumes pv-data", "get volumesnapshotclasses other-default"}},
		{"a snapshot of that name that is not ours", func(f *fixture) {
			s := ownSnapshot(f.Backups[0], true)
			s.OwnerReferences = nil
			f.Snapshots = []*snapshotv1.VolumeSnapshot{s}
		}, platformv1.ReasonObjectConflict, "VolumeSnapshot backup-nightly exists and does not belong to this Backup", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := snapshotFixture(t, snapshotBackup())
			tc.setup(f)
			f.MustRun()
			f.ExpectActions(append(tc.actions, "update backups/status nightly")...)
			got := f.status()
			if got.Status.Phase != platformv1.BackupFailed || got.Status.JobName != "" {
				t.Fatalf("status %s, want Failed without a Job", agentjobtest.Describe(got.Status))
			}
			agentjobtest.ExpectCondition(t, got.Status.Conditions, metav1.ConditionFalse, tc.reason, tc.says)
			expectSnapshotCondition(t, got, platformv1.ConditionSnapshotReady, metav1.ConditionFalse, tc.reason)
			agentjobtest.ExpectEvents(t, f.Events(), "Warning BackupFailed Backup failed ("+tc.reason+")")
		})
	}
}

func TestSnapshotNotReadyYetWaitsUntilTheDeadline(t *testing.T) {
	b := cutBackup(snapshotBackup())
	f := snapshotFixture(t, b)
	f.Snapshots = []*snapshotv1.VolumeSnapshot{ownSnapshot(b, false)}
	if d := f.MustRun(); d != 6*time.Hour-10*time.Minute {
		t.Fatalf("requeue after %s, want at the deadline", d)
	}
	f.ExpectActions() // nothing changed: nothing written
	agentjobtest.ExpectEvents(t, f.Events())

	// Past activeDeadlineSeconds, counted from the Backup's creation, it fails and the snapshot goes.
	b.Spec.ActiveDeadlineSeconds = ptr.To[int64](300)
	f = snapshotFixture(t, b)
	f.Snapshots = []*snapshotv1.VolumeSnapshot{ownSnapshot(b, false)}
	f.MustRun()
	f.ExpectActions("update backups/status nightly", "delete volumesnapshots backup-nightly")
	got := f.status()
	agentjobtest.ExpectCondition(t, got.Status.Conditions, metav1.ConditionFalse, platformv1.ReasonSnapshotFailed, "was not ready to use within activeDeadlineSeconds (5m0s)")
	agentjobtest.ExpectEvents(t, f.Events(), "Warning BackupFailed Backup failed (SnapshotFailed)", "Normal SnapshotDeleted Deleted VolumeSnapshot backup-nightly after the backup")
}

func TestSnapshotThatReportsAnErrorFailsTheBackup(t *testing.T) {
	b := cutBackup(snapshotBackup())
	f := snapshotFixture(t, b)
	s := ownSnapshot(b, false)
	s.Status.Error = &snapshotv1.VolumeSnapshotError{Message: ptr.To("Failed to create snapshot: driver said no.")}
	f.Snapshots = []*snapshotv1.VolumeSnapshot{s}
	f.MustRun()
	f.ExpectActions("update backups/status nightly", "delete volumesnapshots backup-nightly")
	got := f.status()
	agentjobtest.ExpectCondition(t, got.Status.Conditions, metav1.ConditionFalse, platformv1.ReasonSnapshotFailed,
		"VolumeSnapshot backup-nightly of PersistentVolumeClaim data failed: Failed to create snapshot: driver said no. Check the CSI driver")
	if c := meta.FindStatusCondition(got.Status.Conditions, platformv1.ConditionDataUploaded); c != nil {
		t.Fatalf("DataUploaded %+v: nothing was read, so nothing is said about the upload", c)
	}
}

func TestSnapshotDeletedBeforeItWasReadFailsTheBackup(t *testing.T) {
	b := cutBackup(snapshotBackup())
	f := snapshotFixture(t, b) // no snapshot in the cache, nor in the API
	f.MustRun()
	f.ExpectActions("get volumesnapshots backup-nightly", "update backups/status nightly")
	agentjobtest.ExpectCondition(t, f.status().Status.Conditions, metav1.ConditionFalse, platformv1.ReasonSnapshotFailed, "was deleted before the archive was read")
}

func TestReadySnapshotIsReadThroughATemporaryClaimOnAnyNode(t *testing.T) {
	b := cutBackup(snapshotBackup())
	f := snapshotFixture(t, b)
	f.Snapshots = []*snapshotv1.VolumeSnapshot{ownSnapshot(b, true)}
	// The live claim is in use on node-a: a snapshot needs no pinning to it.
	f.APIOnly = append(f.APIOnly, agentjobtest.AppPod("db", "app-0", "node-a", "data", false))
	f.MustRun()
	f.ExpectActions("create persistentvolumeclaims backup-nightly", "create jobs backup-nightly", "update backups/status nightly")

	tmp := agentjobtest.Object[*corev1.PersistentVolumeClaim](t, f.KubeClient.Actions(), "create", "persistentvolumeclaims")
	wantSpec := corev1.PersistentVolumeClaimSpec{
		AccessModes:      []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
		StorageClassName: ptr.To("fast"),
		Resources:        corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("3Gi")}},
		DataSource:       &corev1.TypedLocalObjectReference{APIGroup: ptr.To("snapshot.storage.k8s.io"), Kind: "VolumeSnapshot", Name: "backup-nightly"},
	}
	if !equality.Semantic.DeepEqual(tmp.Spec, wantSpec) {
		t.Fatalf("temporary claim spec %s, want %s", agentjobtest.Describe(tmp.Spec), agentjobtest.Describe(wantSpec))
	}
	if ref := metav1.GetControllerOf(tmp); ref == nil || ref.UID != "backup-uid" || !equality.Semantic.DeepEqual(tmp.Labels, snapshotLabels(b)) {
		t.Fatalf("temporary claim owner %+v labels %v, want the Backup's", tmp.OwnerReferences, tmp.Labels)
	}
	job := f.CreatedJob()
	pod := job.Spec.Template.Spec
	if src := pod.Volumes[0].PersistentVolumeClaim; src == nil || src.ClaimName != "backup-nightly" || !src.ReadOnly {
		t.Fatalf("source volume %s, want the temporary claim read-only", agentjobtest.Describe(pod.Volumes[0]))
	}
	if pod.Affinity != nil || pod.NodeName != "" {
		t.Fatalf("affinity %s node %q: a claim made from a snapshot is read on any node", agentjobtest.Describe(pod.Affinity), pod.NodeName)
	}
	if i := slices.Index(pod.Containers[0].Args, "--pvc"); i < 0 || pod.Containers[0].Args[i+1] != "data" {
		t.Fatalf("agent args %q, want the manifest to name the backed-up claim", pod.Containers[0].Args)
	}

	got := f.status()
	st := got.Status.Snapshot
	if st.TemporaryClaimName != "backup-nightly" || !st.ReadyTime.Time.Equal(f.Clock.Now()) || st.SnapshotDuration.Duration != f.Clock.Now().Sub(snapshotCut) ||
		st.RestoreSize.Cmp(resource.MustParse("3Gi")) != 0 || st.Kept {
		t.Fatalf("snapshot status %s", agentjobtest.Describe(st))
	}
	expectSnapshotCondition(t, got, platformv1.ConditionSnapshotReady, metav1.ConditionTrue, platformv1.ReasonSnapshotReady)
	expectSnapshotCondition(t, got, platformv1.ConditionDataUploaded, metav1.ConditionUnknown, platformv1.ReasonJobPending)
	agentjobtest.ExpectEvents(t, f.Events(),
		"Normal SnapshotReady VolumeSnapshot backup-nightly is ready to use after 9m0s (restoreSize 3.0 GiB)",
		"Normal JobCreated Created Job backup-nightly to archive PersistentVolumeClaim data to db/data/nightly.tar.zst on claim backup-storage from VolumeSnapshot backup-nightly, through claim backup-nightly")
}

func TestTemporaryClaimOfAnotherOwnerFailsTheBackup(t *testing.T) {
	b := cutBackup(snapshotBackup())
	f := snapshotFixture(t, b)
	f.Snapshots = []*snapshotv1.VolumeSnapshot{ownSnapshot(b, true)}
	theirs := agentjobtest.Claim("db", "backup-nightly", corev1.ReadWriteOnce)
	f.Claims = append(f.Claims, theirs)
	f.MustRun()
	f.ExpectActions("update backups/status nightly", "delete volumesnapshots backup-nightly")
	agentjobtest.ExpectCondition(t, f.status().Status.Conditions, metav1.ConditionFalse, platformv1.ReasonObjectConflict, "PersistentVolumeClaim backup-nightly exists and does not belong to this Backup")
}

// readingBackup is b reading its ready snapshot through its temporary claim in its Job.
func readingBackup() *platformv1.Backup {
	b := cutBackup(snapshotBackup())
	b.Status.Phase, b.Status.JobName, b.Status.StartTime = platformv1.BackupRunning, "backup-nightly", &metav1.Time{Time: podStart}
	b.Status.Snapshot.ReadyTime, b.Status.Snapshot.TemporaryClaimName = &metav1.Time{Time: snapshotReady}, "backup-nightly"
	agentjob.SetCondition(&b.Status.Conditions, platformv1.ConditionSnapshotReady, metav1.ConditionTrue, platformv1.ReasonSnapshotReady, "ready", 1, snapshotReady)
	agentjob.SetSucceeded(&b.Status.Conditions, metav1.ConditionUnknown, platformv1.ReasonRunning, "The agent is archiving PersistentVolumeClaim data.", 1, podStart)
	agentjob.SetCondition(&b.Status.Conditions, platformv1.ConditionDataUploaded, metav1.ConditionUnknown, platformv1.ReasonRunning, "The agent is archiving PersistentVolumeClaim data.", 1, podStart)
	return b
}

func TestSnapshotBackupThatEndsDeletesItsSnapshotAndTemporaryClaim(t *testing.T) {
	for _, tc := range []struct {
		name      string
		succeeded bool
		keep      bool
		deletes   []string
	}{
		// The Job first: its finished pod would keep the temporary claim from going.
		{"completed", true, false, []string{"delete jobs backup-nightly", "delete persistentvolumeclaims backup-nightly", "delete volumesnapshots backup-nightly"}},
		{"completed, keepSnapshot", true, true, []string{"delete jobs backup-nightly", "delete persistentvolumeclaims backup-nightly"}},
		{"failed, keepSnapshot", false, true, []string{"delete jobs backup-nightly", "delete persistentvolumeclaims backup-nightly", "delete volumesnapshots backup-nightly"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := readingBackup()
			b.Spec.Source.KeepSnapshot = tc.keep
			f := snapshotFixture(t, b)
			job := agentjobtest.Finish(ownJob(b), tc.succeeded, batchv1.JobReasonBackoffLimitExceeded, "too many", jobEnd)
			result := successResult()
			if !tc.succeeded {
				result = failureResult("WriteFailed", "disk full")
			}
			exit := int32(0)
			if !tc.succeeded {
				exit = 1
			}
			f.Jobs = []*batchv1.Job{job}
			f.AgentPods = []*corev1.Pod{agentjobtest.Terminated(agentjobtest.Pod(job, "backup-nightly-x1", "node-b", podStart), exit, result, jobEnd)}
			f.Snapshots = []*snapshotv1.VolumeSnapshot{ownSnapshot(b, true)}
			f.Claims = append(f.Claims, ownTemporaryClaim(b))
			f.MustRun()
			f.ExpectActions(append([]string{"update backups/status nightly"}, tc.deletes...)...)

			got := f.status()
			wantPhase, wantUpload, wantReason := platformv1.BackupCompleted, metav1.ConditionTrue, platformv1.ReasonCompleted
			if !tc.succeeded {
				wantPhase, wantUpload, wantReason = platformv1.BackupFailed, metav1.ConditionFalse, platformv1.ReasonWriteFailed
			}
			if got.Status.Phase != wantPhase || got.Status.Snapshot.Kept != (tc.keep && tc.succeeded) {
				t.Fatalf("status %s", agentjobtest.Describe(got.Status))
			}
			expectSnapshotCondition(t, got, platformv1.ConditionDataUploaded, wantUpload, wantReason)
			expectSnapshotCondition(t, got, platformv1.ConditionSnapshotReady, metav1.ConditionTrue, platformv1.ReasonSnapshotReady)
			events := f.Events()
			if last := events[len(events)-1]; !strings.HasPrefix(last, "Normal SnapshotDeleted Deleted Job backup-nightly and PersistentVolumeClaim backup-nightly") {
				t.Fatalf("last event %q, want the deletion told", last)
			}
			for _, a := range f.KubeClient.Actions() {
				if d, ok := a.(clienttesting.DeleteAction); ok && a.GetResource().Resource == "jobs" {
					if p := d.GetDeleteOptions().PropagationPolicy; p == nil || *p != metav1.DeletePropagationBackground {
						t.Fatalf("the Job is deleted with propagation %v, want Background so that its pods go", p)
					}
				}
			}
		})
	}
}

func TestFinalSnapshotBackupCleansUpWhatARestartLeft(t *testing.T) {
	b := readingBackup()
	b.Status.Phase = platformv1.BackupCompleted
	f := snapshotFixture(t, b)
	theirs := ownSnapshot(b, true)
	theirs.Name, theirs.UID, theirs.OwnerReferences = "someone-elses", "x", []metav1.OwnerReference{{APIVersion: "platform.example.com/v1", Kind: "Backup", Name: "nightly", UID: types.UID("older-backup"), Controller: ptr.To(true)}}
	f.Snapshots = []*snapshotv1.VolumeSnapshot{ownSnapshot(b, true), theirs}
	f.Claims = append(f.Claims, ownTemporaryClaim(b))
	f.MustRun()
	// Found by label, deleted when this Backup controls them; the status is not written again.
	f.ExpectActions("delete persistentvolumeclaims backup-nightly", "delete volumesnapshots backup-nightly")
	agentjobtest.ExpectEvents(t, f.Events(), "Normal SnapshotDeleted Deleted PersistentVolumeClaim backup-nightly and VolumeSnapshot backup-nightly after the backup")

	// Once they are gone, a sync does nothing.
	f = snapshotFixture(t, b)
	f.MustRun()
	f.ExpectActions()
}

func TestDeletingASnapshotBackupMidRunDeletesItsSnapshotAndClaim(t *testing.T) {
	b := readingBackup()
	b.Spec.Source.KeepSnapshot = true
	b.DeletionTimestamp = &metav1.Time{Time: agentjobtest.Epoch.Add(5 * time.Minute)}
	f := snapshotFixture(t, b)
	f.Jobs = []*batchv1.Job{ownJob(b)}
	f.Snapshots = []*snapshotv1.VolumeSnapshot{ownSnapshot(b, true)}
	f.Claims = append(f.Claims, ownTemporaryClaim(b))
	f.MustRun()
	// The snapshot goes with its Backup even with keepSnapshot; the Job is stopped before the
	// archive is cleaned up.
	f.ExpectActions("delete persistentvolumeclaims backup-nightly", "delete volumesnapshots backup-nightly", "delete jobs backup-nightly")
}

func TestFailedSnapshotBackupWithoutASnapshotStatusStillCleansUp(t *testing.T) {
	// The sync that cut the snapshot failed to write the status; a later one failed the Backup.
	b := snapshotBackup()
	b.Status.Phase = platformv1.BackupFailed
	f := snapshotFixture(t, b)
	f.Snapshots = []*snapshotv1.VolumeSnapshot{ownSnapshot(b, false)}
	f.MustRun()
	f.ExpectActions("delete volumesnapshots backup-nightly")
}
