// Package servicecmd composes Sluice processes: the shared main of the five
// service binaries (sluice-source, sluice-build, ...) and the fx
// application that `sluice up` also uses. A process has its own settings
// (Process: where it listens, how it reaches NATS, how it logs); each
// service it runs registers its own (servicekit.Flags).
package servicecmd

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/spf13/pflag"
	"go.uber.org/fx"

	"github.com/sluicehq/sluice/platform/fxkit"
	"github.com/sluicehq/sluice/platform/natsauth"
	"github.com/sluicehq/sluice/platform/natsconn"
	"github.com/sluicehq/sluice/platform/rpcserver"
	"github.com/sluicehq/sluice/platform/servicekit"
	"github.com/sluicehq/sluice/platform/tlsconfig"
)

// Process are a process's own settings, as opposed to its services'.
type Process struct {
	// Addr is the listen address of the API, health and metrics.
	Addr string
	// NATSURL is a NATS server URL, or a comma-separated list of a cluster's.
	NATSURL string
	// NATSUser and NATSPassword are the process's NATS credentials
	// (deploy/nats/auth.conf names a user per service); empty connects
	// without.
	NATSUser     string
	NATSPassword string
	// NATSCAFile is the CA bundle the NATS servers' certificates are
	// checked against (tls:// URLs); NATSCertFile and NATSKeyFile are a
	// client certificate for servers that require one.
	NATSCAFile, NATSCertFile, NATSKeyFile string
	// TLSCertFile and TLSKeyFile are the certificate and key the listeners
	// serve TLS with; empty serves plain HTTP.
	TLSCertFile, TLSKeyFile string
	// TLSCAFile is the CA bundle trusted when the process calls Sluice
	// services over https (source-url, the healthcheck); empty trusts the
	// system's roots.
	TLSCAFile string
	// LogLevel is debug, info, warn or error.
	LogLevel string
	// Limits bound the API listener's clients (rpcserver.DefaultLimits).
	Limits rpcserver.Limits
}

// DefaultNATSURL is where a service binary looks for NATS by default.
const DefaultNATSURL = "nats://127.0.0.1:4222"

// RegisterFlags registers the process settings: --addr, --nats-url,
// --nats-user, --nats-password, the NATS client's TLS (--nats-ca-file,
// --nats-cert-file, --nats-key-file), the API's TLS (--tls-cert-file,
// --tls-key-file) and its clients' (--tls-ca-file) and --log-level, with variables named after
// f's service (SLUICE_BUILD_ADDR in sluice-build, SLUICE_ADDR in `sluice up`).
func (p *Process) RegisterFlags(f *servicekit.Flags) {
	if p.LogLevel == "" {
		p.LogLevel = "info"
	}
	f.StringVar(&p.Addr, "addr", "listen address for the API, health and metrics")
	f.StringVar(&p.NATSURL, "nats-url", "NATS server URL, or a comma-separated list of a cluster's servers")
	f.StringVar(&p.NATSUser, "nats-user", "NATS user (deploy/nats/auth.conf names one per service); empty connects without credentials")
	f.StringVar(&p.NATSPassword, "nats-password", "the NATS user's password; prefer the variable to the flag, which other users can see in the process list")
	f.StringVar(&p.NATSCAFile, "nats-ca-file", "CA bundle (PEM) the NATS servers' certificates are checked against (tls:// URLs); default the system's roots")
	f.StringVar(&p.NATSCertFile, "nats-cert-file", "client certificate (PEM) for NATS servers that verify clients' certificates; with nats-key-file")
	f.StringVar(&p.NATSKeyFile, "nats-key-file", "the key (PEM) of nats-cert-file")
	f.StringVar(&p.TLSCertFile, "tls-cert-file", "certificate (PEM, with its chain) the API serves TLS with, re-read when it changes; empty serves plain HTTP")
	f.StringVar(&p.TLSKeyFile, "tls-key-file", "the key (PEM) of tls-cert-file")
	f.StringVar(&p.TLSCAFile, "tls-ca-file", "CA bundle (PEM) trusted when calling Sluice services over https (source-url, healthcheck); default the system's roots")
	f.StringVar(&p.LogLevel, "log-level", "log level: debug, info, warn or error")
	if p.Limits == (rpcserver.Limits{}) {
		p.Limits = rpcserver.DefaultLimits
	}
	f.DurationVar(&p.Limits.ReadTimeout, "read-timeout", "longest time a client may take to send one request, headers and body (streamed responses are not bounded)")
	f.DurationVar(&p.Limits.IdleTimeout, "idle-timeout", "a keep-alive connection without requests is closed after this long")
	f.IntVar(&p.Limits.MaxStreams, "max-streams", "most requests, streams included, one HTTP/2 connection may have in flight at once")
}

