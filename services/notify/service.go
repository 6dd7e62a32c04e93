package notify

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/fx"

	"github.com/sluicehq/sluice/platform/duework"
	"github.com/sluicehq/sluice/platform/egress"
	"github.com/sluicehq/sluice/platform/events"
	"github.com/sluicehq/sluice/platform/keyring"
	"github.com/sluicehq/sluice/platform/runner"
	"github.com/sluicehq/sluice/platform/servicekit"
	"github.com/sluicehq/sluice/platform/stepsecrets"
	"github.com/sluicehq/sluice/services/notify/domain"
)

// Service is notify's application layer: what the Connect handler, the
// event consumers and the delivery loop call. Its use cases live one to a
// file: subscriptions.go, fanout.go (events into deliveries), deliveries.go
// (POSTing them, and listing them) and watch.go (the live stream).
type Service struct {
	cfg     Config
	store   *Store
	js      jetstream.JetStream
	outbox  *events.Relay
	log     *slog.Logger
	version string
	retry   domain.Retry
	// client POSTs deliveries through the egress policy; it follows no
	// redirect.
	client *http.Client
	// deliveries and statuses are the loops that attempt the due
	// deliveries and commit statuses.
	deliveries *duework.Loop[Claimed]
	statuses   *duework.Loop[domain.ForgeStatus]
	// releases makes the due releases on the forges.
	releases *duework.Loop[domain.ForgeRelease]
	// secrets asks source for a run's repository's forge token.
	secrets *stepsecrets.Resolver
	// keys encrypt the subscriptions' secrets; nil: kept as given.
	keys *keyring.Ring
	sup  *runner.Supervisor
}

// Deps are the service's collaborators; fx provides them (servicekit).
type Deps struct {
	fx.In
	Store *Store
	// Outbox publishes what the service enqueued (the deliveries'
	// outcomes); it is woken after every commit that enqueued events.
	Outbox *events.Relay
	// JetStream is read by live watches.
	JetStream jetstream.JetStream
	// Info names the version in the deliveries' User-Agent.
	Info servicekit.BuildInfo
	Log  *slog.Logger
	// Egress is what subscription URLs may reach (the allow-egress
	// setting).
	Egress *egress.Policy
	// Secrets asks source for the forge tokens commit statuses are set
	// with.
	Secrets *stepsecrets.Resolver
	// Supervisor guards the service's own goroutines (delivery attempts,
	// watch readers): a panic in one is logged and counted, not fatal.
	// nil: runner's default.
	Supervisor *runner.Supervisor `optional:"true"`
}

// NewService makes the service; cfg must be valid (Config.WithDefaults,
// Config.Validate).
func NewService(cfg Config, d Deps) (*Service, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if d.Store == nil || d.Outbox == nil || d.JetStream == nil || d.Egress == nil || d.Log == nil {
		return nil, errors.New("notify: NewService: every dependency is required")
	}
	keys, err := keyring.Load(cfg.Keys)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", Name, err)
	}
	if keys == nil {
		d.Log.Warn("no secret key (secret-key-file or $SLUICE_NOTIFY_SECRET_KEY): subscription secrets are stored as given")
	}
	version := d.Info.Version
	if version == "" {
		version = "dev"
	}
	// Every connection, to each address a URL's host resolves to, is
	// checked against the egress policy when it is dialed.
	client := d.Egress.Client()
	// A redirect is an answer like any other non-2xx: following it would
	// turn the POST into a GET to somewhere else.
	client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	s := &Service{
		keys:    keys,
		cfg:     cfg,
		store:   d.Store,
		js:      d.JetStream,
		outbox:  d.Outbox,
		log:     d.Log,
		version: version,
		retry:   domain.NewRetry(cfg.MaxAttempts, cfg.RetryBase, cfg.RetryMax),
		client:  client,
		secrets: d.Secrets,
		sup:     d.Supervisor,
	}
	s.deliveries = &duework.Loop[Claimed]{Name: "deliveries", Queue: deliveryQueue{s}, Workers: cfg.Workers, Log: d.Log, Supervisor: d.Supervisor}
	s.statuses = &duework.Loop[domain.ForgeStatus]{Name: "commit statuses", Queue: statusQueue{s}, Workers: cfg.Workers, Log: d.Log, Supervisor: d.Supervisor}
	s.releases = &duework.Loop[domain.ForgeRelease]{Name: "forge releases", Queue: releaseQueue{s}, Workers: cfg.Workers, Log: d.Log, Supervisor: d.Supervisor}
	return s, nil
}
