package release

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"time"

	releaseeventsv1 "github.com/sluicehq/sluice/proto/gen/sluice/release/events/v1"

	"github.com/sluicehq/sluice/platform/apierror"
	"github.com/sluicehq/sluice/platform/artifacts"
	"github.com/sluicehq/sluice/platform/egress"
	"github.com/sluicehq/sluice/platform/executor"
	"github.com/sluicehq/sluice/platform/gitauth"
	"github.com/sluicehq/sluice/platform/ids"
	"github.com/sluicehq/sluice/platform/lastlines"
	"github.com/sluicehq/sluice/platform/lease"
	"github.com/sluicehq/sluice/platform/retry"
	"github.com/sluicehq/sluice/platform/steplog"
	"github.com/sluicehq/sluice/platform/stepsecrets"
	"github.com/sluicehq/sluice/services/release/domain"
)

const (
	// logFlushInterval is how often a release log's buffered lines are
	// stored while a deploy runs (readers tail them).
	logFlushInterval = 250 * time.Millisecond
	// httpVerifyInterval and commandVerifyInterval are the pauses between
	// verification attempts.
	httpVerifyInterval    = 250 * time.Millisecond
	commandVerifyInterval = time.Second
	// httpAttemptTimeout bounds one verification request.
	httpAttemptTimeout = 10 * time.Second
)

// StateDir is where the deploy commands of repository to environment find
// their state ($SLUICE_STATE_DIR): restored from the state store before
// they run, stored back after (state.go).
func StateDir(dataDir, repository, environment string) string {
	return filepath.Join(dataDir, "state", repository, environment)
}

// envResult is how the release of a run went in one environment.
type envResult struct {
	failed     bool
	reason     string
	rolledBack bool
	// left says why the release was not deployed there: the environment
	// runs it already, or a newer release (newer).
	left  string
	newer bool
}

// releaseTo deploys rel to env for the run, once: a deployment of the run
// found in progress was interrupted (a crash, a lost lock) and goes on only
// as interrupted says (its command never started, or the environment says
// on_interrupt: redeploy). It does not deploy where rel's commit or a
// newer one runs already, checked under the environment's lock since runs
// finish out of order. On failure, the environment is rolled back. The output goes to
// the run's release log, under deploy:<env>, verify:<env> and
// rollback:<env>.
func (s *Service) releaseTo(ctx context.Context, st stage, rel domain.Release, env domain.Environment) (envResult, error) {
	// The checkout and the artifacts touch no environment: prepare them
	// before taking the environment's lock, so that the runs waiting to
	// deploy there wait only for each other's commands. (A deployment of
	// the run that exists already needs none.)
	var ws *workspace
	if _, err := s.store.RunDeployment(ctx, st.runID, env.Name, false); errors.Is(err, apierror.ErrNotFound) {
		if ws, err = s.prepare(ctx, rel); err != nil {
			return envResult{}, err
		}
		defer ws.remove()
	}
	held, err := s.locks.Lock(ctx, environmentKey(st.repo.Name, env.Name))
	if err != nil {
		return envResult{}, err
	}
	defer held.Unlock()
	res, err := s.releaseHeld(held.Context(), st, rel, env, ws, held)
	if cause := context.Cause(held.Context()); err != nil && errors.Is(cause, lease.ErrLost) {
		// Another replica may hold the environment now: this delivery
		// stops, and the next one finds the deployment interrupted.
		return envResult{}, fmt.Errorf("deploying %s to %s: %w", rel.Version, env.Name, cause)
	}
	return res, err
}

