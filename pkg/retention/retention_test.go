package retention

import (
	"fmt"
	"reflect"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	platformv1 "platform.example.com/backup-operator/pkg/apis/platform/v1"
)

// backup makes a Backup taken at t in phase.
func backup(name string, phase platformv1.BackupPhase, t time.Time) *platformv1.Backup {
	start := metav1.NewTime(t)
	return &platformv1.Backup{
		ObjectMeta: metav1.ObjectMeta{Name: name, CreationTimestamp: metav1.NewTime(t.Add(-time.Second))},
		Status:     platformv1.BackupStatus{Phase: phase, StartTime: &start},
	}
}

// daily makes n Completed Backups at 02:00 UTC on consecutive days ending on end, named by date.
func daily(n int, end time.Time) []*platformv1.Backup {
	var out []*platformv1.Backup
	for i := n - 1; i >= 0; i-- {
		t := end.AddDate(0, 0, -i)
		out = append(out, backup(t.Format("d-2006-01-02"), platformv1.BackupCompleted, t))
	}
	return out
}

func names(bs []*platformv1.Backup) []string {
	out := []string{}
	for _, b := range bs {
		out = append(out, b.Name)
	}
	return out
}

func TestPrune(t *testing.T) {
	day := func(d int) time.Time { return time.Date(2026, 11, d, 2, 0, 0, 0, time.UTC) }
	deleting := backup("being-deleted", platformv1.BackupCompleted, day(1))
	deleting.DeletionTimestamp = &metav1.Time{Time: day(20)}

	tests := []struct {
		name    string
		backups []*platformv1.Backup
		rules   Rules
		want    []string
	}{
		{
			name:    "keepLast keeps the newest, deletes the rest oldest first",
			backups: daily(5, day(20)),
			rules:   Rules{KeepLast: 3, KeepFailed: 3},
			want:    []string{"d-2026-11-16", "d-2026-11-17"},
		},
		{
			name:    "fewer backups than keepLast: nothing to delete",
			backups: daily(2, day(20)),
			rules:   Rules{KeepLast: 3, KeepFailed: 3},
			want:    []string{},
		},
		{
			name:    "no retention keeps every completed backup",
			backups: daily(40, day(20)),
			rules:   RulesFor(nil, time.UTC),
			want:    []string{},
		},
		{
			name: "pending and running backups are never deleted and do not count",
			backups: append(daily(3, day(20)),
				backup("pending", platformv1.BackupPending, day(1)),
				backup("running", platformv1.BackupRunning, day(2)),
				backup("new", "", day(3))),
			rules: Rules{KeepLast: 1, KeepFailed: 3},
			want:  []string{"d-2026-11-18", "d-2026-11-19"},
		},
		{
			name: "failed backups are bounded by their own limit and never push out completed ones",
			backups: append(daily(2, day(10)),
				backup("f1", platformv1.BackupFailed, day(11)),
				backup("f2", platformv1.BackupFailed, day(12)),
				backup("f3", platformv1.BackupFailed, day(13))),
			rules: Rules{KeepLast: 2, KeepFailed: 1},
			want:  []string{"f1", "f2"},
		},
		{
			name: "keepDaily keeps the newest backup of each of the last days that have one",
			backups: []*platformv1.Backup{
				backup("mon-early", platformv1.BackupCompleted, day(16).Add(-time.Hour)),
				backup("mon-late", platformv1.BackupCompleted, day(16).Add(10*time.Hour)),
				backup("tue", platformv1.BackupCompleted, day(17)),
				backup("thu-early", platformv1.BackupCompleted, day(19)),
				backup("thu-late", platformv1.BackupCompleted, day(19).Add(time.Hour)),
			},
			rules: Rules{KeepDaily: 3, KeepFailed: 3},
			want:  []string{"mon-early", "thu-early"},
		},
		{
			name:    "keepWeekly keeps one per ISO week",
			backups: daily(21, day(21)), // 1..21 November 2026: Sunday 1st ends ISO week 44
			rules:   Rules{KeepWeekly: 2, KeepFailed: 3},
			want: func() []string {
				// Kept: the 21st (week 47) and the 15th (Sunday, week 46).
				var out []string
				for d := 1; d <= 20; d++ {
					if d != 15 {
						out = append(out, fmt.Sprintf("d-2026-11-%02d", d))
					}
				}
				return out
			}(),
		},
		{
			name: "keepMonthly keeps the newest of each month; a backup any rule keeps is kept",
			backups: []*platformv1.Backup{
				backup("sep-1", platformv1.BackupCompleted, time.Date(2026, 9, 1, 2, 0, 0, 0, time.UTC)),
				backup("sep-30", platformv1.BackupCompleted, time.Date(2026, 9, 30, 2, 0, 0, 0, time.UTC)),
				backup("oct-1", platformv1.BackupCompleted, time.Date(2026, 10, 1, 2, 0, 0, 0, time.UTC)),
				backup("oct-31", platformv1.BackupCompleted, time.Date(2026, 10, 31, 2, 0, 0, 0, time.UTC)),
				backup("nov-1", platformv1.BackupCompleted, day(1)),
				backup("nov-2", platformv1.BackupCompleted, day(2)),
			},
			rules: Rules{KeepLast: 1, KeepMonthly: 3, KeepFailed: 3},
			want:  []string{"sep-1", "oct-1", "nov-1"},
		},
		{
			name: "ties in time are broken by name, the same on every sync",
			backups: []*platformv1.Backup{
				backup("b", platformv1.BackupCompleted, day(5)),
				backup("a", platformv1.BackupCompleted, day(5)),
				backup("c", platformv1.BackupCompleted, day(5)),
			},
			rules: Rules{KeepLast: 1, KeepFailed: 3},
			want:  []string{"a", "b"},
		},
		{
			name:    "a backup already being deleted is not deleted again and keeps nothing",
			backups: append(daily(2, day(20)), deleting),
			rules:   Rules{KeepLast: 2, KeepFailed: 3},
			want:    []string{},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := names(Prune(tc.backups, tc.rules)); !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("Prune = %v\nwant    %v", got, tc.want)
			}
		})
	}
}

