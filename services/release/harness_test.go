package release

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/goleak"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/sluicehq/sluice/deploy"
	buildv1 "github.com/sluicehq/sluice/proto/gen/sluice/build/v1"
	releaseeventsv1 "github.com/sluicehq/sluice/proto/gen/sluice/release/events/v1"
	releasev1 "github.com/sluicehq/sluice/proto/gen/sluice/release/v1"
	"github.com/sluicehq/sluice/proto/gen/sluice/release/v1/releasev1connect"
	sourceeventsv1 "github.com/sluicehq/sluice/proto/gen/sluice/source/events/v1"
	sourcev1 "github.com/sluicehq/sluice/proto/gen/sluice/source/v1"
	"github.com/sluicehq/sluice/proto/gen/sluice/source/v1/sourcev1connect"
	testeventsv1 "github.com/sluicehq/sluice/proto/gen/sluice/test/events/v1"
	testv1 "github.com/sluicehq/sluice/proto/gen/sluice/test/v1"

	"github.com/sluicehq/sluice/platform/artifacts"
	"github.com/sluicehq/sluice/platform/egress"
	"github.com/sluicehq/sluice/platform/events"
	"github.com/sluicehq/sluice/platform/gittest"
	"github.com/sluicehq/sluice/platform/natsprovision"
	"github.com/sluicehq/sluice/platform/natstest"
	"github.com/sluicehq/sluice/platform/servicekit"
	"github.com/sluicehq/sluice/platform/servicekit/servicekittest"
	"github.com/sluicehq/sluice/platform/sqldb/sqldbtest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, natstest.KnownLeaks()...)
}

// waitFor bounds every wait in these tests; a release takes well under a
// second here, so this only matters when something is broken.
const waitFor = 15 * time.Second

const repoName = "app"

// deployScript is the repository's deploy command. It records every run in
// $SLUICE_STATE_DIR/deploys, installs the artifact, copies the commit's
// health file into the state directory (the test's health server and the
// command verification read it) and records the version now deployed.
const deployScript = `set -eu
echo "$SLUICE_RELEASE_VERSION $SLUICE_ENVIRONMENT $SLUICE_REPOSITORY $GREETING" >> "$SLUICE_STATE_DIR/deploys"
test -x "$SLUICE_ARTIFACTS_DIR/app"
cp "$SLUICE_ARTIFACTS_DIR/app" "$SLUICE_STATE_DIR/app"
cp health "$SLUICE_STATE_DIR/health"
echo "$SLUICE_RELEASE_VERSION" > "$SLUICE_STATE_DIR/current"
`

// harness is a release service under test with everything around it: a
// real nats-server, a real git repository, a fake of source (it answers
// ListCommits only), and a health endpoint for verification.
type harness struct {
	t      *testing.T
	nats   *natstest.Server
	js     jetstream.JetStream
	repo   *gittest.Repo
	source *fakeSource
	// runs are what the test service would pass on in each run's
	// TestRunFinished: its pipeline and its build's artifacts.
	runs   map[string]passedOn
	cfg    Config
	health *httptest.Server
	// healthDown makes the health endpoint answer 503 whatever is deployed.
	healthDown atomic.Bool
	events     *eventLog
	proc       *servicekittest.Process
	client     releasev1connect.ReleaseServiceClient
}

// newHarness starts release with the test configuration, which tune may
// change first.
func newHarness(t *testing.T, tune ...func(*Config)) *harness {
	t.Helper()
	h := &harness{t: t}
	h.nats = natstest.Start(t)
	nc := h.nats.Connect(t)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	h.js = js
	// What the producers of release's inputs own: build's artifact store,
	// test's stream.
	servicekittest.Producers(t, js, "source", "build", "test")

	h.repo = gittest.New(t)
	h.source = &fakeSource{repo: h.repo.Git()}
	h.runs = map[string]passedOn{}
	sourceSrv := serve(t)(sourcev1connect.NewSourceServiceHandler(h.source))

	// The repository is local and the health endpoint is on loopback.
	h.cfg = Config{
		Settings:  servicekit.Settings{DataDir: t.TempDir(), DatabaseURL: sqldbtest.URL(t), AllowEgress: []string{egress.Local, egress.Loopback}},
		SourceURL: sourceSrv.URL,
	}
	// The staging health endpoint answers 200 while the deployed health
	// file says ok, 503 otherwise.
	h.health = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		env := strings.TrimPrefix(r.URL.Path, "/")
		data, err := os.ReadFile(filepath.Join(StateDir(h.cfg.DataDir, repoName, env), "health"))
		if err != nil || strings.TrimSpace(string(data)) != "ok" || h.healthDown.Load() {
			http.Error(w, "unhealthy", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok\n"))
	}))
	t.Cleanup(h.health.Close)

	for _, f := range tune {
		f(&h.cfg)
	}
	h.events = watchEvents(t, js)
	h.start()
	return h
}

