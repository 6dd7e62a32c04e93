// Command sluice-build runs Sluice's build service on its own: it takes run
// requests from NATS JetStream, runs the build steps and serves
// sluice.build.v1.BuildService.
//
// Every flag has an environment fallback (SLUICE_BUILD_<FLAG>).
package main

import (
	"flag"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"time"

	"go.uber.org/fx"

	"github.com/sluicehq/sluice/platform/fxkit"
	"github.com/sluicehq/sluice/platform/natsconn"
	"github.com/sluicehq/sluice/platform/rpcserver"
	"github.com/sluicehq/sluice/services/build"
)

// version is set with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "sluice-build:", err)
		os.Exit(2)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("sluice-build", flag.ContinueOnError)
	addr := fs.String("addr", env("ADDR", "127.0.0.1:8082"), "listen address for Connect, health and metrics (SLUICE_BUILD_ADDR)")
	natsURL := fs.String("nats-url", env("NATS_URL", "nats://127.0.0.1:4222"), "NATS server URL (SLUICE_BUILD_NATS_URL)")
	dataDir := fs.String("data-dir", env("DATA_DIR", "./data"), "directory for workspaces and the default database (SLUICE_BUILD_DATA_DIR)")
	dbURL := fs.String("database-url", env("DATABASE_URL", ""), "database URL; default sqlite:<data-dir>/build.db (SLUICE_BUILD_DATABASE_URL)")
	workers := fs.Int("workers", 0, "builds run at once; default 4 (SLUICE_BUILD_WORKERS)")
	stepTimeout := fs.Duration("step-timeout", 0, "timeout of steps that declare none; default 30m (SLUICE_BUILD_STEP_TIMEOUT)")
	workerID := fs.String("worker-id", env("WORKER_ID", ""), "this worker's name; default <hostname>-<pid> (SLUICE_BUILD_WORKER_ID)")
	showVersion := fs.Bool("version", false, "print the version and exit")
	if err := envInt(fs, "workers", "WORKERS"); err != nil {
		return err
	}
	if err := envDuration(fs, "step-timeout", "STEP_TIMEOUT"); err != nil {
		return err
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *showVersion {
		fmt.Println("sluice-build", version)
		return nil
	}

	cfg := build.Config{
		DataDir:            *dataDir,
		DatabaseURL:        *dbURL,
		Workers:            *workers,
		DefaultStepTimeout: *stepTimeout,
		WorkerID:           *workerID,
	}.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return err
	}

	logger := slog.New(slog.NewJSONHandler(os.Stderr, nil)).With(slog.String("version", version))
	fx.New(
		fx.WithLogger(fxkit.FxLogger),
		fx.StartTimeout(fxkit.StartTimeout),
		fx.Supply(logger),
		fxkit.NATS(natsconn.Config{URL: *natsURL, Name: "sluice-build"}),
		fxkit.Server(rpcserver.Config{Addr: *addr}),
		build.Module(cfg),
	).Run()
	return nil
}

// env returns $SLUICE_BUILD_<name>, or def when it is unset.
func env(name, def string) string {
	if v, ok := os.LookupEnv("SLUICE_BUILD_" + name); ok {
		return v
	}
	return def
}

// envInt sets flag from $SLUICE_BUILD_<name> as its default, refusing a
// value that is not an integer.
func envInt(fs *flag.FlagSet, flagName, name string) error {
	v, ok := os.LookupEnv("SLUICE_BUILD_" + name)
	if !ok {
		return nil
	}
	if _, err := strconv.Atoi(v); err != nil {
		return fmt.Errorf("SLUICE_BUILD_%s=%q is not an integer", name, v)
	}
	return fs.Set(flagName, v)
}

// envDuration sets flag from $SLUICE_BUILD_<name> as its default, refusing a
// value that is not a duration.
func envDuration(fs *flag.FlagSet, flagName, name string) error {
	v, ok := os.LookupEnv("SLUICE_BUILD_" + name)
	if !ok {
		return nil
	}
	if _, err := time.ParseDuration(v); err != nil {
		return fmt.Errorf("SLUICE_BUILD_%s=%q is not a duration (like 30m)", name, v)
	}
	return fs.Set(flagName, v)
}
