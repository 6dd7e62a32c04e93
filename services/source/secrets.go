package source

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/sluicehq/sluice/platform/apierror"
	"github.com/sluicehq/sluice/platform/auth"
	"github.com/sluicehq/sluice/platform/forge"
	"github.com/sluicehq/sluice/platform/gitauth"
	"github.com/sluicehq/sluice/platform/stepsecrets"
	sourcev1 "github.com/sluicehq/sluice/proto/gen/sluice/source/v1"
	"github.com/sluicehq/sluice/services/source/domain"
)

// errNoSecretKey: source was started without a key.
var errNoSecretKey = fmt.Errorf("source has no secret key, so it keeps no secrets: start it with secret-key-file or $SLUICE_SOURCE_SECRET_KEY (docs/security.md): %w", apierror.ErrFailedPrecondition)

// secretScope is the repository id a secret request names: "" for the
// platform.
func (s *Service) secretScope(ctx context.Context, repository string) (domain.Repository, error) {
	if repository == "" {
		return domain.Repository{}, nil
	}
	return s.store.RepositoryByName(ctx, repository)
}

// SetSecret stores value as the secret name of repository ("" for the
// platform), encrypted. Its log names the secret, never the value.
func (s *Service) SetSecret(ctx context.Context, repository, name, value string) (domain.Secret, error) {
	if s.keys == nil {
		return domain.Secret{}, errNoSecretKey
	}
	if err := checkCredentialSecret(name, value); err != nil {
		return domain.Secret{}, err
	}
	repo, err := s.secretScope(ctx, repository)
	if err != nil {
		return domain.Secret{}, err
	}
	if err := checkTokenURL(repo, name); err != nil {
		return domain.Secret{}, err
	}
	ciphertext, err := s.keys.Seal(value, repo.ID, name)
	if err != nil {
		return domain.Secret{}, err
	}
	caller, _ := auth.FromContext(ctx)
	sec, err := s.store.PutSecret(ctx, domain.Secret{
		RepositoryID: repo.ID, Repository: repo.Name, Name: name, Ciphertext: ciphertext, KeyID: s.keys.KeyID(),
		UpdatedAt: time.Now(), UpdatedBy: caller.String(),
	})
	if err != nil {
		return domain.Secret{}, err
	}
	if gitauth.Reserved(name) {
		s.refusals.forget(repo.ID)
	}
	s.log.InfoContext(ctx, "secret set", slog.String("repository", repository), slog.String("secret", name), slog.String("by", caller.String()))
	return sec, nil
}

// ListSecrets lists the secrets of repository ("" for the platform).
func (s *Service) ListSecrets(ctx context.Context, repository string) ([]domain.Secret, error) {
	repo, err := s.secretScope(ctx, repository)
	if err != nil {
		return nil, err
	}
	return s.store.Secrets(ctx, repo.ID)
}

// DeleteSecret removes a secret; runs that ask for it afterwards fail.
func (s *Service) DeleteSecret(ctx context.Context, repository, name string) (domain.Secret, error) {
	repo, err := s.secretScope(ctx, repository)
	if err != nil {
		return domain.Secret{}, err
	}
	sec, err := s.store.Secret(ctx, repo.ID, name)
	if err != nil {
		return domain.Secret{}, err
	}
	if err := s.store.DeleteSecret(ctx, repo.ID, name); err != nil {
		return domain.Secret{}, err
	}
	if gitauth.Reserved(name) {
		s.refusals.forget(repo.ID)
	}
	caller, _ := auth.FromContext(ctx)
	s.log.InfoContext(ctx, "secret deleted", slog.String("repository", repository), slog.String("secret", name), slog.String("by", caller.String()))
	return sec, nil
}

// withheldFromPullRequest says why run, a pull request's, gets no secrets
// for its commands: its head is in a fork, or the repository does not let
// pull requests have them. "" for every other run.
func (s *Service) withheldFromPullRequest(ctx context.Context, run domain.Run) (string, error) {
	if run.PullRequest == 0 {
		return "", nil
	}
	if run.PullRequestFromFork {
		return fmt.Sprintf("is of pull request #%d from a fork", run.PullRequest), nil
	}
	repo, err := s.store.Repository(ctx, run.RepositoryID)
	if err != nil {
		return "", err
	}
	if !repo.PullRequestSecrets {
		return fmt.Sprintf("is of pull request #%d and repository %q does not let pull requests have secrets (sluice repo add --pull-request-secrets)", run.PullRequest, run.Repository), nil
	}
	return "", nil
}

// forgeTokenServices may ask for a run's repository's forge token
// (forge.TokenSecret) without its pipeline asking for it: notify sets the
// run's commit statuses.
var forgeTokenServices = []string{"notify"}

