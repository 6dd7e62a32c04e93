package notify_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/sluicehq/sluice/platform/auth"
	"github.com/sluicehq/sluice/platform/servicekit/servicekittest"
	buildeventsv1 "github.com/sluicehq/sluice/proto/gen/sluice/build/events/v1"
	notifyv1 "github.com/sluicehq/sluice/proto/gen/sluice/notify/v1"
	"github.com/sluicehq/sluice/proto/gen/sluice/notify/v1/notifyv1connect"
	sourceeventsv1 "github.com/sluicehq/sluice/proto/gen/sluice/source/events/v1"
)

func TestSubscriptionsAPI(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	created := h.subscribe(&notifyv1.CreateSubscriptionRequest{
		Url: "https://hooks.example.com/sluice", Secret: "api-secret-1",
		EventTypes: []string{"dev.cdevents.build.finished.0.3.0", "dev.cdevents.service.*"}, Repository: "hello",
	})
	if created.GetId() == "" || created.GetCreateTime() == nil || created.GetUrl() != "https://hooks.example.com/sluice" ||
		len(created.GetEventTypes()) != 2 || created.GetRepository() != "hello" {
		t.Errorf("created %v", created)
	}
	list, err := h.client.ListSubscriptions(ctx(t), &notifyv1.ListSubscriptionsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.GetSubscriptions()) != 1 || list.GetSubscriptions()[0].GetId() != created.GetId() {
		t.Fatalf("ListSubscriptions = %v, want the created one", list)
	}
	// The secret is stored but never shown, not even in the JSON form.
	raw := postJSON(t, h.url+"/sluice.notify.v1.NotifyService/ListSubscriptions", h.proc.AdminToken, `{}`)
	if strings.Contains(raw.body, "api-secret-1") {
		t.Errorf("ListSubscriptions shows the secret: %s", raw.body)
	}

	if _, err := h.client.DeleteSubscription(ctx(t), &notifyv1.DeleteSubscriptionRequest{Id: created.GetId()}); err != nil {
		t.Fatalf("DeleteSubscription: %v", err)
	}
	list, err = h.client.ListSubscriptions(ctx(t), &notifyv1.ListSubscriptionsRequest{})
	if err != nil || len(list.GetSubscriptions()) != 0 {
		t.Errorf("ListSubscriptions after delete = %v, %v; want none", list, err)
	}
	_, err = h.client.DeleteSubscription(ctx(t), &notifyv1.DeleteSubscriptionRequest{Id: created.GetId()})
	if connect.CodeOf(err) != connect.CodeNotFound {
		t.Errorf("deleting it again: %v, want not_found", err)
	}

	// The audit log has the three calls, by the caller, without the secret.
	var got []string
	for _, e := range servicekittest.AuditEntries(t, h.js, 3) {
		if e.GetActorId() != auth.TokenID(h.proc.AdminToken) || e.GetService() != "notify" || e.GetTarget() != created.GetId() ||
			strings.Contains(e.String(), "api-secret-1") {
			t.Errorf("audit entry %v", e)
		}
		got = append(got, e.GetAction()+" "+e.GetRepository()+" "+e.GetOutcome())
	}
	if want := []string{"subscription.create hello ok", "subscription.delete hello ok", "subscription.delete  not_found"}; !slices.Equal(got, want) {
		t.Errorf("audit entries %q, want %q", got, want)
	}
}

type httpResult struct {
	status int
	body   string
}

func postJSON(t *testing.T, url, token, body string) httpResult {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx(t), http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	client := &http.Client{Transport: &http.Transport{}}
	defer client.CloseIdleConnections()
	res, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return httpResult{status: res.StatusCode, body: string(b)}
}

