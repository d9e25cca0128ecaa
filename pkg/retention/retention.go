// Package retention decides which Backups of one policy and one volume to delete. It only ever
// picks Completed Backups that no rule keeps and Failed Backups beyond their own limit; Pending
// and Running Backups, and Backups of other policies or volumes, are never candidates.
package retention

import (
	"fmt"
	"sort"
	"strings"
	"time"

	platformv1 "platform.example.com/backup-operator/pkg/apis/platform/v1"
)

// Rules are a policy's retention rules; a zero count turns a rule off.
type Rules struct {
	KeepLast, KeepDaily, KeepWeekly, KeepMonthly int
	KeepFailed                                   int
	// Location is the time zone days, weeks and months are read in.
	Location *time.Location
}

// RulesFor reads a policy's retention. Without retention every Completed Backup is kept; failed
// ones are still bounded, so they do not pile up.
func RulesFor(r *platformv1.RetentionPolicy, loc *time.Location) Rules {
	rules := Rules{KeepFailed: int(platformv1.DefaultKeepFailed), Location: loc}
	if r == nil {
		rules.KeepLast = -1
		return rules
	}
	count := func(p *int32) int {
		if p == nil {
			return 0
		}
		return int(*p)
	}
	rules.KeepLast, rules.KeepDaily, rules.KeepWeekly, rules.KeepMonthly = count(r.KeepLast), count(r.KeepDaily), count(r.KeepWeekly), count(r.KeepMonthly)
	if r.KeepFailed != nil {
		rules.KeepFailed = int(*r.KeepFailed)
	}
	return rules
}

// String describes the rules for events, such as "keepLast=3, keepDaily=7".
func (r Rules) String() string {
	var parts []string
	for _, rule := range []struct {
		name string
		n    int
	}{{"keepLast", r.KeepLast}, {"keepDaily", r.KeepDaily}, {"keepWeekly", r.KeepWeekly}, {"keepMonthly", r.KeepMonthly}} {
		if rule.n > 0 {
			parts = append(parts, fmt.Sprintf("%s=%d", rule.name, rule.n))
		}
	}
	if len(parts) == 0 {
		parts = append(parts, "keep all completed")
	}
	return strings.Join(append(parts, fmt.Sprintf("keepFailed=%d", r.KeepFailed)), ", ")
}

// TakenAt is the point in time a Backup captured: when its agent started reading, or, before
// that is known, when the Backup was created.
func TakenAt(b *platformv1.Backup) time.Time {
	if b.Status.StartTime != nil {
		return b.Status.StartTime.Time
	}
	return b.CreationTimestamp.Time
}

// newestFirst sorts by TakenAt, newest first, breaking ties by name so the choice is the same
// on every sync.
func newestFirst(backups []*platformv1.Backup) {
	sort.SliceStable(backups, func(i, j int) bool {
		ti, tj := TakenAt(backups[i]), TakenAt(backups[j])
		if !ti.Equal(tj) {
			return ti.After(tj)
		}
		return backups[i].Name > backups[j].Name
	})
}

// Prune returns the Backups of one policy and one volume that the rules no longer keep, oldest
// first. Backups being deleted already are neither kept nor returned.
func Prune(backups []*platformv1.Backup, rules Rules) []*platformv1.Backup {
	var completed, failed []*platformv1.Backup
	for _, b := range backups {
		if b.DeletionTimestamp != nil {
			continue
		}
		switch b.Status.Phase {
		case platformv1.BackupCompleted:
			completed = append(completed, b)
		case platformv1.BackupFailed:
			failed = append(failed, b)
		}
	}
	newestFirst(completed)
	newestFirst(failed)

	keep := make(map[*platformv1.Backup]bool, len(completed))
	for i, b := range completed {
		if rules.KeepLast < 0 || i < rules.KeepLast {
			keep[b] = true
		}
	}
	loc := rules.Location
	if loc == nil {
		loc = time.UTC
	}
	for _, bucket := range []struct {
		n   int
		key func(time.Time) string
	}{
		{rules.KeepDaily, func(t time.Time) string { return t.Format("2006-01-02") }},
		{rules.KeepWeekly, func(t time.Time) string { y, w := t.ISOWeek(); return fmt.Sprintf("%d-W%02d", y, w) }},
		{rules.KeepMonthly, func(t time.Time) string { return t.Format("2006-01") }},
	} {
		// The newest Backup of each of the newest n buckets that have one.
		seen := make(map[string]bool)
		for _, b := range completed {
			if len(seen) == bucket.n {
				break
			}
			k := bucket.key(TakenAt(b).In(loc))
			if !seen[k] {
				seen[k] = true
				keep[b] = true
			}
		}
	}

	var prune []*platformv1.Backup
	for _, b := range completed {
		if !keep[b] {
			prune = append(prune, b)
		}
	}
	if len(failed) > rules.KeepFailed {
		prune = append(prune, failed[rules.KeepFailed:]...)
	}
	// Oldest first: if a deletion fails midway, the newest are still there.
	sort.SliceStable(prune, func(i, j int) bool {
		ti, tj := TakenAt(prune[i]), TakenAt(prune[j])
		if !ti.Equal(tj) {
			return ti.Before(tj)
		}
		return prune[i].Name < prune[j].Name
	})
	return prune
}
