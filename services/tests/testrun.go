package tests

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/sluicehq/sluice/platform/events"
	"github.com/sluicehq/sluice/platform/executor"
	"github.com/sluicehq/sluice/platform/ids"
	"github.com/sluicehq/sluice/platform/lease"
	"github.com/sluicehq/sluice/platform/prototime"
	buildeventsv1 "github.com/sluicehq/sluice/proto/gen/sluice/build/events/v1"
	buildv1 "github.com/sluicehq/sluice/proto/gen/sluice/build/v1"
	testeventsv1 "github.com/sluicehq/sluice/proto/gen/sluice/test/events/v1"
	"github.com/sluicehq/sluice/services/tests/domain"
)

const (
	// heartbeat is how often a worker tells JetStream it still handles a
	// message and renews its lease on the test run.
	heartbeat = 10 * time.Second
	// leaseDuration is how long a test run stays with a worker that stopped
	// renewing; it matches the consumer's ack wait, after which JetStream
	// redelivers the message to another worker.
	leaseDuration = 30 * time.Second
	// logFlushInterval is how often step output is stored.
	logFlushInterval = 250 * time.Millisecond
	// lastLogLines is how many of a failed step's last lines the
	// TestRunFinished event carries.
	lastLogLines = 20
	// heldPollInterval is how often a delivery whose test run another worker
	// holds looks again.
	heldPollInterval = time.Second
	// releaseTimeout bounds giving a test run up when an attempt stops.
	releaseTimeout = 5 * time.Second
)

// testBuild tests a build: the test stage. A build that did not succeed
// has nothing to test. The test run is keyed by its run: a delivery for
// a test run that ended, or that a live worker runs for another event, is
// acknowledged without effect; one whose worker stopped renewing its lease
// is taken over (attempt + 1). A nil return acknowledges the event; an
// error has it redelivered (and the test run taken over by the next
// delivery).
func (s *Service) testBuild(ctx context.Context, eventID string, bf *buildeventsv1.BuildFinished, d events.Delivery) error {
	if bf.GetStatus() != buildv1.BuildStatus_BUILD_STATUS_SUCCEEDED {
		// Source folds the failed build into the run; there is nothing to test.
		return nil
	}
	candidate := testRunFromEvent(bf)
	candidate.ID = ids.New()
	candidate.Steps = domain.PendingSteps(stepNames(bf))
	started, err := events.New(&testeventsv1.TestRunStarted{
		RunId:       candidate.RunID,
		TestRunId:   candidate.ID,
		Repository:  bf.GetRepository(),
		Commit:      candidate.Commit,
		Environment: events.CIEnvironment(candidate.Repository.Name),
	}, candidate.ID, candidate.RunID)
	if err != nil {
		return fmt.Errorf("%w: %w", events.ErrPermanent, err)
	}
	type claimed struct {
		run     domain.TestRun
		outcome ClaimOutcome
		at      time.Time // when the claim was made
	}
	c, err := lease.Acquire(ctx, heldPollInterval, func(ctx context.Context) (claimed, lease.Try, error) {
		now := time.Now()
		run, outcome, err := s.store.Claim(ctx, candidate, eventID, started, now, now.Add(leaseDuration))
		if outcome == HeldForThisEvent {
			// JetStream redelivered the event while a worker still holds its
			// test run (that worker's lease on the message lapsed). Keep this
			// delivery until the worker finishes or stops renewing its lease
			// on the test run, then take over: the run is never left RUNNING.
			return claimed{run, outcome, now}, lease.Held, err
		}
		return claimed{run, outcome, now}, lease.Settled, err
	})
	if err != nil {
		return err
	}
	run, outcome := c.run, c.outcome
	log := s.log.With(slog.String("run_id", run.RunID), slog.String("test_run_id", run.ID), slog.Int("attempt", run.Attempt))
	switch outcome {
	case AlreadyEnded:
		log.Debug("test run already ended; duplicate BuildFinished ignored", slog.String("status", run.Status.String()))
		return nil
	case HeldByOther:
		log.Debug("test run is running for another BuildFinished; duplicate ignored")
		return nil
	case Claimed:
		s.relay.Kick()
		log.Info("test run started")
	case TakenOver:
		log.Info("test run taken over from a worker that stopped")
	}
	return s.execute(ctx, log, run, bf, d, c.at)
}

