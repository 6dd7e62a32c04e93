// Package prototime converts between Go's time values and the protobuf
// well-known types, the same way in every service: an unset time is the
// zero time.Time in Go and an absent field (nil) in protobuf, never
// 1970-01-01.
package prototime

import (
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// Timestamp is t as a protobuf timestamp, nil for the zero time (an unset
// end time, for instance).
func Timestamp(t time.Time) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}
	return timestamppb.New(t)
}

// Time is ts as a UTC time.Time, the zero time for nil (AsTime would give
// the Unix epoch).
func Time(ts *timestamppb.Timestamp) time.Time {
	if ts == nil {
		return time.Time{}
	}
	return ts.AsTime()
}

// Duration is d as a protobuf duration. Unlike a time, a zero duration is
// a value (a step that took no time), so it is never nil.
func Duration(d time.Duration) *durationpb.Duration {
	return durationpb.New(d)
}

// DurationOf is d as a time.Duration, 0 for nil (durationpb's AsDuration,
// which saturates a duration too long for time.Duration).
func DurationOf(d *durationpb.Duration) time.Duration {
	return d.AsDuration()
}
