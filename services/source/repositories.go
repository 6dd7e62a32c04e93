package source

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	neturl "net/url"
	"path/filepath"
	"strings"
	"time"

	"github.com/sluicehq/sluice/platform/apierror"
	"github.com/sluicehq/sluice/platform/audit"
	"github.com/sluicehq/sluice/platform/auth"
	"github.com/sluicehq/sluice/platform/egress"
	"github.com/sluicehq/sluice/platform/events"
	"github.com/sluicehq/sluice/platform/forge"
	"github.com/sluicehq/sluice/platform/gitauth"
	"github.com/sluicehq/sluice/platform/ids"
	"github.com/sluicehq/sluice/platform/paging"
	"github.com/sluicehq/sluice/services/source/domain"
	"github.com/sluicehq/sluice/services/source/gitmirror"
)

// NewRepository is what CreateRepository needs; only URL is required.
type NewRepository struct {
	URL           string
	Name          string
	Branch        string
	WebhookSecret string
	// Credential is the repository's (none: the zero value). It is used
	// to read the repository and kept as its secrets.
	Credential gitauth.Credential
	// Forge is where the repository lives (none: the zero value); an
	// empty URL or Project is derived from the repository's URL.
	Forge forge.Repo
	// ForgeToken, when set, is kept as the secret forge.TokenSecret.
	ForgeToken string
	// PullRequestSecrets lets the runs of pull requests from the
	// repository's own branches have secrets.
	PullRequestSecrets bool
	// ForkPullRequests lets pull requests from forks run.
	ForkPullRequests bool
	// ForgeReleases makes each release on the forge too.
	ForgeReleases bool
}

// CreateRepository registers a repository: it mirrors it, picks its name
// and branch, records its current head as seen (so history starts no run)
// and publishes RepositoryCreated. Registering the same URL under the same
// name again returns the existing repository with created false; the
// webhook secret is returned only when created. Registering it again with
// a credential is refused: the credential of a repository that exists is
// changed with SetSecret.
func (s *Service) CreateRepository(ctx context.Context, in NewRepository) (repo domain.Repository, created bool, err error) {
	url, err := normalizeURL(in.URL)
	if err != nil {
		return repo, false, err
	}
	if err := checkNewCredential(url, in.Credential); err != nil {
		return repo, false, err
	}
	if (in.Credential.Kind() != gitauth.None || in.ForgeToken != "") && s.keys == nil {
		return repo, false, errNoSecretKey
	}
	place, err := forgePlace(in.Forge, url, in.ForgeToken)
	if err != nil {
		return repo, false, err
	}
	if in.ForgeReleases && place.IsZero() {
		return repo, false, fmt.Errorf("forge_releases: needs forge: %w", apierror.ErrInvalidArgument)
	}
	name := in.Name
	if name == "" {
		name = domain.NameFromURL(url)
		if name == "" {
			return repo, false, fmt.Errorf("name: cannot derive a repository name from url %q; set name: %w", url, apierror.ErrInvalidArgument)
		}
	}
	if !domain.ValidName(name) {
		return repo, false, fmt.Errorf("name %q: use lower-case letters, digits, '.', '_' and '-', starting with a letter or digit: %w", name, apierror.ErrInvalidArgument)
	}
	existing, err := s.store.RepositoryByName(ctx, name)
	switch {
	case err == nil:
		return sameRepository(existing, url, in.Branch, in.Credential, place, in.ForgeToken, in.ForgeReleases)
	case !errors.Is(err, apierror.ErrNotFound):
		return repo, false, err
	}

	id := ids.New()
	defer func() {
		if err != nil || !created {
			if rmErr := s.mirrors.Remove(id); rmErr != nil {
				s.log.Warn("could not remove the mirror of a repository that was not registered", slog.String("dir", s.mirrors.Dir(id)), slog.Any("error", rmErr))
			}
		}
	}()
	fctx, cancel := context.WithTimeout(ctx, fetchTimeout)
	defer cancel()
	if err := s.mirrors.Fetch(fctx, id, url, in.Credential); err != nil {
		return repo, false, fmt.Errorf("url: %w: %w", egress.Brief(err), apierror.ErrInvalidArgument)
	}
	branch := in.Branch
	if branch == "" {
		if branch, err = s.mirrors.DefaultBranch(fctx, url, in.Credential); err != nil {
			return repo, false, fmt.Errorf("branch: %w: %w", egress.Brief(err), apierror.ErrInvalidArgument)
		}
	} else if err := s.checkBranch(id, url, branch); err != nil {
		return repo, false, err
	}
	head, err := s.mirrors.BranchHead(id, branch)
	if err != nil && !errors.Is(err, gitmirror.ErrNotFound) {
		return repo, false, err
	}
	refs, err := s.mirrors.Refs(id) // history: the poll runs what moves after
	if err != nil {
		return repo, false, err
	}
	secret := in.WebhookSecret
	if secret == "" {
		secret = newSecret()
	}
	stored, err := s.keys.SealText(secret, webhookSecrets.Binding, id)
	if err != nil {
		return repo, false, err
	}
	repo = domain.Repository{
		ID: id, Name: name, URL: url, Branch: branch, WebhookSecret: secret,
		LastSeenCommit: head, CreatedAt: time.Now().UTC(), GitCredential: in.Credential.Kind(),
		Forge: place, HasForgeToken: in.ForgeToken != "", PullRequestSecrets: in.PullRequestSecrets,
		ForkPullRequests: in.ForkPullRequests, ForgeReleases: in.ForgeReleases,
	}
	credential, err := s.sealCredential(ctx, id, in.Credential.Values())
	if err != nil {
		return repo, false, err
	}
	if in.ForgeToken != "" {
		token, err := s.sealCredential(ctx, id, map[string]string{forge.TokenSecret: in.ForgeToken})
		if err != nil {
			return repo, false, err
		}
		credential = append(credential, token...)
	}
	ev, err := events.New(repositoryCreatedToProto(repo), repo.ID, "")
	if err != nil {
		return repo, false, err
	}
	err = s.store.InTx(ctx, func(tx *sql.Tx) error {
		row := repo
		row.WebhookSecret = stored
		if err := insertRepository(ctx, tx, row); err != nil {
			return err
		}
		if err := snapshotRefs(ctx, tx, repo.ID, refs); err != nil {
			return err
		}
		for _, sec := range credential {
			if err := s.store.PutSecretTx(ctx, tx, sec); err != nil {
				return err
			}
		}
		if err := audit.Record(ctx, tx, audit.Target{Repository: repo.Name, ID: repo.ID}); err != nil {
			return err
		}
		return events.Enqueue(ctx, tx, ev)
	})
	if errors.Is(err, errNameTaken) {
		// Registered concurrently under the same name.
		existing, err := s.store.RepositoryByName(ctx, name)
		if err != nil {
			return repo, false, fmt.Errorf("repository %q: registered concurrently and then not readable: %w", name, err)
		}
		return sameRepository(existing, url, in.Branch, in.Credential, place, in.ForgeToken, in.ForgeReleases)
	}
	if err != nil {
		return repo, false, err
	}
	s.outbox.Kick()
	s.log.Info("repository registered", slog.String("repository", name), slog.String("url", url), slog.String("branch", branch),
		slog.String("git_credential", repo.GitCredential.String()), slog.String("forge", string(place.Kind)), slog.String("forge_project", place.Project))
	return repo, true, nil
}

