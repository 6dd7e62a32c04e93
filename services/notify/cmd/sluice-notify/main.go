// Command sluice-notify runs Sluice's notify service on its own: webhook
// subscriptions, signed deliveries with retries, and the live event stream.
// Every flag falls back to $SLUICE_NOTIFY_<FLAG> (see -h).
package main

import (
	"os"

	"go.uber.org/fx"

	"github.com/sluicehq/sluice/platform/servicecmd"
	"github.com/sluicehq/sluice/services/notify"
)

// version and commit are set with -ldflags "-X main.version=... -X main.commit=...".
var (
	version = "dev"
	commit  string
)

func main() {
	f := servicecmd.New("notify", "127.0.0.1:8085", version).WithCommit(commit)
	maxAttempts := f.Int("max-attempts", notify.DefaultMaxAttempts, "attempts per delivery before it is dead-lettered")
	retryBase := f.Duration("retry-base", notify.DefaultRetryBase, "delay after the first failed attempt, doubled after each")
	f.Main(os.Args[1:], func() (fx.Option, error) {
		cfg := notify.Config{
			DataDir:      f.DataDir(),
			DatabaseURL:  f.DatabaseURL(),
			NATSReplicas: f.NATSReplicas(),
			MaxAttempts:  *maxAttempts,
			RetryBase:    *retryBase,
			Version:      version,
		}.WithDefaults()
		if err := cfg.Validate(); err != nil {
			return nil, err
		}
		return notify.Module(cfg), nil
	})
}
