package backupstorage

import (
	"context"
	"io"
	"strings"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	platformv1 "platform.example.com/backup-operator/pkg/apis/platform/v1"
	"platform.example.com/backup-operator/pkg/controller"
	"platform.example.com/backup-operator/pkg/controller/agentjob"
	"platform.example.com/backup-operator/pkg/controller/agentjob/agentjobtest"
	"platform.example.com/backup-operator/pkg/generated/clientset/versioned/fake"
)

// fixture is the shared controller test fixture, syncing the BackupStorage "db/offsite", which
// it seeds into the platform client and the informer's cache besides what the shared fixture
// seeds.
type fixture struct {
	*agentjobtest.Fixture
	Storages []*platformv1.BackupStorage
	// Logs, when set, stands for the API server's pod logs: the fake clientset's are a fixed
	// text.
	Logs    func(ctx context.Context, namespace, pod, container string) (io.ReadCloser, error)
	requeue time.Duration
}

func newFixture(t *testing.T) *fixture {
	f := &fixture{}
	f.Fixture = agentjobtest.NewFixture(t, func(af *agentjobtest.Fixture) (time.Duration, error) {
		c := agentjobtest.Build(af, func(d controller.Deps) (*Controller, error) {
			c, err := NewController(d)
			if f.Logs != nil {
				c.logs = f.Logs
			}
			for _, bs := range f.Storages {
				if err := d.Client.(*fake.Clientset).Tracker().Add(bs); err != nil {
					t.Fatal(err)
				}
				if err := d.Informers.Platform().V1().BackupStorages().Informer().GetIndexer().Add(bs); err != nil {
					t.Fatal(err)
				}
			}
			return c, err
		})
		return c.sync(context.Background(), "db", "offsite")
	})
	return f
}

// sync runs one sync that must succeed and keeps its requeue.
func (f *fixture) sync() {
	f.T.Helper()
	f.requeue = f.MustRun()
}

const storageUID types.UID = "storage-uid"

// s3Storage is the BackupStorage "offsite": a prefix of a bucket reached with credentials from
// Secret "s3-creds" and a CA bundle from ConfigMap "s3-ca", never checked, without periodic
// imports.
func s3Storage() *platformv1.BackupStorage {
	return &platformv1.BackupStorage{
		ObjectMeta: metav1.ObjectMeta{Namespace: "db", Name: "offsite", UID: storageUID, Generation: 1,
			CreationTimestamp: metav1.NewTime(agentjobtest.Epoch)},
		Spec: platformv1.BackupStorageSpec{
			AccessMode:   platformv1.StorageReadWrite,
			SyncInterval: &metav1.Duration{},
			S3: &platformv1.S3Storage{
				Endpoint: "https://s3.example.com/", Region: "eu-west-1", Bucket: "backups", Prefix: "prod", ForcePathStyle: true,
				CredentialsSecretRef: &platformv1.S3CredentialsSecretRef{Name: "s3-creds", AccessKeyIDKey: "id", SecretAccessKeyKey: "secret"},
				CABundle: &platformv1.CABundleSource{ConfigMapKeyRef: &corev1.ConfigMapKeySelector{
					LocalObjectReference: corev1.LocalObjectReference{Name: "s3-ca"}, Key: "bundle.pem"}},
				ObjectLock: &platformv1.ObjectLock{Mode: platformv1.ObjectLockGovernance, RetainDays: 30},
			},
		},
	}
}

// claimStorage is the BackupStorage "offsite" on directory team-a of claim "archive".
func claimStorage(mode platformv1.StorageAccessMode) *platformv1.BackupStorage {
	bs := s3Storage()
	bs.Spec = platformv1.BackupStorageSpec{AccessMode: mode, SyncInterval: bs.Spec.SyncInterval,
		PersistentVolumeClaim: &platformv1.StorageVolumeClaim{ClaimName: "archive", SubPath: "team-a"}}
	return bs
}

// validatedAt returns bs as a check of its generation that ended at t left it, with an import
// that ended at t too.
func validatedAt(bs *platformv1.BackupStorage, phase platformv1.BackupStoragePhase, t time.Time) *platformv1.BackupStorage {
	bs = bs.DeepCopy()
	bs.Status.LastImportTime = &metav1.Time{Time: t}
	bs.Status.ObservedGeneration, bs.Status.ValidatedGeneration = bs.Generation, bs.Generation
	bs.Status.Backend, bs.Status.Location = describe(&bs.Spec)
	bs.Status.Phase = phase
	bs.Status.LastValidationTime = &metav1.Time{Time: t}
	status, reason := metav1.ConditionTrue, ReasonAvailable
	if phase == platformv1.StorageUnavailable {
		status, reason = metav1.ConditionFalse, string(platformv1.ReasonJobFailed)
	}
	setReady(bs, status, reason, "checked", t)
	return bs
}

// ownJob is the check Job called name of bs, as the controller made it.
func ownJob(bs *platformv1.BackupStorage, name string) *batchv1.Job {
	return agentjobtest.OwnedJob(bs.Namespace, name, "BackupStorage", bs.Name, bs.UID, map[string]string{
		platformv1.LabelManagedBy: platformv1.ManagedByValue, LabelBackupStorage: bs.Name, agentjob.LabelComponent: ComponentStorageCheck,
	})
}

// status is the BackupStorage whose status the sync wrote.
func (f *fixture) status() *platformv1.BackupStorage {
	f.T.Helper()
	return agentjobtest.Object[*platformv1.BackupStorage](f.T, f.Client.Actions(), "update", "backupstorages/status")
}

// stored is the BackupStorage "offsite" as the platform client holds it after the sync.
func (f *fixture) stored() *platformv1.BackupStorage {
	f.T.Helper()
	obj, err := f.Client.Tracker().Get(platformv1.SchemeGroupVersion.WithResource("backupstorages"), "db", "offsite")
	if err != nil {
		f.T.Fatal(err)
	}
	return obj.(*platformv1.BackupStorage)
}

// expectReady fails the test unless the Ready condition has status and reason and its message
// contains every fragment.
func expectReady(t *testing.T, bs *platformv1.BackupStorage, status metav1.ConditionStatus, reason string, fragments ...string) {
	t.Helper()
	c := meta.FindStatusCondition(bs.Status.Conditions, platformv1.ConditionReady)
	if c == nil {
		t.Fatalf("no Ready condition in %s", agentjobtest.Describe(bs.Status))
	}
	if c.Status != status || c.Reason != reason {
		t.Fatalf("Ready is %s/%s (%q), want %s/%s", c.Status, c.Reason, c.Message, status, reason)
	}
	for _, fr := range fragments {
		if !strings.Contains(c.Message, fr) {
			t.Fatalf("Ready message %q does not say %q", c.Message, fr)
		}
	}
}