// sameRepository answers a registration of a name that exists: the
// existing repository when it is the same, else ErrAlreadyExists; and
// ErrFailedPrecondition when the registration gives a credential, which
// would not be stored (it is changed with SetSecret, under the reserved
// names).
func sameRepository(existing domain.Repository, url, branch string, cred gitauth.Credential, place forge.Repo, forgeToken string, forgeReleases bool) (domain.Repository, bool, error) {
	switch {
	case forgeReleases && !existing.ForgeReleases:
		return domain.Repository{}, false, fmt.Errorf("repository %q is already registered without forge_releases; registering it again does not turn it on: %w", existing.Name, apierror.ErrAlreadyExists)
	case !place.IsZero() && existing.Forge.IsZero():
		return domain.Repository{}, false, fmt.Errorf("repository %q is already registered without a forge; registering it again does not add one: %w", existing.Name, apierror.ErrAlreadyExists)
	case !place.IsZero() && place != existing.Forge:
		return domain.Repository{}, false, fmt.Errorf("repository %q is already registered with another forge (%s %s %s): %w",
			existing.Name, existing.Forge.Kind, existing.Forge.URL, existing.Forge.Project, apierror.ErrAlreadyExists)
	case forgeToken != "":
		return domain.Repository{}, false, fmt.Errorf("repository %q is already registered, and registering it again does not change its forge token: "+
			"set it with sluice secret set %s %s --from-file FILE (docs/security.md): %w", existing.Name, existing.Name, forge.TokenSecret, apierror.ErrFailedPrecondition)
	case existing.URL != url:
		return domain.Repository{}, false, fmt.Errorf("repository %q is already registered with url %q: %w", existing.Name, existing.URL, apierror.ErrAlreadyExists)
	case branch != "" && branch != existing.Branch:
		return domain.Repository{}, false, fmt.Errorf("repository %q is already registered watching branch %q: %w", existing.Name, existing.Branch, apierror.ErrAlreadyExists)
	case cred.Kind() == gitauth.HTTPSToken:
		return domain.Repository{}, false, fmt.Errorf("repository %q is already registered, and registering it again does not change its credential: "+
			"set its token with sluice secret set %s %s (and its username with %s) (docs/security.md): %w",
			existing.Name, existing.Name, gitauth.TokenSecret, gitauth.UsernameSecret, apierror.ErrFailedPrecondition)
	case cred.Kind() == gitauth.SSHKey:
		return domain.Repository{}, false, fmt.Errorf("repository %q is already registered, and registering it again does not change its credential: "+
			"set its key with sluice secret set %s %s --from-file KEY and its host keys with sluice secret set %s %s --from-file FILE (docs/security.md): %w",
			existing.Name, existing.Name, gitauth.SSHKeySecret, existing.Name, gitauth.KnownHostsSecret, apierror.ErrFailedPrecondition)
	}
	existing.WebhookSecret = ""
	return existing, false, nil
}

