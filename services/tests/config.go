package tests

import (
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/sluicehq/sluice/platform/executor"
	"github.com/sluicehq/sluice/platform/executor/container"
	"github.com/sluicehq/sluice/platform/gitcheckout"
	"github.com/sluicehq/sluice/platform/servicekit"
	"github.com/sluicehq/sluice/platform/stepcache"
	"github.com/sluicehq/sluice/platform/stepgraph"
	"github.com/sluicehq/sluice/platform/steplog"
	"github.com/sluicehq/sluice/platform/stepsecrets"
)

// Name is the service's name: its NATS user and declarations, its
// variables (SLUICE_TEST_*), its logs.
const Name = "test"

// Defaults of DefaultConfig.
const (
	DefaultWorkers     = 4
	DefaultStepTimeout = 30 * time.Minute
	// DefaultMaxReportSize bounds a report file: 64 MiB.
	DefaultMaxReportSize = 64 << 20
	// DefaultMaxReportFiles bounds the report files read per test run.
	DefaultMaxReportFiles = 1000
)

// Config is the test service's configuration.
type Config struct {
	// Settings: DataDir holds the workspaces (and the database by default).
	servicekit.Settings
	// Isolation keeps the steps from the platform (executor.Isolation).
	Isolation executor.Isolation
	// Containers runs the steps that name an image (container.Config).
	Containers container.Config
	// Checkout bounds the checkouts of runs' commits.
	Checkout gitcheckout.Limits
	// Logs bound each run's log.
	Logs steplog.Limits
	// Steps bound how many steps of a stage run at once.
	Steps stepgraph.Limits
	// Caches bound the stage's dependency caches.
	Caches stepcache.Limits
	// SourceURL is the source service's base URL, asked for the values of
	// the secrets steps ask for (stepsecrets); empty: runs whose steps ask
	// for secrets fail.
	SourceURL string
	// Workers is how many test runs this process runs at once.
	Workers int
	// DefaultStepTimeout bounds a test step that sets no timeout.
	DefaultStepTimeout time.Duration
	// MaxReportSize bounds a report file, in bytes: a larger one is a
	// problem of the test run, which ends in ERROR.
	MaxReportSize int
	// MaxReportFiles bounds how many report files a test run reads, over
	// all its report globs: the files past it are a problem of the test
	// run, which ends in ERROR.
	MaxReportFiles int
}

// DefaultConfig is the configuration a binary starts from.
func DefaultConfig() Config {
	return Config{
		Settings:           servicekit.Settings{DataDir: filepath.Join("data", Name)},
		SourceURL:          stepsecrets.DefaultSourceURL,
		Workers:            DefaultWorkers,
		DefaultStepTimeout: DefaultStepTimeout,
		MaxReportSize:      DefaultMaxReportSize,
		MaxReportFiles:     DefaultMaxReportFiles,
	}
}

// RegisterFlags registers the settings with the flags of the process that
// runs the service.
func (c *Config) RegisterFlags(f *servicekit.Flags) {
	c.Settings.RegisterFlags(f)
	c.Isolation.RegisterFlags(f)
	c.Containers.RegisterFlags(f)
	c.Checkout.RegisterFlags(f)
	c.Logs.RegisterFlags(f)
	c.Steps.RegisterFlags(f)
	c.Caches.RegisterFlags(f)
	f.StringVar(&c.SourceURL, "source-url", "the source service's URL (asked for the secrets steps ask for)")
	f.IntVar(&c.Workers, "workers", "test runs run at once")
	f.DurationVar(&c.DefaultStepTimeout, "step-timeout", "timeout of test steps that declare none")
	f.IntVar(&c.MaxReportSize, "max-report-size", "the largest test report file read, in bytes; a larger one is an error of the test run")
	f.IntVar(&c.MaxReportFiles, "max-report-files", "the most report files a test run reads, over all its report paths; more is an error of the test run")
}

// WithDefaults returns c with zero fields set to their defaults.
func (c Config) WithDefaults() Config {
	c.Settings = c.Settings.WithDefaults(Name)
	c.Containers = c.Containers.WithDefaults()
	if c.Workers == 0 {
		c.Workers = DefaultWorkers
	}
	if c.DefaultStepTimeout == 0 {
		c.DefaultStepTimeout = DefaultStepTimeout
	}
	if c.MaxReportSize == 0 {
		c.MaxReportSize = DefaultMaxReportSize
	}
	if c.MaxReportFiles == 0 {
		c.MaxReportFiles = DefaultMaxReportFiles
	}
	return c
}

// Validate refuses a configuration the service cannot run with, naming the
// setting. Call it on WithDefaults' result.
func (c Config) Validate() error {
	errs := []error{c.Settings.Validate(), c.Isolation.Validate(), c.Containers.Validate(), c.Checkout.Validate(), c.Logs.Validate(), c.Steps.Validate(), c.Caches.Validate(), stepsecrets.CheckSourceURL(c.SourceURL, false, c.AllowPlainHTTP)}
	if c.Workers < 1 {
		errs = append(errs, fmt.Errorf("workers is %d; it must be at least 1", c.Workers))
	}
	if c.DefaultStepTimeout <= 0 {
		errs = append(errs, fmt.Errorf("step-timeout is %s; it must be positive", c.DefaultStepTimeout))
	}
	if c.MaxReportSize < 1 {
		errs = append(errs, fmt.Errorf("max-report-size is %d; it must be at least 1 (bytes)", c.MaxReportSize))
	}
	if c.MaxReportFiles < 1 {
		errs = append(errs, fmt.Errorf("max-report-files is %d; it must be at least 1", c.MaxReportFiles))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%s: %w", Name, err)
	}
	return nil
}
