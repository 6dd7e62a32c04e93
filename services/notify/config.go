// Package notify is the notify service: webhook subscriptions to Sluice's
// events, their fan-out into durable deliveries, a delivery worker that
// POSTs each event as a signed CloudEvent with retries and dead-lettering,
// and a live stream of every event.
package notify

import (
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/sluicehq/sluice/platform/natsprovision"
)

// Config is the notify service's configuration. Zero values take the
// defaults (see WithDefaults).
type Config struct {
	// DataDir holds the SQLite database by default. Required.
	DataDir string
	// DatabaseURL defaults to sqlite:<DataDir>/notify.db.
	DatabaseURL string
	// MaxAttempts is how many attempts a delivery gets before it is dead
	// (default 6).
	MaxAttempts int
	// RetryBase is the delay after the first failed attempt; each later one
	// doubles it (default 1s).
	RetryBase time.Duration
	// RetryMax caps the delay between attempts (default 5m).
	RetryMax time.Duration
	// AttemptTimeout bounds one POST, response included (default 10s).
	AttemptTimeout time.Duration
	// Concurrency is how many events are fanned out, and how many
	// deliveries are attempted, at once (default 8).
	Concurrency int
	// Version goes into the User-Agent of deliveries (default "dev").
	Version string
	// NATSReplicas is the replica count of the streams and object stores
	// the service creates (3 on a 3-node NATS cluster); 0 keeps the count
	// declared under deploy/nats.
	NATSReplicas int
}

// Defaults.
const (
	DefaultMaxAttempts    = 6
	DefaultRetryBase      = time.Second
	DefaultRetryMax       = 5 * time.Minute
	DefaultAttemptTimeout = 10 * time.Second
	DefaultConcurrency    = 8
)

// WithDefaults fills in the zero fields.
func (c Config) WithDefaults() Config {
	if c.DatabaseURL == "" && c.DataDir != "" {
		c.DatabaseURL = "sqlite:" + filepath.Join(c.DataDir, "notify.db")
	}
	if c.MaxAttempts == 0 {
		c.MaxAttempts = DefaultMaxAttempts
	}
	if c.RetryBase == 0 {
		c.RetryBase = DefaultRetryBase
	}
	if c.RetryMax == 0 {
		c.RetryMax = DefaultRetryMax
	}
	if c.AttemptTimeout == 0 {
		c.AttemptTimeout = DefaultAttemptTimeout
	}
	if c.Concurrency == 0 {
		c.Concurrency = DefaultConcurrency
	}
	if c.Version == "" {
		c.Version = "dev"
	}
	return c
}

// Validate refuses a configuration notify cannot run with, naming the
// field. Call it on WithDefaults' result.
func (c Config) Validate() error {
	var errs []error
	if c.DataDir == "" {
		errs = append(errs, errors.New("notify: DataDir is required"))
	}
	if c.DatabaseURL == "" {
		errs = append(errs, errors.New("notify: DatabaseURL is required"))
	}
	if c.MaxAttempts < 1 {
		errs = append(errs, fmt.Errorf("notify: MaxAttempts is %d; it must be at least 1", c.MaxAttempts))
	}
	if c.RetryBase <= 0 {
		errs = append(errs, fmt.Errorf("notify: RetryBase is %v; it must be positive", c.RetryBase))
	}
	if c.RetryMax < c.RetryBase {
		errs = append(errs, fmt.Errorf("notify: RetryMax (%v) is less than RetryBase (%v)", c.RetryMax, c.RetryBase))
	}
	if c.AttemptTimeout <= 0 {
		errs = append(errs, fmt.Errorf("notify: AttemptTimeout is %v; it must be positive", c.AttemptTimeout))
	}
	if c.Concurrency < 1 {
		errs = append(errs, fmt.Errorf("notify: Concurrency is %d; it must be at least 1", c.Concurrency))
	}
	if err := natsprovision.CheckReplicas(c.NATSReplicas); err != nil {
		errs = append(errs, fmt.Errorf("notify: NATSReplicas: %w", err))
	}
	return errors.Join(errs...)
}
