package notify_test

import (
	"bytes"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/sluicehq/sluice/platform/keyring"
	"github.com/sluicehq/sluice/platform/servicekit/servicekittest"
	buildeventsv1 "github.com/sluicehq/sluice/proto/gen/sluice/build/events/v1"
	notifyeventsv1 "github.com/sluicehq/sluice/proto/gen/sluice/notify/events/v1"
	notifyv1 "github.com/sluicehq/sluice/proto/gen/sluice/notify/v1"
	sourceeventsv1 "github.com/sluicehq/sluice/proto/gen/sluice/source/events/v1"
	"github.com/sluicehq/sluice/services/notify"
	"github.com/sluicehq/sluice/services/notify/domain"
)

// A subscriber that fails three times gets the event on the fourth attempt,
// once; every attempt is listed (with the status, not the body, of each
// failed answer), and DeliverySucceeded is published.
func TestDeliveryRetriedUntilAccepted(t *testing.T) {
	t.Parallel()
	hook := newSubscriber(t, func(n int) int {
		if n <= 3 {
			return http.StatusInternalServerError
		}
		return http.StatusOK
	})
	h := newHarness(t, func(cfg *notify.Config) { cfg.MaxAttempts = 6 })
	sub := h.subscribe(&notifyv1.CreateSubscriptionRequest{Url: hook.srv.URL + "/hook", Secret: "retry-secret"})

	p := h.publish(buildFinished(), "build-1")
	d := h.waitDelivery(sub.GetId(), notifyv1.DeliveryStatus_DELIVERY_STATUS_SUCCEEDED)

	if got := hook.accepted(); got != 1 {
		t.Errorf("subscriber accepted %d requests, want exactly 1", got)
	}
	if got := len(hook.requests()); got != 4 {
		t.Errorf("subscriber got %d requests, want 4", got)
	}
	if d.GetEventId() != p.ev.ID || d.GetEventType() != "dev.cdevents.build.finished.0.3.0" ||
		d.GetSubject() != "build-1" || d.GetRepository() != "hello" || d.GetSubscriptionId() != sub.GetId() {
		t.Errorf("delivery = %v; want event %s (build finished, subject build-1, repository hello)", d, p.ev.ID)
	}
	attempts := d.GetAttempts()
	if len(attempts) != 4 {
		t.Fatalf("delivery lists %d attempts, want 4: %v", len(attempts), attempts)
	}
	for i, a := range attempts {
		wantStatus := int32(http.StatusInternalServerError)
		if i == 3 {
			wantStatus = http.StatusOK
		}
		if a.GetNumber() != int32(i+1) || a.GetHttpStatus() != wantStatus || a.GetTime() == nil {
			t.Errorf("attempt %d = %v, want number %d, status %d, a time", i, a, i+1, wantStatus)
		}
		if failed := wantStatus != http.StatusOK; failed != strings.Contains(a.GetError(), "500 Internal Server Error") {
			t.Errorf("attempt %d error = %q", i+1, a.GetError())
		}
		if strings.Contains(a.GetError(), "answer 500") {
			t.Errorf("attempt %d error %q holds the response's body", i+1, a.GetError())
		}
		if i > 0 && !a.GetTime().AsTime().After(attempts[i-1].GetTime().AsTime()) {
			t.Errorf("attempt %d is not after attempt %d", i+1, i)
		}
	}
	if d.GetNextAttemptTime() != nil {
		t.Errorf("a succeeded delivery has a next attempt time %v", d.GetNextAttemptTime().AsTime())
	}
	// Every attempt is the same delivery.
	for i, r := range hook.requests() {
		if got := r.header.Get(notify.HeaderDelivery); got != d.GetId() {
			t.Errorf("request %d: %s = %q, want %q", i+1, notify.HeaderDelivery, got, d.GetId())
		}
	}

	ev := h.notifyEvent("sluice.notify.delivery.succeeded")
	got, ok := ev.Payload.(*notifyeventsv1.DeliverySucceeded)
	if !ok || got.GetDeliveryId() != d.GetId() || got.GetEventId() != p.ev.ID || got.GetAttempts() != 4 ||
		got.GetSubscriptionId() != sub.GetId() || ev.ChainID != "run-1" {
		t.Errorf("DeliverySucceeded = %v (chain %q); want delivery %s of event %s after 4 attempts in chain run-1", got, ev.ChainID, d.GetId(), p.ev.ID)
	}
}

