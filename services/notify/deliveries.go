package notify

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"time"

	"github.com/sluicehq/sluice/platform/egress"
	"github.com/sluicehq/sluice/platform/events"
	"github.com/sluicehq/sluice/platform/paging"
	"github.com/sluicehq/sluice/services/notify/domain"
)

// The deliveries: the loop that POSTs due deliveries to their subscribers,
// records every attempt, schedules retries and publishes the outcome
// (DeliverySucceeded or DeliveryFailed) through the outbox; and the query
// that lists them.
//
// A subscription's URL is posted to through the service's egress policy
// (the allow-egress setting): an address it refuses (loopback, private,
// link-local, ... unless allowed) fails the attempt with the refusal as
// its error, checked on every attempt at dial time. An attempt's error is
// what ListDeliveries tells the subscriber's owner: brief (egress.Brief),
// and never the response's body.

// HTTP headers of a delivery besides the CloudEvents ones.
const (
	// HeaderSignature is "sha256=" and the hex HMAC-SHA256 of the body
	// keyed by the subscription's secret (see domain.Sign).
	HeaderSignature = "X-Sluice-Signature-256"
	// HeaderDelivery is the delivery id; it is the same on every attempt,
	// so a subscriber can drop repeats.
	HeaderDelivery = "X-Sluice-Delivery"
)

const (
	// leaseMargin is how long past its attempt timeout a taken delivery
	// (or commit status, or release) stays leased; one whose worker died
	// is taken again after it.
	leaseMargin = 30 * time.Second
	// recordTimeout bounds writing an attempt's outcome.
	recordTimeout = 10 * time.Second
)

// leaseEnd is when a lease taken at now lapses.
func (s *Service) leaseEnd(now time.Time) time.Time {
	return now.Add(s.cfg.AttemptTimeout + leaseMargin)
}

// deliveryQueue is the deliveries' table as the delivery loop's queue.
type deliveryQueue struct{ s *Service }

func (q deliveryQueue) Claim(ctx context.Context, now time.Time, limit int) ([]Claimed, error) {
	return q.s.store.Claim(ctx, now, q.s.leaseEnd(now), limit)
}

func (q deliveryQueue) NextDue(ctx context.Context) (time.Time, error) { return q.s.store.NextDue(ctx) }

func (q deliveryQueue) Attempt(ctx context.Context, log *slog.Logger, c Claimed) {
	q.s.attempt(ctx, log, c)
}

// Deliver attempts due deliveries, up to Config.Workers at once, until ctx
// ends; attempts under way then finish (each within AttemptTimeout) so
// their outcome is recorded.
func (s *Service) Deliver(ctx context.Context) error {
	defer s.client.CloseIdleConnections()
	return s.deliveries.Run(ctx)
}

// attempt POSTs c once and records the outcome. It outlives ctx (bounded by
// the attempt and record timeouts) so that a stop does not lose an attempt
// the subscriber may have seen.
func (s *Service) attempt(ctx context.Context, log *slog.Logger, c Claimed) {
	d := c.Delivery
	log = log.With(slog.String("delivery_id", d.ID), slog.String("subscription_id", d.SubscriptionID),
		slog.String("event_id", d.EventID), slog.String("run_id", d.ChainID), slog.Int("attempt", d.AttemptCount+1))
	secret, err := s.keys.OpenText(c.Secret, subscriptionSecrets.Binding, d.SubscriptionID)
	if err != nil {
		// The operator must mend the key ring: no attempt is counted, and
		// the delivery is offered again when its lease ends, so no event is
		// lost meanwhile.
		log.Error("cannot read the subscription's signing secret; the delivery waits", slog.Any("error", err))
		return
	}
	c.Secret = secret
	detached := context.WithoutCancel(ctx)
	actx, cancel := context.WithTimeout(detached, s.cfg.AttemptTimeout)
	a := s.post(actx, c, d.AttemptCount+1)
	cancel()

	o, err := s.outcome(d, a)
	if err != nil {
		log.Error("delivery outcome event invalid; the delivery is tried again when its lease ends", slog.Any("error", err))
		return
	}
	rctx, cancel := context.WithTimeout(detached, recordTimeout)
	defer cancel()
	changed, err := s.store.RecordAttempt(rctx, d.ID, a, o)
	if err != nil {
		log.Error("recording a delivery attempt failed; the delivery is tried again when its lease ends", slog.Any("error", err))
		return
	}
	if !changed {
		log.Info("delivery attempt recorded; the delivery had been dropped meanwhile", slog.Int("http_status", a.HTTPStatus))
		return
	}
	if o.Event != nil {
		s.outbox.Kick()
	}
	switch o.Status {
	case domain.StatusSucceeded:
		log.Info("event delivered", slog.Int("http_status", a.HTTPStatus), slog.Duration("took", a.Duration))
	case domain.StatusDead:
		log.Warn("delivery dead-lettered: every attempt failed", slog.String("last_error", a.Error))
	default:
		log.Info("delivery attempt failed; will retry", slog.String("error", a.Error),
			slog.Duration("in", time.Until(o.NextAttemptAt).Round(time.Millisecond)))
	}
}

