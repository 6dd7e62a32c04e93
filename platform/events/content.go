package events

import (
	"errors"
	"fmt"
	"net/url"
	"path"
	"regexp"
	"strings"

	"github.com/package-url/packageurl-go"
	"google.golang.org/protobuf/proto"

	buildeventsv1 "github.com/sluicehq/sluice/proto/gen/sluice/build/events/v1"
	buildv1 "github.com/sluicehq/sluice/proto/gen/sluice/build/v1"
	releaseeventsv1 "github.com/sluicehq/sluice/proto/gen/sluice/release/events/v1"
	sourceeventsv1 "github.com/sluicehq/sluice/proto/gen/sluice/source/events/v1"
	sourcev1 "github.com/sluicehq/sluice/proto/gen/sluice/source/v1"
	testeventsv1 "github.com/sluicehq/sluice/proto/gen/sluice/test/events/v1"
	testv1 "github.com/sluicehq/sluice/proto/gen/sluice/test/v1"
)

// The CDEvents subject content of each standard kind, derived from its
// payload here, in one place, so producers never build content maps. Each
// function gives what the CDEvents v0.5.1 schema of its type requires and
// fails when the payload lacks it; an optional field (a pipeline run's or a
// task run's outcome) is left out when the payload does not tell.
// docs/events.md lists the fields.

// CIEnvironment is the CDEvents environment id of the test runs of a
// repository: "sluice-ci/<repository>". Tests run before any release
// environment is chosen, on Sluice's own test workers, so they get an
// environment of their own per repository.
func CIEnvironment(repository string) string { return "sluice-ci/" + repository }

// TaskRunID is the CDEvents id of a build step's task run (the CloudEvents
// subject of its step events): "<build id>/<step>".
func TaskRunID(buildID, step string) string { return buildID + "/" + step }

// TestCaseRunID is the CDEvents id of a test case run (the CloudEvents
// subject of its test case events): "<test run id>/<position>".
func TestCaseRunID(testRunID string, position int) string {
	return fmt.Sprintf("%s/%d", testRunID, position)
}

// contentOf adapts a content function of one payload type to the Kind's.
func contentOf[T proto.Message](f func(T) (map[string]any, error)) func(proto.Message) (map[string]any, error) {
	return func(m proto.Message) (map[string]any, error) {
		p, ok := m.(T)
		if !ok {
			return nil, fmt.Errorf("payload is a %T", m)
		}
		return f(p)
	}
}

// ref is a CDEvents reference to another subject.
func ref(id, source string) map[string]any { return map[string]any{"id": id, "source": source} }

// runURI names a run as an absolute URI, as a pipelineRun's uri must be.
// Sluice has no web address for a run, so it is a name, not a locator:
// `sluice show <id>` (or GetRun) finds the run.
func runURI(runID string) string { return "urn:sluice:run:" + url.PathEscape(runID) }

// scpLike is git's [user@]host:path form of an ssh URL.
var scpLike = regexp.MustCompile(`^(?:([^@/:]+)@)?([^@/:]+):(.+)$`)

// repositoryURI turns a repository URL as source keeps it (an absolute
// path, a file://, http(s):// or ssh:// URL, or git's user@host:path form)
// into an absolute URI, without a password.
func repositoryURI(raw string) (string, error) {
	switch {
	case raw == "":
		return "", errors.New("the repository has no url")
	case strings.HasPrefix(raw, "/"):
		return (&url.URL{Scheme: "file", Path: path.Clean(raw)}).String(), nil
	case strings.Contains(raw, "://"):
		u, err := url.Parse(raw)
		if err != nil {
			return "", fmt.Errorf("repository url: %w", err)
		}
		if u.Scheme == "" || (u.Host == "" && u.Path == "") {
			return "", fmt.Errorf("repository url %q is not an absolute URL", u.Redacted())
		}
		if u.User != nil {
			u.User = url.User(u.User.Username())
		}
		return u.String(), nil
	}
	if m := scpLike.FindStringSubmatch(raw); m != nil {
		u := url.URL{Scheme: "ssh", Host: m[2], Path: "/" + strings.TrimPrefix(m[3], "/")}
		if m[1] != "" {
			u.User = url.User(m[1])
		}
		return u.String(), nil
	}
	return "", fmt.Errorf("repository url %q is neither an absolute path nor a URL", raw)
}

