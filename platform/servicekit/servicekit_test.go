package servicekit_test

import (
	"context"
	"io"
	"net/http"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/pflag"
	"go.uber.org/fx"
	"go.uber.org/goleak"

	"github.com/sluicehq/sluice/deploy"
	"github.com/sluicehq/sluice/platform/events"
	"github.com/sluicehq/sluice/platform/fxkit"
	"github.com/sluicehq/sluice/platform/natsprovision"
	"github.com/sluicehq/sluice/platform/natstest"
	"github.com/sluicehq/sluice/platform/rpcserver"
	"github.com/sluicehq/sluice/platform/servicekit"
	"github.com/sluicehq/sluice/platform/servicekit/servicekittest"
	"github.com/sluicehq/sluice/platform/sqldb"
	"github.com/sluicehq/sluice/platform/sqldb/sqldbtest"
	sourceeventsv1 "github.com/sluicehq/sluice/proto/gen/sluice/source/events/v1"
	sourcev1 "github.com/sluicehq/sluice/proto/gen/sluice/source/v1"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, natstest.KnownLeaks()...)
}

type settings struct {
	servicekit.Settings
	Workers int
	Every   time.Duration
	Name    string
	On      bool
}

func (s *settings) register(f *servicekit.Flags) {
	s.RegisterFlags(f)
	f.IntVar(&s.Workers, "workers", "jobs at once")
	f.DurationVar(&s.Every, "every", "how often")
	f.StringVar(&s.Name, "worker-id", "who")
	f.BoolVar(&s.On, "on", "whether")
}

