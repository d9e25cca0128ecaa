package backup

import (
	"slices"
	"testing"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	platformv1 "platform.example.com/backup-operator/pkg/apis/platform/v1"
	"platform.example.com/backup-operator/pkg/archive"
	"platform.example.com/backup-operator/pkg/controller/agentjob/agentjobtest"
)

const recipient = "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p"

// encrypted is the storage "offsite" encrypting to a key in its spec and the keys of a
// ConfigMap, with the identity in a Secret.
func encrypted() *platformv1.BackupStorage {
	s := offsite()
	s.Spec.Encryption = &platformv1.Encryption{
		Recipients:             []string{recipient},
		RecipientsConfigMapRef: &corev1.ConfigMapKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "backup-keys"}, Key: "recipients.txt"},
		IdentitySecretRef:      &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "backup-identity"}, Key: "key.txt"},
	}
	return s
}

func TestEncryptedBackupGetsThePublicKeysOnly(t *testing.T) {
	f := newFixture(t)
	f.Backups, f.Claims, f.Storages = []*platformv1.Backup{withFinalizer(toOffsite(newBackup()))}, defaultClaims(), []*platformv1.BackupStorage{encrypted()}
	f.MustRun()
	job := f.CreatedJob()
	c := job.Spec.Template.Spec.Containers[0]
	if i := slices.Index(c.Args, "--output"); i < 0 || c.Args[i+1] != "s3://backups/prod/db/data/nightly.tar.zst.age" {
		t.Fatalf("args %q, want the archive named .tar.zst.age", c.Args)
	}
	if i := slices.Index(c.Args, "--recipient"); i < 0 || c.Args[i+1] != recipient {
		t.Fatalf("args %q, want --recipient %s", c.Args, recipient)
	}
	var keys []corev1.EnvVar
	for _, e := range c.Env {
		if e.Name == archive.EnvRecipients || e.Name == archive.EnvIdentity {
			keys = append(keys, e)
		}
	}
	want := []corev1.EnvVar{{Name: archive.EnvRecipients, ValueFrom: &corev1.EnvVarSource{ConfigMapKeyRef: encrypted().Spec.Encryption.RecipientsConfigMapRef}}}
	if !equality.Semantic.DeepEqual(keys, want) {
		t.Fatalf("key env %s, want the ConfigMap's recipients and never the identity: a pod that writes backups must not read them", agentjobtest.Describe(keys))
	}
	if job.Annotations[AnnotationArchiveKey] != "prod/db/data/nightly.tar.zst.age" {
		t.Fatalf("Job annotations %v", job.Annotations)
	}
}

func TestEncryptedBackupRecordsItsKeys(t *testing.T) {
	f := newFixture(t)
	b := toOffsite(runningBackup())
	job := finishedJob(b)
	job.Annotations = map[string]string{AnnotationArchiveKey: "prod/db/data/nightly.tar.zst.age", AnnotationArchiveBucket: "backups"}
	res := successResult()
	res.Encryption = &archive.Encryption{Type: archive.EncryptionAge, RecipientFingerprints: []string{"0123456789abcdef", "fedcba9876543210"}}
	f.Backups, f.Claims, f.Jobs, f.Storages = []*platformv1.Backup{b}, defaultClaims(), []*batchv1.Job{job}, []*platformv1.BackupStorage{encrypted()}
	f.AgentPods = []*corev1.Pod{agentjobtest.Terminated(agentjobtest.Pod(job, "backup-nightly-x1", "node-a", podStart), 0, res, jobEnd)}
	f.MustRun()
	a := f.status().Status.Artifact
	want := &platformv1.ArtifactEncryption{Type: "age", RecipientFingerprints: []string{"0123456789abcdef", "fedcba9876543210"}}
	if a == nil || a.Path != "prod/db/data/nightly.tar.zst.age" || !equality.Semantic.DeepEqual(a.Encryption, want) {
		t.Fatalf("artifact %s, want the encrypted archive and its recipients' fingerprints", agentjobtest.Describe(a))
	}
}

func finishedJob(b *platformv1.Backup) *batchv1.Job {
	return agentjobtest.Finish(ownJob(b), true, "", "", jobEnd)
}

func TestBackupToAStorageThatOnlyDecryptsIsRefused(t *testing.T) {
	s := encrypted()
	s.Spec.Encryption.Recipients, s.Spec.Encryption.RecipientsConfigMapRef = nil, nil
	f := newFixture(t)
	f.Backups, f.Claims, f.Storages = []*platformv1.Backup{withFinalizer(toOffsite(newBackup()))}, defaultClaims(), []*platformv1.BackupStorage{s}
	f.MustRun()
	f.ExpectActions("update backups/status nightly")
	got := f.status()
	if got.Status.Phase != platformv1.BackupFailed {
		t.Fatalf("phase %s, want Failed", got.Status.Phase)
	}
	agentjobtest.ExpectCondition(t, got.Status.Conditions, metav1.ConditionFalse, platformv1.ReasonInvalidEncryption, "no recipient to encrypt new archives to")
}

func TestInlineStorageEncryption(t *testing.T) {
	f := newFixture(t)
	b := withFinalizer(newBackup())
	b.Spec.Storage = &platformv1.Storage{
		PersistentVolumeClaim: &platformv1.StorageVolumeClaim{ClaimName: platformv1.DefaultStorageClaimName},
		Encryption:            &platformv1.Encryption{Recipients: []string{recipient}},
	}
	f.Backups, f.Claims = []*platformv1.Backup{b}, defaultClaims()
	f.MustRun()
	c := f.CreatedJob().Spec.Template.Spec.Containers[0]
	if i := slices.Index(c.Args, "--output"); i < 0 || c.Args[i+1] != "/storage/nightly.tar.zst.age" || !slices.Contains(c.Args, recipient) {
		t.Fatalf("args %q, want an encrypted archive on the claim", c.Args)
	}
}
