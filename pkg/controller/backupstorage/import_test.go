package backupstorage

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"platform.example.com/backup-operator/pkg/agent"
	platformv1 "platform.example.com/backup-operator/pkg/apis/platform/v1"
	"platform.example.com/backup-operator/pkg/archive"
	"platform.example.com/backup-operator/pkg/controller/agentjob"
	"platform.example.com/backup-operator/pkg/controller/agentjob/agentjobtest"
	"platform.example.com/backup-operator/pkg/storage"
)

// listLocation is the folder of namespace db on the storage "offsite".
const listLocation = "s3://backups/prod/db"

var sha = strings.Repeat("ab", 32)

// availableStorage is "offsite" as the check that ended at Epoch left it, never imported from,
// with the default syncInterval.
func availableStorage() *platformv1.BackupStorage {
	bs := validatedAt(s3Storage(), platformv1.StorageAvailable, agentjobtest.Epoch)
	bs.Spec.SyncInterval, bs.Status.LastImportTime = nil, nil
	return bs
}

// importName is the name of the import Job after the one that ended at t.
func importName(t time.Time) string { return "import-offsite-" + strconv.FormatInt(t.Unix(), 10) }

// firstImport is the name of the first import of "offsite", created at Epoch.
var firstImport = importName(agentjobtest.Epoch)

// ownImport is the import Job called name of bs, as the controller made it.
func ownImport(bs *platformv1.BackupStorage, name string) *batchv1.Job {
	return agentjobtest.OwnedJob(bs.Namespace, name, "BackupStorage", bs.Name, bs.UID, map[string]string{
		platformv1.LabelManagedBy: platformv1.ManagedByValue, LabelBackupStorage: bs.Name, agentjob.LabelComponent: ComponentStorageImport,
	})
}

// listResult is what `agent storage list` of listLocation reports after listing archives.
func listResult(archives int) agent.StorageListResult {
	var r agent.StorageListResult
	r.Operation, r.ToolVersion, r.Location, r.Archives = agent.OpStorageList, "test", listLocation, archives
	return r
}

// manifest is the manifest of the archive of Backup backup of claim pvc in namespace db, made by
// policy "daily".
func manifest(backup, pvc string) archive.Manifest {
	start := agentjobtest.Epoch.Add(-time.Hour)
	return archive.Manifest{
		ManifestVersion: 1, Archive: backup + ".tar.zst", Source: "/source",
		Origin:      archive.Origin{Namespace: "db", PVC: pvc, Policy: "daily", Backup: backup, BackupUID: "uid-" + backup},
		Compression: archive.Zstd, SHA256: sha, Size: 2048, SourceBytes: 4096,
		Files: 3, Directories: 2, Symlinks: 1, Hardlinks: 1, Skipped: 1, Vanished: 1, ChangedFiles: 2,
		StartTime: start, CompletionTime: start.Add(90 * time.Second), ToolVersion: "test",
	}
}

// listed is the archive key with m, as the agent lists it.
func listed(key string, m archive.Manifest) storage.Listed {
	return storage.Listed{Key: key, Manifest: m, LastModified: agentjobtest.Epoch}
}

// podLog is the log of an import pod that listed archives: the agent's warnings on stderr, a line
// per archive, and the result.
func podLog(t *testing.T, result agent.StorageListResult, archives ...storage.Listed) string {
	lines := []string{"warning: a manifest below prod/db does not parse; skipped"}
	for _, a := range archives {
		b, err := json.Marshal(a)
		if err != nil {
			t.Fatal(err)
		}
		lines = append(lines, string(b))
	}
	b, err := json.Marshal(result)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Join(append(lines, string(b)), "\n") + "\n"
}

// logsOf serves text as the log of the agent container of pod, and nothing else.
func logsOf(t *testing.T, pod, text string) func(context.Context, string, string, string) (io.ReadCloser, error) {
	return func(_ context.Context, namespace, name, container string) (io.ReadCloser, error) {
		if namespace != "db" || name != pod || container != agentjob.ContainerName {
			t.Errorf("read the log of %s/%s container %s, want db/%s container %s", namespace, name, container, pod, agentjob.ContainerName)
			return nil, apierrors.NewNotFound(corev1.Resource("pods"), name)
		}
		return io.NopCloser(strings.NewReader(text)), nil
	}
}