// releaseHeld is releaseTo under the environment's lock, held: ctx ends
// when its lease is lost.
func (s *Service) releaseHeld(ctx context.Context, st stage, rel domain.Release, env domain.Environment, ws *workspace, held *heldLock) (envResult, error) {
	log := st.log.With(slog.String("environment", env.Name), slog.String("version", rel.Version.String()))
	// Opened under the run's lock (releaseStage), so a duplicate of the
	// run's event does not open a second writer, which would supersede
	// this one.
	w, err := s.logs.Writer(ctx, st.runID, logFlushInterval)
	if err != nil {
		return envResult{}, err
	}
	defer closeLog(ctx, w, log)

	d, err := s.store.RunDeployment(ctx, st.runID, env.Name, false)
	switch {
	case errors.Is(err, apierror.ErrNotFound):
		left, newer, err := s.alreadyThere(ctx, st, rel, env.Name, time.Time{})
		if err != nil {
			return envResult{}, err
		}
		if left != "" {
			note(w, domain.LogStep(domain.StepDeploy, env.Name), "not deploying %s to %s: %s", rel.Version, env.Name, left)
			return envResult{left: left, newer: newer}, nil
		}
		d = newDeployment(rel, env.Name, st.runID, false)
		if err := s.deployAndRecord(ctx, st, rel, env, &d, w, ws, held, true); err != nil {
			return envResult{}, err
		}
	case err != nil:
		return envResult{}, err
	case d.Status.InProgress():
		res, done, err := s.interrupted(ctx, st, rel, env, &d, w, held)
		if done || err != nil {
			return res, err
		}
	case d.Superseded:
		// Ended so by an earlier delivery (interrupted): left alone again.
		left, newer, err := s.alreadyThere(ctx, st, rel, env.Name, d.CreatedAt)
		if left == "" {
			left, newer = d.Reason, true
		}
		return envResult{left: left, newer: newer}, err
	}
	if d.Status != domain.DeploymentFailed {
		return envResult{}, nil // verified (and perhaps rolled back by hand since)
	}
	return s.failed(ctx, st, rel, env, d, w, held)
}

// interrupted handles deployment d of rel to env, found in progress: the
// replica that ran it stopped or lost the environment's lock. A deployment
// verified there since (alreadyThere) replaced whatever it did: d ends
// FAILED and Superseded, without a rollback and without making rel bad,
// and env is left as for a run that finds a newer release there (done).
// Otherwise it goes on (resumes) or fails as interrupted; d says how it
// ended.
func (s *Service) interrupted(ctx context.Context, st stage, rel domain.Release, env domain.Environment, d *domain.Deployment, w *steplog.Writer, held *heldLock) (res envResult, done bool, err error) {
	log := st.log.With(slog.String("environment", env.Name), slog.String("deployment_id", d.ID), slog.Int("attempts", d.Attempts))
	step := domain.LogStep(domain.StepDeploy, env.Name)
	left, newer, err := s.alreadyThere(ctx, st, rel, env.Name, d.CreatedAt)
	if err != nil {
		return envResult{}, false, err
	}
	switch {
	case left != "":
		log.Warn("found an interrupted deployment that a later one replaced", slog.String("left", left))
		d.Status, d.Reason, d.EndedAt, d.Superseded = domain.DeploymentFailed, domain.InterruptedReason+"; not deployed again: "+left, time.Now().UTC(), true
		note(w, step, "the deploy of %s to %s was %s", rel.Version, env.Name, d.Reason)
		if err := s.recordDeployment(ctx, st, rel, *d, held); err != nil {
			return envResult{}, false, err
		}
		return envResult{left: left, newer: newer}, true, nil
	case resumes(*d, env):
		if d.Started {
			log.Warn("found an interrupted deployment; deploying again")
			note(w, step, "the deploy of %s to %s was interrupted after its command started (the release service stopped or lost the environment's lock); running it again as its on_interrupt says (redeploy: start %d of at most %d)",
				rel.Version, env.Name, d.Attempts+1, domain.MaxDeployAttempts)
		} else {
			log.Warn("found a deployment interrupted before its command started; going on")
			note(w, step, "the deploy of %s to %s was interrupted before its command started; going on", rel.Version, env.Name)
		}
		return envResult{}, false, s.deployAndRecord(ctx, st, rel, env, d, w, nil, held, false)
	default:
		log.Warn("found an interrupted deployment; failing it")
		d.Status, d.Reason, d.EndedAt = domain.DeploymentFailed, domain.InterruptedReason, time.Now().UTC()
		if d.Attempts > 1 {
			d.Reason = fmt.Sprintf("%s, %d times", domain.InterruptedReason, d.Attempts)
		}
		note(w, step, "the deploy of %s to %s was %s", rel.Version, env.Name, d.Reason)
		return envResult{}, false, s.recordDeployment(ctx, st, rel, *d, held)
	}
}

