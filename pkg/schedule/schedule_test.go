package schedule

import (
	"errors"
	"math/rand"
	"strings"
	"testing"
	"time"

	"github.com/robfig/cron/v3"
	"k8s.io/utils/ptr"
)

// Moments around one hour, as in the upstream CronJob controller's tests.
func topOfTheHour() time.Time           { return time.Date(2016, 5, 19, 10, 0, 0, 0, time.UTC) }
func justBeforeTheHour() time.Time      { return topOfTheHour().Add(-time.Minute) }
func justAfterTheHour() time.Time       { return topOfTheHour().Add(time.Minute) }
func justBeforeThePriorHour() time.Time { return topOfTheHour().Add(-61 * time.Minute) }
func justAfterThePriorHour() time.Time  { return topOfTheHour().Add(-59 * time.Minute) }
func thePriorHour() time.Time           { return topOfTheHour().Add(-time.Hour) }
func weekAfterTheHour() time.Time       { return topOfTheHour().Add(7 * 24 * time.Hour) }

func mustParse(t *testing.T, spec, zone string) *Schedule {
	t.Helper()
	s, err := Parse(spec, zone)
	if err != nil {
		t.Fatalf("Parse(%q, %q): %v", spec, zone, err)
	}
	return s
}

func TestParse(t *testing.T) {
	tests := []struct {
		spec, zone string
		wantField  Field
		wantErr    string
	}{
		{"0 2 * * *", "", "", ""},
		{"@daily", "Europe/Berlin", "", ""},
		{"@every 6h", "", "", ""},
		{"  */15 * * * 1-5  ", "America/New_York", "", ""},
		{"0 2 * * *", "Mars/Olympus_Mons", FieldTimeZone, `unknown time zone "Mars/Olympus_Mons"`},
		{"CRON_TZ=Europe/Berlin 0 2 * * *", "", FieldSchedule, "set spec.timeZone instead"},
		{"TZ=UTC 0 2 * * *", "", FieldSchedule, "set spec.timeZone instead"},
		{"0 2 * *", "", FieldSchedule, "invalid schedule"},
		{"61 * * * *", "", FieldSchedule, "invalid schedule"},
		{"every night", "", FieldSchedule, "invalid schedule"},
		{"0 0 30 2 *", "", FieldSchedule, "never runs"},
	}
	for _, tc := range tests {
		_, err := Parse(tc.spec, tc.zone)
		if tc.wantErr == "" {
			if err != nil {
				t.Errorf("Parse(%q, %q): unexpected error %v", tc.spec, tc.zone, err)
			}
			continue
		}
		var perr *Error
		if !errors.As(err, &perr) || perr.Field != tc.wantField || !strings.Contains(err.Error(), tc.wantErr) {
			t.Errorf("Parse(%q, %q) = %v, want an error about %s containing %q", tc.spec, tc.zone, err, tc.wantField, tc.wantErr)
		}
	}
}

