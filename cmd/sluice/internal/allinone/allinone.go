// Package allinone is `sluice up`: the five services composed in one
// process, sharing one HTTP server and one NATS connection, with an
// embedded NATS server unless --nats-url names one. The data path is the
// same as with five processes: events go through JetStream and services
// call each other over Connect on loopback HTTP.
//
// Every setting a service's own binary accepts, `sluice up` accepts too,
// prefixed with the service's name (sluice-build --workers is sluice up
// --build-workers), from the same SLUICE_<SERVICE>_* variables: each
// service's Config registers its settings once (servicekit.Flags).
package allinone

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/spf13/pflag"
	"go.uber.org/fx"

	"github.com/sluicehq/sluice/platform/fxkit"
	"github.com/sluicehq/sluice/platform/servicecmd"
	"github.com/sluicehq/sluice/platform/servicekit"
	"github.com/sluicehq/sluice/services/build"
	"github.com/sluicehq/sluice/services/notify"
	"github.com/sluicehq/sluice/services/release"
	"github.com/sluicehq/sluice/services/source"
	"github.com/sluicehq/sluice/services/tests"

	"github.com/sluicehq/sluice/cmd/sluice/internal/embeddednats"
)

// DefaultPollInterval is how often `sluice up` fetches repositories:
// sooner than a source binary's default, for a first look.
const DefaultPollInterval = 10 * time.Second

// Options configure the platform.
type Options struct {
	// DataDir holds every service's directory (<DataDir>/<service> unless
	// a service's data-dir says otherwise), the embedded NATS and the log.
	DataDir string
	// Process: Addr is the one listen address; NATSURL, when set, replaces
	// the embedded NATS server.
	Process servicecmd.Process
	// Services are the services to run, in pipeline order.
	Services []string
	// Each service's configuration; a DataDir left empty is
	// <DataDir>/<service>, and release's SourceURL left empty is this
	// process's own URL.
	Source  source.Config
	Build   build.Config
	Test    tests.Config
	Release release.Config
	Notify  notify.Config
	// Version and Commit are what the process says it is.
	Version, Commit string
	// LogWriter receives the services' JSON logs.
	LogWriter io.Writer
}

// DefaultOptions are `sluice up`'s defaults.
func DefaultOptions() Options {
	o := Options{
		DataDir:  DefaultDataDir(),
		Process:  servicecmd.Process{Addr: "127.0.0.1:8080", LogLevel: "info"},
		Services: servicekit.Services(),
		Source:   source.DefaultConfig(),
		Build:    build.DefaultConfig(),
		Test:     tests.DefaultConfig(),
		Release:  release.DefaultConfig(),
		Notify:   notify.DefaultConfig(),
	}
	o.Source.PollInterval = DefaultPollInterval
	o.Release.SourceURL = ""
	// Every service's directory and database follow --data-dir unless set.
	for _, s := range o.settings() {
		*s = servicekit.Settings{NATSReplicas: s.NATSReplicas}
	}
	return o
}

// settings are each service's common settings, by service name.
func (o *Options) settings() map[string]*servicekit.Settings {
	return map[string]*servicekit.Settings{
		source.Name: &o.Source.Settings, build.Name: &o.Build.Settings, tests.Name: &o.Test.Settings,
		release.Name: &o.Release.Settings, notify.Name: &o.Notify.Settings,
	}
}

// registrars are each service's settings registration, in pipeline order.
func (o *Options) registrars() []registrar {
	return []registrar{
		{source.Name, o.Source.RegisterFlags},
		{build.Name, o.Build.RegisterFlags},
		{tests.Name, o.Test.RegisterFlags},
		{release.Name, o.Release.RegisterFlags},
		{notify.Name, o.Notify.RegisterFlags},
	}
}