// failed is the end of a run's deployment d that failed: rel is bad, and
// env gets its last verified release back when d's command had started.
func (s *Service) failed(ctx context.Context, st stage, rel domain.Release, env domain.Environment, d domain.Deployment, w *steplog.Writer, held *heldLock) (envResult, error) {
	summary := domain.FailureSummary(env.Name, d.Reason)
	reason := summary + "; " + env.Name + " was not changed"
	rolledBack := false
	if d.Started {
		var (
			text string
			err  error
		)
		if text, rolledBack, err = s.rollbackAfterFailure(ctx, st, rel, env, summary, w, held); err != nil {
			return envResult{}, err
		}
		reason = summary + "; " + text
	}
	return envResult{failed: true, reason: domain.WithLastLines(reason, d.FailedStep, d.LastLogLines), rolledBack: rolledBack}, nil
}

// resumes reports whether deployment d, found in progress, goes on: its
// deploy command never started (the environment was not touched), or its
// environment redeploys on interrupt and d has starts left.
func resumes(d domain.Deployment, env domain.Environment) bool {
	return !d.Started || (env.RedeployOnInterrupt && d.Attempts < domain.MaxDeployAttempts)
}

// deployAndRecord restores the environment's state, records deployment d
// (new: inserts it; otherwise it is one found interrupted, set deploying
// again), deploys it and records how it ended. The state store not
// answering is the store's outage: this delivery fails before the
// deployment is made or changed, and the next one tries again.
func (s *Service) deployAndRecord(ctx context.Context, st stage, rel domain.Release, env domain.Environment, d *domain.Deployment, w *steplog.Writer, ws *workspace, held *heldLock, isNew bool) error {
	state, err := s.restoreState(ctx, rel.Repository.Name, env.Name)
	if err != nil {
		return err
	}
	switch {
	case isNew:
		err = s.store.InsertDeployment(ctx, *d)
	case d.Status != domain.DeploymentDeploying:
		d.Status = domain.DeploymentDeploying
		err = s.store.SetDeploymentStatus(ctx, d.ID, d.Status)
	}
	if err != nil {
		return err
	}
	st.log.Info("deploying", slog.String("environment", env.Name), slog.String("version", rel.Version.String()),
		slog.String("deployment_id", d.ID), slog.Int("attempt", d.Attempts+1))
	out := logTo{w: w, deploy: domain.LogStep(domain.StepDeploy, env.Name), verify: domain.LogStep(domain.StepVerify, env.Name)}
	if err := s.deploy(ctx, rel, env, d, out, ws, state); err != nil {
		// Stopping, or the lock lost: the deployment stays in progress
		// and the redelivered event finds it interrupted.
		return err
	}
	return s.recordDeployment(ctx, st, rel, *d, held)
}

// stopReason says why work under a lock stopped with ctx.
func stopReason(ctx context.Context) string {
	if cause := context.Cause(ctx); errors.Is(cause, lease.ErrLost) {
		return "this replica lost the environment's lock (" + cause.Error() + "); the deploy is taken over as interrupted"
	}
	return "the release service is stopping"
}

// closeLog stores what is left of a release log's lines, even while the
// service stops.
func closeLog(ctx context.Context, w *steplog.Writer, log *slog.Logger) {
	ctx, cancel := detached(ctx)
	defer cancel()
	if err := w.Close(ctx); err != nil {
		log.Error("storing the release log failed", slog.Any("error", err))
	}
}