// post sends the delivery as a CloudEvent in HTTP binary mode.
func (s *Service) post(ctx context.Context, c Claimed, number int) domain.Attempt {
	d := c.Delivery
	start := time.Now()
	a := domain.Attempt{Number: number, Time: start}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.URL, bytes.NewReader(d.Body))
	if err != nil {
		a.Error = fmt.Sprintf("build request: %v", egress.Brief(err))
		return a
	}
	for name, value := range d.Headers {
		req.Header.Set(name, value)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(HeaderSignature, domain.Sign(d.Body, c.Secret))
	req.Header.Set(HeaderDelivery, d.ID)
	req.Header.Set("User-Agent", "Sluice-Notify/"+s.version)

	resp, err := s.client.Do(req)
	if err != nil {
		a.Duration = time.Since(start)
		a.Error = describeTransportError(err, s.cfg.AttemptTimeout)
		return a
	}
	defer resp.Body.Close()
	// Read (a bounded amount of) the body so the connection can be reused;
	// none of it is kept.
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	a.Duration = time.Since(start)
	a.HTTPStatus = resp.StatusCode
	if !a.Succeeded() {
		a.Error = fmt.Sprintf("subscriber answered %d %s", resp.StatusCode, http.StatusText(resp.StatusCode))
	}
	return a
}

func describeTransportError(err error, timeout time.Duration) string {
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Sprintf("no response within %v", timeout)
	}
	return egress.Brief(err).Error()
}

// outcome decides what attempt a of d leads to.
func (s *Service) outcome(d domain.Delivery, a domain.Attempt) (Outcome, error) {
	switch {
	case a.Succeeded():
		ev, err := events.New(deliverySucceededToProto(d, a), d.ID, d.ChainID)
		return Outcome{Status: domain.StatusSucceeded, Event: &ev}, err
	case s.retry.Exhausted(a.Number):
		ev, err := events.New(deliveryFailedToProto(d, a), d.ID, d.ChainID)
		return Outcome{Status: domain.StatusDead, Event: &ev}, err
	default:
		return Outcome{
			Status:        domain.StatusPending,
			NextAttemptAt: time.Now().Add(s.retry.After(a.Number)),
		}, nil
	}
}

// ListDeliveries lists one page of deliveries with their attempts, newest
// first (of one subscription, of one run's events, or both, as filter
// says), and the token of the page after ("" on the last).
func (s *Service) ListDeliveries(ctx context.Context, filter DeliveryFilter, page paging.Page) ([]domain.Delivery, string, error) {
	list, err := s.store.ListDeliveries(ctx, filter, page)
	if err != nil {
		return nil, "", err
	}
	list, next := paging.Cut(page, list, func(d domain.Delivery) paging.Cursor {
		return paging.Cursor{Time: d.CreatedAt.UnixNano(), ID: d.ID}
	})
	return list, next, nil
}
