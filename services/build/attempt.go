package build

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"maps"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/sluicehq/sluice/platform/artifacts"
	"github.com/sluicehq/sluice/platform/egress"
	"github.com/sluicehq/sluice/platform/events"
	"github.com/sluicehq/sluice/platform/executor"
	"github.com/sluicehq/sluice/platform/executor/stagespec"
	"github.com/sluicehq/sluice/platform/gitauth"
	"github.com/sluicehq/sluice/platform/lastlines"
	"github.com/sluicehq/sluice/platform/lease"
	"github.com/sluicehq/sluice/platform/prototime"
	"github.com/sluicehq/sluice/platform/runcancel"
	"github.com/sluicehq/sluice/platform/stepcache"
	"github.com/sluicehq/sluice/platform/stepfile"
	"github.com/sluicehq/sluice/platform/stepgraph"
	"github.com/sluicehq/sluice/platform/steplog"
	"github.com/sluicehq/sluice/platform/stepsecrets"
	"github.com/sluicehq/sluice/platform/tarball"
	buildeventsv1 "github.com/sluicehq/sluice/proto/gen/sluice/build/events/v1"
	"github.com/sluicehq/sluice/services/build/domain"
)

// execute runs one attempt of a claimed build in a fresh workspace: check
// out, run the steps in order, store the artifacts. A build failure (a step
// failed, the checkout failed, an artifact is missing) is a result; an error
// means the attempt could not run to its end (ctx ended, the lease was lost,
// the database or the object store failed).
func (s *Service) execute(ctx context.Context, run domain.Run, b domain.Build, l Lease, w *steplog.Writer) (result, error) {
	var res result
	ws := filepath.Join(s.cfg.DataDir, "workspaces", run.ID+"-"+strconv.Itoa(b.Attempt))
	for _, dir := range []string{ws, executor.HomeOf(ws)} {
		if err := os.RemoveAll(dir); err != nil {
			return res, fmt.Errorf("clear workspace %s: %w", dir, err)
		}
		defer func() { _ = os.RemoveAll(dir) }()
	}
	secrets, err := s.secrets.Resolve(ctx, run.ID, stepsecrets.Names(stepSecrets(run.Steps)...))
	var cred gitauth.Credential
	if err == nil {
		cred, err = s.secrets.Credential(ctx, run.ID, run.Repository.GitCredential)
	}
	switch {
	case errors.Is(err, stepsecrets.ErrUnresolvable):
		res.failure = domain.SecretsUnresolved(err)
		w.Append("", steplog.Meta, "--- "+res.failure.Reason)
		return res, nil
	case err != nil:
		return res, orInterrupted(ctx, err)
	}
	secrets = secrets.Masking(cred.Secrets()...)
	if err := s.cfg.Checkout.Checkout(ctx, s.egress, run.Repository.URL, run.Commit, ws, cred); err != nil {
		if ctx.Err() != nil {
			return res, interrupted(ctx)
		}
		res.failure = domain.CheckoutFailed(errors.New(strings.TrimPrefix(egress.Brief(err).Error(), "gitcheckout: ")))
		w.Append("", steplog.Meta, "--- "+res.failure.Reason)
		return res, nil
	}

	caches, err := stepcache.Prepare(ctx, s.js, stepcache.BuildBucket, s.cfg.Caches, s.log, stepcache.Attempt{
		Specs: run.Caches, RepositoryID: run.Repository.ID, DefaultBranch: run.Repository.DefaultBranch, Facts: run.Facts,
		Dirs: stepcache.Dirs{Workspace: ws, Home: executor.HomeOf(ws)}, Say: func(line string) { w.Append("", steplog.Meta, "--- "+line) },
	})
	if err != nil {
		return res, interrupted(ctx)
	}
	if err := caches.Restore(ctx); err != nil {
		return res, interrupted(ctx)
	}

	stage, failure, err := s.openStage(ctx, run, b, ws, secrets)
	if err != nil {
		return res, err
	}
	if failure.Failed() {
		res.failure = failure
		w.Append("", steplog.Meta, "--- "+failure.Reason)
		return res, nil
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), detachedTimeout)
		defer cancel()
		if err := stage.Close(cctx); err != nil {
			s.log.Warn("the build's containers were not all removed; the next attempt or sweep removes them", slog.String("run_id", run.ID), slog.Any("error", err))
		}
	}()
	steps := &buildSteps{s: s, stage: stage, run: run, b: b, l: l, w: w, ws: ws, secrets: secrets, failures: make([]domain.Failure, len(run.Steps))}
	graph, err := stepgraph.Execute(ctx, run.Graph, run.Facts, s.cfg.Steps.Parallel(run.MaxParallel), steps)
	res.stepDuration = steps.duration
	var problem *stepgraph.Problem
	if errors.As(err, &problem) {
		// source refuses such a pipeline: one that gets here was made
		// by another producer, and no other try would run it.
		res.failure = domain.Failure{Reason: "the build's steps cannot run: " + problem.Message}
		w.Append("", steplog.Meta, "--- "+res.failure.Reason)
		return res, nil
	}
	if err != nil {
		return res, err
	}
	if graph.Failed >= 0 {
		res.failure = steps.failures[graph.Failed]
		return res, nil
	}
	if err := caches.Save(ctx); err != nil {
		return res, interrupted(ctx)
	}

	if len(run.Artifacts) == 0 {
		return res, nil
	}
	store, err := artifacts.Open(ctx, s.js)
	if err != nil {
		return res, orInterrupted(ctx, err)
	}
	for _, spec := range run.Artifacts {
		a, failure, err := s.storeArtifact(ctx, store, run, ws, spec)
		if err != nil {
			return res, err
		}
		if failure.Failed() {
			w.Append("", steplog.Meta, "--- "+failure.Reason)
			res.failure = failure
			return res, nil
		}
		w.Append("", steplog.Meta, fmt.Sprintf("--- artifact %s: %s, %d bytes, sha256 %s", a.Name, spec.Path, a.Size, a.SHA256))
		ev, err := events.New(&buildeventsv1.ArtifactPublished{RunId: run.ID, BuildId: b.ID, Artifact: artifactToProto(a)}, b.ID, run.ID)
		if err != nil {
			return res, err
		}
		if err := s.store.AddArtifact(ctx, l, a, ev); err != nil {
			return res, orInterrupted(ctx, err)
		}
		s.relay.Kick()
		res.artifacts = append(res.artifacts, a)
	}
	return res, nil
}

