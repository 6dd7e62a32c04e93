// Package audit records who did what: every call of a procedure whose
// authorization policy names an audit_action (every procedure that changes
// state), allowed or refused, becomes an AuditEntry that the service
// handling it publishes on sluice.audit.<service> through its
// transactional outbox. Source keeps the entries in its audit log
// (AuditService.ListAuditEntries, `sluice audit`).
//
// Two paths write an entry, the same way in every service:
//
//   - The handler calls Record inside the transaction that makes the
//     change, so the entry is committed with the change or not at all;
//     it may name what it acted on better than the request does (the id of
//     the run it made, a subscription's repository).
//   - The Recorder, the outermost interceptor of every handler
//     (rpcserver.HandlerOptions), writes the entry of a call that failed or
//     was refused (permission_denied, unauthenticated, invalid_argument,
//     ...) in a transaction of its own once the call returned, with the
//     Connect code as its outcome. Both paths use the call's one entry id,
//     and the outbox, JetStream and the audit log each drop a second event
//     with that id, so a call has exactly one entry: "ok" when its change
//     committed, else how it failed.
//
// A procedure that changes state without calling Record still gets its
// entry from the Recorder, and the Recorder logs an error naming it. A new
// procedure that changes state (cancelling a run, say) gets an
// audit_action in its policy and calls Record where it commits; a test in
// cmd/sluice walks the descriptors and fails for a procedure that looks
// like it changes state and has no audit_action.
//
// An entry names its actor by token id and name, or by service name, and
// never holds a credential or a secret's value: only the names and ids the
// request or the handler gives.
package audit

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/sluicehq/sluice/platform/auth"
	"github.com/sluicehq/sluice/platform/events"
	"github.com/sluicehq/sluice/platform/ids"
	"github.com/sluicehq/sluice/platform/sqldb"
	auditv1 "github.com/sluicehq/sluice/proto/gen/sluice/audit/v1"
	authv1 "github.com/sluicehq/sluice/proto/gen/sluice/auth/v1"
)

// OutcomeOK is the outcome of a call that succeeded; any other outcome is
// the Connect code the call ended with (permission_denied, ...).
const OutcomeOK = "ok"

// Actor kinds.
const (
	ActorUser      = "user"
	ActorService   = "service"
	ActorAnonymous = "anonymous"
)

// MsgNotRecorded is what the Recorder logs, as an error naming the
// procedure, when a handler succeeded without Record or Unchanged: a bug
// (servicekittest.StrictAudit fails a test on it).
const MsgNotRecorded = "a procedure that changes state did not record its audit entry with its change; recording it now"

// RequestIDHeader is the header whose value an entry keeps as its
// request id.
const RequestIDHeader = "X-Request-Id"

// Target is what a call acted on, as its handler names it; an empty field
// keeps what the request says.
type Target struct {
	// Repository is the repository's name.
	Repository string
	// ID is a run id, a token id, a secret's name, a subscription id...
	ID string
}

// Recorder is the Connect interceptor that writes the entries the handlers
// did not (see the package comment).
type Recorder struct {
	service string
	db      *sqldb.DB
	relay   *events.Relay
	log     *slog.Logger
	// anonymous bounds the entries of calls without a valid credential:
	// anyone who reaches the API can make those, and each is a row.
	anonymous *bucket
	// policies caches each procedure's policy: its descriptor's options
	// are read once.
	policies sync.Map // protoreflect.MethodDescriptor -> *authv1.Policy
}

// Anonymous calls recorded: AnonymousBurst at once, then AnonymousRate a
// second; the ones over are counted and logged, not recorded.
const (
	AnonymousRate  = 10
	AnonymousBurst = 100
)

var _ connect.Interceptor = (*Recorder)(nil)

// NewRecorder makes the interceptor of service, writing to db's outbox.
func NewRecorder(service string, db *sqldb.DB, relay *events.Relay, log *slog.Logger) *Recorder {
	return &Recorder{service: service, db: db, relay: relay, log: log, anonymous: newBucket(AnonymousRate, AnonymousBurst, time.Now)}
}