// Validate refuses settings the process cannot run with.
func (p Process) Validate() error {
	var errs []error
	if p.Addr == "" {
		errs = append(errs, errors.New("addr is empty"))
	}
	if p.NATSPassword != "" && p.NATSUser == "" {
		errs = append(errs, errors.New("nats-password is set but nats-user is not"))
	}
	if (p.TLSCertFile == "") != (p.TLSKeyFile == "") {
		errs = append(errs, errors.New("tls-cert-file and tls-key-file go together: set both or neither"))
	}
	if (p.NATSCertFile == "") != (p.NATSKeyFile == "") {
		errs = append(errs, errors.New("nats-cert-file and nats-key-file go together: set both or neither"))
	}
	if _, err := p.Level(); err != nil {
		errs = append(errs, err)
	}
	// Zero takes the default (a Process made without flags).
	for name, d := range map[string]time.Duration{"read-timeout": p.Limits.ReadTimeout, "idle-timeout": p.Limits.IdleTimeout} {
		if d != 0 && d < time.Second {
			errs = append(errs, fmt.Errorf("%s must be at least 1s (got %s)", name, d))
		}
	}
	if p.Limits.MaxStreams < 0 {
		errs = append(errs, fmt.Errorf("max-streams must be at least 1 (got %d)", p.Limits.MaxStreams))
	}
	return errors.Join(errs...)
}

// Network is how a composed process reaches NATS, where it listens, and
// whom it trusts when it calls Sluice services.
type Network struct {
	NATS   natsconn.Config
	Server rpcserver.Config
	// Client is the trust of calls to Sluice services (source-url); nil
	// trusts the system's roots.
	Client *tlsconfig.Client
}

// Network reads the process's certificates: its listeners' (reloaded
// when they change; log hears of it) and the CA bundle its clients trust,
// with its own certificate, so that calls it makes to itself succeed.
func (p Process) Network(service string, log *slog.Logger) (Network, error) {
	n := Network{NATS: p.NATS(service), Server: rpcserver.Config{Addr: p.Addr, Limits: p.Limits}}
	if p.TLSCertFile != "" {
		keys, err := tlsconfig.LoadKeyPair(p.TLSCertFile, p.TLSKeyFile, log)
		if err != nil {
			return Network{}, fmt.Errorf("tls-cert-file: %w", err)
		}
		n.Server.TLS = keys
	}
	client, err := tlsconfig.NewClient(tlsconfig.ClientOptions{CAFile: p.TLSCAFile, Own: n.Server.TLS})
	if err != nil {
		return Network{}, fmt.Errorf("tls-ca-file: %w", err)
	}
	n.Client = client
	return n, nil
}

// Level is LogLevel parsed.
func (p Process) Level() (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(p.LogLevel)); err != nil {
		return 0, fmt.Errorf("log-level %q: want debug, info, warn or error", p.LogLevel)
	}
	return l, nil
}

// NATS is how a process named name connects to NATS. A service binary
// passes its service, whose NATS user may subscribe only to its own reply
// subjects (natsauth.InboxPrefix); `sluice up` passes "".
func (p Process) NATS(service string) natsconn.Config {
	c := natsconn.Config{
		URL: p.NATSURL, Name: "sluice", User: p.NATSUser, Password: p.NATSPassword,
		CAFile: p.NATSCAFile, CertFile: p.NATSCertFile, KeyFile: p.NATSKeyFile,
	}
	if service != "" {
		c.Name = "sluice-" + service
		c.InboxPrefix = natsauth.InboxPrefix(service)
	}
	return c
}

// Compose is a process's composition: the logger, NATS, the services'
// modules and, last, the HTTP server (it starts after the services and
// stops first). Service binaries, `sluice up` and the services' tests all
// compose a process with it. The services find the server's
// rpcserver.Config (a listener of their own serves the same TLS) and the
// *tlsconfig.Client their calls to other services trust.
//
// A Network whose NATS has no URL provides no connection to the process:
// each module then brings its own (fxkit.ServiceNATS), as `sluice up` does
// to connect every service as its own NATS user.
func Compose(log *slog.Logger, info servicekit.BuildInfo, n Network, modules ...fx.Option) fx.Option {
	client := n.Client
	if client == nil {
		client = &tlsconfig.Client{}
	}
	shared := fx.Options()
	if n.NATS.URL != "" {
		shared = fxkit.NATS(n.NATS)
	}
	return fx.Options(
		fx.Supply(log, info, n.Server, client),
		shared,
		fx.Options(modules...),
		fxkit.Server(n.Server),
	)
}

// App is the fx application of a composed process, logging fx's own
// events at debug level.
func App(log *slog.Logger, info servicekit.BuildInfo, n Network, modules ...fx.Option) *fx.App {
	return fx.New(
		fx.WithLogger(fxkit.FxLogger),
		fx.StartTimeout(fxkit.StartTimeout),
		Compose(log, info, n, modules...),
	)
}

