package events_test

import (
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/sluicehq/sluice/platform/events"
	"github.com/sluicehq/sluice/platform/events/cdeventstest"
	buildeventsv1 "github.com/sluicehq/sluice/proto/gen/sluice/build/events/v1"
	buildv1 "github.com/sluicehq/sluice/proto/gen/sluice/build/v1"
	notifyeventsv1 "github.com/sluicehq/sluice/proto/gen/sluice/notify/events/v1"
	releaseeventsv1 "github.com/sluicehq/sluice/proto/gen/sluice/release/events/v1"
	releasev1 "github.com/sluicehq/sluice/proto/gen/sluice/release/v1"
	sourceeventsv1 "github.com/sluicehq/sluice/proto/gen/sluice/source/events/v1"
	sourcev1 "github.com/sluicehq/sluice/proto/gen/sluice/source/v1"
	testeventsv1 "github.com/sluicehq/sluice/proto/gen/sluice/test/events/v1"
	testv1 "github.com/sluicehq/sluice/proto/gen/sluice/test/v1"
)

const (
	sha    = "0123456789abcdef0123456789abcdef01234567"
	run    = "0192d5a4-8f1e-7c3a-9b2d-4e5f6a7b8c9d"
	build  = "0192d5a4-9000-7c3a-9b2d-4e5f6a7b8c9d"
	testID = "0192d5a4-9100-7c3a-9b2d-4e5f6a7b8c9d"
)

var repo = &sourceeventsv1.RepositoryRef{Id: "r1", Name: "hello", Url: "/srv/git/hello"}

