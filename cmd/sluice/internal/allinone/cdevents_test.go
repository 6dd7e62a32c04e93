package allinone_test

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/sluicehq/sluice/cmd/sluice/internal/allinone"
	"github.com/sluicehq/sluice/platform/events"
	"github.com/sluicehq/sluice/platform/events/cdeventstest"
	"github.com/sluicehq/sluice/platform/gittest"
	notifyv1 "github.com/sluicehq/sluice/proto/gen/sluice/notify/v1"
	"github.com/sluicehq/sluice/proto/gen/sluice/notify/v1/notifyv1connect"
	sourcev1 "github.com/sluicehq/sluice/proto/gen/sluice/source/v1"
	"github.com/sluicehq/sluice/proto/gen/sluice/source/v1/sourcev1connect"
)

// The pipeline of the scenarios: files in the commit decide which stage
// fails. The test step reports one passed, one skipped and, with
// FAIL_TESTS, one failed JUnit case.
const cdeventsPipeline = `version: 1
build:
  steps:
    - name: compile
      run: test ! -f FAIL_BUILD
test:
  steps:
    - name: unit
      run: mkdir -p reports && if [ -f FAIL_TESTS ]; then cp junit-fail.xml reports/junit.xml; exit 1; fi; cp junit-pass.xml reports/junit.xml
  reports:
    - path: reports/junit.xml
      format: junit
release:
  branches: [main]
  environments:
    - name: staging
      deploy: "true"
      verify:
        command: test ! -f FAIL_VERIFY
        timeout: 3s
`

const junitPass = `<testsuites><testsuite name="api">
<testcase name="lists users" classname="api" time="0.5"/>
<testcase name="exports users" classname="api"><skipped/></testcase>
</testsuite></testsuites>`

const junitFail = `<testsuites><testsuite name="api">
<testcase name="lists users" classname="api" time="0.5"/>
<testcase name="creates users" classname="api"><failure message="expected 201, got 500">POST /users</failure></testcase>
<testcase name="exports users" classname="api"><skipped/></testcase>
</testsuite></testsuites>`

