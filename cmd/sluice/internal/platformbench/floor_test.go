package platformbench

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/sluicehq/sluice/deploy"
	"github.com/sluicehq/sluice/platform/gittest"
	"github.com/sluicehq/sluice/platform/natsprovision"
)

// floorRepo makes a repository with a file and returns its path and head.
func floorRepo(t *testing.T) (string, string) {
	t.Helper()
	repo := gittest.New(t)
	head := repo.CommitFile(".sluice.yaml", pipeline, "feat: floor")
	return repo.Dir, head
}

// hopMessages are stand-ins for the platform's events: a CloudEvents-sized
// header set and a body.
func hopMessages() map[string]*nats.Msg {
	out := map[string]*nats.Msg{}
	for _, s := range hopSubjects(runPath) {
		m := nats.NewMsg(s)
		m.Header.Set("ce-id", "0196f1c2-0000-7000-8000-000000000000")
		m.Header.Set("ce-type", "dev.cdevents.test."+s)
		m.Data = []byte(`{"context":{"id":"x"},"subject":{"id":"y"},"customData":{"runId":"z"}}` + strings.Repeat(" ", 600))
		out[s] = m
	}
	return out
}

// TestFloorDoesThePath runs the floor and checks that each run did what
// runPath says: every hop's event went through its stream, every
// transaction is in its service's database, and the checkouts and
// commands took time.
func TestFloorDoesThePath(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	repo, head := floorRepo(t)
	f, err := startFloor(ctx, floorConfig{Dir: t.TempDir(), RepoURL: repo, Messages: hopMessages()}, runPath)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := f.stop(context.Background()); err != nil {
			t.Error(err)
		}
	}()

	const runs = 3
	for range runs {
		tm, err := f.run(ctx, head)
		if err != nil {
			t.Fatal(err)
		}
		if tm.Transactions <= 0 || tm.Checkouts <= 0 || tm.Commands <= 0 || tm.Hops() <= 0 {
			t.Errorf("times %+v: want every part above zero", tm)
		}
	}
	// Two runs at once share the path without mixing their events up.
	errs := make(chan error, 2)
	for range 2 {
		go func() {
			_, err := f.run(ctx, head)
			errs <- err
		}()
	}
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	const total = runs + 2

	wantRows := map[string]int{}
	for _, st := range runPath {
		for _, o := range st.ops {
			if o == tx {
				wantRows[st.service] += total
			}
		}
	}
	for service, want := range wantRows {
		var got int
		if err := f.dbs[service].QueryRowContext(ctx, `SELECT COUNT(*) FROM floor_rows`).Scan(&got); err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Errorf("%s database: %d rows, want %d", service, got, want)
		}
	}
	for i, st := range runPath {
		if st.publish == "" {
			continue
		}
		next := runPath[i+1]
		cons, err := f.js.Consumer(ctx, next.stream, next.durable)
		if err != nil {
			t.Fatal(err)
		}
		info, err := cons.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if got := info.Delivered.Consumer; got != total {
			t.Errorf("%s: %d deliveries, want %d (one per run)", next.durable, got, total)
		}
		if info.NumPending != 0 || info.NumRedelivered != 0 {
			t.Errorf("%s: %d pending, %d redelivered; want none", next.durable, info.NumPending, info.NumRedelivered)
		}
		// The ack of the last event may still be on its way.
		deadline := time.Now().Add(5 * time.Second)
		for info.NumAckPending != 0 && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
			if info, err = cons.Info(ctx); err != nil {
				t.Fatal(err)
			}
		}
		if info.NumAckPending != 0 {
			t.Errorf("%s: %d unacknowledged", next.durable, info.NumAckPending)
		}
	}
	entries, err := os.ReadDir(filepath.Join(f.cfg.Dir, "workspaces"))
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 0 {
		t.Errorf("%d workspaces left behind", len(entries))
	}
}

func TestFloorRefusesMissingMessages(t *testing.T) {
	t.Parallel()
	msgs := hopMessages()
	delete(msgs, "sluice.test.testrun.finished")
	f, err := startFloor(context.Background(), floorConfig{Dir: t.TempDir(), RepoURL: "x", Messages: msgs}, runPath)
	if f != nil {
		_ = f.stop(context.Background())
	}
	if err == nil || !strings.Contains(err.Error(), "sluice.test.testrun.finished") {
		t.Fatalf("err = %v, want one naming the missing subject", err)
	}
}

// TestPathMatchesTheDeclaredConsumers checks that each hop's subject is one
// the next stage's declared consumer takes, so the floor's events go where
// the platform's go.
func TestPathMatchesTheDeclaredConsumers(t *testing.T) {
	t.Parallel()
	if runPath[0].durable != "" || runPath[len(runPath)-1].publish != "" {
		t.Fatal("the path must start with a trigger and end with a stage that publishes nothing")
	}
	for i, st := range runPath[1:] {
		prev := runPath[i]
		if prev.publish == "" {
			t.Fatalf("stage %d (%s) has a consumer but the stage before it publishes nothing", i+1, st.service)
		}
		filters := declaredFilters(t, st.stream, st.durable)
		if !matchesAny(prev.publish, filters) {
			t.Errorf("%s on %s takes %v, not %s", st.durable, st.stream, filters, prev.publish)
		}
		if st.workers < 1 {
			t.Errorf("%s: %d workers", st.durable, st.workers)
		}
	}
}

func matchesAny(subject string, filters []string) bool {
	for _, f := range filters {
		if server.SubjectMatchesFilter(subject, f) {
			return true
		}
	}
	return false
}

func declaredFilters(t *testing.T, stream, durable string) []string {
	t.Helper()
	d, err := natsprovision.Load(deploy.NATS())
	if err != nil {
		t.Fatal(err)
	}
	for _, files := range d.Consumers {
		for _, c := range files {
			if c.Stream == stream && c.Config.Durable == durable {
				if c.Config.FilterSubject != "" {
					return []string{c.Config.FilterSubject}
				}
				return c.Config.FilterSubjects
			}
		}
	}
	t.Fatalf("no consumer %s on %s is declared in deploy/nats", durable, stream)
	return nil
}
