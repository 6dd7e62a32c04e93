package notify

import (
	"testing"

	"google.golang.org/protobuf/proto"

	buildeventsv1 "github.com/sluicehq/sluice/proto/gen/sluice/build/events/v1"
	sourceeventsv1 "github.com/sluicehq/sluice/proto/gen/sluice/source/events/v1"
)

func TestRepositoryOf(t *testing.T) {
	t.Parallel()
	repo := &sourceeventsv1.RepositoryRef{Id: "r1", Name: "hello", Url: "https://example.com/hello.git"}
	for _, tc := range []struct {
		name    string
		payload proto.Message
		want    string
	}{
		{"source event", &sourceeventsv1.RunFinished{RunId: "run", Repository: repo}, "hello"},
		{"build event", &buildeventsv1.BuildFinished{RunId: "run", BuildId: "b", Repository: repo}, "hello"},
		{"event without the field", &buildeventsv1.StepFinished{RunId: "run", Step: "compile"}, ""},
		{"unset field", &buildeventsv1.BuildStarted{RunId: "run"}, ""},
		{"the ref itself", repo, ""},
		{"nil", nil, ""},
	} {
		if got := repositoryOf(tc.payload); got != tc.want {
			t.Errorf("%s: RepositoryOf = %q, want %q", tc.name, got, tc.want)
		}
	}
}
