package notify

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicehq/sluice/platform/apierror"
	"github.com/sluicehq/sluice/platform/events"
	"github.com/sluicehq/sluice/services/notify/domain"
)

// watchResetAttempts is how often a watch's ordered consumer may be
// recreated in a row (NATS restarting, say) before the watch ends with an
// error the client can retry on.
const watchResetAttempts = 10

// WatchedEvent is an event as Watch sees it.
type WatchedEvent struct {
	Event events.Event
	// Source is the CloudEvents source.
	Source string
	// NATSSubject is the subject it was published on.
	NATSSubject string
	// Data is the CDEvent JSON as published.
	Data []byte
}

// Watch calls send with every event published from now on whose subject
// matches filter (a NATS subject filter; "" is every event), until ctx
// ends (it then returns nil) or send fails. It reads each stream the
// filter can match with an ordered consumer, which it deletes at the end.
// It calls watching once the consumers exist: from then on no event is
// missed.
func (s *Service) Watch(ctx context.Context, filter string, watching func() error, send func(WatchedEvent) error) error {
	targets, err := domain.WatchTargets(filter)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	msgs := make(chan jetstream.Msg)
	failed := make(chan error, len(targets))
	var (
		wg      sync.WaitGroup
		readers []watchReader
	)
	defer func() {
		cancel()
		for _, r := range readers {
			r.iter.Stop()
		}
		wg.Wait()
		s.deleteConsumers(context.WithoutCancel(ctx), readers)
	}()
	for _, t := range targets {
		cons, err := s.js.OrderedConsumer(ctx, t.Stream, jetstream.OrderedConsumerConfig{
			FilterSubjects:   []string{t.Filter},
			DeliverPolicy:    jetstream.DeliverNewPolicy,
			MaxResetAttempts: watchResetAttempts,
		})
		if err != nil {
			if errors.Is(err, jetstream.ErrStreamNotFound) {
				return fmt.Errorf("stream %s is not provisioned yet; retry shortly: %w", t.Stream, apierror.ErrUnavailable)
			}
			return fmt.Errorf("watch stream %s: %w", t.Stream, err)
		}
		iter, err := cons.Messages()
		if err != nil {
			return fmt.Errorf("watch stream %s: %w", t.Stream, err)
		}
		readers = append(readers, watchReader{stream: t.Stream, cons: cons, iter: iter})
		read := func() {
			for {
				m, err := iter.Next()
				if err != nil {
					if !errors.Is(err, jetstream.ErrMsgIteratorClosed) {
						failed <- fmt.Errorf("watch stream %s: %w", t.Stream, err)
					}
					return
				}
				select {
				case msgs <- m:
				case <-ctx.Done():
					return
				}
			}
		}
		wg.Go(func() {
			// Not the request's goroutine, so Connect's recover does not
			// see it: a panic ends this watch, not the process.
			if s.sup.Guard("watch reader", read) {
				failed <- fmt.Errorf("watch stream %s: the reader panicked; the service log has the details", t.Stream)
			}
		})
	}
	if err := watching(); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-failed:
			return err
		case m := <-msgs:
			ev, err := events.Decode(m.Subject(), m.Headers(), m.Data())
			if err != nil {
				s.log.Warn("watch: skipping an event that does not decode", slog.String("subject", m.Subject()), slog.Any("error", err))
				continue
			}
			source := m.Headers().Get(events.HeaderSource)
			if source == "" {
				source = events.Source(ev.Kind.Service)
			}
			if err := send(WatchedEvent{Event: ev, Source: source, NATSSubject: m.Subject(), Data: m.Data()}); err != nil {
				if ctx.Err() != nil {
					return nil
				}
				return err
			}
		}
	}
}

type watchReader struct {
	stream string
	cons   jetstream.Consumer
	iter   jetstream.MessagesContext
}

// deleteConsumers removes the watch's ordered consumers now rather than
// leaving them to the server's inactivity threshold.
func (s *Service) deleteConsumers(ctx context.Context, readers []watchReader) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	var names []string
	for _, r := range readers {
		info := r.cons.CachedInfo()
		if info == nil {
			continue
		}
		if err := s.js.DeleteConsumer(ctx, r.stream, info.Name); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
			names = append(names, r.stream+"/"+info.Name)
		}
	}
	if len(names) > 0 {
		s.log.Debug("watch: ordered consumers left to expire", slog.String("consumers", strings.Join(names, ", ")))
	}
}
