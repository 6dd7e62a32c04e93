package source

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/sluicehq/sluice/platform/apierror"
	"github.com/sluicehq/sluice/platform/auth"
	"github.com/sluicehq/sluice/platform/gitauth"
	"github.com/sluicehq/sluice/services/source/domain"
	"github.com/sluicehq/sluice/services/source/gitmirror"
)

// A repository's credential (an HTTPS token, or an SSH deploy key and
// known_hosts) is kept as its secrets under the reserved names of gitauth,
// encrypted like every secret. Source reads the repository with it; build,
// test and release get it from ResolveSecrets to check the run's commit
// out, learning from the events' RepositoryRef.git_credential whether
// there is one to ask for.

// repositoryCredential reads repo's credential from its secrets; the zero
// Credential when it has none.
func (s *Service) repositoryCredential(ctx context.Context, repo domain.Repository) (gitauth.Credential, error) {
	if repo.GitCredential == gitauth.None {
		return gitauth.Credential{}, nil
	}
	values := map[string]string{}
	for _, name := range repo.GitCredential.Names() {
		value, err := s.credentialValue(ctx, repo.ID, repo.Name, name)
		if err != nil {
			return gitauth.Credential{}, err
		}
		values[name] = value
	}
	cred, err := gitauth.FromSecrets(repo.GitCredential, values)
	if err != nil {
		return gitauth.Credential{}, fmt.Errorf("repository %q: %w: %w", repo.Name, err, apierror.ErrFailedPrecondition)
	}
	return cred, nil
}

// credentialValue is the value of the reserved secret name of a repository:
// its own secret only, never a platform-wide one. The username defaults to
// gitauth.DefaultUsername; another name that is not set is "".
func (s *Service) credentialValue(ctx context.Context, repositoryID, repository, name string) (string, error) {
	if s.keys == nil {
		return "", errNoSecretKey
	}
	sec, err := s.store.Secret(ctx, repositoryID, name)
	switch {
	case errors.Is(err, apierror.ErrNotFound) && name == gitauth.UsernameSecret:
		return gitauth.DefaultUsername, nil
	case errors.Is(err, apierror.ErrNotFound):
		return "", nil
	case err != nil:
		return "", err
	}
	value, err := s.keys.Open(sec.Ciphertext, repositoryID, name)
	if err != nil {
		return "", fmt.Errorf("repository %q: secret %s: %w", repository, name, err)
	}
	return value, nil
}

// resolveCredentialSecret is ResolveSecrets for a reserved name: a
// service checking out run's commit gets the part of the repository's
// credential it has (a pipeline's command may ask for it too).
func (s *Service) resolveCredentialSecret(ctx context.Context, run domain.Run, name string) (string, error) {
	if !slices.Contains(run.GitCredential.Names(), name) {
		return "", fmt.Errorf("%s is part of a repository's %s credential, and repository %q has none: %w",
			name, credentialKindOf(name), run.Repository, apierror.ErrFailedPrecondition)
	}
	value, err := s.credentialValue(ctx, run.RepositoryID, run.Repository, name)
	if err == nil && value == "" {
		err = fmt.Errorf("repository %q has no secret %s: %w", run.Repository, name, apierror.ErrFailedPrecondition)
	}
	return value, err
}

func credentialKindOf(name string) gitauth.Kind {
	if slices.Contains(gitauth.SSHKey.Names(), name) {
		return gitauth.SSHKey
	}
	return gitauth.HTTPSToken
}

// checkCredentialSecret refuses a value of a reserved name that could not
// be used as that part of a credential (gitauth.Check). The rules of
// SetSecretRequest refuse the rest: a reserved name set platform-wide, a
// token or a username of other characters or length.
func checkCredentialSecret(name, value string) error {
	if err := gitauth.Check(name, value); err != nil {
		return fmt.Errorf("value: %w: %w", err, apierror.ErrInvalidArgument)
	}
	return nil
}

// checkTokenURL refuses a token for a repository read over plain http://
// from another machine (gitauth.PlainHTTP): anyone on the network path
// could read it.
func checkTokenURL(repo domain.Repository, name string) error {
	if name != gitauth.TokenSecret {
		return nil
	}
	if err := gitauth.PlainHTTP(repo.URL); err != nil {
		return fmt.Errorf("name: %s: repository %q is read over plain http://: %w: %w", name, repo.Name, err, apierror.ErrFailedPrecondition)
	}
	return nil
}

// checkNewCredential refuses a credential given with a new repository that
// does not fit its URL (a token for an http:// URL to another machine
// included: gitauth.PlainHTTP) or could not be used.
func checkNewCredential(url string, cred gitauth.Credential) error {
	if cred.Kind() == gitauth.None {
		return nil
	}
	if _, local, _ := gitmirror.IsLocal(url); local {
		return fmt.Errorf("git_credential: a local repository needs no credential: %w", apierror.ErrInvalidArgument)
	}
	for name, value := range cred.Values() {
		if err := gitauth.Check(name, value); err != nil {
			return fmt.Errorf("git_credential: %w: %w", err, apierror.ErrInvalidArgument)
		}
	}
	if _, err := cred.Auth(url); err != nil {
		return fmt.Errorf("git_credential: %w: %w", err, apierror.ErrInvalidArgument)
	}
	return nil
}

// sealCredential encrypts values (secret name to value) as the secrets of
// the new repository id.
func (s *Service) sealCredential(ctx context.Context, id string, values map[string]string) ([]domain.Secret, error) {
	caller, _ := auth.FromContext(ctx)
	now := time.Now()
	var out []domain.Secret
	for name, value := range values {
		ciphertext, err := s.keys.Seal(value, id, name)
		if err != nil {
			return nil, err
		}
		out = append(out, domain.Secret{RepositoryID: id, Name: name, Ciphertext: ciphertext, KeyID: s.keys.KeyID(), UpdatedAt: now, UpdatedBy: caller.String()})
	}
	return out, nil
}
