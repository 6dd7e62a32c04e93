package notify_test

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"
	"unicode/utf8"

	"connectrpc.com/connect"
	"github.com/nats-io/nats.go"

	"github.com/sluicehq/sluice/platform/events"
	"github.com/sluicehq/sluice/platform/servicekit/servicekittest"
	authv1 "github.com/sluicehq/sluice/proto/gen/sluice/auth/v1"
	notifyv1 "github.com/sluicehq/sluice/proto/gen/sluice/notify/v1"
	"github.com/sluicehq/sluice/proto/gen/sluice/notify/v1/notifyv1connect"
	"github.com/sluicehq/sluice/services/notify"
)

// Dead letters are listed oldest first with where they came from and why,
// filtered by service and consumer, a page at a time, their bodies only
// when asked and then bounded; and only to an admin of every repository.
func TestListDeadLetters(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	// Three events notify's consumers can never handle: they do not decode.
	// The real consumers dead-letter them.
	for i, subject := range []string{"sluice.build.build.finished", "sluice.build.step.finished", "sluice.source.run.requested"} {
		msg := nats.NewMsg(subject)
		msg.Header.Set(events.HeaderID, fmt.Sprintf("bad-%d", i))
		msg.Header.Set(events.HeaderType, "dev.cdevents.build.finished.0.3.0")
		msg.Header.Set(events.HeaderChainID, fmt.Sprintf("run-%d", i))
		msg.Data = []byte("{not json")
		if _, err := h.js.PublishMsg(ctx(t), msg); err != nil {
			t.Fatal(err)
		}
	}
	// A dead letter of another service, as hostile as a header and a body
	// can be: invalid UTF-8, a terminal escape, and a body larger than a
	// list carries.
	hostile := nats.NewMsg("sluice.deadletter.build.build-runs")
	hostile.Header.Set(events.HeaderDeadLetterReason, "gave up after 5 deliveries: \x1b[2Jboom \xff")
	hostile.Header.Set(events.HeaderDeadLetterSubject, "sluice.source.run.requested")
	hostile.Header.Set(events.HeaderDeadLetterStream, "SOURCE")
	hostile.Header.Set(events.HeaderID, "hostile\xfe")
	big := append(bytes.Repeat([]byte("line of the body\n"), 6000), 0xff, 0xfe)
	hostile.Data = big
	if _, err := h.js.PublishMsg(ctx(t), hostile); err != nil {
		t.Fatal(err)
	}

	list := func(req *notifyv1.ListDeadLettersRequest) []*notifyv1.DeadLetter {
		t.Helper()
		res, err := h.client.ListDeadLetters(ctx(t), req)
		if err != nil {
			t.Fatalf("ListDeadLetters(%v): %v", req, err)
		}
		return res.GetDeadLetters()
	}
	eventually(t, "four dead letters", func() (bool, string) {
		n := len(list(&notifyv1.ListDeadLettersRequest{}))
		return n == 4, fmt.Sprintf("%d listed", n)
	})

	all := list(&notifyv1.ListDeadLettersRequest{})
	for i := 1; i < len(all); i++ {
		if all[i].GetSequence() <= all[i-1].GetSequence() {
			t.Errorf("not oldest first: %d after %d", all[i].GetSequence(), all[i-1].GetSequence())
		}
	}
	byID := map[string]*notifyv1.DeadLetter{}
	for _, d := range all {
		byID[d.GetEventId()] = d
		if d.GetBody() != "" {
			t.Errorf("dead letter %d has a body unasked", d.GetSequence())
		}
		if d.GetTime() == nil {
			t.Errorf("dead letter %d has no time", d.GetSequence())
		}
	}
	first := byID["bad-0"]
	if first.GetService() != "notify" || first.GetConsumer() != "notify-build" || first.GetSubject() != "sluice.build.build.finished" ||
		first.GetStream() != "BUILD" || first.GetRunId() != "run-0" || first.GetEventType() != "dev.cdevents.build.finished.0.3.0" ||
		first.GetBodySize() != int64(len("{not json")) || !strings.Contains(first.GetReason(), "invalid") {
		t.Errorf("the first dead letter: %v", first)
	}
	if got := byID["bad-2"]; got.GetConsumer() != "notify-source" || got.GetStream() != "SOURCE" {
		t.Errorf("the run request's dead letter: %v", got)
	}
	h2 := byID["hostile\uFFFD"]
	if h2 == nil || h2.GetService() != "build" || h2.GetConsumer() != "build-runs" || h2.GetBodySize() != int64(len(big)) || !utf8.ValidString(h2.GetReason()) {
		t.Errorf("the hostile dead letter: %v", h2)
	}

	for _, tc := range []struct {
		service, consumer string
		want              int
	}{
		{"build", "", 1},
		{"notify", "", 3},
		{"", "notify-build", 2},
		{"notify", "notify-source", 1},
		{"release", "", 0},
	} {
		if got := list(&notifyv1.ListDeadLettersRequest{Service: tc.service, Consumer: tc.consumer}); len(got) != tc.want {
			t.Errorf("service %q consumer %q: %d dead letters; want %d", tc.service, tc.consumer, len(got), tc.want)
		}
	}

	// Pages of two: every dead letter once, in order.
	var paged []uint64
	req := &notifyv1.ListDeadLettersRequest{PageSize: 2}
	for pages := 0; ; pages++ {
		if pages > 3 {
			t.Fatal("more pages than dead letters")
		}
		res, err := h.client.ListDeadLetters(ctx(t), req)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range res.GetDeadLetters() {
			paged = append(paged, d.GetSequence())
		}
		if req.PageToken = res.GetNextPageToken(); req.PageToken == "" {
			break
		}
	}
	if len(paged) != 4 {
		t.Fatalf("paged %v; want the four", paged)
	}
	for i, d := range all {
		if paged[i] != d.GetSequence() {
			t.Errorf("page order %v; want %v's", paged, all)
		}
	}

	// Bodies when asked: whole when small, cut with a mark when large,
	// always valid UTF-8.
	for _, d := range list(&notifyv1.ListDeadLettersRequest{IncludeBody: true}) {
		switch d.GetEventId() {
		case "bad-0":
			if d.GetBody() != "{not json" {
				t.Errorf("body %q", d.GetBody())
			}
		case "hostile\uFFFD":
			if b := d.GetBody(); len(b) > notify.MaxDeadLetterBody || !strings.Contains(b, "[cut: ") || !strings.HasPrefix(b, "line of the body\n") || !utf8.ValidString(b) {
				t.Errorf("a large body: %d bytes, ends %q; want at most %d, cut with a mark", len(b), b[max(0, len(b)-60):], notify.MaxDeadLetterBody)
			}
		}
	}

	for _, bad := range []*notifyv1.ListDeadLettersRequest{
		{PageToken: "not-a-token"},
		{Service: "build.>"},
		{Consumer: "*"},
		{PageSize: 1001},
	} {
		if _, err := h.client.ListDeadLetters(ctx(t), bad); connect.CodeOf(err) != connect.CodeInvalidArgument {
			t.Errorf("ListDeadLetters(%v) = %v; want invalid_argument", bad, err)
		}
	}

	// Dead letters hold every repository's events: admins of every
	// repository only.
	for name, role := range map[string]authv1.Role{"operator": authv1.Role_ROLE_OPERATOR, "limited admin": authv1.Role_ROLE_ADMIN} {
		var repos []string
		if name == "limited admin" {
			repos = []string{"hello"}
		}
		c := notifyv1connect.NewNotifyServiceClient(h.proc.ClientWith(servicekittest.IssueToken(t, h.nats.URL, role, repos...)), h.url)
		eventually(t, name+"'s token to be known", func() (bool, string) {
			_, err := c.ListDeliveries(context.Background(), &notifyv1.ListDeliveriesRequest{RunId: "x"})
			return connect.CodeOf(err) != connect.CodeUnauthenticated, fmt.Sprint(err)
		})
		if _, err := c.ListDeadLetters(context.Background(), &notifyv1.ListDeadLettersRequest{}); connect.CodeOf(err) != connect.CodePermissionDenied {
			t.Errorf("ListDeadLetters as %s = %v; want permission_denied", name, err)
		}
	}
}

