// Command sluice-notify runs the notify service on its own: webhook
// subscriptions to Sluice's events and their deliveries.
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
	"github.com/sluicehq/sluice/services/notify"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "sluice-notify:", err)
		os.Exit(2)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("sluice-notify", flag.ContinueOnError)
	var (
		showVersion = fs.Bool("version", false, "print the version and exit")
		addr        = fs.String("addr", env("ADDR", "127.0.0.1:8085"), "listen address (SLUICE_NOTIFY_ADDR)")
		natsURL     = fs.String("nats-url", env("NATS_URL", "nats://127.0.0.1:4222"), "NATS server URL (SLUICE_NOTIFY_NATS_URL)")
		dataDir     = fs.String("data-dir", env("DATA_DIR", "./data"), "data directory (SLUICE_NOTIFY_DATA_DIR)")
		databaseURL = fs.String("database-url", env("DATABASE_URL", ""), "database URL; default sqlite:<data-dir>/notify.db (SLUICE_NOTIFY_DATABASE_URL)")
	)
	maxAttempts, err := envInt("MAX_ATTEMPTS", notify.DefaultMaxAttempts)
	if err != nil {
		return err
	}
	retryBase, err := envDuration("RETRY_BASE", notify.DefaultRetryBase)
	if err != nil {
		return err
	}
	fs.IntVar(&maxAttempts, "max-attempts", maxAttempts, "attempts per delivery before it is dead-lettered (SLUICE_NOTIFY_MAX_ATTEMPTS)")
	fs.DurationVar(&retryBase, "retry-base", retryBase, "delay after the first failed attempt, doubled after each (SLUICE_NOTIFY_RETRY_BASE)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *showVersion {
		fmt.Println("sluice-notify", version)
		return nil
	}

	logger := slog.New(slog.NewJSONHandler(os.Stderr, nil)).With(slog.String("service", "notify"))
	cfg := notify.Config{
		DataDir:     *dataDir,
		DatabaseURL: *databaseURL,
		MaxAttempts: maxAttempts,
		RetryBase:   retryBase,
		Version:     version,
	}.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return err
	}
	fx.New(
		fx.WithLogger(fxkit.FxLogger),
		fx.StartTimeout(fxkit.StartTimeout),
		fx.Supply(logger),
		fxkit.NATS(natsconn.Config{URL: *natsURL, Name: "sluice-notify"}),
		fxkit.Server(rpcserver.Config{Addr: *addr}),
		notify.Module(cfg),
	).Run()
	return nil
}

func env(name, def string) string {
	if v, ok := os.LookupEnv("SLUICE_NOTIFY_" + name); ok {
		return v
	}
	return def
}

func envInt(name string, def int) (int, error) {
	v, ok := os.LookupEnv("SLUICE_NOTIFY_" + name)
	if !ok {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		return 0, fmt.Errorf("SLUICE_NOTIFY_%s=%q: not a number: %w", name, v, err)
	}
	return n, nil
}

func envDuration(name string, def time.Duration) (time.Duration, error) {
	v, ok := os.LookupEnv("SLUICE_NOTIFY_" + name)
	if !ok {
		return def, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		return 0, fmt.Errorf("SLUICE_NOTIFY_%s=%q: not a duration (e.g. 1s): %w", name, v, err)
	}
	return d, nil
}