// samples are filled payloads: at least one of every kind, and one of every
// end state a kind's content maps to a CDEvents outcome.
func samples() []proto.Message {
	artifact := &buildv1.Artifact{Name: "hello", Object: run + "/hello", Sha256: strings.Repeat("ab", 32), Size: 42}
	deployment := &releasev1.Deployment{Id: "d1", Repository: "hello", Environment: "staging", Version: "v1.2.3", ReleaseId: "rel1",
		Status: releasev1.DeploymentStatus_DEPLOYMENT_STATUS_VERIFIED, CreateTime: timestamppb.Now(), RunId: run}
	passed := &testv1.TestCase{Suite: "example.com/hello", Name: "TestHello", Status: testv1.CaseStatus_CASE_STATUS_PASSED, Duration: durationpb.New(3)}
	failed := &testv1.TestCase{Suite: "example.com/hello", Name: "TestBye", Status: testv1.CaseStatus_CASE_STATUS_FAILED}
	skipped := &testv1.TestCase{Suite: "", Name: "TestLater", Status: testv1.CaseStatus_CASE_STATUS_SKIPPED}
	out := []proto.Message{
		&sourceeventsv1.RepositoryCreated{Repository: repo, Branch: "main"},
		&sourceeventsv1.RepositoryCreated{Repository: &sourceeventsv1.RepositoryRef{Id: "r2", Name: "app", Url: "git@example.com:team/app.git"}},
		&sourceeventsv1.RepositoryCreated{Repository: &sourceeventsv1.RepositoryRef{Id: "r3", Name: "web", Url: "https://bot:token@example.com/team/web.git"}},
		&sourceeventsv1.ChangeReceived{Repository: repo, Commit: sha, Ref: "refs/heads/main", Trigger: sourcev1.Trigger_TRIGGER_WEBHOOK, DeliveryId: "x"},
		runRequested(run),
		&sourceeventsv1.RunStarted{RunId: run, Repository: repo, Commit: sha, Branch: "main", BuildId: build},
		&sourceeventsv1.RunCancelRequested{RunId: run, Repository: repo, Commit: sha, RequestedBy: "token t1 (alice)"},
		&sourceeventsv1.CommitStatusChanged{Repository: repo, RunId: run, Commit: sha, Context: "sluice/test", Sequence: 3,
			Forge: &sourcev1.Forge{Kind: sourcev1.ForgeKind_FORGE_KIND_GITEA, Url: "https://git.example.com", Project: "acme/hello"},
			State: sourceeventsv1.CommitStatusState_COMMIT_STATUS_STATE_FAILURE, Description: "test: 3 failed", TargetUrl: "https://ci.example.com/runs/" + run},
		&sourceeventsv1.ForgeReleaseRequested{Repository: repo, RunId: run, ReleaseId: "rel1", Version: "1.2.3", Tag: "v1.2.3", Commit: sha,
			Forge:     &sourcev1.Forge{Kind: sourcev1.ForgeKind_FORGE_KIND_GITEA, Url: "https://git.example.com", Project: "acme/hello"},
			Changelog: "## Fixes\n- a bug (abc1234)"},
		&buildeventsv1.BuildStarted{RunId: run, BuildId: build, Repository: repo, Commit: sha, Attempt: 1},
		&buildeventsv1.StepStarted{RunId: run, BuildId: build, Step: "compile", Repository: repo, Attempt: 1},
		&buildeventsv1.ArtifactPublished{RunId: run, BuildId: build, Artifact: artifact},
		&buildeventsv1.BuildFinished{RunId: run, BuildId: build, Repository: repo, Commit: sha, Branch: "main",
			Status: buildv1.BuildStatus_BUILD_STATUS_SUCCEEDED, Artifacts: []*buildv1.Artifact{artifact}, Duration: durationpb.New(5)},
		&testeventsv1.TestRunStarted{RunId: run, TestRunId: testID, Repository: repo, Commit: sha, Environment: events.CIEnvironment("hello")},
		// An older producer's event, without an environment.
		&testeventsv1.TestRunStarted{RunId: run, TestRunId: testID, Repository: repo, Commit: sha},
		&testeventsv1.TestCaseFinished{RunId: run, TestRunId: testID, Repository: repo, Environment: events.CIEnvironment("hello"), TestCase: passed},
		&testeventsv1.TestCaseFinished{RunId: run, TestRunId: testID, Repository: repo, Environment: events.CIEnvironment("hello"), TestCase: failed, Position: 1},
		&testeventsv1.TestCaseSkipped{RunId: run, TestRunId: testID, Repository: repo, Environment: events.CIEnvironment("hello"), TestCase: skipped, Position: 2},
		&releaseeventsv1.ReleasePublished{RunId: run, Repository: repo, Release: &releasev1.Release{Id: "rel1", Version: "v1.2.3"}},
		&releaseeventsv1.ServiceDeployed{RunId: run, Repository: repo, Deployment: deployment},
		&releaseeventsv1.DeploymentFailed{RunId: run, Repository: repo, Deployment: deployment},
		&releaseeventsv1.ServiceRolledBack{RunId: run, Repository: repo, Environment: "staging", FromVersion: "v1.2.4", ToVersion: "v1.2.3",
			Reason: "verification failed", Deployment: deployment},
		// A manual rollback has no run.
		&releaseeventsv1.ServiceRolledBack{Repository: repo, Environment: "staging", ToVersion: "v1.2.3"},
		&releaseeventsv1.ReleaseFinished{RunId: run, Repository: repo, Outcome: releaseeventsv1.ReleaseOutcome_RELEASE_OUTCOME_SUCCEEDED, Version: "v1.2.3"},
		&notifyeventsv1.DeliverySucceeded{DeliveryId: "del1", SubscriptionId: "s1", EventId: "e1", EventType: "dev.cdevents.build.finished.0.3.0", Attempts: 1},
		&notifyeventsv1.DeliveryFailed{DeliveryId: "del1", SubscriptionId: "s1", EventId: "e1", EventType: "dev.cdevents.build.finished.0.3.0", Attempts: 6, LastError: "500"},
	}
	for _, s := range []sourcev1.RunStatus{sourcev1.RunStatus_RUN_STATUS_UNSPECIFIED, sourcev1.RunStatus_RUN_STATUS_SUCCEEDED, sourcev1.RunStatus_RUN_STATUS_FAILED, sourcev1.RunStatus_RUN_STATUS_CANCELLED} {
		out = append(out, &sourceeventsv1.RunFinished{RunId: run, Repository: repo, Commit: sha, Status: s, FailureReason: "build failed"})
	}
	for _, s := range []buildv1.StepStatus{buildv1.StepStatus_STEP_STATUS_UNSPECIFIED, buildv1.StepStatus_STEP_STATUS_SUCCEEDED, buildv1.StepStatus_STEP_STATUS_FAILED,
		buildv1.StepStatus_STEP_STATUS_TIMED_OUT, buildv1.StepStatus_STEP_STATUS_CANCELLED} {
		out = append(out, &buildeventsv1.StepFinished{RunId: run, BuildId: build, Step: "compile", Status: s, ExitCode: 2, Repository: repo})
	}
	for _, s := range []testv1.TestRunStatus{testv1.TestRunStatus_TEST_RUN_STATUS_PASSED, testv1.TestRunStatus_TEST_RUN_STATUS_FAILED, testv1.TestRunStatus_TEST_RUN_STATUS_ERROR, testv1.TestRunStatus_TEST_RUN_STATUS_CANCELLED} {
		out = append(out, &testeventsv1.TestRunFinished{RunId: run, TestRunId: testID, Repository: repo, Commit: sha, Status: s,
			Counts: &testv1.Counts{Passed: 1, Failed: 1}, FailureReason: "1 failed", Environment: events.CIEnvironment("hello"), CaseEvents: 2})
	}
	return out
}

