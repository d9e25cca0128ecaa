package backupstorage

import (
	"slices"
	"strings"
	"testing"

	platformv1 "platform.example.com/backup-operator/pkg/apis/platform/v1"
	"platform.example.com/backup-operator/pkg/archive"
	"platform.example.com/backup-operator/pkg/controller/agentjob/agentjobtest"
)

// fileManifest is the manifest of pg_dump's file archive of Backup backup, restored as dump.
func fileManifest(backup string) archive.Manifest {
	m := manifest(backup, "data")
	m.Archive, m.Format, m.FileName = backup+".dump.zst", archive.FormatFile, "dump"
	m.Command, m.Container, m.ExecServiceAccountName = []string{"pg_dump", "-Fc", "app"}, "postgres", "db-backup"
	m.Files, m.Directories, m.Symlinks, m.Hardlinks = 1, 0, 0, 0
	return m
}

// A file archive's manifest rebuilds the source command, so that a restore in a cluster that
// has only the storage is told the format and the file name; a manifest that cannot say how the
// file archive was made, or names another file than its key, is skipped.
func TestImportOfAFileArchive(t *testing.T) {
	bs := availableStorage()
	at := listing{where: "s3://backups/prod/db", dir: "prod/db", bucket: "backups"}
	b, status, why := importable(bs, at, listed("prod/db/data/nightly.dump.zst", fileManifest("nightly")), agentjobtest.Epoch)
	if why != "" {
		t.Fatalf("skipped: %s", why)
	}
	cmd := b.Spec.Source.Command
	if b.Name != "nightly" || b.Spec.Source.CopyMethod != platformv1.CopyMethodDirect || cmd == nil || cmd.Container != "postgres" ||
		!slices.Equal(cmd.Command, []string{"pg_dump", "-Fc", "app"}) || cmd.Format != platformv1.StreamFormatFile || cmd.FileName != "dump" ||
		b.Spec.ExecServiceAccountName != "db-backup" {
		t.Errorf("spec %s", agentjobtest.Describe(b.Spec))
	}
	if status.Artifact.Path != "prod/db/data/nightly.dump.zst" || status.Source == nil || status.Source.Format != platformv1.StreamFormatFile {
		t.Errorf("status %s", agentjobtest.Describe(status))
	}

	noName := fileManifest("")
	noName.Archive = "nightly.dump.zst"
	if b, _, why := importable(bs, at, listed("prod/db/data/nightly.dump.zst", noName), agentjobtest.Epoch); why != "" || b.Name != "nightly" {
		t.Errorf("a manifest without the Backup's name: %v, %q", b, why)
	}

	// A command's tar from before manifests recorded the container restores without it.
	oldTar := manifest("basebackup", "data")
	oldTar.Command = []string{"pg_basebackup", "-Ft", "-D", "-"}
	if b, status, why := importable(bs, at, listed("prod/db/data/basebackup.tar.zst", oldTar), agentjobtest.Epoch); why != "" || b.Spec.Source != nil ||
		status.Source == nil || status.Source.Format != platformv1.StreamFormatTar {
		t.Errorf("an old command tar: spec %v status %v, %q", b, status.Source, why)
	}

	noContainer := fileManifest("nightly")
	noContainer.Container = ""
	wrongName := fileManifest("nightly")
	wrongName.FileName = "db.sql"
	for key, m := range map[string]archive.Manifest{
		"prod/db/data/nightly.dump.zst": noContainer,
		"prod/db/data/nightly.dump.gz":  wrongName,
	} {
		if _, _, why := importable(bs, at, listed(key, m), agentjobtest.Epoch); why == "" {
			t.Errorf("%s with %+v was imported", key, m)
		}
	}
	if _, _, why := importable(bs, at, listed("prod/db/data/nightly.dump.zst", manifest("nightly", "data")), agentjobtest.Epoch); !strings.Contains(why, "no archive extension") {
		t.Errorf("a tar manifest for a file archive's name: %q", why)
	}
}
