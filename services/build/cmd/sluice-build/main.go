// Command sluice-build runs Sluice's build service on its own: it takes run
// requests from NATS JetStream, runs the build steps and serves
// sluice.build.v1.BuildService. Every flag falls back to
// $SLUICE_BUILD_<FLAG> (see -h).
package main

import (
	"os"

	"go.uber.org/fx"

	"github.com/sluicehq/sluice/platform/servicecmd"
	"github.com/sluicehq/sluice/services/build"
)

// version and commit are set with -ldflags "-X main.version=... -X main.commit=...".
var (
	version = "dev"
	commit  string
)

func main() {
	f := servicecmd.New("build", "127.0.0.1:8082", version).WithCommit(commit)
	workers := f.Int("workers", build.DefaultWorkers, "builds run at once")
	stepTimeout := f.Duration("step-timeout", build.DefaultStepTimeout, "timeout of steps that declare none")
	workerID := f.String("worker-id", "", "this worker's name; default <hostname>-<pid>")
	f.Main(os.Args[1:], func() (fx.Option, error) {
		cfg := build.Config{
			DataDir:            f.DataDir(),
			DatabaseURL:        f.DatabaseURL(),
			NATSReplicas:       f.NATSReplicas(),
			Workers:            *workers,
			DefaultStepTimeout: *stepTimeout,
			WorkerID:           *workerID,
		}.WithDefaults()
		if err := cfg.Validate(); err != nil {
			return nil, err
		}
		return build.Module(cfg), nil
	})
}
