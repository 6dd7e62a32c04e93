package events_test

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"
	"google.golang.org/protobuf/proto"

	"github.com/sluicehq/sluice/platform/events"
	buildeventsv1 "github.com/sluicehq/sluice/proto/gen/sluice/build/events/v1"
	buildv1 "github.com/sluicehq/sluice/proto/gen/sluice/build/v1"
	sourceeventsv1 "github.com/sluicehq/sluice/proto/gen/sluice/source/events/v1"
	sourcev1 "github.com/sluicehq/sluice/proto/gen/sluice/source/v1"
)

func bodyOf(t *testing.T, ev events.Event) []byte {
	t.Helper()
	m, err := ev.Msg()
	if err != nil {
		t.Fatal(err)
	}
	return m.Data
}

// An event over its budget is cut where it is made: its free text is cut
// with a mark saying how much, the subject content derived from it too,
// and the payload the producer handed over is left alone.
func TestNewCutsAnEventToItsBudget(t *testing.T) {
	t.Parallel()
	var reason strings.Builder
	for i := range 60000 {
		fmt.Fprintf(&reason, ".sluice.yaml:%d:1: unknown key \"k%d\"\n", i+6, i)
	}
	p := &sourceeventsv1.RunFinished{
		RunId:         "run-1",
		Repository:    &sourceeventsv1.RepositoryRef{Id: "r1", Name: "hello", Url: "/tmp/hello"},
		Status:        sourcev1.RunStatus_RUN_STATUS_FAILED,
		FailureReason: reason.String(),
	}
	original := proto.Clone(p)
	ev, err := events.New(p, "run-1", "run-1")
	if err != nil {
		t.Fatal(err)
	}
	body := bodyOf(t, ev)
	if len(body) > events.MaxBody || len(body) < events.MaxBody/2 {
		t.Errorf("the event is %d bytes; want at most %d, and not much less", len(body), events.MaxBody)
	}
	got, ok := ev.Payload.(*sourceeventsv1.RunFinished)
	if !ok {
		t.Fatalf("payload %T", ev.Payload)
	}
	r := got.GetFailureReason()
	m := cutLines.FindStringSubmatch(r)
	if !strings.HasPrefix(r, ".sluice.yaml:6:1: unknown key \"k0\"\n") || m == nil {
		t.Fatalf("failure reason ends %q; want a mark saying how many lines were cut", tail(r))
	}
	if kept, cut := strings.Count(r, "\n"), atoi(t, m[1]); kept+cut != 60000 {
		t.Errorf("%d lines kept and %d cut; want 60000 in all", kept, cut)
	}
	if ev.Content["errors"] != got.GetFailureReason() {
		t.Errorf("subject content errors is not the cut reason")
	}
	if !proto.Equal(p, original) {
		t.Error("New changed the payload it was given")
	}
	if _, err := events.Decode(ev.Kind.Subject, mustMsg(t, ev).Header, body); err != nil {
		t.Errorf("the cut event does not decode: %v", err)
	}
}

// The last log lines keep their end, the reason its start; text that JSON
// escapes (every "<" takes six bytes) is still brought within the budget.
func TestNewCutsEachFieldFromTheRightEnd(t *testing.T) {
	t.Parallel()
	lines := make([]string, 2000)
	for i := range lines {
		lines[i] = fmt.Sprintf("line %d %s", i, strings.Repeat("<", 900))
	}
	p := &buildeventsv1.BuildFinished{
		RunId: "run-1", BuildId: "b1", Commit: "0123456789abcdef0123456789abcdef01234567",
		Repository:    &sourceeventsv1.RepositoryRef{Id: "r1", Name: "hello", Url: "/tmp/hello"},
		Status:        buildv1.BuildStatus_BUILD_STATUS_FAILED,
		FailureReason: strings.Repeat("r", 600<<10),
		LastLogLines:  lines,
	}
	ev, err := events.New(p, "b1", "run-1")
	if err != nil {
		t.Fatal(err)
	}
	if n := len(bodyOf(t, ev)); n > events.MaxBody {
		t.Errorf("the event is %d bytes; want at most %d", n, events.MaxBody)
	}
	got, ok := ev.Payload.(*buildeventsv1.BuildFinished)
	if !ok {
		t.Fatalf("payload %T", ev.Payload)
	}
	kept := got.GetLastLogLines()
	if len(kept) < 2 || !strings.HasPrefix(kept[0], "… [cut: ") || !strings.Contains(kept[0], " earlier lines, ") || kept[len(kept)-1] != lines[len(lines)-1] {
		t.Errorf("last log lines: %d kept, first %q; want the last ones after a mark", len(kept), kept[0])
	}
	if r := got.GetFailureReason(); !strings.HasPrefix(r, "rrrr") || !strings.HasSuffix(r, "more]") {
		t.Errorf("failure reason ends %q", tail(r))
	}
}

// An event within its budget is not touched.
func TestNewLeavesAnEventWithinItsBudget(t *testing.T) {
	t.Parallel()
	p := runRequested("run-1")
	p.CommitMessage = strings.Repeat("m", 100<<10)
	ev, err := events.New(p, "run-1", "run-1")
	if err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(ev.Payload, p) {
		t.Error("an event within its budget was changed")
	}
}

func mustMsg(t *testing.T, ev events.Event) *nats.Msg {
	t.Helper()
	m, err := ev.Msg()
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func tail(s string) string { return s[max(0, len(s)-80):] }

// cutLines matches the mark that ends a text cut by lines.
var cutLines = regexp.MustCompile(`\n… \[cut: (\d+) more lines, [0-9.]+ [KM]iB\]$`)

func atoi(t *testing.T, s string) int {
	t.Helper()
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatal(err)
	}
	return n
}