// noLogs fails the test when a log is read.
func noLogs(t *testing.T) func(context.Context, string, string, string) (io.ReadCloser, error) {
	return func(_ context.Context, _, pod, _ string) (io.ReadCloser, error) {
		t.Errorf("read the log of pod %s, want none read", pod)
		return nil, errors.New("no logs in this test")
	}
}

// importEnded seeds bs and its first import Job, which ended at jobEnd with the agent exiting
// with code and result, and sets the clock past the wait for the result.
func (f *fixture) importEnded(bs *platformv1.BackupStorage, code int32, result any) (*batchv1.Job, *corev1.Pod) {
	job, pod := finished(ownImport(bs, firstImport), code, result)
	f.Storages, f.Jobs, f.AgentPods = []*platformv1.BackupStorage{bs}, []*batchv1.Job{job}, []*corev1.Pod{pod}
	f.Clock.SetTime(jobEnd.Add(agentjob.ResultGracePeriod))
	return job, pod
}

// storedBackup is the Backup name as the platform client holds it after the sync.
func (f *fixture) storedBackup(name string) *platformv1.Backup {
	f.T.Helper()
	obj, err := f.Client.Tracker().Get(platformv1.SchemeGroupVersion.WithResource("backups"), "db", name)
	if err != nil {
		f.T.Fatalf("Backup %s: %v", name, err)
	}
	return obj.(*platformv1.Backup)
}

// expectImported fails the test unless the Imported condition has status and reason and its
// message contains every fragment.
func expectImported(t *testing.T, bs *platformv1.BackupStorage, status metav1.ConditionStatus, reason string, fragments ...string) {
	t.Helper()
	c := meta.FindStatusCondition(bs.Status.Conditions, ConditionImported)
	if c == nil || c.Status != status || c.Reason != reason {
		t.Fatalf("Imported condition %s, want %s/%s", agentjobtest.Describe(c), status, reason)
	}
	for _, fr := range fragments {
		if !strings.Contains(c.Message, fr) {
			t.Fatalf("Imported message %q does not say %q", c.Message, fr)
		}
	}
}

func TestTheFirstImportStartsOnceTheStorageIsAvailable(t *testing.T) {
	f := newFixture(t)
	f.Storages = []*platformv1.BackupStorage{availableStorage()}
	f.sync()
	f.ExpectActions("create jobs " + firstImport)
	agentjobtest.ExpectEvents(t, f.Events())

	job := f.CreatedJob()
	if ref := metav1.GetControllerOf(job); ref == nil || ref.UID != storageUID || ref.Kind != "BackupStorage" {
		t.Fatalf("owner %+v, want the BackupStorage as controller", job.OwnerReferences)
	}
	if l := job.Spec.Template.Labels; l[LabelBackupStorage] != "offsite" || l[agentjob.LabelComponent] != ComponentStorageImport || l[platformv1.LabelManagedBy] != platformv1.ManagedByValue {
		t.Fatalf("pod labels %v, want the storage, the import component and managed-by", l)
	}
	if ptr.Deref(job.Spec.ActiveDeadlineSeconds, 0) != ImportDeadlineSeconds || ptr.Deref(job.Spec.BackoffLimit, -1) != 0 || ptr.Deref(job.Spec.TTLSecondsAfterFinished, 0) != CheckJobTTLSeconds {
		t.Fatalf("deadline %v backoff %v ttl %v, want a short run without retries that is cleaned up", job.Spec.ActiveDeadlineSeconds, job.Spec.BackoffLimit, job.Spec.TTLSecondsAfterFinished)
	}
	c := job.Spec.Template.Spec.Containers[0]
	// Only the namespace's folder, and none of the flags of writes: no object lock.
	wantArgs := []string{"agent", "storage", "list", "--location", listLocation,
		"--s3-endpoint", "https://s3.example.com", "--s3-region", "eu-west-1", "--s3-force-path-style",
		"--s3-ca-file", "/etc/backup-operator/s3-ca/ca.crt"}
	if !slices.Equal(c.Args, wantArgs) {
		t.Fatalf("args %q, want %q", c.Args, wantArgs)
	}
	if len(c.Env) != 2 || c.Env[0].ValueFrom.SecretKeyRef.Name != "s3-creds" || c.Env[1].ValueFrom.SecretKeyRef.Name != "s3-creds" {
		t.Fatalf("env %s, want the credentials by reference", agentjobtest.Describe(c.Env))
	}
	if caps := c.SecurityContext.Capabilities; len(caps.Add) != 0 {
		t.Fatalf("capabilities %s, want none", agentjobtest.Describe(caps))
	}
	if f.requeue != 0 {
		t.Fatalf("requeue after %s, want none: the Job's end is news", f.requeue)
	}
}

