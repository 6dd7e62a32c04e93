package notify

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

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
// last one. Bodies are read only when withBody. It reads the DEADLETTER
// stream with direct gets, one message at a time, so it holds one body at
// a time and needs no consumer.
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
	for len(list) < page.Limit() {
		m, err := stream.GetMsg(ctx, next, jetstream.WithGetMsgSubject(subject))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			break
		}
		if err != nil {
			return nil, "", fmt.Errorf("read stream %s at %d: %w", natsprovision.DeadLetterStream, next, err)
		}
		list = append(list, deadLetterOf(m, withBody))
		next = m.Sequence + 1
	}
	list, token := paging.Cut(page, list, func(d domain.DeadLetter) paging.Cursor {
		return paging.Cursor{ID: strconv.FormatUint(d.Sequence, 10)}
	})
	return list, token, nil
}

// deadLetterOf reads a stored dead letter; its body only when withBody,
// and then bounded.
func deadLetterOf(m *jetstream.RawStreamMsg, withBody bool) domain.DeadLetter {
	service, consumer, _ := domain.DeadLetterOrigin(m.Subject)
	// Headers are whatever was published: make each valid UTF-8 (a
	// proto string must be) and bounded.
	h := func(name string, limit int) string {
		return cut.Text(strings.ToValidUTF8(m.Header.Get(name), "\uFFFD"), limit)
	}
	d := domain.DeadLetter{
		Sequence:    m.Sequence,
		Time:        m.Time,
		Service:     service,
		Consumer:    consumer,
		Reason:      h(events.HeaderDeadLetterReason, maxReason),
		Subject:     h(events.HeaderDeadLetterSubject, maxHeader),
		Stream:      h(events.HeaderDeadLetterStream, maxHeader),
		EventID:     h(events.HeaderID, maxHeader),
		EventType:   h(events.HeaderType, maxHeader),
		EventSource: h(events.HeaderSource, maxHeader),
		RunID:       h(events.HeaderChainID, maxHeader),
		BodySize:    len(m.Data),
	}
	if withBody {
		// Only the start can be kept: make text of no more than that. A
		// replaced byte grows to three, so the text's size is counted
		// after the replacement.
		head := m.Data[:min(len(m.Data), MaxDeadLetterBody)]
		text := strings.ToValidUTF8(string(head), "\uFFFD")
		d.Body = cut.TextOf(text, len(m.Data)-len(head)+len(text), MaxDeadLetterBody)
	}
	return d
}