// recordDeployment stores the end of a run's deployment with its event:
// verified → the release is deployed; failed after the deploy started →
// the release is bad. Only while held is this replica's (lease.ErrLost
// otherwise): the replica that claimed the environment since announces it.
func (s *Service) recordDeployment(ctx context.Context, st stage, rel domain.Release, d domain.Deployment, held *heldLock) error {
	// The deploy happened: record it even while the process stops, or the
	// redelivery would take it for an interrupted one and roll it back.
	ctx, cancel := detached(ctx)
	defer cancel()
	return s.inTx(ctx, func(tx *sql.Tx) error {
		if err := held.Fence(ctx, tx); err != nil {
			return err
		}
		if err := endDeployment(ctx, tx, d); err != nil {
			return err
		}
		if d.Status == domain.DeploymentVerified {
			if err := setReleaseStatus(ctx, tx, rel.ID, domain.ReleaseDeployed); err != nil {
				return err
			}
			return enqueue(ctx, tx, &releaseeventsv1.ServiceDeployed{
				RunId: st.runID, Repository: repositoryRef(st.repo), Deployment: deploymentProto(d),
			}, d.ID, st.runID)
		}
		if d.Started && !d.Superseded {
			if err := setReleaseStatus(ctx, tx, rel.ID, domain.ReleaseBad); err != nil {
				return err
			}
		}
		return enqueue(ctx, tx, &releaseeventsv1.DeploymentFailed{
			RunId: st.runID, Repository: repositoryRef(st.repo), Deployment: deploymentProto(d),
		}, d.ID, st.runID)
	})
}

// logTo is where a deployment's output goes: a release log, under the step
// of the deploy (the checkout, the artifacts, the deploy command) and the
// step of the verification. A rollback's are both rollback:<env>.
type logTo struct {
	w      *steplog.Writer
	deploy string
	verify string
}

// note writes one of Sluice's own lines ("--- ...") under step.
func note(w *steplog.Writer, step, format string, args ...any) {
	w.Append(step, steplog.Meta, "--- "+fmt.Sprintf(format, args...))
}

// command is an executor.Spec.Output that writes a command's lines under
// step and keeps its last ones in tail.
func (l logTo) command(step string, tail *lastlines.Buffer) func(stream, line string) {
	return func(stream, line string) {
		l.w.Append(step, stream, line)
		tail.Add(line)
	}
}

// workspace is what a deploy runs in: the release's commit checked out
// (src) and its artifacts fetched (artifacts), or why they could not be
// (problem). notes are the lines that say so, for the deploy's log.
type workspace struct {
	dir, src, artifacts string
	notes               []string
	problem             string
	// masked are the repository credential's secrets, for the masker of
	// the deploy's log.
	masked []string
}

func (w *workspace) remove() { _ = os.RemoveAll(w.dir) }

// prepare checks rel out and fetches its artifacts into a new workspace.
// A failure that a retry cannot fix is the workspace's problem; the error
// is ctx's when it ended.
func (s *Service) prepare(ctx context.Context, rel domain.Release) (*workspace, error) {
	dir := filepath.Join(s.cfg.DataDir, "workspaces", ids.New())
	w := &workspace{dir: dir, src: filepath.Join(dir, "src"), artifacts: filepath.Join(dir, "artifacts")}
	w.notes = append(w.notes, fmt.Sprintf("checking out %s at %s", rel.Repository.URL, domain.ShortSHA(rel.Commit)))
	var cred gitauth.Credential
	if err := s.askSource(ctx, func(ctx context.Context) (err error) {
		cred, err = s.secrets.Credential(ctx, rel.RunID, rel.Repository.GitCredential)
		return err
	}); err != nil {
		if ctx.Err() != nil {
			w.remove()
			return nil, ctx.Err()
		}
		w.problem = fmt.Sprintf("preparing the deploy failed: the repository's credential: %v", err)
		return w, nil
	}
	w.masked = cred.Secrets()
	if err := s.cfg.Checkout.Checkout(ctx, s.egress, rel.Repository.URL, rel.Commit, w.src, cred); err != nil {
		if ctx.Err() != nil {
			w.remove()
			return nil, ctx.Err()
		}
		w.problem = fmt.Sprintf("preparing the deploy failed: check out %s: %v", domain.ShortSHA(rel.Commit), egress.Brief(err))
		return w, nil
	}
	if err := s.fetchArtifacts(ctx, rel, w); err != nil {
		if ctx.Err() != nil {
			w.remove()
			return nil, ctx.Err()
		}
		w.problem = "preparing the deploy failed: " + err.Error()
	}
	return w, nil
}