func TestNoImportStartsWithoutAnAvailableStorage(t *testing.T) {
	for _, tc := range []struct {
		name string
		bs   func() *platformv1.BackupStorage
	}{
		{"unavailable", func() *platformv1.BackupStorage {
			bs := validatedAt(s3Storage(), platformv1.StorageUnavailable, agentjobtest.Epoch)
			bs.Status.LastImportTime = nil
			return bs
		}},
		{"its spec changed since the check", func() *platformv1.BackupStorage {
			bs := availableStorage()
			bs.Generation = 2
			return bs
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			bs := tc.bs()
			bs.Annotations = map[string]string{platformv1.AnnotationSyncNow: "now"}
			f.Storages = []*platformv1.BackupStorage{bs}
			f.sync()
			for _, a := range agentjobtest.Actions(f.KubeClient.Actions()) {
				if strings.HasPrefix(a, "create jobs import-") {
					t.Fatalf("actions %q, want no import", agentjobtest.Actions(f.KubeClient.Actions()))
				}
			}
			// The request waits for the storage to be usable.
			if f.stored().Annotations[AnnotationSyncedNow] != "" {
				t.Fatalf("annotations %v, want the sync-now value still pending", f.stored().Annotations)
			}
		})
	}
}

func TestReadOnlyStoragesAreImportedReadOnly(t *testing.T) {
	t.Run("bucket", func(t *testing.T) {
		f := newFixture(t)
		bs := availableStorage()
		bs.Spec.AccessMode = platformv1.StorageReadOnly
		f.Storages = []*platformv1.BackupStorage{bs}
		f.sync()
		if args := f.CreatedJob().Spec.Template.Spec.Containers[0].Args; !slices.Contains(args, "--s3-read-only") || slices.Contains(args, "--s3-object-lock-mode") {
			t.Fatalf("args %q, want --s3-read-only and no object lock", args)
		}
	})
	for _, mode := range []platformv1.StorageAccessMode{platformv1.StorageReadWrite, platformv1.StorageReadOnly} {
		t.Run("claim "+string(mode), func(t *testing.T) {
			f := newFixture(t)
			bs := validatedAt(claimStorage(mode), platformv1.StorageAvailable, agentjobtest.Epoch)
			bs.Status.LastImportTime = nil
			f.Storages = []*platformv1.BackupStorage{bs}
			f.sync()
			pod := f.CreatedJob().Spec.Template.Spec
			c := pod.Containers[0]
			// The claim's root, read-only: a missing subPath would be created, which is a write.
			wantArgs := []string{"agent", "storage", "list", "--location", agentjob.StorageMountPath + "/team-a/db"}
			wantMounts := []corev1.VolumeMount{{Name: "storage", MountPath: agentjob.StorageMountPath, ReadOnly: true}}
			if !slices.Equal(c.Args, wantArgs) || !equality.Semantic.DeepEqual(c.VolumeMounts, wantMounts) ||
				pod.Volumes[0].PersistentVolumeClaim.ClaimName != "archive" || !pod.Volumes[0].PersistentVolumeClaim.ReadOnly {
				t.Fatalf("args %q volumes %s mounts %s, want claim archive's root read-only and the namespace's folder listed",
					c.Args, agentjobtest.Describe(pod.Volumes), agentjobtest.Describe(c.VolumeMounts))
			}
		})
	}
}

