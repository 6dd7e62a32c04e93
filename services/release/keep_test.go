package release

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/nats-io/nats.go/jetstream"

	releaseeventsv1 "github.com/sluicehq/sluice/proto/gen/sluice/release/events/v1"
	releasev1 "github.com/sluicehq/sluice/proto/gen/sluice/release/v1"

	"github.com/sluicehq/sluice/platform/artifacts"
	"github.com/sluicehq/sluice/platform/egress"
	"github.com/sluicehq/sluice/platform/events"
	"github.com/sluicehq/sluice/platform/executor"
	"github.com/sluicehq/sluice/platform/runcancel"
	"github.com/sluicehq/sluice/platform/servicekit/servicekittest"
	"github.com/sluicehq/sluice/platform/sqldb"
	"github.com/sluicehq/sluice/services/release/domain"
)

// replica is a second release service on the harness's database and NATS,
// not started: the tests call its pruning (with a clock of their own) and
// its copying directly, as the running replica's loop and stage do.
func (h *harness) replica() *Service {
	h.t.Helper()
	cfg := h.cfg.WithDefaults()
	db, err := sqldb.Open(h.t.Context(), cfg.DatabaseURL, Migrations())
	if err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(func() { _ = db.Close() })
	log := slog.New(servicekittest.StrictAudit(h.t, slog.NewTextHandler(h.t.Output(), &slog.HandlerOptions{Level: slog.LevelInfo})))
	exec, err := executor.NewLocal(cfg.Isolation, 0, log)
	if err != nil {
		h.t.Fatal(err)
	}
	policy, err := egress.New("allow-egress", cfg.AllowEgress)
	if err != nil {
		h.t.Fatal(err)
	}
	s, err := NewService(cfg, Deps{
		Store: NewStore(db), DB: db, Outbox: events.NewRelay(db, h.js, log), JetStream: h.js, Source: h.source,
		Executor: exec, Egress: policy, Log: log, Cancels: runcancel.New(db, 0, log),
	})
	if err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(s.Close)
	return s
}

// deleteBuildObject deletes the build's object of run's app artifact, as
// the 30-day max_age of sluice-artifacts does.
func (h *harness) deleteBuildObject(runID string) {
	h.t.Helper()
	store, err := artifacts.Open(h.t.Context(), h.js)
	if err != nil {
		h.t.Fatal(err)
	}
	if err := store.Delete(h.t.Context(), artifacts.ObjectName(runID, "app")); err != nil {
		h.t.Fatal(err)
	}
}

// keptObjects lists the objects of KeptBucket.
func (h *harness) keptObjects() []string {
	h.t.Helper()
	obs, err := h.js.ObjectStore(h.t.Context(), KeptBucket)
	if err != nil {
		h.t.Fatal(err)
	}
	infos, err := obs.List(h.t.Context())
	if err != nil && !errors.Is(err, jetstream.ErrNoObjectsFound) {
		h.t.Fatal(err)
	}
	var names []string
	for _, info := range infos {
		names = append(names, info.Name)
	}
	slices.Sort(names)
	return names
}

// TestRollbackFindsTheArtifactsAfterTheBuildsExpired: a release's
// artifacts are copied into release's own store when it is made, so a
// rollback to it deploys them after the build's objects expired.
func TestRollbackFindsTheArtifactsAfterTheBuildsExpired(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	first := h.initialCommit()
	run1, _ := h.release(first)
	run2, _ := h.release(h.repo.CommitFiles("feat: greet", map[string]string{"greeting": "hi\n"}))
	if got, want := h.keptObjects(), []string{run1 + "/app", run2 + "/app"}; !slices.Equal(got, want) {
		t.Fatalf("%s holds %q; want %q", KeptBucket, got, want)
	}
	h.deleteBuildObject(run1)
	h.deleteBuildObject(run2)

	res, err := h.client.Rollback(t.Context(), &releasev1.RollbackRequest{Repository: repoName, Environment: "staging"})
	if err != nil {
		t.Fatal(err)
	}
	d := res.GetDeployment()
	if d.GetVersion() != "v0.1.0" || d.GetStatus() != releasev1.DeploymentStatus_DEPLOYMENT_STATUS_VERIFIED {
		t.Fatalf("rollback = %v", d)
	}
	if got := h.state("staging", "app"); got != "#!/bin/sh\necho app built from "+first+"\n" {
		t.Errorf("staging runs the artifact %q; want v0.1.0's", got)
	}
	lines, _ := h.logs(d.GetId(), "")
	if !slices.ContainsFunc(lines, func(l string) bool {
		return strings.Contains(l, "artifact app (") && strings.Contains(l, "from "+KeptBucket)
	}) {
		t.Errorf("the rollback's log does not say the artifact came from %s:\n%s", KeptBucket, strings.Join(lines, "\n"))
	}
}