// deploy runs deployment d of rel to env in ws (prepared by prepare; nil
// prepares one) with the environment's state (restoreState): run the
// deploy command, verify, and store the state as the commands left it. It
// sets d's status (VERIFIED or FAILED), reason, failed step, last lines,
// Started and end time. It returns an error only when ctx ended (d is then
// left in progress) or the store failed; a failing deploy is an outcome,
// not an error.
//
// The state is stored once the commands ran, whether they succeeded or
// not: a failed deploy may have changed the environment and what its
// state says of it, and the rollback that follows starts from there. A
// state that cannot be stored (too large, the store not answering for
// statePatience) fails the deployment, which is then rolled back. It is
// not stored when the environment's lock was lost (another replica may
// have restored it already), nor when no command ran.
func (s *Service) deploy(ctx context.Context, rel domain.Release, env domain.Environment, d *domain.Deployment, out logTo, ws *workspace, state *deployState) error {
	err := s.runDeploy(ctx, rel, env, d, out, ws, state)
	if !d.Started || errors.Is(context.Cause(ctx), lease.ErrLost) {
		return err
	}
	// Stored even when the process is stopping, but not once the lock is
	// lost meanwhile: another replica may have restored the state since.
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), statePatience+recordTimeout)
	defer cancel()
	stop := context.AfterFunc(ctx, func() {
		if errors.Is(context.Cause(ctx), lease.ErrLost) {
			cancel()
		}
	})
	defer stop()
	notes, serr := state.save(sctx, s.stateTmpDir())
	for _, line := range notes {
		note(out.w, out.deploy, "%s", line)
	}
	switch {
	case serr == nil, err != nil:
		return err
	case d.Status == domain.DeploymentVerified:
		reason := fmt.Sprintf("storing the deploy state failed: %v", serr)
		d.Status, d.Reason, d.EndedAt, d.FailedStep, d.LastLogLines = domain.DeploymentFailed, reason, time.Now().UTC(), out.deploy, nil
		note(out.w, out.deploy, "%s", reason)
	default:
		d.Reason += fmt.Sprintf("; storing the deploy state failed too: %v", serr)
		note(out.w, out.deploy, "storing the deploy state failed: %v", serr)
	}
	return nil
}

