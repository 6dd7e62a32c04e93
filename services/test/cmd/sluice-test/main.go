// Command sluice-test runs Sluice's test service on its own: it runs the
// test steps of successful builds, parses their reports and serves
// sluice.test.v1.TestService. Every flag falls back to $SLUICE_TEST_<FLAG>
// (see -h).
package main

import (
	"os"

	"go.uber.org/fx"

	"github.com/sluicehq/sluice/platform/servicecmd"
	"github.com/sluicehq/sluice/services/test"
)

// version and commit are set with -ldflags "-X main.version=... -X main.commit=...".
var (
	version = "dev"
	commit  string
)

func main() {
	f := servicecmd.New("test", "127.0.0.1:8083", version).WithCommit(commit)
	sourceURL := f.String("source-url", "http://127.0.0.1:8081", "the source service's URL")
	workers := f.Int("workers", test.DefaultWorkers, "test runs run at once")
	stepTimeout := f.Duration("step-timeout", test.DefaultStepTimeout, "timeout of steps that declare none")
	f.Main(os.Args[1:], func() (fx.Option, error) {
		cfg := test.Config{
			DataDir:            f.DataDir(),
			DatabaseURL:        f.DatabaseURL(),
			NATSReplicas:       f.NATSReplicas(),
			SourceURL:          *sourceURL,
			Workers:            *workers,
			DefaultStepTimeout: *stepTimeout,
		}.WithDefaults()
		if err := cfg.Validate(); err != nil {
			return nil, err
		}
		return test.Module(cfg), nil
	})
}