// TestKeepingArtifactsIsIdempotent: copying the artifacts again (a
// redelivered event whose first delivery copied them before it failed)
// finds the copy, also once the build's object is gone; an artifact that
// cannot be copied for good is recorded without a copy, and a store that
// does not answer fails the delivery.
func TestKeepingArtifactsIsIdempotent(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.release(h.initialCommit()) // the service provisioned its buckets
	s := h.replica()
	ctx := t.Context()
	build, err := artifacts.Open(ctx, h.js)
	if err != nil {
		t.Fatal(err)
	}
	const runID = "run-kept"
	a, err := build.Put(ctx, artifacts.Artifact{Name: "app", Object: artifacts.ObjectName(runID, "app")}, "", bytes.NewReader([]byte("app")), 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	st := stage{runID: runID, repo: domain.Repository{Name: repoName}, log: s.log}
	arts := []domain.Artifact{{Name: a.Name, Object: a.Object, SHA256: a.SHA256, Size: a.Size}}
	kept, err := s.keepArtifacts(ctx, st, arts)
	if err != nil {
		t.Fatal(err)
	}
	if len(kept) != 1 || kept[0].KeptObject != runID+"/app" || arts[0].KeptObject != "" {
		t.Fatalf("kept = %+v (given %+v)", kept, arts)
	}
	obs, err := h.js.ObjectStore(ctx, KeptBucket)
	if err != nil {
		t.Fatal(err)
	}
	info, err := obs.GetInfo(ctx, runID+"/app")
	if err != nil {
		t.Fatal(err)
	}
	h.deleteBuildObject(runID)
	again, err := s.keepArtifacts(ctx, st, arts)
	if err != nil || !slices.Equal(again, kept) {
		t.Fatalf("copying again = %+v, %v; want %+v", again, err, kept)
	}
	if info2, err := obs.GetInfo(ctx, runID+"/app"); err != nil || info2.NUID != info.NUID {
		t.Errorf("copying again stored the object again: %v, %v", info2, err)
	}

	// Gone from the build's store, or not what the build recorded: no copy.
	bad := slices.Clone(arts)
	bad[0].Object = "run-other/app"
	if got, err := s.keepArtifacts(ctx, stage{runID: "run-other", repo: st.repo, log: s.log}, bad); err != nil || got[0].KeptObject != "" {
		t.Errorf("an artifact the build's store lost = %+v, %v; want it without a copy", got, err)
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := s.keepArtifacts(cancelled, st, arts); err == nil || artifacts.Permanent(err) {
		t.Errorf("copying with an ended context = %v; want an error the next delivery retries", err)
	}
}

// TestPruningKeepsWhatADeployOrRollbackMayNeed: with keep-releases 2, the
// releases running somewhere, the last two verified ones of each
// environment and a release newer than any running keep their artifacts;
// an older one's are deleted once it is a week old, and a rollback to it
// is refused naming the setting.
func TestPruningKeepsWhatADeployOrRollbackMayNeed(t *testing.T) {
	t.Parallel()
	h := newHarness(t, func(c *Config) { c.KeepReleases = 2 })
	run1, _ := h.release(h.initialCommit())                                                       // v0.1.0
	run2, _ := h.release(h.repo.CommitFiles("feat: two", map[string]string{"greeting": "2\n"}))   // v0.2.0
	run3, _ := h.release(h.repo.CommitFiles("feat: three", map[string]string{"greeting": "3\n"})) // v0.3.0
	run4, _ := h.release(h.repo.CommitFiles("feat: four", map[string]string{"greeting": "4\n"}))  // v0.4.0
	// v0.4.1 fails its verification in staging (bad) and is rolled back:
	// newer than anything running, it is kept all the same.
	run5 := h.run(h.repo.CommitFiles("fix: break", map[string]string{"health": "broken\n"}), "main", h.pipeline())
	if fin := h.finished(run5); fin.GetOutcome() != releaseeventsv1.ReleaseOutcome_RELEASE_OUTCOME_FAILED || fin.GetVersion() != "v0.4.1" || !fin.GetRolledBack() {
		t.Fatalf("the breaking release = %v", fin)
	}
	// Production goes back to v0.2.0: staging runs v0.4.0 (v0.3.0 verified
	// before), production v0.2.0 (v0.4.0 verified before).
	if _, err := h.client.Rollback(t.Context(), &releasev1.RollbackRequest{Repository: repoName, Environment: "production", ToVersion: "v0.2.0"}); err != nil {
		t.Fatal(err)
	}
	all := []string{run1 + "/app", run2 + "/app", run3 + "/app", run4 + "/app", run5 + "/app"}
	slices.Sort(all)

	s := h.replica()
	if releases, objects, err := s.pruneArtifacts(t.Context(), time.Now()); err != nil || releases != 0 || objects != 0 {
		t.Fatalf("pruning releases younger than a week = %d releases, %d objects, %v; want none", releases, objects, err)
	}
	later := time.Now().Add(keepNewReleases + time.Hour)
	if releases, objects, err := s.pruneArtifacts(t.Context(), later); err != nil || releases != 1 || objects != 1 {
		t.Fatalf("pruning = %d releases, %d objects, %v; want v0.1.0's one", releases, objects, err)
	}
	want := slices.DeleteFunc(slices.Clone(all), func(o string) bool { return o == run1+"/app" })
	if got := h.keptObjects(); !slices.Equal(got, want) {
		t.Fatalf("%s holds %q; want %q", KeptBucket, got, want)
	}
	// The API says which release was pruned.
	rels, err := h.client.ListReleases(t.Context(), &releasev1.ListReleasesRequest{Repository: repoName})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rels.GetReleases() {
		if pruned := r.GetPruneTime() != nil; pruned != (r.GetVersion() == "v0.1.0") {
			t.Errorf("release %s has prune_time %v; want it set for v0.1.0 only", r.GetVersion(), r.GetPruneTime())
		}
	}
	// Again, as another replica would: nothing more.
	if releases, objects, err := h.replica().pruneArtifacts(t.Context(), later); err != nil || releases != 0 || objects != 0 {
		t.Fatalf("pruning again = %d releases, %d objects, %v; want none", releases, objects, err)
	}

	_, err = h.client.Rollback(t.Context(), &releasev1.RollbackRequest{Repository: repoName, Environment: "staging", ToVersion: "v0.1.0"})
	if connect.CodeOf(err) != connect.CodeFailedPrecondition || !strings.Contains(err.Error(), "release v0.1.0 of \"app\" can no longer be deployed") ||
		!strings.Contains(err.Error(), "keep-releases setting, $SLUICE_RELEASE_KEEP_RELEASES, now 2") {
		t.Fatalf("rollback to the pruned v0.1.0 = %v; want failed_precondition naming the release and keep-releases", err)
	}
	// A kept release is still rolled back to, from its copy.
	h.deleteBuildObject(run3)
	res, err := h.client.Rollback(t.Context(), &releasev1.RollbackRequest{Repository: repoName, Environment: "staging", ToVersion: "v0.3.0"})
	if err != nil || res.GetDeployment().GetStatus() != releasev1.DeploymentStatus_DEPLOYMENT_STATUS_VERIFIED {
		t.Fatalf("rollback to the kept v0.3.0 = %v, %v", res.GetDeployment(), err)
	}

	// Staging now runs v0.3.0; its last two verified are v0.3.0 and
	// v0.4.0, production's v0.2.0 and v0.4.0: v0.4.1 stays newer than
	// anything running. Nothing more goes.
	if releases, objects, err := s.pruneArtifacts(t.Context(), later); err != nil || releases != 0 || objects != 0 {
		t.Fatalf("pruning after the rollback = %d releases, %d objects, %v; want none", releases, objects, err)
	}
}
