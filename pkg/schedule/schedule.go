// Package schedule decides when a BackupPolicy runs: it parses the cron schedule in the policy's
// time zone and, given what already ran, finds the run that is due now, if any, and the next
// one. It follows the upstream CronJob controller's rules: after downtime only the most recent
// missed time runs, and a run that would start later than startingDeadlineSeconds is skipped.
package schedule

import (
	"fmt"
	"strings"
	"time"
	_ "time/tzdata" // IANA zones even in an image with no zoneinfo files

	"github.com/robfig/cron/v3"
)

// Schedule is a parsed cron schedule in its time zone.
//
// Daylight saving time is handled as classic cron does, so that no run is missed or doubled: a
// schedule at fixed hours (daily, weekly, "0 */6 * * *") runs once for each local wall-clock
// time it names, even when the clocks skip that time (it runs right after the gap) or repeat it
// (it runs once); a schedule that fires every hour ("*" in the hour field, @hourly, @every) runs
// on real elapsed time, so the repeated hour is not lost and the skipped one is not invented.
type Schedule struct {
	spec     string
	location *time.Location
	cron     cron.Schedule
	// wall is the schedule evaluated on wall-clock time (a copy in UTC, which has no DST); nil
	// when the schedule runs on real elapsed time.
	wall *cron.SpecSchedule
}

// maxStepBack bounds the search for a scheduled time before now, in seconds: a schedule with no
// time in the last ten years is walked from the start of the window instead.
const maxStepBack = 10 * 366 * 24 * 3600

// everyHour is the hour field's bits when the schedule names every hour.
const everyHour = 1<<24 - 1

// Field names the spec field an Error is about.
type Field string

const (
	// FieldSchedule is spec.schedule.
	FieldSchedule Field = "schedule"
	// FieldTimeZone is spec.timeZone.
	FieldTimeZone Field = "timeZone"
)

// Error says why a schedule cannot run, and which field to fix.
type Error struct {
	Field   Field
	Message string
}

func (e *Error) Error() string { return e.Message }

func invalid(field Field, format string, args ...interface{}) error {
	return &Error{Field: field, Message: fmt.Sprintf(format, args...)}
}

// Parse parses a five-field cron expression or a descriptor (@daily, @hourly, @every 6h, ...)
// read in the IANA time zone timeZone; an empty zone means UTC. A CRON_TZ= or TZ= prefix is
// refused: the zone belongs in timeZone, where it is validated and shown. Errors are *Error.
func Parse(spec, timeZone string) (*Schedule, error) {
	trimmed := strings.TrimSpace(spec)
	if strings.HasPrefix(trimmed, "CRON_TZ=") || strings.HasPrefix(trimmed, "TZ=") {
		return nil, invalid(FieldSchedule, "schedule %q carries a time zone prefix: remove it and set spec.timeZone instead", spec)
	}
	loc := time.UTC
	if timeZone != "" {
		var err error
		if loc, err = time.LoadLocation(timeZone); err != nil {
			return nil, invalid(FieldTimeZone, "unknown time zone %q: use an IANA name such as \"Europe/Berlin\" or \"America/New_York\"", timeZone)
		}
	}
	sched, err := cron.ParseStandard(trimmed)
	if err != nil {
		return nil, invalid(FieldSchedule, "invalid schedule %q: %v; use five fields (minute hour day-of-month month day-of-week) or a descriptor such as @daily", spec, err)
	}
	s := &Schedule{spec: trimmed, location: loc, cron: sched}
	if spec, ok := sched.(*cron.SpecSchedule); ok && spec.Hour&everyHour != everyHour {
		wall := *spec
		wall.Location = time.UTC
		s.wall = &wall
	}
	// cron accepts expressions no date matches, such as "0 0 30 2 *"; they would never run.
	probe := time.Date(2000, 1, 1, 0, 0, 0, 0, loc)
	if s.Next(probe).IsZero() {
		return nil, invalid(FieldSchedule, "schedule %q never runs: no date matches it", spec)
	}
	return s, nil
}

// Location is the time zone the schedule is read in.
func (s *Schedule) Location() *time.Location { return s.location }

