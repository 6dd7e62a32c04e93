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
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/spf13/pflag"
	"go.uber.org/fx"

	"github.com/sluicehq/sluice/deploy"
	"github.com/sluicehq/sluice/platform/auth"
	"github.com/sluicehq/sluice/platform/egress"
	"github.com/sluicehq/sluice/platform/executor"
	"github.com/sluicehq/sluice/platform/fxkit"
	"github.com/sluicehq/sluice/platform/keyring"
	"github.com/sluicehq/sluice/platform/natsauth"
	"github.com/sluicehq/sluice/platform/natsconn"
	"github.com/sluicehq/sluice/platform/natsprovision"
	"github.com/sluicehq/sluice/platform/retry"
	"github.com/sluicehq/sluice/platform/servicecmd"
	"github.com/sluicehq/sluice/platform/servicekit"
	"github.com/sluicehq/sluice/platform/tlsconfig"
	sourcev1 "github.com/sluicehq/sluice/proto/gen/sluice/source/v1"
	"github.com/sluicehq/sluice/proto/gen/sluice/source/v1/sourcev1connect"
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

// DemoAllowEgress is every service's allow-egress in `sluice up`: loopback
// and local repositories, which a first look on one machine needs (the
// bundled example is a local repository whose deploy is verified on
// 127.0.0.1, and a webhook receiver is likely on the same machine). A
// service binary allows neither unless told.
func DemoAllowEgress() []string { return []string{egress.Loopback, egress.Local} }

// DemoReadPaths are the paths `sluice up`'s steps may read besides the
// system's directories: the Go toolchain the go command on PATH belongs
// to, which the bundled example builds and tests with. A service binary
// allows none unless told (step-read-paths).
func DemoReadPaths() []string {
	if root := executor.GoToolchainRoot(); root != "" {
		return []string{root}
	}
	return nil
}

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
	// <DataDir>/<service>, and the SourceURL of release, build, test and
	// notify left empty is this process's own URL.
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
	o.Release.SourceURL, o.Build.SourceURL, o.Test.SourceURL, o.Notify.SourceURL = "", "", "", ""
	// Every service's directory and database follow --data-dir unless set;
	// every service allows the demo's egress.
	for _, u := range o.units() {
		*u.settings = servicekit.Settings{NATSReplicas: u.settings.NATSReplicas, AllowEgress: DemoAllowEgress()}
	}
	// Steps may use the Go toolchain on PATH, and the demo's deploys start
	// the service they deploy on this machine.
	for _, iso := range []*executor.Isolation{&o.Build.Isolation, &o.Test.Isolation, &o.Release.Isolation} {
		iso.ReadPaths = DemoReadPaths()
	}
	o.Release.KeepProcesses = []string{"*"}
	return o
}

// unit is one service as `sluice up` runs it: its common settings, how it
// registers its flags, and its fx module. units is the one table of them.
type unit struct {
	name     string
	settings *servicekit.Settings
	register func(*servicekit.Flags)
	module   func() fx.Option
}

