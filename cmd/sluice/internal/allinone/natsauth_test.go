package allinone_test

import (
	"errors"
	"net/url"
	"testing"

	"github.com/nats-io/nats.go"
)

// The embedded NATS of `sluice up` takes only its users: a step that finds
// the port has no credential, and a guessed one is refused.
func TestEmbeddedNATSRequiresItsUsers(t *testing.T) {
	p := startPlatform(t, t.TempDir())
	admin, err := url.Parse(p.NATSURL())
	if err != nil || admin.User == nil {
		t.Fatalf("NATSURL %q has no credentials", p.NATSURL())
	}
	anonymous, guessed := *admin, *admin
	anonymous.User = nil
	guessed.User = url.UserPassword("build", "build")
	for name, u := range map[string]string{"anonymous": anonymous.String(), "guessed password": guessed.String()} {
		nc, err := nats.Connect(u, nats.MaxReconnects(0))
		if err == nil {
			nc.Close()
			t.Errorf("%s: connected", name)
			continue
		}
		if !errors.Is(err, nats.ErrAuthorization) {
			t.Errorf("%s: %v, want an authorization violation", name, err)
		}
	}
	nc, err := nats.Connect(p.NATSURL())
	if err != nil {
		t.Fatalf("admin: %v", err)
	}
	nc.Close()
}
