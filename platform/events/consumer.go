package events

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicehq/sluice/platform/natsconn"
	"github.com/sluicehq/sluice/platform/retry"
	"github.com/sluicehq/sluice/platform/runner"
)

// ErrPermanent marks a handler error that no redelivery can fix; the event
// is dead-lettered at once.
var ErrPermanent = errors.New("permanent failure")

// Handler handles one event. Returning nil acknowledges it; an error makes
// JetStream redeliver it after the consumer's declared back-off, until its
// MaxDeliver; then the message is dead-lettered.
type Handler func(ctx context.Context, ev Event, d Delivery) error

// Delivery is what a handler may do with the message it is handling.
type Delivery interface {
	// NumDelivered is 1 on the first delivery.
	NumDelivered() uint64
	// MaxDeliver is the consumer's limit; 0 means none.
	MaxDeliver() int
	// Last is true on the last delivery JetStream will make: a handler
	// that cannot succeed now must record the failure itself (a run must
	// never stay "running"), since the message is dead-lettered next.
	Last() bool
}

// ConsumerConfig names a durable consumer that the provisioner declared.
type ConsumerConfig struct {
	// Service owns the consumer; dead letters go to
	// sluice.deadletter.<service>.<durable>.
	Service string
	Stream  string
	Durable string
	// Workers is how many events are handled at once (default 1).
	Workers int
	// Heartbeat, when set, extends the lease (InProgress) at this interval
	// while the handler runs; use it for long handlers.
	Heartbeat time.Duration
	// Metrics, when set, count the consumer's dead letters.
	Metrics *Metrics
	// Supervisor guards the consumer's goroutines (one per message in
	// hand, and its heartbeat), and the handlers' contexts carry it
	// (runner.NewContext) for the goroutines of their work (a checkout, a
	// step). Nil: runner's default, which counts nowhere.
	Supervisor *runner.Supervisor
	// DrainTimeout is how long events in hand may go on after shutdown
	// began, so that a stop (a rolling upgrade) finishes short work instead
	// of interrupting it; then their context ends. Default DefaultDrainTimeout.
	DrainTimeout time.Duration
}

// DefaultDrainTimeout is ConsumerConfig.DrainTimeout's default; it fits in
// the 15 s a process gives its stop hooks.
const DefaultDrainTimeout = 10 * time.Second

// Consumer pulls from a durable JetStream consumer and runs the handler.
type Consumer struct {
	cfg     ConsumerConfig
	js      jetstream.JetStream
	log     *slog.Logger
	handler Handler
}

// NewConsumer makes a consumer; Run starts it.
func NewConsumer(js jetstream.JetStream, log *slog.Logger, cfg ConsumerConfig, h Handler) *Consumer {
	if cfg.Workers < 1 {
		cfg.Workers = 1
	}
	return &Consumer{cfg: cfg, js: js, log: log.With(slog.String("consumer", cfg.Durable)), handler: h}
}

// Run handles events until ctx ends, then waits for the handlers in flight
// (at most DrainTimeout).
func (c *Consumer) Run(ctx context.Context) error {
	cons, err := c.waitForConsumer(ctx)
	if err != nil {
		return err
	}
	maxDeliver := cons.CachedInfo().Config.MaxDeliver
	backOff := cons.CachedInfo().Config.BackOff
	// Handlers run on their own context: when ctx ends no new event is
	// taken, and the ones in hand get DrainTimeout to finish.
	handlerCtx, cancelHandlers := context.WithCancel(runner.NewContext(context.WithoutCancel(ctx), c.cfg.Supervisor))
	drain := c.cfg.DrainTimeout
	if drain <= 0 {
		drain = DefaultDrainTimeout
	}
	stopDrain := context.AfterFunc(ctx, func() {
		t := time.NewTimer(drain)
		defer t.Stop()
		select {
		case <-t.C:
			cancelHandlers()
		case <-handlerCtx.Done():
		}
	})
	defer func() {
		stopDrain()
		cancelHandlers()
	}()
	slots := make(chan struct{}, c.cfg.Workers)
	var wg sync.WaitGroup
	defer wg.Wait()
	for ctx.Err() == nil {
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			return nil
		}
		free := 1 + c.cfg.Workers - len(slots)
		before := c.js.Conn().LastError()
		msgs, err := c.fetch(ctx, cons, free)
		if len(msgs) == 0 {
			// A pull the user may not make gets no answer, only nothing.
			if err := c.refused(before, "$JS.API.CONSUMER.MSG.NEXT."+c.cfg.Stream+"."+c.cfg.Durable); err != nil {
				<-slots
				return err
			}
		}
		if err != nil {
			<-slots
			if ctx.Err() != nil {
				return nil
			}
			c.log.Warn("fetch failed", slog.Any("error", err))
			retry.Sleep(ctx, time.Second)
			continue
		}
		first := true
		for _, m := range msgs {
			if !first {
				select {
				case slots <- struct{}{}:
				default:
					// No slot: leave it unacked; it is redelivered after AckWait.
					// Cannot happen, since we fetched at most the free slots.
					_ = m.Nak()
					continue
				}
			}
			first = false
			wg.Add(1)
			go func(m jetstream.Msg) {
				defer wg.Done()
				defer func() { <-slots }()
				err := c.cfg.Supervisor.Try("event delivery", func() error {
					c.handle(handlerCtx, m, maxDeliver, backOff)
					return nil
				})
				if err != nil {
					c.settlePanicked(handlerCtx, m, err)
				}
			}(m)
		}
		if first {
			<-slots
		}
	}
	return nil
}