func validator(t *testing.T) *cdeventstest.Validator {
	t.Helper()
	v, err := cdeventstest.New()
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// Every kind's event, built by New from a filled payload, is a valid
// CDEvent: a standard type against the CDEvents v0.5.1 schema of its type,
// a custom one against the custom rules; its headers agree with its body,
// and it decodes back to its payload.
func TestEveryKindIsAValidCDEvent(t *testing.T) {
	t.Parallel()
	v := validator(t)
	covered := map[string]bool{}
	for _, payload := range samples() {
		ev, err := events.New(payload, "subject-1", run)
		if err != nil {
			t.Errorf("New(%T): %v", payload, err)
			continue
		}
		covered[ev.Kind.Type] = true
		m, err := ev.Msg()
		if err != nil {
			t.Fatal(err)
		}
		if err := v.ValidateMessage(m.Header, m.Data); err != nil {
			t.Errorf("%s is not a valid CDEvent: %v\n%s", ev.Kind.Subject, err, m.Data)
		}
		got, err := events.Decode(m.Subject, m.Header, m.Data)
		if err != nil || !proto.Equal(got.Payload, payload) {
			t.Errorf("%s: decoded %v, %v", ev.Kind.Subject, got.Payload, err)
		}
	}
	for _, k := range events.Catalogue() {
		if !covered[k.Type] {
			t.Errorf("no sample of %s (%s): add one to samples()", k.Subject, k.PayloadName())
		}
		if k.Standard() && !slices.Contains(v.Types(), k.Type) {
			t.Errorf("%s: no CDEvents v0.5.1 schema has type %s", k.Subject, k.Type)
		}
	}
}

// The contents carry what the schemas leave optional too, the way
// docs/events.md says.
func TestContentFields(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		payload proto.Message
		want    string
	}{
		{&sourceeventsv1.RepositoryCreated{Repository: repo}, `{"name":"hello","uri":"file:///srv/git/hello"}`},
		{&sourceeventsv1.RepositoryCreated{Repository: &sourceeventsv1.RepositoryRef{Id: "r", Name: "a", Url: "git@example.com:team/a.git"}},
			`{"name":"a","uri":"ssh://git@example.com/team/a.git"}`},
		{&sourceeventsv1.RepositoryCreated{Repository: &sourceeventsv1.RepositoryRef{Id: "r", Name: "a", Url: "https://bot:secret@example.com/a.git"}},
			`{"name":"a","uri":"https://bot@example.com/a.git"}`},
		{runRequested(run), `{"pipelineName":"hello","uri":"urn:sluice:run:` + run + `"}`},
		{&sourceeventsv1.RunFinished{RunId: run, Repository: repo, Status: sourcev1.RunStatus_RUN_STATUS_FAILED, FailureReason: "test failed"},
			`{"errors":"test failed","outcome":"failure","pipelineName":"hello","uri":"urn:sluice:run:` + run + `"}`},
		{&buildeventsv1.StepFinished{RunId: run, Step: "compile", Status: buildv1.StepStatus_STEP_STATUS_FAILED, ExitCode: 3},
			`{"errors":"exited with code 3","outcome":"failure","pipelineRun":{"id":"` + run + `","source":"/sluice/source"},"taskName":"compile"}`},
		{&testeventsv1.TestRunStarted{RunId: run, TestRunId: testID, Repository: repo},
			`{"environment":{"id":"sluice-ci/hello","source":"/sluice/test"},"testSuite":{"id":"hello","name":"hello"},"trigger":{"type":"pipeline"}}`},
		{&testeventsv1.TestCaseFinished{RunId: run, TestRunId: testID, Repository: repo, Environment: "sluice-ci/hello",
			TestCase: &testv1.TestCase{Suite: "p", Name: "TestX", Status: testv1.CaseStatus_CASE_STATUS_FAILED}},
			`{"environment":{"id":"sluice-ci/hello","source":"/sluice/test"},"outcome":"failure","testCase":{"id":"p.TestX","name":"TestX"},"testSuiteRun":{"id":"` + testID + `","source":"/sluice/test"}}`},
		{&releaseeventsv1.ServiceDeployed{Repository: repo, Deployment: &releasev1.Deployment{Environment: "prod", Version: "v2.0.0"}},
			`{"artifactId":"pkg:generic/hello@v2.0.0","environment":{"id":"prod","source":"/sluice/release"}}`},
		{&releaseeventsv1.ServiceRolledBack{Repository: repo, Environment: "prod", ToVersion: "v1.0.0"},
			`{"artifactId":"pkg:generic/hello@v1.0.0","environment":{"id":"prod","source":"/sluice/release"}}`},
		{&releaseeventsv1.ReleaseFinished{RunId: run, Repository: repo}, `{}`},
	} {
		ev, err := events.New(tc.payload, "s", run)
		if err != nil {
			t.Errorf("New(%T): %v", tc.payload, err)
			continue
		}
		got, _ := json.Marshal(ev.Content)
		if string(got) != tc.want {
			t.Errorf("%s content\n%s\nwant\n%s", ev.Kind.Type, got, tc.want)
		}
	}
}

