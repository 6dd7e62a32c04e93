package containers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/ory/dockertest/v3"

	"github.com/sluicehq/sluice/e2e/internal/e2ekit"
	"github.com/sluicehq/sluice/platform/auth"
	"github.com/sluicehq/sluice/platform/gittest"
	buildv1 "github.com/sluicehq/sluice/proto/gen/sluice/build/v1"
	"github.com/sluicehq/sluice/proto/gen/sluice/build/v1/buildv1connect"
	notifyv1 "github.com/sluicehq/sluice/proto/gen/sluice/notify/v1"
	"github.com/sluicehq/sluice/proto/gen/sluice/notify/v1/notifyv1connect"
	releasev1 "github.com/sluicehq/sluice/proto/gen/sluice/release/v1"
	"github.com/sluicehq/sluice/proto/gen/sluice/release/v1/releasev1connect"
	sourcev1 "github.com/sluicehq/sluice/proto/gen/sluice/source/v1"
	"github.com/sluicehq/sluice/proto/gen/sluice/source/v1/sourcev1connect"
)

// The event types a load test's subscriber takes: one of each per run.
const (
	typeRunFinished      = "dev.cdevents.pipelinerun.finished.0.3.0"
	typeReleasePublished = "dev.cdeventsx.sluice-release.published.0.1.0"
	typeServiceDeployed  = "dev.cdevents.service.deployed.0.3.0"
)

// shellPipeline is a pipeline that needs only the images' busybox: a build
// that takes a few seconds (so runs overlap and a build can be caught in
// flight), a JUnit report, and a deploy that records the version it
// deployed and is verified by a command. The deploy pauses for as many
// seconds as the file deploy-pause says (none without it), so that a
// scenario can catch one in flight; it is safe to run again, as its
// on_interrupt says.
const shellPipeline = `version: 1
build:
  steps:
    - name: compile
      run: mkdir -p out && sleep 3 && cat VERSION > out/app && date -u >> out/app
      timeout: 2m
  artifacts:
    - name: app
      path: out/app
test:
  steps:
    - name: unit
      run: >-
        mkdir -p reports && printf '<testsuite name="unit" tests="2"><testcase classname="unit" name="reads-version"/><testcase classname="unit" name="non-empty"/></testsuite>' > reports/junit.xml && test -s VERSION
      timeout: 2m
  reports:
    - path: reports/junit.xml
      format: junit
release:
  branches: [main]
  environments:
    - name: staging
      deploy: sleep "$(cat deploy-pause 2>/dev/null || echo 0)" && cp "$SLUICE_ARTIFACTS_DIR/app" "$SLUICE_STATE_DIR/current" && echo "$SLUICE_RELEASE_VERSION" >> "$SLUICE_STATE_DIR/deploys.log"
      on_interrupt: redeploy
      verify:
        command: test -s "$SLUICE_STATE_DIR/current"
        timeout: 30s
`

// Repo is a git repository the test makes under the stack's Repos folder,
// readable by the containers' user.
type Repo struct {
	*gittest.Repo
	Name string
	n    int
}

// Platform is what a Workload needs of a running Sluice, whatever its
// shape (the dockertest Stack, the Compose stack): the services' APIs on
// the host, the repositories folder, the webhook receiver, the deploy
// state and the dead letters.
type Platform interface {
	// T is the test the platform runs for.
	T() *testing.T
	// API is a client set, as admin, for the services running now.
	API() API
	// ReposDir is the host folder mounted at /repos in the services.
	ReposDir() string
	// ReceiverURL is the receiver's URL as notify reaches it (for
	// subscriptions); ReceivedURL is its list of deliveries, on the host.
	ReceiverURL() string
	ReceivedURL() string
	// DeployLog is the deploys.log that the shell pipeline's deploy keeps
	// in the state of repo's environment env ("" when there is none).
	DeployLog(repo, env string) string
	// DeadLetters counts the messages in the DEADLETTER stream.
	DeadLetters() uint64
	// ReleaseReplicas are release's replicas running now.
	ReleaseReplicas() []Replica
}

