package schedule

import "time"

// History is what a policy has already done, as its status records it.
type History struct {
	// Created is when the policy was created: nothing before it is owed.
	Created time.Time
	// LastScheduled is the scheduled time of the latest run that was started, if any.
	LastScheduled *time.Time
	// LastMissed is the scheduled time of the latest run skipped for its deadline, if any.
	LastMissed *time.Time
}

// Plan is what to do at one moment.
type Plan struct {
	// Due is the scheduled time of the run to start now; zero when none is due.
	Due time.Time
	// Missed is the scheduled time of a run to skip because it could not start within the
	// starting deadline; zero when none. At most one of Due and Missed is set.
	Missed time.Time
	// Unrun is about how many scheduled times passed since the last run or skip, the one in
	// Due or Missed included. Above one, runs were missed (the controller was down, or the
	// policy suspended).
	Unrun int64
	// Next is the first scheduled time after now.
	Next time.Time
}

// Plan decides what a policy does at now. Only the most recent scheduled time since the last
// run or skip can run: earlier ones are not made up. It is skipped when it is more than
// startingDeadline late (nil: no deadline).
func (s *Schedule) Plan(h History, startingDeadline *time.Duration, now time.Time) Plan {
	earliest := h.Created
	for _, t := range []*time.Time{h.LastScheduled, h.LastMissed} {
		if t != nil && t.After(earliest) {
			earliest = *t
		}
	}
	p := Plan{Next: s.Next(now)}
	latest, unrun, ok := s.MostRecent(earliest, now)
	if !ok {
		return p
	}
	p.Unrun = unrun
	if startingDeadline != nil && latest.Add(*startingDeadline).Before(now) {
		p.Missed = latest
	} else {
		p.Due = latest
	}
	return p
}
