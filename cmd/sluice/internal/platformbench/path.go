package platformbench

import (
	"github.com/sluicehq/sluice/services/build"
	"github.com/sluicehq/sluice/services/release"
	"github.com/sluicehq/sluice/services/tests"
)

// op is one piece of durable work on a run's critical path that the floor
// does the way the platform does it, without Sluice's logic around it.
type op int

const (
	// tx is a write transaction on the stage's service database, committed
	// (WAL, synchronous NORMAL, one connection, BEGIN IMMEDIATE: sqldb's
	// SQLite settings).
	tx op = iota
	// checkout is a workspace checkout of the run's commit with
	// platform/gitcheckout, and the workspace's removal afterwards.
	checkout
	// command is a `/bin/sh -c true`: a pipeline command whose time the
	// overhead figure includes (the deploy and verify commands; the build
	// and test steps' times are subtracted from the overhead instead).
	command
	// lockEnvironment and unlockEnvironment bracket a deployment: deploys to
	// one environment run one at a time. It is what deploying means, not a
	// Sluice choice, so the floor keeps it (it matters with runs in flight).
	lockEnvironment
	unlockEnvironment
)

// stage is one service's part of a run's critical path.
type stage struct {
	// service names the database the stage's transactions commit to.
	service string
	// stream and durable are the consumer the stage takes its event from
	// (the declared one, deploy/nats/consumers); empty for the trigger.
	stream, durable string
	// workers is how many events the consumer handles at once, as the
	// service is configured in the all-in-one process.
	workers int
	ops     []op
	// publish is the subject of the event the stage hands the run on
	// with; empty for the last stage, whose commit ends the run.
	publish string
}

// runPath is the critical path of one successful run of the benchmark's
// pipeline (one build step, one test step, one environment with a deploy
// and a verify command, no artifacts): what must happen, one after the
// other, between TriggerRun and the moment WatchRun sees the run end. It is
// the one place that says what the floor does; update it when the path
// changes. The counts are read from services/*/ (transactions that write;
// reads, Connect calls and work that runs beside the path are Sluice's
// overhead, not the floor's):
//
//   - source, TriggerRun: the run in one transaction, then its admission
//     and its RunRequested in another. (The mirror fetch, reading
//     .sluice.yaml, the Connect call and the admission's lock and reads
//     are Sluice's.)
//   - hop 1, run.requested, SOURCE → build-runs.
//   - build: Create, Claim (BuildStarted), the checkout, StepStarted, [the
//     step, subtracted], StepEnded (StepFinished), the log lines (one
//     flush at Close), Finish (BuildFinished). Marking the log complete and
//     the ack come after the event is out, beside the path.
//   - hop 2, build.finished, BUILD → test-builds.
//   - test: Claim (TestRunStarted), the checkout, [the step, subtracted],
//     the log lines, Finish (TestRunFinished).
//   - hop 3, testrun.finished, TEST → release-tests.
//   - release: beginRun, [ListCommits from source, Sluice's] the
//     release with ReleasePublished, the checkout (before the lock: it
//     touches no environment), then under the environment's lock:
//     InsertDeployment, MarkStarted, the deploy command,
//     SetDeploymentStatus VERIFYING, the verify command, recordDeployment
//     (ServiceDeployed), the release log's lines (one flush at Close); then
//     finish (ReleaseFinished). Marking the log complete comes after the
//     event is enqueued, beside the path. Four of these
//     writes (beginRun, InsertDeployment, MarkStarted and
//     SetDeploymentStatus) are single statements outside BEGIN; the floor
//     commits each as a transaction, which costs the same to within
//     microseconds.
//   - hop 4, release.finished (sluice.release.run.finished), RELEASE →
//     source-release.
//   - source: the fold of ReleaseFinished (processed mark, run summary,
//     RunFinished) in one transaction; WatchRun sees the run end on its
//     commit. (A run succeeds once every stage's end is folded; the
//     build's and the test's ends are folded long before the release's
//     unless source's consumers lag.) RunFinished is published after
//     that, so it is not on the path, nor are the outbox rows' deletion
//     after each publish, source's folds of the other events, and notify.
//
// Each hop is a JetStream publish of a real message of that subject (its
// headers and body, captured from a Sluice run) with a fresh Nats-Msg-Id,
// awaited for its PubAck as the outbox relay does; a pull from the durable
// consumer as platform/events does (FetchNoWait, else a 2 s Fetch of one);
// and a double ack once the stage's work is done.
var runPath = []stage{
	{
		service: "source",
		ops:     []op{tx, tx},
		publish: "sluice.source.run.requested",
	},
	{
		service: "build", stream: "SOURCE", durable: "build-runs", workers: build.DefaultWorkers,
		ops:     []op{tx, tx, checkout, tx, tx, tx, tx},
		publish: "sluice.build.build.finished",
	},
	{
		service: "test", stream: "BUILD", durable: "test-builds", workers: tests.DefaultWorkers,
		ops:     []op{tx, checkout, tx, tx},
		publish: "sluice.test.testrun.finished",
	},
	{
		service: "release", stream: "TEST", durable: "release-tests", workers: release.DefaultWorkers,
		ops: []op{
			tx, tx,
			checkout,
			lockEnvironment, tx, tx, command, tx, command, tx, tx, unlockEnvironment,
			tx,
		},
		publish: "sluice.release.run.finished",
	},
	{
		// platform/events' default concurrency: source's consumers set none.
		service: "source", stream: "RELEASE", durable: "source-release", workers: 1,
		ops: []op{tx},
	},
}

// pathCounts is what a path does per run.
type pathCounts struct {
	hops, transactions, checkouts, commands int
}

func countPath(path []stage) pathCounts {
	var c pathCounts
	for _, st := range path {
		if st.publish != "" {
			c.hops++
		}
		for _, o := range st.ops {
			switch o {
			case tx:
				c.transactions++
			case checkout:
				c.checkouts++
			case command:
				c.commands++
			case lockEnvironment, unlockEnvironment:
			}
		}
	}
	return c
}

// hopSubjects are the subjects of the events that carry a run along path.
func hopSubjects(path []stage) []string {
	var out []string
	for _, st := range path {
		if st.publish != "" {
			out = append(out, st.publish)
		}
	}
	return out
}
