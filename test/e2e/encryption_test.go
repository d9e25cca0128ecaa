//go:build e2e

package e2e

import (
	"bytes"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"filippo.io/age"
	"github.com/minio/minio-go/v7"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	platformv1 "platform.example.com/backup-operator/pkg/apis/platform/v1"
	"platform.example.com/backup-operator/pkg/archive"
	"platform.example.com/backup-operator/pkg/generated/clientset/versioned"
)

// The client-side encryption of docs/storage.md on the local node: an archive encrypted in the
// agent before it reaches the bucket, restored by a Restore and by Debian's age and tar alone,
// and restores that lack the right key refused with the key they need.

// plaintextMarker is written into the backed-up claim: the bucket must never see it.
const plaintextMarker = "e2e-plaintext-marker-7c2b41"

func newKey(t *testing.T) *age.X25519Identity {
	t.Helper()
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// identitySecret creates (or replaces) the Secret name holding id in key.txt, as age-keygen
// writes it.
func identitySecret(t *testing.T, e *Env, ns, name string, id *age.X25519Identity) {
	t.Helper()
	ctx := testContext(t)
	_ = e.Kube.CoreV1().Secrets(ns).Delete(ctx, name, metav1.DeleteOptions{})
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name}, StringData: map[string]string{
		"key.txt": "# public key: " + id.Recipient().String() + "\n" + id.String() + "\n"}}
	if _, err := e.Kube.CoreV1().Secrets(ns).Create(ctx, secret, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// restoreInto creates the Restore name of backup into the existing claim target, with a short
// pendingDeadlineSeconds, and waits for it to end in want with reason.
func restoreInto(t *testing.T, c versioned.Interface, ns, name, backup, target string, want platformv1.RestorePhase, reason string) *platformv1.Restore {
	t.Helper()
	r := &platformv1.Restore{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: platformv1.RestoreSpec{
		BackupName: backup, Target: platformv1.RestoreTarget{ClaimName: target},
		JobSettings: platformv1.JobSettings{PendingDeadlineSeconds: ptr.To[int64](20)},
	}}
	if _, err := c.PlatformV1().Restores(ns).Create(testContext(t), r, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	return waitRestore(t, c, ns, name, want, reason)
}

func TestEncryptedBackupToS3(t *testing.T) {
	t.Parallel()
	e := requireEnv(t)
	s := requireS3(t)
	for _, tool := range []string{"age", "tar", "sha256sum"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is not installed: the emergency restore is tested with Debian's tools (apt-get install age)", tool)
		}
	}
	c := platformClient(t, e)
	ns := e.Namespace(t)
	ctx := testContext(t)
	owner, escrow, stranger := newKey(t), newKey(t), newKey(t)

	// The owner's public key in the spec, the escrow key in a ConfigMap, the owner's identity
	// in a Secret that only restore pods get.
	s.storage(t, e, c, ns, "sealed", s.Bucket, s.SecretKey, false, nil)
	keys := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "escrow-keys"}, Data: map[string]string{"recipients.txt": "# offline escrow key\n" + escrow.Recipient().String() + "\n"}}
	if _, err := e.Kube.CoreV1().ConfigMaps(ns).Create(ctx, keys, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	identitySecret(t, e, ns, "sealed-identity", owner)
	editStorage(t, c, ns, "sealed", func(bs *platformv1.BackupStorage) {
		bs.Spec.Encryption = &platformv1.Encryption{
			Recipients:             []string{owner.Recipient().String()},
			RecipientsConfigMapRef: &corev1.ConfigMapKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: keys.Name}, Key: "recipients.txt"},
			IdentitySecretRef:      &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "sealed-identity"}, Key: "key.txt"},
		}
	})
	waitStorage(t, c, ns, "sealed", platformv1.StorageAvailable, "Available")

	dataDir := e.HostPathPVC(t, ns, "data", "1Gi")
	writeTree(t, dataDir)
	if err := os.WriteFile(filepath.Join(dataDir, "marker.txt"), []byte(strings.Repeat(plaintextMarker+"\n", 50)), 0o644); err != nil {
		t.Fatal(err)
	}
	backupTo(t, c, ns, "nightly", "data", "sealed")
	b := waitBackup(t, c, ns, "nightly", platformv1.BackupCompleted)
	a := b.Status.Artifact
	key := ns + "/" + ns + "/data/nightly.tar.zst.age"
	fingerprints := []string{archive.Fingerprint(owner.Recipient().String()), archive.Fingerprint(escrow.Recipient().String())}
	if a.Path != key || a.Encryption == nil || a.Encryption.Type != "age" || !reflect.DeepEqual(a.Encryption.RecipientFingerprints, fingerprints) {
		t.Fatalf("artifact %+v (encryption %+v), want %s encrypted to %v", a, a.Encryption, key, fingerprints)
	}

	// What the bucket holds is ciphertext, and the manifest names keys by fingerprint only.
	emergency := t.TempDir()
	for _, k := range []string{key, key + ".sha256", key + ".manifest.json"} {
		if err := s.Client.FGetObject(ctx, s.Bucket, k, filepath.Join(emergency, path.Base(k)), minio.GetObjectOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	object, err := os.ReadFile(filepath.Join(emergency, path.Base(key)))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(object, []byte("age-encryption.org/v1\n")) || bytes.Contains(object, []byte(plaintextMarker)) {
		t.Fatalf("the object in the bucket is not age ciphertext, or holds the plaintext marker")
	}
	manifest, err := os.ReadFile(filepath.Join(emergency, path.Base(key)+".manifest.json"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(manifest, []byte(fingerprints[1])) || bytes.Contains(manifest, []byte(owner.Recipient().String())) {
		t.Fatalf("manifest %s, want the fingerprints and no key", manifest)
	}

	// A Restore, with the owner's identity from the Secret.
	restoredDir := e.HostPathPV(t, ns, "restored", "1Gi")
	class, size := storageClass, resource.MustParse("1Gi")
	createRestore(t, c, ns, "rehearsal", "nightly", platformv1.RestoreTarget{
		ClaimName: "restored", Create: &platformv1.TargetClaimTemplate{StorageClassName: &class, Size: &size},
	}, "")
	r := waitRestore(t, c, ns, "rehearsal", platformv1.RestoreCompleted, "")
	want := snapshot(t, dataDir)
	if got := snapshot(t, restoredDir); r.Status.VerifiedSHA256 != a.SHA256 || !reflect.DeepEqual(want, got) {
		t.Fatalf("restore verified %s (want %s); tree:\nwant %v\ngot  %v", r.Status.VerifiedSHA256, a.SHA256, want, got)
	}

	// The emergency restore with the escrow key kept offline: sha256sum -c, age -d, tar.
	keyFile := filepath.Join(emergency, "escrow.txt")
	if err := os.WriteFile(keyFile, []byte(escrow.String()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	emergencyRestore(t, emergency, path.Base(key), want, `age -d -i "`+keyFile+`" "$1" | tar --zstd -xpf - -C "$2"`)

	// Restores that lack the key write nothing into the claim and say which key they need.
	scratchDir := e.HostPathPVC(t, ns, "scratch", "1Gi")
	identitySecret(t, e, ns, "sealed-identity", stranger)
	r = restoreInto(t, c, ns, "stranger", "nightly", "scratch", platformv1.RestoreFailed, platformv1.ReasonWrongEncryptionKey)
	expectMessage(t, r, archive.Fingerprint(stranger.Recipient().String()), fingerprints[0]+", "+fingerprints[1])

	if err := e.Kube.CoreV1().Secrets(ns).Delete(ctx, "sealed-identity", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	r = restoreInto(t, c, ns, "no-secret", "nightly", "scratch", platformv1.RestoreFailed, platformv1.ReasonPodNotStarted)
	expectMessage(t, r, `secret "sealed-identity" not found`)
	events, err := e.Kube.CoreV1().Events(ns).List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=no-secret,reason=PodNotStarting"})
	if err != nil || len(events.Items) != 1 || !strings.Contains(events.Items[0].Message, "sealed-identity") {
		t.Fatalf("PodNotStarting events %+v (%v), want one naming the Secret", events, err)
	}

	editStorage(t, c, ns, "sealed", func(bs *platformv1.BackupStorage) { bs.Spec.Encryption.IdentitySecretRef = nil })
	Eventually(t, time.Minute, time.Second, "the storage's edit to reach the controller", func() (bool, error) {
		r := restoreInto(t, c, ns, "no-identity-"+time.Now().Format("150405"), "nightly", "scratch", platformv1.RestoreFailed, "")
		cond := meta.FindStatusCondition(r.Status.Conditions, platformv1.ConditionSucceeded)
		return cond.Reason == platformv1.ReasonEncryptionKeyMissing && strings.Contains(cond.Message, fingerprints[1]), nil
	})
	if entries, err := os.ReadDir(scratchDir); err != nil || len(entries) != 0 {
		t.Fatalf("the scratch claim holds %v (%v): a restore without the key wrote into it", entries, err)
	}
}

// expectMessage fails unless r's Succeeded condition says every fragment.
func expectMessage(t *testing.T, r *platformv1.Restore, fragments ...string) {
	t.Helper()
	cond := meta.FindStatusCondition(r.Status.Conditions, platformv1.ConditionSucceeded)
	for _, f := range fragments {
		if cond == nil || !strings.Contains(cond.Message, f) {
			t.Fatalf("Restore %s says %+v, want it to say %q", r.Name, cond, f)
		}
	}
}
