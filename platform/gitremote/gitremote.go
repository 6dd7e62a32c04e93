// Package gitremote is how Sluice lets go-git reach a repository URL: Guard
// checks the URL against the service's egress policy and returns the
// context that go-git must be called with, so that every connection go-git
// makes for an http:// or https:// URL is checked at dial time (each
// resolved address, each redirect hop).
package gitremote

import (
	"context"
	"fmt"
	"net/http"
	"sync"

	"github.com/go-git/go-git/v5/plumbing/transport"
	"github.com/go-git/go-git/v5/plumbing/transport/client"
	githttp "github.com/go-git/go-git/v5/plumbing/transport/http"

	"github.com/sluicehq/sluice/platform/egress"
)

// Guard checks that policy lets url be read and returns ctx carrying the
// policy, which go-git must be given for the operations on url:
//
//   - a local path or file:// URL needs the "local" entry (it reads the
//     host's file system);
//   - ssh:// (and user@host:path) and git:// URLs need the "ssh" and "git"
//     entries: go-git dials them with no dialer a caller can set, so their
//     addresses cannot be checked;
//   - http:// and https:// URLs are checked when go-git connects, against
//     the policy ctx carries.
func Guard(ctx context.Context, policy *egress.Policy, url string) (context.Context, error) {
	installGuard()
	ep, err := transport.NewEndpoint(url)
	if err != nil {
		return nil, fmt.Errorf("repository url: %w", err)
	}
	switch ep.Protocol {
	case "file":
		if err := policy.CheckLocal(ep.Path); err != nil {
			return nil, err
		}
	case "ssh", "git":
		if err := policy.CheckScheme(ep.Protocol); err != nil {
			return nil, err
		}
	}
	return egress.NewContext(ctx, policy), nil
}

var install sync.Once

// installGuard replaces go-git's http and https transports, once per
// process, with one whose connections are checked against the policy each
// request's context carries (egress.ContextTransport; none carried: the
// default policy, which refuses every special range).
//
// This is process-wide state, and the one place Sluice keeps any: go-git v5
// gives a fetch, a clone or a listing of refs no way to pass a transport or
// an HTTP client per call (Remote.Fetch and Remote.List resolve the
// transport through client.Protocols, a package-level map). The only other
// way would be to redo go-git's fetch negotiation on its session API. What
// is installed depends on no service's configuration: in `sluice up` five
// services with different allow-lists share it, each call carrying its
// own. Guard installs it before it lets any go-git operation run, so the
// write happens before every read of the map that Sluice makes (sync.Once
// orders them).
func installGuard() {
	install.Do(func() {
		t := githttp.NewClient(&http.Client{Transport: egress.ContextTransport()})
		client.InstallProtocol("http", t)
		client.InstallProtocol("https", t)
	})
}
