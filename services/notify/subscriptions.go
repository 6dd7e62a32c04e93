package notify

import (
	"context"
	"time"

	"github.com/sluicehq/sluice/platform/ids"
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
	if err := s.store.CreateSubscription(ctx, sub); err != nil {
		return domain.Subscription{}, err
	}
	return sub, nil
}

// ListSubscriptions lists one page of the subscriptions, oldest first, and
// the token of the page after ("" on the last).
func (s *Service) ListSubscriptions(ctx context.Context, page paging.Page) ([]domain.Subscription, string, error) {
	subs, err := s.store.ListSubscriptions(ctx, page)
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
	return s.store.DeleteSubscription(ctx, id)
}
