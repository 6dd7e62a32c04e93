// Package platformbench measures the all-in-one platform's own overhead
// per run: wall time from TriggerRun to the run's end (release verified)
// minus the time spent inside build and test steps, and the throughput with
// several runs in flight. Beside it, on the same machine in the same run, it
// measures a floor: the durable work a run cannot avoid, done the way the
// platform does it but with no Sluice logic (runPath says exactly what), so
// that the overhead can be read as a ratio that means the same on a slow
// machine as on a fast one. Run it with `make bench`.
package platformbench

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicehq/sluice/deploy"
	"github.com/sluicehq/sluice/platform/egress"
	"github.com/sluicehq/sluice/platform/gitauth"
	"github.com/sluicehq/sluice/platform/gitcheckout"
	"github.com/sluicehq/sluice/platform/natsauth"
	"github.com/sluicehq/sluice/platform/natsconn"
	"github.com/sluicehq/sluice/platform/natsprovision"
	"github.com/sluicehq/sluice/platform/sqldb"

	"github.com/sluicehq/sluice/cmd/sluice/internal/allinone"
	"github.com/sluicehq/sluice/cmd/sluice/internal/embeddednats"
)

// floorConfig says where the floor keeps its data and what it publishes.
type floorConfig struct {
	// Dir holds the floor's NATS store, databases and workspaces.
	Dir string
	// RepoURL is the repository the checkouts read (the one the platform
	// builds, so that the checkouts copy the same objects).
	RepoURL string
	// Messages has a message for each hop subject of the path: the floor
	// publishes its headers and body (with a fresh Nats-Msg-Id), so each hop
	// carries what the real event carries.
	Messages map[string]*nats.Msg
	Log      *slog.Logger
}