// Every message the all-in-one platform publishes on sluice.> while it runs
// whole pipelines — one that deploys, one whose build fails, one whose tests
// fail, one whose verification fails and is rolled back — is a valid
// CDEvent: a standard type against the CDEvents v0.5.1 schema of its type, a
// custom one against the custom rules, with CloudEvents headers that agree.
func TestEveryPublishedEventIsAValidCDEvent(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	p := startPlatform(t, filepath.Join(dir, "data"))
	v, err := cdeventstest.New()
	if err != nil {
		t.Fatal(err)
	}
	col := collect(t, p.NATSURL())

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) }))
	t.Cleanup(hook.Close)
	if _, err := notifyv1connect.NewNotifyServiceClient(p.Client(), p.URL).CreateSubscription(ctx,
		&notifyv1.CreateSubscriptionRequest{Url: hook.URL, Secret: "cdevents-e2e"}); err != nil {
		t.Fatal(err)
	}

	repo := newScenarioRepo(t, filepath.Join(dir, "app"))
	source := sourcev1connect.NewSourceServiceClient(p.Client(), p.URL)
	const secret = "cdevents-e2e-webhook"
	if _, err := source.CreateRepository(ctx, &sourcev1.CreateRepositoryRequest{Url: repo.Dir, Name: "app", WebhookSecret: secret}); err != nil {
		t.Fatal(err)
	}

	// 1. Pushed (a webhook): built, tested, released as v0.1.0, deployed.
	repo.commit(t, "feat: first", "", "")
	runID := pushWebhook(ctx, t, p.URL, "app", secret, repo.head)
	if run := waitRun(ctx, t, source, runID); run.GetStatus() != sourcev1.RunStatus_RUN_STATUS_SUCCEEDED {
		t.Fatalf("run 1 ended %s: %s", run.GetStatus(), run.GetFailureReason())
	}
	// 2. The build fails; 3. the tests fail; 4. verification fails and
	// staging is rolled back to v0.1.0.
	for i, tc := range []struct {
		add, remove, reason string
	}{
		{"FAIL_BUILD", "", "build failed"},
		{"FAIL_TESTS", "FAIL_BUILD", "test failed"},
		{"FAIL_VERIFY", "FAIL_TESTS", "rolled back"},
	} {
		repo.commit(t, "fix: "+tc.reason, tc.add, tc.remove)
		res, err := source.TriggerRun(ctx, &sourcev1.TriggerRunRequest{Repository: "app"})
		if err != nil {
			t.Fatal(err)
		}
		run := waitRun(ctx, t, source, res.GetRun().GetId())
		if run.GetStatus() != sourcev1.RunStatus_RUN_STATUS_FAILED || !strings.Contains(run.GetFailureReason(), tc.reason) {
			t.Fatalf("run %d ended %s (%s); want failed: %s", i+2, run.GetStatus(), run.GetFailureReason(), tc.reason)
		}
	}

	msgs := col.settle(t, "dev.cdevents.pipelinerun.finished.0.3.0", 4)
	seen := map[string]int{}
	for _, m := range msgs {
		typ := m.Header.Get(events.HeaderType)
		seen[typ]++
		if strings.HasPrefix(m.Subject, "sluice.deadletter.") {
			t.Errorf("%s was dead-lettered: %s", typ, m.Header.Get("Sluice-Deadletter-Reason"))
			continue
		}
		if err := v.ValidateMessage(m.Header, m.Data); err != nil {
			t.Errorf("%s is not a valid CDEvent: %v\n%s", m.Subject, err, m.Data)
		}
	}
	// What the scenarios must have published, so the check is not vacuous.
	for _, want := range []string{
		"dev.cdevents.repository.created.0.3.0", "dev.cdeventsx.sluice-change.received.0.1.0",
		"dev.cdevents.pipelinerun.queued.0.3.0", "dev.cdevents.pipelinerun.started.0.3.0", "dev.cdevents.pipelinerun.finished.0.3.0",
		"dev.cdevents.build.started.0.3.0", "dev.cdevents.taskrun.started.0.3.0", "dev.cdevents.taskrun.finished.0.3.0",
		"dev.cdevents.build.finished.0.3.0",
		"dev.cdevents.testsuiterun.started.0.3.0", "dev.cdevents.testcaserun.finished.0.3.0", "dev.cdevents.testcaserun.skipped.0.2.0",
		"dev.cdevents.testsuiterun.finished.0.3.0",
		"dev.cdeventsx.sluice-release.published.0.1.0", "dev.cdevents.service.deployed.0.3.0",
		"dev.cdeventsx.sluice-deployment.failed.0.1.0", "dev.cdevents.service.rolledback.0.3.0",
		"dev.cdeventsx.sluice-release.finished.0.1.0", "dev.cdeventsx.sluice-delivery.succeeded.0.1.0",
	} {
		if seen[want] == 0 {
			t.Errorf("no %s was published", want)
		}
	}
	if seen["dev.cdevents.pipelinerun.started.0.3.0"] != 4 {
		t.Errorf("%d pipelinerun.started for 4 runs", seen["dev.cdevents.pipelinerun.started.0.3.0"])
	}
	t.Logf("%d messages checked: %v", len(msgs), seen)
}