func TestPruneReadsDaysInThePolicyTimeZone(t *testing.T) {
	tokyo, err := time.LoadLocation("Asia/Tokyo")
	if err != nil {
		t.Fatal(err)
	}
	// 23:30 and 16:00 UTC on 20 November are both 21 November in Tokyo (UTC+9).
	backups := []*platformv1.Backup{
		backup("utc-20th-late", platformv1.BackupCompleted, time.Date(2026, 11, 20, 23, 30, 0, 0, time.UTC)),
		backup("utc-20th-afternoon", platformv1.BackupCompleted, time.Date(2026, 11, 20, 16, 0, 0, 0, time.UTC)),
		backup("utc-20th-morning", platformv1.BackupCompleted, time.Date(2026, 11, 20, 8, 0, 0, 0, time.UTC)),
	}
	if got := names(Prune(backups, Rules{KeepDaily: 2, Location: tokyo, KeepFailed: 3})); !reflect.DeepEqual(got, []string{"utc-20th-afternoon"}) {
		t.Fatalf("in Tokyo, Prune = %v; want the afternoon backup, which shares the 21st with a newer one", got)
	}
	if got := names(Prune(backups, Rules{KeepDaily: 2, Location: time.UTC, KeepFailed: 3})); !reflect.DeepEqual(got, []string{"utc-20th-morning", "utc-20th-afternoon"}) {
		t.Fatalf("in UTC, Prune = %v; want the two older backups of the 20th", got)
	}
}

func TestRulesString(t *testing.T) {
	three, seven := int32(3), int32(7)
	if got := RulesFor(&platformv1.RetentionPolicy{KeepLast: &three, KeepDaily: &seven}, time.UTC).String(); got != "keepLast=3, keepDaily=7, keepFailed=3" {
		t.Fatalf("String() = %q", got)
	}
}
