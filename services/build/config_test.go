package build_test

import (
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/services/build"
)

func TestConfig(t *testing.T) {
	cfg := build.Config{DataDir: "/var/lib/sluice"}.WithDefaults()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	if cfg.DatabaseURL != "sqlite:/var/lib/sluice/build.db" || cfg.Workers != 4 || cfg.DefaultStepTimeout != 30*time.Minute ||
		cfg.Heartbeat != 10*time.Second || cfg.WorkerID == "" {
		t.Errorf("defaults %+v", cfg)
	}
	for _, tc := range []struct {
		cfg  build.Config
		want string
	}{
		{build.Config{}, "DataDir is required"},
		{build.Config{DataDir: "d", Workers: -1}, "Workers is -1"},
		{build.Config{DataDir: "d", DefaultStepTimeout: -time.Second}, "DefaultStepTimeout"},
		{build.Config{DataDir: "d", Heartbeat: -time.Second}, "Heartbeat"},
		{build.Config{DataDir: "d", NATSReplicas: 7}, "NATSReplicas"},
	} {
		if err := tc.cfg.WithDefaults().Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v; want an error with %q", tc.cfg, err, tc.want)
		}
	}
}
