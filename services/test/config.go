// Package test is Sluice's test service: it tests every successful build.
// On a BuildFinished event it checks the commit out, puts the build's
// artifacts in place, runs the pipeline's test steps, reads their JUnit or
// `go test -json` reports, stores suites and cases and publishes
// TestRunFinished, on which release starts. Its Connect API serves test
// runs, cases and step logs.
package test

import (
	"errors"
	"fmt"
	"net/url"
	"path/filepath"
	"time"

	"github.com/sluicehq/sluice/platform/natsprovision"
)

// Defaults for Config fields left zero.
const (
	DefaultWorkers     = 4
	DefaultStepTimeout = 30 * time.Minute
)

// Config is the test service's configuration.
type Config struct {
	// DataDir holds the workspaces (and the database by default). Required.
	DataDir string
	// DatabaseURL is where test runs are stored; default
	// sqlite:<DataDir>/test.db.
	DatabaseURL string
	// SourceURL is the source service's base URL, asked for each run's
	// pipeline, e.g. http://127.0.0.1:8081. Required.
	SourceURL string
	// Workers is how many test runs this process runs at once; default
	// DefaultWorkers.
	Workers int
	// DefaultStepTimeout bounds a test step that sets no timeout; default
	// DefaultStepTimeout.
	DefaultStepTimeout time.Duration
	// NATSReplicas is the replica count of the streams and object stores
	// the service creates (3 on a 3-node NATS cluster); 0 keeps the count
	// declared under deploy/nats.
	NATSReplicas int
}

// WithDefaults returns c with zero fields set to their defaults.
func (c Config) WithDefaults() Config {
	if c.DatabaseURL == "" && c.DataDir != "" {
		c.DatabaseURL = "sqlite:" + filepath.Join(c.DataDir, "test.db")
	}
	if c.Workers == 0 {
		c.Workers = DefaultWorkers
	}
	if c.DefaultStepTimeout == 0 {
		c.DefaultStepTimeout = DefaultStepTimeout
	}
	return c
}

// Validate refuses a configuration the service cannot run with, naming the
// field. It checks c as given; call it on c.WithDefaults().
func (c Config) Validate() error {
	var errs []error
	if c.DataDir == "" {
		errs = append(errs, errors.New("test config: DataDir is required"))
	}
	if c.DatabaseURL == "" {
		errs = append(errs, errors.New("test config: DatabaseURL is required"))
	}
	if c.SourceURL == "" {
		errs = append(errs, errors.New("test config: SourceURL is required (the source service's URL, e.g. http://127.0.0.1:8081)"))
	} else if u, err := url.Parse(c.SourceURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		errs = append(errs, fmt.Errorf("test config: SourceURL %q is not an absolute http:// or https:// URL", c.SourceURL))
	}
	if c.Workers < 1 {
		errs = append(errs, fmt.Errorf("test config: Workers is %d; it must be at least 1", c.Workers))
	}
	if c.DefaultStepTimeout <= 0 {
		errs = append(errs, fmt.Errorf("test config: DefaultStepTimeout is %s; it must be greater than zero", c.DefaultStepTimeout))
	}
	if err := natsprovision.CheckReplicas(c.NATSReplicas); err != nil {
		errs = append(errs, fmt.Errorf("test config: NATSReplicas: %w", err))
	}
	return errors.Join(errs...)
}