// execute runs one attempt of the test run and records its outcome.
// claimed is when the test run was claimed.
func (s *Service) execute(parent context.Context, log *slog.Logger, run domain.TestRun, bf *buildeventsv1.BuildFinished, d events.Delivery, claimed time.Time) error {
	ctx, kept := lease.Keep(parent, testRunLease{store: s.store, run: run}, s.leaseOptions(log, claimed))
	defer kept.Stop()

	w, err := s.logs.Writer(ctx, run.RunID, logFlushInterval)
	if err != nil {
		kept.Release()
		return err
	}
	a := &attempt{s: s, log: log, run: run, bf: bf, w: w, kept: kept}
	// A cancelled run stops (its steps stop within their stop time), or
	// does not start when it was cancelled before the build ended.
	var outcome domain.Outcome
	cancelled, runErr := s.cancels.Do(ctx, run.RunID, func(held context.Context) error {
		var err error
		if bf.GetRerunFrom() == "release" {
			outcome, err = a.reuse(held)
		} else {
			outcome, err = a.test(held)
		}
		return err
	})
	if cancelled != nil {
		outcome = domain.Cancelled(cancelled.Reason(), a.results())
	}
	kept.Stop()

	if runErr != nil {
		lastDelivery := d.Last()
		switch {
		case errors.Is(context.Cause(ctx), lease.ErrLost):
			a.closeLog(parent)
			log.Warn("another worker took the test run over; this attempt stops", slog.Any("error", runErr))
			// Not an ack: the message is the new holder's now, and an ack
			// from here would take it from JetStream under its feet.
			return fmt.Errorf("test run %s was taken over: %w", run.RunID, runErr)
		case parent.Err() != nil && !lastDelivery:
			a.meta("", fmt.Sprintf("--- attempt %d stopped: the worker is shutting down; another worker will take over", run.Attempt))
			a.closeLog(parent)
			kept.Release()
			return runErr
		case !lastDelivery:
			a.meta("", fmt.Sprintf("--- attempt %d failed: %v; trying again", run.Attempt, runErr))
			a.closeLog(parent)
			kept.Release()
			return runErr
		}
		log.Error("test run failed on its last delivery; finishing it in ERROR", slog.Any("error", runErr))
		outcome = domain.Errored(fmt.Sprintf("gave up after %d deliveries: %v", d.NumDelivered(), runErr), a.results())
	}
	return a.finish(parent, outcome)
}

// leaseOptions keeps the lease on a test run claimed at since: a worker
// cut off from the database stops its step before another may take the
// test run over.
func (s *Service) leaseOptions(log *slog.Logger, since time.Time) lease.Options {
	return lease.Options{
		Every: heartbeat, ReleaseTimeout: releaseTimeout, Log: log, Supervisor: s.sup,
		Lapse: executor.LeaseLapse(leaseDuration, 0), Since: since,
	}
}

// testRunLease is a worker's lease on a test run, kept in its row of the
// test_runs table: the event's next delivery takes the run over once it
// lapsed or was released.
type testRunLease struct {
	store *Store
	run   domain.TestRun
}

func (t testRunLease) Renew(ctx context.Context) error {
	return t.store.RenewLease(ctx, t.run.ID, t.run.Attempt, time.Now().Add(leaseDuration))
}

func (t testRunLease) Release(ctx context.Context) error {
	return t.store.ReleaseLease(ctx, t.run.ID, t.run.Attempt)
}