// A payload without what the CDEvents type requires makes no event.
func TestNewRefusesIncompleteContent(t *testing.T) {
	t.Parallel()
	for _, payload := range []proto.Message{
		&releaseeventsv1.ServiceDeployed{Repository: repo, Deployment: &releasev1.Deployment{Version: "v1.0.0"}},
		&testeventsv1.TestRunFinished{RunId: run, TestRunId: testID, Repository: repo},
		&testeventsv1.TestCaseFinished{RunId: run, TestRunId: testID, Repository: repo, TestCase: &testv1.TestCase{Name: "T", Status: testv1.CaseStatus_CASE_STATUS_SKIPPED}},
		&testeventsv1.TestCaseSkipped{RunId: run, TestRunId: testID, Repository: repo, TestCase: &testv1.TestCase{}},
		&sourceeventsv1.RepositoryCreated{Repository: &sourceeventsv1.RepositoryRef{Id: "r", Name: "a", Url: "relative/path"}},
	} {
		if _, err := events.New(payload, "s", run); !errors.Is(err, events.ErrInvalidEvent) {
			t.Errorf("New(%v) = %v, want ErrInvalidEvent", payload, err)
		}
	}
}

// The validator is not vacuous: it refuses what Sluice published before
// (a subject type, no required content, the old specversion) and custom
// types of the wrong form.
func TestValidatorRefusesInvalidEvents(t *testing.T) {
	t.Parallel()
	v := validator(t)
	good := validBody(t, v, &releaseeventsv1.ServiceDeployed{Repository: repo, Deployment: &releasev1.Deployment{Environment: "prod", Version: "v2.0.0"}})
	goodCustom := validBody(t, v, &releaseeventsv1.ReleaseFinished{RunId: run, Repository: repo})
	goodQueued := validBody(t, v, runRequested(run))
	for name, tc := range map[string]struct {
		body []byte
		edit func(map[string]any)
	}{
		"subject type":       {good, func(b map[string]any) { sub(b, "subject")["type"] = "service" }},
		"no environment":     {good, func(b map[string]any) { delete(sub(sub(b, "subject"), "content"), "environment") }},
		"no artifactId":      {good, func(b map[string]any) { delete(sub(sub(b, "subject"), "content"), "artifactId") }},
		"old specversion":    {good, func(b map[string]any) { sub(b, "context")["specversion"] = "0.5.0" }},
		"other type":         {good, func(b map[string]any) { sub(b, "context")["type"] = "dev.cdevents.service.deployed.0.2.0" }},
		"bad timestamp":      {good, func(b map[string]any) { sub(b, "context")["timestamp"] = "yesterday" }},
		"relative uri":       {goodQueued, func(b map[string]any) { sub(sub(b, "subject"), "content")["uri"] = "/runs/1" }},
		"custom subject":     {goodCustom, func(b map[string]any) { sub(b, "subject")["type"] = "release" }},
		"custom type form":   {goodCustom, func(b map[string]any) { sub(b, "context")["type"] = "dev.cdeventsx.release.finished.0.1.0" }},
		"custom without id":  {goodCustom, func(b map[string]any) { delete(sub(b, "subject"), "id") }},
		"custom extra field": {goodCustom, func(b map[string]any) { sub(b, "context")["version"] = "0.5.1" }},
	} {
		var b map[string]any
		if err := json.Unmarshal(tc.body, &b); err != nil {
			t.Fatal(err)
		}
		tc.edit(b)
		data, _ := json.Marshal(b)
		if err := v.Validate(data); err == nil {
			t.Errorf("%s: accepted\n%s", name, data)
		}
	}
}

