package tests

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/sluicehq/sluice/platform/apierror"
	"github.com/sluicehq/sluice/platform/artifacts"
	"github.com/sluicehq/sluice/platform/egress"
	"github.com/sluicehq/sluice/platform/executor"
	"github.com/sluicehq/sluice/platform/executor/stagespec"
	"github.com/sluicehq/sluice/platform/gitauth"
	"github.com/sluicehq/sluice/platform/gitcheckout"
	"github.com/sluicehq/sluice/platform/lastlines"
	"github.com/sluicehq/sluice/platform/lease"
	"github.com/sluicehq/sluice/platform/runcancel"
	"github.com/sluicehq/sluice/platform/secretmask"
	"github.com/sluicehq/sluice/platform/stepcache"
	"github.com/sluicehq/sluice/platform/stepfile"
	"github.com/sluicehq/sluice/platform/stepgraph"
	"github.com/sluicehq/sluice/platform/steplog"
	"github.com/sluicehq/sluice/platform/stepsecrets"
	buildeventsv1 "github.com/sluicehq/sluice/proto/gen/sluice/build/events/v1"
	sourcev1 "github.com/sluicehq/sluice/proto/gen/sluice/source/v1"
	"github.com/sluicehq/sluice/services/tests/domain"
	"github.com/sluicehq/sluice/services/tests/report"
)

// attempt is one worker's try at a test run.
type attempt struct {
	s   *Service
	log *slog.Logger
	run domain.TestRun
	bf  *buildeventsv1.BuildFinished
	w   *steplog.Writer
	// steps are how the steps ended, by position (under mu: they run
	// in parallel).
	mu     sync.Mutex
	steps  []domain.StepResult
	closed bool
	kept   *lease.Keeper
	// secrets are the values of the secrets the steps ask for.
	secrets stepsecrets.Set
	// reused is the test run a rerun's test run reused (reuse).
	reused string
}

// reuse is the test run of a rerun that starts at the release stage
// (rerun_from "release", passed on by build): the passed test run of the
// run it reruns stands for it, with its suites' counts, and no step runs
// (its cases stay with it: ListTestCases of that run). One that did not
// pass, or tested another repository or commit, is an ERROR saying to
// rerun every stage.
func (a *attempt) reuse(ctx context.Context) (domain.Outcome, error) {
	of := a.bf.GetRerunOf()
	old, err := a.s.store.TestRunOfRun(ctx, of)
	switch {
	case errors.Is(err, apierror.ErrNotFound):
		return domain.Errored(fmt.Sprintf("the test run of run %s, which this run reruns, is not known here; rerun every stage", of), nil), nil
	case err != nil:
		return domain.Outcome{}, err
	case old.Status != domain.StatusPassed:
		return domain.Errored(fmt.Sprintf("the test run of run %s, which this run reruns, did not pass (%s); rerun every stage", of, old.Status), nil), nil
	case old.Repository.ID != a.run.Repository.ID || old.Commit != a.run.Commit:
		return domain.Errored(fmt.Sprintf("run %s, which this run reruns, tested another repository or commit", of), nil), nil
	}
	suites, err := a.s.store.Suites(ctx, old.ID)
	if err != nil {
		return domain.Outcome{}, err
	}
	o := domain.Outcome{Status: domain.StatusPassed, Suites: suites}
	c := o.Counts()
	a.meta("", fmt.Sprintf("--- reusing test run %s of run %s (%d passed, %d failed, %d skipped): no step runs", old.ID, of, c.Passed, c.Failed, c.Skipped))
	a.reused = old.ID
	return o, nil
}

// meta writes a line of Sluice's own to the log; step is empty for lines
// about the whole test run.
func (a *attempt) meta(step, text string) { a.w.Append(step, steplog.Meta, text) }

func (a *attempt) closeLog(parent context.Context) {
	if a.closed {
		return
	}
	a.closed = true
	ctx, cancel := context.WithTimeout(context.WithoutCancel(parent), 10*time.Second)
	defer cancel()
	if err := a.w.Close(ctx); err != nil {
		a.log.Warn("storing the last log lines failed", slog.Any("error", err))
	}
}

