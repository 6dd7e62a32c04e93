// Package servicecmd is the shared main of the five service binaries
// (sluice-source, sluice-build, ...): flags with SLUICE_<SERVICE>_*
// environment fallbacks, --version, the healthcheck subcommand, a JSON
// logger, and the fx composition of NATS, the HTTP server and the service's
// module.
package servicecmd

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"go.uber.org/fx"

	"github.com/sluicehq/sluice/platform/fxkit"
	"github.com/sluicehq/sluice/platform/natsauth"
	"github.com/sluicehq/sluice/platform/natsconn"
	"github.com/sluicehq/sluice/platform/natsprovision"
	"github.com/sluicehq/sluice/platform/rpcserver"
)

// Flags are a service binary's flags. Every flag --some-name falls back to
// $SLUICE_<SERVICE>_SOME_NAME, and the flag wins over the variable.
type Flags struct {
	service string
	version string
	commit  string
	fs      *flag.FlagSet

	addr, natsURL, dataDir, databaseURL *string
	natsUser, natsPassword              *string
	natsReplicas                        *int
	showVersion                         *bool
}

// New makes the flags every service has: --addr (default defaultAddr),
// --nats-url, --nats-user, --nats-password, --nats-replicas, --data-dir
// (default ./data/<service>), --database-url and --version.
func New(service, defaultAddr, version string) *Flags {
	f := &Flags{service: service, version: version, fs: flag.NewFlagSet("sluice-"+service, flag.ContinueOnError)}
	f.addr = f.String("addr", defaultAddr, "listen address for the API, health and metrics")
	f.natsURL = f.String("nats-url", "nats://127.0.0.1:4222", "NATS server URL, or a comma-separated list of a cluster's servers")
	f.natsUser = f.String("nats-user", "", "NATS user (deploy/nats/auth.conf names one per service); empty connects without credentials")
	f.natsPassword = f.String("nats-password", "", "the NATS user's password; prefer the variable to the flag, which other users can see in the process list")
	f.natsReplicas = f.Int("nats-replicas", 1, fmt.Sprintf("replicas of the streams and object stores the service creates (1 to %d; 3 on a 3-node cluster)", natsprovision.MaxReplicas))
	f.dataDir = f.String("data-dir", filepath.Join("data", service), "directory for the service's files and its default database")
	f.databaseURL = f.String("database-url", "", "database URL: postgres://user:password@host:5432/db for replicas, or sqlite:PATH (default sqlite:<data-dir>/"+service+".db, one process only)")
	f.showVersion = f.fs.Bool("version", false, "print the version and exit")
	return f
}

// EnvName is the variable that stands in for the flag name.
func (f *Flags) EnvName(name string) string {
	return "SLUICE_" + strings.ToUpper(f.service) + "_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
}

func (f *Flags) usage(name, usage string) string { return usage + " ($" + f.EnvName(name) + ")" }

// String adds a string flag.
func (f *Flags) String(name, def, usage string) *string {
	return f.fs.String(name, def, f.usage(name, usage))
}

// Int adds an integer flag.
func (f *Flags) Int(name string, def int, usage string) *int {
	return f.fs.Int(name, def, f.usage(name, usage))
}

// Duration adds a duration flag (30s, 5m, ...).
func (f *Flags) Duration(name string, def time.Duration, usage string) *time.Duration {
	return f.fs.Duration(name, def, f.usage(name, usage))
}

// DataDir is --data-dir.
func (f *Flags) DataDir() string { return *f.dataDir }

// DatabaseURL is --database-url.
func (f *Flags) DatabaseURL() string { return *f.databaseURL }

// NATSReplicas is --nats-replicas: the replicas of the streams and object
// stores the service creates.
func (f *Flags) NATSReplicas() int { return *f.natsReplicas }

// NATS is how the service connects to NATS: --nats-url, --nats-user and
// --nats-password, with the service's own reply subjects
// (natsauth.InboxPrefix), the only ones its NATS user may subscribe to.
func (f *Flags) NATS() natsconn.Config {
	return natsconn.Config{
		URL:         *f.natsURL,
		Name:        "sluice-" + f.service,
		User:        *f.natsUser,
		Password:    *f.natsPassword,
		InboxPrefix: natsauth.InboxPrefix(f.service),
	}
}

// Parse applies the environment, then args. It reports whether --version
// was asked for.
func (f *Flags) Parse(args []string, getenv func(string) (string, bool)) (bool, error) {
	var errs []error
	f.fs.VisitAll(func(fl *flag.Flag) {
		if fl.Name == "version" {
			return
		}
		v, ok := getenv(f.EnvName(fl.Name))
		if !ok {
			return
		}
		if err := fl.Value.Set(v); err != nil {
			errs = append(errs, fmt.Errorf("%s=%q: %w", f.EnvName(fl.Name), v, err))
		}
	})
	if err := errors.Join(errs...); err != nil {
		return false, err
	}
	if err := f.fs.Parse(args); err != nil {
		return false, err
	}
	if f.fs.NArg() > 0 {
		return false, fmt.Errorf("unexpected argument %q", f.fs.Arg(0))
	}
	if r := *f.natsReplicas; r < 1 || r > natsprovision.MaxReplicas {
		return false, fmt.Errorf("--nats-replicas (%s) is %d; it must be 1 to %d", f.EnvName("nats-replicas"), r, natsprovision.MaxReplicas)
	}
	if *f.natsPassword != "" && *f.natsUser == "" {
		return false, fmt.Errorf("--nats-password (%s) is set but --nats-user (%s) is not", f.EnvName("nats-password"), f.EnvName("nats-user"))
	}
	return *f.showVersion, nil
}

// App composes the service: the logger, NATS, the HTTP server and module.
func (f *Flags) App(log *slog.Logger, module fx.Option) *fx.App {
	return fx.New(
		fx.WithLogger(fxkit.FxLogger),
		fx.StartTimeout(fxkit.StartTimeout),
		fx.Supply(log),
		fxkit.NATS(f.NATS()),
		fxkit.Server(rpcserver.Config{Addr: *f.addr}),
		module,
	)
}

// Main parses args and the environment, builds the service's module with
// configure (which validates the configuration), and runs until SIGINT or
// SIGTERM. Bad flags or configuration exit 2 with the reason.
func (f *Flags) Main(args []string, configure func() (fx.Option, error)) {
	os.Exit(f.run(args, os.Stdout, os.Stderr, configure))
}

func (f *Flags) run(args []string, stdout, stderr io.Writer, configure func() (fx.Option, error)) int {
	f.fs.SetOutput(stderr)
	name := "sluice-" + f.service
	if len(args) > 0 && args[0] == HealthcheckCommand {
		return f.healthcheck(args[1:], stdout, stderr)
	}
	showVersion, err := f.Parse(args, os.LookupEnv)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", name, err)
		return 2
	}
	if showVersion {
		fmt.Fprintln(stdout, f.versionLine())
		return 0
	}
	module, err := configure()
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", name, err)
		return 2
	}
	log := slog.New(slog.NewJSONHandler(stderr, nil)).With(slog.String("service", f.service), slog.String("version", f.version))
	app := f.App(log, module)
	if err := app.Err(); err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", name, err)
		return 1
	}
	app.Run()
	return 0
}
