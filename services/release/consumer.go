package release

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"time"

	releaseeventsv1 "github.com/sluicehq/sluice/proto/gen/sluice/release/events/v1"
	sourcev1 "github.com/sluicehq/sluice/proto/gen/sluice/source/v1"
	testeventsv1 "github.com/sluicehq/sluice/proto/gen/sluice/test/events/v1"
	testv1 "github.com/sluicehq/sluice/proto/gen/sluice/test/v1"

	"github.com/sluicehq/sluice/platform/events"
	"github.com/sluicehq/sluice/platform/ids"
	"github.com/sluicehq/sluice/platform/servicekit"
	"github.com/sluicehq/sluice/services/release/domain"
)

// The consumer release runs (declared in deploy/nats/consumers/release).
const (
	consumerDurable = "release-tests"
	// heartbeat extends the message's lease while a release stage runs
	// (deploys take minutes; the consumer's AckWait is one).
	heartbeat = 10 * time.Second
	// maxCommits bounds the commits asked of source for one release.
	maxCommits = 10000
)

// Consumers are the service's event ports: passed test runs, from the
// release-tests consumer.
func (s *Service) Consumers() []servicekit.Consumer {
	return []servicekit.Consumer{{
		Durable:   consumerDurable,
		Handler:   s.HandleTestRunFinished,
		Workers:   s.cfg.Workers,
		Heartbeat: heartbeat,
	}}
}

// stage is one run's release stage in progress.
type stage struct {
	runID string
	repo  domain.Repository
	log   *slog.Logger
}