func TestASucceededImportCreatesTheMissingBackups(t *testing.T) {
	f := newFixture(t)
	bs := availableStorage()
	old := manifest("", "")
	old.Origin, old.Compression, old.StartTime, old.CompletionTime = archive.Origin{}, archive.Gzip, time.Time{}, time.Time{}
	other := manifest("web-nightly", "www")
	other.Namespace = "web"
	archives := []storage.Listed{
		listed("prod/db/data/Bad_Name.tar.zst", manifest("Bad_Name", "data")),
		listed("prod/db/data/daily-data-1.tar.zst", manifest("daily-data-1", "data")),
		listed("prod/db/data/half.tar.zst", manifest("half", "data")),
		listed("prod/db/data/nightly.tar.zst", manifest("nightly", "data")),
		listed("prod/db/data/web-nightly.tar.zst", other),
		listed("prod/db/logs/old.tar.gz", old),
	}
	_, pod := f.importEnded(bs, 0, listResult(len(archives)))
	f.Logs = logsOf(t, pod.Name, podLog(t, listResult(len(archives)), archives...))

	// "nightly" is this cluster's own Backup; "half" was imported by a sync that stopped before
	// it wrote the status.
	mine := failedBackup("nightly", platformv1.ReasonJobFailed, agentjobtest.Epoch)
	half := &platformv1.Backup{ObjectMeta: metav1.ObjectMeta{Namespace: "db", Name: "half", Generation: 1,
		Annotations: map[string]string{platformv1.AnnotationImportedFrom: "offsite"}}}
	f.Backups = []*platformv1.Backup{mine, half}
	f.sync()
	// The Job stays until the cache shows the status that concluded it.
	f.ExpectActions("create backups daily-data-1", "update backups/status daily-data-1", "update backups/status half",
		"create backups old", "update backups/status old", "update backupstorages/status offsite")

	b := f.storedBackup("daily-data-1")
	wantLabels := map[string]string{platformv1.LabelManagedBy: platformv1.ManagedByValue, platformv1.LabelPVC: "data",
		platformv1.LabelPolicy: "daily", platformv1.LabelImported: "true"}
	if !equality.Semantic.DeepEqual(b.Labels, wantLabels) || b.Annotations[platformv1.AnnotationImportedFrom] != "offsite" ||
		!slices.Equal(b.Finalizers, []string{platformv1.FinalizerArchiveCleanup}) {
		t.Fatalf("labels %v annotations %v finalizers %v, want the imported Backup's, with the archive-cleanup finalizer of a ReadWrite storage", b.Labels, b.Annotations, b.Finalizers)
	}
	wantSpec := platformv1.BackupSpec{PVCName: "data", PolicyName: "daily", BackupRunSettings: platformv1.BackupRunSettings{
		Storage: &platformv1.Storage{Name: "offsite"}, Compression: platformv1.CompressionZstd, DeletionPolicy: platformv1.DeletionPolicyDelete}}
	if !equality.Semantic.DeepEqual(b.Spec, wantSpec) {
		t.Fatalf("spec %s, want %s", agentjobtest.Describe(b.Spec), agentjobtest.Describe(wantSpec))
	}
	m := manifest("daily-data-1", "data")
	wantArtifact := &platformv1.Artifact{Path: "prod/db/data/daily-data-1.tar.zst", StorageName: "offsite", Bucket: "backups",
		Size: 2048, DisplaySize: agentjob.HumanBytes(2048), SHA256: sha, Compression: platformv1.CompressionZstd,
		SourceBytes: 4096, Files: 7, ChangedFiles: 2, SkippedFiles: 2}
	if st := b.Status; st.Phase != platformv1.BackupCompleted || !equality.Semantic.DeepEqual(st.Artifact, wantArtifact) ||
		!st.StartTime.Time.Equal(m.StartTime) || !st.CompletionTime.Time.Equal(m.CompletionTime) || st.Duration.Duration != 90*time.Second {
		t.Fatalf("status %s, want Completed with the manifest's archive and times", agentjobtest.Describe(st))
	}
	agentjobtest.ExpectCondition(t, b.Status.Conditions, metav1.ConditionTrue, platformv1.ReasonImported, "BackupStorage offsite", "prod/db/data/daily-data-1.tar.zst")

	// A manifest that predates origins: the key names the Backup and the claim.
	if b := f.storedBackup("old"); b.Spec.PVCName != "logs" || b.Spec.PolicyName != "" || b.Labels[platformv1.LabelPolicy] != "" ||
		b.Spec.Compression != platformv1.CompressionGzip || b.Status.Artifact.Compression != platformv1.CompressionGzip || b.Status.StartTime != nil || b.Status.Duration != nil {
		t.Fatalf("Backup old: %s", agentjobtest.Describe(b))
	}
	if b := f.storedBackup("half"); b.Status.Phase != platformv1.BackupCompleted || b.Status.Artifact.Path != "prod/db/data/half.tar.zst" || b.Status.ObservedGeneration != 1 {
		t.Fatalf("Backup half: %s, want its status written", agentjobtest.Describe(b.Status))
	}
	if b := f.storedBackup("nightly"); !equality.Semantic.DeepEqual(b, mine) {
		t.Fatalf("Backup nightly changed: %s", agentjobtest.Describe(b))
	}

	st := f.status().Status
	if !st.LastImportTime.Time.Equal(jobEnd) || st.Archives != 6 || st.ImportedBackups != 3 || st.Phase != platformv1.StorageAvailable {
		t.Fatalf("status %s, want the import at the Job's end, 6 archives and 3 Backups imported", agentjobtest.Describe(st))
	}
	expectImported(t, f.status(), metav1.ConditionTrue, platformv1.ReasonImported, "Listed 6 archives in "+listLocation+": imported 3 Backups, 1 already had one, skipped 2",
		`"Bad_Name" is not a valid Backup name`, "namespace web")
	agentjobtest.ExpectEvents(t, f.Events(), "Normal BackupsImported Imported 3 Backups from "+listLocation+": daily-data-1, half, old")
	if want := jobEnd.Add(DefaultSyncInterval).Sub(f.Clock.Now()); f.requeue != want {
		t.Fatalf("requeue after %s, want %s: syncInterval after the import", f.requeue, want)
	}
}