// test does the work: it returns the outcome, or an error when
// infrastructure failed and a later delivery may do better.
func (a *attempt) test(ctx context.Context) (domain.Outcome, error) {
	run := a.run
	a.meta("", fmt.Sprintf("--- test run %s, attempt %d: build %s of %s at %s", run.ID, run.Attempt, run.BuildID, run.Repository.Name, run.Commit))
	if run.Attempt > 1 {
		a.meta("", "--- taking over from a worker that stopped")
	}
	var err error
	pipeline := a.bf.GetPipeline()
	if pipeline == nil {
		return domain.Errored("the BuildFinished event carries no pipeline (a build service older than this test service published it); trigger the run again", nil), nil
	}
	spec := pipeline.GetTest()
	if len(spec.GetSteps()) == 0 && len(spec.GetReports()) == 0 {
		a.meta("", "--- the pipeline has no tests: nothing to run")
		return domain.Decide(nil, nil, nil, nil), nil
	}

	var refs []map[string]string
	for _, step := range spec.GetSteps() {
		refs = append(refs, step.GetSecrets())
	}
	a.secrets, err = a.s.secrets.Resolve(ctx, run.RunID, stepsecrets.Names(refs...))
	var cred gitauth.Credential
	if err == nil {
		cred, err = a.s.secrets.Credential(ctx, run.RunID, run.Repository.GitCredential)
		a.secrets = a.secrets.Masking(cred.Secrets()...)
	}
	if errors.Is(err, stepsecrets.ErrUnresolvable) {
		return domain.Errored("secrets: "+err.Error(), nil), nil
	}
	if err != nil {
		return domain.Outcome{}, err
	}

	ws, cleanup, err := a.s.workspace(run)
	if err != nil {
		return domain.Outcome{}, err
	}
	defer cleanup()
	a.meta("", fmt.Sprintf("--- checking out %s of %s", run.Commit, run.Repository.URL))
	if err := a.s.cfg.Checkout.Checkout(ctx, a.s.egress, run.Repository.URL, run.Commit, ws, cred); err != nil {
		if errors.Is(err, gitcheckout.ErrCommitNotFound) || gitauth.Refused(err) || (errors.Is(err, gitcheckout.ErrTimedOut) && ctx.Err() == nil) {
			return domain.Errored(egress.Brief(err).Error(), nil), nil
		}
		if errors.As(err, new(*egress.RefusedError)) {
			return domain.Errored(egress.Brief(err).Error(), nil), nil
		}
		return domain.Outcome{}, err
	}
	// The caches first: their keys see the checkout alone, as build's
	// do, and a restore never replaces a file, so the artifacts fetched
	// next replace what a cache may have put at their paths.
	facts := stepgraph.FactsOf(run.Repository.Name, run.Commit, a.bf.GetRef(), run.Branch, a.bf.GetTrigger(), a.bf.GetChanges())
	caches, err := stepcache.Prepare(ctx, a.s.js, stepcache.TestBucket, a.s.cfg.Caches, a.log, stepcache.Attempt{
		Specs: stepcache.SpecsOf(spec.GetCaches()), RepositoryID: run.Repository.ID, DefaultBranch: run.Repository.DefaultBranch, Facts: facts,
		Dirs: stepcache.Dirs{Workspace: ws, Home: executor.HomeOf(ws)}, Say: func(line string) { a.meta("", "--- "+line) },
	})
	if err != nil {
		return domain.Outcome{}, err
	}
	if err := caches.Restore(ctx); err != nil {
		return domain.Outcome{}, err
	}

	problem, err := a.fetchArtifacts(ctx, ws, pipeline.GetBuild().GetArtifacts())
	if err != nil {
		return domain.Outcome{}, err
	}
	if problem != "" {
		return domain.Errored(problem, nil), nil
	}

	stage, err := a.s.exec.Open(ctx, executor.StageSpec{
		RunID: run.RunID, Stage: Name, Attempt: run.Attempt, Dir: ws, Home: executor.HomeOf(ws),
		Services: stagespec.Services(spec.GetServices()), Images: stagespec.Images(spec.GetSteps()),
		Env: stagespec.RunEnv(run.RunID, run.Commit, run.Branch, run.Repository.Name), Secrets: a.secrets.Values(),
	})
	switch {
	case err != nil && ctx.Err() != nil:
		return domain.Outcome{}, fmt.Errorf("open the test stage: %w", context.Cause(ctx))
	case errors.Is(err, executor.ErrCannotStart):
		// No container engine here, an image missing or refused, a
		// service that did not start: the pipeline's or the operator's
		// to fix.
		return domain.Errored("the tests could not start: "+err.Error(), nil), nil
	case err != nil:
		return domain.Outcome{}, fmt.Errorf("open the test stage: %w", err)
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		defer cancel()
		if err := stage.Close(cctx); err != nil {
			a.log.Warn("the test run's containers were not all removed; the next attempt or sweep removes them", slog.Any("error", err))
		}
	}()
	a.steps = make([]domain.StepResult, len(spec.GetSteps()))
	steps := &testSteps{a: a, stage: stage, ws: ws, specs: spec.GetSteps()}
	graph, err := stepgraph.Execute(ctx, stepgraph.Nodes(spec.GetSteps(), spec.GetPipelineMaxParallel()), facts, a.s.cfg.Steps.Parallel(spec.GetMaxParallel()), steps)
	if errors.Is(err, executor.ErrCannotStart) || errors.As(err, new(*stepgraph.Problem)) {
		// No other try would start it: the engine, an image, or a graph
		// source would have refused (made by another producer).
		return domain.Errored(err.Error(), a.results()), nil
	}
	if err != nil {
		return domain.Outcome{}, err
	}
	if graph.Failed < 0 {
		if err := caches.Save(ctx); err != nil {
			return domain.Outcome{}, err
		}
	}
	suites, cases, problems := a.readReports(ws, spec.GetReports())
	for _, p := range problems {
		a.meta("", "--- "+p)
	}
	return domain.DecideFailing(a.results(), graph.Failed, problems, suites, cases), nil
}

