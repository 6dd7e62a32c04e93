// Command sluice-test runs Sluice's test service on its own: it tests every
// successful build and serves sluice.test.v1.TestService. Every flag falls
// back to $SLUICE_TEST_<FLAG> (see --help).
package main

import (
	"github.com/sluicehq/sluice/platform/servicecmd"
	"github.com/sluicehq/sluice/services/tests"
)

// version and commit are set with -ldflags "-X main.version=... -X main.commit=...".
var (
	version = "dev"
	commit  string
)

func main() {
	servicecmd.Main(servicecmd.Command[tests.Config]{
		Service: tests.Name,
		Addr:    "127.0.0.1:8083",
		Version: version,
		Commit:  commit,
		Config:  tests.DefaultConfig(),
		Module:  tests.Module,
	})
}
