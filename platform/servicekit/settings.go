package servicekit

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/sluicehq/sluice/platform/egress"
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
	// AllowEgress is what the service may connect to, beside public
	// addresses, when a user chose the target (a webhook subscription, a
	// verify.http probe, a repository URL): CIDR prefixes, addresses, and
	// the shortcuts of egress.New (loopback, private, link-local; local for
	// local repositories; ssh and git for those protocols). Empty, the
	// default, allows none of them.
	AllowEgress []string
	// AllowPlainHTTP lets the service call other Sluice services (its
	// source-url) over plain http:// on a host other than loopback, where
	// its identity and the secrets it fetches cross the network readable.
	AllowPlainHTTP bool
	// ProcessedEventsRetention is how long the record of each handled
	// event is kept (it makes a redelivered event a no-op); it must
	// outlast the max_age of every stream the service consumes, which the
	// service checks at start. Default DefaultProcessedEventsRetention.
	ProcessedEventsRetention time.Duration
}

// DefaultProcessedEventsRetention is twice the declared streams' max_age
// (7 days).
const DefaultProcessedEventsRetention = 14 * 24 * time.Hour

// RegisterFlags registers the settings as --data-dir, --database-url and
// --nats-replicas.
func (s *Settings) RegisterFlags(f *Flags) {
	f.StringVar(&s.DataDir, "data-dir", "directory for the service's files and its default database")
	f.StringVar(&s.DatabaseURL, "database-url", "database URL: postgres://user:password@host:5432/db for replicas, or sqlite:PATH (default sqlite:<data-dir>/"+f.Service()+".db, one process only)")
	f.IntVar(&s.NATSReplicas, "nats-replicas", fmt.Sprintf("replicas of the streams and object stores the service creates (1 to %d; 3 on a 3-node cluster; 0 keeps the declared count)", natsprovision.MaxReplicas))
	f.StringsVar(&s.AllowEgress, "allow-egress", "comma-separated addresses a webhook, verify.http or repository URL may reach beside public ones: CIDR prefixes, addresses, "+
		strings.Join([]string{egress.Loopback, egress.Private, egress.LinkLocal}, ", ")+"; "+egress.Local+" for local repositories; "+egress.SSH+" and "+egress.Git+" for those protocols (unchecked)")
	f.DurationVar(&s.ProcessedEventsRetention, "processed-events-retention", "how long the record of a handled event is kept (it makes a redelivery a no-op); longer than the max_age of the streams the service reads (default 336h)")
	f.BoolVar(&s.AllowPlainHTTP, "allow-plain-http", "call other Sluice services (source-url) over plain http:// on a host other than this machine, where the service's identity and the secrets it fetches can be read on the network")
}

// WithDefaults returns s with DataDir made absolute and DatabaseURL
// defaulted to the service's SQLite file in it.
func (s Settings) WithDefaults(service string) Settings {
	if s.DataDir != "" {
		if abs, err := filepath.Abs(s.DataDir); err == nil {
			s.DataDir = abs
		}
	}
	if s.ProcessedEventsRetention == 0 {
		s.ProcessedEventsRetention = DefaultProcessedEventsRetention
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
	if s.ProcessedEventsRetention < 0 {
		errs = append(errs, fmt.Errorf("processed-events-retention is %s; it must be positive", s.ProcessedEventsRetention))
	}
	if _, err := egress.New("", s.AllowEgress); err != nil {
		errs = append(errs, fmt.Errorf("allow-egress: %w", err))
	}
	return errors.Join(errs...)
}

// Egress is the policy that AllowEgress makes for service; its refusals
// name the setting by its variable, which is the same in every process
// that runs the service. Call it on valid settings.
func (s Settings) Egress(service string) (*egress.Policy, error) {
	p, err := egress.New("allow-egress ($"+EnvName(service, "allow-egress")+")", s.AllowEgress)
	if err != nil {
		return nil, fmt.Errorf("allow-egress: %w", err)
	}
	return p, nil
}
