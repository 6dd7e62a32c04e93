package build

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/sluicehq/sluice/platform/apierror"
	"github.com/sluicehq/sluice/platform/artifacts"
	"github.com/sluicehq/sluice/platform/events"
	"github.com/sluicehq/sluice/platform/executor"
	"github.com/sluicehq/sluice/platform/ids"
	"github.com/sluicehq/sluice/platform/lease"
	"github.com/sluicehq/sluice/platform/prototime"
	"github.com/sluicehq/sluice/platform/runcancel"
	"github.com/sluicehq/sluice/platform/steplog"
	buildeventsv1 "github.com/sluicehq/sluice/proto/gen/sluice/build/events/v1"
	sourceeventsv1 "github.com/sluicehq/sluice/proto/gen/sluice/source/events/v1"
	"github.com/sluicehq/sluice/services/build/domain"
)

const (
	// detachedTimeout bounds the writes a handler makes after its context
	// ended (flushing the log, releasing the lease, failing the build).
	detachedTimeout = 10 * time.Second
	// logFlushInterval is how often buffered step output is stored.
	logFlushInterval = 100 * time.Millisecond
)

// runBuild builds one run: the build stage. The run request comes from a work
// queue with at-least-once delivery, so: a build is keyed by its run; a
// delivery for a build that ended is acknowledged without effect; a build
// held by a live worker is waited for; a build left RUNNING by a worker
// that stopped or died (its lease lapsed) is taken over and run again from
// the start; and on the consumer's last delivery a build that cannot
// complete is ended FAILED, so that none stays RUNNING forever.
//
// The request was validated by its proto's rules when it was received (a
// run id that could not name a workspace, a pipeline with two steps of one
// name, ... are dead-lettered before they get here).
func (s *Service) runBuild(ctx context.Context, req *sourceeventsv1.RunRequested, d events.Delivery) error {
	run := runFromEvent(req)
	log := s.log.With(slog.String("run_id", run.ID))

	c, ok, err := s.acquire(ctx, run, log)
	if err != nil || !ok {
		return err
	}
	b := c.build
	log = log.With(slog.String("build_id", b.ID), slog.Int("attempt", b.Attempt))
	l := Lease{BuildID: b.ID, Attempt: b.Attempt, WorkerID: s.cfg.WorkerID, TTL: s.leaseTTL()}

	// The lease is kept until this attempt stopped writing, even while the
	// process is stopping: a takeover must not start before our last line.
	workCtx, kept := lease.Keep(ctx, buildLease{store: s.store, l: l},
		lease.Options{
			Every: s.cfg.Heartbeat, ReleaseTimeout: detachedTimeout, Log: log, Supervisor: s.sup,
			// A worker cut off from the database stops its step before
			// another may take the build over.
			Lapse: executor.LeaseLapse(s.leaseTTL(), 0), Since: b.StartTime,
		})
	defer kept.Stop()

	w, err := s.logs.Writer(ctx, run.ID, logFlushInterval)
	if err != nil {
		return s.abandon(ctx, run, req, l, kept, nil, d, err, log)
	}
	if c.takeover {
		if err := s.logs.Reopen(ctx, run.ID); err != nil {
			return s.abandon(ctx, run, req, l, kept, w, d, err, log)
		}
		w.Append("", steplog.Meta, fmt.Sprintf("--- worker %s took over (attempt %d)", s.cfg.WorkerID, b.Attempt))
		log.Info("took over build")
	} else {
		w.Append("", steplog.Meta, fmt.Sprintf("--- worker %s started the build (attempt %d)", s.cfg.WorkerID, b.Attempt))
		log.Info("build started")
	}

	// A cancelled run stops (its steps stop within their stop time), or
	// does not start when it was cancelled before it was claimed.
	var res result
	cancelled, err := s.cancels.Do(workCtx, run.ID, func(held context.Context) error {
		var err error
		if req.GetRerunFrom() == "test" || req.GetRerunFrom() == "release" {
			res, err = s.reuse(held, run, req, l, w)
		} else {
			res, err = s.execute(held, run, b, l, w)
		}
		return err
	})
	if cancelled != nil {
		res = result{cancelled: cancelled, stepDuration: res.stepDuration}
	}
	// From here every write renews the lease itself (and abandon releases it).
	kept.Stop()
	if err != nil {
		return s.abandon(ctx, run, req, l, kept, w, d, err, log)
	}
	// The steps ran to their end: record it even if the process is
	// stopping now, or a takeover would run them all again.
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), detachedTimeout)
	defer cancel()
	if err := s.finish(fctx, run, req, b, l, w, res); err != nil {
		return s.abandon(ctx, run, req, l, kept, nil, d, err, log)
	}
	log.Info("build finished", slog.String("status", string(res.status())), slog.String("failure", res.failure.Reason))
	return nil
}

