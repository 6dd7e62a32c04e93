// Command sluice is Sluice's CLI and its all-in-one server (`sluice up`).
package main

import (
	"context"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/sluicehq/sluice/proto/gen/sluice/source/v1/sourcev1connect"

	"github.com/sluicehq/sluice/cmd/sluice/internal/allinone"
	"github.com/sluicehq/sluice/cmd/sluice/internal/cli"
)

// version and commit are set at build time with
// -ldflags "-X main.version=... -X main.commit=...".
var (
	version = "dev"
	commit  string
)

func main() {
	os.Exit(run())
}

func run() int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	app := &cli.App{
		Stdout:  os.Stdout,
		Stderr:  os.Stderr,
		Getenv:  os.Getenv,
		Version: version,
		Commit:  commit,
		NewUp: func() cli.Up {
			return allinone.NewCommand(version, func(ctx context.Context, c sourcev1connect.SourceServiceClient, runID string, w io.Writer) error {
				return cli.Follow(ctx, c, runID, w, false)
			})
		},
	}
	return app.Run(ctx, os.Args[1:])
}
