// Command sluice-notify runs Sluice's notify service on its own: webhook
// subscriptions, signed deliveries with retries, and the live event stream.
// Every flag falls back to $SLUICE_NOTIFY_<FLAG> (see --help).
package main

import (
	"github.com/sluicehq/sluice/platform/servicecmd"
	"github.com/sluicehq/sluice/services/notify"
)

// version and commit are set with -ldflags "-X main.version=... -X main.commit=...".
var (
	version = "dev"
	commit  string
)

func main() {
	servicecmd.Main(servicecmd.Command[notify.Config]{
		Service: notify.Name,
		Addr:    "127.0.0.1:8085",
		Version: version,
		Commit:  commit,
		Config:  notify.DefaultConfig(),
		Module:  notify.Module,
	})
}
