// Package servicekit is the shape every Sluice service shares: how its
// settings become flags and variables (Flags, Settings), and the fx wiring
// around its own code (Module): the logger that names the service, its
// database opened and migrated on start, its outbox relay, the provisioning
// of its NATS streams and consumers, its readiness, its event consumers and
// its other background loops, all started and stopped the same way.
//
// A service module is servicekit.Module(spec, its own constructors); its
// constructors get *slog.Logger (with service=<name>), *sqldb.DB,
// *events.Relay, *runner.Supervisor (to run a background goroutine of its
// own under), *egress.Policy (from Settings.AllowEgress) and
// CallTransport (calls to other services, with the process's TLS trust
// and the service's identity) from here,
// jetstream.JetStream and *rpcserver.Readiness from the process, and
// provide one Parts value that says what to run.
package servicekit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/fx"

	"github.com/sluicehq/sluice/deploy"
	"github.com/sluicehq/sluice/platform/audit"
	"github.com/sluicehq/sluice/platform/auth"
	"github.com/sluicehq/sluice/platform/egress"
	"github.com/sluicehq/sluice/platform/events"
	"github.com/sluicehq/sluice/platform/natsprovision"
	"github.com/sluicehq/sluice/platform/retry"
	"github.com/sluicehq/sluice/platform/rpcserver"
	"github.com/sluicehq/sluice/platform/runcancel"
	"github.com/sluicehq/sluice/platform/runner"
	"github.com/sluicehq/sluice/platform/sqldb"
	"github.com/sluicehq/sluice/platform/tlsconfig"
)

// Spec is what a service tells the shared wiring about itself.
type Spec struct {
	// Name is the service's name: its NATS declarations
	// (deploy/nats/consumers/<name>), its NATS user, its readiness check, its
	// dead letters and the logger's service attribute.
	Name string
	// Settings, with defaults applied (Settings.WithDefaults).
	Settings Settings
	// Migrations are the service's own migration sets, in order; the
	// outbox's (events.Migrations) are applied first.
	Migrations []sqldb.Migrations
	// Cancels says that the service stops its work on cancelled runs: the
	// wiring provides a *runcancel.Book (its table migrated, pruned like
	// processed events) and consumes RunCancelRequested into it with the
	// consumer <name>-cancels, which the service declares under
	// deploy/nats/consumers/<name>.
	Cancels bool
}

// CancelsConsumer is the durable name of service's consumer of
// RunCancelRequested (Spec.Cancels).
func CancelsConsumer(service string) string { return service + "-cancels" }

// Parts are what the wiring runs for a service. Each service module
// provides exactly one.
type Parts struct {
	// Consumers are started once the service's NATS declarations are
	// applied; every consumer the service declares under deploy/nats must
	// have one, and each must be declared.
	Consumers []Consumer
	// Loops are the service's other background loops (a poller, a delivery
	// worker), started with the process. A loop that returns an error
	// stops the process.
	Loops []Loop
	// Expiries are the service's own tables of records kept for a while
	// (source's webhook deliveries); the service prunes them, with its
	// processed events, every PruneEvery.
	Expiries []sqldb.Expiry
	// Stop, when set, is called first when the service stops, before its
	// consumers drain: it interrupts work that must not hold the stop up
	// (release's manual rollbacks).
	Stop func()
}

// Consumer is one of the service's durable JetStream consumers.
type Consumer struct {
	// Durable names the consumer as declared in
	// deploy/nats/consumers/<service>/<durable>.json, which also says the
	// stream it reads.
	Durable string
	Handler events.Handler
	// Workers is how many events are handled at once (default 1).
	Workers int
	// Heartbeat, when set, extends a long handler's lease (InProgress).
	Heartbeat time.Duration
}

// Loop is a named background loop; Run returns when its context ends.
type Loop struct {
	Name string
	Run  func(ctx context.Context) error
}

// BuildInfo is what the process says it is; the root supplies it.
type BuildInfo struct {
	Version string
	Commit  string
}