func (c *Consumer) waitForConsumer(ctx context.Context) (jetstream.Consumer, error) {
	var cons jetstream.Consumer
	err := retry.Do(ctx, waitBackoff, func(ctx context.Context) error {
		before := c.js.Conn().LastError()
		callCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		var err error
		if cons, err = c.js.Consumer(callCtx, c.cfg.Stream, c.cfg.Durable); err == nil || ctx.Err() != nil {
			return err
		}
		if refused := c.refused(before, "$JS.API.CONSUMER.INFO."+c.cfg.Stream+"."+c.cfg.Durable); refused != nil {
			return retry.Permanent(refused) // no retry can get past a permission
		}
		return err
	}, retry.OnRetry(func(_ int, err error, _ time.Duration) {
		c.log.Warn("consumer not there yet; is it provisioned?", slog.String("stream", c.cfg.Stream), slog.Any("error", err))
	}))
	if err != nil {
		return nil, err
	}
	return cons, nil
}

// waitBackoff paces the wait for a consumer that is not provisioned yet.
var waitBackoff = retry.Backoff{Initial: 250 * time.Millisecond, Max: 2 * time.Second, Jitter: 0.2}

// refused returns an error when the server refused subject to the
// connection since before: retrying cannot help, and the process had
// better stop saying why than wait for ever.
func (c *Consumer) refused(before error, subject string) error {
	var r *natsconn.RefusedError
	if err := natsconn.CheckRefused(c.js.Conn(), before); errors.As(err, &r) && r.Subject == subject {
		return fmt.Errorf("consumer %s on %s: %w", c.cfg.Durable, c.cfg.Stream, err)
	}
	return nil
}

// fetch takes up to n messages that are there now, or waits a while for one.
func (c *Consumer) fetch(ctx context.Context, cons jetstream.Consumer, n int) ([]jetstream.Msg, error) {
	batch, err := cons.FetchNoWait(n)
	if err != nil {
		return nil, err
	}
	var msgs []jetstream.Msg
	for m := range batch.Messages() {
		msgs = append(msgs, m)
	}
	if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) {
		return nil, err
	}
	if len(msgs) > 0 {
		return msgs, nil
	}
	wait := 2 * time.Second
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) < wait {
		wait = max(time.Until(dl), 10*time.Millisecond)
	}
	fctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	batch, err = cons.Fetch(1, jetstream.FetchContext(fctx))
	if err != nil {
		if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
			return nil, nil
		}
		return nil, err
	}
	for m := range batch.Messages() {
		msgs = append(msgs, m)
	}
	if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) && !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) {
		return msgs, err
	}
	return msgs, nil
}

type delivery struct {
	meta       *jetstream.MsgMetadata
	maxDeliver int
}

func (d delivery) NumDelivered() uint64 { return d.meta.NumDelivered }
func (d delivery) MaxDeliver() int      { return d.maxDeliver }
func (d delivery) Last() bool           { return d.maxDeliver > 0 && int(d.meta.NumDelivered) >= d.maxDeliver }

