package notify_test

import (
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/services/notify"
)

func TestConfig(t *testing.T) {
	cfg := notify.Config{DataDir: "/var/lib/sluice"}.WithDefaults()
	if err := cfg.Validate(); err != nil {
		t.Fatalf("defaults do not validate: %v", err)
	}
	if cfg.DatabaseURL != "sqlite:/var/lib/sluice/notify.db" || cfg.MaxAttempts != 6 || cfg.RetryBase != time.Second ||
		cfg.RetryMax != 5*time.Minute || cfg.AttemptTimeout != 10*time.Second || cfg.Concurrency != 8 || cfg.Version != "dev" {
		t.Errorf("defaults = %+v", cfg)
	}
	for _, tc := range []struct {
		field string
		cfg   notify.Config
	}{
		{"DataDir", notify.Config{}},
		{"MaxAttempts", notify.Config{DataDir: "d", MaxAttempts: -1}},
		{"RetryBase", notify.Config{DataDir: "d", RetryBase: -time.Second}},
		{"RetryMax", notify.Config{DataDir: "d", RetryBase: time.Minute, RetryMax: time.Second}},
		{"AttemptTimeout", notify.Config{DataDir: "d", AttemptTimeout: -time.Second}},
		{"Concurrency", notify.Config{DataDir: "d", Concurrency: -2}},
	} {
		err := tc.cfg.WithDefaults().Validate()
		if err == nil || !strings.Contains(err.Error(), tc.field) {
			t.Errorf("Validate(%+v) = %v, want an error naming %s", tc.cfg, err, tc.field)
		}
	}
}
