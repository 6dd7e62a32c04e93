// Command sluice-test runs Sluice's test service on its own: it tests every
// successful build and serves the TestService Connect API.
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
	test "github.com/sluicehq/sluice/services/test"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "sluice-test:", err)
		os.Exit(2)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("sluice-test", flag.ContinueOnError)
	addr := fs.String("addr", env("SLUICE_TEST_ADDR", "127.0.0.1:8083"), "listen address (env SLUICE_TEST_ADDR)")
	natsURL := fs.String("nats-url", env("SLUICE_TEST_NATS_URL", "nats://127.0.0.1:4222"), "NATS URL (env SLUICE_TEST_NATS_URL)")
	dataDir := fs.String("data-dir", env("SLUICE_TEST_DATA_DIR", "./data"), "directory for workspaces and the default database (env SLUICE_TEST_DATA_DIR)")
	databaseURL := fs.String("database-url", env("SLUICE_TEST_DATABASE_URL", ""), "database URL; default sqlite:<data-dir>/test.db (env SLUICE_TEST_DATABASE_URL)")
	sourceURL := fs.String("source-url", env("SLUICE_TEST_SOURCE_URL", "http://127.0.0.1:8081"), "the source service's URL (env SLUICE_TEST_SOURCE_URL)")
	workers, err := envInt("SLUICE_TEST_WORKERS", test.DefaultWorkers)
	if err != nil {
		return err
	}
	fs.IntVar(&workers, "workers", workers, "test runs run at once (env SLUICE_TEST_WORKERS)")
	stepTimeout, err := envDuration("SLUICE_TEST_DEFAULT_STEP_TIMEOUT", test.DefaultStepTimeout)
	if err != nil {
		return err
	}
	fs.DurationVar(&stepTimeout, "default-step-timeout", stepTimeout, "timeout of a step that sets none (env SLUICE_TEST_DEFAULT_STEP_TIMEOUT)")
	showVersion := fs.Bool("version", false, "print the version and exit")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *showVersion {
		fmt.Println("sluice-test", version)
		return nil
	}

	cfg := test.Config{
		DataDir:            *dataDir,
		DatabaseURL:        *databaseURL,
		SourceURL:          *sourceURL,
		Workers:            workers,
		DefaultStepTimeout: stepTimeout,
	}.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return err
	}
	logger := slog.New(slog.NewJSONHandler(os.Stderr, nil)).With(slog.String("service", "test"), slog.String("version", version))
	fx.New(
		fx.WithLogger(fxkit.FxLogger),
		fx.StartTimeout(fxkit.StartTimeout),
		fx.Supply(logger),
		fxkit.NATS(natsconn.Config{URL: *natsURL, Name: "sluice-test"}),
		fxkit.Server(rpcserver.Config{Addr: *addr}),
		test.Module(cfg),
	).Run()
	return nil
}

func env(name, def string) string {
	if v, ok := os.LookupEnv(name); ok && v != "" {
		return v
	}
	return def
}

func envInt(name string, def int) (int, error) {
	v := env(name, "")
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		return 0, fmt.Errorf("%s=%q is not a whole number", name, v)
	}
	return n, nil
}

func envDuration(name string, def time.Duration) (time.Duration, error) {
	v := env(name, "")
	if v == "" {
		return def, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		return 0, fmt.Errorf("%s=%q is not a duration such as 30m", name, v)
	}
	return d, nil
}