func (c *Consumer) handle(ctx context.Context, m jetstream.Msg, maxDeliver int, backOff []time.Duration) {
	meta, err := m.Metadata()
	if err != nil {
		c.log.Error("message without metadata", slog.Any("error", err))
		_ = m.Term()
		return
	}
	log := c.log.With(slog.String("subject", m.Subject()), slog.Uint64("stream_seq", meta.Sequence.Stream), slog.Uint64("delivery", meta.NumDelivered))
	var ev Event
	err = recovered(log, func() (err error) {
		ev, err = Decode(m.Subject(), m.Headers(), m.Data())
		return err
	})
	if err != nil {
		c.deadLetter(ctx, m, log, causeOf(err, CauseInvalid), err)
		return
	}
	log = log.With(slog.String("event_id", ev.ID), slog.String("run_id", ev.ChainID))

	hctx, cancel := context.WithCancel(ctx)
	stopBeat := c.heartbeat(hctx, cancel, m)
	err = recovered(log, func() error { return c.handler(hctx, ev, delivery{meta: meta, maxDeliver: maxDeliver}) })
	if p, beatPanicked := runner.Panicked(stopBeat()); beatPanicked && err != nil {
		// The heartbeat's panic stopped the handler (its lease would
		// lapse): whatever made it panic comes again with every delivery.
		err = &panicError{value: p.Value}
	}
	cancel()

	var panicked *panicError
	switch {
	case errors.As(err, &panicked):
		// Whatever made the handler panic comes again with every delivery:
		// keep the event where an operator can see it, even when stopping.
		c.deadLetter(context.WithoutCancel(ctx), m, log, CausePanic, err)
	case err == nil:
		if err := m.DoubleAck(ctx); err != nil && ctx.Err() == nil {
			log.Warn("ack failed; the event will be redelivered and skipped as a duplicate", slog.Any("error", err))
		}
	case ctx.Err() != nil && (maxDeliver <= 0 || int(meta.NumDelivered) < maxDeliver):
		// Shutting down: leave it for redelivery.
		_ = m.Nak()
	case ctx.Err() != nil:
		// Shutting down on the last allowed delivery: JetStream would never
		// deliver it again, so keep it where an operator can see it. A
		// background context: ctx is already done.
		c.deadLetter(context.WithoutCancel(ctx), m, log, CauseInterrupted, fmt.Errorf("interrupted by shutdown on delivery %d of %d: %w", meta.NumDelivered, maxDeliver, ctx.Err()))
	case errors.Is(err, ErrPermanent) || errors.Is(err, ErrInvalidEvent):
		c.deadLetter(ctx, m, log, causeOf(err, CausePermanent), err)
	case maxDeliver > 0 && int(meta.NumDelivered) >= maxDeliver:
		c.deadLetter(ctx, m, log, CauseExhausted, fmt.Errorf("gave up after %d deliveries: %w", meta.NumDelivered, err))
	default:
		// Redelivered after the consumer's declared back-off (deploy/nats)
		// for this delivery: the server applies BackOff only to an ack wait
		// that runs out, and redelivers a plain Nak at once, which would
		// spend every delivery within milliseconds of a passing outage.
		log.Warn("handler failed; will retry", slog.Any("error", err))
		if d := retryDelay(backOff, meta.NumDelivered); d > 0 {
			_ = m.NakWithDelay(d)
		} else {
			_ = m.Nak()
		}
	}
}

// retryDelay is the consumer's back-off after delivery n (1-based) failed:
// its nth entry, the last one past its end, none without a back-off.
func retryDelay(backOff []time.Duration, n uint64) time.Duration {
	if len(backOff) == 0 || n == 0 {
		return 0
	}
	return backOff[min(n, uint64(len(backOff)))-1]
}

// panicError is what a consumer makes of a handler (or a decode) that
// panicked: the event is dead-lettered at once with the reason
// "panic: <value>", and the stack goes to the log. It wraps ErrPermanent.
type panicError struct {
	value any
}

func (e *panicError) Error() string { return fmt.Sprintf("panic: %v", e.value) }

// Unwrap makes a panic a permanent failure.
func (e *panicError) Unwrap() error { return ErrPermanent }

// recovered runs f; a panic in it is logged with its stack and returned as
// a *panicError, so that one bad event never stops the process.
func recovered(log *slog.Logger, f func() error) (err error) {
	defer func() {
		if v := recover(); v != nil {
			log.Error("event handler panicked; dead-lettering the event", slog.Any("panic", v), slog.String("stack", string(debug.Stack())))
			err = &panicError{value: v}
		}
	}()
	return f()
}