// safeName is what repository and environment names must look like to name
// directories (source enforces stricter rules; this guards the filesystem).
var safeName = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9._-]*$`)

// HandleTestRunFinished runs the release stage of a run whose tests
// passed: version, release, deploy to each environment, verify, roll back
// on failure. It is idempotent per run id: a redelivered or duplicated event
// continues where the stage stopped and never deploys twice.
func (s *Service) HandleTestRunFinished(ctx context.Context, ev events.Event, d events.Delivery) error {
	err := s.releaseStage(ctx, ev)
	if err == nil || (!d.Last() && !errors.Is(err, events.ErrPermanent)) {
		return err
	}
	// No delivery comes after this one: end the stage FAILED, so that the
	// run does not stay "running" for ever.
	return s.giveUp(ctx, ev, d, err)
}

// giveUp ends a run's release stage FAILED with the reason it could not
// go on. A deployment left in progress is failed too: whether its command
// changed the environment is unknown, and the reason says so.
func (s *Service) giveUp(ctx context.Context, ev events.Event, d events.Delivery, cause error) error {
	p, ok := ev.Payload.(*testeventsv1.TestRunFinished)
	if !ok || p.GetRunId() == "" || p.GetRepository() == nil {
		return cause
	}
	st := stage{
		runID: p.GetRunId(),
		repo:  domain.Repository{ID: p.GetRepository().GetId(), Name: p.GetRepository().GetName(), URL: p.GetRepository().GetUrl()},
	}
	dctx, cancel := detached(ctx)
	defer cancel()
	n, err := s.store.FailInProgressDeployments(dctx, st.runID, domain.InterruptedReason)
	if err != nil {
		return errors.Join(cause, err)
	}
	reason := fmt.Sprintf("gave up after %d deliveries: %v", d.NumDelivered(), cause)
	if n > 0 {
		reason += "; a deployment was interrupted and its environment may need `sluice rollback`"
	}
	s.log.Error("release stage failed on its last delivery", slog.String("run_id", st.runID), slog.Any("error", cause))
	if err := s.finish(dctx, st, releaseeventsv1.ReleaseOutcome_RELEASE_OUTCOME_FAILED, "", reason, false); err != nil {
		return errors.Join(cause, err)
	}
	return nil
}

// detached is a context for a write that must happen even when ctx ended
// (the process is stopping), bounded by recordTimeout.
func detached(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), recordTimeout)
}

// releaseStage runs the stage; see HandleTestRunFinished.
func (s *Service) releaseStage(ctx context.Context, ev events.Event) error {
	p, ok := ev.Payload.(*testeventsv1.TestRunFinished)
	if !ok {
		return fmt.Errorf("%w: release-tests got a %s, want a TestRunFinished", events.ErrPermanent, ev.Kind.Type)
	}
	if p.GetStatus() != testv1.TestRunStatus_TEST_RUN_STATUS_PASSED {
		return nil
	}
	st := stage{
		runID: p.GetRunId(),
		repo:  domain.Repository{ID: p.GetRepository().GetId(), Name: p.GetRepository().GetName(), URL: p.GetRepository().GetUrl()},
	}
	st.log = s.log.With(slog.String("run_id", st.runID), slog.String("repository", st.repo.Name))
	if !safeName.MatchString(st.repo.Name) {
		return fmt.Errorf("%w: repository name %q cannot name a directory", events.ErrPermanent, st.repo.Name)
	}
	rec, err := s.store.beginRun(ctx, st.runID, st.repo.Name)
	if err != nil {
		return err
	}
	if rec.State == runFinished {
		st.log.Debug("release stage already finished; duplicate event ignored", slog.String("event_id", ev.ID))
		return nil
	}

	// Everything the stage needs came with the event: the pipeline and the
	// build's artifacts, passed on by build and test.
	if p.GetPipeline() == nil {
		return s.finish(ctx, st, releaseeventsv1.ReleaseOutcome_RELEASE_OUTCOME_FAILED, "",
			"the TestRunFinished event carries no pipeline (a test service older than this release service published it); trigger the run again", false)
	}
	spec := releaseSpecOf(p.GetPipeline())
	if reason := spec.SkipReason(p.GetBranch()); reason != "" {
		st.log.Info("release skipped", slog.String("reason", reason))
		return s.finish(ctx, st, releaseeventsv1.ReleaseOutcome_RELEASE_OUTCOME_SKIPPED, "", reason, false)
	}
	for _, env := range spec.Environments {
		if !safeName.MatchString(env.Name) {
			return s.finish(ctx, st, releaseeventsv1.ReleaseOutcome_RELEASE_OUTCOME_FAILED, "",
				fmt.Sprintf("environment name %q cannot name a directory", env.Name), false)
		}
	}

	rel, err := s.ensureRelease(ctx, st, rec, p, spec)
	if err != nil {
		return err
	}
	for _, env := range spec.Environments {
		res, err := s.releaseTo(ctx, st, rel, env)
		if err != nil {
			return err
		}
		if res.failed {
			st.log.Warn("release failed", slog.String("version", rel.Version.String()),
				slog.String("environment", env.Name), slog.String("reason", res.reason))
			return s.finish(ctx, st, releaseeventsv1.ReleaseOutcome_RELEASE_OUTCOME_FAILED, rel.Version.String(), res.reason, res.rolledBack)
		}
	}
	st.log.Info("released", slog.String("version", rel.Version.String()))
	return s.finish(ctx, st, releaseeventsv1.ReleaseOutcome_RELEASE_OUTCOME_SUCCEEDED, rel.Version.String(), "", false)
}

// releaseSpecOf turns the pipeline's release section into domain terms.
func releaseSpecOf(p *sourcev1.Pipeline) domain.ReleaseSpec {
	r := p.GetRelease()
	if r == nil {
		return domain.ReleaseSpec{}
	}
	spec := domain.ReleaseSpec{Present: true, Branches: r.GetBranches()}
	for _, e := range r.GetEnvironments() {
		env := domain.Environment{
			Name:          e.GetName(),
			Deploy:        e.GetDeploy(),
			DeployTimeout: e.GetDeployTimeout().AsDuration(),
			Env:           e.GetEnv(),
		}
		if v := e.GetVerify(); v != nil {
			env.Verify = domain.Verify{HTTP: v.GetHttp(), Command: v.GetCommand(), Timeout: v.GetTimeout().AsDuration()}
		}
		spec.Environments = append(spec.Environments, env)
	}
	return spec
}

// finish ends the run's release stage and announces it, once.
func (s *Service) finish(ctx context.Context, st stage, outcome releaseeventsv1.ReleaseOutcome, version, reason string, rolledBack bool) error {
	ctx, cancel := detached(ctx)
	defer cancel()
	return s.inTx(ctx, func(tx *sql.Tx) error {
		first, err := finishRun(ctx, tx, st.runID, outcomeName(outcome), reason)
		if err != nil || !first {
			return err
		}
		return enqueue(ctx, tx, &releaseeventsv1.ReleaseFinished{
			RunId:      st.runID,
			Repository: repositoryRef(st.repo),
			Outcome:    outcome,
			Version:    version,
			Reason:     reason,
			RolledBack: rolledBack,
		}, st.runID, st.runID)
	})
}

func outcomeName(o releaseeventsv1.ReleaseOutcome) string {
	switch o {
	case releaseeventsv1.ReleaseOutcome_RELEASE_OUTCOME_SUCCEEDED:
		return "SUCCEEDED"
	case releaseeventsv1.ReleaseOutcome_RELEASE_OUTCOME_FAILED:
		return "FAILED"
	case releaseeventsv1.ReleaseOutcome_RELEASE_OUTCOME_SKIPPED:
		return "SKIPPED"
	}
	return ""
}

// ensureRelease returns the run's release, making it if this is the first
// time the run gets here: the next version after the repository's highest,
// its changelog from the commits since that release, and the build's
// artifacts. A commit released before is released again under its version.
func (s *Service) ensureRelease(ctx context.Context, st stage, rec stageRun, run *testeventsv1.TestRunFinished, spec domain.ReleaseSpec) (domain.Release, error) {
	if rel, ok, err := s.runRelease(ctx, rec); err != nil || ok {
		return rel, err
	}
	// One version at a time per repository.
	unlock, err := s.locks.Lock(ctx, repositoryKey(st.repo.Name))
	if err != nil {
		return domain.Release{}, err
	}
	defer unlock()
	// A duplicate of this event may have made the release while we waited.
	if rec, err = s.store.beginRun(ctx, st.runID, st.repo.Name); err != nil {
		return domain.Release{}, err
	}
	if rel, ok, err := s.runRelease(ctx, rec); err != nil || ok {
		return rel, err
	}

	commit := run.GetCommit()
	if existing, ok, err := s.store.ReleaseOfCommit(ctx, st.repo.Name, commit); err != nil {
		return domain.Release{}, err
	} else if ok {
		st.log.Info("commit already released; deploying that release again", slog.String("version", existing.Version.String()))
		err := s.store.InTx(ctx, func(tx *sql.Tx) error { return setRunRelease(ctx, tx, st.runID, existing.ID) })
		return existing, err
	}

	prev, hasPrev, err := s.store.LatestRelease(ctx, st.repo.Name)
	if err != nil {
		return domain.Release{}, err
	}
	var from string
	var prevVersion *domain.Version
	if hasPrev {
		from, prevVersion = prev.Commit, &prev.Version
	}
	listed, err := s.source.ListCommits(ctx, &sourcev1.ListCommitsRequest{
		Repository: st.repo.Name, From: from, To: commit, Limit: maxCommits,
	})
	if err != nil {
		return domain.Release{}, fmt.Errorf("list commits of %s from %q to %s: %w", st.repo.Name, from, commit, err)
	}
	commits := make([]domain.Commit, 0, len(listed.GetCommits()))
	for _, c := range listed.GetCommits() {
		commits = append(commits, domain.Commit{SHA: c.GetSha(), Message: c.GetMessage()})
	}

	var artifacts []domain.Artifact
	for _, a := range run.GetArtifacts() {
		artifacts = append(artifacts, domain.Artifact{Name: a.GetName(), Object: a.GetObject(), SHA256: a.GetSha256(), Size: a.GetSize()})
	}

	rel := domain.Release{
		ID:           ids.New(),
		Repository:   st.repo,
		Version:      domain.NextVersion(prevVersion, commits),
		Commit:       commit,
		RunID:        st.runID,
		Changelog:    domain.Changelog(commits),
		Artifacts:    artifacts,
		Environments: spec.Environments,
		Status:       domain.ReleasePublished,
		CreatedAt:    time.Now().UTC(),
	}
	err = s.inTx(ctx, func(tx *sql.Tx) error {
		if err := insertRelease(ctx, tx, rel); err != nil {
			return err
		}
		if err := setRunRelease(ctx, tx, st.runID, rel.ID); err != nil {
			return err
		}
		return enqueue(ctx, tx, &releaseeventsv1.ReleasePublished{
			RunId:      st.runID,
			Repository: repositoryRef(st.repo),
			Release:    releaseProto(rel),
		}, rel.ID, st.runID)
	})
	if err != nil {
		return domain.Release{}, err
	}
	st.log.Info("release published", slog.String("version", rel.Version.String()), slog.Int("commits", len(commits)),
		slog.Int("artifacts", len(artifacts)))
	return rel, nil
}

func (s *Service) runRelease(ctx context.Context, rec stageRun) (domain.Release, bool, error) {
	if rec.ReleaseID == "" {
		return domain.Release{}, false, nil
	}
	rel, ok, err := s.store.Release(ctx, rec.ReleaseID)
	if err == nil && !ok {
		err = fmt.Errorf("run %s names release %s, which does not exist", rec.RunID, rec.ReleaseID)
	}
	return rel, ok, err
}

// envResult is how the release of a run went in one environment.
type envResult struct {
	failed     bool
	reason     string
	rolledBack bool
}

// releaseTo deploys rel to env for the run, at most once: a deployment of
// the run found in progress was interrupted by a crash and is failed, not
// run again. On failure, the environment is rolled back.
func (s *Service) releaseTo(ctx context.Context, st stage, rel domain.Release, env domain.Environment) (envResult, error) {
	unlock, err := s.locks.Lock(ctx, environmentKey(st.repo.Name, env.Name))
	if err != nil {
		return envResult{}, err
	}
	defer unlock()
	log := st.log.With(slog.String("environment", env.Name), slog.String("version", rel.Version.String()))

	d, found, err := s.store.RunDeployment(ctx, st.runID, env.Name, false)
	if err != nil {
		return envResult{}, err
	}
	switch {
	case !found:
		d = newDeployment(rel, env.Name, st.runID, false)
		if err := s.store.InsertDeployment(ctx, d); err != nil {
			return envResult{}, err
		}
		log.Info("deploying", slog.String("deployment_id", d.ID))
		if err := s.deploy(ctx, rel, env, &d); err != nil {
			// Stopping: the deployment stays in progress and the redelivered
			// event fails it as interrupted.
			return envResult{}, err
		}
		if err := s.recordDeployment(ctx, st, rel, d); err != nil {
			return envResult{}, err
		}
	case d.Status.InProgress():
		log.Warn("found an interrupted deployment; failing it", slog.String("deployment_id", d.ID))
		// d.Started says whether the deploy command had been started: if
		// not, the environment was not touched.
		d.Status, d.Reason, d.EndedAt = domain.DeploymentFailed, domain.InterruptedReason, time.Now().UTC()
		if err := s.recordDeployment(ctx, st, rel, d); err != nil {
			return envResult{}, err
		}
	}
	if d.Status != domain.DeploymentFailed {
		return envResult{}, nil // verified (and perhaps rolled back by hand since)
	}

	summary := domain.FailureSummary(env.Name, d.Reason)
	if !d.Started {
		return envResult{failed: true, reason: fmt.Sprintf("%s; %s was not changed", summary, env.Name)}, nil
	}
	text, rolledBack, err := s.rollbackAfterFailure(ctx, st, rel, env, summary)
	if err != nil {
		return envResult{}, err
	}
	return envResult{failed: true, reason: summary + "; " + text, rolledBack: rolledBack}, nil
}

// recordDeployment stores the end of a run's deployment with its event:
// verified → the release is deployed; failed after the deploy started →
// the release is bad.
func (s *Service) recordDeployment(ctx context.Context, st stage, rel domain.Release, d domain.Deployment) error {
	// The deploy happened: record it even while the process stops, or the
	// redelivery would take it for an interrupted one and roll it back.
	ctx, cancel := detached(ctx)
	defer cancel()
	return s.inTx(ctx, func(tx *sql.Tx) error {
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
		if d.Started {
			if err := setReleaseStatus(ctx, tx, rel.ID, domain.ReleaseBad); err != nil {
				return err
			}
		}
		return enqueue(ctx, tx, &releaseeventsv1.DeploymentFailed{
			RunId: st.runID, Repository: repositoryRef(st.repo), Deployment: deploymentProto(d),
		}, d.ID, st.runID)
	})
}

// rollbackAfterFailure puts the environment back to its last verified
// release that is not bad, once per run, and says what happened.
func (s *Service) rollbackAfterFailure(ctx context.Context, st stage, failed domain.Release, env domain.Environment, why string) (string, bool, error) {
	log := st.log.With(slog.String("environment", env.Name))
	rb, found, err := s.store.RunDeployment(ctx, st.runID, env.Name, true)
	if err != nil {
		return "", false, err
	}
	var target domain.Release
	switch {
	case !found:
		good, ok, err := s.store.LastGoodDeployment(ctx, st.repo.Name, env.Name, failed.ID)
		if err != nil {
			return "", false, err
		}
		if !ok {
			log.Warn("no earlier verified release to roll back to")
			return fmt.Sprintf("no earlier verified release of %s to roll back to", env.Name), false, nil
		}
		if target, err = s.releaseOf(ctx, good); err != nil {
			return "", false, err
		}
		rb = newDeployment(target, env.Name, st.runID, true)
		if err := s.store.InsertDeployment(ctx, rb); err != nil {
			return "", false, err
		}
		log.Info("rolling back", slog.String("to_version", target.Version.String()), slog.String("deployment_id", rb.ID))
		if err := s.deploy(ctx, target, rollbackSpec(target, env), &rb); err != nil {
			return "", false, err
		}
		if err := s.recordRollback(ctx, st, failed, target, rb, why); err != nil {
			return "", false, err
		}
	default:
		if target, err = s.releaseOf(ctx, rb); err != nil {
			return "", false, err
		}
		if rb.Status.InProgress() {
			log.Warn("found an interrupted rollback; failing it", slog.String("deployment_id", rb.ID))
			rb.Status, rb.Reason, rb.EndedAt = domain.DeploymentFailed, domain.InterruptedReason, time.Now().UTC()
			if err := s.recordRollback(ctx, st, failed, target, rb, why); err != nil {
				return "", false, err
			}
		}
	}
	if rb.Status == domain.DeploymentFailed {
		return fmt.Sprintf("rolling back %s to %s failed: %s", env.Name, target.Version, rb.Reason), false, nil
	}
	return fmt.Sprintf("rolled back %s to %s", env.Name, target.Version), true, nil
}

// rollbackSpec is how to deploy target to env: the way target's own
// pipeline says, or, when it did not know env, the way the failed one does.
func rollbackSpec(target domain.Release, env domain.Environment) domain.Environment {
	if own, ok := target.Environment(env.Name); ok {
		return own
	}
	return env
}

func (s *Service) releaseOf(ctx context.Context, d domain.Deployment) (domain.Release, error) {
	rel, ok, err := s.store.Release(ctx, d.ReleaseID)
	if err == nil && !ok {
		err = fmt.Errorf("deployment %s names release %s, which does not exist", d.ID, d.ReleaseID)
	}
	return rel, err
}

// recordRollback stores the end of an automatic rollback with its event.
func (s *Service) recordRollback(ctx context.Context, st stage, from, to domain.Release, rb domain.Deployment, why string) error {
	ctx, cancel := detached(ctx) // as in recordDeployment
	defer cancel()
	return s.inTx(ctx, func(tx *sql.Tx) error {
		if err := endDeployment(ctx, tx, rb); err != nil {
			return err
		}
		if rb.Status != domain.DeploymentVerified {
			return enqueue(ctx, tx, &releaseeventsv1.DeploymentFailed{
				RunId: st.runID, Repository: repositoryRef(st.repo), Deployment: deploymentProto(rb),
			}, rb.ID, st.runID)
		}
		return enqueue(ctx, tx, &releaseeventsv1.ServiceRolledBack{
			RunId:       st.runID,
			Repository:  repositoryRef(st.repo),
			Environment: rb.Environment,
			FromVersion: from.Version.String(),
			ToVersion:   to.Version.String(),
			Reason:      why,
			Deployment:  deploymentProto(rb),
		}, rb.ID, st.runID)
	})
}
