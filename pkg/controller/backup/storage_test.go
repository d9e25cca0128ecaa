package backup

import (
	"errors"
	"slices"
	"testing"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	kubefake "k8s.io/client-go/kubernetes/fake"
	clienttesting "k8s.io/client-go/testing"

	"platform.example.com/backup-operator/pkg/agent"
	platformv1 "platform.example.com/backup-operator/pkg/apis/platform/v1"
	"platform.example.com/backup-operator/pkg/controller/agentjob/agentjobtest"
)

// offsite is the BackupStorage "offsite" in namespace db: a bucket over TLS with its own CA,
// credentials in a Secret, and object lock.
func offsite() *platformv1.BackupStorage {
	return &platformv1.BackupStorage{
		ObjectMeta: metav1.ObjectMeta{Namespace: "db", Name: "offsite", UID: "storage-uid", Generation: 1},
		Spec: platformv1.BackupStorageSpec{
			AccessMode: platformv1.StorageReadWrite,
			S3: &platformv1.S3Storage{
				Endpoint: "https://s3.example.test:7070/", Region: "eu-west-1", Bucket: "backups", Prefix: "prod",
				ForcePathStyle:       true,
				CredentialsSecretRef: &platformv1.S3CredentialsSecretRef{Name: "s3-creds", AccessKeyIDKey: "id", SecretAccessKeyKey: "secret"},
				CABundle: &platformv1.CABundleSource{ConfigMapKeyRef: &corev1.ConfigMapKeySelector{
					LocalObjectReference: corev1.LocalObjectReference{Name: "s3-ca"}, Key: "ca.pem"}},
				ObjectLock: &platformv1.ObjectLock{Mode: platformv1.ObjectLockGovernance, RetainDays: 30},
			},
		},
	}
}

// toOffsite is b writing to the BackupStorage "offsite".
func toOffsite(b *platformv1.Backup) *platformv1.Backup {
	b.Spec.Storage = &platformv1.Storage{Name: "offsite"}
	return b
}

func TestBackupToObjectStorageRunsAJobThatReachesTheBucket(t *testing.T) {
	f := newFixture(t)
	claim := agentjobtest.Claim("db", "data", corev1.ReadWriteOnce)
	claim.Status.Capacity = corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("100Gi")}
	// No storage claim exists: an S3 backup needs none.
	f.Backups, f.Claims, f.Storages = []*platformv1.Backup{withFinalizer(toOffsite(newBackup()))}, []*corev1.PersistentVolumeClaim{claim}, []*platformv1.BackupStorage{offsite()}
	f.MustRun()
	job := f.CreatedJob()

	c := job.Spec.Template.Spec.Containers[0]
	wantArgs := []string{"agent", "backup", "--source", "/source", "--output", "s3://backups/prod/db/data/nightly.tar.zst", "--compression", "zstd",
		"--namespace", "db", "--pvc", "data", "--policy=", "--backup", "nightly", "--backup-uid", "backup-uid",
		"--s3-endpoint", "https://s3.example.test:7070", "--s3-region", "eu-west-1", "--s3-force-path-style",
		"--s3-object-lock-mode", "GOVERNANCE", "--s3-object-lock-days", "30",
		"--s3-ca-file", "/etc/backup-operator/s3-ca/ca.crt", "--size-hint", "107374182400"}
	if !slices.Equal(c.Args, wantArgs) {
		t.Fatalf("args %q\nwant %q", c.Args, wantArgs)
	}
	secretKey := func(key string) *corev1.EnvVarSource {
		return &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "s3-creds"}, Key: key}}
	}
	wantEnv := []corev1.EnvVar{{Name: "AWS_ACCESS_KEY_ID", ValueFrom: secretKey("id")}, {Name: "AWS_SECRET_ACCESS_KEY", ValueFrom: secretKey("secret")}}
	if !equality.Semantic.DeepEqual(c.Env, wantEnv) {
		t.Fatalf("env %s, want the credentials from the Secret by reference only", agentjobtest.Describe(c.Env))
	}
	pod := job.Spec.Template.Spec
	wantVolumes := []corev1.Volume{
		{Name: "source", VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "data", ReadOnly: true}}},
		{Name: "s3-ca", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
			LocalObjectReference: corev1.LocalObjectReference{Name: "s3-ca"}, Items: []corev1.KeyToPath{{Key: "ca.pem", Path: "ca.crt"}}}}},
	}
	wantMounts := []corev1.VolumeMount{{Name: "source", MountPath: "/source", ReadOnly: true}, {Name: "s3-ca", MountPath: "/etc/backup-operator/s3-ca", ReadOnly: true}}
	if !equality.Semantic.DeepEqual(pod.Volumes, wantVolumes) || !equality.Semantic.DeepEqual(c.VolumeMounts, wantMounts) {
		t.Fatalf("volumes %s mounts %s, want the source and the CA bundle, no storage claim", agentjobtest.Describe(pod.Volumes), agentjobtest.Describe(c.VolumeMounts))
	}
	if job.Annotations[AnnotationArchiveKey] != "prod/db/data/nightly.tar.zst" || job.Annotations[AnnotationArchiveBucket] != "backups" {
		t.Fatalf("Job annotations %v, want the archive's key and bucket", job.Annotations)
	}
	agentjobtest.ExpectEvents(t, f.Events(), "Normal JobCreated Created Job backup-nightly to archive PersistentVolumeClaim data to prod/db/data/nightly.tar.zst on BackupStorage offsite (s3://backups/prod)")
}