// heartbeat extends m's lease while its handler runs, until the returned
// stop is called, which returns the heartbeat's panic (a
// *runner.PanicError, counted), if any. A heartbeat that panics stops the
// handler (cancel), whose lease would lapse.
func (c *Consumer) heartbeat(ctx context.Context, cancel context.CancelFunc, m jetstream.Msg) (stop func() error) {
	if c.cfg.Heartbeat <= 0 {
		return func() error { return nil }
	}
	done := make(chan struct{})
	beat := make(chan error, 1)
	go func() {
		err := c.cfg.Supervisor.Try("event heartbeat", func() error {
			t := time.NewTicker(c.cfg.Heartbeat)
			defer t.Stop()
			for {
				select {
				case <-done:
					return nil
				case <-ctx.Done():
					return nil
				case <-t.C:
					_ = m.InProgress()
				}
			}
		})
		if err != nil {
			cancel()
		}
		beat <- err
	}()
	return func() error { close(done); return <-beat }
}

// settlePanicked settles m after a panic in the consumer's own calls around
// its handler (its metadata, heartbeat, ack, dead letter, log): unless m
// was settled before the panic, it is dead-lettered as a handler's panic
// would be, or, if that panics too, left for redelivery after a delay.
func (c *Consumer) settlePanicked(ctx context.Context, m jetstream.Msg, err error) {
	if errors.Is(m.InProgress(), jetstream.ErrMsgAlreadyAckd) {
		return // acked, naked or terminated before the panic
	}
	log := c.log.With(slog.String("subject", m.Subject()))
	p, _ := runner.Panicked(err)
	err = c.cfg.Supervisor.Try("event dead letter", func() error {
		c.deadLetter(context.WithoutCancel(ctx), m, log, CausePanic, &panicError{value: p.Value})
		return nil
	})
	if err != nil {
		_ = m.NakWithDelay(5 * time.Second)
	}
}

// Header names on a dead-lettered message, beside the original headers.
const (
	HeaderDeadLetterReason  = "Sluice-Deadletter-Reason"
	HeaderDeadLetterSubject = "Sluice-Deadletter-Subject"
	HeaderDeadLetterStream  = "Sluice-Deadletter-Stream"
)

// causeOf is the metric's cause of err: a panic, an event that does not
// decode or validate, or else otherwise.
func causeOf(err error, otherwise string) string {
	var panicked *panicError
	switch {
	case errors.As(err, &panicked):
		return CausePanic
	case errors.Is(err, ErrInvalidEvent):
		return CauseInvalid
	}
	return otherwise
}

func (c *Consumer) deadLetter(ctx context.Context, m jetstream.Msg, log *slog.Logger, cause string, reason error) {
	dl := newDeadLetter(DeadLetterSubject(c.cfg.Service, c.cfg.Durable), m.Subject(), c.cfg.Stream, m.Headers(), m.Data(), reason.Error())
	if _, err := c.js.PublishMsg(ctx, dl); err != nil {
		log.Error("dead-letter publish failed; leaving the message for redelivery", slog.Any("error", err), slog.Any("reason", reason))
		_ = m.NakWithDelay(5 * time.Second)
		return
	}
	c.cfg.Metrics.deadLetter(c.cfg.Durable, cause)
	log.Error("event dead-lettered", slog.Any("reason", reason), slog.String("cause", cause), slog.String("to", dl.Subject))
	_ = m.Term()
}

// newDeadLetter is the dead letter, on subject, of a message that came (or
// was to go) on from in stream (empty when unknown): the message's headers
// but its de-duplication id, the reason and where it came from, and its
// body.
func newDeadLetter(subject, from, stream string, header nats.Header, body []byte, reason string) *nats.Msg {
	dl := nats.NewMsg(subject)
	for k, v := range header {
		if k != nats.MsgIdHdr {
			dl.Header[k] = v
		}
	}
	dl.Header.Set(HeaderDeadLetterReason, headerValue(reason))
	dl.Header.Set(HeaderDeadLetterSubject, from)
	if stream != "" {
		dl.Header.Set(HeaderDeadLetterStream, stream)
	}
	dl.Data = body
	return dl
}

// maxReasonHeader bounds the dead-letter reason header: a validation error
// may list many violations.
const maxReasonHeader = 2048

// headerValue makes text one header line: a line break would end the
// header (NATS headers are MIME-like), so breaks become "; ", other
// control characters spaces, and the value is cut to maxReasonHeader bytes
// at a character boundary.
func headerValue(text string) string {
	text = strings.ReplaceAll(strings.ReplaceAll(text, "\r\n", "\n"), "\n", "; ")
	text = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, strings.ToValidUTF8(text, "\uFFFD"))
	if len(text) <= maxReasonHeader {
		return text
	}
	cut := maxReasonHeader
	for cut > 0 && !utf8.RuneStart(text[cut]) {
		cut--
	}
	return text[:cut] + "…"
}
