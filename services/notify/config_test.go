package notify_test

import (
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/platform/servicekit"
	"github.com/sluicehq/sluice/services/notify"
)

func TestConfig(t *testing.T) {
	t.Parallel()
	cfg := notify.Config{Settings: servicekit.Settings{DataDir: "/var/lib/sluice"}}.WithDefaults()
	if err := cfg.Validate(); err != nil {
		t.Fatalf("defaults do not validate: %v", err)
	}
	if cfg.DatabaseURL != "sqlite:/var/lib/sluice/notify.db" || cfg.MaxAttempts != 6 || cfg.RetryBase != time.Second ||
		cfg.RetryMax != 5*time.Minute || cfg.AttemptTimeout != 10*time.Second || cfg.Workers != 8 {
		t.Errorf("defaults = %+v", cfg)
	}
	dir := servicekit.Settings{DataDir: "d"}
	for _, tc := range []struct {
		setting string
		cfg     notify.Config
	}{
		{"data-dir", notify.Config{}},
		{"max-attempts", notify.Config{Settings: dir, MaxAttempts: -1}},
		{"retry-base", notify.Config{Settings: dir, RetryBase: -time.Second}},
		{"retry-max", notify.Config{Settings: dir, RetryBase: time.Minute, RetryMax: time.Second}},
		{"attempt-timeout", notify.Config{Settings: dir, AttemptTimeout: -time.Second}},
		{"workers", notify.Config{Settings: dir, Workers: -2}},
	} {
		err := tc.cfg.WithDefaults().Validate()
		if err == nil || !strings.Contains(err.Error(), tc.setting) {
			t.Errorf("Validate(%+v) = %v, want an error naming %s", tc.cfg, err, tc.setting)
		}
	}
}