// buildSteps runs a build's steps for stepgraph.Execute, keeping each
// step's failure and the time spent in steps.
type buildSteps struct {
	s       *Service
	stage   executor.Stage
	run     domain.Run
	b       domain.Build
	l       Lease
	w       *steplog.Writer
	ws      string
	secrets stepsecrets.Set

	mu       sync.Mutex
	failures []domain.Failure
	duration time.Duration
}

// Run runs one try of step i.
func (r *buildSteps) Run(ctx context.Context, i int, try stepgraph.Try) (stepgraph.Outcome, error) {
	dur, failure, notStarted, err := r.s.runStep(ctx, r, i, try)
	r.mu.Lock()
	r.duration += dur
	r.failures[i] = failure
	r.mu.Unlock()
	switch {
	case err != nil:
		return stepgraph.Passed, err
	case !failure.Failed():
		return stepgraph.Passed, nil
	case notStarted:
		return stepgraph.FailedForGood, nil
	default:
		return stepgraph.Failed, nil
	}
}

// NotRun records that step i does not run: skipped (its condition is
// false, a step before it failed) or failed (its condition could not be
// evaluated).
func (r *buildSteps) NotRun(ctx context.Context, i int, reason string, failed bool) error {
	st := r.run.Steps[i]
	step := domain.Step{Name: st.Name, Status: domain.StepSkipped, EndTime: time.Now().UTC(), Reason: reason}
	if failed {
		step.Status, step.ExitCode = domain.StepFailed, -1
		r.mu.Lock()
		r.failures[i] = domain.StepConditionFailed(st.Name, reason)
		r.mu.Unlock()
		r.w.Append(st.Name, steplog.Meta, fmt.Sprintf("--- step %s failed: %s", st.Name, reason))
	} else {
		r.w.Append(st.Name, steplog.Meta, fmt.Sprintf("--- step %s skipped: %s", st.Name, reason))
	}
	ev, err := r.s.stepFinishedEvent(r.run, r.b, i, step, 0)
	if err != nil {
		return err
	}
	if err := r.s.store.StepEnded(ctx, r.l, i, step, ev); err != nil {
		return orInterrupted(ctx, err)
	}
	r.s.relay.Kick()
	return nil
}

