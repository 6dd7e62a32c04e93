package release

import (
	"context"
	"log/slog"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/sluicehq/sluice/platform/events"
	"github.com/sluicehq/sluice/platform/executor"
	"github.com/sluicehq/sluice/proto/gen/sluice/source/events/v1"
	sourcev1 "github.com/sluicehq/sluice/proto/gen/sluice/source/v1"
	"github.com/sluicehq/sluice/proto/gen/sluice/test/events/v1"
	testv1 "github.com/sluicehq/sluice/proto/gen/sluice/test/v1"
)

// delivery is a message's delivery count out of the declared 5.
type delivery uint64

func (d delivery) NumDelivered() uint64 { return uint64(d) }
func (d delivery) MaxDeliver() int      { return 5 }
func (d delivery) Last() bool           { return int(d) >= d.MaxDeliver() }

type noKick struct{}

func (noKick) Kick() {}

// On the last delivery a release stage that cannot go on (here: build is
// unreachable) is ended FAILED, with ReleaseFinished in the outbox, so the
// run does not stay "running" after JetStream gives the event up.
func TestLastDeliveryEndsTheStageFailed(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	db, err := OpenDB(ctx, "sqlite:"+filepath.Join(t.TempDir(), "release.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	cfg := h.cfg
	cfg.BuildURL = "http://127.0.0.1:1" // nothing listens there
	cfg = cfg.WithDefaults()
	src, build := NewClients(cfg, http.DefaultClient)
	svc, err := NewService(cfg, Deps{
		Store: NewStore(db), JetStream: h.js, Source: src, Build: build,
		Executor: &executor.Local{}, Outbox: noKick{}, Log: slog.New(slog.NewTextHandler(t.Output(), nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { svc.Close() })
	commit := h.initialCommit()
	runID := uuid.Must(uuid.NewV7()).String()
	h.source.addRun(&sourcev1.Run{
		Id: runID, RepositoryId: "repo-1", Repository: repoName, Commit: commit, Branch: "main", Ref: "main",
		Pipeline: h.pipeline(),
	})
	ev, err := events.New(&testeventsv1.TestRunFinished{
		RunId: runID, TestRunId: "t-" + runID, Commit: commit, Branch: "main",
		Repository: &sourceeventsv1.RepositoryRef{Id: "repo-1", Name: repoName, Url: h.repo.Dir},
		Status:     testv1.TestRunStatus_TEST_RUN_STATUS_PASSED,
	}, "t-"+runID, runID)
	if err != nil {
		t.Fatal(err)
	}
	if err := svc.HandleTestRunFinished(ctx, ev, delivery(1)); err == nil {
		t.Fatal("first delivery succeeded with build unreachable; want an error to retry")
	}
	if err := svc.HandleTestRunFinished(ctx, ev, delivery(5)); err != nil {
		t.Fatalf("last delivery: %v; want the stage ended", err)
	}
	var headers, body string
	if err := db.QueryRowContext(ctx, `SELECT headers, body FROM outbox WHERE subject = $1`, "sluice.release.run.finished").Scan(&headers, &body); err != nil {
		t.Fatalf("no ReleaseFinished in the outbox: %v", err)
	}
	if !strings.Contains(body, `"RELEASE_OUTCOME_FAILED"`) || !strings.Contains(body, "gave up after 5 deliveries: get the build of run "+runID) {
		t.Fatalf("ReleaseFinished body: %s", body)
	}
}