func TestBackupToObjectStorageRecordsWhereItsArchiveIs(t *testing.T) {
	f := newFixture(t)
	b := toOffsite(runningBackup())
	job := agentjobtest.Finish(ownJob(b), true, "", "", jobEnd)
	// The Job, not the storage's current spec, says where the archive went: the storage may
	// point elsewhere by now.
	job.Annotations = map[string]string{AnnotationArchiveKey: "prod/db/data/nightly.tar.zst", AnnotationArchiveBucket: "backups-2025"}
	f.Backups, f.Claims, f.Jobs, f.Storages = []*platformv1.Backup{b}, defaultClaims(), []*batchv1.Job{job}, []*platformv1.BackupStorage{offsite()}
	f.AgentPods = []*corev1.Pod{agentjobtest.Terminated(agentjobtest.Pod(job, "backup-nightly-x1", "node-a", podStart), 0, successResult(), jobEnd)}
	f.MustRun()
	a := f.status().Status.Artifact
	if a == nil || a.Path != "prod/db/data/nightly.tar.zst" || a.StorageName != "offsite" || a.Bucket != "backups-2025" {
		t.Fatalf("artifact %s, want key prod/db/data/nightly.tar.zst in bucket backups-2025 of storage offsite", agentjobtest.Describe(a))
	}
}

func TestBackupStorageRefusals(t *testing.T) {
	readOnly := offsite()
	readOnly.Spec.AccessMode = platformv1.StorageReadOnly
	for _, tc := range []struct {
		name     string
		storages []*platformv1.BackupStorage
		reason   string
		message  string
	}{
		{"missing", nil, platformv1.ReasonStorageNotFound, "BackupStorage offsite does not exist in namespace db"},
		{"read-only", []*platformv1.BackupStorage{readOnly}, platformv1.ReasonStorageReadOnly, "is ReadOnly: it serves restores only"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			f.Backups, f.Claims, f.Storages = []*platformv1.Backup{withFinalizer(toOffsite(newBackup()))}, defaultClaims(), tc.storages
			f.MustRun()
			f.ExpectActions("update backups/status nightly")
			got := f.status()
			if got.Status.Phase != platformv1.BackupFailed {
				t.Fatalf("phase %s, want Failed", got.Status.Phase)
			}
			agentjobtest.ExpectCondition(t, got.Status.Conditions, metav1.ConditionFalse, tc.reason, tc.message)
		})
	}
}