func TestAnImportFromAReadOnlyClaim(t *testing.T) {
	f := newFixture(t)
	bs := validatedAt(claimStorage(platformv1.StorageReadOnly), platformv1.StorageAvailable, agentjobtest.Epoch)
	bs.Status.LastImportTime = nil
	archives := []storage.Listed{listed("data/daily-data-1.tar.zst", manifest("daily-data-1", "data"))}
	result := listResult(1)
	result.Location = agentjob.StorageMountPath + "/team-a/db"
	_, pod := f.importEnded(bs, 0, result)
	f.Logs = logsOf(t, pod.Name, podLog(t, result, archives...))
	f.sync()
	b := f.storedBackup("daily-data-1")
	// Paths are relative to the claim's root, as a backup records them; a ReadOnly storage is
	// never deleted from, so the Backup gets no finalizer.
	if a := b.Status.Artifact; a.Path != "team-a/db/data/daily-data-1.tar.zst" || a.Bucket != "" || a.StorageName != "offsite" || len(b.Finalizers) != 0 {
		t.Fatalf("artifact %s finalizers %v", agentjobtest.Describe(a), b.Finalizers)
	}
	agentjobtest.ExpectEvents(t, f.Events(), "Normal BackupsImported Imported 1 Backup from directory team-a/db of claim archive: daily-data-1")
}

func TestAConcludedImportJobIsDeleted(t *testing.T) {
	f := newFixture(t)
	bs := availableStorage()
	bs.Status.LastImportTime = &metav1.Time{Time: jobEnd}
	f.importEnded(bs, 0, listResult(0))
	f.Logs = noLogs(t)
	f.sync()
	f.ExpectActions("delete jobs " + firstImport)
	agentjobtest.ExpectEvents(t, f.Events())
}