// floor replays runPath against its own embedded NATS server (started and
// provisioned as the all-in-one process does) and its own SQLite databases.
type floor struct {
	cfg  floorConfig
	path []stage
	ns   *embeddednats.Server
	nc   *nats.Conn
	js   jetstream.JetStream
	dbs  map[string]*sqldb.DB
	// environment is the one environment's deploy lock.
	environment sync.Mutex
	// egress is what the checkouts may read: `sluice up`'s policy, as the
	// platform's stages check out under it.
	egress *egress.Policy

	seq    atomic.Int64
	mu     sync.Mutex
	runs   map[string]*floorRun
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// floorTimes is where one floor run's time went.
type floorTimes struct {
	Wall, Transactions, Checkouts, Commands time.Duration
}

// Hops is the rest of the wall time: publishes, fetches, acks and the
// scheduling between them.
func (t floorTimes) Hops() time.Duration {
	return t.Wall - t.Transactions - t.Checkouts - t.Commands
}

type floorRun struct {
	id     string
	commit string
	done   chan error // buffered: the first outcome wins

	mu    sync.Mutex
	times floorTimes
}

func (r *floorRun) finish(err error) {
	select {
	case r.done <- err:
	default:
	}
}

func (r *floorRun) add(o op, d time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	switch o {
	case tx:
		r.times.Transactions += d
	case checkout:
		r.times.Checkouts += d
	case command:
		r.times.Commands += d
	case lockEnvironment, unlockEnvironment:
	}
}

// startFloor starts the floor's NATS server, declarations, databases and
// consumers.
func startFloor(ctx context.Context, cfg floorConfig, path []stage) (_ *floor, err error) {
	if cfg.Dir == "" || cfg.RepoURL == "" {
		return nil, errors.New("floor: Dir and RepoURL are required")
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	for _, s := range hopSubjects(path) {
		if cfg.Messages[s] == nil {
			return nil, fmt.Errorf("floor: Messages has no message for hop subject %s", s)
		}
	}
	f := &floor{cfg: cfg, path: path, dbs: map[string]*sqldb.DB{}, runs: map[string]*floorRun{}}
	if f.egress, err = egress.New("allow-egress", allinone.DemoAllowEgress()); err != nil {
		return nil, fmt.Errorf("floor: %w", err)
	}
	defer func() {
		if err != nil {
			_ = f.stop(context.WithoutCancel(ctx))
		}
	}()
	if f.ns, err = embeddednats.Start(embeddednats.Config{
		StoreDir: filepath.Join(cfg.Dir, "nats"),
		Users:    []natsauth.User{{Name: natsauth.Admin, All: true}},
	}); err != nil {
		return nil, fmt.Errorf("floor: %w", err)
	}
	if f.nc, f.js, err = natsconn.Connect(natsconn.Config{URL: f.ns.ClientURL(), Name: "sluice-floor", User: natsauth.Admin, Password: f.ns.Password(natsauth.Admin)}, cfg.Log); err != nil {
		return nil, fmt.Errorf("floor: %w", err)
	}
	if err := natsprovision.ApplyAll(ctx, f.js, deploy.NATS(), natsprovision.Options{Log: cfg.Log, WaitForStreams: 30 * time.Second}); err != nil {
		return nil, fmt.Errorf("floor: provision: %w", err)
	}
	for _, st := range path {
		if f.dbs[st.service] != nil {
			continue
		}
		db, err := sqldb.Open(ctx, "sqlite:"+filepath.Join(cfg.Dir, st.service, st.service+".db"))
		if err != nil {
			return nil, fmt.Errorf("floor: %w", err)
		}
		f.dbs[st.service] = db
		if _, err := db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS floor_rows (
			id TEXT PRIMARY KEY,
			run_id TEXT NOT NULL,
			body BLOB NOT NULL,
			created_at BIGINT NOT NULL
		)`); err != nil {
			return nil, fmt.Errorf("floor: create table in %s: %w", st.service, err)
		}
	}
	cctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	f.cancel = cancel
	for i, st := range path {
		if st.durable == "" {
			continue
		}
		cons, err := f.js.Consumer(ctx, st.stream, st.durable)
		if err != nil {
			return nil, fmt.Errorf("floor: consumer %s on %s: %w", st.durable, st.stream, err)
		}
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			f.consume(cctx, i, cons)
		}()
	}
	return f, nil
}

// stop ends the consumers, then closes the databases and the server.
func (f *floor) stop(ctx context.Context) error {
	if f.cancel != nil {
		f.cancel()
	}
	f.wg.Wait()
	if f.nc != nil {
		f.nc.Close()
	}
	var errs []error
	for _, db := range f.dbs {
		errs = append(errs, db.Close())
	}
	if f.ns != nil {
		errs = append(errs, f.ns.Stop(ctx))
	}
	return errors.Join(errs...)
}

// run replays one run of commit along the path and returns where its time
// went once the last stage committed.
func (f *floor) run(ctx context.Context, commit string) (floorTimes, error) {
	r := &floorRun{
		id:     fmt.Sprintf("floor-run-%026d", f.seq.Add(1)),
		commit: commit,
		done:   make(chan error, 1),
	}
	f.mu.Lock()
	f.runs[r.id] = r
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		delete(f.runs, r.id)
		f.mu.Unlock()
	}()
	start := time.Now()
	if err := f.do(ctx, 0, r); err != nil {
		return floorTimes{}, err
	}
	select {
	case err := <-r.done:
		if err != nil {
			return floorTimes{}, err
		}
	case <-ctx.Done():
		return floorTimes{}, fmt.Errorf("floor run %s: %w", r.id, ctx.Err())
	}
	wall := time.Since(start)
	r.mu.Lock()
	defer r.mu.Unlock()
	t := r.times
	t.Wall = wall
	return t, nil
}

// do is stage i's work for run r, ending with its hand-on: the next hop's
// publish, or the end of the run.
func (f *floor) do(ctx context.Context, i int, r *floorRun) error {
	st := f.path[i]
	locked := false
	defer func() {
		if locked {
			f.environment.Unlock()
		}
	}()
	for n, o := range st.ops {
		start := time.Now()
		switch o {
		case tx:
			if err := f.commit(ctx, i, r, n); err != nil {
				return err
			}
		case checkout:
			if err := f.checkout(ctx, i, r); err != nil {
				return err
			}
		case command:
			if err := exec.CommandContext(ctx, "/bin/sh", "-c", "true").Run(); err != nil {
				return fmt.Errorf("floor: %s command: %w", st.service, err)
			}
		case lockEnvironment:
			f.environment.Lock()
			locked = true
		case unlockEnvironment:
			f.environment.Unlock()
			locked = false
		}
		r.add(o, time.Since(start))
	}
	if st.publish == "" {
		r.finish(nil)
		return nil
	}
	tmpl := f.cfg.Messages[st.publish]
	m := nats.NewMsg(st.publish)
	m.Header = maps.Clone(tmpl.Header)
	m.Header.Set(nats.MsgIdHdr, r.id+"/"+strconv.Itoa(i))
	m.Data = tmpl.Data
	if _, err := f.js.PublishMsg(ctx, m); err != nil {
		return fmt.Errorf("floor: publish %s: %w", st.publish, err)
	}
	return nil
}

// commit is transaction n of stage i: one row the size of the event the
// stage hands on (the last stage: the one it received), as an outbox row
// or a folded event is.
func (f *floor) commit(ctx context.Context, i int, r *floorRun, n int) error {
	st := f.path[i]
	subject := st.publish
	if subject == "" {
		subject = f.path[i-1].publish
	}
	body := f.cfg.Messages[subject].Data
	err := f.dbs[st.service].InTx(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO floor_rows (id, run_id, body, created_at) VALUES ($1, $2, $3, $4)`,
			r.id+"/"+strconv.Itoa(i)+"/"+strconv.Itoa(n), r.id, body, time.Now().UnixNano())
		return err
	})
	if err != nil {
		return fmt.Errorf("floor: %s transaction: %w", st.service, err)
	}
	return nil
}

