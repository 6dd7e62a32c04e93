package source

import (
	"context"
	"fmt"

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
		return domain.Repository{}, fmt.Errorf("repository %q: webhook secret: %w", repo.Name, err)
	}
	repo.WebhookSecret = secret
	return repo, nil
}
