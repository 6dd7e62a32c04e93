package domain

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/robfig/cron/v3"
)

// A pipeline's on.schedule entries are cron expressions of five fields
// (minute hour day-of-month month day-of-week) or descriptors (@yearly,
// @monthly, @weekly, @daily, @hourly), read by robfig/cron's standard
// parser, in UTC. "@every <duration>" and a time zone (CRON_TZ=, TZ=) are
// refused: a schedule fires at most once a minute, on the clock.

// ErrSchedule is ParseSchedule's error.
var ErrSchedule = errors.New("invalid schedule")

// ParseSchedule reads a cron expression.
func ParseSchedule(spec string) (cron.Schedule, error) {
	switch s := strings.TrimSpace(spec); {
	case strings.HasPrefix(s, "@every"):
		return nil, fmt.Errorf("%w: @every is not taken; write five fields, e.g. \"*/15 * * * *\"", ErrSchedule)
	case strings.HasPrefix(s, "CRON_TZ=") || strings.HasPrefix(s, "TZ="):
		return nil, fmt.Errorf("%w: schedules are in UTC; leave out the time zone", ErrSchedule)
	}
	sched, err := cron.ParseStandard(spec)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrSchedule, err)
	}
	return sched, nil
}

// NextFire is when the schedule spec fires next after t (UTC); the zero
// time for a spec that does not parse or never fires.
func NextFire(spec string, t time.Time) time.Time {
	sched, err := ParseSchedule(spec)
	if err != nil {
		return time.Time{}
	}
	return sched.Next(t.UTC())
}