// forgePlace completes a repository's forge from its URL and checks it.
func forgePlace(place forge.Repo, url, token string) (forge.Repo, error) {
	if place.IsZero() {
		if token != "" {
			return place, fmt.Errorf("forge_token: needs forge: %w", apierror.ErrInvalidArgument)
		}
		return place, nil
	}
	if place.URL == "" || place.Project == "" {
		derived, ok := forge.FromCloneURL(place.Kind, url)
		if !ok {
			return place, fmt.Errorf("forge: cannot tell the forge's address and project from url %q; set forge.url and forge.project: %w", url, apierror.ErrInvalidArgument)
		}
		if place.URL == "" {
			place.URL = derived.URL
		}
		if place.Project == "" {
			place.Project = derived.Project
		}
	}
	place.URL = strings.TrimSuffix(place.URL, "/")
	if err := place.Validate(); err != nil {
		return place, fmt.Errorf("%w: %w", err, apierror.ErrInvalidArgument)
	}
	return place, nil
}

func (s *Service) checkBranch(id, url, branch string) error {
	branches, err := s.mirrors.Branches(id)
	if err != nil {
		return err
	}
	if len(branches) == 0 {
		return nil // an empty repository: the branch may come
	}
	for _, b := range branches {
		if b == branch {
			return nil
		}
	}
	return fmt.Errorf("branch %q does not exist in %s (it has %s): %w", branch, url, strings.Join(branches, ", "), apierror.ErrInvalidArgument)
}

// urlCredentialsRefusal is why a URL with credentials is refused and what
// to do instead (the proto's rule says the same of the URL as sent).
const urlCredentialsRefusal = "must not contain credentials (user:password@ or token@): Sluice would store and show them with the URL; " +
	"register the URL without them and give the token in a file: sluice repo add URL --git-token-file FILE (docs/security.md, \"Repository credentials\")"

// normalizeURL makes a local path absolute and checks that url parses.
func normalizeURL(url string) (string, error) {
	url = strings.TrimSpace(url)
	if url == "" {
		return "", fmt.Errorf("url: a repository path or URL is required: %w", apierror.ErrInvalidArgument)
	}
	if hasCredentials(url) {
		// The proto's rule says the same of the URL as sent; this is the
		// URL as it will be stored. The message does not repeat it.
		return "", fmt.Errorf("url: %s: %w", urlCredentialsRefusal, apierror.ErrInvalidArgument)
	}
	path, local, err := gitmirror.IsLocal(url)
	if err != nil {
		return "", fmt.Errorf("url %q: %w: %w", url, err, apierror.ErrInvalidArgument)
	}
	if !local || strings.HasPrefix(url, "file://") {
		return url, nil
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", fmt.Errorf("url %q: %w: %w", url, err, apierror.ErrInvalidArgument)
	}
	return abs, nil
}

// hasCredentials reports whether a URL carries a password, or any user
// information over HTTP(S) (where a token is often sent as the user).
func hasCredentials(raw string) bool {
	u, err := neturl.Parse(raw)
	if err != nil || u.User == nil {
		return false
	}
	if _, ok := u.User.Password(); ok {
		return true
	}
	scheme := strings.ToLower(u.Scheme)
	return scheme == "http" || scheme == "https"
}

func newSecret() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // crypto/rand.Read never fails
	return hex.EncodeToString(b)
}

// ListRepositories lists one page of the repositories in name order,
// without their webhook secrets, and the token of the page after ("" on
// the last).
func (s *Service) ListRepositories(ctx context.Context, page paging.Page) ([]domain.Repository, string, error) {
	only, limited := auth.Repositories(ctx)
	if !limited {
		only = nil
	}
	repos, err := s.store.ListRepositories(ctx, only, page)
	if err != nil {
		return nil, "", err
	}
	repos, next := paging.Cut(page, repos, func(r domain.Repository) paging.Cursor { return paging.Cursor{ID: r.Name} })
	for i := range repos {
		repos[i].WebhookSecret = ""
	}
	return repos, next, nil
}

// GetRepository finds a repository by name or id, without its secret.
func (s *Service) GetRepository(ctx context.Context, idOrName string) (domain.Repository, error) {
	repo, err := s.callersRepository(ctx, idOrName)
	repo.WebhookSecret = ""
	return repo, err
}

// callersRepository finds a repository by name or id for an API call and
// refuses it when the caller's token is limited to other repositories
// (the Guard checked the name the request gave; an id is checked here).
func (s *Service) callersRepository(ctx context.Context, idOrName string) (domain.Repository, error) {
	repo, err := s.store.Repository(ctx, idOrName)
	if err != nil {
		return domain.Repository{}, err
	}
	if err := auth.CheckRepository(ctx, repo.Name); err != nil {
		return domain.Repository{}, err
	}
	return repo, nil
}
