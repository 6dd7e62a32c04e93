// Command natsauth-gen writes the NATS auth config derived from
// deploy/nats (see package natsauth) to each file named on the command
// line. `make generate` runs it for deploy/nats/auth.conf and
// deploy/k8s/base/nats/auth.conf.
package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/sluicehq/sluice/deploy"
	"github.com/sluicehq/sluice/platform/natsauth"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "natsauth-gen:", err)
		os.Exit(1)
	}
}

func run(paths []string) error {
	if len(paths) == 0 {
		return errors.New("usage: natsauth-gen FILE [FILE ...]")
	}
	conf, err := natsauth.Generate(deploy.NATS())
	if err != nil {
		return err
	}
	for _, p := range paths {
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(p, conf, 0o644); err != nil { //nolint:gosec // a config file in the repository, world-readable like the others
			return err
		}
	}
	return nil
}