func TestDeletedObjectStorageBackupIsCleanedUpInTheBucket(t *testing.T) {
	f := newFixture(t)
	b := toOffsite(deletedBackup())
	b.Status.Artifact.Path, b.Status.Artifact.StorageName, b.Status.Artifact.Bucket = "prod/db/data/nightly.tar.zst", "offsite", "backups-2025"
	f.Backups, f.Storages = []*platformv1.Backup{b}, []*platformv1.BackupStorage{offsite()}
	f.MustRun()
	c := f.CreatedJob().Spec.Template.Spec.Containers[0]
	if i := slices.Index(c.Args, "--archive"); i < 0 || c.Args[i+1] != "s3://backups-2025/prod/db/data/nightly.tar.zst" {
		t.Fatalf("cleanup args %q, want the archive in the bucket the Backup recorded", c.Args)
	}
	if len(c.Env) != 2 || len(c.VolumeMounts) != 1 {
		t.Fatalf("cleanup env %s mounts %s, want the credentials and the CA bundle", agentjobtest.Describe(c.Env), agentjobtest.Describe(c.VolumeMounts))
	}
}

func TestObjectLockedArchiveReleasesTheBackupWithAWarning(t *testing.T) {
	f := newFixture(t)
	b := toOffsite(deletedBackup())
	b.Status.Artifact.Path = "prod/db/data/nightly.tar.zst"
	job := agentjobtest.Finish(cleanupJob(b), false, batchv1.JobReasonPodFailurePolicy, "", jobEnd)
	until := metav1.NewTime(agentjobtest.Epoch.AddDate(0, 0, 30)).Time
	result := agent.DeleteResult{Status: agent.Status{Operation: agent.OpDelete, Error: "kept by object lock", Reason: agent.ArchiveRetained}}
	result.RetainedUntil = &until
	f.Backups, f.Storages, f.Jobs = []*platformv1.Backup{b}, []*platformv1.BackupStorage{offsite()}, []*batchv1.Job{job}
	f.AgentPods = []*corev1.Pod{agentjobtest.Terminated(agentjobtest.Pod(job, "cleanup-nightly-x1", "node-a", podStart), 1, result, jobEnd)}
	f.MustRun()
	agentjobtest.ExpectEvents(t, f.Events(), "Warning ArchiveLocked Archive prod/db/data/nightly.tar.zst on BackupStorage offsite (s3://backups/prod) is kept by object lock until 2026-03-31T02:00:00Z")
	got := agentjobtest.Object[*platformv1.Backup](t, f.Client.Actions(), "update", "backups")
	if len(got.Finalizers) != 0 {
		t.Fatalf("finalizers %v, want the archive-cleanup finalizer released", got.Finalizers)
	}
}

func TestArchivesOutliveTheirNamespace(t *testing.T) {
	f := newFixture(t)
	b := toOffsite(deletedBackup())
	f.Backups, f.Storages = []*platformv1.Backup{b}, []*platformv1.BackupStorage{offsite()}
	// The namespace lifecycle admission refuses every new object in a namespace being deleted.
	f.React = func(c *kubefake.Clientset) {
		c.PrependReactor("create", "jobs", func(clienttesting.Action) (bool, runtime.Object, error) {
			err := apierrors.NewForbidden(batchv1.Resource("jobs"), "cleanup-nightly", errors.New("unable to create new content in namespace db because it is being terminated"))
			err.ErrStatus.Details.Causes = []metav1.StatusCause{{Type: corev1.NamespaceTerminatingCause, Message: "namespace db is being terminated", Field: "metadata.namespace"}}
			return true, nil, err
		})
	}
	f.MustRun()
	agentjobtest.ExpectEvents(t, f.Events(), "Normal ArchiveRetained Kept archive db/data/nightly.tar.zst on BackupStorage offsite (s3://backups/prod): namespace db is being deleted")
	got := agentjobtest.Object[*platformv1.Backup](t, f.Client.Actions(), "update", "backups")
	if len(got.Finalizers) != 0 {
		t.Fatalf("finalizers %v, want the archive-cleanup finalizer released so the namespace can go", got.Finalizers)
	}
}