// serve serves a Connect handler (path, handler) on a loopback test server.
func serve(t *testing.T) func(path string, handler http.Handler) *httptest.Server {
	return func(path string, handler http.Handler) *httptest.Server {
		mux := http.NewServeMux()
		mux.Handle(path, handler)
		srv := httptest.NewServer(mux)
		t.Cleanup(srv.Close)
		return srv
	}
}

// start composes the release module the way a binary does, with a real
// loopback server, and a Connect client for it.
func (h *harness) start() {
	h.t.Helper()
	log := slog.New(servicekittest.StrictAudit(h.t, slog.NewTextHandler(h.t.Output(), &slog.HandlerOptions{Level: slog.LevelInfo})))
	h.proc = servicekittest.Start(h.t, h.nats.URL, servicekittest.Options{Log: log, NATSName: "release-test", NoWait: true}, Module(h.cfg))
	h.client = releasev1connect.NewReleaseServiceClient(h.proc.Client, h.proc.URL)
}

// passedOn is what the test service passes on to release in a
// TestRunFinished.
type passedOn struct {
	pipeline  *sourcev1.Pipeline
	artifacts []*buildv1.Artifact
}

// pipeline is the repository's pipeline: staging verified over HTTP,
// production by a command.
func (h *harness) pipeline() *sourcev1.Pipeline {
	return &sourcev1.Pipeline{Release: &sourcev1.ReleaseSpec{
		Branches: []string{"main"},
		Environments: []*sourcev1.EnvironmentSpec{
			{
				Name:   "staging",
				Deploy: "sh deploy.sh",
				Env:    map[string]string{"GREETING": "hello-staging"},
				Verify: &sourcev1.VerifySpec{
					Check:   &sourcev1.VerifySpec_Http{Http: h.health.URL + "/staging"},
					Timeout: durationpb.New(time.Second),
				},
			},
			{
				Name:   "production",
				Deploy: "sh deploy.sh",
				Env:    map[string]string{"GREETING": "hello-production"},
				Verify: &sourcev1.VerifySpec{
					Check: &sourcev1.VerifySpec_Command{Command: `test "$(cat "$SLUICE_STATE_DIR/health")" = ok`},
					// A command runs in the step sandbox: a second is
					// tight for a first try on a loaded machine.
					Timeout: durationpb.New(3 * time.Second),
				},
			},
		},
	}}
}

// initialCommit is a healthy repository.
func (h *harness) initialCommit() string {
	return h.repo.CommitFiles("chore: initial import", map[string]string{"deploy.sh": deployScript, "health": "ok\n"})
}

// run makes a run of commit on branch whose build produced an "app"
// artifact, and publishes its passed TestRunFinished.
func (h *harness) run(commit, branch string, pipeline *sourcev1.Pipeline) string {
	h.t.Helper()
	return h.runWithSHA(commit, branch, pipeline, "")
}

// runWithSHA is run, with build recording sha as the artifact's sha256
// when it is not empty.
func (h *harness) runWithSHA(commit, branch string, pipeline *sourcev1.Pipeline, sha string) string {
	h.t.Helper()
	runID := uuid.Must(uuid.NewV7()).String()
	h.runAs(runID, commit, branch, pipeline, sha)
	return runID
}

// runAs is runWithSHA for a run id the test chose.
func (h *harness) runAs(runID, commit, branch string, pipeline *sourcev1.Pipeline, sha string) {
	h.t.Helper()
	content := []byte("#!/bin/sh\necho app built from " + commit + "\n")
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	store, err := artifacts.Open(ctx, h.js)
	if err != nil {
		h.t.Fatal(err)
	}
	a, err := store.Put(ctx, artifacts.Artifact{Name: "app", Object: artifacts.ObjectName(runID, "app")}, "", bytes.NewReader(content), 1<<30)
	if err != nil {
		h.t.Fatal(err)
	}
	if sha == "" {
		sha = a.SHA256
	}
	h.runs[runID] = passedOn{
		pipeline:  pipeline,
		artifacts: []*buildv1.Artifact{{Name: a.Name, Object: a.Object, Sha256: sha, Size: a.Size}},
	}
	h.publishTestRun(runID, commit, branch, testv1.TestRunStatus_TEST_RUN_STATUS_PASSED)
}