// Config is what a service's Config offers a binary.
type Config[C any] interface {
	WithDefaults() C
	Validate() error
}

// Registrar is a pointer to a service's Config: it registers the settings.
type Registrar[C any] interface {
	*C
	RegisterFlags(f *servicekit.Flags)
}

// Command is a service binary.
type Command[C Config[C]] struct {
	// Service is the service's name ("build").
	Service string
	// Addr is the default listen address.
	Addr string
	// Version and Commit are what --version prints.
	Version, Commit string
	// Config is the service's configuration with its defaults.
	Config C
	// Module makes the service's fx module.
	Module func(C) fx.Option
}

// Main runs a service binary: flags and SLUICE_<SERVICE>_* variables,
// --version, the healthcheck subcommand, then the service until SIGINT or
// SIGTERM. Bad settings exit 2 with the reason.
func Main[C Config[C], P Registrar[C]](c Command[C]) {
	os.Exit(Run[C, P](c, os.Args[1:], os.Stdout, os.Stderr, os.LookupEnv))
}

// settings are a binary's parsed flags.
type settings[C any] struct {
	process     Process
	config      C
	showVersion bool
}

// FlagSet is the binary's flags, registered and not parsed (what `sluice
// up` is compared with).
func FlagSet[C Config[C], P Registrar[C]](c Command[C]) *pflag.FlagSet {
	fs, _, _ := register[C, P](c, &settings[C]{})
	return fs
}

// register registers the process's and the service's settings into s.
func register[C Config[C], P Registrar[C]](c Command[C], s *settings[C]) (*pflag.FlagSet, *servicekit.Flags, string) {
	name := "sluice-" + c.Service
	fs := pflag.NewFlagSet(name, pflag.ContinueOnError)
	fs.SortFlags = true
	*s = settings[C]{process: Process{Addr: c.Addr, NATSURL: DefaultNATSURL}, config: c.Config}
	f := servicekit.NewFlags(fs, c.Service, false)
	s.process.RegisterFlags(f)
	P(&s.config).RegisterFlags(f)
	fs.BoolVar(&s.showVersion, "version", false, "print the version and exit")
	return fs, f, name
}

// parse registers and parses the process's and the service's settings:
// variables first, then args, which win.
func parse[C Config[C], P Registrar[C]](c Command[C], args []string, stderr io.Writer, lookup func(string) (string, bool)) (settings[C], error) {
	var s settings[C]
	fs, f, name := register[C, P](c, &s)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: %s [flags]\n       %s %s [flags]   (asks a running service whether it is ready)\n\nEvery flag --some-name falls back to $%s; the flag wins.\n\nFlags:\n%s",
			name, name, HealthcheckCommand, servicekit.EnvName(c.Service, "SOME_NAME"), fs.FlagUsages())
	}
	if err := f.ApplyEnv(lookup); err != nil {
		return s, err
	}
	if err := fs.Parse(args); err != nil {
		return s, err
	}
	if fs.NArg() > 0 {
		return s, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	return s, nil
}

// Run is Main with its inputs and outputs given; it returns the exit code.
func Run[C Config[C], P Registrar[C]](c Command[C], args []string, stdout, stderr io.Writer, lookup func(string) (string, bool)) int {
	name := "sluice-" + c.Service
	if len(args) > 0 && args[0] == HealthcheckCommand {
		return healthcheck[C, P](c, args[1:], stdout, stderr, lookup)
	}
	s, err := parse[C, P](c, args, stderr, lookup)
	if errors.Is(err, pflag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", name, err)
		return 2
	}
	if s.showVersion {
		fmt.Fprintln(stdout, VersionLine(name, c.Version, c.Commit))
		return 0
	}
	cfg := s.config.WithDefaults()
	if err := errors.Join(s.process.Validate(), cfg.Validate()); err != nil {
		fmt.Fprintf(stderr, "%s: %s\n", name, strings.ReplaceAll(err.Error(), "\n", "; "))
		return 2
	}
	level, _ := s.process.Level()
	log := slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: level})).With(slog.String("version", c.Version))
	network, err := s.process.Network(c.Service, log)
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", name, err)
		return 2
	}
	app := App(log, servicekit.BuildInfo{Version: c.Version, Commit: c.Commit}, network, c.Module(cfg))
	if err := app.Err(); err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", name, err)
		return 1
	}
	app.Run()
	return 0
}

// VersionLine is what --version prints: "<name> <version> (<commit>)".
func VersionLine(name, version, commit string) string {
	line := name + " " + version
	if commit != "" {
		line += " (" + commit + ")"
	}
	return line
}
