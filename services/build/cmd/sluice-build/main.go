// Command sluice-build runs Sluice's build service on its own: it takes run
// requests from NATS JetStream, runs the build steps and serves
// sluice.build.v1.BuildService. Every flag falls back to
// $SLUICE_BUILD_<FLAG> (see --help).
package main

import (
	"github.com/sluicehq/sluice/platform/servicecmd"
	"github.com/sluicehq/sluice/services/build"
)

// version and commit are set with -ldflags "-X main.version=... -X main.commit=...".
var (
	version = "dev"
	commit  string
)

func main() {
	servicecmd.Main(servicecmd.Command[build.Config]{
		Service: build.Name,
		Addr:    "127.0.0.1:8082",
		Version: version,
		Commit:  commit,
		Config:  build.DefaultConfig(),
		Module:  build.Module,
	})
}
