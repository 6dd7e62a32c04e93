package source

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/fx"

	"github.com/sluicehq/sluice/platform/apierror"
	"github.com/sluicehq/sluice/platform/egress"
	"github.com/sluicehq/sluice/platform/events"
	"github.com/sluicehq/sluice/platform/gitauth"
	"github.com/sluicehq/sluice/platform/keyring"
	"github.com/sluicehq/sluice/platform/runner"
	"github.com/sluicehq/sluice/services/source/domain"
	"github.com/sluicehq/sluice/services/source/gitmirror"
)

// fetchTimeout bounds one fetch of a mirror.
const fetchTimeout = 2 * time.Minute

// Service is the source service's application layer: what the Connect
// handler, the webhook, the poller and the event consumers call. Its use
// cases live one to a file: repositories.go, runs.go, poll.go, webhook.go
// and summary.go.
type Service struct {
	cfg     Config
	store   *Store
	mirrors *gitmirror.Mirrors
	outbox  *events.Relay
	log     *slog.Logger
	changes *broadcast
	tokens  *tokenPublisher
	// refusals paces the polls of repositories whose credential was
	// refused.
	refusals *pollRefusals
	// keys encrypt secrets; nil when the operator gave none.
	keys *keyring.Ring
	// admission wakes the admission pass (Admit).
	admission chan struct{}
	// forgeHTTP calls the forges' APIs (the reconciliation) through the
	// egress policy; it follows no redirect.
	forgeHTTP *http.Client
	// recording serialises this process's transactions that record a new
	// run: on PostgreSQL, runs recorded side by side (a burst of
	// triggers, pushes to one branch) conflict on the branch's commits and
	// the concurrency group's runs, and each conflict costs a retry; the
	// retries stay for runs recorded by other replicas.
	recording sync.Mutex
	// scheduleCache keeps the schedules of each repository's pipeline.
	scheduleCache scheduleCache
}

// Deps are the service's collaborators; fx provides them (servicekit).
type Deps struct {
	fx.In
	Store *Store
	// Outbox publishes what the service enqueued; it is woken after every
	// commit that enqueued events.
	Outbox *events.Relay
	// JetStream holds the tokens bucket source publishes tokens in.
	JetStream jetstream.JetStream
	Log       *slog.Logger
	// Egress is what repository URLs may reach (the allow-egress setting).
	Egress *egress.Policy
	// Supervisor guards the service's short-lived goroutines (a mirror
	// fetch's pack encoder); nil: runner's default.
	Supervisor *runner.Supervisor `optional:"true"`
}

// NewService makes the service; cfg must be valid (Config.WithDefaults,
// Config.Validate).
func NewService(cfg Config, d Deps) (*Service, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if d.Store == nil || d.Outbox == nil || d.JetStream == nil || d.Egress == nil || d.Log == nil {
		return nil, errors.New("source: NewService: every dependency is required")
	}
	keys, err := keyring.Load(cfg.Keys)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", Name, err)
	}
	if keys == nil {
		d.Log.Warn("no secret key (secret-key-file or $SLUICE_SOURCE_SECRET_KEY): secrets cannot be stored, runs whose steps ask for one fail, and webhook secrets are stored as given")
	}
	return &Service{
		keys:      keys,
		cfg:       cfg,
		store:     d.Store,
		mirrors:   gitmirror.New(cfg.mirrorsDir(), d.Egress, d.Supervisor),
		forgeHTTP: forgeClient(d.Egress),
		outbox:    d.Outbox,
		log:       d.Log,
		changes:   &broadcast{},
		tokens:    newTokenPublisher(d.Store, d.JetStream),
		refusals:  &pollRefusals{},
		admission: make(chan struct{}, 1),
	}, nil
}

// fetch brings a repository's mirror up to date. Its error, told to the
// user, is brief (egress.Brief): a failed precondition when the
// repository's credential was refused (gitauth.Refused), which trying
// again does not mend, else unavailable.
func (s *Service) fetch(ctx context.Context, repo domain.Repository) error {
	ctx, cancel := context.WithTimeout(ctx, fetchTimeout)
	defer cancel()
	cred, err := s.repositoryCredential(ctx, repo)
	if err != nil {
		return err
	}
	if err := s.mirrors.Fetch(ctx, repo.ID, repo.URL, cred); err != nil {
		if gitauth.Refused(err) {
			return fmt.Errorf("repository %q: %s: %w: %w", repo.Name, refusal(repo, err), egress.Brief(err), apierror.ErrFailedPrecondition)
		}
		return fmt.Errorf("repository %q: %w: %w", repo.Name, egress.Brief(err), apierror.ErrUnavailable)
	}
	s.refusals.forget(repo.ID)
	return nil
}

// refusal says who refused what in err, a gitauth.Refused fetch of repo.
// The brief error that follows it says what to do.
func refusal(repo domain.Repository, err error) string {
	switch {
	case gitauth.Denied(err) && repo.GitCredential == gitauth.None:
		return "the forge refused to serve the repository without a credential"
	case gitauth.Denied(err):
		return "the forge refused the repository's credential"
	}
	return "the repository's credential cannot be used"
}

// broadcast wakes everyone waiting for a change of any run.
type broadcast struct {
	mu sync.Mutex
	ch chan struct{}
}

// wait returns a channel that is closed at the next notify.
func (b *broadcast) wait() <-chan struct{} {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.ch == nil {
		b.ch = make(chan struct{})
	}
	return b.ch
}

func (b *broadcast) notify() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.ch != nil {
		close(b.ch)
		b.ch = nil
	}
}

// forgeClient is the HTTP client of the forges' APIs: every connection is
// checked against the egress policy when it is dialed, and a redirect is
// an answer, not followed (it would take the token elsewhere).
func forgeClient(policy *egress.Policy) *http.Client {
	c := policy.Client()
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	c.Timeout = forgeTimeout
	return c
}
