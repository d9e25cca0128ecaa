package backup

import (
	"slices"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	platformv1 "platform.example.com/backup-operator/pkg/apis/platform/v1"
	"platform.example.com/backup-operator/pkg/controller/agentjob/agentjobtest"
)

// importedBackup is the Backup "nightly" as the BackupStorage controller creates it from an
// archive found on the storage "offsite", before it writes its status.
func importedBackup() *platformv1.Backup {
	b := withFinalizer(toOffsite(newBackup()))
	b.Labels = map[string]string{platformv1.LabelImported: "true", platformv1.LabelPVC: "data"}
	b.Annotations = map[string]string{platformv1.AnnotationImportedFrom: "offsite"}
	return b
}

func TestAnImportedBackupWaitsForItsStatus(t *testing.T) {
	for _, tc := range []struct {
		name string
		b    *platformv1.Backup
	}{
		{"with the finalizer of a ReadWrite storage", importedBackup()},
		{"without one, from a ReadOnly storage", func() *platformv1.Backup {
			b := importedBackup()
			b.Finalizers = nil
			return b
		}()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			// A cluster recovering from the bucket may not have the claim at all: the Backup
			// must not run, nor fail, nor get a finalizer.
			f.Backups, f.Storages = []*platformv1.Backup{tc.b}, []*platformv1.BackupStorage{offsite()}
			f.MustRun()
			f.ExpectActions()
			agentjobtest.ExpectEvents(t, f.Events())
		})
	}
}

func TestADeletedImportedBackupDeletesItsArchive(t *testing.T) {
	f := newFixture(t)
	b := importedBackup()
	b.DeletionTimestamp = &metav1.Time{Time: agentjobtest.Epoch.Add(time.Hour)}
	b.Status.Phase = platformv1.BackupCompleted
	b.Status.Artifact = &platformv1.Artifact{Path: "prod/db/data/nightly.tar.zst", StorageName: "offsite", Bucket: "backups-old",
		SHA256: sum, Compression: platformv1.CompressionZstd}
	f.Backups, f.Storages = []*platformv1.Backup{b}, []*platformv1.BackupStorage{offsite()}
	f.MustRun()
	f.ExpectActions("create jobs " + CleanupJobName(b))
	c := f.CreatedJob().Spec.Template.Spec.Containers[0]
	if i := slices.Index(c.Args, "--archive"); i < 0 || c.Args[i+1] != "s3://backups-old/prod/db/data/nightly.tar.zst" {
		t.Fatalf("cleanup args %q, want the imported archive in the bucket it was found in", c.Args)
	}
}

func TestAnImportedBackupDeletedBeforeItsStatusLeavesTheArchive(t *testing.T) {
	f := newFixture(t)
	b := importedBackup()
	b.DeletionTimestamp = &metav1.Time{Time: agentjobtest.Epoch.Add(time.Hour)}
	f.Backups, f.Storages = []*platformv1.Backup{b}, []*platformv1.BackupStorage{offsite()}
	f.MustRun()
	// Nothing says which archive it stands for: the finalizer goes, the archive stays, and the
	// next import finds it again.
	f.ExpectActions("update backups nightly")
	if got := agentjobtest.Object[*platformv1.Backup](t, f.Client.Actions(), "update", "backups"); len(got.Finalizers) != 0 {
		t.Fatalf("finalizers %v, want the archive-cleanup finalizer released", got.Finalizers)
	}
}