// The POST is the event as a CloudEvent in binary mode, with the exact body
// that was on NATS, signed with the subscription's secret.
func TestDeliveryIsSignedCloudEvent(t *testing.T) {
	t.Parallel()
	hook := newSubscriber(t, always(http.StatusNoContent))
	h := newHarness(t)
	const secret = "correct horse battery staple"
	sub := h.subscribe(&notifyv1.CreateSubscriptionRequest{Url: hook.srv.URL, Secret: secret})

	p := h.publish(buildFinished(), "build-1")
	d := h.waitDelivery(sub.GetId(), notifyv1.DeliveryStatus_DELIVERY_STATUS_SUCCEEDED)
	reqs := hook.requests()
	if len(reqs) != 1 {
		t.Fatalf("subscriber got %d requests, want 1", len(reqs))
	}
	r := reqs[0]
	if !bytes.Equal(r.body, p.msg.Data) {
		t.Errorf("body differs from the event on NATS:\n got %s\nwant %s", r.body, p.msg.Data)
	}
	if got, want := r.header.Get(notify.HeaderSignature), hmacHex(secret, p.msg.Data); got != want {
		t.Errorf("%s = %q, want %q", notify.HeaderSignature, got, want)
	}
	if r.header.Get(notify.HeaderSignature) == hmacHex("another secret", r.body) {
		t.Error("the signature verifies with another secret")
	}
	for _, h := range []string{"ce-id", "ce-type", "ce-source", "ce-subject", "ce-time", "ce-specversion"} {
		if got, want := r.header.Get(h), p.msg.Header.Get(h); got == "" || got != want {
			t.Errorf("%s = %q, want %q as on NATS", h, got, want)
		}
	}
	if got := r.header.Get("ce-id"); got != p.ev.ID {
		t.Errorf("ce-id = %q, want the event id %q", got, p.ev.ID)
	}
	if got := r.header.Get("ce-type"); got != "dev.cdevents.build.finished.0.3.0" {
		t.Errorf("ce-type = %q", got)
	}
	if got := r.header.Get("ce-specversion"); got != "1.0" {
		t.Errorf("ce-specversion = %q, want 1.0", got)
	}
	if got, err := time.Parse(time.RFC3339Nano, r.header.Get("ce-time")); err != nil || !got.Equal(p.ev.Time) {
		t.Errorf("ce-time = %q, want %v", r.header.Get("ce-time"), p.ev.Time)
	}
	if got := r.header.Get("Content-Type"); got != "application/json" {
		t.Errorf("Content-Type = %q, want application/json", got)
	}
	if got := r.header.Get(notify.HeaderDelivery); got != d.GetId() {
		t.Errorf("%s = %q, want %q", notify.HeaderDelivery, got, d.GetId())
	}
	if got := r.header.Get("User-Agent"); got != "Sluice-Notify/"+testVersion {
		t.Errorf("User-Agent = %q, want Sluice-Notify/%s", got, testVersion)
	}
}