func lookup(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

// A setting has one variable, whatever the flag is called, and the flag
// wins over it.
func TestFlagsNamesAndPrecedence(t *testing.T) {
	t.Parallel()
	for _, prefixed := range []bool{false, true} {
		fs := pflag.NewFlagSet("x", pflag.ContinueOnError)
		s := settings{Workers: 4, Every: time.Second}
		f := servicekit.NewFlags(fs, "build", prefixed)
		s.register(f)
		flag := func(name string) string {
			if prefixed {
				return "--build-" + name
			}
			return "--" + name
		}
		env := map[string]string{"SLUICE_BUILD_WORKERS": "2", "SLUICE_BUILD_EVERY": "5m", "SLUICE_BUILD_WORKER_ID": "w", "SLUICE_BUILD_ON": "true"}
		if err := f.ApplyEnv(lookup(env)); err != nil {
			t.Fatal(err)
		}
		if err := fs.Parse([]string{flag("workers"), "8"}); err != nil {
			t.Fatal(err)
		}
		if s.Workers != 8 || s.Every != 5*time.Minute || s.Name != "w" || !s.On {
			t.Errorf("prefixed %v: %+v", prefixed, s)
		}
		if want := flag("workers") + " ($SLUICE_BUILD_WORKERS)"; f.Describe("workers") != want {
			t.Errorf("Describe = %q, want %q", f.Describe("workers"), want)
		}
		if u := fs.Lookup(strings.TrimPrefix(flag("workers"), "--")).Usage; !strings.Contains(u, "$SLUICE_BUILD_WORKERS") {
			t.Errorf("usage %q does not name the variable", u)
		}
	}
	if got := strings.Join(servicekit.NewFlags(pflag.NewFlagSet("y", pflag.ContinueOnError), "", false).Names(), ","); got != "" {
		t.Errorf("fresh Names = %q", got)
	}
	if servicekit.EnvName("", "log-level") != "SLUICE_LOG_LEVEL" || servicekit.EnvName("test", "step-timeout") != "SLUICE_TEST_STEP_TIMEOUT" {
		t.Error("EnvName")
	}
}

func TestFlagsRefuseBadVariables(t *testing.T) {
	t.Parallel()
	fs := pflag.NewFlagSet("x", pflag.ContinueOnError)
	var s settings
	f := servicekit.NewFlags(fs, "build", false)
	s.register(f)
	err := f.ApplyEnv(lookup(map[string]string{"SLUICE_BUILD_WORKERS": "many", "SLUICE_BUILD_EVERY": "soon"}))
	if err == nil || !strings.Contains(err.Error(), `$SLUICE_BUILD_WORKERS="many"`) || !strings.Contains(err.Error(), `$SLUICE_BUILD_EVERY="soon"`) {
		t.Fatalf("err = %v, want both variables named", err)
	}
}

func TestSettings(t *testing.T) {
	t.Parallel()
	s := servicekit.Settings{DataDir: "/var/lib/x"}.WithDefaults("build")
	if s.DatabaseURL != "sqlite:/var/lib/x/build.db" || s.Validate() != nil {
		t.Errorf("%+v: %v", s, s.Validate())
	}
	if err := (servicekit.Settings{NATSReplicas: 9}).Validate(); err == nil ||
		!strings.Contains(err.Error(), "data-dir is required") || !strings.Contains(err.Error(), "nats-replicas") {
		t.Errorf("Validate = %v", err)
	}
}

// --allow-egress is a list, from the flag or its variable, and becomes the
// policy the module provides; a bad entry fails validation naming it.
func TestAllowEgress(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args []string
		env  map[string]string
		want string
	}{
		{nil, nil, ""},
		{nil, map[string]string{"SLUICE_NOTIFY_ALLOW_EGRESS": ""}, ""},
		{nil, map[string]string{"SLUICE_NOTIFY_ALLOW_EGRESS": "loopback,10.0.0.0/8"}, "loopback,10.0.0.0/8"},
		{[]string{"--allow-egress", "local", "--allow-egress", "private"}, map[string]string{"SLUICE_NOTIFY_ALLOW_EGRESS": "loopback"}, "local,private"},
	} {
		fs := pflag.NewFlagSet("x", pflag.ContinueOnError)
		var s servicekit.Settings
		f := servicekit.NewFlags(fs, "notify", false)
		s.RegisterFlags(f)
		if err := fs.Parse(tc.args); err != nil {
			t.Fatal(err)
		}
		if err := f.ApplyEnv(lookup(tc.env)); err != nil {
			t.Fatal(err)
		}
		if got := strings.Join(s.AllowEgress, ","); got != tc.want {
			t.Errorf("%v %v: AllowEgress = %q, want %q", tc.args, tc.env, got, tc.want)
		}
	}
	s := servicekit.Settings{DataDir: "/d", AllowEgress: []string{"loopback", "nowhere"}}
	if err := s.Validate(); err == nil || !strings.Contains(err.Error(), "allow-egress") || !strings.Contains(err.Error(), "nowhere") {
		t.Errorf("Validate = %v, want allow-egress and the bad entry named", err)
	}
	s.AllowEgress = []string{"loopback"}
	p, err := s.Egress("notify")
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Check(netip.MustParseAddr("127.0.0.1")); err != nil {
		t.Errorf("loopback allowed: %v", err)
	}
	if err := p.Check(netip.MustParseAddr("10.0.0.1")); err == nil || !strings.Contains(err.Error(), "$SLUICE_NOTIFY_ALLOW_EGRESS") {
		t.Errorf("refusal %v does not name $SLUICE_NOTIFY_ALLOW_EGRESS", err)
	}
}

// fakeService is a service as the wiring sees it, with one consumer of the
// declared consumers of "build" (build-runs) and a loop.
type fakeService struct {
	handled atomic.Int64
	looped  atomic.Bool
	stopped atomic.Bool
	db      *sqldb.DB
}

func (f *fakeService) module(t *testing.T, spec servicekit.Spec, consumers func(*fakeService) []servicekit.Consumer) fx.Option {
	t.Helper()
	return servicekit.Module(spec,
		fx.Provide(fx.Private, func(db *sqldb.DB) servicekit.Parts {
			f.db = db
			return servicekit.Parts{
				Consumers: consumers(f),
				Loops: []servicekit.Loop{{Name: "loop", Run: func(ctx context.Context) error {
					f.looped.Store(true)
					<-ctx.Done()
					return nil
				}}},
				Stop: func() { f.stopped.Store(true) },
			}
		}),
	)
}

