package source

import (
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"time"

	"github.com/sluicehq/sluice/platform/keyring"
	"github.com/sluicehq/sluice/platform/servicekit"
	"github.com/sluicehq/sluice/services/source/domain"
	"github.com/sluicehq/sluice/services/source/pipeline"
)

// Name is the service's name: its NATS user and declarations, its
// variables (SLUICE_SOURCE_*), its logs.
const Name = "source"

// DefaultPollInterval is how often repositories are fetched by default.
const DefaultPollInterval = 30 * time.Second

// DefaultAuditRetention is how long the audit log keeps entries by
// default: a year.
const DefaultAuditRetention = 365 * 24 * time.Hour

// Config is the source service's configuration.
type Config struct {
	// Settings: DataDir holds the repository mirrors
	// (DataDir/mirrors/<repository id>) and, by default, the database.
	servicekit.Settings
	// PollInterval is how often every repository is fetched to notice new
	// commits on its watched branch. Zero disables polling (webhooks and
	// manual triggers still work).
	PollInterval time.Duration
	// AdminTokenFile, when set, holds an admin token's secret that source
	// registers on start if it does not know it; when the file does not
	// exist, source makes a token and writes it there (0600) first. It is
	// how a new installation gets its first token (`sluice up` uses
	// <data-dir>/admin-token).
	AdminTokenFile string
	// WebhookAddr, when set, is a listen address that serves the webhook
	// receiver (and /healthz) only, for exposing to a forge without
	// exposing the API; the API's address serves webhooks too.
	WebhookAddr string
	// AuditRetention is how long the audit log keeps an entry (0: the
	// default, a year); older entries are pruned every hour.
	AuditRetention time.Duration
	// Keys encrypt the secrets steps ask for and the webhook secrets
	// (docs/security.md: rotation). Without them source refuses to store
	// or hand out secrets, and keeps webhook secrets as given.
	Keys keyring.Settings
	// MaxPipelineSize bounds a pipeline file, in bytes (0: the default,
	// pipeline.DefaultMaxSize); a larger file fails its run.
	MaxPipelineSize int
	// MaxPipelineAliasNodes bounds the YAML nodes a pipeline file's aliases
	// stand for, all together (0: the default,
	// pipeline.DefaultMaxAliasNodes); a file whose aliases stand for more
	// fails its run.
	MaxPipelineAliasNodes int
	// MaxActiveRunsPerRepository bounds the runs of one repository that
	// are active (let start and not ended) at once; the others wait, in
	// the order they were made. 0 is no limit.
	MaxActiveRunsPerRepository int
	// MaxActiveRuns bounds the active runs of all repositories together;
	// when it is reached, the next run let start is of the repository with
	// the fewest active runs. 0 is no limit.
	MaxActiveRuns int
}

// DefaultMaxActiveRunsPerRepository is the default of
// Config.MaxActiveRunsPerRepository: enough to keep the stages busy, few
// enough that a repository's burst of runs queues in source, where the
// fair queue orders it, and not in front of other repositories' runs in
// the stages' queues.
const DefaultMaxActiveRunsPerRepository = 8

func (c Config) activeRunLimits() domain.Limits {
	return domain.Limits{PerRepository: c.MaxActiveRunsPerRepository, Total: c.MaxActiveRuns}
}

// DefaultConfig is the configuration a binary starts from.
func DefaultConfig() Config {
	return Config{
		Settings:              servicekit.Settings{DataDir: filepath.Join("data", Name)},
		PollInterval:          DefaultPollInterval,
		AuditRetention:        DefaultAuditRetention,
		MaxPipelineSize:       pipeline.DefaultMaxSize,
		MaxPipelineAliasNodes: pipeline.DefaultMaxAliasNodes,

		MaxActiveRunsPerRepository: DefaultMaxActiveRunsPerRepository,
	}
}

// RegisterFlags registers the settings with the flags of the process that
// runs the service.
func (c *Config) RegisterFlags(f *servicekit.Flags) {
	c.Settings.RegisterFlags(f)
	f.DurationVar(&c.PollInterval, "poll-interval", "how often repositories are fetched for new commits; 0 disables")
	f.StringVar(&c.AdminTokenFile, "admin-token-file", "file with the first admin token's secret, registered on start; made (0600) when missing")
	f.DurationVar(&c.AuditRetention, "audit-retention", "how long the audit log keeps an entry (8760h: a year); older ones are pruned hourly")
	f.StringVar(&c.WebhookAddr, "webhook-addr", "a listen address that serves only the webhook receiver, to expose to a forge without exposing the API")
	f.IntVar(&c.MaxPipelineSize, "max-pipeline-size", "the largest pipeline file read, in bytes; a larger one fails its run")
	f.IntVar(&c.MaxPipelineAliasNodes, "max-pipeline-alias-nodes", "how many YAML nodes a pipeline file's aliases may stand for, all together; more fails the run")
	f.IntVar(&c.MaxActiveRunsPerRepository, "max-active-runs-per-repository", "how many runs of one repository may be active at once; the others wait in order (0: no limit)")
	f.IntVar(&c.MaxActiveRuns, "max-active-runs", "how many runs may be active at once in all; the repository with the fewest active runs goes next (0: no limit)")
	c.Keys.RegisterFlags(f)
}

// WithDefaults fills in the defaults that derive from other fields.
func (c Config) WithDefaults() Config {
	c.Settings = c.Settings.WithDefaults(Name)
	if c.AuditRetention == 0 {
		c.AuditRetention = DefaultAuditRetention
	}
	limits := c.pipelineLimits().WithDefaults()
	c.MaxPipelineSize, c.MaxPipelineAliasNodes = limits.MaxSize, limits.MaxAliasNodes
	return c
}

// Validate refuses a configuration the service cannot run with, naming the
// setting. Call it on WithDefaults' result.
func (c Config) Validate() error {
	errs := []error{c.Settings.Validate()}
	if c.WebhookAddr != "" {
		if _, _, err := net.SplitHostPort(c.WebhookAddr); err != nil {
			errs = append(errs, fmt.Errorf("webhook-addr %q is not host:port: %w", c.WebhookAddr, err))
		}
	}
	if c.AuditRetention < time.Hour {
		errs = append(errs, fmt.Errorf("audit-retention is %s; it must be at least 1h", c.AuditRetention))
	}
	if c.MaxPipelineSize < 1 {
		errs = append(errs, fmt.Errorf("max-pipeline-size is %d; it must be at least 1 (bytes)", c.MaxPipelineSize))
	}
	if c.MaxPipelineAliasNodes < 1 {
		errs = append(errs, fmt.Errorf("max-pipeline-alias-nodes is %d; it must be at least 1", c.MaxPipelineAliasNodes))
	}
	if c.MaxActiveRunsPerRepository < 0 {
		errs = append(errs, fmt.Errorf("max-active-runs-per-repository is %d; it must not be negative (0: no limit)", c.MaxActiveRunsPerRepository))
	}
	if c.MaxActiveRuns < 0 {
		errs = append(errs, fmt.Errorf("max-active-runs is %d; it must not be negative (0: no limit)", c.MaxActiveRuns))
	}
	if c.PollInterval < 0 {
		errs = append(errs, fmt.Errorf("poll-interval is %s; it must not be negative (0 disables polling)", c.PollInterval))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%s: %w", Name, err)
	}
	return nil
}

func (c Config) pipelineLimits() pipeline.Limits {
	return pipeline.Limits{MaxSize: c.MaxPipelineSize, MaxAliasNodes: c.MaxPipelineAliasNodes}
}

func (c Config) mirrorsDir() string { return filepath.Join(c.DataDir, "mirrors") }
