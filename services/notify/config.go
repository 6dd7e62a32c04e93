package notify

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/sluicehq/sluice/platform/keyring"
	"github.com/sluicehq/sluice/platform/servicekit"
	"github.com/sluicehq/sluice/platform/stepsecrets"
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
	DefaultStatusMaxAge   = 24 * time.Hour
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
	// SourceURL is the source service's base URL, asked for the forge
	// tokens commit statuses are set, and forge releases made, with.
	SourceURL string
	// RunURL is the link of a commit status: a URL template in which
	// {run}, {repository} and {commit} are replaced; "" sets none.
	RunURL string
	// StatusMaxAge is how long a commit status, or a release on a forge,
	// is tried again while its forge fails; then it is given up.
	StatusMaxAge time.Duration
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
		SourceURL:      stepsecrets.DefaultSourceURL,
		StatusMaxAge:   DefaultStatusMaxAge,
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
	f.StringVar(&c.SourceURL, "source-url", "the source service's URL (asked for the forge tokens commit statuses are set with)")
	f.StringVar(&c.RunURL, "run-url", "the link of a commit status: a URL in which {run}, {repository} and {commit} are replaced (none by default)")
	f.DurationVar(&c.StatusMaxAge, "status-max-age", "how long a commit status, or a release on a forge, is tried again while its forge fails")
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
	if c.StatusMaxAge == 0 {
		c.StatusMaxAge = DefaultStatusMaxAge
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
	if c.StatusMaxAge < 0 {
		errs = append(errs, fmt.Errorf("status-max-age is %v; it must be positive", c.StatusMaxAge))
	}
	if c.RunURL != "" && !strings.HasPrefix(c.RunURL, "https://") && !strings.HasPrefix(c.RunURL, "http://") {
		errs = append(errs, fmt.Errorf("run-url %q must be an http:// or https:// URL", c.RunURL))
	}
	errs = append(errs, stepsecrets.CheckSourceURL(c.SourceURL, false, c.AllowPlainHTTP))
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%s: %w", Name, err)
	}
	return nil
}