// units are the five services over o's configurations, in pipeline order.
func (o *Options) units() []unit {
	return []unit{
		{source.Name, &o.Source.Settings, o.Source.RegisterFlags, func() fx.Option { return source.Module(o.Source) }},
		{build.Name, &o.Build.Settings, o.Build.RegisterFlags, func() fx.Option { return build.Module(o.Build) }},
		{tests.Name, &o.Test.Settings, o.Test.RegisterFlags, func() fx.Option { return tests.Module(o.Test) }},
		{release.Name, &o.Release.Settings, o.Release.RegisterFlags, func() fx.Option { return release.Module(o.Release) }},
		{notify.Name, &o.Notify.Settings, o.Notify.RegisterFlags, func() fx.Option { return notify.Module(o.Notify) }},
	}
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
	for _, unit := range o.units() {
		f := servicekit.NewFlags(fs, unit.name, true)
		unit.register(f)
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

// serviceFlags are the flag names a service's settings have here
// (--build-workers), by service.
func (u *UpFlags) serviceFlags() map[string][]string {
	out := map[string][]string{}
	for _, f := range u.each {
		for _, n := range f.Names() {
			out[f.Service()] = append(out[f.Service()], f.FlagName(n))
		}
	}
	return out
}

// Complete finishes the options once the command line is parsed (the
// CLI parses FlagSet): the variables fill what the flags did not set, and
// the process's settings and the services are checked. It returns the
// --example folder.
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
	if err := o.Process.Validate(); err != nil {
		return "", fmt.Errorf("%s", strings.ReplaceAll(err.Error(), "\n", "; "))
	}
	return u.example, nil
}

// Platform is a started all-in-one process.
type Platform struct {
	app     *fx.App
	nats    *embeddednats.Server
	natsURL string
	// URL is the platform's API: https:// when it serves TLS.
	URL string
	Log *slog.Logger
	// trust is what its clients trust: its own certificate, and the
	// tls-ca-file's CAs or the system's roots.
	trust *tlsconfig.Client
	// AdminToken is the secret of the admin token in the source service's
	// admin-token-file (default <data-dir>/admin-token), "" when source
	// does not run here; AdminTokenCreated says whether this start made it.
	AdminToken        string
	AdminTokenCreated bool
}

// Client is a client of the platform that calls with the admin token
// (over TLS, it trusts the platform's own certificate).
func (p *Platform) Client() *http.Client {
	return &http.Client{Transport: auth.WithSecret(p.trust.Transport(), func() string { return p.AdminToken })}
}

// NATSURL is the NATS server the platform uses; the embedded one's with
// the admin's credentials in it.
func (p *Platform) NATSURL() string { return p.natsURL }

// modules are the chosen services' fx modules, their settings completed.
// A service's invalid settings fail the composition (its Module says why).
func (o Options) modules(url string, natsOf func(service string) natsconn.Config) ([]fx.Option, error) {
	for _, sourceURL := range []*string{&o.Release.SourceURL, &o.Build.SourceURL, &o.Test.SourceURL, &o.Notify.SourceURL} {
		if *sourceURL == "" {
			*sourceURL = url
		}
	}
	var modules []fx.Option
	for _, u := range o.units() {
		if u.settings.DataDir == "" {
			u.settings.DataDir = filepath.Join(o.DataDir, u.name)
		}
		if !slices.Contains(o.Services, u.name) {
			continue
		}
		if natsOf == nil {
			modules = append(modules, u.module())
			continue
		}
		modules = append(modules, fx.Module(u.name+"-nats", fxkit.ServiceNATS(natsOf(u.name)), u.module()))
	}
	for _, s := range o.Services {
		if !slices.Contains(servicekit.Services(), s) {
			return nil, fmt.Errorf("unknown service %q", s)
		}
	}
	return modules, nil
}

// startEmbeddedNATS starts the embedded server with the services' users
// and the admin, derived from the declarations (natsauth).
func startEmbeddedNATS(dataDir string) (*embeddednats.Server, error) {
	decl, err := natsprovision.Load(deploy.NATS())
	if err != nil {
		return nil, err
	}
	users, err := natsauth.Users(decl)
	if err != nil {
		return nil, err
	}
	return embeddednats.Start(embeddednats.Config{StoreDir: filepath.Join(dataDir, "nats"), Users: users})
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
	if err := o.Process.Validate(); err != nil {
		return nil, err
	}
	level, _ := o.Process.Level()
	log := slog.New(slog.NewJSONHandler(o.LogWriter, &slog.HandlerOptions{Level: level}))
	network, err := o.Process.Network("", log)
	if err != nil {
		return nil, err
	}
	p := &Platform{URL: "http://" + o.Process.Addr, Log: log, trust: network.Client}
	if network.Server.TLS != nil {
		p.URL = "https://" + o.Process.Addr
	}
	if slices.Contains(o.Services, source.Name) {
		if o.Source.AdminTokenFile == "" {
			o.Source.AdminTokenFile = filepath.Join(o.DataDir, "admin-token")
		}
		var err error
		p.AdminToken, p.AdminTokenCreated, err = source.EnsureAdminTokenFile(o.Source.AdminTokenFile)
		if err != nil {
			return nil, err
		}
	}
	// Source and notify keep secrets at rest with one key of the data
	// directory unless they are given keys.
	keyFile := filepath.Join(o.DataDir, "secret-key")
	for _, keys := range []*keyring.Settings{&o.Source.Keys, &o.Notify.Keys} {
		if keys.Set() {
			continue
		}
		keys.File = keyFile
		created, err := keyring.EnsureFile(keyFile)
		if err != nil {
			return nil, err
		}
		if created {
			log.Info("made the key secrets are encrypted with at rest; keep it safe", slog.String("file", keyFile))
		}
	}
	shared := network.NATS
	var own func(service string) natsconn.Config
	if o.Process.NATSURL == "" {
		ns, err := startEmbeddedNATS(o.DataDir)
		if err != nil {
			return nil, err
		}
		p.nats = ns
		p.natsURL = ns.AdminURL()
		// Every service connects as its own user; the process shares no
		// connection.
		shared = natsconn.Config{}
		own = func(service string) natsconn.Config {
			return natsconn.Config{
				URL: ns.ClientURL(), Name: "sluice-" + service, User: service, Password: ns.Password(service),
				InboxPrefix: natsauth.InboxPrefix(service),
			}
		}
	} else {
		p.natsURL = o.Process.NATSURL
	}
	modules, err := o.modules(p.URL, own)
	if err != nil {
		p.stopNATS()
		return nil, err
	}
	info := servicekit.BuildInfo{Version: o.Version, Commit: o.Commit}
	network.NATS = shared
	p.app = servicecmd.App(log, info, network, modules...)
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
	if p.AdminToken != "" {
		if err := p.waitForAdmin(startCtx); err != nil {
			_ = p.Stop(context.WithoutCancel(ctx))
			return nil, err
		}
	}
	return p, nil
}

// waitForAdmin waits until the platform accepts the admin token: source
// registers it and every service learns it a moment after they start.
func (p *Platform) waitForAdmin(ctx context.Context) error {
	client := sourcev1connect.NewAccessServiceClient(p.Client(), p.URL)
	err := retry.Do(ctx, retry.Backoff{Initial: 20 * time.Millisecond, Max: 500 * time.Millisecond}, func(ctx context.Context) error {
		_, err := client.WhoAmI(ctx, &sourcev1.WhoAmIRequest{})
		return err
	})
	if err != nil {
		return fmt.Errorf("the platform did not accept its admin token: %w", err)
	}
	return nil
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
