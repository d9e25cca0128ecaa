package restore

import (
	"slices"
	"testing"

	platformv1 "platform.example.com/backup-operator/pkg/apis/platform/v1"
)

// The restore of a file archive tells the agent its format and file name: it never guesses.
func TestRestoreOfAFileArchiveTellsTheFormat(t *testing.T) {
	for _, tc := range []struct{ fileName, want string }{{"", "dump"}, {"app.pgdump", "app.pgdump"}} {
		f := newFixture(t)
		b := completedBackup()
		b.Spec.Source = &platformv1.BackupSource{Command: &platformv1.CommandSource{Container: "postgres", Command: []string{"pg_dump", "-Fc"},
			Format: platformv1.StreamFormatFile, FileName: tc.fileName}}
		b.Status.Artifact.Path = "db/data/nightly." + tc.want + ".zst"
		f.Restores, f.Backups, f.Claims = []*platformv1.Restore{newRestore()}, []*platformv1.Backup{b}, defaultClaims()
		f.MustRun()
		want := []string{"agent", "restore", "--archive", "/storage/nightly." + tc.want + ".zst", "--target", "/target", "--sha256", sum,
			"--overwrite", "refuse", "--format", "file", "--file-name", tc.want}
		if args := f.CreatedJob().Spec.Template.Spec.Containers[0].Args; !slices.Equal(args, want) {
			t.Errorf("args %q, want %q", args, want)
		}
	}
}
