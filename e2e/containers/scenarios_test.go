package containers

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/ory/dockertest/v3"
	"github.com/ory/dockertest/v3/docker"

	"github.com/sluicehq/sluice/e2e/internal/e2ekit"
	buildv1 "github.com/sluicehq/sluice/proto/gen/sluice/build/v1"
)

// haShape is the shape of the compose stack: two replicas of build and test.
var haShape = StackOptions{Replicas: map[string]int{"build": 2, "test": 2}}

// cli runs the sluice CLI on the host against the stack.
func cli(t *testing.T, s *Stack, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(suite.binDir, "sluice"), args...)
	cmd.Env = append(os.Environ(), s.CLIEnv()...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("sluice %s: %v\n%s", strings.Join(args, " "), err, out.String())
	}
	return out.String()
}

// Scenario 1: the example pipeline (a Go service: go build, go test -json,
// deploy.sh, an HTTP check) runs through all five services in containers on
// a NATS cluster and PostgreSQL, and the CLI sees the release.
func TestExampleRunsThroughFiveServiceContainers(t *testing.T) {
	s := StartStack(t, StackOptions{Replicas: haShape.Replicas, GoToolchain: true})
	repo := s.NewRepo("hello", e2ekit.ExampleFiles(t))
	out := cli(t, s, "repo", "add", repo.InContainer(), "--name", "hello")
	if !strings.Contains(out, "registered hello") {
		t.Fatalf("repo add: %s", out)
	}
	w := s.Track(repo)
	out = cli(t, s, "trigger", "hello", "--follow")
	for _, want := range []string{"build", "test", "release", "succeeded", "v0.1.0"} {
		if !strings.Contains(out, want) {
			t.Fatalf("trigger --follow lacks %q:\n%s", want, out)
		}
	}
	out = cli(t, s, "releases", "hello")
	if !strings.Contains(out, "v0.1.0") {
		t.Fatalf("releases: %s", out)
	}
	out = cli(t, s, "deployments", "hello")
	if !strings.Contains(out, "staging") || !strings.Contains(out, "verified") {
		t.Fatalf("deployments: %s", out)
	}
	out = cli(t, s, "runs", "hello")
	if !strings.Contains(out, "succeeded") {
		t.Fatalf("runs: %s", out)
	}
	// The deployed service answers inside the release container.
	var buf bytes.Buffer
	rel := s.Replicas("release")[0].Res
	code, err := rel.Exec([]string{"wget", "-q", "-O", "-", "http://127.0.0.1:18180/"}, dockertest.ExecOptions{StdOut: &buf, StdErr: &buf})
	if err != nil || code != 0 || !strings.Contains(buf.String(), "v0.1.0") {
		t.Fatalf("the deployed hello answered %q (exit %d, %v)", buf.String(), code, err)
	}
	var runs struct {
		Runs []struct {
			ID string `json:"id"`
		} `json:"runs"`
	}
	if err := json.Unmarshal([]byte(cli(t, s, "runs", "hello", "--output", "json")), &runs); err != nil || len(runs.Runs) != 1 {
		t.Fatalf("runs --output json: %v %+v", err, runs)
	}
	w.RunIDs = []string{runs.Runs[0].ID}
	assertClean(t, w.Finish(time.Minute), 1)
}

// Scenario 2: with 20 runs in flight, the build container that holds a job
// is killed; the other replica takes the job over after the lease, every run
// finishes, and nothing is released, deployed or notified twice.
func TestKilledBuildReplicaLosesNoRun(t *testing.T) {
	s := StartStack(t, haShape)
	w := s.NewWorkload("killbuild")
	w.TriggerEvery(20, 200*time.Millisecond, nil)
	victim := s.RunningBuild(time.Minute)
	c := s.ReplicaOf("build", victim.GetWorkerId())
	t.Logf("killing %s, which runs build %s of run %s", c.Name, victim.GetId(), victim.GetRunId())
	s.Kill(c.Res)

	tally := w.Finish(5 * time.Minute)
	assertClean(t, tally, 20)
	// The killed replica's build was finished by the other one.
	b := s.API().Build
	res, err := b.GetBuild(context.Background(), &buildv1.GetBuildRequest{Id: victim.GetId()})
	if err != nil {
		t.Fatal(err)
	}
	got := res.GetBuild()
	if got.GetAttempt() < 2 || strings.HasPrefix(got.GetWorkerId(), c.Res.Container.Config.Hostname+"-") {
		t.Fatalf("build %s: attempt %d by %s; want a second attempt by the surviving replica", got.GetId(), got.GetAttempt(), got.GetWorkerId())
	}
}

// everyReplicated is the shape with two replicas of every service (all on
// PostgreSQL), so that any one of them can die.
var everyReplicated = StackOptions{Replicas: map[string]int{"source": 2, "build": 2, "test": 2, "release": 2, "notify": 2}}