// Bad input is refused with invalid_argument naming what was wrong, over
// plain HTTP JSON as curl would send it.
func TestCreateSubscriptionInvalidArgument(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	// The requests run in parallel; the group ends when they all have.
	t.Run("requests", func(t *testing.T) {
		for _, tc := range []struct {
			name, body, mention string
		}{
			{"not http", `{"url": "ftp://example.com/hook", "secret": "0123456789"}`, "url"},
			{"not a url", `{"url": "hook", "secret": "0123456789"}`, "url"},
			{"unknown event type", `{"url": "http://127.0.0.1:1/", "secret": "0123456789", "event_types": ["dev.cdevents.build.exploded.0.1.0"]}`,
				"dev.cdevents.build.exploded.0.1.0"},
			{"prefix of nothing", `{"url": "http://127.0.0.1:1/", "secret": "0123456789", "event_types": ["dev.nothing.*"]}`, "dev.nothing.*"},
			{"short secret", `{"url": "http://127.0.0.1:1/", "secret": "short"}`, "secret"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				t.Parallel()
				res := postJSON(t, h.url+"/sluice.notify.v1.NotifyService/CreateSubscription", h.proc.AdminToken, tc.body)
				var answer struct {
					Code    string `json:"code"`
					Message string `json:"message"`
				}
				if err := json.Unmarshal([]byte(res.body), &answer); err != nil {
					t.Fatalf("HTTP %d, body %q: %v", res.status, res.body, err)
				}
				if res.status != http.StatusBadRequest || answer.Code != "invalid_argument" || !strings.Contains(answer.Message, tc.mention) {
					t.Errorf("HTTP %d %s %q; want 400 invalid_argument mentioning %q", res.status, answer.Code, answer.Message, tc.mention)
				}
			})
		}
	})
	list, err := h.client.ListSubscriptions(ctx(t), &notifyv1.ListSubscriptionsRequest{})
	if err != nil || len(list.GetSubscriptions()) != 0 {
		t.Errorf("ListSubscriptions = %v, %v; want none created", list, err)
	}
}

// watch is one WatchEvents call whose events arrive on a channel.
type watch struct {
	events chan *notifyv1.Event
	done   chan error
	cancel context.CancelFunc
}

func (h *harness) watch(client notifyv1connect.NotifyServiceClient, filter string) *watch {
	t := h.t
	t.Helper()
	c, cancel := context.WithCancel(t.Context())
	// The call returns once the server watches: events published from then
	// on are seen.
	stream, err := client.WatchEvents(c, &notifyv1.WatchEventsRequest{Filter: filter})
	if err != nil {
		cancel()
		t.Fatalf("WatchEvents(%q): %v", filter, err)
	}
	w := &watch{events: make(chan *notifyv1.Event, 16), done: make(chan error, 1), cancel: cancel}
	go func() {
		defer close(w.events)
		for stream.Receive() {
			w.events <- stream.Msg().GetEvent()
		}
		w.done <- stream.Err()
		_ = stream.Close()
	}()
	t.Cleanup(func() {
		cancel()
		for range w.events {
		}
	})
	return w
}

func (w *watch) next(t *testing.T) *notifyv1.Event {
	t.Helper()
	select {
	case ev, ok := <-w.events:
		if !ok {
			t.Fatalf("watch ended: %v", <-w.done)
		}
		return ev
	case <-time.After(15 * time.Second):
		t.Fatal("no event watched in 15s")
		return nil
	}
}

// consumers counts the consumers of each stream (a watch adds one ordered
// consumer per stream it reads).
func (h *harness) consumers() map[string]int {
	t := h.t
	t.Helper()
	counts := map[string]int{}
	for _, name := range []string{"SOURCE", "BUILD", "TEST", "RELEASE", "NOTIFY"} {
		s, err := h.js.Stream(ctx(t), name)
		if err != nil {
			t.Fatalf("stream %s: %v", name, err)
		}
		info, err := s.Info(ctx(t))
		if err != nil {
			t.Fatal(err)
		}
		counts[name] = info.State.Consumers
	}
	return counts
}

func (h *harness) waitConsumers(want map[string]int) {
	h.t.Helper()
	eventually(h.t, "stream consumers", func() (bool, string) {
		got := h.consumers()
		for k, v := range want {
			if got[k] != v {
				return false, "have " + toString(got)
			}
		}
		return true, ""
	})
}

