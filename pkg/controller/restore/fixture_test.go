package restore

import (
	"context"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	platformv1 "platform.example.com/backup-operator/pkg/apis/platform/v1"
	"platform.example.com/backup-operator/pkg/controller/agentjob"
	"platform.example.com/backup-operator/pkg/controller/agentjob/agentjobtest"
)

// fixture is the shared controller test fixture, syncing the Restore "db/recover".
type fixture struct{ *agentjobtest.Fixture }

func newFixture(t *testing.T) *fixture {
	return &fixture{agentjobtest.NewFixture(t, func(f *agentjobtest.Fixture) (time.Duration, error) {
		return agentjobtest.Build(f, NewController).sync(context.Background(), "db", "recover")
	})}
}

// completedBackup is the Completed Backup "nightly" of claim "data", archived on the default
// storage claim.
func completedBackup() *platformv1.Backup {
	return &platformv1.Backup{
		ObjectMeta: metav1.ObjectMeta{Namespace: "db", Name: "nightly", UID: "backup-uid", Generation: 1},
		Spec:       platformv1.BackupSpec{PVCName: "data"},
		Status: platformv1.BackupStatus{
			Phase: platformv1.BackupCompleted,
			Artifact: &platformv1.Artifact{
				Path: "db/data/nightly.tar.zst", Size: 1 << 30, SHA256: sum,
				Compression: platformv1.CompressionZstd, SourceBytes: 3 << 30, Files: 113,
			},
		},
	}
}

// newRestore is the Restore "recover" of Backup "nightly" into claim "data-restored".
func newRestore() *platformv1.Restore {
	return &platformv1.Restore{
		ObjectMeta: metav1.ObjectMeta{Namespace: "db", Name: "recover", UID: "restore-uid", Generation: 1,
			CreationTimestamp: metav1.NewTime(agentjobtest.Epoch)},
		Spec: platformv1.RestoreSpec{BackupName: "nightly", Target: platformv1.RestoreTarget{ClaimName: "data-restored"}},
	}
}

// ownJob is the restore Job of r, as the controller made it.
func ownJob(r *platformv1.Restore) *batchv1.Job {
	return agentjobtest.OwnedJob(r.Namespace, JobName(r), "Restore", r.Name, r.UID, map[string]string{
		platformv1.LabelManagedBy: platformv1.ManagedByValue, platformv1.LabelRestore: r.Name,
		platformv1.LabelPVC: r.Spec.Target.ClaimName, agentjob.LabelComponent: agentjob.ComponentRestore,
	})
}

// defaultClaims are the target claim and the default storage claim.
func defaultClaims() []*corev1.PersistentVolumeClaim {
	return []*corev1.PersistentVolumeClaim{
		agentjobtest.Claim("db", "data-restored", corev1.ReadWriteOnce),
		agentjobtest.Claim("db", platformv1.DefaultStorageClaimName, corev1.ReadWriteMany),
	}
}

// status is the Restore whose status the sync wrote.
func (f *fixture) status() *platformv1.Restore {
	f.T.Helper()
	return agentjobtest.Object[*platformv1.Restore](f.T, f.Client.Actions(), "update", "restores/status")
}
