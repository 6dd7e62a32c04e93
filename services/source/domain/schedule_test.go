package domain

import (
	"errors"
	"testing"
	"time"
)

func TestNextFire(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 12, 6, 2, 58, 30, 0, time.UTC)
	tests := []struct {
		spec string
		want time.Time
	}{
		{"0 3 * * *", time.Date(2026, 12, 6, 3, 0, 0, 0, time.UTC)},
		{"*/15 * * * *", time.Date(2026, 12, 6, 3, 0, 0, 0, time.UTC)},
		{"@daily", time.Date(2026, 12, 7, 0, 0, 0, 0, time.UTC)},
		{"0 9 * * 1-5", time.Date(2026, 12, 7, 9, 0, 0, 0, time.UTC)}, // the 6th is a Sunday
		{"58 2 * * *", time.Date(2026, 12, 7, 2, 58, 0, 0, time.UTC)}, // passed a moment ago
	}
	for _, tt := range tests {
		if got := NextFire(tt.spec, at); !got.Equal(tt.want) {
			t.Errorf("NextFire(%q) = %v, want %v", tt.spec, got, tt.want)
		}
	}
	// A time in another zone is the same instant.
	if got := NextFire("0 3 * * *", at.In(time.FixedZone("X", 5*3600))); !got.Equal(tests[0].want) {
		t.Errorf("NextFire in another zone = %v", got)
	}
	for _, bad := range []string{"", "@every 1m", "CRON_TZ=UTC 0 3 * * *", "TZ=UTC 0 3 * * *", "0 3 * *", "61 * * * *", "0 0 30 2 * extra"} {
		if _, err := ParseSchedule(bad); !errors.Is(err, ErrSchedule) {
			t.Errorf("ParseSchedule(%q) = %v, want ErrSchedule", bad, err)
		}
		if !NextFire(bad, at).IsZero() {
			t.Errorf("NextFire(%q) is not zero", bad)
		}
	}
}