// stepFinishedEvent tells where step i ended (a CDEvents taskrun.finished).
func (s *Service) stepFinishedEvent(run domain.Run, b domain.Build, i int, step domain.Step, took time.Duration) (events.Event, error) {
	return events.New(&buildeventsv1.StepFinished{
		RunId:        run.ID,
		BuildId:      b.ID,
		Step:         step.Name,
		Status:       stepStatusToProto(step.Status),
		ExitCode:     int32(step.ExitCode),
		Duration:     prototime.Duration(took),
		Repository:   repositoryRef(run.Repository),
		Attempt:      int32(b.Attempt),
		Tries:        int32(step.Tries),
		AllowFailure: run.Graph[i].AllowFailure,
		Reason:       step.Reason,
	}, events.TaskRunID(b.ID, step.Name), run.ID)
}

// runStep runs one try of step i and records it. It returns the time
// spent in the step, the build failure the step caused (if any), whether
// the step could not start (no other try would do better), and an error
// when the attempt cannot go on. The step's start and end are announced
// once: StepStarted with its first try, StepFinished with its last.
func (s *Service) runStep(ctx context.Context, r *buildSteps, i int, try stepgraph.Try) (time.Duration, domain.Failure, bool, error) {
	run, b, l, w, st, stage, ws, secrets := r.run, r.b, r.l, r.w, r.run.Steps[i], r.stage, r.ws, r.secrets
	timeout := st.Timeout
	if timeout <= 0 {
		timeout = s.cfg.DefaultStepTimeout
	}
	if try.Number == 1 {
		w.Append(st.Name, steplog.Meta, fmt.Sprintf("--- step %s: %s", st.Name, domain.CommandSummary(st.Run)))
	} else {
		w.Append(st.Name, steplog.Meta, fmt.Sprintf("--- step %s, try %d of %d: %s", st.Name, try.Number, try.Of, domain.CommandSummary(st.Run)))
	}
	start := time.Now().UTC()
	var evs []events.Event
	if try.Number == 1 {
		started, err := stepStartedEvent(run, b, st)
		if err != nil {
			return 0, domain.Failure{}, false, err
		}
		evs = append(evs, started)
	}
	if err := s.store.StepStarted(ctx, l, i, start, evs...); err != nil {
		return 0, domain.Failure{}, false, orInterrupted(ctx, err)
	}
	s.relay.Kick()

	tail := lastlines.New(domain.LastLogLines, 0)
	res, err := stage.Run(ctx, executor.Spec{
		Name:    st.Name,
		Image:   st.Image,
		Command: st.Run,
		Dir:     ws,
		Home:    executor.HomeOf(ws),
		Env:     secrets.Env(stepEnv(run, st), st.Secrets),
		Secrets: secrets.Values(),
		Timeout: timeout,
		Output: func(stream, line string) {
			w.Append(st.Name, stream, line)
			tail.Add(line)
		},
	})
	end := time.Now().UTC()
	step := domain.Step{Name: st.Name, ExitCode: res.ExitCode, StartTime: start, EndTime: end, Tries: try.Number}
	var failure domain.Failure
	notStarted := false
	switch {
	case err != nil && ctx.Err() != nil, err == nil && res.Cancelled:
		w.Append(st.Name, steplog.Meta, fmt.Sprintf("--- step %s cancelled after %s", st.Name, domain.Round(end.Sub(start))))
		step.Status, step.ExitCode = domain.StepCancelled, -1
		// Recorded for readers until a worker takes the build over; a
		// cancelled run's step ends here, and says so.
		var evs []events.Event
		if c, ok := runcancel.Cause(ctx); ok {
			step.Reason = c.Reason()
			if ev, err := s.stepFinishedEvent(run, b, i, step, end.Sub(start)); err == nil {
				evs = append(evs, ev)
			}
		}
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), detachedTimeout)
		defer cancel()
		_ = s.store.StepEnded(dctx, l, i, step, evs...)
		s.relay.Kick()
		return end.Sub(start), failure, false, interrupted(ctx)
	case err != nil:
		failure, notStarted = domain.StepNotStarted(st.Name, err), true
		w.Append(st.Name, steplog.Meta, "--- "+failure.Reason)
		step.Status, step.ExitCode = domain.StepFailed, -1
	case res.TimedOut:
		w.Append(st.Name, steplog.Meta, fmt.Sprintf("--- step %s timed out after %s, killed", st.Name, timeout))
		failure = domain.StepTimeout(st.Name, timeout, tail.Lines())
		step.Status = domain.StepTimedOut
	default:
		w.Append(st.Name, steplog.Meta, fmt.Sprintf("--- step %s exited with code %d after %s", st.Name, res.ExitCode, domain.Round(res.Duration)))
		step.Status = domain.StepSucceeded
		if res.ExitCode != 0 {
			failure = domain.StepExited(st.Name, res.ExitCode, tail.Lines())
			step.Status = domain.StepFailed
		}
	}
	var evs2 []events.Event
	switch {
	case failure.Failed() && !notStarted && !try.Last():
		w.Append(st.Name, steplog.Meta, fmt.Sprintf("--- step %s failed on try %d of %d; it runs again", st.Name, try.Number, try.Of))
	case failure.Failed() && r.run.Graph[i].AllowFailure:
		w.Append(st.Name, steplog.Meta, fmt.Sprintf("--- step %s failed; allow_failure: the build goes on", st.Name))
		fallthrough
	default:
		ev, err := s.stepFinishedEvent(run, b, i, step, end.Sub(start))
		if err != nil {
			return end.Sub(start), failure, notStarted, err
		}
		evs2 = append(evs2, ev)
	}
	if err := s.store.StepEnded(ctx, l, i, step, evs2...); err != nil {
		return end.Sub(start), failure, notStarted, orInterrupted(ctx, err)
	}
	s.relay.Kick()
	return end.Sub(start), failure, notStarted, nil
}

