// Command sluice-release runs Sluice's release service on its own: it
// versions releases, deploys and verifies them, rolls back, and serves
// sluice.release.v1.ReleaseService. Every flag falls back to
// $SLUICE_RELEASE_<FLAG> (see --help).
package main

import (
	"github.com/sluicehq/sluice/platform/servicecmd"
	"github.com/sluicehq/sluice/services/release"
)

// version and commit are set with -ldflags "-X main.version=... -X main.commit=...".
var (
	version = "dev"
	commit  string
)

func main() {
	servicecmd.Main(servicecmd.Command[release.Config]{
		Service: release.Name,
		Addr:    "127.0.0.1:8084",
		Version: version,
		Commit:  commit,
		Config:  release.DefaultConfig(),
		Module:  release.Module,
	})
}