// Module is a service's fx module: the shared wiring plus opts, the
// service's own constructors (which must provide Parts). Invalid settings
// fail the composition.
func Module(spec Spec, opts ...fx.Option) fx.Option {
	if spec.Name == "" {
		return fx.Error(errors.New("servicekit: Spec.Name is empty"))
	}
	if err := spec.Settings.Validate(); err != nil {
		return fx.Error(fmt.Errorf("%s: %w", spec.Name, err))
	}
	return fx.Module(spec.Name,
		fx.Decorate(func(log *slog.Logger) *slog.Logger {
			return log.With(slog.String("service", spec.Name))
		}),
		fx.Provide(
			fx.Private,
			func(lc fx.Lifecycle) *sqldb.DB { return newDB(lc, spec) },
			func(p metricsParams) (*events.Metrics, *runner.Supervisor, error) { return newMetrics(spec, p) },
			newRelay,
			auth.NewVerifier,
			func() *auth.ServiceIdentity { return auth.NewServiceIdentity(spec.Name) },
			func(v *auth.Verifier, log *slog.Logger) *auth.Guard { return auth.NewGuard(v, log) },
			func(db *sqldb.DB, relay *events.Relay, log *slog.Logger) *audit.Recorder {
				return audit.NewRecorder(spec.Name, db, relay, log)
			},
			func() (*egress.Policy, error) { return spec.Settings.Egress(spec.Name) },
			func(lc fx.Lifecycle, id *auth.ServiceIdentity, trust *tlsconfig.Client) CallTransport {
				return newCallTransport(lc, spec, id, trust)
			},
		),
		cancels(spec),
		fx.Options(opts...),
		fx.Invoke(func(p runParams) error { return run(spec, p) }),
	)
}

// CallTransport is the transport of a service's calls to other Sluice
// services (its source-url): over https it trusts what the process trusts
// (its tls-ca-file, or the system's roots), each call carries the
// service's own identity, and a call over plain http:// to a host other
// than loopback is refused unless allow-plain-http is set. Its idle connections close when the service
// stops.
type CallTransport http.RoundTripper

func newCallTransport(lc fx.Lifecycle, spec Spec, id *auth.ServiceIdentity, trust *tlsconfig.Client) CallTransport {
	t := trust.Transport()
	lc.Append(fx.StopHook(t.CloseIdleConnections))
	allowed := spec.Settings.AllowPlainHTTP
	return id.Transport(tlsconfig.GuardPlainHTTP(t, PlainHTTPHint(spec.Name), func() bool { return allowed }))
}

// PlainHTTPHint is what a call refused for going over plain http:// tells
// the operator of service.
func PlainHTTPHint(service string) string {
	return "give source-url an https:// URL (and tls-ca-file its CA), or set allow-plain-http ($" + EnvName(service, "allow-plain-http") + "=true) on a network you trust"
}

// cancels provides the service's *runcancel.Book when it stops work on
// cancelled runs.
func cancels(spec Spec) fx.Option {
	if !spec.Cancels {
		return fx.Options()
	}
	return fx.Provide(fx.Private, func(db *sqldb.DB, log *slog.Logger) *runcancel.Book {
		return runcancel.New(db, runcancel.DefaultEvery, log.With(slog.String("component", "runcancel")))
	})
}

// newDB makes the service's database handle; it is opened and migrated on
// start, before anything else of the service starts, and closed last.
func newDB(lc fx.Lifecycle, spec Spec) *sqldb.DB {
	sets := append([]sqldb.Migrations{events.Migrations()}, spec.Migrations...)
	if spec.Cancels {
		sets = append(sets, runcancel.Migrations())
	}
	db := sqldb.New(spec.Settings.DatabaseURL, sets...)
	lc.Append(fx.Hook{
		OnStart: func(ctx context.Context) error {
			if err := db.Open(ctx); err != nil {
				return fmt.Errorf("%s database: %w", spec.Name, err)
			}
			return nil
		},
		OnStop: func(context.Context) error { return db.Close() },
	})
	return db
}

func newRelay(db *sqldb.DB, js jetstream.JetStream, log *slog.Logger, metrics *events.Metrics) *events.Relay {
	return events.NewRelay(db, js, log.With(slog.String("component", "outbox")), events.CountWith(metrics))
}

type metricsParams struct {
	fx.In
	Log *slog.Logger
	// Registerer is the process's (fxkit.Server); without one the
	// service's metrics go to a registry nobody reads.
	Registerer prometheus.Registerer `optional:"true"`
}

// newMetrics registers the service's metrics under its own service label
// (a process may run all five on one registry): its dead letters
// (events.Metrics) and the panics of its background loops, whose
// Supervisor it provides to the service's constructors too.
func newMetrics(spec Spec, p metricsParams) (*events.Metrics, *runner.Supervisor, error) {
	reg := p.Registerer
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	reg = prometheus.WrapRegistererWith(prometheus.Labels{"service": spec.Name}, reg)
	metrics, err := events.NewMetrics(reg)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", spec.Name, err)
	}
	sup, err := runner.NewSupervisor(p.Log, reg)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", spec.Name, err)
	}
	return metrics, sup, nil
}