// result is what an attempt that ran to its end produced.
type result struct {
	failure      domain.Failure
	artifacts    []domain.Artifact
	stepDuration time.Duration
	// cancelled is set when the run was cancelled: the steps stopped, or
	// never started.
	cancelled *runcancel.Cancellation
	// reused is the build whose artifacts a rerun's build reused.
	reused string
}

// reuse is the build of a rerun that starts after the build stage
// (RunRequested.rerun_from): the build of the run it reruns lends its
// artifacts, copied under this run's name with their digests checked, and
// no step runs. That build must have succeeded, for the same repository
// and commit, and its artifacts must still be stored; else this build
// fails, saying to rerun every stage.
func (s *Service) reuse(ctx context.Context, run domain.Run, req *sourceeventsv1.RunRequested, l Lease, w *steplog.Writer) (result, error) {
	var res result
	of := req.GetRerunOf()
	old, err := s.store.ByRun(ctx, of)
	switch {
	case errors.Is(err, apierror.ErrNotFound):
		res.failure = domain.Failure{Reason: fmt.Sprintf("the build of run %s, which this run reruns, is not known here; rerun every stage", of)}
	case err != nil:
		return res, orInterrupted(ctx, err)
	case old.Status != domain.Succeeded:
		res.failure = domain.Failure{Reason: fmt.Sprintf("the build of run %s, which this run reruns, did not succeed (%s); rerun every stage", of, old.Status)}
	case old.Repository.ID != run.Repository.ID || old.Commit != run.Commit:
		res.failure = domain.Failure{Reason: fmt.Sprintf("run %s, which this run reruns, built another repository or commit", of)}
	}
	if res.failure.Failed() {
		w.Append("", steplog.Meta, "--- "+res.failure.Reason)
		return res, nil
	}
	w.Append("", steplog.Meta, fmt.Sprintf("--- reusing build %s of run %s: no step runs", old.ID, of))
	store, err := artifacts.Open(ctx, s.js)
	if err != nil {
		return res, orInterrupted(ctx, err)
	}
	for _, a := range old.Artifacts {
		// Copied under this run's name, digest checked: the object store
		// keeps it as long as a new build's (the old one may be about to
		// expire, or gone).
		kept, err := store.Copy(ctx, artifacts.Artifact(a), store, artifacts.ObjectName(run.ID, a.Name),
			fmt.Sprintf("%s of run %s (%s at %s), built by run %s", a.Name, run.ID, run.Repository.Name, run.Commit, of))
		switch {
		case artifacts.Permanent(err):
			res.failure = domain.Failure{Reason: fmt.Sprintf("the artifacts of run %s, which this run reruns, cannot be reused: %v; rerun every stage", of, err)}
			w.Append("", steplog.Meta, "--- "+res.failure.Reason)
			return res, nil
		case err != nil:
			return res, orInterrupted(ctx, err)
		}
		if err := s.store.AddArtifact(ctx, l, domain.Artifact(kept)); err != nil {
			return res, orInterrupted(ctx, err)
		}
		w.Append("", steplog.Meta, fmt.Sprintf("--- artifact %s: %d bytes, sha256 %s (built by run %s)", a.Name, a.Size, a.SHA256, of))
		res.artifacts = append(res.artifacts, domain.Artifact(kept))
	}
	res.reused = old.ID
	return res, nil
}

func (r result) status() domain.Status {
	if r.cancelled != nil {
		return domain.Cancelled
	}
	if r.failure.Failed() {
		return domain.Failed
	}
	return domain.Succeeded
}

