// Command sluice-source runs Sluice's source service on its own.
package main

import (
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"time"

	"go.uber.org/fx"

	"github.com/sluicehq/sluice/platform/fxkit"
	"github.com/sluicehq/sluice/platform/natsconn"
	"github.com/sluicehq/sluice/platform/rpcserver"
	"github.com/sluicehq/sluice/services/source"
)

// version is set with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	if err := run(os.Args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return
		}
		fmt.Fprintln(os.Stderr, "sluice-source:", err)
		os.Exit(2)
	}
}

func env(name, def string) string {
	if v := os.Getenv("SLUICE_SOURCE_" + name); v != "" {
		return v
	}
	return def
}

func run(args []string) error {
	fs := flag.NewFlagSet("sluice-source", flag.ContinueOnError)
	addr := fs.String("addr", env("ADDR", "127.0.0.1:8081"), "listen address (SLUICE_SOURCE_ADDR)")
	natsURL := fs.String("nats-url", env("NATS_URL", "nats://127.0.0.1:4222"), "NATS URL (SLUICE_SOURCE_NATS_URL)")
	dataDir := fs.String("data-dir", env("DATA_DIR", "./data"), "directory for repository mirrors and the default database (SLUICE_SOURCE_DATA_DIR)")
	dbURL := fs.String("database-url", env("DATABASE_URL", ""), "database URL; default sqlite:<data-dir>/source.db (SLUICE_SOURCE_DATABASE_URL)")
	pollDefault := source.DefaultPollInterval
	if v := env("POLL_INTERVAL", ""); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			return fmt.Errorf("SLUICE_SOURCE_POLL_INTERVAL: %w", err)
		}
		pollDefault = d
	}
	poll := fs.Duration("poll-interval", pollDefault, "how often repositories are fetched for new commits; 0 disables (SLUICE_SOURCE_POLL_INTERVAL)")
	showVersion := fs.Bool("version", false, "print the version and exit")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *showVersion {
		fmt.Println("sluice-source", version)
		return nil
	}
	cfg := source.Config{DataDir: *dataDir, DatabaseURL: *dbURL, PollInterval: *poll}
	if err := cfg.Validate(); err != nil {
		return err
	}
	logger := slog.New(slog.NewJSONHandler(os.Stderr, nil)).With(slog.String("version", version))
	fx.New(
		fx.WithLogger(fxkit.FxLogger),
		fx.StartTimeout(fxkit.StartTimeout),
		fx.Supply(logger),
		fxkit.NATS(natsconn.Config{URL: *natsURL, Name: "sluice-source"}),
		fxkit.Server(rpcserver.Config{Addr: *addr}),
		source.Module(cfg),
	).Run()
	return nil
}
