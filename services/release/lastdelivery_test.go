package release

import (
	"context"
	"log/slog"
	"net/http"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/sluicehq/sluice/platform/egress"
	"github.com/sluicehq/sluice/platform/egress/egresstest"
	"github.com/sluicehq/sluice/platform/events"
	"github.com/sluicehq/sluice/platform/executor"
	"github.com/sluicehq/sluice/platform/runcancel"
	"github.com/sluicehq/sluice/platform/servicekit/servicekittest"
	"github.com/sluicehq/sluice/platform/steplog"
	sourceeventsv1 "github.com/sluicehq/sluice/proto/gen/sluice/source/events/v1"
	"github.com/sluicehq/sluice/proto/gen/sluice/source/v1/sourcev1connect"
	testeventsv1 "github.com/sluicehq/sluice/proto/gen/sluice/test/events/v1"
	testv1 "github.com/sluicehq/sluice/proto/gen/sluice/test/v1"
)

// delivery is a message's delivery count out of the declared 5.
type delivery uint64

func (d delivery) NumDelivered() uint64 { return uint64(d) }
func (d delivery) MaxDeliver() int      { return 5 }
func (d delivery) Last() bool           { return int(d) >= d.MaxDeliver() }

// On the last delivery a release stage that cannot go on (here: source,
// asked for the commits, is unreachable) is ended FAILED, with ReleaseFinished in the outbox, so the
// run does not stay "running" after JetStream gives the event up.
func TestLastDeliveryEndsTheStageFailed(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	ctx := context.Background()
	db := servicekittest.OpenDB(t, Migrations(), steplog.Migrations(), runcancel.Migrations())
	cfg := h.cfg
	cfg.SourceURL = "http://127.0.0.1:1" // nothing listens there
	cfg = cfg.WithDefaults()
	log := slog.New(slog.NewTextHandler(t.Output(), nil))
	svc, err := NewService(cfg, Deps{
		Store: NewStore(db), DB: db, JetStream: h.js, Source: sourcev1connect.NewSourceServiceClient(http.DefaultClient, cfg.SourceURL),
		Executor: &executor.Local{}, Outbox: events.NewRelay(db, h.js, log), Egress: egresstest.Policy(t, egress.Local, egress.Loopback), Log: log,
		Cancels: runcancel.New(db, 0, log),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { svc.Close() })
	commit := h.initialCommit()
	runID := uuid.Must(uuid.NewV7()).String()
	ev, err := events.New(&testeventsv1.TestRunFinished{
		RunId: runID, TestRunId: "t-" + runID, Commit: commit, Branch: "main",
		Repository: &sourceeventsv1.RepositoryRef{Id: "repo-1", Name: repoName, Url: h.repo.Dir},
		Status:     testv1.TestRunStatus_TEST_RUN_STATUS_PASSED,
		Pipeline:   h.pipeline(),
	}, "t-"+runID, runID)
	if err != nil {
		t.Fatal(err)
	}
	if err := svc.HandleTestRunFinished(ctx, ev, delivery(1)); err == nil {
		t.Fatal("first delivery succeeded with source unreachable; want an error to retry")
	}
	if err := svc.HandleTestRunFinished(ctx, ev, delivery(5)); err != nil {
		t.Fatalf("last delivery: %v; want the stage ended", err)
	}
	var headers, body string
	if err := db.QueryRowContext(ctx, `SELECT headers, body FROM outbox WHERE subject = $1`, "sluice.release.run.finished").Scan(&headers, &body); err != nil {
		t.Fatalf("no ReleaseFinished in the outbox: %v", err)
	}
	if !strings.Contains(body, `"RELEASE_OUTCOME_FAILED"`) || !strings.Contains(body, "gave up after 5 deliveries: list commits of "+repoName) {
		t.Fatalf("ReleaseFinished body: %s", body)
	}
}