// Scenario 2b: during 30 runs, a replica of each service is killed in turn
// (SIGKILL: no drain, no lease given back), then a NATS node is stopped and
// started again. Every run finishes once, and nothing is released,
// deployed or notified twice or missed.
//
// Release's replica is killed in the middle of the last run's deploy (the
// workload's deploys pause 2 s for it): the other replica takes the
// environment's lock over once its lease lapses and, as the pipeline's
// on_interrupt: redeploy says, runs that deploy again (deploys retried 1)
// rather than failing the run and rolling the environment back. (An
// earlier run's deploy, killed, is more often replaced by a later run's
// before the lease lapses, and ends without a rollback: also no loss, but
// not the path this scenario is after.)
func TestEveryServiceKilledInTurnLosesNothing(t *testing.T) {
	s := StartStack(t, everyReplicated)
	w := s.NewWorkloadWith("killeach", map[string]string{"deploy-pause": "2\n"})
	// Source's and notify's second replica: the first serves the test's
	// API calls (a trigger whose answer is lost would be retried). Build's
	// and test's first: whichever holds work.
	victims := map[int]*Container{
		3:  s.Replicas("source")[1],
		7:  s.Replicas("build")[0],
		11: s.Replicas("test")[0],
		19: s.Replicas("notify")[1],
	}
	node := s.StreamLeader("BUILD")
	var restarted sync.WaitGroup
	w.TriggerEvery(30, 400*time.Millisecond, func(i int) {
		if c, ok := victims[i]; ok {
			t.Logf("killing %s", c.Name)
			s.Kill(c.Res)
		}
		if i == 23 {
			s.StopFor(node, 15*time.Second, &restarted)
		}
	})
	KillReleaseMidDeploy(s, w, w.RunIDs[len(w.RunIDs)-1], 3*time.Minute)
	restarted.Wait()
	tally := w.Finish(6 * time.Minute)
	assertClean(t, tally, 30)
	if tally.DeploysRetried != 1 {
		t.Fatalf("%d deploys were started again, want the one interrupted: %s", tally.DeploysRetried, tally)
	}
}

// ReleaseReplicas are release's replicas running now.
func (s *Stack) ReleaseReplicas() []Replica {
	var out []Replica
	for _, c := range s.Replicas("release") {
		if c.Running(s) {
			out = append(out, Replica{Name: c.Name, Logs: func() string { return s.Logs(c.Res, 200) }, Kill: func() { s.Kill(c.Res) }})
		}
	}
	return out
}

// StopFor stops the container now and starts it again after d, in a
// goroutine that restarted counts.
func (s *Stack) StopFor(res *dockertest.Resource, d time.Duration, restarted *sync.WaitGroup) {
	s.t.Logf("stopping %s", res.Container.Name)
	s.Stop(res)
	restarted.Go(func() {
		time.Sleep(d)
		s.t.Logf("starting %s again", res.Container.Name)
		s.Start(res)
	})
}

// Scenario 3: one NATS node is stopped in the middle of 20 runs and started
// again later: every run finishes, and no event is lost or handled twice.
func TestNATSNodeStoppedAndStartedLosesNoEvent(t *testing.T) {
	s := StartStack(t, haShape)
	w := s.NewWorkload("natsnode")
	// The node that leads the SOURCE stream, which every run starts on.
	node := s.StreamLeader("SOURCE")
	var restarted sync.WaitGroup
	w.TriggerEvery(20, 300*time.Millisecond, func(i int) {
		if i == 8 {
			s.StopFor(node, 15*time.Second, &restarted)
		}
	})
	restarted.Wait()
	tally := w.Finish(5 * time.Minute)
	assertClean(t, tally, 20)
	if tally.BuildsRetried != 0 {
		t.Fatalf("%d builds ran twice: %s", tally.BuildsRetried, tally)
	}
}

// Scenario 4: the release service is replaced by a container of a newer
// build, old and new side by side for a while, during a stream of 30 runs:
// all succeed.
func TestRollingUpgradeOfReleaseDuringRuns(t *testing.T) {
	s := StartStack(t, haShape)
	w := s.NewWorkload("upgrade")
	old := s.Replicas("release")[0]
	w.TriggerEvery(30, 300*time.Millisecond, func(i int) {
		switch i {
		case 8:
			next := s.StartService("release", 2, suite.nextRelease)
			s.WaitReady(next)
			t.Logf("%s (newer build) is up beside %s", next.Name, old.Name)
		case 16:
			t.Logf("stopping %s (SIGTERM)", old.Name)
			if code := s.Stop(old.Res); code != 0 {
				t.Fatalf("%s exited with %d after SIGTERM:\n%s", old.Name, code, s.Logs(old.Res, 30))
			}
		}
	})
	tally := w.Finish(5 * time.Minute)
	assertClean(t, tally, 30)
	if tally.Succeeded != 30 {
		t.Fatalf("%d of 30 runs succeeded", tally.Succeeded)
	}
	var buf bytes.Buffer
	next := s.Replicas("release")[1].Res
	if code, err := next.Exec([]string{"/usr/local/bin/sluice-release", "--version"}, dockertest.ExecOptions{StdOut: &buf, StdErr: &buf}); err != nil || code != 0 || !strings.Contains(buf.String(), "e2e-next") {
		t.Fatalf("the new release replica says %q (exit %d, %v)", buf.String(), code, err)
	}
}