// releasePURL is the package URL of a repository's release: the artifact a
// deployment puts in an environment.
func releasePURL(repository, version string) (string, error) {
	if repository == "" {
		return "", errors.New("the repository has no name")
	}
	return packageurl.NewPackageURL(packageurl.TypeGeneric, "", repository, version, nil, "").ToString(), nil
}

func repositoryCreated(p *sourceeventsv1.RepositoryCreated) (map[string]any, error) {
	uri, err := repositoryURI(p.GetRepository().GetUrl())
	if err != nil {
		return nil, err
	}
	return map[string]any{"name": p.GetRepository().GetName(), "uri": uri}, nil
}

// pipelineRun is the content every pipelineRun event has: the pipeline is
// the repository's .sluice.yaml, named after the repository.
func pipelineRun(runID string, repo *sourceeventsv1.RepositoryRef) (map[string]any, error) {
	if runID == "" || repo.GetName() == "" {
		return nil, errors.New("a pipeline run needs a run id and a repository name")
	}
	return map[string]any{"pipelineName": repo.GetName(), "uri": runURI(runID)}, nil
}

func runRequested(p *sourceeventsv1.RunRequested) (map[string]any, error) {
	return pipelineRun(p.GetRunId(), p.GetRepository())
}

func runStarted(p *sourceeventsv1.RunStarted) (map[string]any, error) {
	return pipelineRun(p.GetRunId(), p.GetRepository())
}

func runFinished(p *sourceeventsv1.RunFinished) (map[string]any, error) {
	c, err := pipelineRun(p.GetRunId(), p.GetRepository())
	if err != nil {
		return nil, err
	}
	switch p.GetStatus() {
	case sourcev1.RunStatus_RUN_STATUS_SUCCEEDED:
		c["outcome"] = "success"
	case sourcev1.RunStatus_RUN_STATUS_FAILED:
		c["outcome"] = "failure"
	case sourcev1.RunStatus_RUN_STATUS_CANCELLED:
		c["outcome"] = "cancel"
	}
	if p.GetFailureReason() != "" {
		c["errors"] = p.GetFailureReason()
	}
	return c, nil
}

func taskRun(runID, step string) map[string]any {
	return map[string]any{"taskName": step, "pipelineRun": ref(runID, Source("source"))}
}

func stepStarted(p *buildeventsv1.StepStarted) (map[string]any, error) {
	return taskRun(p.GetRunId(), p.GetStep()), nil
}

func stepFinished(p *buildeventsv1.StepFinished) (map[string]any, error) {
	c := taskRun(p.GetRunId(), p.GetStep())
	switch p.GetStatus() {
	case buildv1.StepStatus_STEP_STATUS_SUCCEEDED:
		c["outcome"] = "success"
	case buildv1.StepStatus_STEP_STATUS_FAILED:
		c["outcome"] = "failure"
		if p.GetExitCode() > 0 {
			c["errors"] = fmt.Sprintf("exited with code %d", p.GetExitCode())
		} else {
			c["errors"] = "could not run"
		}
	case buildv1.StepStatus_STEP_STATUS_TIMED_OUT:
		c["outcome"], c["errors"] = "failure", "timed out"
	case buildv1.StepStatus_STEP_STATUS_CANCELLED:
		c["outcome"] = "cancel"
	}
	return c, nil
}

// testEnvironment is the environment a test event names: the payload's, or
// for an event whose producer did not set it, the CI environment.
func testEnvironment(env string, repo *sourceeventsv1.RepositoryRef) (map[string]any, error) {
	if env == "" {
		if repo.GetName() == "" {
			return nil, errors.New("a test event needs an environment or a repository name")
		}
		env = CIEnvironment(repo.GetName())
	}
	return ref(env, Source("test")), nil
}

// testSuite is what a test run runs: the test stage of the repository's
// pipeline, named after the repository.
func testSuite(repo *sourceeventsv1.RepositoryRef) map[string]any {
	return map[string]any{"id": repo.GetName(), "name": repo.GetName()}
}

