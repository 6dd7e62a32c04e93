// Package servicekittest starts services in tests the way their binaries
// do: composed by servicecmd.Compose with their own NATS connection and a
// loopback HTTP server, ready (streams and consumers provisioned) before
// the test goes on, and stopped when it ends. Every service's component
// tests use it, so their harnesses have one shape.
package servicekittest

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/fx"
	"go.uber.org/fx/fxevent"
	"go.uber.org/fx/fxtest"

	"github.com/sluicehq/sluice/deploy"
	"github.com/sluicehq/sluice/platform/audit"
	"github.com/sluicehq/sluice/platform/auth"
	"github.com/sluicehq/sluice/platform/events"
	"github.com/sluicehq/sluice/platform/natsconn"
	"github.com/sluicehq/sluice/platform/natsprovision"
	"github.com/sluicehq/sluice/platform/rpcserver"
	"github.com/sluicehq/sluice/platform/servicecmd"
	"github.com/sluicehq/sluice/platform/servicekit"
	"github.com/sluicehq/sluice/platform/sqldb"
	"github.com/sluicehq/sluice/platform/sqldb/sqldbtest"
	auditv1 "github.com/sluicehq/sluice/proto/gen/sluice/audit/v1"
	authv1 "github.com/sluicehq/sluice/proto/gen/sluice/auth/v1"
)

// Process is a started process running one or more services.
type Process struct {
	// URL is the process's HTTP server (Connect APIs, webhooks, health).
	URL string
	// Client talks to it; its idle connections close at cleanup.
	Client *http.Client
	// NATS is the process's connection (a test closes it to cut the
	// process off).
	NATS *nats.Conn
	// AdminToken is the secret of the admin token Client sends.
	AdminToken string
	tr         *http.Transport
	stop       func()
}

// ClientWith is a client of the process that sends secret as its
// credential ("" sends none).
func (p *Process) ClientWith(secret string) *http.Client {
	return &http.Client{Transport: auth.WithSecret(p.tr, func() string { return secret })}
}

// Stop stops the process (drains it); it is safe to call more than once,
// and cleanup calls it.
func (p *Process) Stop() { p.stop() }

// Options tune Start.
type Options struct {
	// Log receives the services' logs; default Logger(t), which shows them
	// with the test's output.
	Log *slog.Logger
	// NATSName names the connection; default the test's name.
	NATSName string
	// Version is the process's version (servicekit.BuildInfo); default "test".
	Version string
	// Extra fx options (fx.Populate, fx.Replace, a decorator, ...).
	Extra []fx.Option
	// NoWait starts without waiting for readiness.
	NoWait bool
}

// Start composes modules into a process connected to the NATS server at
// natsURL, starts it and waits until /readyz answers 200.
func Start(t testing.TB, natsURL string, o Options, modules ...fx.Option) *Process {
	t.Helper()
	log := o.Log
	if log == nil {
		log = Logger(t)
	}
	name := o.NATSName
	if name == "" {
		name = t.Name()
	}
	version := o.Version
	if version == "" {
		version = "test"
	}
	var (
		srv *rpcserver.Server
		nc  *nats.Conn
	)
	opts := []fx.Option{
		fx.WithLogger(func() fxevent.Logger { return fxevent.NopLogger }),
		servicecmd.Compose(log, servicekit.BuildInfo{Version: version}, servicecmd.Network{
			NATS:   natsconn.Config{URL: natsURL, Name: name},
			Server: rpcserver.Config{Addr: "127.0.0.1:0"},
		}, modules...),
		fx.Populate(&srv, &nc),
	}
	admin := IssueToken(t, natsURL, authv1.Role_ROLE_ADMIN)
	app := fxtest.New(t, append(opts, o.Extra...)...)
	app.RequireStart()
	var once sync.Once
	tr := &http.Transport{}
	p := &Process{
		URL:        srv.URL(),
		Client:     &http.Client{Transport: auth.WithSecret(tr, func() string { return admin })},
		NATS:       nc,
		AdminToken: admin,
		tr:         tr,
		stop: func() {
			once.Do(func() {
				app.RequireStop()
				tr.CloseIdleConnections()
			})
		},
	}
	t.Cleanup(p.stop)
	if !o.NoWait {
		p.WaitReady(t)
	}
	return p
}

// IssueToken puts a user token with role, limited to repositories when
// some are named, straight into the tokens bucket (making the bucket as
// source would), the way source publishes the tokens it issues, and
// returns its secret. Services in the test accept it once they have seen
// it.
func IssueToken(t testing.TB, natsURL string, role authv1.Role, repositories ...string) string {
	t.Helper()
	id, secret := auth.NewUserToken()
	PutToken(t, natsURL, auth.TokenRecord{ID: id, Name: "test-" + auth.RoleName(role), Role: auth.RoleName(role), Repositories: repositories, Hash: auth.Hash(secret)})
	return secret
}