func TestAnIncompleteListImportsNothing(t *testing.T) {
	archives := []storage.Listed{
		listed("prod/db/data/daily-data-1.tar.zst", manifest("daily-data-1", "data")),
		listed("prod/db/data/daily-data-2.tar.zst", manifest("daily-data-2", "data")),
	}
	huge := strings.Repeat(strings.Repeat("x", 1023)+"\n", MaxImportLog/1024+1)
	for _, tc := range []struct {
		name string
		logs func(t *testing.T, pod string) func(context.Context, string, string, string) (io.ReadCloser, error)
		says string
	}{
		{"a log that was cut", func(t *testing.T, pod string) func(context.Context, string, string, string) (io.ReadCloser, error) {
			return logsOf(t, pod, podLog(t, listResult(3), archives...))
		}, "holds 2 of the 3 archives the agent listed: it was cut"},
		{"a log too large to read", func(t *testing.T, pod string) func(context.Context, string, string, string) (io.ReadCloser, error) {
			return logsOf(t, pod, huge)
		}, "larger than the 32 MiB an import reads"},
		{"a log that is gone", func(t *testing.T, pod string) func(context.Context, string, string, string) (io.ReadCloser, error) {
			return func(context.Context, string, string, string) (io.ReadCloser, error) {
				return nil, apierrors.NewNotFound(corev1.Resource("pods"), pod)
			}
		}, "is gone"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			_, pod := f.importEnded(availableStorage(), 0, listResult(3))
			f.Logs = tc.logs(t, pod.Name)
			f.sync()
			// No Backup, and the Job stays: it is the record of the failure.
			f.ExpectActions("update backupstorages/status offsite")
			got := f.status()
			if got.Status.LastImportTime != nil || got.Status.Phase != platformv1.StorageAvailable {
				t.Fatalf("status %s, want no import recorded and the storage still Available", agentjobtest.Describe(got.Status))
			}
			expectImported(t, got, metav1.ConditionFalse, ReasonListIncomplete, tc.says, "Nothing was imported.")
			agentjobtest.ExpectEvents(t, f.Events(), "Warning ImportFailed Import failed (ListIncomplete): The log of pod "+pod.Name)
		})
	}
	t.Run("a log that cannot be read now is retried", func(t *testing.T) {
		f := newFixture(t)
		_, pod := f.importEnded(availableStorage(), 0, listResult(3))
		f.Logs = func(context.Context, string, string, string) (io.ReadCloser, error) {
			return nil, apierrors.NewServiceUnavailable("the API server is restarting")
		}
		if _, err := f.Run(); err == nil || !strings.Contains(err.Error(), "reading the log of pod db/"+pod.Name) {
			t.Fatalf("sync error %v, want the log's, for a retry", err)
		}
		f.ExpectActions()
	})
}