func TestPlan(t *testing.T) {
	hourly := "0 * * * *"
	tests := []struct {
		name     string
		history  History
		deadline *time.Duration
		now      time.Time
		want     Plan
	}{
		{
			name:    "new policy, not yet due",
			history: History{Created: justAfterThePriorHour()},
			now:     justBeforeTheHour(),
			want:    Plan{Next: topOfTheHour()},
		},
		{
			name:    "new policy, due at the top of the hour",
			history: History{Created: justAfterThePriorHour()},
			now:     topOfTheHour(),
			want:    Plan{Due: topOfTheHour(), Unrun: 1, Next: topOfTheHour().Add(time.Hour)},
		},
		{
			name:    "due just after the hour",
			history: History{Created: justBeforeThePriorHour(), LastScheduled: ptr.To(thePriorHour())},
			now:     justAfterTheHour(),
			want:    Plan{Due: topOfTheHour(), Unrun: 1, Next: topOfTheHour().Add(time.Hour)},
		},
		{
			name:    "already ran this hour",
			history: History{Created: justBeforeThePriorHour(), LastScheduled: ptr.To(topOfTheHour())},
			now:     justAfterTheHour(),
			want:    Plan{Next: topOfTheHour().Add(time.Hour)},
		},
		{
			name:    "never ran since creation two hours ago: only the most recent time runs",
			history: History{Created: justBeforeThePriorHour()},
			now:     justAfterTheHour(),
			want:    Plan{Due: topOfTheHour(), Unrun: 2, Next: topOfTheHour().Add(time.Hour)},
		},
		{
			name:     "within the starting deadline",
			history:  History{Created: justBeforeThePriorHour(), LastScheduled: ptr.To(thePriorHour())},
			deadline: ptr.To(5 * time.Minute),
			now:      justAfterTheHour(),
			want:     Plan{Due: topOfTheHour(), Unrun: 1, Next: topOfTheHour().Add(time.Hour)},
		},
		{
			name:     "past the starting deadline: skipped",
			history:  History{Created: justBeforeThePriorHour(), LastScheduled: ptr.To(thePriorHour())},
			deadline: ptr.To(10 * time.Second),
			now:      justAfterTheHour(),
			want:     Plan{Missed: topOfTheHour(), Unrun: 1, Next: topOfTheHour().Add(time.Hour)},
		},
		{
			name:     "a skip is recorded: not skipped again",
			history:  History{Created: justBeforeThePriorHour(), LastScheduled: ptr.To(thePriorHour()), LastMissed: ptr.To(topOfTheHour())},
			deadline: ptr.To(10 * time.Second),
			now:      justAfterTheHour(),
			want:     Plan{Next: topOfTheHour().Add(time.Hour)},
		},
		{
			name:    "a week of downtime: one run, 168 unrun times",
			history: History{Created: justBeforeThePriorHour(), LastScheduled: ptr.To(topOfTheHour())},
			now:     weekAfterTheHour().Add(time.Minute),
			want:    Plan{Due: weekAfterTheHour(), Unrun: 168, Next: weekAfterTheHour().Add(time.Hour)},
		},
		{
			name:     "a week of downtime past the deadline: the latest is skipped, none run",
			history:  History{Created: justBeforeThePriorHour(), LastScheduled: ptr.To(topOfTheHour())},
			deadline: ptr.To(30 * time.Second),
			now:      weekAfterTheHour().Add(time.Minute),
			want:     Plan{Missed: weekAfterTheHour(), Unrun: 168, Next: weekAfterTheHour().Add(time.Hour)},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := mustParse(t, hourly, "").Plan(tc.history, tc.deadline, tc.now)
			if !got.Due.Equal(tc.want.Due) || !got.Missed.Equal(tc.want.Missed) || got.Unrun != tc.want.Unrun || !got.Next.Equal(tc.want.Next) {
				t.Fatalf("Plan = {Due %v, Missed %v, Unrun %d, Next %v}\nwant   {Due %v, Missed %v, Unrun %d, Next %v}",
					got.Due, got.Missed, got.Unrun, got.Next, tc.want.Due, tc.want.Missed, tc.want.Unrun, tc.want.Next)
			}
		})
	}
}

// runs lists the scheduled times in (from, to].
func runs(s *Schedule, from, to time.Time) []time.Time {
	var out []time.Time
	for t := s.Next(from); !t.IsZero() && !t.After(to); t = s.Next(t) {
		out = append(out, t)
	}
	return out
}