// PutToken puts rec in the tokens bucket (DeleteToken takes it out).
func PutToken(t testing.TB, natsURL string, rec auth.TokenRecord) {
	t.Helper()
	kv := bucket(t, natsURL, auth.TokensBucket)
	b, err := json.Marshal(rec)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(t.Context(), rec.ID, b); err != nil {
		t.Fatalf("put token %s: %v", rec.ID, err)
	}
}

// DeleteToken deletes a token from the tokens bucket, as source does when
// it is revoked.
func DeleteToken(t testing.TB, natsURL, id string) {
	t.Helper()
	if err := bucket(t, natsURL, auth.TokensBucket).Delete(t.Context(), id); err != nil {
		t.Fatalf("delete token %s: %v", id, err)
	}
}

// ServiceSecret publishes an identity of service in the service
// identities bucket, as a process of that service does at start, and
// returns the secret that process would send.
func ServiceSecret(t testing.TB, natsURL, service string) string {
	t.Helper()
	js := connectJetStream(t, natsURL)
	bucket(t, natsURL, auth.ServicesBucket)
	id := auth.NewServiceIdentity(service)
	if err := id.Publish(t.Context(), js); err != nil {
		t.Fatal(err)
	}
	return id.Secret()
}

// connectJetStream connects to NATS for the rest of the test.
func connectJetStream(t testing.TB, natsURL string) jetstream.JetStream {
	t.Helper()
	nc, err := nats.Connect(natsURL)
	if err != nil {
		t.Fatalf("connect to NATS: %v", err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

// bucket opens (making it as its owner would) the key-value bucket name
// that deploy/nats declares.
func bucket(t testing.TB, natsURL, name string) jetstream.KeyValue {
	t.Helper()
	js := connectJetStream(t, natsURL)
	decl, err := natsprovision.Load(deploy.NATS())
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range decl.KeyValues {
		if k.Config.Bucket == name {
			kv, err := js.CreateOrUpdateKeyValue(t.Context(), k.Config)
			if err != nil {
				t.Fatalf("key-value bucket %s: %v", k.Config.Bucket, err)
			}
			return kv
		}
	}
	t.Fatalf("deploy/nats declares no key-value bucket %s", name)
	return nil
}

// WaitReady waits until the process's /readyz answers 200.
func (p *Process) WaitReady(t testing.TB) {
	t.Helper()
	Eventually(t, "the process is ready", func() bool {
		req, err := http.NewRequestWithContext(context.Background(), http.MethodGet, p.URL+"/readyz", nil)
		if err != nil {
			return false
		}
		res, err := p.Client.Do(req)
		if err != nil {
			return false
		}
		_ = res.Body.Close()
		return res.StatusCode == http.StatusOK
	})
}

// EventuallyTimeout bounds Eventually.
const EventuallyTimeout = 30 * time.Second

// WaitKnown waits until call answers anything but unauthenticated: until
// the service has seen the token or service identity call sends (services
// learn credentials from the key-value buckets, a moment after they are
// put there).
func WaitKnown(t testing.TB, call func() error) {
	t.Helper()
	Eventually(t, "the service to know the credential", func() bool {
		return connect.CodeOf(call()) != connect.CodeUnauthenticated
	})
}

// CountMessages reads a server stream to its end and returns how many of
// its messages counts says to count, and how the stream ended (a TailLogs
// stream of another repository's run must end in permission_denied before
// any message).
func CountMessages[Res any](stream *connect.ServerStreamForClient[Res], err error, counts func(*Res) bool) (int, error) {
	if err != nil {
		return 0, err
	}
	defer stream.Close()
	n := 0
	for stream.Receive() {
		if counts(stream.Msg()) {
			n++
		}
	}
	return n, stream.Err()
}

// Eventually polls cond every 20 ms until it holds, and fails the test
// naming what after EventuallyTimeout.
func Eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(EventuallyTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", EventuallyTimeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// DeadLetter waits until the service's consumer has dead-lettered the
// message of the run chainID (its ce-chainid header) and returns the reason
// the consumer gave (events.HeaderDeadLetterReason); it fails the test
// after EventuallyTimeout.
func DeadLetter(t testing.TB, js jetstream.JetStream, service, consumer, chainID string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), EventuallyTimeout)
	defer cancel()
	subject := events.DeadLetterSubject(service, consumer)
	cons, err := js.OrderedConsumer(ctx, "DEADLETTER", jetstream.OrderedConsumerConfig{FilterSubjects: []string{subject}})
	if err != nil {
		t.Fatalf("read %s: %v", subject, err)
	}
	for {
		msg, err := cons.Next(jetstream.FetchContext(ctx))
		if err != nil {
			t.Fatalf("no dead letter on %s for run %s: %v", subject, chainID, err)
		}
		if msg.Headers().Get(events.HeaderChainID) == chainID {
			return msg.Headers().Get(events.HeaderDeadLetterReason)
		}
	}
}

// Logger is a logger for a test: its lines show with the test's output
// (when it fails, or with -v). It fails the test when a handler forgets
// its audit entry (StrictAudit).
func Logger(t testing.TB) *slog.Logger {
	return slog.New(StrictAudit(t, slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug})))
}

