package test_test

import (
	"strings"
	"testing"
	"time"

	test "github.com/sluicehq/sluice/services/test"
)

func TestConfig(t *testing.T) {
	d := test.Config{DataDir: "/var/lib/sluice", SourceURL: "http://127.0.0.1:8081"}.WithDefaults()
	if d.DatabaseURL != "sqlite:/var/lib/sluice/test.db" || d.Workers != 4 || d.DefaultStepTimeout != 30*time.Minute {
		t.Errorf("defaults = %+v", d)
	}
	if err := d.Validate(); err != nil {
		t.Errorf("valid config refused: %v", err)
	}
	for _, tt := range []struct {
		name  string
		cfg   test.Config
		field string
	}{
		{"no data dir", test.Config{SourceURL: "http://x"}, "DataDir is required"},
		{"no source", test.Config{DataDir: "d"}, "SourceURL is required"},
		{"relative source", test.Config{DataDir: "d", SourceURL: "127.0.0.1:8081"}, `SourceURL "127.0.0.1:8081" is not an absolute`},
		{"negative workers", test.Config{DataDir: "d", SourceURL: "http://x", Workers: -1}, "Workers is -1"},
		{"negative timeout", test.Config{DataDir: "d", SourceURL: "http://x", DefaultStepTimeout: -time.Second}, "DefaultStepTimeout is -1s"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.WithDefaults().Validate()
			if err == nil || !strings.Contains(err.Error(), tt.field) {
				t.Errorf("Validate() = %v, want an error containing %q", err, tt.field)
			}
		})
	}
}
