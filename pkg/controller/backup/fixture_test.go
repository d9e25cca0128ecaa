package backup

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

// fixture is the shared controller test fixture, syncing the Backup "db/nightly".
type fixture struct{ *agentjobtest.Fixture }

func newFixture(t *testing.T) *fixture {
	return &fixture{agentjobtest.NewFixture(t, func(f *agentjobtest.Fixture) (time.Duration, error) {
		return agentjobtest.Build(f, NewController).sync(context.Background(), "db", "nightly")
	})}
}

// backup is the Backup "nightly" of claim "data" in namespace "db", as a policy would make it.
func newBackup() *platformv1.Backup {
	return &platformv1.Backup{
		ObjectMeta: metav1.ObjectMeta{Namespace: "db", Name: "nightly", UID: "backup-uid", Generation: 1,
			CreationTimestamp: metav1.NewTime(agentjobtest.Epoch)},
		Spec: platformv1.BackupSpec{PVCName: "data"},
	}
}

// withFinalizer is b already synced once: it carries the archive-cleanup finalizer.
func withFinalizer(b *platformv1.Backup) *platformv1.Backup {
	b.Finalizers = []string{platformv1.FinalizerArchiveCleanup}
	return b
}

// ownJob is the backup Job of b, as the controller made it.
func ownJob(b *platformv1.Backup) *batchv1.Job {
	return agentjobtest.OwnedJob(b.Namespace, JobName(b), "Backup", b.Name, b.UID, map[string]string{
		platformv1.LabelManagedBy: platformv1.ManagedByValue, platformv1.LabelBackup: b.Name,
		platformv1.LabelPVC: b.Spec.PVCName, agentjob.LabelComponent: agentjob.ComponentBackup,
	})
}

// defaultClaims are the claim to back up and the default storage claim.
func defaultClaims() []*corev1.PersistentVolumeClaim {
	return []*corev1.PersistentVolumeClaim{
		agentjobtest.Claim("db", "data", corev1.ReadWriteOnce),
		agentjobtest.Claim("db", platformv1.DefaultStorageClaimName, corev1.ReadWriteMany),
	}
}

// status is the Backup whose status the sync wrote.
func (f *fixture) status() *platformv1.Backup {
	f.T.Helper()
	return agentjobtest.Object[*platformv1.Backup](f.T, f.Client.Actions(), "update", "backups/status")
}