// startPlatform starts `sluice up` on a free loopback port, with edits
// applied to its options, and stops it when the test ends.
func startPlatform(t *testing.T, dataDir string, edits ...func(*allinone.Options)) *allinone.Platform {
	t.Helper()
	ln, err := (&net.ListenConfig{}).Listen(t.Context(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	// The demo's allow-egress (loopback, local) lets the services read the
	// local repositories and notify reach the loopback receivers.
	o := allinone.DefaultOptions()
	o.DataDir, o.Process.Addr = dataDir, addr
	o.Source.PollInterval = 0 // runs are triggered
	for _, edit := range edits {
		edit(&o)
	}
	p, err := allinone.Start(t.Context(), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := p.Stop(ctx); err != nil {
			t.Errorf("stop: %v", err)
		}
	})
	return p
}

// collector keeps every message published on sluice.> (core NATS, so it
// sees what JetStream stores, dead letters included).
type collector struct {
	mu   sync.Mutex
	msgs []*nats.Msg
	last time.Time
}

func collect(t *testing.T, url string) *collector {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	c := &collector{}
	if _, err := nc.Subscribe("sluice.>", func(m *nats.Msg) {
		c.mu.Lock()
		defer c.mu.Unlock()
		c.msgs = append(c.msgs, m)
		c.last = time.Now()
	}); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return c
}

// settle waits until n messages of type typ came and then nothing for a
// while (the last deliveries), and returns what came.
func (c *collector) settle(t *testing.T, typ string, n int) []*nats.Msg {
	t.Helper()
	const quiet = 1500 * time.Millisecond
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		c.mu.Lock()
		count := 0
		for _, m := range c.msgs {
			if m.Header.Get(events.HeaderType) == typ {
				count++
			}
		}
		idle := time.Since(c.last) > quiet
		msgs := slices.Clone(c.msgs)
		c.mu.Unlock()
		if count >= n && idle {
			return msgs
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("the platform did not settle with %d %s", n, typ)
	return nil
}

// scenarioRepo is the scenarios' repository and its newest commit.
type scenarioRepo struct {
	*gittest.Repo
	head string
}

func newScenarioRepo(t *testing.T, dir string) *scenarioRepo {
	t.Helper()
	repo := &scenarioRepo{Repo: gittest.Init(t, dir, "main")}
	for name, content := range map[string]string{".sluice.yaml": cdeventsPipeline, "junit-pass.xml": junitPass, "junit-fail.xml": junitFail} {
		repo.Write(name, content)
	}
	repo.commit(t, "chore: start", "", "")
	return repo
}

// commit adds the file add and removes the file remove (either may be "",
// both for an empty commit).
func (r *scenarioRepo) commit(t *testing.T, msg, add, remove string) {
	t.Helper()
	if add != "" {
		r.Write(add, "x\n")
	}
	if remove != "" {
		r.Remove(remove)
	}
	r.head = r.Commit(msg)
}

// pushWebhook tells source about head as a signed GitHub push and returns
// the run it queued.
func pushWebhook(ctx context.Context, t *testing.T, baseURL, repo, secret, head string) string {
	t.Helper()
	body := fmt.Appendf(nil, `{"ref":"refs/heads/main","after":%q}`, head)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, baseURL+"/webhooks/github/"+repo, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write(body)
	req.Header.Set("X-Hub-Signature-256", "sha256="+hex.EncodeToString(mac.Sum(nil)))
	req.Header.Set("X-GitHub-Event", "push")
	req.Header.Set("X-GitHub-Delivery", "delivery-1")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var reply struct {
		Status string `json:"status"`
		RunID  string `json:"run_id"`
	}
	if err := json.NewDecoder(res.Body).Decode(&reply); err != nil || reply.Status != "queued" {
		t.Fatalf("webhook answered %d %+v (%v)", res.StatusCode, reply, err)
	}
	return reply.RunID
}

// waitRun follows a run to its end.
func waitRun(ctx context.Context, t *testing.T, c sourcev1connect.SourceServiceClient, runID string) *sourcev1.Run {
	t.Helper()
	stream, err := c.WatchRun(ctx, &sourcev1.WatchRunRequest{RunId: runID})
	if err != nil {
		t.Fatal(err)
	}
	defer stream.Close()
	var last *sourcev1.Run
	for stream.Receive() {
		last = stream.Msg().GetRun()
	}
	if err := stream.Err(); err != nil {
		t.Fatalf("watch run %s: %v", runID, err)
	}
	return last
}
