// Package allinone is `sluice up`: the five services composed in one
// process, sharing one HTTP server and one NATS connection, with an
// embedded NATS server unless --nats-url names one. The data path is the
// same as with five processes: events go through JetStream and services
// call each other over Connect on loopback HTTP.
package allinone

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"go.uber.org/fx"

	"github.com/sluicehq/sluice/platform/fxkit"
	"github.com/sluicehq/sluice/platform/natsconn"
	"github.com/sluicehq/sluice/platform/rpcserver"
	"github.com/sluicehq/sluice/services/build"
	"github.com/sluicehq/sluice/services/notify"
	"github.com/sluicehq/sluice/services/release"
	"github.com/sluicehq/sluice/services/source"
	testsvc "github.com/sluicehq/sluice/services/test"

	"github.com/sluicehq/sluice/cmd/sluice/internal/embeddednats"
)

// Services are the service names --services accepts.
var allServices = []string{"source", "build", "test", "release", "notify"}

// Options configure the platform.
type Options struct {
	DataDir      string
	Addr         string
	NATSURL      string
	Services     []string
	PollInterval time.Duration
	Version      string
	// LogWriter receives the services' JSON logs.
	LogWriter io.Writer
	LogLevel  slog.Level
}

// DefaultDataDir is $XDG_DATA_HOME/sluice or ~/.local/share/sluice.
func DefaultDataDir() string {
	if d := os.Getenv("XDG_DATA_HOME"); d != "" {
		return filepath.Join(d, "sluice")
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return filepath.Join(os.TempDir(), "sluice")
	}
	return filepath.Join(home, ".local", "share", "sluice")
}

// ParseFlags reads `sluice up`'s flags.
func ParseFlags(args []string, stderr io.Writer) (Options, string, error) {
	fs := flag.NewFlagSet("sluice up", flag.ContinueOnError)
	fs.SetOutput(stderr)
	o := Options{}
	fs.StringVar(&o.DataDir, "data-dir", envOr("SLUICE_DATA_DIR", DefaultDataDir()), "where the databases, NATS and workspaces live ($SLUICE_DATA_DIR)")
	fs.StringVar(&o.Addr, "addr", envOr("SLUICE_ADDR", "127.0.0.1:8080"), "HTTP listen address for every service's API ($SLUICE_ADDR)")
	fs.StringVar(&o.NATSURL, "nats-url", os.Getenv("SLUICE_NATS_URL"), "use this NATS server instead of the embedded one ($SLUICE_NATS_URL)")
	services := fs.String("services", envOr("SLUICE_SERVICES", strings.Join(allServices, ",")), "comma-separated services to run ($SLUICE_SERVICES)")
	fs.DurationVar(&o.PollInterval, "poll-interval", 10*time.Second, "how often repositories are fetched for new commits (0 disables)")
	example := fs.String("example", "", "register this example folder as a repository, run it and follow the run")
	level := fs.String("log-level", "info", "service log level: debug, info, warn, error")
	if err := fs.Parse(args); err != nil {
		return o, "", err
	}
	if fs.NArg() > 0 {
		return o, "", fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	for _, s := range strings.Split(*services, ",") {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		if !slices.Contains(allServices, s) {
			return o, "", fmt.Errorf("--services: unknown service %q (known: %s)", s, strings.Join(allServices, ", "))
		}
		if !slices.Contains(o.Services, s) {
			o.Services = append(o.Services, s)
		}
	}
	if len(o.Services) == 0 {
		return o, "", errors.New("--services: no service named")
	}
	if err := o.LogLevel.UnmarshalText([]byte(*level)); err != nil {
		return o, "", fmt.Errorf("--log-level: %w", err)
	}
	return o, *example, nil
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// Platform is a started all-in-one process.
type Platform struct {
	app     *fx.App
	nats    *embeddednats.Server
	natsURL string
	URL     string
	Log     *slog.Logger
}

// NATSURL is the NATS server the platform uses.
func (p *Platform) NATSURL() string { return p.natsURL }

// Start starts NATS (unless external) and the chosen services, and returns
// once every service is listening.
func Start(ctx context.Context, o Options) (*Platform, error) {
	if err := os.MkdirAll(o.DataDir, 0o750); err != nil {
		return nil, fmt.Errorf("data directory: %w", err)
	}
	if o.LogWriter == nil {
		o.LogWriter = io.Discard
	}
	log := slog.New(slog.NewJSONHandler(o.LogWriter, &slog.HandlerOptions{Level: o.LogLevel}))
	p := &Platform{URL: "http://" + o.Addr, Log: log}
	natsURL := o.NATSURL
	if natsURL == "" {
		ns, err := embeddednats.Start(embeddednats.Config{StoreDir: filepath.Join(o.DataDir, "nats")})
		if err != nil {
			return nil, err
		}
		p.nats = ns
		natsURL = ns.ClientURL()
	}
	p.natsURL = natsURL
	opts := []fx.Option{
		fx.WithLogger(fxkit.FxLogger),
		fx.StartTimeout(fxkit.StartTimeout),
		fx.Supply(log),
		fxkit.NATS(natsconn.Config{URL: natsURL, Name: "sluice"}),
		fxkit.Server(rpcserver.Config{Addr: o.Addr}),
	}
	dir := func(s string) string { return filepath.Join(o.DataDir, s) }
	for _, s := range o.Services {
		switch s {
		case "source":
			opts = append(opts, source.Module(source.Config{DataDir: dir("source"), PollInterval: o.PollInterval}))
		case "build":
			opts = append(opts, build.Module(build.Config{DataDir: dir("build")}))
		case "test":
			opts = append(opts, testsvc.Module(testsvc.Config{DataDir: dir("test"), SourceURL: p.URL}))
		case "release":
			opts = append(opts, release.Module(release.Config{DataDir: dir("release"), SourceURL: p.URL, BuildURL: p.URL}))
		case "notify":
			opts = append(opts, notify.Module(notify.Config{DataDir: dir("notify"), Version: o.Version}))
		}
	}
	p.app = fx.New(opts...)
	if err := p.app.Err(); err != nil {
		p.stopNATS()
		return nil, err
	}
	startCtx, cancel := context.WithTimeout(ctx, fxkit.StartTimeout)
	defer cancel()
	if err := p.app.Start(startCtx); err != nil {
		p.stopNATS()
		return nil, err
	}
	return p, nil
}

// Done is closed when the platform asks to stop (a failed component).
func (p *Platform) Done() <-chan fx.ShutdownSignal { return p.app.Wait() }

// Stop drains the services, then NATS.
func (p *Platform) Stop(ctx context.Context) error {
	err := p.app.Stop(ctx)
	p.stopNATS()
	return err
}

func (p *Platform) stopNATS() {
	if p.nats == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = p.nats.Stop(ctx)
}
