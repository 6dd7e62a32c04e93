package release

import (
	"errors"
	"fmt"
	"path"
	"path/filepath"
	"time"

	"github.com/sluicehq/sluice/platform/executor"
	"github.com/sluicehq/sluice/platform/gitcheckout"
	"github.com/sluicehq/sluice/platform/servicekit"
	"github.com/sluicehq/sluice/platform/steplog"
	"github.com/sluicehq/sluice/platform/stepsecrets"
	"github.com/sluicehq/sluice/services/release/domain"
)

// Name is the service's name: its NATS user and declarations, its
// variables (SLUICE_RELEASE_*), its logs.
const Name = "release"

// Defaults of DefaultConfig.
const (
	DefaultSourceURL     = stepsecrets.DefaultSourceURL
	DefaultWorkers       = 2
	DefaultDeployTimeout = 10 * time.Minute
	DefaultVerifyTimeout = 60 * time.Second
	DefaultHeartbeat     = 5 * time.Second
	DefaultLeaseDuration = 30 * time.Second
	DefaultMaxStateSize  = 64 << 20
	DefaultKeepReleases  = 10
)

// lockStopTime is how long before its lease may lapse a replica that could
// not renew it stops its work: a deploy command gets SIGTERM, then SIGKILL
// after the executor's kill grace.
var lockStopTime = executor.StopTime(0)

// Config configures the release service.
type Config struct {
	// Settings: DataDir holds the database (by default), the deploy
	// workspaces and the state directories of the deploys in progress
	// (<DataDir>/state/<repository>/<environment>), which the state store
	// keeps between deploys (state.go).
	servicekit.Settings
	// Isolation keeps the steps from the platform (executor.Isolation).
	Isolation executor.Isolation
	// Checkout bounds the checkouts of runs' commits.
	Checkout gitcheckout.Limits
	// Logs bound each run's log.
	Logs steplog.Limits
	// SourceURL is the source service's base URL: release asks it for the
	// commits since the last release (ListCommits, a read-only query).
	SourceURL string
	// Workers is how many release stages run at once. Deploys of one
	// repository and environment never overlap whatever the number.
	Workers int
	// DefaultDeployTimeout bounds a deploy command whose environment sets
	// no deploy_timeout.
	DefaultDeployTimeout time.Duration
	// DefaultVerifyTimeout bounds a verification whose environment sets no
	// timeout.
	DefaultVerifyTimeout time.Duration
	// EnvironmentBranches says which branches may deploy automatically to
	// which environment, in domain.ParseEnvironmentBranches's format
	// ("production=main,staging=main|release/*"; "*" names every other
	// environment). It is the platform's rule: a pipeline's release
	// branches narrow it, never widen it. Empty, or for an environment it
	// does not name without a "*" entry: main and master
	// (domain.DefaultBranches).
	EnvironmentBranches string
	// KeepProcesses are the environments (path.Match globs, "*" for
	// every one) whose deploy commands may leave processes running on
	// this host: a deploy that starts the service it deploys here. Other
	// deploys, and every verify command, leave nothing behind
	// (executor.Spec.KeepProcesses).
	KeepProcesses []string
	// Heartbeat is how often a replica renews its lease on the lock of the
	// environment it deploys to (or the repository it versions).
	Heartbeat time.Duration
	// LeaseDuration is how long a claim or a renewal keeps such a lease:
	// a replica that dies, or is cut off from the database, holds the
	// lock at most that long. One that cannot renew stops its work
	// lockStopTime before the lease may lapse.
	LeaseDuration time.Duration
	// MaxStateSize bounds an environment's deploy state (the directory
	// deploy commands keep between deploys, $SLUICE_STATE_DIR), in bytes
	// of its archive in the state store.
	MaxStateSize int
	// KeepReleases is how many of the last verified releases of each
	// environment keep their artifacts in KeptBucket, for rollbacks,
	// besides the releases deployed now and those that may still be
	// (keep.go).
	KeepReleases int
}

// keepsProcesses reports whether environment's deploy commands may leave
// processes running.
func (c Config) keepsProcesses(environment string) bool {
	for _, pattern := range c.KeepProcesses {
		if ok, err := path.Match(pattern, environment); err == nil && ok {
			return true
		}
	}
	return false
}

// DefaultConfig is the configuration a binary starts from.
func DefaultConfig() Config {
	return Config{
		Settings:             servicekit.Settings{DataDir: filepath.Join("data", Name)},
		SourceURL:            DefaultSourceURL,
		Workers:              DefaultWorkers,
		DefaultDeployTimeout: DefaultDeployTimeout,
		DefaultVerifyTimeout: DefaultVerifyTimeout,
		Heartbeat:            DefaultHeartbeat,
		LeaseDuration:        DefaultLeaseDuration,
		MaxStateSize:         DefaultMaxStateSize,
		KeepReleases:         DefaultKeepReleases,
	}
}