func toString(m map[string]int) string {
	b, _ := json.Marshal(m)
	return string(b)
}

func plus(base map[string]int, streams ...string) map[string]int {
	out := map[string]int{}
	for k, v := range base {
		out[k] = v
	}
	for _, s := range streams {
		out[s]++
	}
	return out
}

func TestWatchEvents(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	base := h.consumers()

	builds := h.watch(h.client, "sluice.build.>")
	finishedOnly := h.watch(h.grpc, "sluice.build.build.finished")
	if got, want := h.consumers(), plus(base, "BUILD", "BUILD"); toString(got) != toString(want) {
		t.Errorf("consumers %s, want %s: one per watch on BUILD only", toString(got), toString(want))
	}
	everything := h.watch(h.client, "")
	if got, want := h.consumers(), plus(base, "BUILD", "BUILD", "SOURCE", "BUILD", "TEST", "RELEASE", "NOTIFY"); toString(got) != toString(want) {
		t.Errorf("consumers %s, want %s: one more on every stream", toString(got), toString(want))
	}

	run := h.publish(&sourceeventsv1.RunFinished{RunId: "run-1", Repository: repo("hello")}, "run-1")
	started := h.publish(&buildeventsv1.BuildStarted{RunId: "run-1", BuildId: "build-1", Repository: repo("hello")}, "build-1")
	finished := h.publish(buildFinished(), "build-1")

	// The build watch skips the source event; the narrow one skips the start.
	for _, want := range []published{started, finished} {
		got := builds.next(t)
		checkWatched(t, "sluice.build.>", got, want)
	}
	checkWatched(t, "sluice.build.build.finished", finishedOnly.next(t), finished)
	// Events of one stream come in order; across streams in any order.
	seen := map[string]*notifyv1.Event{}
	for range 3 {
		ev := everything.next(t)
		seen[ev.GetId()] = ev
	}
	for _, want := range []published{run, started, finished} {
		if got, ok := seen[want.ev.ID]; !ok {
			t.Errorf("the unfiltered watch missed %s", want.ev.Kind.Type)
		} else {
			checkWatched(t, "everything", got, want)
		}
	}

	// A client that goes away ends its watch and its consumers.
	builds.cancel()
	finishedOnly.cancel()
	everything.cancel()
	h.waitConsumers(base)
	for _, w := range []*watch{builds, finishedOnly, everything} {
		for range w.events {
		}
		if err := <-w.done; connect.CodeOf(err) != connect.CodeCanceled {
			t.Errorf("watch ended with %v, want canceled", err)
		}
	}
}

func checkWatched(t *testing.T, filter string, got *notifyv1.Event, want published) {
	t.Helper()
	if got.GetId() != want.ev.ID || got.GetType() != want.ev.Kind.Type || got.GetSource() != want.msg.Header.Get("ce-source") ||
		got.GetSubject() != want.ev.SubjectID || got.GetNatsSubject() != want.msg.Subject || got.GetData() != string(want.msg.Data) ||
		!got.GetTime().AsTime().Equal(want.ev.Time) {
		t.Errorf("watch %q: got %v\nwant %s %s on %s: %s", filter, got, want.ev.ID, want.ev.Kind.Type, want.msg.Subject, want.msg.Data)
	}
}

func TestWatchEventsInvalidFilter(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	for _, filter := range []string{"sluice.deadletter.>", "sluice.>.build", "other.>"} {
		stream, err := h.client.WatchEvents(ctx(t), &notifyv1.WatchEventsRequest{Filter: filter})
		if err == nil {
			for stream.Receive() {
				t.Errorf("watch %q streamed an event", filter)
			}
			err = stream.Err()
			_ = stream.Close()
		}
		var cerr *connect.Error
		if !errors.As(err, &cerr) || cerr.Code() != connect.CodeInvalidArgument || !strings.Contains(cerr.Message(), "filter") {
			t.Errorf("WatchEvents(%q): %v, want invalid_argument naming the filter", filter, err)
		}
	}
}
