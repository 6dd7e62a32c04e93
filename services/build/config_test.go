package build_test

import (
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/platform/servicekit"
	"github.com/sluicehq/sluice/services/build"
)

func TestConfig(t *testing.T) {
	t.Parallel()
	cfg := build.Config{Settings: servicekit.Settings{DataDir: "/var/lib/sluice"}}.WithDefaults()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	if cfg.DatabaseURL != "sqlite:/var/lib/sluice/build.db" || cfg.Workers != 4 || cfg.DefaultStepTimeout != 30*time.Minute ||
		cfg.Heartbeat != 10*time.Second || cfg.WorkerID == "" {
		t.Errorf("defaults %+v", cfg)
	}
	if def := build.DefaultConfig().WithDefaults(); def.Validate() != nil || !strings.HasSuffix(def.DatabaseURL, "data/build/build.db") {
		t.Errorf("DefaultConfig: %+v, %v", def, def.Validate())
	}
	dir := servicekit.Settings{DataDir: "d"}
	for _, tc := range []struct {
		cfg  build.Config
		want string
	}{
		{build.Config{}, "data-dir is required"},
		{build.Config{Settings: dir, Workers: -1}, "workers is -1"},
		{build.Config{Settings: dir, DefaultStepTimeout: -time.Second}, "step-timeout"},
		{build.Config{Settings: dir, Heartbeat: -time.Second}, "heartbeat"},
		{build.Config{Settings: servicekit.Settings{DataDir: "d", NATSReplicas: 7}}, "nats-replicas"},
	} {
		if err := tc.cfg.WithDefaults().Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v; want an error with %q", tc.cfg, err, tc.want)
		}
	}
}