type runParams struct {
	fx.In
	Lifecycle  fx.Lifecycle
	Shutdowner fx.Shutdowner
	Log        *slog.Logger
	JS         jetstream.JetStream
	Readiness  *rpcserver.Readiness
	Relay      *events.Relay
	DB         *sqldb.DB
	Metrics    *events.Metrics
	Supervisor *runner.Supervisor
	Verifier   *auth.Verifier
	Identity   *auth.ServiceIdentity
	Parts      Parts
	// Cancels is set when Spec.Cancels is.
	Cancels *runcancel.Book `optional:"true"`
}

// run starts the service's loops on start: the outbox relay and the loops
// at once, the consumers once provisioning is done; the service is ready
// from then on. On stop, Parts.Stop first, then every loop ends (consumers
// finish the events in hand, the relay publishes what they enqueue).
func run(spec Spec, p runParams) error {
	decl, err := natsprovision.Load(deploy.NATS())
	if err != nil {
		return fmt.Errorf("%s: read the NATS declarations: %w", spec.Name, err)
	}
	keep := spec.Settings.WithDefaults(spec.Name).ProcessedEventsRetention
	parts := slices.Clone(p.Parts.Consumers)
	expiries := append([]sqldb.Expiry{events.ProcessedExpiry(keep)}, p.Parts.Expiries...)
	if p.Cancels != nil {
		parts = append(parts, Consumer{Durable: CancelsConsumer(spec.Name), Handler: p.Cancels.Handle})
		expiries = append(expiries, runcancel.Expiry(keep))
	}
	consumers, err := bind(spec.Name, decl, parts, p.JS, p.Log, p.Relay, p.Metrics, p.Supervisor)
	if err != nil {
		return err
	}
	if err := checkRetention(spec.Name, decl, keep); err != nil {
		return err
	}
	g := runner.New(p.Supervisor, p.Log, func(error) { _ = p.Shutdowner.Shutdown(fx.ExitCode(1)) })
	var provisioned atomic.Bool
	// started: the consumers and the identity refresh start once, even if
	// the provision loop is restarted after a panic late in it.
	var started sync.Once
	p.Readiness.Add(spec.Name, func() error {
		if !provisioned.Load() {
			return errors.New("its NATS streams and consumers are not provisioned yet")
		}
		return p.Verifier.Ready()
	})
	p.Lifecycle.Append(fx.Hook{
		OnStart: func(context.Context) error {
			g.Go("provision", func(ctx context.Context) error {
				opts := natsprovision.Options{Log: p.Log, Replicas: spec.Settings.NATSReplicas}
				if err := natsprovision.Apply(ctx, p.JS, deploy.NATS(), spec.Name, opts); err != nil {
					return fmt.Errorf("provision NATS: %w", err)
				}
				if err := publishIdentity(ctx, p.JS, p.Identity); err != nil {
					return err
				}
				started.Do(func() {
					g.Go("identity", func(ctx context.Context) error { return refreshIdentity(ctx, p.JS, p.Identity, p.Log) })
					provisioned.Store(true)
					for _, c := range consumers {
						g.Go("consumer "+c.name, c.Run)
					}
				})
				return nil
			})
			for _, bucket := range auth.Buckets() {
				g.Go("credentials "+bucket, func(ctx context.Context) error {
					p.Verifier.Watch(ctx, p.JS, bucket)
					return nil
				})
			}
			g.Go("outbox", func(ctx context.Context) error {
				p.Relay.Run(ctx)
				return nil
			})
			g.Go("prune", func(ctx context.Context) error {
				prune(ctx, p.DB, expiries, PruneEvery, p.Log)
				return nil
			})
			for _, l := range p.Parts.Loops {
				g.Go(l.Name, l.Run)
			}
			return nil
		},
		OnStop: func(ctx context.Context) error {
			if p.Parts.Stop != nil {
				p.Parts.Stop()
			}
			return g.Stop(ctx)
		},
	})
	return nil
}

// PruneEvery is how often a service deletes the records its Expiries no
// longer keep (and once at start).
const PruneEvery = time.Hour

// prune deletes expired records now and every interval until ctx ends. A
// failure is logged and tried again at the next interval: the records
// only take room meanwhile.
func prune(ctx context.Context, db *sqldb.DB, expiries []sqldb.Expiry, every time.Duration, log *slog.Logger) {
	for {
		for _, e := range expiries {
			n, err := db.Prune(ctx, e, time.Now())
			switch {
			case ctx.Err() != nil:
				return
			case err != nil:
				log.Warn("pruning expired records failed; trying again later", slog.String("table", e.Table), slog.Any("error", err), slog.Duration("in", every))
			case n > 0:
				log.Info("pruned expired records", slog.String("table", e.Table), slog.Int64("rows", n), slog.Duration("kept", e.Keep))
			}
		}
		if !retry.Sleep(ctx, every) {
			return
		}
	}
}