type callKey struct{}

// call is one audited call in progress.
type call struct {
	service string
	entry   *auditv1.AuditEntry // what the request says; actor and outcome come later
	// recorded is set once the handler enqueued the entry in its
	// transaction.
	recorded atomic.Bool
	// unchanged is set when the handler succeeded without changing
	// anything (Unchanged), with what it named.
	unchanged atomic.Pointer[Target]
}

// WrapUnary records unary calls of audited procedures.
func (r *Recorder) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		if req.Spec().IsClient {
			return next(ctx, req)
		}
		policy := r.policyOf(req.Spec())
		if policy.GetAuditAction() == "" {
			return next(ctx, req)
		}
		c := &call{service: r.service, entry: &auditv1.AuditEntry{
			Id:         ids.New(),
			Service:    r.service,
			Procedure:  bound(req.Spec().Procedure, 200),
			Action:     policy.GetAuditAction(),
			Repository: bound(requestField(req.Any(), policy.GetRepositoryField()), 100),
			Target:     bound(requestField(req.Any(), policy.GetAuditTargetField()), 256),
			RequestId:  requestID(req.Header().Get(RequestIDHeader)),
		}}
		ctx, seen := auth.ObserveIdentity(context.WithValue(ctx, callKey{}, c))
		res, err := next(ctx, req)
		if err == nil && c.recorded.Load() {
			r.relay.Kick()
			return res, nil
		}
		outcome := OutcomeOK
		if err != nil {
			outcome = connect.CodeOf(err).String()
		} else if c.unchanged.Load() == nil {
			r.log.ErrorContext(ctx, MsgNotRecorded, slog.String("procedure", req.Spec().Procedure))
		}
		id, known := seen()
		var named Target
		if t := c.unchanged.Load(); t != nil && err == nil {
			named = *t
		}
		entry := c.finish(id, known, named, outcome)
		if !known {
			if dropped, ok := r.anonymous.take(); !ok {
				if dropped > 0 {
					r.log.WarnContext(ctx, "calls without a valid credential come too fast to record them all; some were not recorded",
						slog.Int64("not_recorded", dropped), slog.Int("per_second", AnonymousRate))
				}
				return res, err
			}
			// The id the credential claims, unverified: who tried.
			entry.ActorId = auth.TokenID(bearer(req.Header().Get("Authorization")))
		}
		if werr := r.write(context.WithoutCancel(ctx), entry); werr != nil {
			r.log.ErrorContext(ctx, "cannot record an audit entry", slog.String("procedure", req.Spec().Procedure),
				slog.String("outcome", outcome), slog.Any("error", werr))
		}
		return res, err
	}
}

// policyOf is the policy of spec's procedure, nil when it has none.
func (r *Recorder) policyOf(spec connect.Spec) *authv1.Policy {
	md, _ := spec.Schema.(protoreflect.MethodDescriptor)
	if md == nil {
		return nil
	}
	if cached, ok := r.policies.Load(md); ok {
		p, _ := cached.(*authv1.Policy)
		return p
	}
	p := auth.PolicyOf(md)
	r.policies.Store(md, p)
	return p
}

// WrapStreamingClient leaves clients alone.
func (r *Recorder) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return next
}

// WrapStreamingHandler leaves streams alone: auth.CheckPolicies refuses an
// audit_action on a streaming procedure.
func (r *Recorder) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return next
}

func (r *Recorder) write(ctx context.Context, entry *auditv1.AuditEntry) error {
	ev, err := events.NewAudit(r.service, entry)
	if err != nil {
		return err
	}
	if err := r.db.InTx(ctx, func(tx *sql.Tx) error { return events.EnqueueOnce(ctx, tx, ev) }); err != nil {
		return err
	}
	r.relay.Kick()
	return nil
}

