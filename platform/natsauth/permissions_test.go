package natsauth_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicehq/sluice/deploy"
	"github.com/sluicehq/sluice/platform/events"
	"github.com/sluicehq/sluice/platform/natsauth"
	"github.com/sluicehq/sluice/platform/natsconn"
	"github.com/sluicehq/sluice/platform/natsprovision"
	"github.com/sluicehq/sluice/platform/natstest"
)

const wait = 20 * time.Second

// records is a slog.Handler that keeps what was logged.
type records struct {
	mu   sync.Mutex
	recs []slog.Record
}

func (r *records) Enabled(context.Context, slog.Level) bool { return true }
func (r *records) Handle(_ context.Context, rec slog.Record) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.recs = append(r.recs, rec.Clone())
	return nil
}
func (r *records) WithAttrs([]slog.Attr) slog.Handler { return r }
func (r *records) WithGroup(string) slog.Handler      { return r }

// refused returns the subjects of the "nats refused" records logged at
// error level.
func (r *records) refused() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, rec := range r.recs {
		if rec.Level != slog.LevelError || !strings.HasPrefix(rec.Message, "nats refused") {
			continue
		}
		rec.Attrs(func(a slog.Attr) bool {
			if a.Key == "subject" {
				out = append(out, a.Value.String())
			}
			return true
		})
	}
	return out
}

// service is a service's connection, made as the service makes it.
type service struct {
	name string
	nc   *nats.Conn
	js   jetstream.JetStream
	log  *records
}

func startServer(t *testing.T) *natstest.Server {
	t.Helper()
	return natstest.Start(t, natstest.WithConfig(writeServerConfig(t)), natstest.WithEnv(passwords(t)...))
}

// connect connects as the service's user with natsconn, as servicecmd
// does.
func connect(t *testing.T, srv *natstest.Server, name string, inboxPrefix string) *service {
	t.Helper()
	rec := &records{}
	nc, js, err := natsconn.Connect(natsconn.Config{
		URL: srv.URL, Name: "test-" + name, User: name, Password: "pw-" + name, InboxPrefix: inboxPrefix,
	}, slog.New(rec))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return &service{name: name, nc: nc, js: js, log: rec}
}

func admin(t *testing.T, srv *natstest.Server) jetstream.JetStream {
	t.Helper()
	js, err := jetstream.New(srv.Connect(t, nats.UserInfo(natsauth.Admin, "pw-"+natsauth.Admin)))
	if err != nil {
		t.Fatal(err)
	}
	return js
}

// concrete turns a subject filter into a subject it matches, ending in
// last where the filter ends in ">".
func concrete(filter, last string) string {
	filter = strings.ReplaceAll(filter, "*", "x")
	if strings.HasSuffix(filter, ">") {
		return strings.TrimSuffix(filter, ">") + last
	}
	return filter
}

