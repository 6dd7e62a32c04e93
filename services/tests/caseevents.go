package tests

import (
	"google.golang.org/protobuf/proto"

	"github.com/sluicehq/sluice/platform/events"
	"github.com/sluicehq/sluice/platform/prototime"
	"github.com/sluicehq/sluice/proto/gen/sluice/source/events/v1"
	"github.com/sluicehq/sluice/proto/gen/sluice/test/events/v1"
	testv1 "github.com/sluicehq/sluice/proto/gen/sluice/test/v1"
	"github.com/sluicehq/sluice/services/tests/domain"
)

// caseEvents are the test case events (CDEvents testcaserun) of a finished
// test run: one per case at positions (domain.Outcome.PublishedCases), a
// TestCaseSkipped for a skipped case, else a TestCaseFinished. They carry
// no output; GetTestRun has it.
func caseEvents(run domain.TestRun, o domain.Outcome, environment string, positions []int) ([]events.Event, error) {
	repo := &sourceeventsv1.RepositoryRef{Id: run.Repository.ID, Name: run.Repository.Name, Url: run.Repository.URL}
	out := make([]events.Event, 0, len(positions))
	for _, i := range positions {
		c := o.Cases[i]
		tc := &testv1.TestCase{Suite: c.Suite, Name: c.Name, Status: caseStatusToProto(c.Status), Duration: prototime.Duration(c.Duration)}
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