// results are how the steps ended so far, by position.
func (a *attempt) results() []domain.StepResult {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.steps)
}

// testSteps runs a test run's steps for stepgraph.Execute.
type testSteps struct {
	a     *attempt
	stage executor.Stage
	ws    string
	specs []*sourcev1.Step
}

// Run runs one try of step i: a failure ends the test run in ERROR when the
// step could not start (executor.ErrCannotStart), and is tried again (a
// later delivery) when the worker stopped it.
func (t *testSteps) Run(ctx context.Context, i int, try stepgraph.Try) (stepgraph.Outcome, error) {
	step := t.specs[i]
	res, err := t.a.runStep(ctx, t.stage, t.ws, step, try)
	res.AllowFailure = step.GetAllowFailure()
	if errors.Is(err, executor.ErrCannotStart) && res.AllowFailure {
		// A step allowed to fail that could not start fails alone.
		t.a.meta(stepgraph.StepLabel(step), fmt.Sprintf("--- step %s could not start: %v; allow_failure: the tests go on", stepgraph.StepLabel(step), err))
		res = domain.StepResult{Name: stepgraph.StepLabel(step), ExitCode: -1, Why: "it could not start: " + err.Error(), AllowFailure: true, Tries: try.Number}
		err = nil
	}
	if res.Name != "" {
		t.a.mu.Lock()
		// The time of every try counts.
		res.Duration += t.a.steps[i].Duration
		t.a.steps[i] = res
		t.a.mu.Unlock()
	}
	switch {
	case err != nil:
		return stepgraph.Passed, err
	case res.Why != "":
		return stepgraph.FailedForGood, nil
	case !res.Failed():
		return stepgraph.Passed, nil
	case !try.Last():
		t.a.meta(stepgraph.StepLabel(step), fmt.Sprintf("--- step %s failed on try %d of %d; it runs again", stepgraph.StepLabel(step), try.Number, try.Of))
	case res.AllowFailure:
		t.a.meta(stepgraph.StepLabel(step), fmt.Sprintf("--- step %s failed; allow_failure: the tests go on", stepgraph.StepLabel(step)))
	}
	return stepgraph.Failed, nil
}