func TestAFailedImportIsRetriedAfterAWait(t *testing.T) {
	denied := "cannot list s3://backups/prod/db/: the credentials are not allowed to do this"
	failedResult := listResult(0)
	failedResult.Error, failedResult.Reason = denied, archive.StorageAccessDenied
	retryAt := jobEnd.Add(ImportRetryInterval)
	f := newFixture(t)
	job, pod := f.importEnded(availableStorage(), 1, failedResult)
	f.Logs = noLogs(t)
	f.sync()
	f.ExpectActions("update backupstorages/status offsite")
	told := f.status()
	if told.Status.LastImportTime != nil || told.Status.Phase != platformv1.StorageAvailable {
		t.Fatalf("status %s, want no import recorded and the storage still Available", agentjobtest.Describe(told.Status))
	}
	expectImported(t, told, metav1.ConditionFalse, "AccessDenied", denied, "Nothing was imported.")
	expectReady(t, told, metav1.ConditionTrue, ReasonAvailable)
	agentjobtest.ExpectEvents(t, f.Events(), "Warning ImportFailed Import failed (AccessDenied): "+denied+". Nothing was imported. The next import starts at "+retryAt.Format(time.RFC3339))
	if want := retryAt.Sub(f.Clock.Now()); f.requeue != want {
		t.Fatalf("requeue after %s, want %s", f.requeue, want)
	}

	t.Run("a sync before the retry tells nothing again", func(t *testing.T) {
		f := newFixture(t)
		f.Logs = noLogs(t)
		f.Storages, f.Jobs, f.AgentPods = []*platformv1.BackupStorage{told}, []*batchv1.Job{job}, []*corev1.Pod{pod}
		f.Clock.SetTime(retryAt.Add(-time.Second))
		f.sync()
		f.ExpectActions()
		agentjobtest.ExpectEvents(t, f.Events())
	})
	retry := importName(jobEnd)
	t.Run("the retry starts after the wait", func(t *testing.T) {
		f := newFixture(t)
		f.Logs = noLogs(t)
		f.Storages, f.Jobs, f.AgentPods = []*platformv1.BackupStorage{told}, []*batchv1.Job{job}, []*corev1.Pod{pod}
		f.Clock.SetTime(retryAt)
		f.sync()
		// The failed Job stays until the cache shows the retry: it names the retry.
		f.ExpectActions("create jobs " + retry)
	})
	t.Run("the failed Job goes once the retry runs", func(t *testing.T) {
		f := newFixture(t)
		f.Logs = noLogs(t)
		f.Storages, f.Jobs, f.AgentPods = []*platformv1.BackupStorage{told}, []*batchv1.Job{job, ownImport(told, retry)}, []*corev1.Pod{pod}
		f.Clock.SetTime(retryAt)
		f.sync()
		f.ExpectActions("delete jobs " + firstImport)
	})
	t.Run("failures that go on wait longer", func(t *testing.T) {
		// Imports have failed since the first failure was told; the next one failed an hour
		// and a half later.
		again := told.DeepCopy()
		later := jobEnd.Add(90 * time.Minute)
		second := agentjobtest.Finish(ownImport(again, retry), false, batchv1.JobReasonPodFailurePolicy, "", later)
		f := newFixture(t)
		f.Logs = noLogs(t)
		f.Storages, f.Jobs = []*platformv1.BackupStorage{again}, []*batchv1.Job{job, second}
		f.Clock.SetTime(later.Add(agentjob.ResultGracePeriod))
		f.sync()
		f.ExpectActions("update backupstorages/status offsite", "delete jobs "+firstImport)
		if want := later.Add(MaxImportRetryInterval).Sub(f.Clock.Now()); f.requeue != want {
			t.Fatalf("requeue after %s, want %s: the longest wait", f.requeue, want)
		}
		expectImported(t, f.status(), metav1.ConditionFalse, ReasonImportFailed, "Job "+retry+" failed")
	})
}

func TestPeriodicImports(t *testing.T) {
	last := agentjobtest.Epoch.Add(5 * time.Minute)
	for _, tc := range []struct {
		name     string
		interval *metav1.Duration
		now      time.Time
		actions  []string
		requeue  time.Duration
	}{
		{"before the interval has passed", &metav1.Duration{Duration: 30 * time.Minute}, last.Add(20 * time.Minute), nil, 10 * time.Minute},
		{"once it has", &metav1.Duration{Duration: 30 * time.Minute}, last.Add(30 * time.Minute), []string{"create jobs " + importName(last)}, 0},
		{"the default of an hour", nil, last.Add(59 * time.Minute), nil, time.Minute},
		{"0s turns them off", &metav1.Duration{}, last.Add(48 * time.Hour), nil, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			bs := availableStorage()
			bs.Spec.SyncInterval, bs.Status.LastImportTime = tc.interval, &metav1.Time{Time: last}
			f.Storages = []*platformv1.BackupStorage{bs}
			f.Clock.SetTime(tc.now)
			f.sync()
			f.ExpectActions(tc.actions...)
			if f.requeue != tc.requeue {
				t.Fatalf("requeue after %s, want %s", f.requeue, tc.requeue)
			}
		})
	}
}