// runDeploy is deploy up to storing the state.
func (s *Service) runDeploy(ctx context.Context, rel domain.Release, env domain.Environment, d *domain.Deployment, out logTo, ws *workspace, state *deployState) error {
	fail := func(step, reason string, last []string) error {
		d.Status, d.Reason, d.EndedAt = domain.DeploymentFailed, reason, time.Now().UTC()
		d.FailedStep, d.LastLogLines = step, last
		note(out.w, step, "%s", reason)
		return nil
	}

	note(out.w, out.deploy, "deploying %s of %s to %s (deployment %s)", rel.Version, rel.Repository.Name, env.Name, d.ID)
	if ws == nil {
		var err error
		if ws, err = s.prepare(ctx, rel); err != nil {
			return err
		}
		defer ws.remove()
	}
	for _, line := range ws.notes {
		note(out.w, out.deploy, "%s", line)
	}
	if ws.problem != "" {
		return fail(out.deploy, ws.problem, nil)
	}
	for _, line := range state.notes {
		note(out.w, out.deploy, "%s", line)
	}
	if state.problem != "" {
		return fail(out.deploy, "preparing the deploy failed: "+state.problem, nil)
	}
	src, artifactsDir, stateDir := ws.src, ws.artifacts, state.dir

	vars := make(map[string]string, len(env.Env)+7)
	for k, v := range env.Env {
		vars[k] = v
	}
	vars["SLUICE_RELEASE_VERSION"] = rel.Version.String()
	vars["SLUICE_ENVIRONMENT"] = env.Name
	vars["SLUICE_ARTIFACTS_DIR"] = artifactsDir
	vars["SLUICE_STATE_DIR"] = stateDir
	vars["SLUICE_RUN_ID"] = rel.RunID
	vars["SLUICE_COMMIT"] = rel.Commit
	vars["SLUICE_REPOSITORY"] = rel.Repository.Name
	// deploy returns an error only when ctx ends: a source that does not
	// answer is asked again for a while, then fails the deployment.
	var secrets stepsecrets.Set
	err := s.askSource(ctx, func(ctx context.Context) (err error) {
		secrets, err = s.secrets.Resolve(ctx, rel.RunID, stepsecrets.Names(env.Secrets))
		return err
	})
	secrets = secrets.Masking(ws.masked...)
	switch {
	case ctx.Err() != nil:
		return ctx.Err()
	case err != nil:
		return fail(out.deploy, "secrets: "+err.Error(), nil)
	}
	cmd := commandEnv{
		vars: secrets.Env(vars, env.Secrets), secrets: secrets.Values(),
		home: executor.HomeOf(src), writable: []string{ws.dir, stateDir},
	}

	// From here on the environment may change: record it before running.
	if err := s.store.MarkStarted(ctx, d.ID); err != nil {
		return err
	}
	d.Started = true
	d.Attempts++
	timeout := env.DeployTimeout
	if timeout <= 0 {
		timeout = s.cfg.DefaultDeployTimeout
	}
	note(out.w, out.deploy, "deploy: %s", env.Deploy)
	tail := lastlines.New(domain.LastLogLines, 0)
	res, err := s.exec.Run(ctx, executor.Spec{
		Name: "deploy " + env.Name, Command: env.Deploy, Dir: src, Env: cmd.vars, Secrets: cmd.secrets, Timeout: timeout,
		Home: cmd.home, Writable: cmd.writable, KeepProcesses: s.cfg.keepsProcesses(env.Name),
		Output: out.command(out.deploy, tail),
	})
	switch {
	case err != nil && ctx.Err() != nil, res.Cancelled:
		note(out.w, out.deploy, "deploy stopped: %s", stopReason(ctx))
		return ctx.Err()
	case err != nil:
		return fail(out.deploy, fmt.Sprintf("deploy could not start: %v", err), nil)
	case res.TimedOut:
		return fail(out.deploy, fmt.Sprintf("deploy timed out after %s", timeout), tail.Lines())
	case res.ExitCode != 0:
		return fail(out.deploy, fmt.Sprintf("deploy exited with code %d", res.ExitCode), tail.Lines())
	}
	note(out.w, out.deploy, "deploy exited with code 0 after %s", res.Duration.Round(time.Millisecond))

	d.Status = domain.DeploymentVerifying
	if err := s.store.SetDeploymentStatus(ctx, d.ID, domain.DeploymentVerifying); err != nil {
		return err
	}
	reason, last, err := s.verify(ctx, env, src, cmd, out)
	if err != nil {
		return err
	}
	if reason != "" {
		return fail(out.verify, reason, last)
	}
	d.Status, d.Reason, d.EndedAt = domain.DeploymentVerified, "", time.Now().UTC()
	note(out.w, out.verify, "verified %s in %s", rel.Version, env.Name)
	return nil
}