func buildRuns(f *fakeService) []servicekit.Consumer {
	return []servicekit.Consumer{{Durable: "build-runs", Handler: func(context.Context, events.Event, events.Delivery) error {
		f.handled.Add(1)
		return nil
	}}}
}

// The wiring opens the service's database on start, runs its loops and its
// consumers once provisioned, reports ready, and stops them (Stop first).
func TestModuleRunsAService(t *testing.T) {
	t.Parallel()
	ns := natstest.Start(t)
	streams(t, ns)
	svc := &fakeService{}
	p := servicekittest.Start(t, ns.URL, servicekittest.Options{}, svc.module(t, servicekit.Spec{
		Name: "build", Settings: servicekit.Settings{DataDir: t.TempDir(), DatabaseURL: sqldbtest.URL(t)}, Cancels: true,
	}, buildRuns))
	if !svc.looped.Load() {
		t.Error("the loop did not run")
	}
	// The database was opened and migrated with the outbox's tables.
	if _, err := events.Pending(t.Context(), svc.db); err != nil {
		t.Fatalf("the outbox table is not there: %v", err)
	}
	// The consumer runs: a run request published on SOURCE reaches its
	// handler through build-runs, the stream taken from deploy/nats.
	js, err := jetstream.New(ns.Connect(t))
	if err != nil {
		t.Fatal(err)
	}
	requestRun(t, js, "r1")
	servicekittest.Eventually(t, "the consumer to handle the run request", func() bool { return svc.handled.Load() == 1 })
	p.Stop()
	if !svc.stopped.Load() {
		t.Error("Parts.Stop was not called")
	}
}

// requestRun publishes a run request for run id on SOURCE, as source
// would.
func requestRun(t *testing.T, js jetstream.JetStream, id string) {
	t.Helper()
	ev, err := events.New(&sourceeventsv1.RunRequested{
		RunId: id, Commit: strings.Repeat("a", 40),
		Repository: &sourceeventsv1.RepositoryRef{Id: "1", Name: "hello", Url: "/srv/hello"},
		Pipeline:   &sourcev1.Pipeline{},
	}, id, id)
	if err != nil {
		t.Fatal(err)
	}
	msg, err := ev.Msg()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.PublishMsg(t.Context(), msg); err != nil {
		t.Fatal(err)
	}
}

// streams creates every declared stream, as their services would.
func streams(t *testing.T, ns *natstest.Server) {
	t.Helper()
	js, err := jetstream.New(ns.Connect(t))
	if err != nil {
		t.Fatal(err)
	}
	decl, err := natsprovision.Load(deploy.NATS())
	if err != nil {
		t.Fatal(err)
	}
	for _, cfg := range decl.Streams {
		if _, err := js.CreateOrUpdateStream(t.Context(), cfg); err != nil {
			t.Fatal(err)
		}
	}
}

