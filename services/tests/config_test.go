package tests_test

import (
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/platform/servicekit"
	"github.com/sluicehq/sluice/services/tests"
)

func TestConfig(t *testing.T) {
	t.Parallel()
	d := tests.Config{Settings: servicekit.Settings{DataDir: "/var/lib/sluice"}}.WithDefaults()
	if d.DatabaseURL != "sqlite:/var/lib/sluice/test.db" || d.Workers != 4 || d.DefaultStepTimeout != 30*time.Minute || d.MaxReportSize != 64<<20 || d.MaxReportFiles != 1000 {
		t.Errorf("defaults = %+v", d)
	}
	if err := d.Validate(); err != nil {
		t.Errorf("valid config refused: %v", err)
	}
	dir := servicekit.Settings{DataDir: "d"}
	for _, tt := range []struct {
		name  string
		cfg   tests.Config
		field string
	}{
		{"no data dir", tests.Config{}, "data-dir is required"},
		{"negative workers", tests.Config{Settings: dir, Workers: -1}, "workers is -1"},
		{"negative timeout", tests.Config{Settings: dir, DefaultStepTimeout: -time.Second}, "step-timeout is -1s"},
		{"negative report size", tests.Config{Settings: dir, MaxReportSize: -1}, "max-report-size is -1; it must be at least 1"},
		{"negative report files", tests.Config{Settings: dir, MaxReportFiles: -1}, "max-report-files is -1; it must be at least 1"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := tt.cfg.WithDefaults().Validate()
			if err == nil || !strings.Contains(err.Error(), tt.field) {
				t.Errorf("Validate() = %v, want an error containing %q", err, tt.field)
			}
		})
	}
}