// Record enqueues the entry of the call ctx belongs to, with outcome ok,
// inside tx: the handler's transaction that makes the change. Outside an
// audited call (the poller, a webhook, a consumer) it does nothing. A
// second Record of the same call is harmless (the outbox keeps the first).
func Record(ctx context.Context, tx *sql.Tx, t Target) error {
	c, ok := ctx.Value(callKey{}).(*call)
	if !ok {
		return nil
	}
	id, known := auth.FromContext(ctx)
	ev, err := events.NewAudit(c.service, c.finish(id, known, t, OutcomeOK))
	if err != nil {
		return fmt.Errorf("audit entry: %w", err)
	}
	if err := events.EnqueueOnce(ctx, tx, ev); err != nil {
		return fmt.Errorf("audit entry: %w", err)
	}
	c.recorded.Store(true)
	return nil
}

// Unchanged says that the call ctx belongs to succeeds without changing
// anything (registering a repository that is registered the same way), so
// it has no transaction to record its entry in: the Recorder records it,
// with outcome ok and t, once the call returns.
func Unchanged(ctx context.Context, t Target) {
	if c, ok := ctx.Value(callKey{}).(*call); ok {
		c.unchanged.Store(&t)
	}
}

// finish is the call's entry with its actor, target and outcome.
func (c *call) finish(id auth.Identity, known bool, t Target, outcome string) *auditv1.AuditEntry {
	e := proto.CloneOf(c.entry)
	e.Time = timestamppb.New(time.Now())
	e.Outcome = outcome
	if t.Repository != "" {
		e.Repository = bound(t.Repository, 100)
	}
	if t.ID != "" {
		e.Target = bound(t.ID, 256)
	}
	switch {
	case !known:
		e.ActorKind = ActorAnonymous
	case id.Kind == auth.KindService:
		e.ActorKind, e.ActorName = ActorService, id.Name
	default:
		e.ActorKind, e.ActorId, e.ActorName, e.ActorRole = ActorUser, id.TokenID, bound(id.Name, 128), auth.RoleName(id.Role)
	}
	return e
}

// requestField is the string field name of msg, "" when there is none.
func requestField(msg any, name string) string {
	m, ok := msg.(proto.Message)
	if name == "" || !ok {
		return ""
	}
	r := m.ProtoReflect()
	fd := r.Descriptor().Fields().ByName(protoreflect.Name(name))
	if fd == nil || fd.Kind() != protoreflect.StringKind || fd.IsList() {
		return ""
	}
	return r.Get(fd).String()
}

// bearer is the secret of an Authorization header, "" when it has none.
func bearer(authorization string) string {
	scheme, secret, ok := strings.Cut(authorization, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return ""
	}
	return strings.TrimSpace(secret)
}

// requestID keeps a request id of printable ASCII only, at most 128 bytes;
// anything else is dropped (it is the caller's word, recorded as given).
func requestID(v string) string {
	if len(v) > 128 {
		return ""
	}
	for i := range len(v) {
		if v[i] < 0x21 || v[i] > 0x7e {
			return ""
		}
	}
	return v
}

// bound cuts s to at most n bytes at a character boundary: a refused
// request has not been validated, and its entry must still validate.
func bound(s string, n int) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// bucket is a token bucket: take succeeds while it holds a token, and it
// gains rate tokens a second, up to burst.
type bucket struct {
	rate, burst float64
	now         func() time.Time

	mu     sync.Mutex
	tokens float64
	last   time.Time
	// dropped counts refusals since the last one reported; reported is
	// when that was.
	dropped  int64
	reported time.Time
}

func newBucket(rate, burst float64, now func() time.Time) *bucket {
	return &bucket{rate: rate, burst: burst, now: now, tokens: burst, last: now()}
}

// take takes a token. Without one it returns false and, at most once a
// minute, the number of refusals to report (else 0).
func (b *bucket) take() (int64, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := b.now()
	b.tokens = min(b.burst, b.tokens+now.Sub(b.last).Seconds()*b.rate)
	b.last = now
	if b.tokens >= 1 {
		b.tokens--
		return 0, true
	}
	b.dropped++
	if now.Sub(b.reported) < time.Minute {
		return 0, false
	}
	n := b.dropped
	b.dropped, b.reported = 0, now
	return n, false
}