type registrar struct {
	service  string
	register func(*servicekit.Flags)
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

// UpFlags are `sluice up`'s flags, bound to the options they set.
type UpFlags struct {
	FlagSet  *pflag.FlagSet
	options  *Options
	services string
	example  string
	process  *servicekit.Flags
	each     []*servicekit.Flags
}

// NewUpFlags registers every flag of `sluice up` in a new flag set: the
// process's (--addr, --nats-url, ...), --data-dir, --services, --example,
// and every service's own settings prefixed with its name.
func NewUpFlags(o *Options) *UpFlags {
	fs := pflag.NewFlagSet("sluice up", pflag.ContinueOnError)
	fs.SortFlags = false
	u := &UpFlags{FlagSet: fs, options: o, services: strings.Join(o.Services, ",")}
	u.process = servicekit.NewFlags(fs, "", false)
	u.process.StringVar(&o.DataDir, "data-dir", "where the databases, NATS, workspaces and the log live")
	o.Process.RegisterFlags(u.process)
	u.process.StringVar(&u.services, "services", "comma-separated services to run: "+strings.Join(servicekit.Services(), ", "))
	fs.StringVar(&u.example, "example", "", "register this example folder as a repository, run it and follow the run")
	for _, r := range o.registrars() {
		f := servicekit.NewFlags(fs, r.service, true)
		r.register(f)
		u.each = append(u.each, f)
	}
	// --poll-interval was `sluice up`'s before every setting had one.
	fs.SetNormalizeFunc(func(_ *pflag.FlagSet, name string) pflag.NormalizedName {
		if name == "poll-interval" {
			name = source.Name + "-poll-interval"
		}
		return pflag.NormalizedName(name)
	})
	return u
}

// ServiceFlags are the flag names a service's settings have here
// (--build-workers), by service.
func (u *UpFlags) ServiceFlags() map[string][]string {
	out := map[string][]string{}
	for _, f := range u.each {
		for _, n := range f.Names() {
			out[f.Service()] = append(out[f.Service()], f.FlagName(n))
		}
	}
	return out
}

// Parse parses args, then Complete; it returns the --example folder.
func (u *UpFlags) Parse(args []string, lookup func(string) (string, bool)) (string, error) {
	if err := u.FlagSet.Parse(args); err != nil {
		return "", err
	}
	if u.FlagSet.NArg() > 0 {
		return "", fmt.Errorf("unexpected argument %q", u.FlagSet.Arg(0))
	}
	return u.Complete(lookup)
}

// Complete finishes the options once the command line is parsed (by Parse,
// or by the CLI): the variables fill what the flags did not set, and the
// services are checked. It returns the --example folder.
func (u *UpFlags) Complete(lookup func(string) (string, bool)) (string, error) {
	for _, f := range append([]*servicekit.Flags{u.process}, u.each...) {
		if err := f.ApplyEnv(lookup); err != nil {
			return "", err
		}
	}
	o := u.options
	o.Services = nil
	for _, s := range strings.Split(u.services, ",") {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		if !slices.Contains(servicekit.Services(), s) {
			return "", fmt.Errorf("--services: unknown service %q (known: %s)", s, strings.Join(servicekit.Services(), ", "))
		}
		if !slices.Contains(o.Services, s) {
			o.Services = append(o.Services, s)
		}
	}
	if len(o.Services) == 0 {
		return "", errors.New("--services: no service named")
	}
	if _, err := o.Process.Level(); err != nil {
		return "", fmt.Errorf("--%w", err)
	}
	return u.example, nil
}

// ParseFlags reads `sluice up`'s flags and variables over DefaultOptions.
func ParseFlags(args []string, stderr io.Writer, lookup func(string) (string, bool)) (Options, string, error) {
	o := DefaultOptions()
	u := NewUpFlags(&o)
	u.FlagSet.SetOutput(stderr)
	example, err := u.Parse(args, lookup)
	return o, example, err
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

// modules are the chosen services' fx modules, their settings completed.
func (o Options) modules(url string) ([]fx.Option, error) {
	for name, s := range o.settings() {
		if s.DataDir == "" {
			s.DataDir = filepath.Join(o.DataDir, name)
		}
	}
	if o.Release.SourceURL == "" {
		o.Release.SourceURL = url
	}
	byName := map[string]struct {
		validate func() error
		module   func() fx.Option
	}{
		source.Name:  {func() error { return o.Source.WithDefaults().Validate() }, func() fx.Option { return source.Module(o.Source) }},
		build.Name:   {func() error { return o.Build.WithDefaults().Validate() }, func() fx.Option { return build.Module(o.Build) }},
		tests.Name:   {func() error { return o.Test.WithDefaults().Validate() }, func() fx.Option { return tests.Module(o.Test) }},
		release.Name: {func() error { return o.Release.WithDefaults().Validate() }, func() fx.Option { return release.Module(o.Release) }},
		notify.Name:  {func() error { return o.Notify.WithDefaults().Validate() }, func() fx.Option { return notify.Module(o.Notify) }},
	}
	var (
		modules []fx.Option
		errs    []error
	)
	for _, s := range o.Services {
		m, ok := byName[s]
		if !ok {
			return nil, fmt.Errorf("unknown service %q", s)
		}
		if err := m.validate(); err != nil {
			errs = append(errs, err)
			continue
		}
		modules = append(modules, m.module())
	}
	return modules, errors.Join(errs...)
}

// Start starts NATS (unless external) and the chosen services, and returns
// once every service is listening.
func Start(ctx context.Context, o Options) (*Platform, error) {
	if err := os.MkdirAll(o.DataDir, 0o750); err != nil {
		return nil, fmt.Errorf("data directory: %w", err)
	}
	if o.LogWriter == nil {
		o.LogWriter = io.Discard
	}
	level, err := o.Process.Level()
	if err != nil {
		return nil, err
	}
	if o.Process.Addr == "" {
		return nil, errors.New("the listen address is empty")
	}
	log := slog.New(slog.NewJSONHandler(o.LogWriter, &slog.HandlerOptions{Level: level}))
	p := &Platform{URL: "http://" + o.Process.Addr, Log: log}
	modules, err := o.modules(p.URL)
	if err != nil {
		return nil, err
	}
	if o.Process.NATSURL == "" {
		ns, err := embeddednats.Start(embeddednats.Config{StoreDir: filepath.Join(o.DataDir, "nats")})
		if err != nil {
			return nil, err
		}
		p.nats = ns
		o.Process.NATSURL = ns.ClientURL()
	}
	p.natsURL = o.Process.NATSURL
	info := servicekit.BuildInfo{Version: o.Version, Commit: o.Commit}
	p.app = servicecmd.App(log, info, o.Process.NATS(""), o.Process.Addr, modules...)
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
