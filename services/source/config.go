// Package source is Sluice's source service: it registers git repositories,
// notices their changes (polling, GitHub-style webhooks, manual triggers),
// reads each commit's pipeline file, requests runs, and folds the other
// services' events into each run's summary.
package source

import (
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/sluicehq/sluice/platform/natsprovision"
)

// DefaultPollInterval is how often repositories are fetched when the
// binary is not told otherwise.
const DefaultPollInterval = 30 * time.Second

// Config is the source service's configuration.
type Config struct {
	// DataDir holds the repository mirrors (DataDir/mirrors/<repository
	// id>) and, by default, the database. Required.
	DataDir string
	// DatabaseURL defaults to sqlite:<DataDir>/source.db.
	DatabaseURL string
	// PollInterval is how often every repository is fetched to notice new
	// commits on its watched branch. Zero disables polling (webhooks and
	// manual triggers still work); DefaultConfig sets DefaultPollInterval.
	PollInterval time.Duration
	// NATSReplicas is the replica count of the streams and object stores
	// the service creates (3 on a 3-node NATS cluster); 0 keeps the count
	// declared under deploy/nats.
	NATSReplicas int
}

// DefaultConfig is the configuration with every default filled in for
// dataDir, polling included.
func DefaultConfig(dataDir string) Config {
	return Config{DataDir: dataDir, PollInterval: DefaultPollInterval}.withDefaults()
}

// Validate refuses a configuration the service cannot run with.
func (c Config) Validate() error {
	var errs []error
	if c.DataDir == "" {
		errs = append(errs, errors.New("source config: DataDir is required"))
	}
	if c.PollInterval < 0 {
		errs = append(errs, fmt.Errorf("source config: PollInterval %s is negative (0 disables polling)", c.PollInterval))
	}
	if err := natsprovision.CheckReplicas(c.NATSReplicas); err != nil {
		errs = append(errs, fmt.Errorf("source config: NATSReplicas: %w", err))
	}
	return errors.Join(errs...)
}

// withDefaults fills in the defaults that derive from other fields.
func (c Config) withDefaults() Config {
	if c.DataDir != "" {
		if abs, err := filepath.Abs(c.DataDir); err == nil {
			c.DataDir = abs
		}
	}
	if c.DatabaseURL == "" && c.DataDir != "" {
		c.DatabaseURL = "sqlite:" + filepath.Join(c.DataDir, "source.db")
	}
	return c
}

func (c Config) mirrorsDir() string { return filepath.Join(c.DataDir, "mirrors") }
