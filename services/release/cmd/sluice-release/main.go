// Command sluice-release runs Sluice's release service on its own: it
// versions releases, deploys and verifies them, rolls back, and serves
// sluice.release.v1.ReleaseService. Every flag falls back to
// $SLUICE_RELEASE_<FLAG> (see -h).
package main

import (
	"os"

	"go.uber.org/fx"

	"github.com/sluicehq/sluice/platform/servicecmd"
	"github.com/sluicehq/sluice/services/release"
)

// version and commit are set with -ldflags "-X main.version=... -X main.commit=...".
var (
	version = "dev"
	commit  string
)

func main() {
	f := servicecmd.New("release", "127.0.0.1:8084", version).WithCommit(commit)
	sourceURL := f.String("source-url", "http://127.0.0.1:8081", "the source service's URL")
	buildURL := f.String("build-url", "http://127.0.0.1:8082", "the build service's URL")
	workers := f.Int("workers", release.DefaultWorkers, "release stages run at once")
	deployTimeout := f.Duration("deploy-timeout", release.DefaultDeployTimeout, "timeout of deploy commands whose environment sets none")
	verifyTimeout := f.Duration("verify-timeout", release.DefaultVerifyTimeout, "how long a verification may keep trying when its environment sets no timeout")
	f.Main(os.Args[1:], func() (fx.Option, error) {
		cfg := release.Config{
			DataDir:              f.DataDir(),
			DatabaseURL:          f.DatabaseURL(),
			NATSReplicas:         f.NATSReplicas(),
			SourceURL:            *sourceURL,
			BuildURL:             *buildURL,
			Workers:              *workers,
			DefaultDeployTimeout: *deployTimeout,
			DefaultVerifyTimeout: *verifyTimeout,
		}.WithDefaults()
		if err := cfg.Validate(); err != nil {
			return nil, err
		}
		return release.Module(cfg), nil
	})
}
