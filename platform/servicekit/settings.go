package servicekit

import (
	"errors"
	"fmt"
	"path/filepath"

	"github.com/sluicehq/sluice/platform/natsprovision"
)

// Settings are what every service is configured with besides its own
// settings: where its files and database are, and how its NATS resources
// are replicated. Each service's Config embeds them.
type Settings struct {
	// DataDir holds the service's files and, by default, its SQLite
	// database. Required.
	DataDir string
	// DatabaseURL is postgres://user:password@host:5432/db (for replicas)
	// or sqlite:PATH; default sqlite:<DataDir>/<service>.db.
	DatabaseURL string
	// NATSReplicas is the replica count of the streams and object stores
	// the service creates (3 on a 3-node NATS cluster); 0 keeps the count
	// declared under deploy/nats.
	NATSReplicas int
}

// RegisterFlags registers the settings as --data-dir, --database-url and
// --nats-replicas.
func (s *Settings) RegisterFlags(f *Flags) {
	f.StringVar(&s.DataDir, "data-dir", "directory for the service's files and its default database")
	f.StringVar(&s.DatabaseURL, "database-url", "database URL: postgres://user:password@host:5432/db for replicas, or sqlite:PATH (default sqlite:<data-dir>/"+f.Service()+".db, one process only)")
	f.IntVar(&s.NATSReplicas, "nats-replicas", fmt.Sprintf("replicas of the streams and object stores the service creates (1 to %d; 3 on a 3-node cluster; 0 keeps the declared count)", natsprovision.MaxReplicas))
}

// WithDefaults returns s with DataDir made absolute and DatabaseURL
// defaulted to the service's SQLite file in it.
func (s Settings) WithDefaults(service string) Settings {
	if s.DataDir != "" {
		if abs, err := filepath.Abs(s.DataDir); err == nil {
			s.DataDir = abs
		}
	}
	if s.DatabaseURL == "" && s.DataDir != "" {
		s.DatabaseURL = "sqlite:" + filepath.Join(s.DataDir, service+".db")
	}
	return s
}

// Validate refuses settings the service cannot run with; errors name the
// setting as its flag does.
func (s Settings) Validate() error {
	var errs []error
	if s.DataDir == "" {
		errs = append(errs, errors.New("data-dir is required"))
	}
	if err := natsprovision.CheckReplicas(s.NATSReplicas); err != nil {
		errs = append(errs, fmt.Errorf("nats-replicas: %w", err))
	}
	return errors.Join(errs...)
}
