// Command sluice-source runs Sluice's source service on its own:
// repositories, webhooks, polling, runs and their summaries. Every flag
// falls back to $SLUICE_SOURCE_<FLAG> (see --help).
package main

import (
	"github.com/sluicehq/sluice/platform/servicecmd"
	"github.com/sluicehq/sluice/services/source"
)

// version and commit are set with -ldflags "-X main.version=... -X main.commit=...".
var (
	version = "dev"
	commit  string
)

func main() {
	servicecmd.Main(servicecmd.Command[source.Config]{
		Service: source.Name,
		Addr:    "127.0.0.1:8081",
		Version: version,
		Commit:  commit,
		Config:  source.DefaultConfig(),
		Module:  source.Module,
	})
}
