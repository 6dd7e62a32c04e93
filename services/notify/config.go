package notify

import (
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/sluicehq/sluice/platform/keyring"
	"github.com/sluicehq/sluice/platform/servicekit"
)

// Name is the service's name: its NATS user and declarations, its
// variables (SLUICE_NOTIFY_*), its logs.
const Name = "notify"

// Defaults of DefaultConfig.
const (
	DefaultMaxAttempts    = 6
	DefaultRetryBase      = time.Second
	DefaultRetryMax       = 5 * time.Minute
	DefaultAttemptTimeout = 10 * time.Second
	DefaultWorkers        = 8
)

// Config is the notify service's configuration. Zero values take the
// defaults (see WithDefaults).
type Config struct {
	// Settings: DataDir holds the SQLite database by default.
	servicekit.Settings
	// MaxAttempts is how many attempts a delivery gets before it is dead.
	MaxAttempts int
	// RetryBase is the delay after the first failed attempt; each later one
	// doubles it.
	RetryBase time.Duration
	// RetryMax caps the delay between attempts.
	RetryMax time.Duration
	// AttemptTimeout bounds one POST, response included.
	AttemptTimeout time.Duration
	// Workers is how many events are fanned out, and how many deliveries
	// are attempted, at once.
	Workers int
	// Keys encrypt the subscriptions' signing secrets at rest
	// (docs/security.md); without them notify keeps them as given.
	Keys keyring.Settings
}

// DefaultConfig is the configuration a binary starts from.
func DefaultConfig() Config {
	return Config{
		Settings:       servicekit.Settings{DataDir: filepath.Join("data", Name)},
		MaxAttempts:    DefaultMaxAttempts,
		RetryBase:      DefaultRetryBase,
		RetryMax:       DefaultRetryMax,
		AttemptTimeout: DefaultAttemptTimeout,
		Workers:        DefaultWorkers,
	}
}

// RegisterFlags registers the settings with the flags of the process that
// runs the service.
func (c *Config) RegisterFlags(f *servicekit.Flags) {
	c.Settings.RegisterFlags(f)
	f.IntVar(&c.MaxAttempts, "max-attempts", "attempts per delivery before it is dead-lettered")
	f.DurationVar(&c.RetryBase, "retry-base", "delay after the first failed attempt, doubled after each")
	f.DurationVar(&c.RetryMax, "retry-max", "the longest delay between two attempts")
	f.DurationVar(&c.AttemptTimeout, "attempt-timeout", "how long one delivery attempt may take, response included")
	f.IntVar(&c.Workers, "workers", "events fanned out, and deliveries attempted, at once")
	c.Keys.RegisterFlags(f)
}

// WithDefaults fills in the zero fields.
func (c Config) WithDefaults() Config {
	c.Settings = c.Settings.WithDefaults(Name)
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
	if c.Workers == 0 {
		c.Workers = DefaultWorkers
	}
	return c
}

// Validate refuses a configuration notify cannot run with, naming the
// setting. Call it on WithDefaults' result.
func (c Config) Validate() error {
	errs := []error{c.Settings.Validate()}
	if c.MaxAttempts < 1 {
		errs = append(errs, fmt.Errorf("max-attempts is %d; it must be at least 1", c.MaxAttempts))
	}
	if c.RetryBase <= 0 {
		errs = append(errs, fmt.Errorf("retry-base is %v; it must be positive", c.RetryBase))
	}
	if c.RetryMax < c.RetryBase {
		errs = append(errs, fmt.Errorf("retry-max (%v) is less than retry-base (%v)", c.RetryMax, c.RetryBase))
	}
	if c.AttemptTimeout <= 0 {
		errs = append(errs, fmt.Errorf("attempt-timeout is %v; it must be positive", c.AttemptTimeout))
	}
	if c.Workers < 1 {
		errs = append(errs, fmt.Errorf("workers is %d; it must be at least 1", c.Workers))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%s: %w", Name, err)
	}
	return nil
}