func TestDaylightSavingTimeInNewYork(t *testing.T) {
	ny, err := time.LoadLocation("America/New_York")
	if err != nil {
		t.Fatal(err)
	}
	at := func(month time.Month, day, hour, min int) time.Time {
		return time.Date(2026, month, day, hour, min, 0, 0, ny)
	}
	springEve, fallEve := at(3, 7, 12, 0), at(10, 31, 12, 0) // clocks go 02:00 -> 03:00 on 8 March, 02:00 -> 01:00 on 1 November

	t.Run("a daily run at a skipped time runs right after the gap", func(t *testing.T) {
		got := runs(mustParse(t, "0 2 * * *", "America/New_York"), springEve, at(3, 9, 12, 0))
		if len(got) != 2 || !got[0].Equal(at(3, 8, 3, 0)) || !got[1].Equal(at(3, 9, 2, 0)) {
			t.Fatalf("runs %v, want 8 March 03:00 EDT and 9 March 02:00 EDT", got)
		}
	})
	t.Run("a daily run at a repeated time runs once", func(t *testing.T) {
		got := runs(mustParse(t, "30 1 * * *", "America/New_York"), fallEve, at(11, 2, 12, 0))
		if len(got) != 2 || got[0].Day() != 1 || got[1].Day() != 2 {
			t.Fatalf("runs %v, want one on 1 November and one on 2 November", got)
		}
	})
	t.Run("an hourly schedule keeps both repeated hours", func(t *testing.T) {
		// 00:00 EDT, 01:00 EDT, 01:00 EST, 02:00 EST: every real hour, none doubled.
		got := runs(mustParse(t, "0 * * * *", "America/New_York"), at(10, 31, 23, 30), at(11, 1, 2, 30))
		if len(got) != 4 {
			t.Fatalf("runs %v, want 4 runs an hour apart", got)
		}
		for i := 1; i < len(got); i++ {
			if d := got[i].Sub(got[i-1]); d != time.Hour {
				t.Fatalf("runs %v: %s between runs %d and %d, want 1h", got, d, i-1, i)
			}
		}
	})
	t.Run("an hourly schedule does not invent the skipped hour", func(t *testing.T) {
		got := runs(mustParse(t, "0 * * * *", "America/New_York"), at(3, 8, 0, 30), at(3, 8, 4, 30))
		// 01:00 EST, 03:00 EDT (an hour later), 04:00 EDT.
		if len(got) != 3 || got[1].Sub(got[0]) != time.Hour {
			t.Fatalf("runs %v, want 01:00 EST, 03:00 EDT, 04:00 EDT", got)
		}
	})
	t.Run("the plan after the gap runs the day's backup", func(t *testing.T) {
		s := mustParse(t, "0 2 * * *", "America/New_York")
		p := s.Plan(History{Created: at(3, 1, 0, 0), LastScheduled: ptr.To(at(3, 7, 2, 0))}, nil, at(3, 8, 3, 0).Add(30*time.Second))
		if !p.Due.Equal(at(3, 8, 3, 0)) || !p.Next.Equal(at(3, 9, 2, 0)) {
			t.Fatalf("Plan = %+v, want the run due at 03:00 EDT and the next at 02:00 EDT on 9 March", p)
		}
	})
}

// countingSchedule counts Next calls, to show MostRecent does not walk every missed time.
type countingSchedule struct {
	cron.Schedule
	calls int
}

func (c *countingSchedule) Next(t time.Time) time.Time {
	c.calls++
	return c.Schedule.Next(t)
}

func TestMostRecentAfterAYearOfDowntimeTakesFewSteps(t *testing.T) {
	s := mustParse(t, "* * * * *", "")
	counter := &countingSchedule{Schedule: s.cron}
	s.cron = counter
	after := topOfTheHour()
	now := after.AddDate(1, 0, 0).Add(30 * time.Second)
	latest, unrun, ok := s.MostRecent(after, now)
	if !ok || !latest.Equal(after.AddDate(1, 0, 0)) {
		t.Fatalf("MostRecent = %v, %v; want %v", latest, ok, after.AddDate(1, 0, 0))
	}
	if want := int64(365 * 24 * 60); unrun != want { // May 2016 to May 2017 has no 29 February
		t.Fatalf("unrun = %d, want %d", unrun, want)
	}
	if counter.calls > 10 {
		t.Fatalf("MostRecent called Next %d times; it must not walk every missed minute", counter.calls)
	}
}

