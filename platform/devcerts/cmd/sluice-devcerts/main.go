// Command sluice-devcerts makes a development CA and certificates signed
// by it, for the Compose stack's TLS (`make dev-certs`):
//
//	sluice-devcerts -dir deploy/compose/certs nats=nats-1,nats-2,nats-3,localhost,127.0.0.1 source=source,localhost,127.0.0.1 ...
//
// Each NAME=HOSTS argument makes <dir>/NAME.pem and <dir>/NAME-key.pem for
// those hosts (DNS names or IP addresses), good for servers and clients;
// <dir>/ca.pem is the CA, the bundle clients trust. An existing ca.pem
// keeps the folder as it is, unless -force. The keys are written readable
// by every user (the containers run as another user than the one who runs
// make): they are development keys, never for production.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/sluicehq/sluice/platform/devcerts"
)

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "sluice-devcerts:", err)
		os.Exit(1)
	}
}

func run(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("sluice-devcerts", flag.ContinueOnError)
	dir := fs.String("dir", "", "the folder to write to (made if missing)")
	force := fs.Bool("force", false, "make a new CA and certificates even if the folder has them")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *dir == "" || fs.NArg() == 0 {
		return errors.New("usage: sluice-devcerts -dir DIR NAME=HOST[,HOST...] [NAME=HOST[,HOST...]]")
	}
	caFile := filepath.Join(*dir, "ca.pem")
	if _, err := os.Stat(caFile); err == nil && !*force {
		fmt.Fprintf(out, "%s exists: keeping the certificates in %s (-force makes new ones)\n", caFile, *dir)
		return nil
	}
	if err := os.MkdirAll(*dir, 0o755); err != nil {
		return err
	}
	ca, err := devcerts.NewCA("Sluice development CA")
	if err != nil {
		return err
	}
	for _, arg := range fs.Args() {
		name, hosts, ok := strings.Cut(arg, "=")
		if !ok || name == "" || hosts == "" || strings.ContainsAny(name, `/\`) {
			return fmt.Errorf("%q: want NAME=HOST[,HOST...]", arg)
		}
		pair, err := ca.Issue(strings.Split(hosts, ",")...)
		if err != nil {
			return err
		}
		if _, _, err := pair.WriteFiles(*dir, name, 0o644); err != nil {
			return err
		}
	}
	if err := os.WriteFile(caFile, ca.PEM, 0o644); err != nil { //nolint:gosec // a certificate is public
		return fmt.Errorf("write %s: %w", caFile, err)
	}
	fmt.Fprintf(out, "made a development CA and %d certificates in %s\n", fs.NArg(), *dir)
	return nil
}
