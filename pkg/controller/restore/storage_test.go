package restore

import (
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	platformv1 "platform.example.com/backup-operator/pkg/apis/platform/v1"
	"platform.example.com/backup-operator/pkg/controller/agentjob/agentjobtest"
)

// offsiteBackup is completedBackup kept in the bucket "backups-2025" of the BackupStorage
// "offsite", which now points at the bucket "backups".
func offsiteBackup() (*platformv1.Backup, *platformv1.BackupStorage) {
	b := completedBackup()
	b.Spec.Storage = &platformv1.Storage{Name: "offsite"}
	b.Status.Artifact.Path, b.Status.Artifact.StorageName, b.Status.Artifact.Bucket = "prod/db/data/nightly.tar.zst", "offsite", "backups-2025"
	s := &platformv1.BackupStorage{
		ObjectMeta: metav1.ObjectMeta{Namespace: "db", Name: "offsite"},
		Spec: platformv1.BackupStorageSpec{AccessMode: platformv1.StorageReadOnly, S3: &platformv1.S3Storage{
			Endpoint: "https://s3.example.test", Bucket: "backups",
			CredentialsSecretRef: &platformv1.S3CredentialsSecretRef{Name: "s3-creds"},
			ObjectLock:           &platformv1.ObjectLock{Mode: platformv1.ObjectLockCompliance, RetainDays: 7},
		}},
	}
	return b, s
}

func TestRestoreFromObjectStorageReadsTheRecordedBucket(t *testing.T) {
	f := newFixture(t)
	b, s := offsiteBackup()
	f.Restores, f.Backups, f.Storages = []*platformv1.Restore{newRestore()}, []*platformv1.Backup{b}, []*platformv1.BackupStorage{s}
	f.Claims = []*corev1.PersistentVolumeClaim{agentjobtest.Claim("db", "data-restored", corev1.ReadWriteOnce)}
	f.MustRun()
	f.ExpectActions("create jobs restore-recover", "update restores/status recover")
	c := f.CreatedJob().Spec.Template.Spec.Containers[0]
	// A restore from a ReadOnly storage is allowed; it writes nothing there, so no retention
	// is passed on.
	wantArgs := []string{"agent", "restore", "--archive", "s3://backups-2025/prod/db/data/nightly.tar.zst", "--target", "/target", "--sha256", sum, "--overwrite", "refuse",
		"--s3-endpoint", "https://s3.example.test", "--s3-read-only"}
	if !slices.Equal(c.Args, wantArgs) {
		t.Fatalf("args %q\nwant %q", c.Args, wantArgs)
	}
	if len(c.VolumeMounts) != 1 || c.VolumeMounts[0].Name != "target" || len(c.Env) != 2 || c.Env[0].ValueFrom.SecretKeyRef.Key != "AWS_ACCESS_KEY_ID" {
		t.Fatalf("mounts %s env %s, want only the target mounted and the default credential keys", agentjobtest.Describe(c.VolumeMounts), agentjobtest.Describe(c.Env))
	}
}

func TestRestoreFromAMissingBackupStorageIsRefused(t *testing.T) {
	f := newFixture(t)
	b, _ := offsiteBackup()
	f.Restores, f.Backups, f.Claims = []*platformv1.Restore{newRestore()}, []*platformv1.Backup{b}, defaultClaims()
	f.MustRun()
	f.ExpectActions("update restores/status recover")
	got := f.status()
	if got.Status.Phase != platformv1.RestoreFailed {
		t.Fatalf("phase %s, want Failed", got.Status.Phase)
	}
	agentjobtest.ExpectCondition(t, got.Status.Conditions, metav1.ConditionFalse, platformv1.ReasonStorageNotFound, "BackupStorage offsite does not exist", "prod/db/data/nightly.tar.zst")
}