// Scenario 5: notify is cut off from the network for 30 seconds while events
// keep coming; once it is back, the subscriber gets every event, once.
func TestNotifyCutOffDeliversEveryEventOnce(t *testing.T) {
	s := StartStack(t, haShape)
	w := s.NewWorkload("cutoff")
	n := s.Replicas("notify")[0]
	var back sync.WaitGroup
	var atCut, beforeBack int
	var cutErr, backErr, connectErr error
	w.TriggerEvery(20, 500*time.Millisecond, func(i int) {
		if i == 4 {
			t.Logf("disconnecting %s for 30s", n.Name)
			s.Disconnect(n.Res)
			atCut, cutErr = s.ReceivedCount()
			back.Go(func() {
				time.Sleep(30 * time.Second)
				beforeBack, backErr = s.ReceivedCount()
				t.Logf("reconnecting %s", n.Name)
				connectErr = s.pool.Client.ConnectNetwork(s.net.Network.ID, docker.NetworkConnectionOptions{Container: n.Res.Container.ID})
			})
		}
	})
	back.Wait()
	if err := errors.Join(cutErr, backErr, connectErr); err != nil {
		t.Fatal(err)
	}
	// While cut off, nothing reached the subscriber (so the cut was real).
	if beforeBack != atCut {
		t.Fatalf("the subscriber got %d deliveries while notify was cut off", beforeBack-atCut)
	}
	tally := w.Finish(5 * time.Minute)
	assertClean(t, tally, 20)
}

// Scenario 6: the build service's NATS user may not publish a release event.
func TestBuildUserCannotPublishReleaseEvents(t *testing.T) {
	s := StartStack(t, StackOptions{})
	violations := make(chan error, 4)
	nc, err := nats.Connect(s.NATSURL(0), nats.UserInfo("build", natsPassword("build")),
		nats.CustomInboxPrefix("_INBOX_build"),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { violations <- err }))
	if err != nil {
		t.Fatalf("connect as build: %v", err)
	}
	defer nc.Close()
	const subject = "sluice.release.release.published"
	if err := nc.Publish(subject, []byte(`{"forged":true}`)); err != nil {
		t.Fatal(err)
	}
	_ = nc.Flush()
	select {
	case err := <-violations:
		if !errors.Is(err, nats.ErrPermissionViolation) || !strings.Contains(err.Error(), subject) {
			t.Fatalf("got %v; want a permissions violation for %s", err, subject)
		}
		t.Logf("refused as it should be: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatalf("publishing %s as build was not refused", subject)
	}
	// The same user may publish its own events.
	if err := nc.Publish("sluice.build.e2e.probe", nil); err != nil {
		t.Fatal(err)
	}
	_ = nc.Flush()
	select {
	case err := <-violations:
		t.Fatalf("build's own subject refused: %v", err)
	case <-time.After(time.Second):
	}
	// Nothing reached the RELEASE stream.
	admin, err := nats.Connect(s.NATSURL(0), nats.UserInfo("admin", natsAdminPassword))
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	js, err := jetstream.New(admin)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	stream, err := js.Stream(ctx, "RELEASE")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stream.GetLastMsgForSubject(ctx, subject); !errors.Is(err, jetstream.ErrMsgNotFound) {
		t.Fatalf("RELEASE holds a %s message (or: %v)", subject, err)
	}
	t.Logf("TALLY %s: %s", t.Name(), Tally{})
}

// assertClean fails unless every one of n runs finished, none was lost and
// nothing happened twice or went missing.
func assertClean(t *testing.T, tally Tally, n int) {
	t.Helper()
	if tally.Started != n || tally.Lost != 0 || tally.Succeeded+tally.Failed != n || tally.Twice != 0 || tally.NotificationsMissing != 0 ||
		tally.DeploysTwice != 0 || tally.ReleasesTwice != 0 || tally.NotificationsTwice != 0 {
		t.Fatalf("not clean: %s", tally)
	}
	if tally.Failed != 0 {
		t.Fatalf("%d runs failed: %s", tally.Failed, tally)
	}
	if tally.DeadLetters != 0 {
		t.Fatalf("%d events were dead-lettered: %s", tally.DeadLetters, tally)
	}
}