// Replica is one container of a service, as a scenario kills it.
type Replica struct {
	Name string
	// Logs is the container's last lines of log.
	Logs func() string
	// Kill sends it SIGKILL.
	Kill func()
}

// KillReleaseMidDeploy waits (at most patience) for the deploy of w's run
// runID to be in progress and kills (SIGKILL) the release replica running
// it: the one whose log names the deployment. It returns that replica's
// name ("" and an error of the test when there was no such deploy).
func KillReleaseMidDeploy(p Platform, w *Workload, runID string, patience time.Duration) string {
	t := p.T()
	deadline := time.Now().Add(patience)
	for time.Now().Before(deadline) {
		deps, err := p.API().Release.ListDeployments(context.Background(), &releasev1.ListDeploymentsRequest{Repository: w.Repo.Name, PageSize: 10})
		if err != nil {
			t.Logf("list deployments: %v", err)
		}
		for _, d := range deps.GetDeployments() {
			// Once its command started (attempts): before, a takeover
			// simply deploys, and nothing is run again.
			if d.GetRunId() != runID || d.GetStatus() != releasev1.DeploymentStatus_DEPLOYMENT_STATUS_DEPLOYING || d.GetAttempts() < 1 {
				continue
			}
			for _, r := range p.ReleaseReplicas() {
				if strings.Contains(r.Logs(), d.GetId()) {
					t.Logf("killing %s during deployment %s of %s", r.Name, d.GetId(), d.GetVersion())
					r.Kill()
					return r.Name
				}
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Errorf("run %s of %s was not deploying within %s: release was not killed", runID, w.Repo.Name, patience)
	return ""
}

// NewRepo makes a repository with files and commits them on main.
func NewRepo(p Platform, name string, files map[string]string) *Repo {
	t := p.T()
	t.Helper()
	r := &Repo{Repo: e2ekit.NewGitRepo(t, filepath.Join(p.ReposDir(), name), files), Name: name}
	if err := makeReadable(r.Dir); err != nil {
		t.Fatal(err)
	}
	return r
}

// NewRepo makes a repository with files and commits them on main.
func (s *Stack) NewRepo(name string, files map[string]string) *Repo { return NewRepo(s, name, files) }

// InContainer is the repository's path in the containers.
func (r *Repo) InContainer() string { return "/repos/" + r.Name }

// Commit commits files and keeps the repository readable to the containers.
func (r *Repo) Commit(t *testing.T, msg string, files map[string]string) string {
	t.Helper()
	sha := r.CommitFiles(msg, files)
	if err := makeReadable(r.Dir); err != nil {
		t.Fatal(err)
	}
	return sha
}

// API holds Connect clients for the stack's services, on the host.
type API struct {
	Source  sourcev1connect.SourceServiceClient
	Build   buildv1connect.BuildServiceClient
	Release releasev1connect.ReleaseServiceClient
	Notify  notifyv1connect.NotifyServiceClient
}

// newAPI is a client set for the services at url(svc), through base (nil:
// http.DefaultTransport), as the admin token token.
func newAPI(base http.RoundTripper, url func(svc string) string, token string) API {
	hc := &http.Client{Timeout: 30 * time.Second, Transport: auth.WithSecret(base, func() string { return token })}
	return API{
		Source:  sourcev1connect.NewSourceServiceClient(hc, url("source")),
		Build:   buildv1connect.NewBuildServiceClient(hc, url("build")),
		Release: releasev1connect.NewReleaseServiceClient(hc, url("release")),
		Notify:  notifyv1connect.NewNotifyServiceClient(hc, url("notify")),
	}
}

// API is a client set for the replicas running now.
func (s *Stack) API() API { return newAPI(nil, s.URL, s.Admin) }

// T is the stack's test.
func (s *Stack) T() *testing.T { return s.t }

// ReposDir is the stack's Repos folder.
func (s *Stack) ReposDir() string { return s.Repos }

// ReceivedURL is the receiver's list of deliveries, on the host.
func (s *Stack) ReceivedURL() string {
	return "http://" + s.Receiver.GetHostPort("8090/tcp") + "/received"
}

// DeployLog reads the deploys.log of the environment's state folder in the
// release data, which the stack's release replicas share.
func (s *Stack) DeployLog(repo, env string) string {
	b, err := os.ReadFile(filepath.Join(s.dir, "release-data", "state", repo, env, "deploys.log"))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		s.t.Fatalf("read the deploy log: %v", err)
	}
	return string(b)
}

// Workload registers a repository with the shell pipeline and a webhook
// subscription to it, and triggers runs of new commits.
type Workload struct {
	p      Platform
	t      *testing.T
	Repo   *Repo
	RunIDs []string
	// Next are more files for the next Trigger's commit (then forgotten).
	Next map[string]string
	// explained are the runs whose notifications twice were explained.
	explained map[string]bool
	// redelivered counts the repeats of a delivery id received dropped.
	redelivered int
}

// NewWorkload sets up a repository named name with the shell pipeline and
// subscriptions to it, on any platform; files are more files for the
// repository's first commit.
func NewWorkload(p Platform, name string, files map[string]string) *Workload {
	t := p.T()
	t.Helper()
	files = maps.Clone(files)
	if files == nil {
		files = map[string]string{}
	}
	files[".sluice.yaml"], files["VERSION"] = shellPipeline, "0\n"
	repo := NewRepo(p, name, files)
	if _, err := p.API().Source.CreateRepository(context.Background(), &sourcev1.CreateRepositoryRequest{
		Url: repo.InContainer(), Name: name,
	}); err != nil {
		t.Fatalf("register %s: %v", name, err)
	}
	return Track(p, repo)
}

// NewWorkload is NewWorkload on the stack.
func (s *Stack) NewWorkload(name string) *Workload { return NewWorkload(s, name, nil) }

// NewWorkloadWith is NewWorkload on the stack, with more files in the
// repository's first commit.
func (s *Stack) NewWorkloadWith(name string, files map[string]string) *Workload {
	return NewWorkload(s, name, files)
}

// subscribers are the webhook subscriptions a workload makes: two, so that
// "every subscriber gets every event" is counted per subscriber. Both go to
// the receiver, told apart by the URL's path.
var subscribers = []string{"alpha", "beta"}

// Track subscribes the receiver, as every subscriber, to a registered
// repository's run, release and deploy events, so that Finish can count them.
func Track(p Platform, repo *Repo) *Workload {
	t := p.T()
	t.Helper()
	for _, sub := range subscribers {
		if _, err := p.API().Notify.CreateSubscription(context.Background(), &notifyv1.CreateSubscriptionRequest{
			Url: p.ReceiverURL() + sub, Secret: receiverSecret, Repository: repo.Name,
			EventTypes: []string{typeRunFinished, typeReleasePublished, typeServiceDeployed},
		}); err != nil {
			t.Fatalf("subscribe %s to %s: %v", sub, repo.Name, err)
		}
	}
	return &Workload{p: p, t: t, Repo: repo, explained: map[string]bool{}}
}

// Track is Track on the stack.
func (s *Stack) Track(repo *Repo) *Workload { return Track(s, repo) }

// Trigger commits a change and starts a run of it.
func (w *Workload) Trigger() string {
	w.t.Helper()
	w.Repo.n++
	files := map[string]string{"VERSION": fmt.Sprintf("%d\n", w.Repo.n)}
	maps.Copy(files, w.Next)
	w.Next = nil
	w.Repo.Commit(w.t, fmt.Sprintf("fix: change %d", w.Repo.n), files)
	var runID string
	// A replica may be down on purpose: retry the trigger briefly.
	eventually(w.t, "trigger a run", time.Minute, func() error {
		res, err := w.p.API().Source.TriggerRun(context.Background(), &sourcev1.TriggerRunRequest{Repository: w.Repo.Name, Ref: "main"})
		if err != nil {
			return err
		}
		runID = res.GetRun().GetId()
		return nil
	})
	w.RunIDs = append(w.RunIDs, runID)
	return runID
}

// TriggerEvery triggers n runs, one every gap, calling during(i) before
// run i (0-based) is triggered.
func (w *Workload) TriggerEvery(n int, gap time.Duration, during func(i int)) {
	w.t.Helper()
	for i := range n {
		if during != nil {
			during(i)
		}
		w.Trigger()
		time.Sleep(gap)
	}
}

// Tally is what a scenario prints at its end.
type Tally struct {
	Started, Succeeded, Failed, Lost, Twice int
	// The duplicates behind Twice, and the events the subscriber missed.
	DeploysTwice, ReleasesTwice, NotificationsTwice, NotificationsMissing int
	// DeadLetters are events a consumer gave up on (the DEADLETTER stream).
	DeadLetters uint64
	// BuildsRetried are builds that ran more than once (a takeover), and
	// DeploysRetried deployments whose deploy command was started again
	// (an interrupted deploy, on_interrupt: redeploy).
	BuildsRetried, DeploysRetried int
	// Notifications is how many (subscriber, event) deliveries arrived;
	// NotificationsRepeated how many posts repeated a delivery already
	// received (at-least-once delivery: the subscriber drops them by
	// their X-Sluice-Delivery id).
	Notifications, NotificationsRepeated int
}

func (t Tally) String() string {
	return fmt.Sprintf("runs started %d / succeeded %d / failed %d / lost %d / executed twice %d "+
		"(deploys twice %d, releases twice %d, notifications %d, twice %d, missing %d, repeated deliveries %d, dead letters %d, builds retried %d, deploys retried %d)",
		t.Started, t.Succeeded, t.Failed, t.Lost, t.Twice, t.DeploysTwice, t.ReleasesTwice, t.Notifications, t.NotificationsTwice,
		t.NotificationsMissing, t.NotificationsRepeated, t.DeadLetters, t.BuildsRetried, t.DeploysRetried)
}

// Finish waits for every run to end (within the deadline), counts the
// outcome and the duplicates, prints the tally and returns it.
func (w *Workload) Finish(within time.Duration) Tally {
	p := w.p
	w.t.Helper()
	ctx := context.Background()
	status := map[string]sourcev1.RunStatus{}
	// deployed: the run's release stage succeeded. A run of an older commit
	// that finished after a newer one was released is skipped there: no
	// version, no deploy.
	deployed := map[string]bool{}
	runs := map[string]*sourcev1.Run{}
	deadline := time.Now().Add(within)
	for {
		pending := 0
		for _, id := range w.RunIDs {
			if st := status[id]; st == sourcev1.RunStatus_RUN_STATUS_SUCCEEDED || st == sourcev1.RunStatus_RUN_STATUS_FAILED || st == sourcev1.RunStatus_RUN_STATUS_CANCELLED {
				continue
			}
			res, err := p.API().Source.GetRun(ctx, &sourcev1.GetRunRequest{RunId: id})
			if err == nil {
				status[id] = res.GetRun().GetStatus()
				runs[id] = res.GetRun()
				for _, st := range res.GetRun().GetStages() {
					if st.GetName() == "release" {
						deployed[id] = st.GetStatus() == sourcev1.StageStatus_STAGE_STATUS_SUCCEEDED
					}
				}
			}
			if st := status[id]; st != sourcev1.RunStatus_RUN_STATUS_SUCCEEDED && st != sourcev1.RunStatus_RUN_STATUS_FAILED && st != sourcev1.RunStatus_RUN_STATUS_CANCELLED {
				pending++
			}
		}
		if pending == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Second)
	}
	var t Tally
	t.Started = len(w.RunIDs)
	var finished []string
	for _, id := range w.RunIDs {
		switch status[id] {
		case sourcev1.RunStatus_RUN_STATUS_SUCCEEDED:
			t.Succeeded++
			finished = append(finished, id)
		case sourcev1.RunStatus_RUN_STATUS_FAILED, sourcev1.RunStatus_RUN_STATUS_CANCELLED:
			t.Failed++
			finished = append(finished, id)
			logFailedRun(w.t, runs[id])
		default:
			t.Lost++
		}
	}

	twice := map[string]bool{}
	// Deployments: one per run and environment (rollbacks aside).
	deps, err := p.API().Release.ListDeployments(ctx, &releasev1.ListDeploymentsRequest{Repository: w.Repo.Name, Limit: 1000})
	if err != nil {
		w.t.Fatalf("list deployments: %v", err)
	}
	perRun := map[string]int{}
	for _, d := range deps.GetDeployments() {
		if !d.GetRollback() && d.GetRunId() != "" {
			perRun[d.GetRunId()+"/"+d.GetEnvironment()]++
		}
		if d.GetAttempts() > 1 {
			t.DeploysRetried++
		}
	}
	for key, n := range perRun {
		if n > 1 {
			t.DeploysTwice++
			twice[strings.Split(key, "/")[0]] = true
		}
	}
	// The deploy command itself: the shell pipeline's deploy appends the
	// version to deploys.log in the environment's state folder (kept in the
	// deploy state, which every release replica restores before a deploy),
	// so a deploy run twice under one record shows too.
	if log := p.DeployLog(w.Repo.Name, "staging"); log != "" {
		seen := map[string]int{}
		for _, v := range strings.Fields(log) {
			seen[v]++
		}
		for version, n := range seen {
			if n > 1 {
				t.DeploysTwice++
				twice["version "+version] = true
			}
		}
	}
	// Builds: a retry is a takeover (the first attempt's worker died).
	builds, err := p.API().Build.ListBuilds(ctx, &buildv1.ListBuildsRequest{Limit: 1000})
	if err != nil {
		w.t.Fatalf("list builds: %v", err)
	}
	ours := map[string]bool{}
	for _, id := range w.RunIDs {
		ours[id] = true
	}
	for _, b := range builds.GetBuilds() {
		if ours[b.GetRunId()] && b.GetAttempt() > 1 {
			t.BuildsRetried++
		}
	}
	// Releases: one per run.
	rels, err := p.API().Release.ListReleases(ctx, &releasev1.ListReleasesRequest{Repository: w.Repo.Name, Limit: 1000})
	if err != nil {
		w.t.Fatalf("list releases: %v", err)
	}
	relPerRun := map[string]int{}
	for _, r := range rels.GetReleases() {
		relPerRun[r.GetRunId()]++
	}
	for run, n := range relPerRun {
		if n > 1 {
			t.ReleasesTwice++
			twice[run] = true
		}
	}
	// Notifications: once the deliveries settle, each run's three events
	// reached every subscriber exactly once.
	got := w.awaitNotifications(finished, status, 2*time.Minute)
	t.NotificationsRepeated = w.redelivered
	for _, id := range finished {
		want := []string{typeRunFinished}
		if status[id] == sourcev1.RunStatus_RUN_STATUS_SUCCEEDED && deployed[id] {
			want = append(want, typeReleasePublished, typeServiceDeployed)
		}
		for _, sub := range subscribers {
			for _, typ := range want {
				n := got[sub+" "+id+" "+typ]
				if n > 0 {
					t.Notifications++
				}
				switch {
				case n == 0:
					t.NotificationsMissing++
				case n > 1:
					t.NotificationsTwice++
					twice[id] = true
					w.explainTwice(sub, id, typ)
				}
			}
		}
	}
	t.Twice = len(twice)
	t.DeadLetters = p.DeadLetters()
	w.t.Logf("TALLY %s: %s", w.t.Name(), t)
	return t
}

// logFailedRun says why a run failed: its reason and its failed stages'.
func logFailedRun(t *testing.T, r *sourcev1.Run) {
	t.Helper()
	t.Logf("run %s (%s) %s: %s", r.GetId(), r.GetCommit(), r.GetStatus(), r.GetFailureReason())
	for _, st := range r.GetStages() {
		if st.GetStatus() == sourcev1.StageStatus_STAGE_STATUS_FAILED {
			t.Logf("  stage %s failed: %s (step %q) %s\n    %s", st.GetName(), st.GetReason(), st.GetFailedStep(), st.GetDetail(),
				strings.Join(st.GetLastLogLines(), "\n    "))
		}
	}
}

// awaitNotifications waits until the subscriber holds every expected event
// of the runs (or within passes) and returns the count per "subscriber run type".
func (w *Workload) awaitNotifications(runs []string, status map[string]sourcev1.RunStatus, within time.Duration) map[string]int {
	expected := 0
	for _, id := range runs {
		expected += len(subscribers)
		if status[id] == sourcev1.RunStatus_RUN_STATUS_SUCCEEDED {
			expected += 2 * len(subscribers)
		}
	}
	deadline := time.Now().Add(within)
	for {
		if _, distinct := w.received(runs); distinct >= expected || time.Now().After(deadline) {
			// A little longer, so that a late duplicate would show.
			time.Sleep(2 * time.Second)
			counts, _ := w.received(runs)
			return counts
		}
		time.Sleep(time.Second)
	}
}

// explainTwice logs what tells a notification that reached subscriber sub
// twice apart: the receiver's records of it (the same event id and
// delivery id: one delivery attempted again; the same event id, another
// delivery: the event fanned out twice; another event id: the event made
// twice) and notify's deliveries of the run.
func (w *Workload) explainTwice(sub, runID, typ string) {
	for _, r := range w.records() {
		if r.ChainID == runID && r.Type == typ && strings.TrimPrefix(r.Path, "/") == sub {
			w.t.Logf("twice: %s got %s of run %s: event %s delivery %s subject %s at %s",
				sub, typ, runID, r.ID, r.Delivery, r.Subject, r.At.Format(time.RFC3339Nano))
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := w.p.API().Notify.ListDeliveries(ctx, &notifyv1.ListDeliveriesRequest{RunId: runID, PageSize: 1000})
	if err != nil {
		w.t.Logf("twice: list the deliveries of run %s: %v", runID, err)
		return
	}
	for _, d := range res.GetDeliveries() {
		if d.GetEventType() != typ {
			continue
		}
		var attempts []string
		for _, a := range d.GetAttempts() {
			attempts = append(attempts, fmt.Sprintf("#%d %s %d %q", a.GetNumber(), a.GetTime().AsTime().Format(time.RFC3339Nano), a.GetHttpStatus(), a.GetError()))
		}
		w.t.Logf("twice: notify's delivery %s (subscription %s) of event %s: %s, created %s, attempts %s",
			d.GetId(), d.GetSubscriptionId(), d.GetEventId(), d.GetStatus(), d.GetCreateTime().AsTime().Format(time.RFC3339Nano), strings.Join(attempts, "; "))
	}
	if logs, ok := w.p.(interface{ LogsMentioning(string) string }); ok && !w.explained[runID] {
		w.explained[runID] = true
		w.t.Logf("twice: the log lines that name run %s:\n%s", runID, logs.LogsMentioning(runID))
	}
}

// record is one delivery as the receiver saw it.
type record struct {
	ID          string    `json:"id"`
	Delivery    string    `json:"delivery"`
	Type        string    `json:"type"`
	Subject     string    `json:"subject"`
	ChainID     string    `json:"chain_id"`
	Path        string    `json:"path"`
	SignatureOK bool      `json:"signature_ok"`
	At          time.Time `json:"at"`
}

// records is every delivery the receiver holds.
func (w *Workload) records() []record {
	url := w.p.ReceivedURL()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		w.t.Fatalf("read the receiver: %v", err)
	}
	defer func() { _ = resp.Body.Close() }()
	var all []record
	if err := json.NewDecoder(resp.Body).Decode(&all); err != nil {
		w.t.Fatalf("read the receiver: %v", err)
	}
	return all
}

// received counts the subscriber's deliveries per "subscriber run type"
// for runs, and how many distinct ones there are; a bad signature fails
// the test. As a subscriber should (docs/events.md), it drops a repeat of
// a delivery id it has seen: notify posts a delivery again when it could
// not record the answer to an earlier post (its replica stopped between
// the two). The repeats it dropped are counted in w.redelivered.
func (w *Workload) received(runs []string) (map[string]int, int) {
	all := w.records()
	ours := map[string]bool{}
	for _, id := range runs {
		ours[id] = true
	}
	counts := map[string]int{}
	seen := map[string]bool{}
	w.redelivered = 0
	for _, r := range all {
		if !r.SignatureOK {
			w.t.Fatalf("delivery %s (%s) has a bad signature", r.ID, r.Type)
		}
		if !ours[r.ChainID] {
			continue
		}
		if seen[r.Delivery] {
			w.redelivered++
			continue
		}
		seen[r.Delivery] = true
		counts[strings.TrimPrefix(r.Path, "/")+" "+r.ChainID+" "+r.Type]++
	}
	return counts, len(counts)
}

// RunningBuild waits for a build in progress and returns it.
func (s *Stack) RunningBuild(within time.Duration) *buildv1.Build {
	s.t.Helper()
	var found *buildv1.Build
	s.eventually("a build in progress", within, func() error {
		res, err := s.API().Build.ListBuilds(context.Background(), &buildv1.ListBuildsRequest{Limit: 100})
		if err != nil {
			return err
		}
		var running []*buildv1.Build
		for _, b := range res.GetBuilds() {
			if b.GetStatus() == buildv1.BuildStatus_BUILD_STATUS_RUNNING && b.GetWorkerId() != "" {
				running = append(running, b)
			}
		}
		if len(running) == 0 {
			return fmt.Errorf("no build is running")
		}
		sort.Slice(running, func(i, j int) bool {
			return running[i].GetStartTime().AsTime().Before(running[j].GetStartTime().AsTime())
		})
		found = running[len(running)-1]
		return nil
	})
	return found
}

// ReplicaOf is the container whose worker id (hostname-pid) is workerID.
func (s *Stack) ReplicaOf(svc, workerID string) *Container {
	s.t.Helper()
	for _, c := range s.Replicas(svc) {
		if strings.HasPrefix(workerID, c.Res.Container.Config.Hostname+"-") {
			return c
		}
	}
	s.t.Fatalf("no %s replica has worker id %s", svc, workerID)
	return nil
}

// natsAdmin connects to url as NATS's admin user.
func natsAdmin(t *testing.T, url string, opts ...nats.Option) jetstream.JetStream {
	t.Helper()
	nc, err := nats.Connect(url, append(opts, nats.UserInfo("admin", natsAdminPassword))...)
	if err != nil {
		t.Fatalf("connect as admin: %v", err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

// deadLetters counts the messages in the DEADLETTER stream.
func deadLetters(t *testing.T, js jetstream.JetStream) uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	stream, err := js.Stream(ctx, "DEADLETTER")
	if err != nil {
		t.Fatalf("DEADLETTER stream: %v", err)
	}
	return stream.CachedInfo().State.Msgs
}

// DeadLetters counts the messages in the DEADLETTER stream, as admin.
func (s *Stack) DeadLetters() uint64 {
	s.t.Helper()
	return deadLetters(s.t, natsAdmin(s.t, s.NATSURL(0)))
}

// ReceivedCount is how many deliveries the receiver holds (safe to call
// from any goroutine).
func (s *Stack) ReceivedCount() (int, error) {
	var all []json.RawMessage
	url := s.ReceivedURL()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, fmt.Errorf("read the receiver: %w", err)
	}
	defer func() { _ = resp.Body.Close() }()
	if err := json.NewDecoder(resp.Body).Decode(&all); err != nil {
		return 0, fmt.Errorf("read the receiver: %w", err)
	}
	return len(all), nil
}

// StreamLeader is the NATS node that leads stream.
func (s *Stack) StreamLeader(stream string) *dockertest.Resource {
	s.t.Helper()
	js := natsAdmin(s.t, s.NATSURL(0))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := js.Stream(ctx, stream)
	if err != nil {
		s.t.Fatalf("stream %s: %v", stream, err)
	}
	info := st.CachedInfo()
	if info.Cluster == nil || info.Cluster.Leader == "" {
		s.t.Fatalf("stream %s has no leader", stream)
	}
	for i, n := range s.NATS {
		if info.Cluster.Leader == fmt.Sprintf("nats-%d", i+1) {
			return n
		}
	}
	s.t.Fatalf("stream %s is led by %q, not a node of this stack", stream, info.Cluster.Leader)
	return nil
}
