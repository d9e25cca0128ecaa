package backup

import (
	"slices"
	"testing"

	"k8s.io/apimachinery/pkg/runtime"

	platformv1 "platform.example.com/backup-operator/pkg/apis/platform/v1"
	"platform.example.com/backup-operator/pkg/controller/agentjob"
	"platform.example.com/backup-operator/pkg/controller/agentjob/agentjobtest"
)

// pgDump is a source command whose output is one file.
func pgDump(fileName string) *platformv1.CommandSource {
	return &platformv1.CommandSource{Container: "app", Command: []string{"pg_dump", "-Fc", "app"}, Format: platformv1.StreamFormatFile, FileName: fileName}
}

// A file archive is named after its file and compression, so that plain tools read it as what
// it is; a tar keeps its .tar name.
func TestArchivePathOfAFileArchive(t *testing.T) {
	enc := &platformv1.Encryption{Recipients: []string{"age1..."}}
	for _, tc := range []struct {
		cmd  *platformv1.CommandSource
		comp platformv1.Compression
		enc  *platformv1.Encryption
		want string
	}{
		{pgDump(""), "", nil, "db/data/nightly.dump.zst"},
		{pgDump("app.pgdump"), platformv1.CompressionGzip, nil, "db/data/nightly.app.pgdump.gz"},
		{pgDump(""), platformv1.CompressionNone, nil, "db/data/nightly.dump"},
		{pgDump(""), platformv1.CompressionZstd, enc, "db/data/nightly.dump.zst.age"},
		{basebackup(), "", nil, "db/data/nightly.tar.zst"},
	} {
		b := newBackup()
		b.Spec.Source = &platformv1.BackupSource{Command: tc.cmd}
		b.Spec.Compression = tc.comp
		got, err := ArchivePath(b, agentjob.Storage{ClaimName: "backup-storage", Encryption: tc.enc})
		if err != nil || got != tc.want {
			t.Errorf("%s %s encrypted %v: %q (%v), want %q", tc.cmd.Format, tc.comp, tc.enc != nil, got, err, tc.want)
		}
	}
}

// The backup Job of a file archive writes to its file archive's name and records the
// ServiceAccount the command runs as.
func TestFileArchiveBackupJob(t *testing.T) {
	f := newFixture(t)
	b := liveBackup()
	b.Spec.Source.Command = pgDump("")
	f.Backups = []*platformv1.Backup{b}
	f.Claims = defaultClaims()
	f.APIOnly = []runtime.Object{agentjobtest.AppPod("db", "postgres-0", "node-a", "data", false)}
	f.MustRun()
	job := f.CreatedJob()
	args := job.Spec.Template.Spec.Containers[0].Args
	if i := slices.Index(args, "--output"); i < 0 || args[i+1] != "/storage/nightly.dump.zst" {
		t.Errorf("args %q: want --output /storage/nightly.dump.zst", args)
	}
	if i := slices.Index(args, "--exec-service-account"); i < 0 || args[i+1] != "backup-exec" {
		t.Errorf("args %q: want --exec-service-account backup-exec", args)
	}
	if job.Annotations[AnnotationArchiveKey] != "db/data/nightly.dump.zst" {
		t.Errorf("archive key %q", job.Annotations[AnnotationArchiveKey])
	}
}
