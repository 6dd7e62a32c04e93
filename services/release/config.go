// Package release is the release service: it versions the runs whose tests
// passed, deploys them to the pipeline's environments one after the other,
// verifies each deploy and rolls an environment back to its last good
// release when a deploy or its verification fails.
package release

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
	DefaultWorkers       = 2
	DefaultDeployTimeout = 10 * time.Minute
	DefaultVerifyTimeout = 60 * time.Second
)

// Config configures the release service.
type Config struct {
	// DataDir holds the database (by default), the deploy workspaces and
	// the state directories deploy commands keep between deploys
	// (<DataDir>/state/<repository>/<environment>). Required.
	DataDir string
	// DatabaseURL defaults to sqlite:<DataDir>/release.db.
	DatabaseURL string
	// SourceURL is the source service's base URL (GetRun, ListCommits).
	// Required.
	SourceURL string
	// BuildURL is the build service's base URL (GetBuild). Required.
	BuildURL string
	// Workers is how many release stages run at once (default 2). Deploys
	// of one repository and environment never overlap whatever the number.
	Workers int
	// DefaultDeployTimeout bounds a deploy command whose environment sets
	// no deploy_timeout (default 10m).
	DefaultDeployTimeout time.Duration
	// DefaultVerifyTimeout bounds a verification whose environment sets no
	// timeout (default 60s).
	DefaultVerifyTimeout time.Duration
	// NATSReplicas is the replica count of the streams and object stores
	// the service creates (3 on a 3-node NATS cluster); 0 keeps the count
	// declared under deploy/nats.
	NATSReplicas int
}

// WithDefaults returns c with zero fields set to their defaults.
func (c Config) WithDefaults() Config {
	if c.DatabaseURL == "" && c.DataDir != "" {
		c.DatabaseURL = "sqlite:" + filepath.Join(c.DataDir, "release.db")
	}
	if c.Workers == 0 {
		c.Workers = DefaultWorkers
	}
	if c.DefaultDeployTimeout == 0 {
		c.DefaultDeployTimeout = DefaultDeployTimeout
	}
	if c.DefaultVerifyTimeout == 0 {
		c.DefaultVerifyTimeout = DefaultVerifyTimeout
	}
	return c
}

// Validate refuses a config the service cannot run with, naming the field.
// Call it on WithDefaults' result.
func (c Config) Validate() error {
	var errs []error
	if c.DataDir == "" {
		errs = append(errs, errors.New("release config: DataDir is required"))
	}
	if c.DatabaseURL == "" {
		errs = append(errs, errors.New("release config: DatabaseURL is required"))
	}
	if err := checkURL("SourceURL", c.SourceURL); err != nil {
		errs = append(errs, err)
	}
	if err := checkURL("BuildURL", c.BuildURL); err != nil {
		errs = append(errs, err)
	}
	if c.Workers < 1 {
		errs = append(errs, fmt.Errorf("release config: Workers is %d; it must be at least 1", c.Workers))
	}
	if c.DefaultDeployTimeout < 0 {
		errs = append(errs, fmt.Errorf("release config: DefaultDeployTimeout is %s; it must be positive", c.DefaultDeployTimeout))
	}
	if c.DefaultVerifyTimeout < 0 {
		errs = append(errs, fmt.Errorf("release config: DefaultVerifyTimeout is %s; it must be positive", c.DefaultVerifyTimeout))
	}
	if err := natsprovision.CheckReplicas(c.NATSReplicas); err != nil {
		errs = append(errs, fmt.Errorf("release config: NATSReplicas: %w", err))
	}
	return errors.Join(errs...)
}

func checkURL(field, s string) error {
	if s == "" {
		return fmt.Errorf("release config: %s is required", field)
	}
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("release config: %s %q is not an http:// or https:// URL", field, s)
	}
	return nil
}