// fetchArtifacts downloads rel's artifacts into the workspace as
// executable files named by artifact name, checking each one's size and
// sha256 against the recorded ones: release's copy (KeptBucket) when it
// made one, the build's object otherwise (a release made before release
// kept copies). A release whose copies were pruned is refused, naming
// the setting: the release is read again first, since pruning may have
// marked it after it was read.
func (s *Service) fetchArtifacts(ctx context.Context, rel domain.Release, w *workspace) error {
	dir := w.artifacts
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create the artifacts directory: %w", err)
	}
	if len(rel.Artifacts) == 0 {
		return nil
	}
	rel, err := s.store.Release(ctx, rel.ID)
	if err != nil {
		return err
	}
	if !rel.PrunedAt.IsZero() {
		return s.prunedError(rel)
	}
	var build, kept *artifacts.Store
	// An artifact's name is a file name (build.v1.Artifact's rule, checked
	// on the event that brought it); Fetch keeps the file inside dir.
	for _, a := range rel.Artifacts {
		from, bucket, object := &build, artifacts.Bucket, a.Object
		if a.KeptObject != "" {
			from, bucket, object = &kept, KeptBucket, a.KeptObject
		}
		if *from == nil {
			if *from, err = artifacts.OpenBucket(ctx, s.js, bucket); err != nil {
				return err
			}
		}
		stored := buildArtifact(a)
		stored.Object = object
		if err := (*from).Fetch(ctx, stored, dir, a.Name); err != nil {
			return err
		}
		w.notes = append(w.notes, fmt.Sprintf("artifact %s (%d bytes, sha256 %s, from %s)", a.Name, a.Size, a.SHA256, bucket))
	}
	return nil
}

// verify runs env's verification and returns why it failed ("" when it
// passed or there is none) with the last output lines of a failing verify
// command. The error is ctx's when it ended.
// askSource runs fn, a question to source for secrets, again while source
// does not answer, for secretsPatience at most; an unresolvable secret
// ends it at once.
func (s *Service) askSource(ctx context.Context, fn func(ctx context.Context) error) error {
	return retry.Do(ctx, retry.Backoff{Initial: time.Second, Max: 10 * time.Second}, func(ctx context.Context) error {
		err := fn(ctx)
		if errors.Is(err, stepsecrets.ErrUnresolvable) {
			return retry.Permanent(err)
		}
		return err
	}, retry.GiveUpAfter(secretsPatience))
}

// secretsPatience is how long a deploy waits for source to give the
// secrets its commands ask for.
const secretsPatience = 2 * time.Minute

// commandEnv is the environment of an environment's deploy and verify
// commands, and the secret values to mask in their output.
type commandEnv struct {
	vars    map[string]string
	secrets []string
	// home is the deploy's HOME; writable are the workspace and the state
	// directory, which a sandboxed command may write.
	home     string
	writable []string
}

func (s *Service) verify(ctx context.Context, env domain.Environment, dir string, cmd commandEnv, out logTo) (string, []string, error) {
	timeout := env.Verify.Timeout
	if timeout <= 0 {
		timeout = s.cfg.DefaultVerifyTimeout
	}
	var what string
	var last []string
	var err error
	switch {
	case env.Verify.HTTP != "":
		note(out.w, out.verify, "verifying: GET %s (up to %s)", env.Verify.HTTP, timeout)
		what = "GET " + env.Verify.HTTP + ":"
		err = verifyHTTP(ctx, s.egress, env.Verify.HTTP, timeout, func(err error) { note(out.w, out.verify, "GET %s: %v", env.Verify.HTTP, err) })
	case env.Verify.Command != "":
		note(out.w, out.verify, "verifying: %s (up to %s)", env.Verify.Command, timeout)
		what = strconv.Quote(env.Verify.Command)
		last, err = s.verifyCommand(ctx, env, dir, cmd, timeout, out)
	default:
		note(out.w, out.verify, "no verification: the deploy succeeding is enough")
		return "", nil, nil
	}
	switch {
	case err == nil:
		return "", nil, nil
	case ctx.Err() != nil:
		return "", nil, ctx.Err()
	case errors.Is(err, errNotStarted), errors.As(err, new(*egress.RefusedError)):
		return fmt.Sprintf("verification failed: %s %v", what, err), nil, nil
	}
	return fmt.Sprintf("verification failed: %s %v after %s", what, err, timeout), last, nil
}