// NotRun records that step i does not run.
func (t *testSteps) NotRun(_ context.Context, i int, reason string, failed bool) error {
	name := stepgraph.StepLabel(t.specs[i])
	res := domain.StepResult{Name: name, Skipped: !failed, Why: reason, AllowFailure: t.specs[i].GetAllowFailure()}
	if failed {
		res.ExitCode = -1
		t.a.meta(name, fmt.Sprintf("--- step %s failed: %s", name, reason))
	} else {
		t.a.meta(name, fmt.Sprintf("--- step %s skipped: %s", name, reason))
	}
	t.a.mu.Lock()
	t.a.steps[i] = res
	t.a.mu.Unlock()
	return nil
}

// workspace makes an empty directory for the attempt,
// <DataDir>/workspaces/<run-id>-<attempt>, removing what earlier attempts
// of the run left on this machine. cleanup removes it and the run's home
// next to it (executor.HomeOf).
func (s *Service) workspace(run domain.TestRun) (string, func(), error) {
	root := filepath.Join(s.cfg.DataDir, "workspaces")
	old, err := filepath.Glob(filepath.Join(root, run.RunID+"-*"))
	if err != nil {
		return "", nil, fmt.Errorf("workspace of run %s: %w", run.RunID, err)
	}
	for _, dir := range old {
		if err := os.RemoveAll(dir); err != nil {
			return "", nil, fmt.Errorf("remove old workspace: %w", err)
		}
	}
	dir := filepath.Join(root, fmt.Sprintf("%s-%d", run.RunID, run.Attempt))
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return "", nil, fmt.Errorf("create workspace: %w", err)
	}
	return dir, func() {
		for _, d := range []string{dir, executor.HomeOf(dir)} {
			if err := os.RemoveAll(d); err != nil {
				s.log.Warn("removing the workspace failed", "dir", d, "error", err)
			}
		}
	}, nil
}

// fetchArtifacts puts the build's artifacts into the workspace at the
// paths the pipeline's build section declares for them, checking their
// size and sha256. A problem no retry can fix (an undeclared artifact, a
// missing object, a checksum mismatch, a path outside the workspace) is
// returned as problem; err is for failures worth another try.
func (a *attempt) fetchArtifacts(ctx context.Context, ws string, declared []*sourcev1.ArtifactSpec) (problem string, err error) {
	arts := a.bf.GetArtifacts()
	if len(arts) == 0 {
		return "", nil
	}
	paths := map[string]string{}
	for _, d := range declared {
		paths[d.GetName()] = d.GetPath()
	}
	store, err := artifacts.Open(ctx, a.s.js)
	if err != nil {
		return "", err
	}
	for _, art := range arts {
		rel, ok := paths[art.GetName()]
		if !ok {
			return fmt.Sprintf("artifact %q is not declared in the pipeline's build.artifacts", art.GetName()), nil
		}
		format := artifacts.FormatFromProto(art.GetFormat())
		if format == artifacts.TarGzip {
			// A directory's or a glob's files go back where they were.
			rel = artifacts.ArchiveBase(rel)
		}
		a.meta("", fmt.Sprintf("--- artifact %s: %s -> %s", art.GetName(), art.GetObject(), rel))
		err := store.Fetch(ctx, artifacts.Artifact{Name: art.GetName(), Object: art.GetObject(), SHA256: art.GetSha256(), Size: art.GetSize(), Format: format}, ws, rel)
		if artifacts.Permanent(err) {
			return err.Error(), nil
		}
		if err != nil {
			return "", err
		}
	}
	return "", nil
}

