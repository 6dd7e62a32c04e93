package notify

import (
	"context"
	"fmt"
	"time"

	"github.com/sluicehq/sluice/platform/apierror"
	"github.com/sluicehq/sluice/platform/ids"
	"github.com/sluicehq/sluice/platform/keyring"
	"github.com/sluicehq/sluice/platform/paging"
	"github.com/sluicehq/sluice/services/notify/domain"
)

// CreateSubscription validates and stores a new subscription (its ID and
// CreatedAt are set here).
func (s *Service) CreateSubscription(ctx context.Context, sub domain.Subscription) (domain.Subscription, error) {
	if err := sub.Validate(); err != nil {
		return domain.Subscription{}, err
	}
	sub.ID = ids.New()
	sub.CreatedAt = time.Now().UTC()
	row := sub
	var err error
	if row.Secret, err = s.keys.SealText(sub.Secret, subscriptionSecrets.Binding, sub.ID); err != nil {
		return domain.Subscription{}, err
	}
	if err := s.store.CreateSubscription(ctx, row); err != nil {
		return domain.Subscription{}, err
	}
	return sub, nil
}

// subscriptionSecrets are where notify keeps the signing secrets, sealed
// when it has a key ring.
var subscriptionSecrets = keyring.Column{Table: "subscriptions", ID: "id", Value: "secret", Binding: "subscription-secret", What: "subscription secrets"}

// ReencryptSecrets encrypts with the first key, once at start, every
// subscription secret kept as given or under an older key.
func (s *Service) ReencryptSecrets(ctx context.Context) error {
	s.keys.RenewColumn(ctx, s.store.db, subscriptionSecrets, s.log)
	return nil
}

// ListSubscriptions lists one page of the subscriptions, oldest first, and
// the token of the page after ("" on the last).
func (s *Service) ListSubscriptions(ctx context.Context, page paging.Page) ([]domain.Subscription, string, error) {
	subs, err := s.store.ListSubscriptions(ctx, ScopeOf(ctx), page)
	if err != nil {
		return nil, "", err
	}
	subs, next := paging.Cut(page, subs, func(sub domain.Subscription) paging.Cursor {
		return paging.Cursor{Time: sub.CreatedAt.UnixNano(), ID: sub.ID}
	})
	return subs, next, nil
}

// DeleteSubscription deletes a subscription; its pending deliveries are
// dropped.
func (s *Service) DeleteSubscription(ctx context.Context, id string) error {
	if scope := ScopeOf(ctx); scope.Limited {
		sub, err := s.store.Subscription(ctx, id)
		if err != nil {
			return err
		}
		if !scope.Allows(sub.Repository) {
			// As if it did not exist: a limited caller does not see it.
			return fmt.Errorf("subscription %q: %w", id, apierror.ErrNotFound)
		}
	}
	return s.store.DeleteSubscription(ctx, id)
}