// checkout checks the run's commit out into a fresh workspace and removes
// it, as each stage does.
func (f *floor) checkout(ctx context.Context, i int, r *floorRun) error {
	ws := filepath.Join(f.cfg.Dir, "workspaces", r.id+"-"+strconv.Itoa(i))
	defer func() { _ = os.RemoveAll(ws) }()
	if err := gitcheckout.Checkout(ctx, f.egress, f.cfg.RepoURL, r.commit, ws, gitauth.Credential{}); err != nil {
		return fmt.Errorf("floor: %s checkout: %w", f.path[i].service, err)
	}
	return nil
}

// consume pulls stage i's events as platform/events.Consumer does: up to
// the free workers' worth that are there now, else a wait of up to 2 s for
// one, each handled in its own goroutine.
func (f *floor) consume(ctx context.Context, i int, cons jetstream.Consumer) {
	workers := max(f.path[i].workers, 1)
	slots := make(chan struct{}, workers)
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			return
		}
		msgs, err := fetch(ctx, cons, 1+workers-len(slots))
		if err != nil && ctx.Err() == nil {
			f.cfg.Log.Warn("floor: fetch failed", slog.String("durable", f.path[i].durable), slog.Any("error", err))
			if len(msgs) == 0 {
				select {
				case <-ctx.Done():
				case <-time.After(time.Second):
				}
			}
		}
		if len(msgs) == 0 {
			<-slots
			continue
		}
		for n, m := range msgs {
			if n > 0 {
				slots <- struct{}{} // never blocks: fetched at most the free slots
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() { <-slots }()
				f.handle(ctx, i, m)
			}()
		}
	}
}

func fetch(ctx context.Context, cons jetstream.Consumer, n int) ([]jetstream.Msg, error) {
	batch, err := cons.FetchNoWait(n)
	if err != nil {
		return nil, err
	}
	msgs, err := collect(batch)
	if len(msgs) > 0 || err != nil {
		return msgs, err
	}
	fctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	batch, err = cons.Fetch(1, jetstream.FetchContext(fctx))
	if err != nil {
		if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
			return nil, nil
		}
		return nil, err
	}
	return collect(batch)
}

// collect drains a batch; running out of time is not an error.
func collect(batch jetstream.MessageBatch) ([]jetstream.Msg, error) {
	var msgs []jetstream.Msg
	for m := range batch.Messages() {
		msgs = append(msgs, m)
	}
	err := batch.Error()
	if errors.Is(err, nats.ErrTimeout) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		err = nil
	}
	return msgs, err
}

// handle is one event of stage i: the run's stage work, then the ack.
func (f *floor) handle(ctx context.Context, i int, m jetstream.Msg) {
	id := m.Headers().Get(nats.MsgIdHdr)
	runID, _, _ := strings.Cut(id, "/")
	f.mu.Lock()
	r := f.runs[runID]
	f.mu.Unlock()
	if r == nil {
		f.cfg.Log.Warn("floor: event of an unknown run", slog.String("msg_id", id))
		_ = m.Term()
		return
	}
	if err := f.do(ctx, i, r); err != nil {
		r.finish(err)
	}
	if err := m.DoubleAck(ctx); err != nil && ctx.Err() == nil {
		r.finish(fmt.Errorf("floor: ack %s: %w", m.Subject(), err))
	}
}

// hopCapture keeps the last message published on each hop subject of a
// path, so that the floor can publish what the platform publishes.
type hopCapture struct {
	mu   sync.Mutex
	msgs map[string]*nats.Msg
	subs []*nats.Subscription
}

// captureHops subscribes to path's hop subjects on nc.
func captureHops(nc *nats.Conn, path []stage) (*hopCapture, error) {
	c := &hopCapture{msgs: map[string]*nats.Msg{}}
	for _, subject := range hopSubjects(path) {
		sub, err := nc.Subscribe(subject, func(m *nats.Msg) {
			c.mu.Lock()
			defer c.mu.Unlock()
			c.msgs[m.Subject] = m
		})
		if err != nil {
			c.unsubscribe()
			return nil, fmt.Errorf("capture %s: %w", subject, err)
		}
		c.subs = append(c.subs, sub)
	}
	if err := nc.Flush(); err != nil {
		c.unsubscribe()
		return nil, fmt.Errorf("capture: %w", err)
	}
	return c, nil
}

func (c *hopCapture) unsubscribe() {
	for _, s := range c.subs {
		_ = s.Unsubscribe()
	}
}

// stop unsubscribes and returns a message of each hop subject, or an error
// naming the subjects nothing was seen on.
func (c *hopCapture) stop(path []stage) (map[string]*nats.Msg, error) {
	c.unsubscribe()
	c.mu.Lock()
	defer c.mu.Unlock()
	var missing []string
	for _, s := range hopSubjects(path) {
		if c.msgs[s] == nil {
			missing = append(missing, s)
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("capture: no message seen on %s", strings.Join(missing, ", "))
	}
	return maps.Clone(c.msgs), nil
}