// finish stores the outcome with BuildFinished in one transaction, then
// marks the log complete. w is closed.
func (s *Service) finish(ctx context.Context, run domain.Run, req *sourceeventsv1.RunRequested, b domain.Build, l Lease, w *steplog.Writer, res result) error {
	end := time.Now().UTC()
	switch {
	case res.cancelled != nil:
		res.failure = domain.Failure{Reason: res.cancelled.Reason()}
		w.Append("", steplog.Meta, "--- build "+res.cancelled.Reason())
	case res.failure.Failed():
		w.Append("", steplog.Meta, "--- build failed: "+res.failure.Reason)
	default:
		w.Append("", steplog.Meta, fmt.Sprintf("--- build succeeded in %s", domain.Round(end.Sub(b.StartTime))))
	}
	// Every line is stored before the build is seen to end.
	if err := w.Close(context.WithoutCancel(ctx)); err != nil {
		return err
	}
	out := Outcome{Status: res.status(), Failure: res.failure, StepDuration: res.stepDuration, EndTime: end}
	fin := &buildeventsv1.BuildFinished{
		RunId:         run.ID,
		BuildId:       b.ID,
		Repository:    repositoryRef(run.Repository),
		Commit:        run.Commit,
		Branch:        run.Branch,
		Status:        buildStatusToProto(out.Status),
		FailureReason: res.failure.Reason,
		FailedStep:    res.failure.Step,
		ExitCode:      int32(res.failure.ExitCode),
		LastLogLines:  res.failure.LastLogLines,
		Duration:      prototime.Duration(end.Sub(b.StartTime)),
		StepDuration:  prototime.Duration(res.stepDuration),
		Pipeline:      req.GetPipeline(),
		Ref:           req.GetRef(),
		Trigger:       req.GetTrigger(),
		Changes:       req.GetChanges(),
		RerunOf:       req.GetRerunOf(),
		RerunFrom:     req.GetRerunFrom(),
		ReusedBuild:   res.reused,
	}
	for _, a := range res.artifacts {
		fin.Artifacts = append(fin.Artifacts, artifactToProto(a))
	}
	ev, err := events.New(fin, b.ID, run.ID)
	if err != nil {
		return err
	}
	if err := s.store.Finish(ctx, l, run.ID, out, ev); err != nil {
		return err
	}
	s.relay.Kick()
	// Wakes the readers waiting for more (the log is complete already).
	return s.logs.Complete(ctx, run.ID)
}

// abandon handles an attempt that could not run to its end: the process is
// stopping, the database or the object store failed, or another worker took
// the build over. The build stays RUNNING and the error makes JetStream
// redeliver the event, so that a worker takes it over, except on the last
// delivery, where the build is ended FAILED so it never stays RUNNING.
func (s *Service) abandon(ctx context.Context, run domain.Run, req *sourceeventsv1.RunRequested, l Lease, kept *lease.Keeper, w *steplog.Writer, d events.Delivery, cause error, log *slog.Logger) error {
	kept.Stop()
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), detachedTimeout)
	defer cancel()
	if errors.Is(cause, lease.ErrLost) {
		if w != nil {
			// The new holder opened the log after us: the lines we had
			// not stored are refused (steplog.ErrSuperseded), and its
			// log says that lines were lost.
			if err := w.Close(dctx); err != nil {
				log.Warn("log lines of the lost attempt not stored", slog.Any("error", err))
			}
		}
		// Not an ack, even on the last delivery: the message is the new
		// holder's now, and an ack from here would take it from JetStream
		// under its feet. A redelivery waits for the new holder to finish.
		log.Warn("another worker took the build over", slog.Any("error", cause))
		return cause
	}
	if !d.Last() {
		if w != nil {
			w.Append("", steplog.Meta, fmt.Sprintf("--- worker %s stopped working on the build: %v", s.cfg.WorkerID, cause))
			if err := w.Close(dctx); err != nil {
				log.Warn("could not store the last log lines", slog.Any("error", err))
			}
		}
		// Closed the log first, so the next holder numbers after our lines.
		kept.Release()
		return fmt.Errorf("build of run %s (attempt %d) did not finish: %w", run.ID, l.Attempt, cause)
	}
	// The last delivery: no worker will try again.
	if w == nil {
		var err error
		if w, err = s.logs.Writer(dctx, run.ID, logFlushInterval); err != nil {
			return errors.Join(cause, err)
		}
	}
	b, err := s.store.Get(dctx, l.BuildID)
	if err != nil {
		_ = w.Close(dctx)
		return errors.Join(cause, err)
	}
	if b.Status.Ended() {
		// Only completing the log failed.
		_ = w.Close(dctx)
		return s.logs.Complete(dctx, run.ID)
	}
	if err := s.finish(dctx, run, req, b, l, w, result{failure: domain.GaveUp(d.NumDelivered(), cause)}); err != nil {
		return errors.Join(cause, err)
	}
	log.Error("build failed on the last delivery of its run request", slog.Any("error", cause))
	return nil
}

