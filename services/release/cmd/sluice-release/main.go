// Command sluice-release runs the release service on its own.
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
	"github.com/sluicehq/sluice/services/release"
)

// version is set with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "sluice-release:", err)
		os.Exit(2)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("sluice-release", flag.ContinueOnError)
	var (
		showVersion   = fs.Bool("version", false, "print the version and exit")
		addr          = fs.String("addr", env("SLUICE_RELEASE_ADDR", "127.0.0.1:8084"), "listen address (SLUICE_RELEASE_ADDR)")
		natsURL       = fs.String("nats-url", env("SLUICE_RELEASE_NATS_URL", "nats://127.0.0.1:4222"), "NATS URL (SLUICE_RELEASE_NATS_URL)")
		databaseURL   = fs.String("database-url", env("SLUICE_RELEASE_DATABASE_URL", "sqlite:./data/release.db"), "database URL (SLUICE_RELEASE_DATABASE_URL)")
		dataDir       = fs.String("data-dir", env("SLUICE_RELEASE_DATA_DIR", "./data/release"), "workspaces and deploy state (SLUICE_RELEASE_DATA_DIR)")
		sourceURL     = fs.String("source-url", env("SLUICE_RELEASE_SOURCE_URL", "http://127.0.0.1:8081"), "source service URL (SLUICE_RELEASE_SOURCE_URL)")
		buildURL      = fs.String("build-url", env("SLUICE_RELEASE_BUILD_URL", "http://127.0.0.1:8082"), "build service URL (SLUICE_RELEASE_BUILD_URL)")
		workers       = fs.Int("workers", envInt("SLUICE_RELEASE_WORKERS", release.DefaultWorkers), "release stages run at once (SLUICE_RELEASE_WORKERS)")
		deployTimeout = fs.Duration("deploy-timeout", envDuration("SLUICE_RELEASE_DEPLOY_TIMEOUT", release.DefaultDeployTimeout), "default deploy timeout (SLUICE_RELEASE_DEPLOY_TIMEOUT)")
		verifyTimeout = fs.Duration("verify-timeout", envDuration("SLUICE_RELEASE_VERIFY_TIMEOUT", release.DefaultVerifyTimeout), "default verification timeout (SLUICE_RELEASE_VERIFY_TIMEOUT)")
	)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *showVersion {
		fmt.Println("sluice-release", version)
		return nil
	}
	cfg := release.Config{
		DataDir:              *dataDir,
		DatabaseURL:          *databaseURL,
		SourceURL:            *sourceURL,
		BuildURL:             *buildURL,
		Workers:              *workers,
		DefaultDeployTimeout: *deployTimeout,
		DefaultVerifyTimeout: *verifyTimeout,
	}.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return err
	}
	logger := slog.New(slog.NewJSONHandler(os.Stderr, nil)).With(slog.String("version", version))
	fx.New(
		fx.WithLogger(fxkit.FxLogger),
		fx.StartTimeout(fxkit.StartTimeout),
		fx.Supply(logger),
		fxkit.NATS(natsconn.Config{URL: *natsURL, Name: "sluice-release"}),
		fxkit.Server(rpcserver.Config{Addr: *addr}),
		release.Module(cfg),
	).Run()
	return nil
}

func env(name, def string) string {
	if v, ok := os.LookupEnv(name); ok && v != "" {
		return v
	}
	return def
}

// envInt and envDuration fall back to def when the variable is unset; a
// malformed value stops the program, naming the variable.
func envInt(name string, def int) int {
	v, ok := os.LookupEnv(name)
	if !ok || v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		fmt.Fprintf(os.Stderr, "sluice-release: %s=%q is not a number\n", name, v)
		os.Exit(2)
	}
	return n
}

func envDuration(name string, def time.Duration) time.Duration {
	v, ok := os.LookupEnv(name)
	if !ok || v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		fmt.Fprintf(os.Stderr, "sluice-release: %s=%q is not a duration (e.g. 10m)\n", name, v)
		os.Exit(2)
	}
	return d
}