// checkRetention refuses a processed-events retention that does not
// outlast a stream the service consumes: an event still in the stream
// could be delivered again (a consumer reset, a replay) after its record
// was pruned, and be handled twice.
func checkRetention(service string, decl natsprovision.Declarations, keep time.Duration) error {
	for _, c := range decl.Consumers[service] {
		for _, st := range decl.Streams {
			switch {
			case st.Name != c.Stream:
			case st.MaxAge <= 0:
				return fmt.Errorf("%s: the stream %s it reads keeps events for ever (no max_age), so no processed-events-retention outlasts it: declare a max_age", service, st.Name)
			case keep <= st.MaxAge:
				return fmt.Errorf("%s: processed-events-retention is %s; it must be longer than the max_age of the stream %s it reads (%s)", service, keep, st.Name, st.MaxAge)
			}
		}
	}
	return nil
}

// publishIdentity puts the process's identity where the other services
// learn it, trying until it succeeds or ctx ends.
func publishIdentity(ctx context.Context, js jetstream.JetStream, id *auth.ServiceIdentity) error {
	err := retry.Do(ctx, retry.Backoff{Initial: 100 * time.Millisecond, Max: 5 * time.Second, Jitter: 0.2}, func(ctx context.Context) error {
		return id.Publish(ctx, js)
	})
	if err != nil {
		return fmt.Errorf("publish the service identity: %w", err)
	}
	return nil
}

// refreshIdentity puts the identity again every auth.RefreshEvery: its
// bucket forgets keys after an hour, so the keys of processes that are gone
// age out (their secrets went with them). A stopping process leaves its key
// so that the calls it makes while it drains still work.
func refreshIdentity(ctx context.Context, js jetstream.JetStream, id *auth.ServiceIdentity, log *slog.Logger) error {
	t := time.NewTicker(auth.RefreshEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			if err := id.Publish(ctx, js); err != nil && ctx.Err() == nil {
				log.Warn("refreshing the service identity failed; trying again later", slog.Any("error", err))
			}
		}
	}
}

type boundConsumer struct {
	name string
	*events.Consumer
}

// bind makes the service's consumers from its Parts and its declarations:
// the stream comes from the declaration, and the handlers are tracked by
// the relay. A declared consumer without a handler, or a handler for an
// undeclared consumer, is an error: code and deploy/nats must agree.
func bind(service string, decl natsprovision.Declarations, parts []Consumer, js jetstream.JetStream, log *slog.Logger, relay *events.Relay, metrics *events.Metrics, sup *runner.Supervisor) ([]boundConsumer, error) {
	declared := map[string]string{}
	for _, f := range decl.Consumers[service] {
		declared[f.Config.Durable] = f.Stream
	}
	var errs []error
	var out []boundConsumer
	handled := map[string]bool{}
	for _, c := range parts {
		stream, ok := declared[c.Durable]
		switch {
		case !ok:
			errs = append(errs, fmt.Errorf("consumer %q is not declared in deploy/nats/consumers/%s", c.Durable, service))
			continue
		case handled[c.Durable]:
			errs = append(errs, fmt.Errorf("consumer %q has two handlers", c.Durable))
			continue
		case c.Handler == nil:
			errs = append(errs, fmt.Errorf("consumer %q has no handler", c.Durable))
			continue
		}
		handled[c.Durable] = true
		out = append(out, boundConsumer{name: c.Durable, Consumer: events.NewConsumer(js, log, events.ConsumerConfig{
			Service:    service,
			Stream:     stream,
			Durable:    c.Durable,
			Workers:    c.Workers,
			Heartbeat:  c.Heartbeat,
			Metrics:    metrics,
			Supervisor: sup,
		}, relay.Track(c.Handler))})
	}
	var missing []string
	for durable := range declared {
		if !handled[durable] {
			missing = append(missing, durable)
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		errs = append(errs, fmt.Errorf("deploy/nats/consumers/%s declares %s, which the service does not consume", service, strings.Join(missing, ", ")))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("%s: %w", service, err)
	}
	return out, nil
}

// Services are the names of Sluice's services, in pipeline order.
func Services() []string {
	return slices.Clone(natsprovision.Services())
}

// RoutesGroup is the fx value group of the process's HTTP routes
// (fxkit.Server serves them).
const RoutesGroup = `group:"routes"`

// Route annotates a constructor that returns an rpcserver.Route (a
// service's Connect handler, its webhooks) so that the process serves it.
func Route(constructor any) any {
	return fx.Annotate(constructor, fx.ResultTags(RoutesGroup))
}
