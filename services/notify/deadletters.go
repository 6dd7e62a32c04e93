package notify

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicehq/sluice/platform/apierror"
	"github.com/sluicehq/sluice/platform/cut"
	"github.com/sluicehq/sluice/platform/events"
	"github.com/sluicehq/sluice/platform/natsprovision"
	"github.com/sluicehq/sluice/platform/paging"
	"github.com/sluicehq/sluice/services/notify/domain"
)

// MaxDeadLetterBody bounds each body a list of dead letters carries: a
// longer one keeps its start and ends in a mark (platform/cut), so a page
// of 1000 is at most about 64 MiB however large the events were.
const MaxDeadLetterBody = 64 << 10

// maxReason and maxHeader bound the other fields of a listed dead letter
// (the reason a service writes is at most 2 KiB).
const (
	maxReason = 4 << 10
	maxHeader = 512
)

// ListDeadLetters lists the dead letters f keeps, oldest first (stream
// order), a page at a time; the page token is the sequence of the page's
// last one. Bodies are read only when withBody: then it reads the
// DEADLETTER stream with direct gets, one message at a time, so it holds
// one body at a time and needs no consumer. Without bodies it reads the
// page's headers alone through a headers-only ordered consumer (a direct
// get always carries the body), deleted once read.
func (s *Service) ListDeadLetters(ctx context.Context, f domain.DeadLetterFilter, page paging.Page, withBody bool) ([]domain.DeadLetter, string, error) {
	next := uint64(1)
	if page.After != nil {
		seq, err := strconv.ParseUint(page.After.ID, 10, 64)
		if err != nil || seq == 0 {
			return nil, "", fmt.Errorf("%w: page_token is not a token of this list (pass the next_page_token of the page before, or none)", apierror.ErrInvalidArgument)
		}
		next = seq + 1
	}
	stream, err := s.js.Stream(ctx, natsprovision.DeadLetterStream)
	if err != nil {
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			return nil, "", fmt.Errorf("stream %s is not provisioned yet; retry shortly: %w", natsprovision.DeadLetterStream, apierror.ErrUnavailable)
		}
		return nil, "", fmt.Errorf("read stream %s: %w", natsprovision.DeadLetterStream, err)
	}
	subject := f.Subject()
	var list []domain.DeadLetter
	if !withBody {
		list, err = s.deadLetterHeaders(ctx, stream, subject, next, page.Limit())
		if err != nil {
			return nil, "", err
		}
	}
	for withBody && len(list) < page.Limit() {
		m, err := stream.GetMsg(ctx, next, jetstream.WithGetMsgSubject(subject))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			break
		}
		if err != nil {
			return nil, "", fmt.Errorf("read stream %s at %d: %w", natsprovision.DeadLetterStream, next, err)
		}
		d := deadLetterOf(m.Subject, m.Sequence, m.Time, m.Header, len(m.Data))
		d.Body = bodyOf(m.Data)
		list = append(list, d)
		next = m.Sequence + 1
	}
	list, token := paging.Cut(page, list, func(d domain.DeadLetter) paging.Cursor {
		return paging.Cursor{ID: strconv.FormatUint(d.Sequence, 10)}
	})
	return list, token, nil
}

// deadLetterHeaders reads up to n dead letters on subject from sequence
// next on, without their bodies: an ordered consumer that delivers headers
// only (the server adds each body's size), pulled once for what the
// stream holds now.
func (s *Service) deadLetterHeaders(ctx context.Context, stream jetstream.Stream, subject string, next uint64, n int) ([]domain.DeadLetter, error) {
	cons, err := stream.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{subject},
		DeliverPolicy:  jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:    next,
		HeadersOnly:    true,
	})
	if err != nil {
		return nil, fmt.Errorf("read stream %s from %d: %w", natsprovision.DeadLetterStream, next, err)
	}
	defer s.deleteConsumers(context.WithoutCancel(ctx), []watchReader{{stream: natsprovision.DeadLetterStream, cons: cons}})
	batch, err := cons.FetchNoWait(n)
	if err != nil {
		return nil, fmt.Errorf("read stream %s from %d: %w", natsprovision.DeadLetterStream, next, err)
	}
	var list []domain.DeadLetter
	for m := range batch.Messages() {
		meta, err := m.Metadata()
		if err != nil {
			return nil, fmt.Errorf("read stream %s from %d: %w", natsprovision.DeadLetterStream, next, err)
		}
		size, err := strconv.Atoi(m.Headers().Get(nats.MsgSize))
		if err != nil {
			return nil, fmt.Errorf("read stream %s at %d: no body size: %w", natsprovision.DeadLetterStream, meta.Sequence.Stream, err)
		}
		list = append(list, deadLetterOf(m.Subject(), meta.Sequence.Stream, meta.Timestamp, m.Headers(), size))
	}
	if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) {
		return nil, fmt.Errorf("read stream %s from %d: %w", natsprovision.DeadLetterStream, next, err)
	}
	return list, nil
}

// deadLetterOf is a stored dead letter, the message at seq on subject
// stored at t with header and a body of size bytes, without its body.
func deadLetterOf(subject string, seq uint64, t time.Time, header nats.Header, size int) domain.DeadLetter {
	service, consumer, _ := domain.DeadLetterOrigin(subject)
	// Headers are whatever was published: make each valid UTF-8 (a
	// proto string must be) and bounded.
	h := func(name string, limit int) string {
		return cut.Text(strings.ToValidUTF8(header.Get(name), "\uFFFD"), limit)
	}
	return domain.DeadLetter{
		Sequence:    seq,
		Time:        t,
		Service:     service,
		Consumer:    consumer,
		Reason:      h(events.HeaderDeadLetterReason, maxReason),
		Subject:     h(events.HeaderDeadLetterSubject, maxHeader),
		Stream:      h(events.HeaderDeadLetterStream, maxHeader),
		EventID:     h(events.HeaderID, maxHeader),
		EventType:   h(events.HeaderType, maxHeader),
		EventSource: h(events.HeaderSource, maxHeader),
		RunID:       h(events.HeaderChainID, maxHeader),
		BodySize:    size,
	}
}

// bodyOf is what a list carries of a dead letter's body: only the start
// can be kept, so it makes text of no more than that. A replaced byte
// grows to three, so the text's size is counted after the replacement.
func bodyOf(data []byte) string {
	head := data[:min(len(data), MaxDeadLetterBody)]
	text := strings.ToValidUTF8(string(head), "\uFFFD")
	return cut.TextOf(text, len(data)-len(head)+len(text), MaxDeadLetterBody)
}
