package backupstorage

import (
	"testing"

	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	platformv1 "platform.example.com/backup-operator/pkg/apis/platform/v1"
	"platform.example.com/backup-operator/pkg/archive"
	"platform.example.com/backup-operator/pkg/controller/agentjob/agentjobtest"
	"platform.example.com/backup-operator/pkg/storage"
)

// TestEncryptedArchivesAreImportedWithTheirKeys: a Backup imported from an encrypted archive
// records the fingerprints its manifest names, so that a restore asks for the right identity;
// an archive whose name and manifest disagree about encryption is skipped.
func TestEncryptedArchivesAreImportedWithTheirKeys(t *testing.T) {
	f := newFixture(t)
	bs := availableStorage()
	enc := &archive.Encryption{Type: archive.EncryptionAge, RecipientFingerprints: []string{"0123456789abcdef"}}
	sealed := manifest("sealed", "data")
	sealed.ManifestVersion, sealed.Archive, sealed.Encryption = 2, "sealed.tar.zst.age", enc
	renamed := manifest("renamed", "data")
	renamed.ManifestVersion, renamed.Encryption = 2, enc
	archives := []storage.Listed{
		listed("prod/db/data/renamed.tar.zst", renamed),
		listed("prod/db/data/sealed.tar.zst.age", sealed),
		listed("prod/db/data/unsealed.tar.zst.age", manifest("unsealed", "data")),
	}
	_, pod := f.importEnded(bs, 0, listResult(len(archives)))
	f.Logs = logsOf(t, pod.Name, podLog(t, listResult(len(archives)), archives...))
	f.sync()
	f.ExpectActions("create backups sealed", "update backups/status sealed", "update backupstorages/status offsite")

	b := f.storedBackup("sealed")
	want := &platformv1.ArtifactEncryption{Type: "age", RecipientFingerprints: []string{"0123456789abcdef"}}
	if a := b.Status.Artifact; a.Path != "prod/db/data/sealed.tar.zst.age" || !equality.Semantic.DeepEqual(a.Encryption, want) {
		t.Fatalf("artifact %s, want the encrypted archive with its recipients' fingerprints", agentjobtest.Describe(a))
	}
	expectImported(t, f.status(), metav1.ConditionTrue, platformv1.ReasonImported, "imported 1 Backup",
		"records encryption but its name does not end in .age", "ends in .age but its manifest records no encryption")
}