// publishTestRun publishes the TestRunFinished of a run of commit on
// branch, or, when branch is refs/tags/<tag>, of that tag.
func (h *harness) publishTestRun(runID, commit, branch string, status testv1.TestRunStatus) {
	h.t.Helper()
	ref := "refs/heads/" + branch
	if strings.HasPrefix(branch, "refs/tags/") {
		branch, ref = "", branch
	}
	ev, err := events.New(&testeventsv1.TestRunFinished{
		RunId:      runID,
		TestRunId:  uuid.Must(uuid.NewV7()).String(),
		Repository: &sourceeventsv1.RepositoryRef{Id: "repo-1", Name: repoName, Url: h.repo.Dir},
		Commit:     commit,
		Branch:     branch,
		Ref:        ref,
		Status:     status,
		Pipeline:   h.runs[runID].pipeline,
		Artifacts:  h.runs[runID].artifacts,
	}, "testrun-"+runID, runID)
	if err != nil {
		h.t.Fatal(err)
	}
	msg, err := ev.Msg()
	if err != nil {
		h.t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	if _, err := h.js.PublishMsg(ctx, msg); err != nil {
		h.t.Fatal(err)
	}
}

// finished waits for the ReleaseFinished of runID.
func (h *harness) finished(runID string) *releaseeventsv1.ReleaseFinished {
	h.t.Helper()
	return waitEvent(h.t, h.events, func(f *releaseeventsv1.ReleaseFinished) bool { return f.GetRunId() == runID })
}

// release runs commit on main and requires it to succeed.
func (h *harness) release(commit string) (runID string, finished *releaseeventsv1.ReleaseFinished) {
	h.t.Helper()
	runID = h.run(commit, "main", h.pipeline())
	finished = h.finished(runID)
	if finished.GetOutcome() != releaseeventsv1.ReleaseOutcome_RELEASE_OUTCOME_SUCCEEDED {
		h.t.Fatalf("release of %s: %v (%s), want SUCCEEDED", commit[:7], finished.GetOutcome(), finished.GetReason())
	}
	return runID, finished
}

// state reads a file of an environment's state directory.
func (h *harness) state(env, name string) string {
	h.t.Helper()
	data, err := os.ReadFile(filepath.Join(StateDir(h.cfg.DataDir, repoName, env), name))
	if err != nil {
		h.t.Fatal(err)
	}
	return string(data)
}

// waitForLines waits until the state file name of env has n lines: the
// lines, not the file, since the shell creates the file before echo
// writes to it.
func (h *harness) waitForLines(env, name string, n int) {
	h.t.Helper()
	deadline := time.Now().Add(waitFor)
	for {
		if b, err := os.ReadFile(filepath.Join(StateDir(h.cfg.DataDir, repoName, env), name)); err == nil && strings.Count(string(b), "\n") >= n {
			return
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("%s has no %d lines in %s after %s", name, n, env, waitFor)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// deploys lists the deploy script's runs in env: "version env repository greeting".
func (h *harness) deploys(env string) []string {
	h.t.Helper()
	return strings.Split(strings.TrimSpace(h.state(env, "deploys")), "\n")
}

// waitConsumed waits until the release consumer has delivered at least n
// messages and has none pending or unacknowledged.
func (h *harness) waitConsumed(n uint64) {
	h.t.Helper()
	servicekittest.Eventually(h.t, fmt.Sprintf("the consumer to finish %d messages", n), func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		cons, err := h.js.Consumer(ctx, "TEST", consumerDurable)
		if err != nil {
			return false
		}
		info, err := cons.Info(ctx)
		return err == nil && info.Delivered.Consumer >= n && info.NumAckPending == 0 && info.NumPending == 0
	})
}

// logs reads the release log of id (a run, or a manual rollback's
// deployment), only step's lines when step is set, through the API: each
// line as "[step] text", Sluice's own as they are ("--- ...").
func (h *harness) logs(id, step string) (lines []string, steps []string) {
	h.t.Helper()
	res, err := h.client.GetLogs(context.Background(), &releasev1.GetLogsRequest{RunId: id, Step: step})
	if err != nil {
		h.t.Fatalf("GetLogs(%s, %q): %v", id, step, err)
	}
	if !res.GetComplete() {
		h.t.Fatalf("GetLogs(%s, %q) is not complete after the stage ended", id, step)
	}
	for _, l := range res.GetLines() {
		if l.GetStream() == "meta" {
			lines = append(lines, l.GetText())
			continue
		}
		lines = append(lines, "["+l.GetStep()+"] "+l.GetText())
	}
	return lines, res.GetSteps()
}

// eventLog collects every event on the RELEASE stream.
type eventLog struct {
	mu      sync.Mutex
	events  []events.Event
	errs    []error
	changed chan struct{}
}

func watchEvents(t *testing.T, js jetstream.JetStream) *eventLog {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	// The RELEASE stream is release's own; make it exist before watching
	// (provisioning is idempotent, the service applies the same files).
	if err := natsprovision.Apply(ctx, js, deploy.NATS(), "release", natsprovision.Options{WaitForStreams: waitFor}); err != nil {
		t.Fatal(err)
	}
	cons, err := js.OrderedConsumer(ctx, "RELEASE", jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	l := &eventLog{changed: make(chan struct{})}
	cc, err := cons.Consume(func(m jetstream.Msg) {
		ev, err := events.Decode(m.Subject(), m.Headers(), m.Data())
		l.mu.Lock()
		if err != nil {
			l.errs = append(l.errs, err)
		} else {
			l.events = append(l.events, ev)
		}
		close(l.changed)
		l.changed = make(chan struct{})
		l.mu.Unlock()
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cc.Stop)
	t.Cleanup(func() {
		l.mu.Lock()
		defer l.mu.Unlock()
		for _, err := range l.errs {
			t.Errorf("undecodable release event: %v", err)
		}
	})
	return l
}

// waitEvent returns the first event payload of type T that matches,
// waiting for it.
func waitEvent[T any](t *testing.T, l *eventLog, match func(T) bool) T {
	t.Helper()
	timeout := time.After(waitFor)
	for {
		l.mu.Lock()
		for _, e := range l.events {
			if p, ok := e.Payload.(T); ok && match(p) {
				l.mu.Unlock()
				return p
			}
		}
		changed := l.changed
		l.mu.Unlock()
		select {
		case <-changed:
		case <-timeout:
			t.Fatalf("no matching release event after %s; have:\n%s", waitFor, l.describe())
		}
	}
}

// of returns the events of runID with payload type T, in order.
func eventsOf[T any](l *eventLog, runID string) []T {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []T
	for _, e := range l.events {
		if p, ok := e.Payload.(T); ok && e.ChainID == runID {
			out = append(out, p)
		}
	}
	return out
}

func (l *eventLog) describe() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var b strings.Builder
	for _, e := range l.events {
		fmt.Fprintf(&b, "  %s chain=%s %v\n", e.Kind.Subject, e.ChainID, e.Payload)
	}
	return b.String()
}

// fakeSource stands in for the source service, which release asks one
// thing: the commits, read from the test's git repository. It answers
// ListCommits and nothing else: any other call gets the embedded handler's
// Unimplemented error, which fails the release stage and so the test. That
// every test here passes is the proof that release needs no other API of
// source (the pipeline and the artifacts come in the TestRunFinished).
type fakeSource struct {
	sourcev1connect.UnimplementedSourceServiceHandler
	repo *git.Repository

	mu          sync.Mutex
	commitCalls []*sourcev1.ListCommitsRequest
}

func connectNotFound(what string) error {
	return connect.NewError(connect.CodeNotFound, errors.New(what+" not found"))
}

// ListCommits lists the commits reachable from to and not from from,
// newest first, at most page_size (else limit) of them, as source does
// (release asks it for a changelog, and with a page of one whether a
// commit is an ancestor of another).
func (f *fakeSource) ListCommits(_ context.Context, req *sourcev1.ListCommitsRequest) (*sourcev1.ListCommitsResponse, error) {
	f.mu.Lock()
	f.commitCalls = append(f.commitCalls, req)
	f.mu.Unlock()
	if req.GetRepository() != repoName {
		return nil, connectNotFound("repository " + req.GetRepository())
	}
	exclude := map[plumbing.Hash]bool{}
	if req.GetFrom() != "" {
		if err := f.walk(req.GetFrom(), func(c *object.Commit) error { exclude[c.Hash] = true; return nil }); err != nil {
			return nil, err
		}
	}
	limit := int(cmp.Or(req.GetPageSize(), req.GetLimit(), 1000))
	res := &sourcev1.ListCommitsResponse{}
	errStop := errors.New("stop")
	err := f.walk(req.GetTo(), func(c *object.Commit) error {
		if exclude[c.Hash] {
			return nil
		}
		if len(res.Commits) == limit {
			return errStop
		}
		res.Commits = append(res.Commits, &sourcev1.Commit{Sha: c.Hash.String(), Message: c.Message, Author: c.Author.Name})
		return nil
	})
	if err != nil && !errors.Is(err, errStop) {
		return nil, err
	}
	return res, nil
}

// walk calls fn with every commit reachable from sha, newest first.
func (f *fakeSource) walk(sha string, fn func(*object.Commit) error) error {
	iter, err := f.repo.Log(&git.LogOptions{From: plumbing.NewHash(sha)})
	if err != nil {
		if errors.Is(err, plumbing.ErrObjectNotFound) {
			return connectNotFound("commit " + sha)
		}
		return err
	}
	defer iter.Close()
	return iter.ForEach(fn)
}

func (f *fakeSource) listCommitsCalls() []*sourcev1.ListCommitsRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.commitCalls)
}
