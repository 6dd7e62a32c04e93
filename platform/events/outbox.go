package events

import (
	"cmp"
	"context"
	"database/sql"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicehq/sluice/platform/natsprovision"
	"github.com/sluicehq/sluice/platform/retry"
	"github.com/sluicehq/sluice/platform/sqldb"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// Migrations creates the outbox and processed_events tables; every service
// that publishes or consumes events applies it.
func Migrations() sqldb.Migrations {
	return sqldb.Embedded("events", migrationFiles)
}

// Enqueue stores e in the outbox inside tx, so the event is published if and
// only if the transaction commits. Call Relay.Kick after the commit.
func Enqueue(ctx context.Context, tx *sql.Tx, e Event) error {
	return enqueue(ctx, tx, e, `INSERT INTO outbox (id, subject, headers, body, created_at) VALUES ($1, $2, $3, $4, $5)`)
}

// EnqueueOnce is Enqueue that leaves the outbox as it is when it already
// holds an event with e's id (an audit entry its handler enqueued).
func EnqueueOnce(ctx context.Context, tx *sql.Tx, e Event) error {
	return enqueue(ctx, tx, e, `INSERT INTO outbox (id, subject, headers, body, created_at) VALUES ($1, $2, $3, $4, $5) ON CONFLICT (id) DO NOTHING`)
}

func enqueue(ctx context.Context, tx *sql.Tx, e Event, insert string) error {
	m, err := e.Msg()
	if err != nil {
		return err
	}
	headers, err := json.Marshal(m.Header)
	if err != nil {
		return fmt.Errorf("marshal headers: %w", err)
	}
	_, err = tx.ExecContext(ctx, insert, e.ID, m.Subject, string(headers), string(m.Data), time.Now().UnixNano())
	if err != nil {
		return fmt.Errorf("enqueue %s: %w", e.Kind.Type, err)
	}
	return nil
}

// Relay publishes the outbox to JetStream in order and deletes what the
// server acknowledged. A crash between publish and delete publishes the
// event again with the same Nats-Msg-Id, which JetStream drops as a
// duplicate within its window, and consumers are idempotent beyond it.
type Relay struct {
	db    *sqldb.DB
	js    jetstream.JetStream
	log   *slog.Logger
	kick  chan struct{}
	batch int
	idle  time.Duration
	// inFlight counts the service's event handlers running now (see
	// Track), so that a stopping relay knows whether more events may still
	// be enqueued. It is the service's own: in `sluice up` one service's
	// drain never waits on another's handlers.
	inFlight atomic.Int64
	metrics  *Metrics
}

// RelayOption changes a relay from its defaults.
type RelayOption func(*Relay)

// CountWith counts the relay's dead letters (consumer "outbox", cause
// "refused") in m.
func CountWith(m *Metrics) RelayOption { return func(r *Relay) { r.metrics = m } }

// NewRelay makes a relay for db's outbox.
func NewRelay(db *sqldb.DB, js jetstream.JetStream, log *slog.Logger, opts ...RelayOption) *Relay {
	r := &Relay{db: db, js: js, log: log, kick: make(chan struct{}, 1), batch: 256, idle: time.Second}
	for _, o := range opts {
		o(r)
	}
	return r
}

// Track wraps a handler of the relay's service so that the relay, when it
// stops, waits for the events it is handling: a handler may enqueue events
// until it returns.
func (r *Relay) Track(h Handler) Handler {
	return func(ctx context.Context, ev Event, d Delivery) error {
		r.inFlight.Add(1)
		defer r.inFlight.Add(-1)
		return h(ctx, ev, d)
	}
}

// Kick wakes the relay after a transaction that enqueued events committed.
func (r *Relay) Kick() {
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

// Run publishes until ctx ends, then goes on while the service's tracked
// handlers finish the events in hand (they may enqueue more), for at most
// DefaultDrainTimeout and a little.
func (r *Relay) Run(ctx context.Context) {
	defer r.drain(context.WithoutCancel(ctx))
	failures := 0
	for {
		n, err := r.publishBatch(ctx)
		switch {
		case ctx.Err() != nil:
			return
		case errors.Is(err, errRelayBusy):
			// Another replica is publishing; look again soon, since the
			// events this replica just enqueued may not be in its batch.
			if !retry.Sleep(ctx, 20*time.Millisecond) {
				return
			}
			continue
		case err != nil:
			failures++
			wait := relayBackoff.Delay(failures)
			r.log.Warn("outbox relay: publish failed; retrying", slog.Any("error", err), slog.Duration("in", wait))
			if !retry.Sleep(ctx, wait) {
				return
			}
			continue
		}
		failures = 0
		if n == r.batch {
			continue
		}
		select {
		case <-ctx.Done():
			return
		case <-r.kick:
		case <-time.After(r.idle):
		}
	}
}

// drain publishes what the outbox holds and what the handlers still in
// flight enqueue, until none is in flight and the outbox is empty, or the
// drain time is over (what is left is published at the next start, or by
// another replica).
func (r *Relay) drain(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, DefaultDrainTimeout+2*time.Second)
	defer cancel()
	for {
		busy := r.inFlight.Load() > 0
		n, err := r.publishBatch(ctx)
		switch {
		case errors.Is(err, errRelayBusy):
			n = 0 // another replica publishes the shared outbox
		case err != nil:
			if ctx.Err() == nil {
				r.log.Warn("outbox relay: publish failed while stopping; the rest waits for the next start", slog.Any("error", err))
			}
			return
		}
		if n == r.batch {
			continue
		}
		if !busy {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-r.kick:
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// relayBackoff is how long the relay waits after consecutive publish
// failures (NATS away, a stream leader moving).
var relayBackoff = retry.Backoff{Initial: 100 * time.Millisecond, Max: 5 * time.Second, Jitter: 0.2}

// relayLockKey is the PostgreSQL advisory lock a relay holds while it
// publishes a batch: replicas share one outbox, and one relay at a time keeps
// the events in order.
const relayLockKey = 0x736c756963650002

// errRelayBusy means another replica is publishing the shared outbox.
var errRelayBusy = errors.New("another replica is relaying the outbox")

// sqlRunner is what a batch reads and deletes through: the database, or the
// transaction holding the relay lock.
type sqlRunner interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}

// readBatch reads the oldest unpublished events; the rows are closed before
// publishing, so the single SQLite connection is free for the deletes.
func (r *Relay) readBatch(ctx context.Context, q sqlRunner) ([]outboxRow, error) {
	rows, err := q.QueryContext(ctx,
		`SELECT id, subject, headers, body FROM outbox ORDER BY created_at, id LIMIT $1`, r.batch)
	if err != nil {
		return nil, fmt.Errorf("read outbox: %w", err)
	}
	defer func() { _ = rows.Close() }()
	var batch []outboxRow
	for rows.Next() {
		var row outboxRow
		if err := rows.Scan(&row.id, &row.subject, &row.headers, &row.body); err != nil {
			return nil, fmt.Errorf("read outbox: %w", err)
		}
		batch = append(batch, row)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read outbox: %w", err)
	}
	return batch, nil
}

type outboxRow struct {
	id, subject, headers string
	body                 []byte
}

func (r *Relay) publishBatch(ctx context.Context) (int, error) {
	if !r.db.Postgres() {
		return r.publishFrom(ctx, r.db, func(batch []outboxRow) error {
			return r.db.InTx(ctx, func(tx *sql.Tx) error { return deleteRows(ctx, tx, batch) })
		})
	}
	tx, err := r.db.BeginTx(ctx, nil)
	if err != nil {
		return 0, fmt.Errorf("relay: begin: %w", err)
	}
	defer func() { _ = tx.Rollback() }()
	var locked bool
	if err := tx.QueryRowContext(ctx, `SELECT pg_try_advisory_xact_lock($1)`, int64(relayLockKey)).Scan(&locked); err != nil {
		return 0, fmt.Errorf("relay: take the relay lock: %w", err)
	}
	if !locked {
		return 0, errRelayBusy
	}
	n, pubErr := r.publishFrom(ctx, tx, func(batch []outboxRow) error { return deleteRows(ctx, tx, batch) })
	if err := tx.Commit(); err != nil {
		return 0, fmt.Errorf("relay: commit: %w", err)
	}
	return n, pubErr
}

func deleteRows(ctx context.Context, q sqlRunner, batch []outboxRow) error {
	for _, row := range batch {
		if _, err := q.ExecContext(ctx, `DELETE FROM outbox WHERE id = $1`, row.id); err != nil {
			return err
		}
	}
	return nil
}

// publishFrom publishes the oldest batch and deletes, through del, the
// prefix that is done: acknowledged by the server, or refused for good and
// dead-lettered (deadLetter). A row NATS refuses for good never holds up
// the rows after it; any other failure stops the batch there, to be tried
// again in order.
func (r *Relay) publishFrom(ctx context.Context, q sqlRunner, del func([]outboxRow) error) (int, error) {
	batch, err := r.readBatch(ctx, q)
	if err != nil {
		return 0, err
	}
	if len(batch) == 0 {
		return 0, nil
	}
	// Each row sent has a future, or the error that refused it at once.
	type sent struct {
		future  jetstream.PubAckFuture
		refused error
	}
	out := make([]sent, 0, len(batch))
	var stopErr error
	for _, row := range batch {
		m, err := row.msg()
		if err == nil {
			var f jetstream.PubAckFuture
			if f, err = r.js.PublishMsgAsync(m); err == nil {
				out = append(out, sent{future: f})
				continue
			}
		}
		if !refusedForGood(err) {
			stopErr = fmt.Errorf("publish %s: %w", row.subject, err)
			break
		}
		out = append(out, sent{refused: err})
	}
	done := 0
	var firstErr error
	for i, s := range out {
		err := s.refused
		if s.future != nil {
			select {
			case <-s.future.Ok():
			case err = <-s.future.Err():
			case <-ctx.Done():
				return 0, ctx.Err()
			}
		}
		if err != nil && refusedForGood(err) {
			err = r.deadLetter(ctx, batch[i], err)
		}
		if err != nil {
			firstErr = fmt.Errorf("publish %s: %w", batch[i].subject, err)
			break
		}
		done = i + 1
	}
	if firstErr == nil {
		firstErr = stopErr
	}
	// Delete the prefix that is done only, so order is kept on a retry.
	if done > 0 {
		if err := del(batch[:done]); err != nil {
			return 0, fmt.Errorf("delete published outbox rows: %w", err)
		}
	}
	return done, firstErr
}

// msg is the row's message.
func (row outboxRow) msg() (*nats.Msg, error) {
	m := nats.NewMsg(row.subject)
	if err := json.Unmarshal([]byte(row.headers), &m.Header); err != nil {
		return nil, fmt.Errorf("%w: outbox row %s headers: %w", errUnreadableRow, row.id, err)
	}
	m.Data = row.body
	return m, nil
}

// errUnreadableRow marks an outbox row that cannot be made into a message.
var errUnreadableRow = errors.New("unreadable outbox row")

// refusedForGood reports whether publishing failed for a reason no retry
// can fix: the message is over the server's max_payload, the stream
// refuses its size (over max_msg_size, or headers too large), or the row
// cannot be read. Anything else (NATS away, no answer, a stream leader moving)
// may pass.
func refusedForGood(err error) bool {
	var api *jetstream.APIError
	switch {
	case errors.Is(err, nats.ErrMaxPayload), errors.Is(err, nats.ErrBadSubject), errors.Is(err, errUnreadableRow):
		return true
	case errors.As(err, &api):
		// Only what the same message always gets: larger than the
		// stream's max_msg_size, or headers over the server's limit.
		// Other 4xx answers (an account out of storage, say) pass.
		return api.ErrorCode == jetstream.JSErrCodeStreamMessageExceedsMaximum || api.ErrorCode == jsErrCodeHeaderExceedsMaximum
	}
	return false
}

// jsErrCodeHeaderExceedsMaximum is nats-server's JSStreamHeaderExceedsMaximumErr
// (jetstream names no constant for it).
const jsErrCodeHeaderExceedsMaximum jetstream.ErrorCode = 10097

// OutboxDeadLetters is the consumer name under which a service's relay
// dead-letters the events NATS refuses for good:
// sluice.deadletter.<service>.outbox. No durable consumer may take it.
const OutboxDeadLetters = natsprovision.OutboxDurable

// deadLetter puts row, which NATS refused for good (reason), on the
// dead-letter stream under sluice.deadletter.<service>.outbox, with the
// headers a consumer's dead letters have, so that the relay can go on to
// the rows after it. A body larger than the server takes keeps its start,
// and the reason says so. It fails only when the dead letter cannot be
// published either; the row then stays and is tried again.
func (r *Relay) deadLetter(ctx context.Context, row outboxRow, reason error) error {
	kind, known := kindOfSubject(row.subject)
	service := kind.Service
	if !known {
		service = serviceOfSubject(row.subject)
	}
	var header nats.Header
	_ = json.Unmarshal([]byte(row.headers), &header) // an unreadable row keeps none
	id := cmp.Or(header.Get(HeaderID), row.id)
	stream := ""
	if known {
		stream = kind.Stream()
	}
	dl := newDeadLetter(DeadLetterSubject(service, OutboxDeadLetters), row.subject, stream, header, row.body, reason.Error())
	// Its own de-duplication id: a relay that dies after this publish
	// publishes it again, and the stream drops the copy.
	dl.Header.Set(nats.MsgIdHdr, "outbox-"+id)
	if room := int(r.js.Conn().MaxPayload()) - headerSize(dl.Header) - maxReasonHeader - 1024; len(dl.Data) > room {
		room = max(room, 0)
		dl.Header.Set(HeaderDeadLetterReason, headerValue(fmt.Sprintf("%s; the event is %d bytes, this dead letter keeps its first %d", reason, len(row.body), room)))
		dl.Data = dl.Data[:room]
	}
	log := r.log.With(slog.String("event_id", id), slog.String("subject", row.subject), slog.Int("bytes", len(row.body)))
	if _, err := r.js.PublishMsg(ctx, dl); err != nil {
		log.Error("outbox relay: NATS refused an event, and dead-lettering it failed; trying again", slog.Any("reason", reason), slog.Any("error", err))
		return fmt.Errorf("dead-letter the refused event %s: %w", id, err)
	}
	r.metrics.deadLetter(OutboxDeadLetters, CauseRefused)
	log.Error("outbox relay: NATS refused an event; dead-lettered it and went on", slog.Any("reason", reason), slog.String("to", dl.Subject))
	return nil
}

// headerSize is about what header takes in a NATS message.
func headerSize(header nats.Header) int {
	n := len("NATS/1.0\r\n\r\n")
	for k, vs := range header {
		for _, v := range vs {
			n += len(k) + len(v) + len(": \r\n")
		}
	}
	return n
}

// Pending counts unpublished events.
func Pending(ctx context.Context, db *sqldb.DB) (int, error) {
	var n int
	err := db.QueryRowContext(ctx, `SELECT COUNT(*) FROM outbox`).Scan(&n)
	return n, err
}

// ProcessedExpiry is how long the record of a handled event is kept, for
// sqldb.DB.Prune: keep must outlast every way the event can come again, a
// redelivery or a replay of its stream (the stream's max_age) and a
// republish by an outbox (within the stream's duplicate window).
func ProcessedExpiry(keep time.Duration) sqldb.Expiry {
	return sqldb.Expiry{Table: "processed_events", Column: "processed_at", Keep: keep}
}

// MarkProcessed records that consumer handled eventID, inside tx. It returns
// false when it had already been recorded: the caller must then skip the
// event's effects (its transaction may still commit harmlessly).
func MarkProcessed(ctx context.Context, tx *sql.Tx, consumer, eventID string) (bool, error) {
	res, err := tx.ExecContext(ctx,
		`INSERT INTO processed_events (consumer, event_id, processed_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING`,
		consumer, eventID, time.Now().UnixNano())
	if err != nil {
		return false, fmt.Errorf("record processed event: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("record processed event: %w", err)
	}
	return n == 1, nil
}