// stepStartedEvent announces that step st of build b starts (a CDEvents
// taskrun.started, whose task run is "<build id>/<step>").
func stepStartedEvent(run domain.Run, b domain.Build, st domain.StepSpec) (events.Event, error) {
	return events.New(&buildeventsv1.StepStarted{
		RunId:      run.ID,
		BuildId:    b.ID,
		Step:       st.Name,
		Repository: repositoryRef(run.Repository),
		Attempt:    int32(b.Attempt),
	}, events.TaskRunID(b.ID, st.Name), run.ID)
}

// stepSecrets are the secret references of steps.
func stepSecrets(steps []domain.StepSpec) []map[string]string {
	refs := make([]map[string]string, len(steps))
	for i, st := range steps {
		refs[i] = st.Secrets
	}
	return refs
}

// openStage readies what the build's steps share: the services, and the
// network of the steps that run in containers (removing what an earlier
// attempt's worker left). A stage that cannot be opened (no container
// engine here, an image missing, a service that does not start) is the
// build's failure, said in its log; an engine that fails otherwise is an
// error, tried again.
func (s *Service) openStage(ctx context.Context, run domain.Run, b domain.Build, ws string, secrets stepsecrets.Set) (executor.Stage, domain.Failure, error) {
	images := map[string]string{}
	for _, st := range run.Steps {
		if st.Image != "" {
			images[st.Name] = st.Image
		}
	}
	stage, err := s.exec.Open(ctx, executor.StageSpec{
		RunID: run.ID, Stage: Name, Attempt: b.Attempt, Dir: ws, Home: executor.HomeOf(ws),
		Services: run.Services, Images: images, Secrets: secrets.Values(),
		Env: stagespec.RunEnv(run.ID, run.Commit, run.Branch, run.Repository.Name),
	})
	switch {
	case err != nil && ctx.Err() != nil:
		return nil, domain.Failure{}, interrupted(ctx)
	case errors.Is(err, executor.ErrCannotStart):
		return nil, domain.StageNotStarted(err), nil
	case err != nil:
		// The engine failing for a while: the next delivery tries again.
		return nil, domain.Failure{}, fmt.Errorf("open the build stage: %w", err)
	}
	return stage, domain.Failure{}, nil
}