// verifyHTTP GETs url every httpVerifyInterval until it answers 2xx or
// timeout has passed; the error is the last answer's, brief
// (egress.Brief), as the release log and the deployment tell it. changed is
// told each failed answer that differs from the one before. Every
// connection, redirects' included, is checked against policy; a refusal
// ends the verification at once.
func verifyHTTP(ctx context.Context, policy *egress.Policy, target string, timeout time.Duration, changed func(error)) error {
	transport := policy.Transport()
	transport.DisableKeepAlives = true
	defer transport.CloseIdleConnections()
	client := &http.Client{Transport: transport, CheckRedirect: egress.LimitRedirects}
	deadline := time.Now().Add(timeout)
	var previous string
	var lastErr error
	return retry.Do(ctx, retry.Backoff{Initial: httpVerifyInterval}, func(ctx context.Context) error {
		// A try needs a whole interval: one cut short would only report
		// "no answer" in place of the last real one.
		if lastErr != nil && time.Until(deadline) < httpVerifyInterval {
			return retry.Permanent(lastErr)
		}
		attempt, cancel := context.WithDeadline(ctx, minTime(deadline, time.Now().Add(httpAttemptTimeout)))
		defer cancel()
		status, err := getStatus(attempt, client, target)
		if err == nil && (status < 200 || status >= 300) {
			err = fmt.Errorf("%d %s", status, http.StatusText(status))
		}
		err = egress.Brief(err)
		if err != nil && err.Error() != previous && ctx.Err() == nil {
			previous = err.Error()
			changed(err)
		}
		lastErr = err
		if errors.As(err, new(*egress.RefusedError)) {
			return retry.Permanent(err)
		}
		return err
	}, retry.GiveUpAfter(timeout))
}

func getStatus(ctx context.Context, client *http.Client, target string) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		return 0, err
	}
	res, err := client.Do(req)
	if err != nil {
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err
		}
		if errors.Is(err, context.DeadlineExceeded) {
			return 0, errors.New("no answer")
		}
		return 0, err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(res.Body, 64<<10))
	_ = res.Body.Close()
	return res.StatusCode, nil
}

// errNotStarted marks a verify command that could not start: no retry
// helps.
var errNotStarted = errors.New("could not start")

// verifyCommand runs the verify command every commandVerifyInterval until
// it exits 0 or timeout has passed; the error is the last run's, and the
// lines are the last run's last output lines.
func (s *Service) verifyCommand(ctx context.Context, env domain.Environment, dir string, cmd commandEnv, timeout time.Duration, out logTo) ([]string, error) {
	deadline := time.Now().Add(timeout)
	var last []string
	var lastErr error
	err := retry.Do(ctx, retry.Backoff{Initial: commandVerifyInterval}, func(ctx context.Context) error {
		left := time.Until(deadline)
		// A try needs a whole interval: one cut short would report "did not
		// finish" and its lines in place of the last real run's.
		if lastErr != nil && left < commandVerifyInterval {
			return retry.Permanent(lastErr)
		}
		tail := lastlines.New(domain.LastLogLines, 0)
		res, err := s.exec.Run(ctx, executor.Spec{
			Name: "verify " + env.Name, Command: env.Verify.Command, Dir: dir, Env: cmd.vars, Secrets: cmd.secrets,
			Home: cmd.home, Writable: cmd.writable,
			Timeout: max(left, time.Millisecond), Output: out.command(out.verify, tail),
		})
		last = tail.Lines()
		lastErr = verdict(ctx, out, res, err)
		return lastErr
	}, retry.GiveUpAfter(timeout))
	return last, err
}

// verdict is one verify command's run as verifyCommand's loop sees it.
func verdict(ctx context.Context, out logTo, res executor.Result, err error) error {
	switch {
	case err != nil && ctx.Err() != nil, res.Cancelled:
		return fmt.Errorf("verification stopped: %w", context.Cause(ctx))
	case err != nil:
		return retry.Permanent(fmt.Errorf("%w: %w", errNotStarted, err))
	case res.TimedOut:
		note(out.w, out.verify, "the verify command did not finish in time")
		return errors.New("did not finish")
	case res.ExitCode != 0:
		note(out.w, out.verify, "the verify command exited with code %d", res.ExitCode)
		return fmt.Errorf("exited with code %d", res.ExitCode)
	}
	return nil
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}
