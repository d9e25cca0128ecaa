package agent

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"filippo.io/age"

	"platform.example.com/backup-operator/pkg/archive"
)

// TestEncryptedBackupAndRestore runs the agent as the Jobs do: the backup gets public keys from a
// flag and from the environment (a ConfigMap), the restore its identity from the environment (a
// Secret), and a wrong identity is refused with the fingerprints of the keys that would work.
func TestEncryptedBackupAndRestore(t *testing.T) {
	owner, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	escrow, _ := age.GenerateX25519Identity()
	stranger, _ := age.GenerateX25519Identity()
	src, store := t.TempDir(), t.TempDir()
	writeFiles(t, src, map[string]string{"PG_VERSION": "15\n", "base/1/1259": strings.Repeat("secret page ", 4096)})
	out := filepath.Join(store, "data.tar.zst.age")

	t.Setenv(archive.EnvRecipients, "# from the ConfigMap\n"+escrow.Recipient().String()+"\n")
	var b BackupResult
	code, stderr := run(t, &b, "backup", "--source", src, "--output", out, "--recipient", owner.Recipient().String())
	if code != ExitOK {
		t.Fatalf("backup exit %d: %s", code, stderr)
	}
	want := []string{archive.Fingerprint(owner.Recipient().String()), archive.Fingerprint(escrow.Recipient().String())}
	if b.Encryption == nil || strings.Join(b.Encryption.RecipientFingerprints, ",") != strings.Join(want, ",") {
		t.Fatalf("encryption %+v, want both recipients' fingerprints %v", b.Encryption, want)
	}
	data, err := os.ReadFile(out)
	if err != nil || strings.Contains(string(data), "secret page") {
		t.Fatalf("the archive holds plaintext (%v)", err)
	}
	os.Unsetenv(archive.EnvRecipients)

	// Without recipients, an encrypted name is refused: nothing is written unencrypted.
	var refused BackupResult
	if code, _ := run(t, &refused, "backup", "--source", src, "--output", filepath.Join(store, "other.tar.zst.age")); code != ExitUsage || refused.Reason != InvalidArgument {
		t.Fatalf("backup without recipients: exit %d %+v", code, refused.Status)
	}

	t.Setenv(archive.EnvIdentity, stranger.String())
	var wrong RestoreResult
	code, _ = run(t, &wrong, "restore", "--archive", out, "--target", t.TempDir(), "--sha256", b.SHA256,
		"--recipient-fingerprints", strings.Join(b.Encryption.RecipientFingerprints, ","))
	if code != ExitRefused || wrong.Reason != WrongEncryptionKey || !strings.Contains(wrong.Error, want[0]+", "+want[1]) || strings.Contains(wrong.Error, "AGE-SECRET") {
		t.Fatalf("restore with a stranger's key: exit %d %+v", code, wrong.Status)
	}

	keyFile := filepath.Join(t.TempDir(), "key.txt")
	if err := os.WriteFile(keyFile, []byte(escrow.String()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	os.Unsetenv(archive.EnvIdentity)
	dst := t.TempDir()
	var r RestoreResult
	if code, stderr := run(t, &r, "restore", "--archive", out, "--target", dst, "--sha256", b.SHA256, "--identity-file", keyFile); code != ExitOK || r.Encryption != archive.EncryptionAge {
		t.Fatalf("restore with the escrow key: exit %d %+v: %s", code, r, stderr)
	}
	if got, _ := os.ReadFile(filepath.Join(dst, "PG_VERSION")); string(got) != "15\n" {
		t.Errorf("restored PG_VERSION = %q", got)
	}

	var v VerifyResult
	if code, _ := run(t, &v, "verify", "--archive", out, "--sha256", b.SHA256); code != ExitOK || v.ContentsChecked || v.Encryption != archive.EncryptionAge {
		t.Fatalf("verify without a key: exit %d %+v, want the checksum checked and the contents not", code, v)
	}
}