// StrictAudit wraps h so that the test fails when a procedure that changes
// state succeeds without recording its audit entry in its transaction
// (audit.MsgNotRecorded): its entry would still be written, but apart from
// its change.
func StrictAudit(t testing.TB, h slog.Handler) slog.Handler { return strictAudit{t: t, Handler: h} }

type strictAudit struct {
	t testing.TB
	slog.Handler
}

func (s strictAudit) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= slog.LevelError || s.Handler.Enabled(ctx, l)
}

func (s strictAudit) Handle(ctx context.Context, r slog.Record) error {
	if r.Message == audit.MsgNotRecorded {
		var procedure string
		r.Attrs(func(a slog.Attr) bool {
			if a.Key == "procedure" {
				procedure = a.Value.String()
			}
			return true
		})
		s.t.Errorf("%s succeeded without audit.Record in the transaction of its change", procedure)
	}
	if !s.Handler.Enabled(ctx, r.Level) {
		return nil
	}
	return s.Handler.Handle(ctx, r)
}

func (s strictAudit) WithAttrs(attrs []slog.Attr) slog.Handler {
	return strictAudit{t: s.t, Handler: s.Handler.WithAttrs(attrs)}
}

func (s strictAudit) WithGroup(name string) slog.Handler {
	return strictAudit{t: s.t, Handler: s.Handler.WithGroup(name)}
}

// OpenDB opens a fresh database of the store the test run selects
// (sqldbtest.URL) with the outbox's migrations and sets, as servicekit
// opens a service's, and closes it when the test ends.
func OpenDB(t testing.TB, sets ...sqldb.Migrations) *sqldb.DB {
	t.Helper()
	return OpenDBAt(t, sqldbtest.URL(t), sets...)
}

// OpenDBAt is OpenDB on the database at url (several processes of a test
// may share one).
func OpenDBAt(t testing.TB, url string, sets ...sqldb.Migrations) *sqldb.DB {
	t.Helper()
	db, err := sqldb.Open(context.Background(), url, append([]sqldb.Migrations{events.Migrations()}, sets...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return db
}

// Producers creates the streams and object stores that the services
// owners declare under deploy/nats, without their consumers: what a
// service under test reads from services that do not run in the test.
func Producers(t testing.TB, js jetstream.JetStream, owners ...string) {
	t.Helper()
	decl, err := natsprovision.Load(deploy.NATS())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), EventuallyTimeout)
	defer cancel()
	for _, cfg := range decl.Streams {
		if slices.Contains(owners, natsprovision.StreamOwner(cfg.Name)) {
			if _, err := js.CreateOrUpdateStream(ctx, cfg); err != nil {
				t.Fatalf("stream %s: %v", cfg.Name, err)
			}
		}
	}
	for _, o := range decl.ObjectStores {
		if slices.Contains(owners, o.Owner) {
			if _, err := js.CreateOrUpdateObjectStore(ctx, o.Config); err != nil {
				t.Fatalf("object store %s: %v", o.Config.Bucket, err)
			}
		}
	}
}

// AuditEntries waits until the AUDIT stream holds at least n audit
// entries and returns them all, oldest first (the services publish them
// through their outboxes, a moment after the call).
func AuditEntries(t testing.TB, js jetstream.JetStream, n int) []*auditv1.AuditEntry {
	t.Helper()
	var out []*auditv1.AuditEntry
	Eventually(t, fmt.Sprintf("the AUDIT stream has %d entries", n), func() bool {
		out = out[:0]
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		defer cancel()
		cons, err := js.OrderedConsumer(ctx, "AUDIT", jetstream.OrderedConsumerConfig{})
		if err != nil {
			return false
		}
		for {
			batch, err := cons.FetchNoWait(100)
			if err != nil {
				return false
			}
			got := 0
			for m := range batch.Messages() {
				got++
				ev, err := events.Decode(m.Subject(), m.Headers(), m.Data())
				if err != nil {
					t.Fatalf("decode %s: %v", m.Subject(), err)
				}
				if e, ok := ev.Payload.(*auditv1.AuditEntry); ok {
					out = append(out, e)
				}
			}
			if got == 0 {
				return len(out) >= n
			}
		}
	})
	return out
}