// RegisterFlags registers the settings with the flags of the process that
// runs the service.
func (c *Config) RegisterFlags(f *servicekit.Flags) {
	c.Settings.RegisterFlags(f)
	c.Isolation.RegisterFlags(f)
	c.Checkout.RegisterFlags(f)
	c.Logs.RegisterFlags(f)
	f.StringVar(&c.SourceURL, "source-url", "the source service's URL (asked for the commits of a changelog and the secrets of deploys)")
	f.IntVar(&c.Workers, "workers", "release stages run at once")
	f.DurationVar(&c.DefaultDeployTimeout, "deploy-timeout", "timeout of deploy commands whose environment sets none")
	f.DurationVar(&c.DefaultVerifyTimeout, "verify-timeout", "how long a verification may keep trying when its environment sets no timeout")
	f.StringsVar(&c.KeepProcesses, "keep-processes", "environments (globs; * for all) whose deploy commands may leave processes running on this host, such as a deploy that starts the service here; other deploys and verify commands leave nothing behind")
	f.DurationVar(&c.Heartbeat, "heartbeat", "how often a replica renews its lease on the environment it deploys to (or the repository it versions)")
	f.DurationVar(&c.LeaseDuration, "lease-duration", "how long a replica's lease on an environment lasts without a renewal: a replica that dies or is cut off from the database holds the environment at most that long, and stops its deploy before")
	f.IntVar(&c.MaxStateSize, "max-state-size", "the largest deploy state ($SLUICE_STATE_DIR) an environment may keep, in bytes of its archive; a larger one fails the deploy")
	f.IntVar(&c.KeepReleases, "keep-releases", "how many of the last verified releases of each environment keep their artifacts for rollbacks (besides the deployed ones and those not deployed yet); an older release's are deleted and it cannot be rolled back to")
	f.StringVar(&c.EnvironmentBranches, "environment-branches",
		"the branches that may deploy automatically to each environment: ENV=BRANCH|BRANCH,... (globs; * for every other environment; ENV= for none); an environment not named takes main|master")
}

// WithDefaults returns c with zero fields set to their defaults.
func (c Config) WithDefaults() Config {
	c.Settings = c.Settings.WithDefaults(Name)
	if c.Workers == 0 {
		c.Workers = DefaultWorkers
	}
	if c.DefaultDeployTimeout == 0 {
		c.DefaultDeployTimeout = DefaultDeployTimeout
	}
	if c.DefaultVerifyTimeout == 0 {
		c.DefaultVerifyTimeout = DefaultVerifyTimeout
	}
	if c.Heartbeat == 0 {
		c.Heartbeat = DefaultHeartbeat
	}
	if c.LeaseDuration == 0 {
		c.LeaseDuration = DefaultLeaseDuration
	}
	if c.MaxStateSize == 0 {
		c.MaxStateSize = DefaultMaxStateSize
	}
	if c.KeepReleases == 0 {
		c.KeepReleases = DefaultKeepReleases
	}
	return c
}

// Validate refuses a config the service cannot run with, naming the
// setting. Call it on WithDefaults' result.
func (c Config) Validate() error {
	errs := []error{c.Settings.Validate(), c.Isolation.Validate(), c.Checkout.Validate(), c.Logs.Validate()}
	if err := stepsecrets.CheckSourceURL(c.SourceURL, true, c.AllowPlainHTTP); err != nil {
		errs = append(errs, err)
	}
	if c.Workers < 1 {
		errs = append(errs, fmt.Errorf("workers is %d; it must be at least 1", c.Workers))
	}
	if c.DefaultDeployTimeout <= 0 {
		errs = append(errs, fmt.Errorf("deploy-timeout is %s; it must be positive", c.DefaultDeployTimeout))
	}
	for _, pattern := range c.KeepProcesses {
		if _, err := path.Match(pattern, ""); err != nil {
			errs = append(errs, fmt.Errorf("keep-processes: %q: %w", pattern, err))
		}
	}
	if c.DefaultVerifyTimeout <= 0 {
		errs = append(errs, fmt.Errorf("verify-timeout is %s; it must be positive", c.DefaultVerifyTimeout))
	}
	if c.Heartbeat <= 0 {
		errs = append(errs, fmt.Errorf("heartbeat is %s; it must be positive", c.Heartbeat))
	} else if least := 2*c.Heartbeat + lockStopTime; c.LeaseDuration < least {
		errs = append(errs, fmt.Errorf("lease-duration is %s; it must be at least two heartbeats (heartbeat %s) plus %s, the time a deploy needs to stop: %s",
			c.LeaseDuration, c.Heartbeat, lockStopTime, least))
	}
	if c.MaxStateSize <= 0 {
		errs = append(errs, fmt.Errorf("max-state-size is %d; it must be positive", c.MaxStateSize))
	}
	if c.KeepReleases < 1 {
		errs = append(errs, fmt.Errorf("keep-releases is %d; it must be at least 1 (the release a rollback goes back to)", c.KeepReleases))
	}
	if _, err := domain.ParseEnvironmentBranches(c.EnvironmentBranches); err != nil {
		errs = append(errs, fmt.Errorf("environment-branches: %w", err))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%s: %w", Name, err)
	}
	return nil
}