// Each service, as its own user, applies its declarations (creating and
// then updating them), publishes its events and dead letters, consumes
// with its durable consumers (dead-lettering what it cannot decode), and
// uses the artifact store and the live watch the way its code does; no
// subject is refused on the way.
func TestServicesWorkAsTheirUsers(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	srv := startServer(t)
	adm := admin(t, srv)
	d, err := natsprovision.Load(deploy.NATS())
	if err != nil {
		t.Fatal(err)
	}
	svcs := map[string]*service{}
	for _, name := range natsprovision.Services() {
		svcs[name] = connect(t, srv, name, natsauth.InboxPrefix(name))
	}
	defer func() {
		for _, s := range svcs {
			if refused := s.log.refused(); len(refused) > 0 {
				t.Errorf("%s was refused %v\nserver output:\n%s", s.name, refused, srv.Output())
			}
		}
	}()

	// As the services start: all at once, consumers waiting for the
	// streams of others. Then again, as on a restart (updates).
	opts := natsprovision.Options{CallTimeout: 5 * time.Second}
	var wg sync.WaitGroup
	errs := make(chan error, len(svcs))
	for name, s := range svcs {
		wg.Go(func() {
			if err := natsprovision.Apply(ctx, s.js, deploy.NATS(), name, opts); err != nil {
				errs <- fmt.Errorf("first apply as %s: %w", name, err)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for name, s := range svcs {
		if err := natsprovision.Apply(ctx, s.js, deploy.NATS(), name, opts); err != nil {
			t.Fatalf("second apply as %s: %v", name, err)
		}
	}

	for _, name := range natsprovision.Services() {
		s := svcs[name]
		ack, err := s.js.Publish(ctx, "sluice."+name+".permission.check", []byte("x"))
		if err != nil || ack.Stream != strings.ToUpper(name) {
			t.Fatalf("%s publishing its event: %v %+v", name, err, ack)
		}
		// Its outbox relay dead-letters the events NATS refuses here (its
		// consumers' dead letters are checked below).
		ack, err = s.js.Publish(ctx, events.DeadLetterSubject(name, events.OutboxDeadLetters), []byte("x"))
		if err != nil || ack.Stream != "DEADLETTER" {
			t.Fatalf("%s publishing its outbox's dead letter: %v %+v", name, err, ack)
		}
		ack, err = s.js.Publish(ctx, events.AuditSubjectPrefix+name, []byte("x"))
		if err != nil || ack.Stream != "AUDIT" {
			t.Fatalf("%s publishing an audit entry: %v %+v", name, err, ack)
		}
	}

	// A refused request hangs until its context ends: keep them short.
	short := func(t *testing.T) context.Context {
		ctx, cancel := context.WithTimeout(ctx, wait)
		t.Cleanup(cancel)
		return ctx
	}
	t.Run("consumers", func(t *testing.T) {
		for _, name := range natsprovision.Services() {
			for _, c := range d.Consumers[name] {
				consumeAndDeadLetter(short(t), t, adm, svcs[name], c)
			}
		}
	})
	t.Run("artifacts", func(t *testing.T) { artifacts(short(t), t, adm, svcs) })
	t.Run("watch", func(t *testing.T) { watch(short(t), t, adm, svcs["notify"], d) })
	t.Run("deadletters", func(t *testing.T) { readDeadLetters(short(t), t, svcs["notify"]) })
}

// readDeadLetters reads every service's dead letters as notify's
// ListDeadLetters does: direct gets of the next message on a filter.
func readDeadLetters(ctx context.Context, t *testing.T, notify *service) {
	t.Helper()
	st, err := notify.js.Stream(ctx, natsprovision.DeadLetterStream)
	if err != nil {
		t.Fatalf("notify reading stream DEADLETTER: %v", err)
	}
	if !st.CachedInfo().Config.AllowDirect {
		t.Fatal("DEADLETTER does not allow direct gets")
	}
	for _, svc := range natsprovision.Services() {
		m, err := st.GetMsg(ctx, 1, jetstream.WithGetMsgSubject("sluice.deadletter."+svc+".*"))
		if err != nil || !strings.HasPrefix(m.Subject, "sluice.deadletter."+svc+".") {
			t.Fatalf("notify reading %s's dead letters: %v", svc, err)
		}
	}
	// Without their bodies: a headers-only ordered consumer, deleted once
	// read.
	cons, err := st.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{FilterSubjects: []string{"sluice.deadletter.>"}, HeadersOnly: true})
	if err != nil {
		t.Fatalf("notify reading DEADLETTER's headers: %v", err)
	}
	batch, err := cons.FetchNoWait(1)
	if err != nil {
		t.Fatalf("notify reading DEADLETTER's headers: %v", err)
	}
	m, ok := <-batch.Messages()
	if !ok || m.Headers().Get(nats.MsgSize) == "" || len(m.Data()) != 0 {
		t.Fatalf("notify reading DEADLETTER's headers: %v", batch.Error())
	}
	for range batch.Messages() {
	}
	if err := notify.js.DeleteConsumer(ctx, natsprovision.DeadLetterStream, cons.CachedInfo().Name); err != nil {
		t.Fatalf("notify deleting its ordered consumer on DEADLETTER: %v", err)
	}
}

// consumeAndDeadLetter runs the service's consumer (platform/events) on a
// message it cannot decode: it reads the consumer, pulls, publishes the
// dead letter and terminates the message.
func consumeAndDeadLetter(ctx context.Context, t *testing.T, adm jetstream.JetStream, s *service, c natsprovision.ConsumerFile) {
	t.Helper()
	filter := c.Config.FilterSubject
	if len(c.Config.FilterSubjects) > 0 {
		filter = c.Config.FilterSubjects[0]
	}
	subject := concrete(filter, "undecodable")
	if _, err := adm.Publish(ctx, subject, []byte("not a cloudevent")); err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	cons := events.NewConsumer(s.js, slog.New(s.log), events.ConsumerConfig{Service: s.name, Stream: c.Stream, Durable: c.Config.Durable},
		func(context.Context, events.Event, events.Delivery) error {
			return errors.New("no event decodes here")
		})
	go func() { done <- cons.Run(runCtx) }()
	defer func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("%s/%s: %v", s.name, c.Config.Durable, err)
		}
	}()
	dl := events.DeadLetterSubject(s.name, c.Config.Durable)
	deadline := time.Now().Add(wait)
	for {
		st, err := adm.Stream(ctx, "DEADLETTER")
		if err != nil {
			t.Fatal(err)
		}
		m, err := st.GetLastMsgForSubject(ctx, dl)
		if err == nil && m.Header.Get(events.HeaderDeadLetterSubject) == subject {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s/%s: %s never dead-lettered to %s (last: %v)", s.name, c.Config.Durable, subject, dl, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// artifacts: build puts (twice, the second replacing the first), test and
// release read it back.
func artifacts(ctx context.Context, t *testing.T, adm jetstream.JetStream, svcs map[string]*service) {
	t.Helper()
	d, err := natsprovision.Load(deploy.NATS())
	if err != nil {
		t.Fatal(err)
	}
	if len(d.ObjectStores) == 0 {
		t.Fatal("no object store declared")
	}
	// Flow control replies are what readers publish to $JS.FC: count them.
	fc, err := adm.Conn().SubscribeSync("$JS.FC.>")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = fc.Unsubscribe() }()
	for _, o := range d.ObjectStores {
		data := make([]byte, 8<<20)
		_, _ = rand.Read(data)
		obs, err := svcs[o.Owner].js.ObjectStore(ctx, o.Config.Bucket)
		if err != nil {
			t.Fatalf("%s opening %s: %v", o.Owner, o.Config.Bucket, err)
		}
		for range 2 {
			if _, err := obs.Put(ctx, jetstream.ObjectMeta{Name: "run-1/hello"}, bytes.NewReader(data)); err != nil {
				t.Fatalf("%s putting into %s: %v", o.Owner, o.Config.Bucket, err)
			}
		}
		readers := o.Readers
		if o.OwnerReads {
			readers = append([]string{o.Owner}, readers...)
		}
		for _, r := range readers {
			obs, err := svcs[r].js.ObjectStore(ctx, o.Config.Bucket)
			if err != nil {
				t.Fatalf("%s opening %s: %v", r, o.Config.Bucket, err)
			}
			if _, err := obs.GetInfo(ctx, "run-1/hello"); err != nil {
				t.Fatalf("%s: info of run-1/hello: %v", r, err)
			}
			obj, err := obs.Get(ctx, "run-1/hello")
			if err != nil {
				t.Fatalf("%s getting run-1/hello: %v", r, err)
			}
			got, err := io.ReadAll(obj)
			_ = obj.Close()
			if err != nil || !bytes.Equal(got, data) {
				t.Fatalf("%s reading run-1/hello: %v (%d bytes of %d)", r, err, len(got), len(data))
			}
		}
	}
	if n, _, err := fc.Pending(); err != nil || n == 0 {
		t.Errorf("no flow control reply seen (%d, %v): the $JS.FC rights went untested; get a larger object", n, err)
	}
}

// watch reads every service's stream live as notify's Watch does.
func watch(ctx context.Context, t *testing.T, adm jetstream.JetStream, notify *service, d natsprovision.Declarations) {
	t.Helper()
	for _, s := range d.Streams {
		owner := natsprovision.StreamOwner(s.Name)
		if owner == "*" {
			continue
		}
		cons, err := notify.js.OrderedConsumer(ctx, s.Name, jetstream.OrderedConsumerConfig{
			FilterSubjects: []string{"sluice." + owner + ".>"},
			DeliverPolicy:  jetstream.DeliverNewPolicy,
		})
		if err != nil {
			t.Fatalf("notify watching %s: %v", s.Name, err)
		}
		iter, err := cons.Messages()
		if err != nil {
			t.Fatal(err)
		}
		subject := "sluice." + owner + ".watch.check"
		if _, err := adm.Publish(ctx, subject, []byte("x")); err != nil {
			t.Fatal(err)
		}
		m, err := iter.Next()
		iter.Stop()
		if err != nil || m.Subject() != subject {
			t.Fatalf("notify watching %s: %v", s.Name, err)
		}
		if err := notify.js.DeleteConsumer(ctx, s.Name, cons.CachedInfo().Name); err != nil {
			t.Fatalf("notify deleting its watch of %s: %v", s.Name, err)
		}
	}
}

// provisioned starts a server with the generated auth config and applies
// every declaration as the admin.
func provisioned(ctx context.Context, t *testing.T) (*natstest.Server, jetstream.JetStream) {
	t.Helper()
	srv := startServer(t)
	adm := admin(t, srv)
	if err := natsprovision.ApplyAll(ctx, adm, deploy.NATS(), natsprovision.Options{}); err != nil {
		t.Fatal(err)
	}
	return srv, adm
}

// waitRefused waits for a permissions violation on subject in the
// service's log (natsconn's ErrorHandler, at error level).
func waitRefused(t *testing.T, s *service, subject string) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for !strings.Contains(strings.Join(s.log.refused(), " "), subject) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: no permissions violation logged for %s (got %v)", s.name, subject, s.log.refused())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// The build user may not publish release events, nor source's audit
// entries: the server drops the message, the violation reaches the
// ErrorHandler and LastError, and RELEASE holds nothing.
func TestBuildMayNotPublishReleaseEvents(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	srv, adm := provisioned(ctx, t)
	build := connect(t, srv, "build", natsauth.InboxPrefix("build"))
	const subject = "sluice.release.release.created"
	if err := build.nc.Publish(subject, []byte("forged")); err != nil {
		t.Fatal(err)
	}
	if err := build.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	waitRefused(t, build, subject)
	last := build.nc.LastError()
	if !errors.Is(last, nats.ErrPermissionViolation) || !strings.Contains(last.Error(), subject) {
		t.Fatalf("LastError = %v", last)
	}
	if op, subj, ok := natsconn.Refused(last); !ok || op != "Publish" || subj != subject {
		t.Fatalf("Refused(%v) = %q %q %v", last, op, subj, ok)
	}
	// With JetStream the publish gets no answer at all; CheckRefused names
	// the subject.
	before := build.nc.LastError()
	pctx, pcancel := context.WithTimeout(ctx, 2*time.Second)
	_, err := build.js.Publish(pctx, "sluice.release.deployment.started", []byte("forged"))
	pcancel()
	if err == nil {
		t.Fatal("js.Publish of a release event as build succeeded")
	}
	if err := natsconn.CheckRefused(build.nc, before); !errors.Is(err, natsconn.ErrRefused) || !strings.Contains(err.Error(), "sluice.release.deployment.started") {
		t.Fatalf("CheckRefused = %v", err)
	}
	st, err := adm.Stream(ctx, "RELEASE")
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 0 {
		t.Fatalf("RELEASE holds %d messages", info.State.Msgs)
	}
	// Nor audit entries under another service's name, which source would
	// believe.
	const forgedAudit = "sluice.audit.source"
	before = build.nc.LastError()
	pctx, pcancel = context.WithTimeout(ctx, 2*time.Second)
	_, err = build.js.Publish(pctx, forgedAudit, []byte("forged"))
	pcancel()
	if err == nil {
		t.Fatal("js.Publish of source's audit entry as build succeeded")
	}
	if err := natsconn.CheckRefused(build.nc, before); !errors.Is(err, natsconn.ErrRefused) || !strings.Contains(err.Error(), forgedAudit) {
		t.Fatalf("CheckRefused = %v", err)
	}
	// And its own events go through.
	if _, err := build.js.Publish(ctx, "sluice.build.build.started", []byte("x")); err != nil {
		t.Fatal(err)
	}
}

// The release user may not create or change the BUILD stream: provisioning
// build's declarations as release fails at once, naming the subject, and
// BUILD stays as it was.
func TestReleaseMayNotChangeTheBuildStream(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	srv := startServer(t)
	adm := admin(t, srv)
	release := connect(t, srv, "release", natsauth.InboxPrefix("release"))

	// Before BUILD exists: not created.
	start := time.Now()
	err := natsprovision.Apply(ctx, release.js, deploy.NATS(), "build", natsprovision.Options{CallTimeout: 2 * time.Second})
	if !errors.Is(err, natsconn.ErrRefused) || !strings.Contains(err.Error(), "$JS.API.STREAM.") {
		t.Fatalf("Apply(build) as release: %v", err)
	}
	if elapsed := time.Since(start); elapsed > 10*time.Second {
		t.Errorf("Apply took %s: a refusal must not be retried", elapsed)
	}
	if _, err := adm.Stream(ctx, "BUILD"); !errors.Is(err, jetstream.ErrStreamNotFound) {
		t.Fatalf("BUILD after release tried to create it: %v", err)
	}

	// Once it exists: not updated.
	if err := natsprovision.ApplyAll(ctx, adm, deploy.NATS(), natsprovision.Options{}); err != nil {
		t.Fatal(err)
	}
	st, err := adm.Stream(ctx, "BUILD")
	if err != nil {
		t.Fatal(err)
	}
	cfg := st.CachedInfo().Config
	cfg.Description = "taken over by release"
	cfg.Subjects = append(cfg.Subjects, "sluice.release.>")
	before := release.nc.LastError()
	cctx, ccancel := context.WithTimeout(ctx, 2*time.Second)
	_, err = release.js.CreateOrUpdateStream(cctx, cfg)
	ccancel()
	if err == nil {
		t.Fatal("release updated BUILD")
	}
	if err := natsconn.CheckRefused(release.nc, before); err == nil || !strings.Contains(err.Error(), `"$JS.API.STREAM.UPDATE.BUILD"`) {
		t.Fatalf("CheckRefused = %v", err)
	}
	waitRefused(t, release, "$JS.API.STREAM.UPDATE.BUILD")
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.Config.Description == cfg.Description || len(info.Config.Subjects) != 1 {
		t.Fatalf("BUILD changed: %+v", info.Config)
	}
}

// A service may subscribe to its own reply subjects only: not to another
// service's, nor to the default _INBOX; so a connection without its inbox
// prefix gets no JetStream answer.
func TestServiceReadsOnlyItsOwnReplies(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	srv, _ := provisioned(ctx, t)
	build := connect(t, srv, "build", natsauth.InboxPrefix("build"))
	for _, subject := range []string{natsauth.InboxPrefix("release") + ".>", "_INBOX.>", "sluice.>"} {
		sub, err := build.nc.SubscribeSync(subject)
		if err != nil {
			t.Fatal(err)
		}
		if err := build.nc.Flush(); err != nil {
			t.Fatal(err)
		}
		waitRefused(t, build, subject)
		_ = sub.Unsubscribe()
	}

	plain := connect(t, srv, "build", "")
	before := plain.nc.LastError()
	sctx, scancel := context.WithTimeout(ctx, 2*time.Second)
	_, err := plain.js.Stream(sctx, "BUILD")
	scancel()
	if err == nil {
		t.Fatal("a JetStream request without the inbox prefix got an answer")
	}
	if err := natsconn.CheckRefused(plain.nc, before); err == nil || !strings.Contains(err.Error(), "subscribe to \"_INBOX.") {
		t.Fatalf("CheckRefused = %v", err)
	}
}

// Dead letters carry every service's event bodies: notify reads them for
// the API (checked in TestServicesWorkAsTheirUsers), no other service may.
func TestOnlyNotifyReadsDeadLetters(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	srv, adm := provisioned(ctx, t)
	if _, err := adm.Publish(ctx, "sluice.deadletter.release.outbox", []byte("a release event")); err != nil {
		t.Fatal(err)
	}
	build := connect(t, srv, "build", natsauth.InboxPrefix("build"))
	st, err := build.js.Stream(ctx, natsprovision.DeadLetterStream)
	if err != nil {
		t.Fatal(err) // its stream's state it may read: every service applies it
	}
	gctx, gcancel := context.WithTimeout(ctx, 2*time.Second)
	defer gcancel()
	if m, err := st.GetMsg(gctx, 1); err == nil {
		t.Fatalf("build read a dead letter: %s", m.Data)
	}
	waitRefused(t, build, "$JS.API.DIRECT.GET.DEADLETTER")
}
