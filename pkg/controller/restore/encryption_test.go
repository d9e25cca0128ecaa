package restore

import (
	"slices"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	platformv1 "platform.example.com/backup-operator/pkg/apis/platform/v1"
	"platform.example.com/backup-operator/pkg/archive"
	"platform.example.com/backup-operator/pkg/controller/agentjob/agentjobtest"
)

// encryptedBackup is offsiteBackup whose archive is encrypted to two keys, on a storage that
// names the identity's Secret.
func encryptedBackup() (*platformv1.Backup, *platformv1.BackupStorage) {
	b, s := offsiteBackup()
	b.Status.Artifact.Path += archive.EncryptedExtension
	b.Status.Artifact.Encryption = &platformv1.ArtifactEncryption{Type: "age", RecipientFingerprints: []string{"0123456789abcdef", "fedcba9876543210"}}
	s.Spec.Encryption = &platformv1.Encryption{
		IdentitySecretRef: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "backup-identity"}, Key: "key.txt"},
	}
	return b, s
}

func TestEncryptedRestoreGetsTheIdentityFromItsSecret(t *testing.T) {
	f := newFixture(t)
	b, s := encryptedBackup()
	f.Restores, f.Backups, f.Storages = []*platformv1.Restore{newRestore()}, []*platformv1.Backup{b}, []*platformv1.BackupStorage{s}
	f.Claims = []*corev1.PersistentVolumeClaim{agentjobtest.Claim("db", "data-restored", corev1.ReadWriteOnce)}
	f.MustRun()
	f.ExpectActions("create jobs restore-recover", "update restores/status recover")
	c := f.CreatedJob().Spec.Template.Spec.Containers[0]
	if i := slices.Index(c.Args, "--archive"); i < 0 || c.Args[i+1] != "s3://backups-2025/prod/db/data/nightly.tar.zst.age" {
		t.Fatalf("args %q, want the encrypted archive", c.Args)
	}
	if i := slices.Index(c.Args, "--recipient-fingerprints"); i < 0 || c.Args[i+1] != "0123456789abcdef,fedcba9876543210" {
		t.Fatalf("args %q, want the recorded fingerprints, so that a wrong key is named", c.Args)
	}
	want := corev1.EnvVar{Name: archive.EnvIdentity, ValueFrom: &corev1.EnvVarSource{SecretKeyRef: s.Spec.Encryption.IdentitySecretRef}}
	if !slices.ContainsFunc(c.Env, func(e corev1.EnvVar) bool { return equality.Semantic.DeepEqual(e, want) }) {
		t.Fatalf("env %s, want the identity by reference to its Secret", agentjobtest.Describe(c.Env))
	}
}

func TestPlainRestoreGetsNoIdentity(t *testing.T) {
	f := newFixture(t)
	b, s := encryptedBackup()
	b.Status.Artifact.Path, b.Status.Artifact.Encryption = "prod/db/data/nightly.tar.zst", nil
	f.Restores, f.Backups, f.Storages = []*platformv1.Restore{newRestore()}, []*platformv1.Backup{b}, []*platformv1.BackupStorage{s}
	f.Claims = []*corev1.PersistentVolumeClaim{agentjobtest.Claim("db", "data-restored", corev1.ReadWriteOnce)}
	f.MustRun()
	c := f.CreatedJob().Spec.Template.Spec.Containers[0]
	if slices.Contains(c.Args, "--recipient-fingerprints") || slices.ContainsFunc(c.Env, func(e corev1.EnvVar) bool { return e.Name == archive.EnvIdentity }) {
		t.Fatalf("args %q env %s: an archive that was written before encryption was turned on needs no key", c.Args, agentjobtest.Describe(c.Env))
	}
}

func TestEncryptedRestoreWithoutAnIdentityIsRefusedBeforeAnythingIsMade(t *testing.T) {
	f := newFixture(t)
	b, s := encryptedBackup()
	s.Spec.Encryption = nil
	r := newRestore()
	r.Spec.Target.Create = &platformv1.TargetClaimTemplate{}
	f.Restores, f.Backups, f.Storages = []*platformv1.Restore{r}, []*platformv1.Backup{b}, []*platformv1.BackupStorage{s}
	f.MustRun()
	// No claim is created, no Job: only the refusal.
	f.ExpectActions("update restores/status recover")
	got := f.status()
	if got.Status.Phase != platformv1.RestoreFailed {
		t.Fatalf("phase %s, want Failed", got.Status.Phase)
	}
	agentjobtest.ExpectCondition(t, got.Status.Conditions, metav1.ConditionFalse, platformv1.ReasonEncryptionKeyMissing,
		"is encrypted with age to the keys with fingerprints 0123456789abcdef, fedcba9876543210, and BackupStorage offsite (s3://backups-2025) names no identity")
}

// TestEncryptedRestoreWhoseIdentitySecretIsMissingSaysSo: the controller never reads the Secret,
// so the kubelet's refusal to start the pod is what tells, at once, and the deadline ends it.
func TestEncryptedRestoreWhoseIdentitySecretIsMissingSaysSo(t *testing.T) {
	b, s := encryptedBackup()
	r := newRestore()
	r.Status.Phase, r.Status.JobName = platformv1.RestorePending, "restore-recover"
	job := ownJob(r)
	pod := agentjobtest.Waiting(job, "restore-recover-x1", "CreateContainerConfigError", `secret "backup-identity" not found`)

	f := newFixture(t)
	f.Restores, f.Backups, f.Storages, f.Jobs, f.AgentPods = []*platformv1.Restore{r}, []*platformv1.Backup{b}, []*platformv1.BackupStorage{s}, []*batchv1.Job{job}, []*corev1.Pod{pod}
	f.Claims = []*corev1.PersistentVolumeClaim{agentjobtest.Claim("db", "data-restored", corev1.ReadWriteOnce)}
	f.MustRun()
	got := f.status()
	agentjobtest.ExpectCondition(t, got.Status.Conditions, metav1.ConditionUnknown, platformv1.ReasonJobPending, `secret "backup-identity" not found`)
	agentjobtest.ExpectEvents(t, f.Events(), `Warning PodNotStarting Pod restore-recover-x1 of Job restore-recover cannot start (CreateContainerConfigError: secret "backup-identity" not found`)

	f = newFixture(t)
	f.Clock.SetTime(agentjobtest.Epoch.Add(time.Duration(platformv1.DefaultPendingDeadlineSeconds) * time.Second))
	f.Restores, f.Backups, f.Storages, f.Jobs, f.AgentPods = []*platformv1.Restore{got}, []*platformv1.Backup{b}, []*platformv1.BackupStorage{s}, []*batchv1.Job{job}, []*corev1.Pod{pod}
	f.Claims = []*corev1.PersistentVolumeClaim{agentjobtest.Claim("db", "data-restored", corev1.ReadWriteOnce)}
	f.MustRun()
	f.ExpectActions("delete jobs restore-recover", "update restores/status recover")
	agentjobtest.ExpectCondition(t, f.status().Status.Conditions, metav1.ConditionFalse, platformv1.ReasonPodNotStarted, `secret "backup-identity" not found`, "nothing was written")
}