// validBody is the body of an event of payload, which must be valid.
func validBody(t *testing.T, v *cdeventstest.Validator, payload proto.Message) []byte {
	t.Helper()
	ev, err := events.New(payload, "s1", run)
	if err != nil {
		t.Fatal(err)
	}
	body, err := ev.Body()
	if err != nil {
		t.Fatal(err)
	}
	if err := v.Validate(body); err != nil {
		t.Fatalf("%s: %v", ev.Kind.Type, err)
	}
	return body
}

func sub(m map[string]any, key string) map[string]any {
	v, _ := m[key].(map[string]any)
	return v
}

// Events published under a kind's former type (before an upgrade) still
// decode, as the kind they are now.
func TestDecodeAcceptsFormerTypes(t *testing.T) {
	t.Parallel()
	n := 0
	for _, payload := range samples() {
		ev, err := events.New(payload, "s", run)
		if err != nil {
			t.Fatal(err)
		}
		for _, former := range ev.Kind.Former {
			n++
			m, err := ev.Msg()
			if err != nil {
				t.Fatal(err)
			}
			m.Header.Set(events.HeaderType, former)
			got, err := events.Decode(m.Subject, m.Header, m.Data)
			if err != nil || got.Kind.Type != ev.Kind.Type {
				t.Errorf("Decode(%s) = %v, %v; want kind %s", former, got.Kind.Type, err, ev.Kind.Type)
			}
			if _, ok := events.KindByType(former); ok {
				t.Errorf("KindByType(%s) knows a former type: subscriptions would accept it", former)
			}
		}
	}
	if n == 0 {
		t.Fatal("no kind has a former type")
	}
}
