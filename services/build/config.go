package build

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/sluicehq/sluice/platform/natsprovision"
)

// Defaults applied by Config.WithDefaults.
const (
	DefaultWorkers     = 4
	DefaultStepTimeout = 30 * time.Minute
	DefaultHeartbeat   = 10 * time.Second
)

// Config configures the build service.
type Config struct {
	// DataDir holds the workspaces (and the database by default). Required.
	DataDir string
	// DatabaseURL is the service's database; default sqlite:<DataDir>/build.db.
	DatabaseURL string
	// Workers is how many builds run at once in this process; default 4.
	Workers int
	// DefaultStepTimeout bounds a step that declares no timeout; default 30m.
	DefaultStepTimeout time.Duration
	// WorkerID names this worker in the builds it holds and in takeover log
	// lines; default <hostname>-<pid>.
	WorkerID string
	// Heartbeat is how often a running build renews its JetStream lease
	// (InProgress) and its lease in the database; a build whose lease was not
	// renewed for two heartbeats may be taken over. It must stay well under
	// the build-runs consumer's ack wait (30s). Default 10s.
	Heartbeat time.Duration
	// NATSReplicas is the replica count of the streams and object stores
	// the service creates (3 on a 3-node NATS cluster); 0 keeps the count
	// declared under deploy/nats.
	NATSReplicas int
}

// WithDefaults fills the unset fields.
func (c Config) WithDefaults() Config {
	if c.DatabaseURL == "" && c.DataDir != "" {
		c.DatabaseURL = "sqlite:" + filepath.Join(c.DataDir, "build.db")
	}
	if c.Workers == 0 {
		c.Workers = DefaultWorkers
	}
	if c.DefaultStepTimeout == 0 {
		c.DefaultStepTimeout = DefaultStepTimeout
	}
	if c.WorkerID == "" {
		host, err := os.Hostname()
		if err != nil || host == "" {
			host = "build"
		}
		c.WorkerID = host + "-" + strconv.Itoa(os.Getpid())
	}
	if c.Heartbeat == 0 {
		c.Heartbeat = DefaultHeartbeat
	}
	return c
}

// Validate refuses a configuration the service cannot run with, naming the
// field. Call it on WithDefaults' result.
func (c Config) Validate() error {
	var errs []error
	if c.DataDir == "" {
		errs = append(errs, errors.New("build config: DataDir is required"))
	}
	if c.DatabaseURL == "" {
		errs = append(errs, errors.New("build config: DatabaseURL is empty"))
	}
	if c.Workers < 1 {
		errs = append(errs, fmt.Errorf("build config: Workers is %d; it must be at least 1", c.Workers))
	}
	if c.DefaultStepTimeout < 0 {
		errs = append(errs, fmt.Errorf("build config: DefaultStepTimeout is %s; it must be positive", c.DefaultStepTimeout))
	}
	if c.WorkerID == "" {
		errs = append(errs, errors.New("build config: WorkerID is empty"))
	}
	if c.Heartbeat < 0 {
		errs = append(errs, fmt.Errorf("build config: Heartbeat is %s; it must be positive", c.Heartbeat))
	}
	if err := natsprovision.CheckReplicas(c.NATSReplicas); err != nil {
		errs = append(errs, fmt.Errorf("build config: NATSReplicas: %w", err))
	}
	return errors.Join(errs...)
}