func testRunStarted(p *testeventsv1.TestRunStarted) (map[string]any, error) {
	env, err := testEnvironment(p.GetEnvironment(), p.GetRepository())
	if err != nil {
		return nil, err
	}
	return map[string]any{"environment": env, "testSuite": testSuite(p.GetRepository()), "trigger": map[string]any{"type": "pipeline"}}, nil
}

func testRunFinished(p *testeventsv1.TestRunFinished) (map[string]any, error) {
	env, err := testEnvironment(p.GetEnvironment(), p.GetRepository())
	if err != nil {
		return nil, err
	}
	c := map[string]any{"environment": env, "testSuite": testSuite(p.GetRepository())}
	switch p.GetStatus() {
	case testv1.TestRunStatus_TEST_RUN_STATUS_PASSED:
		c["outcome"] = "success"
	case testv1.TestRunStatus_TEST_RUN_STATUS_FAILED:
		c["outcome"] = "failure"
	case testv1.TestRunStatus_TEST_RUN_STATUS_ERROR:
		c["outcome"] = "error"
	case testv1.TestRunStatus_TEST_RUN_STATUS_CANCELLED:
		c["outcome"] = "cancel"
	default:
		return nil, fmt.Errorf("test run status %s is not an end state", p.GetStatus())
	}
	if p.GetFailureReason() != "" {
		c["reason"] = p.GetFailureReason()
	}
	return c, nil
}

// testCaseRun is the content of both test case events.
func testCaseRun(env, testRunID string, repo *sourceeventsv1.RepositoryRef, tc *testv1.TestCase) (map[string]any, error) {
	e, err := testEnvironment(env, repo)
	if err != nil {
		return nil, err
	}
	id := tc.GetName()
	if tc.GetSuite() != "" {
		id = tc.GetSuite() + "." + id
	}
	if id == "" {
		return nil, errors.New("the test case has no suite and no name")
	}
	testCase := map[string]any{"id": id}
	if tc.GetName() != "" {
		testCase["name"] = tc.GetName()
	}
	return map[string]any{"environment": e, "testSuiteRun": ref(testRunID, Source("test")), "testCase": testCase}, nil
}

func testCaseFinished(p *testeventsv1.TestCaseFinished) (map[string]any, error) {
	c, err := testCaseRun(p.GetEnvironment(), p.GetTestRunId(), p.GetRepository(), p.GetTestCase())
	if err != nil {
		return nil, err
	}
	switch p.GetTestCase().GetStatus() {
	case testv1.CaseStatus_CASE_STATUS_PASSED:
		c["outcome"] = "success"
	case testv1.CaseStatus_CASE_STATUS_FAILED:
		c["outcome"] = "failure"
	default:
		return nil, fmt.Errorf("a finished test case must have passed or failed, not %s", p.GetTestCase().GetStatus())
	}
	return c, nil
}

func testCaseSkipped(p *testeventsv1.TestCaseSkipped) (map[string]any, error) {
	return testCaseRun(p.GetEnvironment(), p.GetTestRunId(), p.GetRepository(), p.GetTestCase())
}

// deployedService is the content of the service events: the environment and
// the release (as a package URL) now running there.
func deployedService(repository, environment, version string) (map[string]any, error) {
	if environment == "" {
		return nil, errors.New("the deployment names no environment")
	}
	purl, err := releasePURL(repository, version)
	if err != nil {
		return nil, err
	}
	return map[string]any{"environment": ref(environment, Source("release")), "artifactId": purl}, nil
}

func serviceDeployed(p *releaseeventsv1.ServiceDeployed) (map[string]any, error) {
	d := p.GetDeployment()
	return deployedService(p.GetRepository().GetName(), d.GetEnvironment(), d.GetVersion())
}

func serviceRolledBack(p *releaseeventsv1.ServiceRolledBack) (map[string]any, error) {
	version := p.GetToVersion()
	if version == "" {
		version = p.GetDeployment().GetVersion()
	}
	return deployedService(p.GetRepository().GetName(), p.GetEnvironment(), version)
}
