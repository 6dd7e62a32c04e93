package prototime_test

import (
	"math"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/sluicehq/sluice/platform/prototime"
)

func TestTimestampZeroIsNil(t *testing.T) {
	t.Parallel()
	if ts := prototime.Timestamp(time.Time{}); ts != nil {
		t.Errorf("Timestamp(zero) = %v; want nil", ts)
	}
	if got := prototime.Time(nil); !got.IsZero() {
		t.Errorf("Time(nil) = %v; want the zero time", got)
	}
}

func TestTimestampRoundTrip(t *testing.T) {
	t.Parallel()
	for _, in := range []time.Time{
		time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC),
		time.Date(1970, 1, 1, 0, 0, 0, 0, time.UTC), // the epoch is a time, not "unset"
		time.Date(2026, 1, 2, 3, 4, 5, 6, time.FixedZone("CET", 3600)),
	} {
		ts := prototime.Timestamp(in)
		if ts == nil {
			t.Fatalf("Timestamp(%v) = nil", in)
		}
		got := prototime.Time(ts)
		if !got.Equal(in) || got.Location() != time.UTC {
			t.Errorf("Time(Timestamp(%v)) = %v; want the same instant in UTC", in, got)
		}
	}
}

func TestDuration(t *testing.T) {
	t.Parallel()
	if d := prototime.Duration(0); d == nil || d.AsDuration() != 0 {
		t.Errorf("Duration(0) = %v; want a zero duration, not nil", d)
	}
	if got := prototime.DurationOf(prototime.Duration(1500 * time.Millisecond)); got != 1500*time.Millisecond {
		t.Errorf("round trip of 1.5s = %v", got)
	}
	if got := prototime.DurationOf(nil); got != 0 {
		t.Errorf("DurationOf(nil) = %v; want 0", got)
	}
	huge := &durationpb.Duration{Seconds: math.MaxInt64}
	if got := prototime.DurationOf(huge); got != time.Duration(math.MaxInt64) {
		t.Errorf("DurationOf(too long) = %v; want it saturated", got)
	}
}
