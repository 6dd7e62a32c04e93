// Command sluice-source runs Sluice's source service on its own:
// repositories, webhooks, polling, runs and their summaries. Every flag
// falls back to $SLUICE_SOURCE_<FLAG> (see -h).
package main

import (
	"os"

	"go.uber.org/fx"

	"github.com/sluicehq/sluice/platform/servicecmd"
	"github.com/sluicehq/sluice/services/source"
)

// version and commit are set with -ldflags "-X main.version=... -X main.commit=...".
var (
	version = "dev"
	commit  string
)

func main() {
	f := servicecmd.New("source", "127.0.0.1:8081", version).WithCommit(commit)
	poll := f.Duration("poll-interval", source.DefaultPollInterval, "how often repositories are fetched for new commits; 0 disables")
	f.Main(os.Args[1:], func() (fx.Option, error) {
		cfg := source.Config{DataDir: f.DataDir(), DatabaseURL: f.DatabaseURL(), PollInterval: *poll, NATSReplicas: f.NATSReplicas()}
		if err := cfg.Validate(); err != nil {
			return nil, err
		}
		return source.Module(cfg), nil
	})
}