// The service's consumers and deploy/nats must agree.
func TestModuleRefusesConsumersDeployDoesNotDeclare(t *testing.T) {
	t.Parallel()
	ns := natstest.Start(t)
	// The test's own connection, closed when it ends: a composition that
	// fails never starts, so nothing it opened would be stopped.
	js, err := jetstream.New(ns.Connect(t))
	if err != nil {
		t.Fatal(err)
	}
	for name, consumers := range map[string]func(*fakeService) []servicekit.Consumer{
		"undeclared": func(f *fakeService) []servicekit.Consumer {
			return append(buildRuns(f), servicekit.Consumer{Durable: "build-extra", Handler: buildRuns(f)[0].Handler})
		},
		"missing": func(*fakeService) []servicekit.Consumer { return nil },
		"twice":   func(f *fakeService) []servicekit.Consumer { return append(buildRuns(f), buildRuns(f)...) },
		// build declares build-cancels, which only Spec.Cancels consumes.
		"no cancels": buildRuns,
	} {
		svc := &fakeService{}
		app := fx.New(fx.NopLogger,
			fx.Supply(servicekittest.Logger(t)),
			fx.Provide(func() jetstream.JetStream { return js }),
			fxkit.Server(rpcserver.Config{Addr: "127.0.0.1:0"}),
			svc.module(t, servicekit.Spec{
				Name: "build", Settings: servicekit.Settings{DataDir: t.TempDir(), DatabaseURL: sqldbtest.URL(t)}, Cancels: name != "no cancels",
			}, consumers),
		)
		err := app.Err()
		if err == nil {
			_ = app.Stop(context.Background())
			t.Errorf("%s: composed", name)
			continue
		}
		want := map[string]string{
			"undeclared": `consumer "build-extra" is not declared in deploy/nats/consumers/build`,
			"missing":    "deploy/nats/consumers/build declares build-runs, which the service does not consume",
			"twice":      `consumer "build-runs" has two handlers`,
			"no cancels": "deploy/nats/consumers/build declares build-cancels, which the service does not consume",
		}[name]
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v; want it to say %q", name, err, want)
		}
	}
	if err := fx.New(fx.NopLogger, servicekit.Module(servicekit.Spec{Name: "build"})).Err(); err == nil || !strings.Contains(err.Error(), "data-dir is required") {
		t.Errorf("no data dir: %v", err)
	}
	if err := fx.New(fx.NopLogger, servicekit.Module(servicekit.Spec{})).Err(); err == nil || !strings.Contains(err.Error(), "Spec.Name is empty") {
		t.Errorf("no name: %v", err)
	}
}

// A bad event and a bad loop stop nothing: the handler that panics has its
// event dead-lettered, the loop that panics is started again, and both are
// counted on /metrics under the service's label.
func TestPanicsAreDeadLetteredRestartedAndCounted(t *testing.T) {
	t.Parallel()
	ns := natstest.Start(t)
	streams(t, ns)
	var loops, handled atomic.Int64
	module := servicekit.Module(servicekit.Spec{
		Name: "build", Settings: servicekit.Settings{DataDir: t.TempDir(), DatabaseURL: sqldbtest.URL(t)}, Cancels: true,
	}, fx.Provide(fx.Private, func() servicekit.Parts {
		return servicekit.Parts{
			Consumers: []servicekit.Consumer{{Durable: "build-runs", Handler: func(_ context.Context, ev events.Event, _ events.Delivery) error {
				if ev.ChainID == "bad" {
					panic("no step in run " + ev.ChainID) // as a bug a bad event finds would
				}
				handled.Add(1)
				return nil
			}}},
			Loops: []servicekit.Loop{{Name: "poll", Run: func(ctx context.Context) error {
				if loops.Add(1) == 1 {
					panic("the first poll finds a bad value")
				}
				<-ctx.Done()
				return nil
			}}},
		}
	}))
	p := servicekittest.Start(t, ns.URL, servicekittest.Options{}, module)
	js, err := jetstream.New(ns.Connect(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"bad", "good"} {
		requestRun(t, js, id)
	}
	if reason := servicekittest.DeadLetter(t, js, "build", "build-runs", "bad"); reason != "panic: no step in run bad" {
		t.Errorf("dead letter's reason %q; want the panic", reason)
	}
	servicekittest.Eventually(t, "the event after the bad one to be handled", func() bool { return handled.Load() == 1 })
	servicekittest.Eventually(t, "the loop to start again", func() bool { return loops.Load() == 2 })
	want := []string{
		`sluice_events_deadlettered_total{cause="panic",consumer="build-runs",service="build"} 1`,
		`sluice_goroutine_panics_total{service="build",task="poll"} 1`,
	}
	var metrics string
	servicekittest.Eventually(t, "the panics on /metrics", func() bool {
		req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, p.URL+"/metrics", nil)
		if err != nil {
			t.Fatal(err)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = res.Body.Close() }()
		b, err := io.ReadAll(res.Body)
		if err != nil {
			t.Fatal(err)
		}
		metrics = string(b)
		for _, w := range want {
			if !strings.Contains(metrics, w) {
				return false
			}
		}
		return true
	})
}