// runStep runs one test step with its output in the step log. err is
// returned only when the step could not run, or was stopped (the worker
// stops: the result says Cancelled).
func (a *attempt) runStep(ctx context.Context, stage executor.Stage, ws string, step *sourcev1.Step, try stepgraph.Try) (domain.StepResult, error) {
	name := stepgraph.StepLabel(step)
	timeout := step.GetTimeout().AsDuration()
	if timeout <= 0 {
		timeout = a.s.cfg.DefaultStepTimeout
	}
	env := maps.Clone(step.GetEnv())
	if env == nil {
		env = map[string]string{}
	}
	maps.Copy(env, stagespec.RunEnv(a.run.RunID, a.run.Commit, a.run.Branch, a.run.Repository.Name))
	env["SLUICE_STEP"] = name

	last := lastlines.New(lastLogLines, 0)
	if try.Number == 1 {
		a.meta(name, fmt.Sprintf("--- step %s: %s", name, step.GetRun()))
	} else {
		a.meta(name, fmt.Sprintf("--- step %s, try %d of %d: %s", name, try.Number, try.Of, step.GetRun()))
	}
	res, err := stage.Run(ctx, executor.Spec{
		Name:    name,
		Image:   step.GetImage(),
		Command: step.GetRun(),
		Dir:     ws,
		Home:    executor.HomeOf(ws),
		Env:     a.secrets.Env(env, step.GetSecrets()),
		Secrets: a.secrets.Values(),
		Timeout: timeout,
		Output: func(stream, line string) {
			a.w.Append(name, stream, line)
			last.Add(line)
		},
	})
	if err != nil {
		// An ErrCannotStart (a shell or an image missing, a container
		// the engine refused) ends the test run in ERROR; another error
		// is tried again.
		return domain.StepResult{}, fmt.Errorf("step %q: %w", name, err)
	}
	if res.Cancelled {
		a.meta(name, fmt.Sprintf("--- step %s stopped after %s", name, res.Duration.Round(time.Millisecond)))
		sr := domain.StepResult{Name: name, ExitCode: -1, Cancelled: true, Duration: res.Duration, Tries: try.Number}
		if c, ok := runcancel.Cause(ctx); ok {
			sr.Why = c.Reason()
		}
		return sr, fmt.Errorf("step %q stopped: %w", name, context.Cause(ctx))
	}
	sr := domain.StepResult{Name: name, ExitCode: res.ExitCode, TimedOut: res.TimedOut, Timeout: timeout, Duration: res.Duration, LastLines: last.Lines(), Tries: try.Number}
	if res.TimedOut {
		a.meta(name, fmt.Sprintf("--- step %s timed out after %s", name, timeout))
	} else {
		a.meta(name, fmt.Sprintf("--- step %s exited with code %d after %s", name, res.ExitCode, res.Duration.Round(time.Millisecond)))
	}
	return sr, nil
}

