package release

import (
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/platform/servicekit"
)

func TestConfig(t *testing.T) {
	t.Parallel()
	valid := Config{Settings: servicekit.Settings{DataDir: "/var/lib/sluice/release"}, SourceURL: "http://127.0.0.1:8081"}
	got := valid.WithDefaults()
	if got.DatabaseURL != "sqlite:/var/lib/sluice/release/release.db" || got.Workers != 2 ||
		got.DefaultDeployTimeout != 10*time.Minute || got.DefaultVerifyTimeout != time.Minute || got.KeepReleases != 10 {
		t.Fatalf("defaults = %+v", got)
	}
	if err := got.Validate(); err != nil {
		t.Fatalf("valid config: %v", err)
	}

	tests := []struct {
		name   string
		change func(*Config)
		want   string
	}{
		{"no data dir", func(c *Config) { c.DataDir = ""; c.DatabaseURL = "sqlite:x.db" }, "data-dir is required"},
		{"no source", func(c *Config) { c.SourceURL = "" }, "source-url is required"},
		{"bad source", func(c *Config) { c.SourceURL = "127.0.0.1:8081" }, `source-url "127.0.0.1:8081" is not an http:// or https:// URL`},
		{"workers", func(c *Config) { c.Workers = -1 }, "workers is -1"},
		{"deploy timeout", func(c *Config) { c.DefaultDeployTimeout = -time.Second }, "deploy-timeout is -1s"},
		{"verify timeout", func(c *Config) { c.DefaultVerifyTimeout = -time.Second }, "verify-timeout is -1s"},
		{"keep releases", func(c *Config) { c.KeepReleases = -1 }, "keep-releases is -1; it must be at least 1"},
		{"environment branches", func(c *Config) { c.EnvironmentBranches = "production=main,staging" },
			`environment-branches: entry "staging": want ENVIRONMENT=BRANCHES`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := valid
			tt.change(&c)
			err := c.WithDefaults().Validate()
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Validate() = %v, want it to contain %q", err, tt.want)
			}
		})
	}
	if err := (Config{}).WithDefaults().Validate(); err == nil ||
		!strings.Contains(err.Error(), "data-dir") || !strings.Contains(err.Error(), "source-url") {
		t.Fatalf("empty config: %v, want every missing field named", err)
	}
}