func TestSyncNowAsksForOneImportPerValue(t *testing.T) {
	last := agentjobtest.Epoch.Add(5 * time.Minute)
	handled := func(annotations map[string]string) *platformv1.BackupStorage {
		bs := availableStorage()
		bs.Spec.SyncInterval, bs.Status.LastImportTime = &metav1.Duration{}, &metav1.Time{Time: last}
		bs.Annotations = annotations
		return bs
	}
	t.Run("a new value starts an import and is recorded", func(t *testing.T) {
		f := newFixture(t)
		bs := handled(map[string]string{platformv1.AnnotationSyncNow: "restore-drill", AnnotationSyncedNow: "before"})
		f.Storages = []*platformv1.BackupStorage{bs}
		f.sync()
		f.ExpectActions("create jobs "+importName(last), "patch backupstorages offsite")
		if a := f.CreatedJob().Annotations[platformv1.AnnotationSyncNow]; a != "restore-drill" {
			t.Fatalf("job annotation %q, want the value the import was started for", a)
		}
		if got := f.stored(); got.Annotations[AnnotationSyncedNow] != "restore-drill" || got.Annotations[AnnotationCheckedNow] != "" || !equality.Semantic.DeepEqual(got.Spec, bs.Spec) {
			t.Fatalf("stored annotations %v: want the value recorded and nothing else touched", got.Annotations)
		}
	})
	t.Run("a handled value asks for nothing", func(t *testing.T) {
		f := newFixture(t)
		f.Storages = []*platformv1.BackupStorage{handled(map[string]string{platformv1.AnnotationSyncNow: "restore-drill", AnnotationSyncedNow: "restore-drill"})}
		f.sync()
		f.ExpectActions()
	})
	t.Run("a value set while an import runs waits for its end", func(t *testing.T) {
		f := newFixture(t)
		bs := handled(map[string]string{platformv1.AnnotationSyncNow: "restore-drill"})
		f.Storages, f.Jobs = []*platformv1.BackupStorage{bs}, []*batchv1.Job{ownImport(bs, importName(last))}
		f.sync()
		f.ExpectActions()
	})
	t.Run("a new value does not wait for a failed import's retry", func(t *testing.T) {
		f := newFixture(t)
		bs := handled(map[string]string{platformv1.AnnotationSyncNow: "fixed-the-key"})
		end := last.Add(10 * time.Minute)
		setImported(bs, metav1.ConditionFalse, ReasonImportFailed, "Job "+importName(last)+" failed", end)
		failed := agentjobtest.Finish(ownImport(bs, importName(last)), false, batchv1.JobReasonDeadlineExceeded, "", end)
		f.Storages, f.Jobs = []*platformv1.BackupStorage{bs}, []*batchv1.Job{failed}
		f.Clock.SetTime(end.Add(agentjob.ResultGracePeriod))
		f.sync()
		f.ExpectActions("update backupstorages/status offsite", "create jobs "+importName(end), "patch backupstorages offsite")
		expectImported(t, f.status(), metav1.ConditionFalse, ReasonImportFailed, "did not finish within")
	})
}

func TestAnImportJobOfAnotherStorageIsNotTrusted(t *testing.T) {
	f := newFixture(t)
	bs := availableStorage()
	// The import Job of an earlier BackupStorage "offsite", which garbage collection has not
	// removed yet.
	earlier := agentjobtest.OwnedJob("db", firstImport, "BackupStorage", "offsite", "earlier-uid", ownImport(bs, "x").Labels)
	f.Storages, f.Jobs = []*platformv1.BackupStorage{bs}, []*batchv1.Job{earlier}
	f.Logs = noLogs(t)
	f.sync()
	f.ExpectActions("create jobs "+firstImport, "get jobs "+firstImport, "update backupstorages/status offsite")
	expectImported(t, f.status(), metav1.ConditionFalse, platformv1.ReasonJobConflict, "belongs to another object", "nothing was run")
	if f.requeue != ConflictRetryInterval {
		t.Fatalf("requeue after %s, want %s", f.requeue, ConflictRetryInterval)
	}
	agentjobtest.ExpectEvents(t, f.Events())
}

func TestACheckAfterTheLastImportImportsAgain(t *testing.T) {
	last := agentjobtest.Epoch.Add(5 * time.Minute)
	f := newFixture(t)
	bs := availableStorage()
	bs.Spec.SyncInterval, bs.Status.LastImportTime = &metav1.Duration{Duration: time.Hour}, &metav1.Time{Time: last}
	// The spec changed and was checked again ten minutes after the last import: the storage may
	// point at other archives now, so the import does not wait for the hour.
	bs.Status.LastValidationTime = &metav1.Time{Time: last.Add(10 * time.Minute)}
	f.Storages = []*platformv1.BackupStorage{bs}
	f.Clock.SetTime(last.Add(15 * time.Minute))
	f.sync()
	f.ExpectActions("create jobs " + importName(last))
}