// String is the schedule as written.
func (s *Schedule) String() string { return s.spec }

// Next is the first scheduled time strictly after t, or the zero time when there is none.
func (s *Schedule) Next(t time.Time) time.Time {
	if s.wall == nil {
		return s.cron.Next(t.In(s.location))
	}
	local := t.In(s.location)
	w := time.Date(local.Year(), local.Month(), local.Day(), local.Hour(), local.Minute(), local.Second(), local.Nanosecond(), time.UTC)
	for {
		if w = s.wall.Next(w); w.IsZero() {
			return time.Time{}
		}
		at := time.Date(w.Year(), w.Month(), w.Day(), w.Hour(), w.Minute(), w.Second(), 0, s.location)
		// A wall time the clocks skip comes back from time.Date shifted before the gap
		// (02:30 as 01:30 EST); move it past the gap by the same shift (03:30 EDT), so the run
		// is late, never early. A wall time the clocks repeat maps to one of its two instants.
		// Either way each wall time yields one run, and a mapping at or before t (inside a
		// repeated hour) is not a new run.
		if got := at.In(s.location); got.Hour() != w.Hour() || got.Minute() != w.Minute() {
			gotWall := time.Date(got.Year(), got.Month(), got.Day(), got.Hour(), got.Minute(), got.Second(), 0, time.UTC)
			at = at.Add(w.Sub(gotWall))
		}
		if at.After(t) {
			return at
		}
	}
}

// MostRecent returns the latest scheduled time in (after, now], or false when none falls in that
// window, and about how many scheduled times the window holds. It does not step through every
// missed time: after a year of downtime on a per-minute schedule it takes a few steps, not half
// a million.
func (s *Schedule) MostRecent(after, now time.Time) (time.Time, int64, bool) {
	first := s.Next(after)
	if first.IsZero() || first.After(now) {
		return time.Time{}, 0, false
	}
	second := s.Next(first)
	if second.IsZero() || second.After(now) {
		return first, 1, true
	}

	// Start one interval before the last time a fixed-interval schedule would have at or
	// before now. That is exact for fixed intervals, and the only right anchor for @every,
	// whose times are a grid set by the first one. An irregular schedule (weekdays only,
	// business hours) may have no time between there and now: step back, doubling the step,
	// until it has one, then walk forward.
	// The arithmetic is in whole seconds: a window of centuries overflows a time.Duration.
	interval := second.Unix() - first.Unix()
	if interval < 1 {
		interval = 1
	}
	k := (now.Unix() - first.Unix()) / interval
	start := time.Unix(first.Unix()+(k-1)*interval, 0)
	for step := interval; ; step *= 2 {
		if !start.After(first) || step > maxStepBack {
			start = after
			break
		}
		if t := s.Next(start); !t.IsZero() && !t.After(now) {
			break
		}
		start = time.Unix(start.Unix()-step, 0)
	}
	var latest time.Time
	for t := s.Next(start); !t.IsZero() && !t.After(now); t = s.Next(t) {
		latest = t
	}

	// The count is for messages ("missed about N runs"), so the first interval will do.
	return latest, (latest.Unix()-first.Unix())/interval + 1, true
}

// Interval is the time between the latest scheduled time at or before now and the one after it:
// how long a policy may go without a new backup right now. It follows the schedule's shape, so
// a weekday schedule gives 72h over the weekend and 24h during the week, and a daily schedule
// 23h or 25h across a daylight saving change. With no scheduled time in the last ten years it is
// the gap between the next two; zero when the schedule has no time after now.
func (s *Schedule) Interval(now time.Time) time.Duration {
	// Measured from the latest time with Next, not up to Next(now): an @every schedule's grid is
	// set by its first time, and the two would belong to different grids.
	from, _, ok := s.MostRecent(time.Unix(now.Unix()-maxStepBack, 0), now)
	if !ok {
		if from = s.Next(now); from.IsZero() {
			return 0
		}
	}
	to := s.Next(from)
	if to.IsZero() {
		return 0
	}
	return to.Sub(from)
}