func TestMostRecentMatchesAWalkOverEveryTime(t *testing.T) {
	specs := []string{
		"0 9 * * 1-5", "30 6-16/4 * * 1-5", "*/7 * * * *", "0 0 1 * *", "15 3 * * 0",
		"@every 90m", "@daily", "0 */6 * * *", "5 4 * * sun",
	}
	zones := []string{"", "America/New_York", "Europe/Berlin", "Australia/Lord_Howe"}
	rng := rand.New(rand.NewSource(1))
	base := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, spec := range specs {
		for _, zone := range zones {
			s := mustParse(t, spec, zone)
			for i := 0; i < 25; i++ {
				after := base.Add(time.Duration(rng.Int63n(int64(2 * 365 * 24 * time.Hour))))
				now := after.Add(time.Duration(rng.Int63n(int64(10 * 24 * time.Hour))))
				var want time.Time
				for t := s.Next(after); !t.IsZero() && !t.After(now); t = s.Next(t) {
					want = t
				}
				got, _, ok := s.MostRecent(after, now)
				if ok != !want.IsZero() || !got.Equal(want) {
					t.Fatalf("%q in %q, after %v, now %v: MostRecent = %v (%v), a walk finds %v", spec, zone, after, now, got, ok, want)
				}
			}
		}
	}
}

func TestMostRecentOverCenturiesReturns(t *testing.T) {
	// An object read without a creation time has a zero one: a window of two thousand years,
	// longer than a time.Duration can hold.
	s := mustParse(t, "0 2 * * *", "")
	now := time.Date(2026, 11, 21, 6, 0, 0, 0, time.UTC)
	type result struct {
		latest time.Time
		ok     bool
	}
	done := make(chan result, 1)
	go func() {
		latest, _, ok := s.MostRecent(time.Time{}, now)
		done <- result{latest, ok}
	}()
	select {
	case r := <-done:
		if !r.ok || !r.latest.Equal(time.Date(2026, 11, 21, 2, 0, 0, 0, time.UTC)) {
			t.Fatalf("MostRecent = %v, %v", r.latest, r.ok)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("MostRecent walked the centuries one day at a time")
	}
}

func TestInterval(t *testing.T) {
	ny, err := time.LoadLocation("America/New_York")
	if err != nil {
		t.Fatal(err)
	}
	// 2026: clocks go 02:00 -> 03:00 on 8 March and 02:00 -> 01:00 on 1 November in New York.
	nyAt := func(month time.Month, day, hour int) time.Time { return time.Date(2026, month, day, hour, 0, 0, 0, ny) }
	utcAt := func(month time.Month, day, hour int) time.Time {
		return time.Date(2026, month, day, hour, 0, 0, 0, time.UTC)
	}
	tests := []struct {
		name, spec, zone string
		now              time.Time
		want             time.Duration
	}{
		{"hourly", "0 * * * *", "", utcAt(5, 19, 10).Add(time.Minute), time.Hour},
		{"hourly, exactly at a scheduled time", "0 * * * *", "", utcAt(5, 19, 10), time.Hour},
		{"daily", "0 2 * * *", "", utcAt(5, 19, 12), 24 * time.Hour},
		{"@every starts its grid at its first time", "@every 6h", "", utcAt(5, 19, 12).Add(17 * time.Minute), 6 * time.Hour},
		{"weekdays, midweek", "0 2 * * 1-5", "", utcAt(5, 20, 12), 24 * time.Hour},              // Wednesday
		{"weekdays, Friday after the run", "0 2 * * 1-5", "", utcAt(5, 22, 12), 72 * time.Hour}, // to Monday
		{"weekdays, Sunday", "0 2 * * 1-5", "", utcAt(5, 24, 12), 72 * time.Hour},
		{"weekdays, Monday before the run", "0 2 * * 1-5", "", utcAt(5, 25, 1), 72 * time.Hour},
		{"daily, the day the clocks skip 02:00", "0 2 * * *", "America/New_York", nyAt(3, 8, 12), 23 * time.Hour},
		{"daily, the day before the clocks go back", "0 2 * * *", "America/New_York", nyAt(10, 31, 12), 25 * time.Hour},
		{"leap days only", "0 0 29 2 *", "", utcAt(6, 1, 0), time.Date(2028, 2, 29, 0, 0, 0, 0, time.UTC).Sub(time.Date(2024, 2, 29, 0, 0, 0, 0, time.UTC))},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := mustParse(t, tc.spec, tc.zone).Interval(tc.now); got != tc.want {
				t.Fatalf("Interval(%v) = %s, want %s", tc.now, got, tc.want)
			}
		})
	}
}
