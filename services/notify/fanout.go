package notify

import (
	"context"
	"fmt"
	"time"

	"github.com/sluicehq/sluice/platform/events"
	"github.com/sluicehq/sluice/platform/ids"
	"github.com/sluicehq/sluice/services/notify/domain"
)

// deliveryHeaders are the NATS headers of an event that a delivery
// forwards as HTTP headers: the CloudEvents attributes (binary mode names
// them the same in both bindings), the chainid extension, and the trace.
func deliveryHeaders() []string {
	return []string{
		events.HeaderID, events.HeaderType, events.HeaderSource, events.HeaderSubject, events.HeaderTime,
		events.HeaderSpecVersion, events.HeaderChainID, events.HeaderTraceparent,
	}
}

// forgeWork is what an event asks of a forge besides its deliveries: a
// commit status to set (CommitStatusChanged) or a release to make
// (ForgeReleaseRequested); nil for none.
type forgeWork struct {
	status  *domain.ForgeStatus
	release *domain.ForgeRelease
}

// FanOut turns an event that consumer received into one pending delivery
// per subscription that wants it. In one transaction it marks the event
// processed, creates its deliveries and queues its forge work, so a
// redelivered or republished event creates none; then it wakes the loops
// that have work.
func (s *Service) FanOut(ctx context.Context, consumer string, ev events.Event) error {
	// Subscribers get the message exactly as it was on NATS.
	msg := ev.Received
	if msg == nil {
		var err error
		if msg, err = ev.Msg(); err != nil {
			return fmt.Errorf("%w: encode event %s: %w", events.ErrPermanent, ev.ID, err)
		}
	}
	headers := map[string]string{}
	for _, name := range deliveryHeaders() {
		if v := msg.Header.Get(name); v != "" {
			headers[name] = v
		}
	}
	work := forgeWork{status: forgeStatusOf(ev), release: forgeReleaseOf(ev)}
	n, err := s.store.FanOut(ctx, consumer, domain.Delivery{
		EventID:    ev.ID,
		EventType:  ev.Kind.Type,
		Subject:    ev.SubjectID,
		Repository: repositoryOf(ev.Payload),
		ChainID:    ev.ChainID,
		Headers:    headers,
		Body:       msg.Data,
	}, work, time.Now(), ids.New)
	if err != nil {
		return err
	}
	if n > 0 {
		s.deliveries.Wake()
	}
	if work.status != nil {
		s.statuses.Wake()
	}
	if work.release != nil {
		s.releases.Wake()
	}
	return nil
}