// A list without bodies reads the dead letters' headers alone: however
// large their bodies, notify receives a fraction of them, and still tells
// each body's size.
func TestListDeadLettersWithoutBodiesReadsNoBody(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	body := bytes.Repeat([]byte("a large event\n"), 40<<10) // 560 KiB
	for i := range 4 {
		msg := nats.NewMsg("sluice.deadletter.build.build-runs")
		msg.Header.Set(events.HeaderDeadLetterReason, fmt.Sprintf("reason %d", i))
		msg.Data = body
		if _, err := h.js.PublishMsg(ctx(t), msg); err != nil {
			t.Fatal(err)
		}
	}
	read := func(withBody bool) (uint64, []*notifyv1.DeadLetter) {
		t.Helper()
		before := h.proc.NATS.Stats().InBytes
		res, err := h.client.ListDeadLetters(ctx(t), &notifyv1.ListDeadLettersRequest{IncludeBody: withBody})
		if err != nil {
			t.Fatal(err)
		}
		return h.proc.NATS.Stats().InBytes - before, res.GetDeadLetters()
	}
	n, list := read(false)
	if len(list) != 4 {
		t.Fatalf("%d dead letters; want 4", len(list))
	}
	for i, d := range list {
		if d.GetBodySize() != int64(len(body)) || d.GetBody() != "" || d.GetReason() != fmt.Sprintf("reason %d", i) {
			t.Errorf("dead letter %d: size %d, reason %q, body of %d bytes; want size %d, its reason, no body", i, d.GetBodySize(), d.GetReason(), len(d.GetBody()), len(body))
		}
	}
	if n > 64<<10 {
		t.Errorf("listing without bodies read %d bytes from NATS; the bodies are %d", n, 4*len(body))
	}
	// With them, the bodies are read (and each cut to what a list carries).
	if n, list := read(true); n < uint64(4*len(body)) || len(list) != 4 || len(list[0].GetBody()) == 0 {
		t.Errorf("listing with bodies read %d bytes, %d dead letters; want the bodies read", n, len(list))
	}
}