// claim is a build this worker claimed.
type claim struct {
	build domain.Build
	// takeover is true when another worker had been running it.
	takeover bool
}

// acquire returns the run's build claimed by this worker, creating it if
// needed. It returns false when the build already ended (the delivery is a
// duplicate). While another live worker holds the build, it waits: the
// build ends (false) or the holder's lease lapses (a takeover).
func (s *Service) acquire(ctx context.Context, run domain.Run, log *slog.Logger) (claim, bool, error) {
	steps := make([]string, len(run.Steps))
	for i, st := range run.Steps {
		steps[i] = st.Name
	}
	waiting := false
	c, err := lease.Acquire(ctx, min(time.Second, s.cfg.Heartbeat), func(ctx context.Context) (claim, lease.Try, error) {
		b, err := s.store.ByRun(ctx, run.ID)
		if errors.Is(err, apierror.ErrNotFound) {
			nb := domain.Build{
				ID:         ids.New(),
				RunID:      run.ID,
				Repository: run.Repository,
				Commit:     run.Commit,
				Branch:     run.Branch,
				CreateTime: time.Now().UTC(),
			}
			if _, err := s.store.Create(ctx, nb, steps); err != nil {
				return claim{}, lease.Settled, err
			}
			return claim{}, lease.Raced, nil // read back ours, or the one a concurrent delivery made
		}
		if err != nil {
			return claim{}, lease.Settled, err
		}
		if b.Status.Ended() {
			// Its events are in the outbox already; make sure its log is
			// complete (a crash may have come between the two).
			if err := s.logs.Complete(ctx, run.ID); err != nil {
				return claim{}, lease.Settled, err
			}
			log.Info("run already built; delivery acknowledged", slog.String("build_id", b.ID), slog.String("status", string(b.Status)))
			return claim{build: b}, lease.Settled, nil
		}
		now := time.Now().UTC()
		if !b.Claimable(now) {
			if !waiting {
				waiting = true
				log.Info("build held by another worker; waiting for it to end or for its lease to lapse",
					slog.String("holder", b.WorkerID), slog.Time("lease_expires", b.LeaseExpires))
			}
			return claim{build: b}, lease.Held, nil
		}
		l := Lease{BuildID: b.ID, Attempt: b.Attempt + 1, WorkerID: s.cfg.WorkerID, TTL: s.leaseTTL()}
		ev, err := events.New(&buildeventsv1.BuildStarted{
			RunId:      run.ID,
			BuildId:    b.ID,
			Repository: repositoryRef(run.Repository),
			Commit:     run.Commit,
			Attempt:    int32(l.Attempt),
		}, b.ID, run.ID)
		if err != nil {
			return claim{}, lease.Settled, err
		}
		ok, err := s.store.Claim(ctx, b, l, now, steps, ev)
		if err != nil {
			return claim{}, lease.Settled, err
		}
		if !ok {
			return claim{}, lease.Raced, nil // another worker claimed it first
		}
		s.relay.Kick()
		takeover := b.Status == domain.Running
		b.Status, b.Attempt, b.WorkerID, b.StartTime = domain.Running, l.Attempt, l.WorkerID, now
		b.LeaseExpires = now.Add(l.TTL)
		return claim{build: b, takeover: takeover}, lease.Settled, nil
	})
	if err != nil {
		if waiting && ctx.Err() != nil {
			return claim{}, false, fmt.Errorf("waiting for build %s held by %s: %w", c.build.ID, c.build.WorkerID, err)
		}
		return claim{}, false, err
	}
	return c, !c.build.Status.Ended(), nil
}

// leaseTTL is how long a renewal keeps the database lease: two heartbeats,
// and the time a step takes to stop (a worker that could not renew for two
// heartbeats stops its step, which has ended when the lease lapses).
func (s *Service) leaseTTL() time.Duration { return 2*s.cfg.Heartbeat + executor.StopTime(0) }

// buildLease is a build's lease, kept in its row of the builds table.
type buildLease struct {
	store *Store
	l     Lease
}

func (b buildLease) Renew(ctx context.Context) error   { return b.store.RenewLease(ctx, b.l) }
func (b buildLease) Release(ctx context.Context) error { return b.store.ReleaseLease(ctx, b.l) }