// stepEnv is the step's environment on top of the executor's scrubbed base:
// the step's own variables, then Sluice's (which win).
func stepEnv(run domain.Run, st domain.StepSpec) map[string]string {
	env := make(map[string]string, len(st.Env)+5)
	for k, v := range st.Env {
		env[k] = v
	}
	maps.Copy(env, stagespec.RunEnv(run.ID, run.Commit, run.Branch, run.Repository.Name))
	env["SLUICE_STEP"] = st.Name
	return env
}

// storeArtifact puts the artifact's file into the object store, hashing it
// on the way. A file that is missing or not a regular file is a build
// failure; a store that fails is an error.
func (s *Service) storeArtifact(ctx context.Context, store *artifacts.Store, run domain.Run, ws string, spec domain.ArtifactSpec) (domain.Artifact, domain.Failure, error) {
	root, err := os.OpenRoot(ws)
	if err != nil {
		return domain.Artifact{}, domain.Failure{}, fmt.Errorf("open workspace %s: %w", ws, err)
	}
	defer root.Close()
	// A path is a glob only when nothing is at its literal name (a
	// pipeline from before globs may name a file app[1].bin).
	fi, statErr := root.Stat(spec.Path)
	if (statErr == nil && fi.IsDir()) || (errors.Is(statErr, fs.ErrNotExist) && artifacts.IsGlob(spec.Path)) {
		return s.storeArchive(ctx, store, run, root, spec, statErr == nil)
	}
	// OpenRoot keeps the path (and any symlink on it) inside the workspace;
	// stepfile opens only a regular file, and a named pipe without waiting
	// for a writer.
	f, fi, err := stepfile.Open(root, spec.Path)
	var notRegular *stepfile.NotRegularError
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return domain.Artifact{}, domain.ArtifactMissing(spec), nil
	case errors.As(err, &notRegular):
		return domain.Artifact{}, domain.ArtifactNotFile(spec, stepfile.Kind(notRegular.Mode)), nil
	case err != nil:
		return domain.Artifact{}, domain.Failure{Reason: fmt.Sprintf("artifact %q: %v", spec.Name, err)}, nil
	}
	defer f.Close()
	// The size is checked before a byte is stored (a sparse file may claim
	// terabytes it never wrote), and Put stops a file that grows past it.
	limit := s.cfg.MaxArtifactSize
	if fi.Size() > int64(limit) {
		return domain.Artifact{}, domain.ArtifactTooLarge(spec, strconv.FormatInt(fi.Size(), 10), limit), nil
	}

	a, err := store.Put(ctx, artifacts.Artifact{Name: spec.Name, Object: artifacts.ObjectName(run.ID, spec.Name)},
		fmt.Sprintf("%s of run %s (%s at %s)", spec.Path, run.ID, run.Repository.Name, run.Commit), f, int64(limit))
	if errors.Is(err, artifacts.ErrTooLarge) {
		return domain.Artifact{}, domain.ArtifactTooLarge(spec, "more than "+strconv.Itoa(limit), limit), nil
	}
	if err != nil {
		return domain.Artifact{}, domain.Failure{}, orInterrupted(ctx, err)
	}
	return domain.Artifact(a), domain.Failure{}, nil
}

