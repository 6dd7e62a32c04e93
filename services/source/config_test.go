package source_test

import (
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/platform/servicekit"
	"github.com/sluicehq/sluice/services/source"
)

func TestConfig(t *testing.T) {
	t.Parallel()
	cfg := source.Config{Settings: servicekit.Settings{DataDir: "/var/lib/sluice"}}.WithDefaults()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	if cfg.DatabaseURL != "sqlite:/var/lib/sluice/source.db" || cfg.MaxPipelineSize != 1<<20 || cfg.MaxPipelineAliasNodes != 100_000 {
		t.Errorf("defaults %+v", cfg)
	}
	if def := source.DefaultConfig(); def.PollInterval != source.DefaultPollInterval || def.WithDefaults().Validate() != nil {
		t.Errorf("DefaultConfig: %+v", def)
	}
	for _, tc := range []struct {
		cfg  source.Config
		want string
	}{
		{source.Config{}, "data-dir is required"},
		{source.Config{Settings: servicekit.Settings{DataDir: "d"}, PollInterval: -time.Second}, "poll-interval is -1s"},
		{source.Config{Settings: servicekit.Settings{DataDir: "d", NATSReplicas: 9}}, "nats-replicas"},
		{source.Config{Settings: servicekit.Settings{DataDir: "d"}, MaxPipelineSize: -1}, "max-pipeline-size is -1; it must be at least 1"},
		{source.Config{Settings: servicekit.Settings{DataDir: "d"}, MaxPipelineAliasNodes: -5}, "max-pipeline-alias-nodes is -5; it must be at least 1"},
	} {
		if err := tc.cfg.WithDefaults().Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v; want an error with %q", tc.cfg, err, tc.want)
		}
	}
}