// finish records the outcome and publishes TestRunFinished with it.
func (a *attempt) finish(parent context.Context, o domain.Outcome) error {
	run := a.run
	ended := time.Now()
	summary := fmt.Sprintf("--- test run %s", o.Status)
	if o.Reason != "" {
		summary += ": " + o.Reason
	}
	a.meta("", summary)
	a.closeLog(parent)

	counts := o.Counts()
	env := events.CIEnvironment(run.Repository.Name)
	positions, omitted := o.PublishedCases()
	cases, err := caseEvents(run, o, env, positions)
	if err != nil {
		return fmt.Errorf("%w: %w", events.ErrPermanent, err)
	}
	payload := &testeventsv1.TestRunFinished{
		RunId:             run.RunID,
		TestRunId:         run.ID,
		Repository:        repositoryRef(run.Repository),
		Commit:            run.Commit,
		Branch:            a.run.Branch,
		Ref:               a.bf.GetRef(),
		BuildId:           run.BuildID,
		Status:            statusToProto(o.Status),
		Counts:            countsToProto(counts),
		FailureReason:     o.Reason,
		FailedCases:       o.FailedCaseNames(),
		Duration:          prototime.Duration(ended.Sub(run.CreatedAt)),
		StepDuration:      prototime.Duration(o.StepDuration),
		Environment:       env,
		CaseEvents:        int32(len(positions)),
		CaseEventsOmitted: int32(omitted),
		// Passed on for release, which asks no one for them.
		Pipeline:      a.bf.GetPipeline(),
		Artifacts:     a.bf.GetArtifacts(),
		ReusedTestRun: a.reused,
	}
	if f := o.FailedStep; f != nil {
		payload.FailedStep = f.Name
		payload.ExitCode = int32(f.ExitCode)
		payload.LastLogLines = f.LastLines
	}
	ev, err := events.New(payload, run.ID, run.RunID)
	if err != nil {
		return fmt.Errorf("%w: %w", events.ErrPermanent, err)
	}
	// The outcome is stored even when the worker is shutting down: the
	// work is done.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(parent), 30*time.Second)
	defer cancel()
	steps := domain.EndedSteps(stepNames(a.bf), o.Steps)
	if err := a.s.store.Finish(ctx, run, o, steps, ended, ev, cases...); err != nil {
		if errors.Is(err, lease.ErrLost) {
			a.log.Warn("another worker took the test run over; this attempt's outcome is dropped", slog.String("status", o.Status.String()))
			return nil
		}
		a.kept.Release()
		return err
	}
	a.s.relay.Kick()
	a.log.Info("test run finished", slog.String("status", o.Status.String()), slog.String("reason", o.Reason),
		slog.Int("passed", counts.Passed), slog.Int("failed", counts.Failed), slog.Int("skipped", counts.Skipped))
	if err := a.s.logs.Complete(ctx, run.RunID); err != nil {
		a.log.Warn("marking the log complete failed", slog.Any("error", err))
	}
	return nil
}

// caseEvents are the test case events (CDEvents testcaserun) of a finished
// test run: one per case at positions (domain.Outcome.PublishedCases), a
// TestCaseSkipped for a skipped case, else a TestCaseFinished. They carry
// no output; ListTestCases has it.
func caseEvents(run domain.TestRun, o domain.Outcome, environment string, positions []int) ([]events.Event, error) {
	repo := repositoryRef(run.Repository)
	out := make([]events.Event, 0, len(positions))
	for _, i := range positions {
		c := o.Cases[i]
		tc := caseToProto(c)
		tc.Output = ""
		var payload proto.Message = &testeventsv1.TestCaseFinished{
			RunId: run.RunID, TestRunId: run.ID, Repository: repo, Environment: environment, TestCase: tc, Position: int32(i),
		}
		if c.Status == domain.CaseSkipped {
			payload = &testeventsv1.TestCaseSkipped{
				RunId: run.RunID, TestRunId: run.ID, Repository: repo, Environment: environment, TestCase: tc, Position: int32(i),
			}
		}
		ev, err := events.New(payload, events.TestCaseRunID(run.ID, i), run.RunID)
		if err != nil {
			return nil, err
		}
		out = append(out, ev)
	}
	return out, nil
}
