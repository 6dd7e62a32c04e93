package notify_test

import (
	"context"
	"fmt"
	"net/http"
	"testing"

	"connectrpc.com/connect"

	"github.com/sluicehq/sluice/platform/servicekit/servicekittest"
	authv1 "github.com/sluicehq/sluice/proto/gen/sluice/auth/v1"
	buildeventsv1 "github.com/sluicehq/sluice/proto/gen/sluice/build/events/v1"
	notifyv1 "github.com/sluicehq/sluice/proto/gen/sluice/notify/v1"
	"github.com/sluicehq/sluice/proto/gen/sluice/notify/v1/notifyv1connect"
)

// A token limited to a repository sees and acts on that repository's
// subscriptions, deliveries and events only.
func TestLimitedTokenSeesItsRepositoryOnly(t *testing.T) {
	t.Parallel()
	hook := newSubscriber(t, always(http.StatusNoContent))
	h := newHarness(t)
	limited := notifyv1connect.NewNotifyServiceClient(h.proc.ClientWith(servicekittest.IssueToken(t, h.nats.URL, authv1.Role_ROLE_OPERATOR, "mine")), h.url)
	// The service accepts the token once it has seen it.
	eventually(t, "the limited token is accepted", func() (bool, string) {
		_, err := limited.ListSubscriptions(context.Background(), &notifyv1.ListSubscriptionsRequest{})
		return err == nil, "not yet"
	})

	mine := h.subscribe(&notifyv1.CreateSubscriptionRequest{Url: hook.srv.URL, Secret: "secret-of-mine", Repository: "mine"})
	other := h.subscribe(&notifyv1.CreateSubscriptionRequest{Url: hook.srv.URL, Secret: "secret-of-other", Repository: "other"})
	all := h.subscribe(&notifyv1.CreateSubscriptionRequest{Url: hook.srv.URL, Secret: "secret-of-all"})

	list, err := limited.ListSubscriptions(context.Background(), &notifyv1.ListSubscriptionsRequest{})
	if err != nil || len(list.GetSubscriptions()) != 1 || list.GetSubscriptions()[0].GetId() != mine.GetId() {
		t.Fatalf("ListSubscriptions as a token of mine = %v, %v; want mine's only", list.GetSubscriptions(), err)
	}
	for _, repo := range []string{"other", ""} {
		_, err := limited.CreateSubscription(context.Background(), &notifyv1.CreateSubscriptionRequest{Url: hook.srv.URL, Secret: "12345678", Repository: repo})
		if connect.CodeOf(err) != connect.CodePermissionDenied {
			t.Errorf("CreateSubscription(%q) as a token of mine = %v, want permission_denied", repo, err)
		}
	}
	own, err := limited.CreateSubscription(context.Background(), &notifyv1.CreateSubscriptionRequest{Url: hook.srv.URL, Secret: "12345678", Repository: "mine"})
	if err != nil {
		t.Fatalf("CreateSubscription(mine) as a token of mine: %v", err)
	}
	for _, id := range []string{other.GetId(), all.GetId()} {
		if _, err := limited.DeleteSubscription(context.Background(), &notifyv1.DeleteSubscriptionRequest{Id: id}); connect.CodeOf(err) != connect.CodeNotFound {
			t.Errorf("DeleteSubscription(%s) as a token of mine = %v, want not_found (it does not see it)", id, err)
		}
	}

	watch := h.watch(limited, "")
	h.publish(&buildeventsv1.BuildFinished{RunId: "run-o", BuildId: "build-o", Repository: repo("other"), Commit: "0123456789abcdef0123456789abcdef01234567"}, "build-o")
	ofMine := h.publish(&buildeventsv1.BuildFinished{RunId: "run-m", BuildId: "build-m", Repository: repo("mine"), Commit: "0123456789abcdef0123456789abcdef01234567"}, "build-m")
	// Events of one stream come in order: the other's came first and was
	// skipped.
	if got := watch.next(t); got.GetId() != ofMine.ev.ID {
		t.Fatalf("the limited watch got %s (%s), want mine's event", got.GetId(), got.GetSubject())
	}

	h.waitDelivery(other.GetId(), notifyv1.DeliveryStatus_DELIVERY_STATUS_SUCCEEDED)
	h.waitDelivery(mine.GetId(), notifyv1.DeliveryStatus_DELIVERY_STATUS_SUCCEEDED)
	// The every-repository subscription got mine's event too; a token of
	// mine does not see that subscription, nor its deliveries.
	eventually(t, "the every-repository subscription's two deliveries", func() (bool, string) {
		n := 0
		for _, d := range h.deliveries(all.GetId()) {
			if d.GetStatus() == notifyv1.DeliveryStatus_DELIVERY_STATUS_SUCCEEDED {
				n++
			}
		}
		return n == 2, fmt.Sprintf("%d delivered", n)
	})
	deliveries, err := limited.ListDeliveries(context.Background(), &notifyv1.ListDeliveriesRequest{})
	if err != nil || len(deliveries.GetDeliveries()) == 0 {
		t.Fatalf("ListDeliveries as a token of mine = %v, %v", deliveries.GetDeliveries(), err)
	}
	for _, d := range deliveries.GetDeliveries() {
		if d.GetRepository() != "mine" || (d.GetSubscriptionId() != mine.GetId() && d.GetSubscriptionId() != own.GetSubscription().GetId()) {
			t.Errorf("a token of mine lists a delivery of %q to subscription %s", d.GetRepository(), d.GetSubscriptionId())
		}
	}
	if _, err := limited.DeleteSubscription(context.Background(), &notifyv1.DeleteSubscriptionRequest{Id: mine.GetId()}); err != nil {
		t.Errorf("DeleteSubscription(mine's) as a token of mine: %v", err)
	}
}