// errNoFiles is an artifact's directory or glob without a regular file.
var errNoFiles = errors.New("no files")

// storeArchive puts the regular files of the artifact's directory, or of
// its glob, into the object store as a gzipped tar, named relative to the
// directory (or to the glob's folders before its first pattern). A glob
// that matches no file, like a directory without one, is a missing
// artifact; one that holds more than the limit (before or after
// compression) is too large.
func (s *Service) storeArchive(ctx context.Context, store *artifacts.Store, run domain.Run, root *os.Root, spec domain.ArtifactSpec, dir bool) (domain.Artifact, domain.Failure, error) {
	base, match := artifacts.ArchiveBase(spec.Path), artifacts.Matcher(spec.Path)
	if dir {
		base, match = path.Clean(spec.Path), nil
	}
	limit := s.cfg.MaxArtifactSize
	pr, pw := io.Pipe()
	archived := make(chan error, 1)
	go func() {
		tw := tarball.NewWriter(pw, tarball.Limits{Bytes: int64(limit), Entries: artifacts.MaxArchivedEntries})
		err := tw.Tree(ctx, root, base, "", match)
		if err == nil && tw.Files() == 0 {
			err = errNoFiles
		}
		if err == nil {
			err = tw.Close()
		}
		archived <- err
		_ = pw.CloseWithError(err)
	}()
	a, err := store.Put(ctx, artifacts.Artifact{Name: spec.Name, Object: artifacts.ObjectName(run.ID, spec.Name), Format: artifacts.TarGzip},
		fmt.Sprintf("%s of run %s (%s at %s), a gzipped tar", spec.Path, run.ID, run.Repository.Name, run.Commit), pr, int64(limit))
	_ = pr.CloseWithError(errors.New("the put ended"))
	archErr := <-archived
	switch {
	case errors.Is(archErr, errNoFiles):
		return domain.Artifact{}, domain.ArtifactEmpty(spec, match != nil), nil
	case errors.Is(archErr, tarball.ErrTooManyEntries):
		return domain.Artifact{}, domain.Failure{Reason: fmt.Sprintf("artifact %q: %s holds too many files: at most %d are kept, and %d looked through",
			spec.Name, spec.Path, artifacts.MaxArchivedEntries, 10*artifacts.MaxArchivedEntries)}, nil
	case errors.Is(archErr, tarball.ErrTooLarge), errors.Is(err, artifacts.ErrTooLarge):
		return domain.Artifact{}, domain.ArtifactTooLarge(spec, "more than "+strconv.Itoa(limit), limit), nil
	case err != nil && ctx.Err() != nil:
		return domain.Artifact{}, domain.Failure{}, interrupted(ctx)
	case archErr != nil && err != nil && !errors.Is(err, archErr):
		// The put failed on its own: the store's error.
		return domain.Artifact{}, domain.Failure{}, err
	case archErr != nil:
		return domain.Artifact{}, domain.Failure{Reason: fmt.Sprintf("artifact %q: %v", spec.Name, archErr)}, nil
	case err != nil:
		return domain.Artifact{}, domain.Failure{}, orInterrupted(ctx, err)
	}
	return domain.Artifact(a), domain.Failure{}, nil
}

// interrupted is the error of an attempt whose context ended: the process
// is stopping, or another worker took the build over (lease.ErrLost).
func interrupted(ctx context.Context) error {
	return fmt.Errorf("interrupted: %w", context.Cause(ctx))
}

// orInterrupted prefers the interruption to err when ctx ended, so the
// caller sees why.
func orInterrupted(ctx context.Context, err error) error {
	if ctx.Err() != nil && !errors.Is(err, lease.ErrLost) {
		return interrupted(ctx)
	}
	return err
}