// readReports parses every report the pipeline names. Each problem (no
// file, unreadable, malformed) names the file.
func (a *attempt) readReports(ws string, specs []*sourcev1.ReportSpec) ([]domain.Suite, []domain.Case, []string) {
	var suites []domain.Suite
	var cases []domain.Case
	var problems []string
	read := 0 // report files read so far
	// Reports hold what tests printed: the secrets are masked out of them
	// as out of the steps' logs.
	mask := secretmask.New(a.secrets.Values())
	for _, spec := range specs {
		pattern := spec.GetPath()
		matches, err := filepath.Glob(filepath.Join(ws, filepath.FromSlash(pattern)))
		if err != nil {
			problems = append(problems, fmt.Sprintf("report %q: %v", pattern, err))
			continue
		}
		if len(matches) == 0 {
			if strings.ContainsAny(pattern, `*?[\`) {
				problems = append(problems, fmt.Sprintf("report %q: no file matches", pattern))
			} else {
				problems = append(problems, fmt.Sprintf("report file %q not found", pattern))
			}
			continue
		}
		// A step may leave any number of files a glob matches: past the
		// limit they are counted, not read.
		if left := a.s.cfg.MaxReportFiles - read; len(matches) > left {
			problems = append(problems, fmt.Sprintf("report %q: %d files match and %d more may be read; at most %d report files are read per test run (hint: the test service's max-report-files setting sets the limit)",
				pattern, len(matches), max(left, 0), a.s.cfg.MaxReportFiles))
			matches = matches[:max(left, 0)]
		}
		read += len(matches)
		for _, file := range matches {
			rel, _ := filepath.Rel(ws, file)
			rel = filepath.ToSlash(rel)
			rep, err := parseReportFile(ws, file, spec.GetFormat(), int64(a.s.cfg.MaxReportSize))
			if err != nil {
				problems = append(problems, mask.String(fmt.Sprintf("report file %q: %v", rel, err)))
				continue
			}
			a.meta("", fmt.Sprintf("--- report %s: %d passed, %d failed, %d skipped", rel, rep.Counts().Passed, rep.Counts().Failed, rep.Counts().Skipped))
			for _, su := range rep.Suites {
				c := su.Counts()
				suites = append(suites, domain.Suite{
					Name:     mask.String(su.Name),
					Counts:   domain.Counts{Passed: c.Passed, Failed: c.Failed, Skipped: c.Skipped},
					Duration: su.Duration,
				})
				for _, tc := range su.Cases {
					cases = append(cases, domain.Case{
						Suite:    mask.String(su.Name),
						Name:     mask.String(tc.Name),
						Status:   caseStatus(tc.Status),
						Duration: tc.Duration,
						Output:   mask.String(tc.Output),
					})
				}
			}
		}
	}
	if more := len(problems) - maxReportProblems; more > 0 {
		problems = append(problems[:maxReportProblems], fmt.Sprintf("and %d more report problems", more))
	}
	return suites, cases, problems
}

// maxReportProblems is how many problems with report files the failure
// reason lists: a glob may match thousands of broken files, and the
// reason travels in TestRunFinished. Each problem is short (report.Error
// cuts what it quotes of a report).
const maxReportProblems = 10

func caseStatus(s report.Status) domain.CaseStatus {
	switch s {
	case report.Passed:
		return domain.CasePassed
	case report.Failed:
		return domain.CaseFailed
	case report.Skipped:
		return domain.CaseSkipped
	}
	return domain.CaseFailed
}

// parseReportFile reads one report file: a regular file inside the
// workspace (a symbolic link in the repository could point anywhere, and
// a step could leave a named pipe, whose opening for reading would wait
// for a writer for good) of at most maxSize bytes.
func parseReportFile(ws, file string, format sourcev1.ReportFormat, maxSize int64) (report.Report, error) {
	real, err := filepath.EvalSymlinks(file)
	if err != nil {
		return report.Report{}, err
	}
	realWS, err := filepath.EvalSymlinks(ws)
	if err != nil {
		return report.Report{}, err
	}
	rel, err := filepath.Rel(realWS, real)
	if err != nil || !filepath.IsLocal(rel) {
		return report.Report{}, errors.New("the file is outside the workspace")
	}
	root, err := os.OpenRoot(realWS)
	if err != nil {
		return report.Report{}, err
	}
	defer root.Close()
	// The root keeps the path inside the workspace should a process the
	// step left behind change it after the check above.
	f, fi, err := stepfile.Open(root, filepath.ToSlash(rel))
	var notRegular *stepfile.NotRegularError
	if errors.As(err, &notRegular) {
		return report.Report{}, fmt.Errorf("it is %s, not a regular file", stepfile.Kind(notRegular.Mode))
	}
	if err != nil {
		return report.Report{}, err
	}
	defer f.Close()
	tooLarge := func(size string) error {
		return fmt.Errorf("the file is %s bytes; at most %d are read (hint: the test service's max-report-size setting sets the limit)", size, maxSize)
	}
	if fi.Size() > maxSize {
		return report.Report{}, tooLarge(strconv.FormatInt(fi.Size(), 10))
	}
	// The file may still grow while it is read.
	in := &countingReader{r: io.LimitReader(f, maxSize+1)}
	rep, err := parseReport(in, format)
	if in.n > maxSize {
		return report.Report{}, tooLarge("more than " + strconv.FormatInt(maxSize, 10))
	}
	return rep, err
}

// countingReader counts the bytes read from r.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

func parseReport(f io.Reader, format sourcev1.ReportFormat) (report.Report, error) {
	switch format {
	case sourcev1.ReportFormat_REPORT_FORMAT_GO_TEST_JSON:
		return report.ParseGoTestJSON(f)
	case sourcev1.ReportFormat_REPORT_FORMAT_JUNIT_XML:
		return report.ParseJUnitXML(f)
	}
	return report.Report{}, fmt.Errorf("unknown report format %s", format)
}