// Subscriptions get the events whose type (exact or prefix) and repository
// they ask for; an event without a repository only reaches subscriptions
// without a repository filter.
func TestSubscriptionFilters(t *testing.T) {
	t.Parallel()
	hook := newSubscriber(t, always(http.StatusOK))
	h := newHarness(t)
	url := hook.srv.URL
	exact := h.subscribe(&notifyv1.CreateSubscriptionRequest{Url: url, Secret: "secret-exact", EventTypes: []string{"dev.cdevents.build.finished.0.3.0"}})
	prefix := h.subscribe(&notifyv1.CreateSubscriptionRequest{Url: url, Secret: "secret-prefix", EventTypes: []string{"dev.cdevents.build.*"}})
	other := h.subscribe(&notifyv1.CreateSubscriptionRequest{Url: url, Secret: "secret-other", Repository: "other"})
	hello := h.subscribe(&notifyv1.CreateSubscriptionRequest{Url: url, Secret: "secret-hello", Repository: "hello"})
	all := h.subscribe(&notifyv1.CreateSubscriptionRequest{Url: url, Secret: "secret-all"})
	both := h.subscribe(&notifyv1.CreateSubscriptionRequest{Url: url, Secret: "secret-both", Repository: "hello",
		EventTypes: []string{"dev.cdevents.build.started.0.3.0", "dev.cdevents.pipelinerun.*"}})

	finished := h.publish(buildFinished(), "build-1")
	started := h.publish(&buildeventsv1.BuildStarted{RunId: "run-1", BuildId: "build-1", Repository: repo("hello")}, "build-1")
	step := h.publish(&buildeventsv1.StepFinished{RunId: "run-1", BuildId: "build-1", Step: "compile"}, "build-1/compile")
	runOther := h.publish(&sourceeventsv1.RunFinished{RunId: "run-1", Repository: repo("other")}, "run-1")
	h.waitHandled(step)
	h.waitHandled(runOther)

	for _, tc := range []struct {
		name string
		sub  *notifyv1.Subscription
		want []published
	}{
		{"exact type", exact, []published{finished}},
		{"type prefix", prefix, []published{finished, started}},
		{"repository other", other, []published{runOther}},
		{"repository hello", hello, []published{finished, started}},
		{"no filter", all, []published{finished, started, step, runOther}},
		{"types and repository", both, []published{started}},
	} {
		var got, want []string
		for _, d := range h.deliveries(tc.sub.GetId()) {
			got = append(got, d.GetEventType()+" "+d.GetEventId())
		}
		for _, p := range tc.want {
			want = append(want, p.ev.Kind.Type+" "+p.ev.ID)
		}
		slices.Sort(got)
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Errorf("%s: deliveries\n%s\nwant\n%s", tc.name, strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
	}
	// Newest first, all of them without a subscription filter.
	res, err := h.client.ListDeliveries(ctx(t), &notifyv1.ListDeliveriesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	list := res.GetDeliveries()
	if len(list) != 11 {
		t.Fatalf("ListDeliveries() lists %d deliveries, want 11", len(list))
	}
	for i := 1; i < len(list); i++ {
		if list[i].GetCreateTime().AsTime().After(list[i-1].GetCreateTime().AsTime()) {
			t.Errorf("delivery %d is newer than delivery %d: not newest first", i, i-1)
		}
	}
	res, err = h.client.ListDeliveries(ctx(t), &notifyv1.ListDeliveriesRequest{Limit: 2})
	if err != nil || len(res.GetDeliveries()) != 2 {
		t.Errorf("ListDeliveries(limit 2) = %d deliveries, %v; want 2", len(res.GetDeliveries()), err)
	}
}

// A subscriber that always fails: the delivery is dead after MaxAttempts
// and DeliveryFailed is published on NOTIFY.
func TestDeliveryDeadLettered(t *testing.T) {
	t.Parallel()
	hook := newSubscriber(t, always(http.StatusServiceUnavailable))
	h := newHarness(t, func(cfg *notify.Config) {
		cfg.MaxAttempts = 3
		cfg.RetryBase = 20 * time.Millisecond
	})
	sub := h.subscribe(&notifyv1.CreateSubscriptionRequest{Url: hook.srv.URL, Secret: "dead-secret"})

	p := h.publish(buildFinished(), "build-1")
	d := h.waitDelivery(sub.GetId(), notifyv1.DeliveryStatus_DELIVERY_STATUS_DEAD)
	if got := len(d.GetAttempts()); got != 3 {
		t.Errorf("dead delivery lists %d attempts, want 3", got)
	}
	if got := len(hook.requests()); got != 3 {
		t.Errorf("subscriber got %d requests, want 3", got)
	}
	ev := h.notifyEvent("sluice.notify.delivery.failed")
	failed, ok := ev.Payload.(*notifyeventsv1.DeliveryFailed)
	if !ok || failed.GetDeliveryId() != d.GetId() || failed.GetEventId() != p.ev.ID || failed.GetAttempts() != 3 ||
		failed.GetEventType() != p.ev.Kind.Type || !strings.Contains(failed.GetLastError(), "503") {
		t.Errorf("DeliveryFailed = %v; want delivery %s of event %s, 3 attempts, last error with 503", failed, d.GetId(), p.ev.ID)
	}
	if ev.Kind.Type != "dev.cdeventsx.sluice-delivery.failed.0.1.0" || ev.SubjectID != d.GetId() {
		t.Errorf("DeliveryFailed event = %s about %q", ev.Kind.Type, ev.SubjectID)
	}
}

// The same event published twice (another Nats-Msg-Id gets it past
// JetStream's de-duplication) is delivered once.
func TestDuplicateEventDeliveredOnce(t *testing.T) {
	t.Parallel()
	hook := newSubscriber(t, always(http.StatusOK))
	h := newHarness(t)
	sub := h.subscribe(&notifyv1.CreateSubscriptionRequest{Url: hook.srv.URL, Secret: "dup-secret"})

	first := h.publish(buildFinished(), "build-1")
	again := *first.msg
	again.Header = nats.Header(http.Header(first.msg.Header).Clone())
	again.Header.Set("Nats-Msg-Id", first.ev.ID+"-again")
	second := h.publishMsg(first.ev, &again)
	h.waitHandled(second)

	d := h.waitDelivery(sub.GetId(), notifyv1.DeliveryStatus_DELIVERY_STATUS_SUCCEEDED)
	if d.GetEventId() != first.ev.ID {
		t.Errorf("delivery of event %s, want %s", d.GetEventId(), first.ev.ID)
	}
	if got := len(hook.requests()); got != 1 {
		t.Errorf("subscriber got %d requests, want 1", got)
	}
}

// A delivery waiting for its retry survives a restart of the service: the
// next process, on the same database, finishes it.
func TestDeliverySurvivesRestart(t *testing.T) {
	t.Parallel()
	var restarted atomic.Bool
	hook := newSubscriber(t, func(int) int {
		if restarted.Load() {
			return http.StatusOK
		}
		return http.StatusBadGateway
	})
	// Attempts enough that the first process cannot use them all up however
	// long the stop takes on a loaded machine.
	h := newHarness(t, func(cfg *notify.Config) {
		cfg.RetryBase, cfg.RetryMax, cfg.MaxAttempts = 300*time.Millisecond, time.Second, 100
	})
	sub := h.subscribe(&notifyv1.CreateSubscriptionRequest{Url: hook.srv.URL, Secret: "restart-secret"})
	h.publish(buildFinished(), "build-1")
	eventually(t, "a failed first attempt", func() (bool, string) {
		list := h.deliveries(sub.GetId())
		return len(list) == 1 && len(list[0].GetAttempts()) >= 1, fmt.Sprint(list)
	})
	h.stop()
	before := len(hook.requests())
	restarted.Store(true)

	h.start()
	d := h.waitDelivery(sub.GetId(), notifyv1.DeliveryStatus_DELIVERY_STATUS_SUCCEEDED)
	attempts := d.GetAttempts()
	if len(attempts) != before+1 {
		t.Fatalf("%d attempts listed, want the %d of the first process and 1 more", len(attempts), before)
	}
	for i, a := range attempts {
		if a.GetNumber() != int32(i+1) {
			t.Errorf("attempt %d is numbered %d", i+1, a.GetNumber())
		}
		if ok := a.GetHttpStatus() == http.StatusOK; ok != (i == len(attempts)-1) {
			t.Errorf("attempt %d: status %d", i+1, a.GetHttpStatus())
		}
	}
	if got := hook.accepted(); got != 1 {
		t.Errorf("subscriber accepted %d requests, want 1", got)
	}
}

// Deleting a subscription drops its pending deliveries.
func TestDeleteSubscriptionDropsPendingDeliveries(t *testing.T) {
	t.Parallel()
	hook := newSubscriber(t, always(http.StatusInternalServerError))
	h := newHarness(t, func(cfg *notify.Config) {
		cfg.RetryBase = time.Minute
		cfg.RetryMax = time.Hour
	})
	sub := h.subscribe(&notifyv1.CreateSubscriptionRequest{Url: hook.srv.URL, Secret: "delete-secret"})
	h.publish(buildFinished(), "build-1")
	eventually(t, "a failed first attempt", func() (bool, string) {
		list := h.deliveries(sub.GetId())
		return len(list) == 1 && len(list[0].GetAttempts()) == 1, fmt.Sprint(list)
	})
	if _, err := h.client.DeleteSubscription(ctx(t), &notifyv1.DeleteSubscriptionRequest{Id: sub.GetId()}); err != nil {
		t.Fatalf("DeleteSubscription: %v", err)
	}
	d := h.waitDelivery(sub.GetId(), notifyv1.DeliveryStatus_DELIVERY_STATUS_DEAD)
	if len(d.GetAttempts()) != 1 || d.GetNextAttemptTime() != nil || d.GetLastError() != domain.ReasonSubscriptionDeleted {
		t.Errorf("dropped delivery = %v, want its one attempt, no next attempt and the reason", d)
	}
	// A dropped delivery is not a failed one: no DeliveryFailed.
	stream, err := h.js.Stream(ctx(t), "NOTIFY")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stream.GetLastMsgForSubject(ctx(t), "sluice.notify.delivery.failed"); err == nil {
		t.Error("DeliveryFailed published for a delivery dropped with its subscription")
	}
}

// Without allow-egress, a subscriber on loopback is never connected to:
// every attempt fails with the refusal, which names the address and the
// setting, and the delivery dies.
func TestDeliveryRefusedByEgress(t *testing.T) {
	t.Parallel()
	hook := newSubscriber(t, always(http.StatusOK))
	h := newHarness(t, func(cfg *notify.Config) {
		cfg.AllowEgress = nil
		cfg.MaxAttempts = 2
	})
	sub := h.subscribe(&notifyv1.CreateSubscriptionRequest{Url: hook.srv.URL + "/hook", Secret: "egress-secret"})
	h.publish(buildFinished(), "build-1")
	d := h.waitDelivery(sub.GetId(), notifyv1.DeliveryStatus_DELIVERY_STATUS_DEAD)

	if got := len(hook.requests()); got != 0 {
		t.Errorf("subscriber got %d requests, want none", got)
	}
	if len(d.GetAttempts()) != 2 {
		t.Fatalf("delivery lists %d attempts, want 2: %v", len(d.GetAttempts()), d.GetAttempts())
	}
	for _, a := range d.GetAttempts() {
		if a.GetHttpStatus() != 0 || !strings.Contains(a.GetError(), "egress refused: 127.0.0.1 is a loopback address") ||
			!strings.Contains(a.GetError(), "$SLUICE_NOTIFY_ALLOW_EGRESS") {
			t.Errorf("attempt %d = %v; want the refusal of 127.0.0.1 naming $SLUICE_NOTIFY_ALLOW_EGRESS", a.GetNumber(), a)
		}
	}
	if !strings.Contains(d.GetLastError(), "egress refused") {
		t.Errorf("last error = %q, want the refusal", d.GetLastError())
	}
}

// Subscription secrets are HMAC keys notify must read back: without a key
// they are kept as given; once notify has a key they are stored encrypted
// (what was kept plainly is encrypted at start) and deliveries are still
// signed with them.
func TestSubscriptionSecretsAreEncryptedAtRest(t *testing.T) {
	t.Parallel()
	oldHook := newSubscriber(t, always(http.StatusNoContent))
	newHook := newSubscriber(t, always(http.StatusNoContent))
	h := newHarness(t)
	const oldSecret, newSecret = "kept-before-there-was-a-key", "set-once-there-is-a-key"
	oldSub := h.subscribe(&notifyv1.CreateSubscriptionRequest{Url: oldHook.srv.URL, Secret: oldSecret})
	stored := func(id string) string {
		var v string
		if err := servicekittest.OpenDBAt(t, h.cfg.DatabaseURL).QueryRowContext(t.Context(), `SELECT secret FROM subscriptions WHERE id = $1`, id).Scan(&v); err != nil {
			t.Fatal(err)
		}
		return v
	}
	if stored(oldSub.GetId()) != oldSecret {
		t.Fatal("without a key the secret is not kept as given")
	}
	h.stop()

	key, err := keyring.Generate()
	if err != nil {
		t.Fatal(err)
	}
	h.cfg.Keys.Text = key
	h.start()
	servicekittest.Eventually(t, "notify encrypts the secret kept plainly", func() bool {
		return strings.HasPrefix(stored(oldSub.GetId()), "age:")
	})
	newSub := h.subscribe(&notifyv1.CreateSubscriptionRequest{Url: newHook.srv.URL, Secret: newSecret})
	for id, secret := range map[string]string{oldSub.GetId(): oldSecret, newSub.GetId(): newSecret} {
		if v := stored(id); !strings.HasPrefix(v, "age:") || strings.Contains(v, secret) {
			t.Errorf("subscription %s's secret is stored as %q", id, v)
		}
	}

	p := h.publish(buildFinished(), "build-1")
	h.waitDelivery(oldSub.GetId(), notifyv1.DeliveryStatus_DELIVERY_STATUS_SUCCEEDED)
	h.waitDelivery(newSub.GetId(), notifyv1.DeliveryStatus_DELIVERY_STATUS_SUCCEEDED)
	for hook, secret := range map[*subscriber]string{oldHook: oldSecret, newHook: newSecret} {
		reqs := hook.requests()
		if len(reqs) != 1 || reqs[0].header.Get(notify.HeaderSignature) != hmacHex(secret, p.msg.Data) {
			t.Errorf("the delivery is not signed with the subscription's secret: %d requests", len(reqs))
		}
	}
}
