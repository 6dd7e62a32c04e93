package notify_test

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"

	"connectrpc.com/connect"

	"github.com/sluicehq/sluice/platform/paging/pagingtest"
	buildeventsv1 "github.com/sluicehq/sluice/proto/gen/sluice/build/events/v1"
	notifyv1 "github.com/sluicehq/sluice/proto/gen/sluice/notify/v1"
)

// TestListsPage pages through the subscriptions (oldest first) and the
// deliveries (newest first, of every run or of one) with page_size and
// page_token: each comes exactly once, and the last page has no
// next_page_token. The older limit still works.
func TestListsPage(t *testing.T) {
	t.Parallel()
	hook := newSubscriber(t, always(http.StatusOK))
	h := newHarness(t)

	// One subscription gets every event; the others none of these.
	var subs []string
	for i := range 5 {
		req := &notifyv1.CreateSubscriptionRequest{Url: hook.srv.URL, Secret: fmt.Sprintf("list-secret-%d", i)}
		if i > 0 {
			req.EventTypes = []string{"dev.cdevents.service.*"}
		}
		subs = append(subs, h.subscribe(req).GetId())
	}
	got := pagingtest.All(t, 2, func(token string) ([]string, string) {
		res, err := h.client.ListSubscriptions(ctx(t), &notifyv1.ListSubscriptionsRequest{PageSize: 2, PageToken: token})
		if err != nil {
			t.Fatalf("ListSubscriptions: %v", err)
		}
		var keys []string
		for _, s := range res.GetSubscriptions() {
			keys = append(keys, s.GetId())
		}
		return keys, res.GetNextPageToken()
	})
	if !slices.Equal(got, subs) {
		t.Errorf("subscriptions %v, want %v (oldest first)", got, subs)
	}

	// Three events of run-a, two of run-b, each fanned out before the next
	// is published (the consumer handles several at once).
	events := map[string][]string{}
	for i, run := range []string{"run-a", "run-b", "run-a", "run-b", "run-a"} {
		id := fmt.Sprintf("build-%d", i)
		p := h.publishInRun(&buildeventsv1.BuildStarted{RunId: run, BuildId: id, Repository: repo("hello")}, id, run)
		h.waitHandled(p)
		events[run] = append(events[run], p.ev.ID)
	}
	// The hook counts a request before notify records its attempt: wait for
	// the records too.
	eventually(t, "every delivery succeeded", func() (bool, string) {
		if n := hook.accepted(); n != 5 {
			return false, fmt.Sprintf("%d accepted", n)
		}
		res, err := h.client.ListDeliveries(ctx(t), &notifyv1.ListDeliveriesRequest{PageSize: 10})
		if err != nil {
			return false, err.Error()
		}
		succeeded := 0
		for _, d := range res.GetDeliveries() {
			if d.GetStatus() == notifyv1.DeliveryStatus_DELIVERY_STATUS_SUCCEEDED {
				succeeded++
			}
		}
		return succeeded == 5, fmt.Sprintf("%d of %d deliveries recorded as succeeded", succeeded, len(res.GetDeliveries()))
	})
	listDeliveries := func(req *notifyv1.ListDeliveriesRequest) []string {
		t.Helper()
		return pagingtest.All(t, int(req.PageSize), func(token string) ([]string, string) {
			req.PageToken = token
			res, err := h.client.ListDeliveries(ctx(t), req)
			if err != nil {
				t.Fatalf("ListDeliveries: %v", err)
			}
			var keys []string
			for _, d := range res.GetDeliveries() {
				if d.GetSubscriptionId() != subs[0] || len(d.GetAttempts()) != 1 {
					t.Errorf("delivery %v, want one of subscription %s with its attempt", d, subs[0])
				}
				keys = append(keys, d.GetEventId())
			}
			return keys, res.GetNextPageToken()
		})
	}
	newestFirst := func(ids ...string) []string {
		out := slices.Clone(ids)
		slices.Reverse(out)
		return out
	}
	all := listDeliveries(&notifyv1.ListDeliveriesRequest{PageSize: 2})
	if len(all) != 5 {
		t.Fatalf("%d deliveries, want 5", len(all))
	}
	for _, run := range []string{"run-a", "run-b"} {
		got := listDeliveries(&notifyv1.ListDeliveriesRequest{PageSize: 2, RunId: run})
		if want := newestFirst(events[run]...); !slices.Equal(got, want) {
			t.Errorf("deliveries of %s: %v, want %v (newest first)", run, got, want)
		}
		got = listDeliveries(&notifyv1.ListDeliveriesRequest{PageSize: 1, RunId: run, SubscriptionId: subs[0]})
		if want := newestFirst(events[run]...); !slices.Equal(got, want) {
			t.Errorf("deliveries of %s to %s: %v, want %v", run, subs[0], got, want)
		}
	}
	if got := listDeliveries(&notifyv1.ListDeliveriesRequest{PageSize: 3, SubscriptionId: subs[1]}); len(got) != 0 {
		t.Errorf("deliveries of a subscription that wants none of these events: %v", got)
	}
	res, err := h.client.ListDeliveries(ctx(t), &notifyv1.ListDeliveriesRequest{Limit: 2})
	if err != nil || len(res.GetDeliveries()) != 2 || res.GetNextPageToken() == "" || res.GetDeliveries()[0].GetEventId() != all[0] {
		t.Errorf("ListDeliveries with limit 2: %v, %v; want the 2 newest and a next page", res, err)
	}

	for _, bad := range []string{"nonsense", strings.Repeat("x", 1025)} {
		_, err := h.client.ListDeliveries(ctx(t), &notifyv1.ListDeliveriesRequest{PageToken: bad})
		if connect.CodeOf(err) != connect.CodeInvalidArgument || !strings.Contains(err.Error(), "page_token") {
			t.Errorf("token %.10q: %v, want invalid_argument naming page_token", bad, err)
		}
	}
	_, err = h.client.ListSubscriptions(ctx(t), &notifyv1.ListSubscriptionsRequest{PageSize: 1001})
	if connect.CodeOf(err) != connect.CodeInvalidArgument || !strings.Contains(err.Error(), "page_size") {
		t.Errorf("page_size 1001: %v, want invalid_argument naming page_size", err)
	}
	_, err = h.client.ListDeliveries(ctx(t), &notifyv1.ListDeliveriesRequest{RunId: strings.Repeat("r", 65)})
	if connect.CodeOf(err) != connect.CodeInvalidArgument || !strings.Contains(err.Error(), "run_id") {
		t.Errorf("run_id of 65 characters: %v, want invalid_argument naming run_id", err)
	}
}
