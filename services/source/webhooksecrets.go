package source

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/sluicehq/sluice/platform/apierror"
	"github.com/sluicehq/sluice/platform/keyring"
	"github.com/sluicehq/sluice/services/source/domain"
)

// A webhook secret is an HMAC key: source must read it back to check a
// signature, so it is kept encrypted with the key ring (its text form,
// keyring.Ring.SealText) rather than hashed. Without a key ring source
// keeps it as given (and says so at start); once it has one, it encrypts
// at start what it kept plainly.
var webhookSecrets = keyring.Column{Table: "repositories", ID: "id", Value: "webhook_secret", Binding: "webhook-secret", What: "webhook secrets"}

// reencryptWebhookSecrets encrypts with the first key every webhook secret
// kept plainly or under an older key.
func (s *Service) reencryptWebhookSecrets(ctx context.Context) {
	s.keys.RenewColumn(ctx, s.store.db, webhookSecrets, s.log)
}

// withWebhookSecret is repo with its webhook secret readable.
func (s *Service) withWebhookSecret(repo domain.Repository) (domain.Repository, error) {
	secret, err := s.keys.OpenText(repo.WebhookSecret, webhookSecrets.Binding, repo.ID)
	if err != nil {
		// The caller is not authenticated yet: it learns only that the
		// webhook could not be handled; the operator reads why in the log.
		s.log.Error("cannot read a repository's webhook secret; its webhooks are refused until the key ring is mended",
			slog.String("repository", repo.Name), slog.Any("error", err))
		return domain.Repository{}, fmt.Errorf("repository %q: its webhooks cannot be checked now: %w", repo.Name, apierror.ErrUnavailable)
	}
	repo.WebhookSecret = secret
	return repo, nil
}
