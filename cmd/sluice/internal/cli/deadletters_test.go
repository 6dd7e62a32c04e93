package cli

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	notifyv1 "github.com/sluicehq/sluice/proto/gen/sluice/notify/v1"
)

func TestDeadLettersPageByPageWithTheirBodies(t *testing.T) {
	t.Parallel()
	f := startFake(t, true)
	at := timestamppb.New(time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC))
	for i := range 3 {
		f.notify.deadLetters = append(f.notify.deadLetters, &notifyv1.DeadLetter{
			Sequence: uint64(i + 1), Time: at, Service: "build", Consumer: "build-runs",
			Reason: "gave up after 5 deliveries: checkout failed", Subject: "sluice.source.run.requested", Stream: "SOURCE",
			EventId: "ev-" + string(rune('a'+i)), EventType: "dev.cdevents.pipelinerun.queued.0.3.0", RunId: "run-1",
			BodySize: 17, Body: `{"context":{}}`,
		})
	}
	// A hostile one: its reason and body came from whoever published the
	// event, and must not reach the terminal as escapes.
	f.notify.deadLetters = append(f.notify.deadLetters, &notifyv1.DeadLetter{
		Sequence: 4, Time: at, Service: "notify", Consumer: "notify-build",
		Reason: "panic: \x1b]0;owned\x07boom", Subject: "sluice.build.build.finished", Stream: "BUILD",
		EventId: "ev-d", BodySize: 40, Body: "line one\n\x1b[2Jline two\u202e",
	})

	r := run(t, f.env(), "deadletters", "--service", "build", "--consumer", "build-runs", "--limit", "2")
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if len(lines) != 3 || !strings.Contains(lines[0], "REASON") || !strings.Contains(lines[1], "build-runs") ||
		!strings.Contains(lines[1], "gave up after 5 deliveries") || !strings.Contains(lines[1], "run-1") || strings.Contains(r.stdout, "context") {
		t.Fatalf("--limit 2 printed:\n%s", r.stdout)
	}
	req := f.notify.asked()[0]
	if req.GetService() != "build" || req.GetConsumer() != "build-runs" || req.GetPageSize() != 2 || req.GetIncludeBody() {
		t.Errorf("request %v", req)
	}

	// Without --limit it reads on to the end.
	r = run(t, f.env(), "deadletters", "-o", "json")
	var out struct {
		DeadLetters []struct {
			Sequence string `json:"sequence"`
			Reason   string `json:"reason"`
		} `json:"deadLetters"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &out); err != nil || len(out.DeadLetters) != 4 || out.DeadLetters[3].Sequence != "4" {
		t.Fatalf("-o json: %v\n%s", err, r.stdout)
	}

	r = run(t, f.env(), "deadletters", "--body")
	if r.code != 0 {
		t.Fatalf("--body: exit %d: %s", r.code, r.stderr)
	}
	if asked := f.notify.asked(); !asked[len(asked)-1].GetIncludeBody() {
		t.Error("--body did not ask for the bodies")
	}
	for _, want := range []string{"dead letter 1", "build/build-runs", "from:   sluice.source.run.requested (SOURCE)", `    {"context":{}}`,
		"dead letter 4", "reason: panic: boom", "    line one\n    line two"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("--body printed no %q:\n%s", want, r.stdout)
		}
	}
	if strings.ContainsAny(r.stdout, "\x1b\x07\u202e") {
		t.Errorf("a hostile reason or body reached the terminal:\n%q", r.stdout)
	}

	for _, bad := range [][]string{{"--limit", "0"}, {"--limit", "10001"}, {"extra"}} {
		if r := run(t, f.env(), append([]string{"deadletters"}, bad...)...); r.code != 2 {
			t.Errorf("sluice deadletters %v: exit %d, want 2 (usage)", bad, r.code)
		}
	}
}
