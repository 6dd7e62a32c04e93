package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/e2e/internal/e2ekit"
)

// natsUsers are the users of deploy/nats/auth.conf.
var natsUsers = []string{"admin", "source", "build", "test", "release", "notify"}

// natsPassword is the test's password of a NATS user.
func natsPassword(user string) string { return "e2e-" + user + "-password" }

// natsAuthConfig writes a nats-server config into dir that includes the
// committed deploy/nats/auth.conf, as a deployment does, and returns its
// path and the server's environment with every password.
func natsAuthConfig(t *testing.T, dir string) (string, []string) {
	t.Helper()
	auth, err := os.ReadFile(filepath.Join(e2ekit.RepoRoot(), "deploy", "nats", "auth.conf"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "auth.conf"), auth, 0o600); err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(dir, "nats.conf")
	if err := os.WriteFile(conf, []byte("include ./auth.conf\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var env []string
	for _, u := range natsUsers {
		env = append(env, "NATS_"+strings.ToUpper(u)+"_PASSWORD="+natsPassword(u))
	}
	return conf, env
}

// assertNothingRefused fails when a process logged a subject its NATS user
// was refused (natsconn's ErrorHandler).
func assertNothingRefused(t *testing.T, p *platform) {
	t.Helper()
	for _, pr := range p.procs {
		for line := range strings.Lines(pr.out.String()) {
			if strings.Contains(line, "nats refused a subject") {
				t.Errorf("%s: %s", pr.name, line)
			}
		}
	}
}