// ResolveSecrets returns the values of the secrets names, for a service
// running a command of runID: each name must be one the run's pipeline asks
// for, or a reserved name of the run's repository's credential (gitauth),
// which the service checks the commit out with. A repository's secret
// hides a platform-wide one of the same name; a credential is the
// repository's own.
func (s *Service) ResolveSecrets(ctx context.Context, runID string, names []string) (map[string]string, error) {
	if s.keys == nil {
		return nil, errNoSecretKey
	}
	run, err := s.store.Run(ctx, runID)
	if err != nil {
		return nil, err
	}
	caller, _ := auth.FromContext(ctx)
	asked := StageSecrets(run.Pipeline, caller.Name)
	withheld, err := s.withheldFromPullRequest(ctx, run)
	if err != nil {
		return nil, err
	}
	values := make(map[string]string, len(names))
	var errs []error
	for _, name := range names {
		if withheld != "" && slices.Contains(asked, name) {
			// The commands of this run get no secret, not even the
			// repository's credential; the service may still check the
			// commit out with it.
			errs = append(errs, fmt.Errorf("run %s %s, so its commands get no secrets (%s): %w", runID, withheld, name, apierror.ErrPermissionDenied))
			continue
		}
		if name == forge.TokenSecret && slices.Contains(forgeTokenServices, caller.Name) {
			value, err := s.credentialValue(ctx, run.RepositoryID, run.Repository, name)
			if err == nil && value == "" {
				err = fmt.Errorf("repository %q has no forge token: sluice secret set %s %s --from-file FILE: %w",
					run.Repository, run.Repository, forge.TokenSecret, apierror.ErrFailedPrecondition)
			}
			if err != nil {
				errs = append(errs, err)
				continue
			}
			values[name] = value
			continue
		}
		if gitauth.Reserved(name) {
			value, err := s.resolveCredentialSecret(ctx, run, name)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			values[name] = value
			continue
		}
		if !slices.Contains(asked, name) {
			errs = append(errs, fmt.Errorf("run %s's pipeline does not ask for the secret %q in the commands the %s service runs: %w", runID, name, caller.Name, apierror.ErrPermissionDenied))
			continue
		}
		value, err := s.secretValue(ctx, run, name)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		values[name] = value
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	s.log.InfoContext(ctx, "secrets handed out", slog.String("run", runID), slog.Any("secrets", names), slog.String("to", caller.String()))
	return values, nil
}

func (s *Service) secretValue(ctx context.Context, run domain.Run, name string) (string, error) {
	for _, scope := range []string{run.RepositoryID, ""} {
		sec, err := s.store.Secret(ctx, scope, name)
		if errors.Is(err, apierror.ErrNotFound) {
			continue
		}
		if err != nil {
			return "", err
		}
		value, err := s.keys.Open(sec.Ciphertext, scope, name)
		if err != nil {
			return "", fmt.Errorf("secret %s: %w", name, err)
		}
		return value, nil
	}
	return "", fmt.Errorf("the secret %q is set neither for repository %q nor platform-wide: `sluice secret set %s %s`: %w",
		name, run.Repository, run.Repository, name, apierror.ErrFailedPrecondition)
}

// StageSecrets lists the secret names the commands a service runs ask
// for, sorted, without repeats: build's steps for build, the test steps for
// test, the environments' deploy and verify commands for release. A service
// gets no secret another stage's commands ask for.
func StageSecrets(p *sourcev1.Pipeline, service string) []string {
	var refs []map[string]string
	switch service {
	case "build":
		for _, st := range p.GetBuild().GetSteps() {
			refs = append(refs, st.GetSecrets())
		}
	case "test":
		for _, st := range p.GetTest().GetSteps() {
			refs = append(refs, st.GetSecrets())
		}
	case "release":
		for _, env := range p.GetRelease().GetEnvironments() {
			refs = append(refs, env.GetSecrets())
		}
	}
	return stepsecrets.Names(refs...)
}

// ReencryptSecrets re-encrypts, once at start, every secret (and webhook
// secret) an older key of the ring encrypted, or that was kept before
// there was a key, with the first key: the second half of a key
// rotation (docs/security.md). A secret no key of the ring can read is
// logged and left as it is.
func (s *Service) ReencryptSecrets(ctx context.Context) error {
	s.reencryptWebhookSecrets(ctx)
	if s.keys == nil {
		return nil
	}
	old, err := s.store.SecretsNotUnder(ctx, s.keys.KeyID())
	if err != nil {
		// Secrets stay readable under the older keys; the next start tries
		// again. A failure here must not stop source.
		s.log.ErrorContext(ctx, "cannot list the secrets to re-encrypt", slog.Any("error", err))
		return nil
	}
	done, failed := 0, 0
	for _, sec := range old {
		ok, err := s.reencrypt(ctx, sec)
		switch {
		case err != nil:
			failed++
			s.log.ErrorContext(ctx, "cannot re-encrypt a secret", slog.String("repository", sec.Repository), slog.String("secret", sec.Name), slog.Any("error", err))
		case ok:
			done++
		}
	}
	if len(old) > 0 {
		s.log.InfoContext(ctx, "secrets re-encrypted with the first key", slog.Int("secrets", done), slog.Int("failed", failed), slog.String("key", s.keys.KeyID()))
	}
	return nil
}

// reencrypt encrypts sec again with the first key, unless it changed since
// it was read (it was set again meanwhile, maybe by another replica).
func (s *Service) reencrypt(ctx context.Context, sec domain.Secret) (bool, error) {
	value, err := s.keys.Open(sec.Ciphertext, sec.RepositoryID, sec.Name)
	if err != nil {
		return false, err
	}
	renewed := sec
	if renewed.Ciphertext, err = s.keys.Seal(value, sec.RepositoryID, sec.Name); err != nil {
		return false, err
	}
	renewed.KeyID = s.keys.KeyID()
	return s.store.Rekey(ctx, renewed, sec)
}
