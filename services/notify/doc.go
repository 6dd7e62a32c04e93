// Package notify is Sluice's notify service: webhook subscriptions to
// Sluice's events, their fan-out into durable deliveries, a delivery loop
// that POSTs each event as a signed CloudEvent with retries and
// dead-lettering, a live stream of every event, and the list of every
// service's dead letters. It serves sluice.notify.v1.NotifyService over
// Connect: CreateSubscription, ListSubscriptions, DeleteSubscription,
// ListDeliveries, WatchEvents and ListDeadLetters.
//
// # What it owns, consumes and publishes
//
// Its database holds the subscriptions, the deliveries (one per
// subscription and event) and every attempt of each.
//
// It consumes every event of the SOURCE, BUILD, TEST and RELEASE streams
// through the durable consumers declared in deploy/nats/consumers/notify;
// never its own NOTIFY stream, so its own events cannot loop.
//
// It publishes, through the transactional outbox,
// sluice.notify.delivery.succeeded (DeliverySucceeded) and
// sluice.notify.delivery.failed (DeliveryFailed: a dead-lettered delivery).
//
// # Subscriptions
//
// CreateSubscription(url, secret, event_types, repository):
//
//   - url: an http or https URL (no user:password part).
//   - secret: at least 8 characters; it keys the signature and is never
//     returned.
//   - event_types: CloudEvents types from the event catalogue
//     (dev.cdevents.build.finished.0.3.0) or prefixes ending in "*"
//     (dev.cdevents.service.*, *). An unknown type, or a prefix no
//     catalogued type has, is refused with invalid_argument naming the
//     entry. Empty: every event.
//   - repository: a repository name. Events carry it in their payload's
//     top-level repository (RepositoryRef.name); an event without one (a
//     build step, say) reaches only subscriptions without a repository
//     filter. Empty: every repository.
//
// Deleting a subscription drops its pending deliveries (status DEAD; no
// DeliveryFailed is published, since nothing failed). Past deliveries stay
// listed. ListSubscriptions pages oldest first; ListDeliveries pages newest
// first, of one subscription, of one run (run_id: the events' chain id), or
// of all.
//
// # What a subscriber receives
//
// Each event is POSTed as a CloudEvent in HTTP binary mode:
//
//   - ce-id, ce-type, ce-source, ce-subject, ce-time, ce-specversion: the
//     event's CloudEvents attributes, as on NATS;
//   - ce-chainid: the run id (CDEvents chainId), when the event has one;
//   - traceparent: W3C trace context, when the event has one;
//   - Content-Type: application/json;
//   - X-Sluice-Signature-256 (HeaderSignature): "sha256=" and the hex
//     HMAC-SHA256 of the body, keyed by the secret;
//   - X-Sluice-Delivery (HeaderDelivery): the delivery id, the same on
//     every attempt of one delivery;
//   - User-Agent: Sluice-Notify/<version>.
//
// The body is the CDEvent JSON. Verify the signature over the raw body
// before parsing it, in constant time (in Go, domain.Verify(body, secret,
// header)); in Python:
//
//	expected = "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()
//	ok = hmac.compare_digest(expected, request.headers["X-Sluice-Signature-256"])
//
// A 2xx answer is success. Anything else (redirects included: they are not
// followed), a connection error, or no answer within the attempt timeout
// is a failed attempt. So is an address the egress policy refuses
// (--allow-egress; loopback, private, link-local and the like by default):
// every connection is checked when it is dialed, after the URL's host is
// resolved (platform/egress).
//
// Delivery is at least once: an attempt whose answer was lost (or a process
// that died mid-attempt) is retried. Drop repeats by X-Sluice-Delivery (or
// by ce-id per endpoint).
//
// # Retries and dead letters
//
// Every attempt is recorded (number, time, HTTP status, error, duration)
// and listed by ListDeliveries; the error is brief (egress.Brief) and never
// holds the answer's body. After failed attempt n the next one is due
// RetryBase * 2^(n-1), capped at RetryMax, less up to 10% jitter (by
// default 1s and 5m: 1s, 2s, 4s, 8s, 16s). After MaxAttempts (6) failed
// attempts the delivery is DEAD and DeliveryFailed is published with the
// last error.
//
// Deliveries live in the database, so they survive restarts. The delivery
// loop takes a due delivery by pushing its next_attempt_at past the attempt
// timeout plus 30s (a lease): no other replica takes it meanwhile, and if
// the process dies the delivery is taken again when the lease ends. On a
// graceful stop, attempts under way finish and are recorded.
//
// Fan-out is idempotent: the delivery rows of an event are written in the
// same transaction that records the event as processed, and
// (subscription_id, event_id) is unique, so a redelivered or republished
// event creates no second delivery.
//
// # Watching events
//
// WatchEvents(filter) streams every event published from the moment the
// call returns (the server sends the response headers once it is
// watching). filter is a NATS subject filter (sluice.build.>,
// sluice.*.run.finished; empty means sluice.>); notify reads each stream
// whose subjects can match it with an ordered consumer filtered to the
// intersection, and deletes those consumers when the client goes away.
// From the repository root (buf reads the schema):
//
//	buf curl --schema proto --data '{"filter":"sluice.build.>"}' \
//	  http://127.0.0.1:8085/sluice.notify.v1.NotifyService/WatchEvents
//
// # Configuration
//
// Besides the settings every service has (--data-dir, --database-url,
// --nats-replicas, --allow-egress; and the process's --addr, default
// 127.0.0.1:8085, and --nats-url), each read from SLUICE_NOTIFY_<FLAG>:
//
//   - --max-attempts (MaxAttempts, 6): attempts before a delivery is dead;
//   - --retry-base (RetryBase, 1s) and --retry-max (RetryMax, 5m): the
//     back-off between attempts;
//   - --attempt-timeout (AttemptTimeout, 10s): one POST, response
//     included;
//   - --workers (Workers, 8): events fanned out, and deliveries attempted,
//     at once.
//
// The version in the User-Agent is the binary's (-ldflags "-X
// main.version=...").
//
// # Dead letters
//
// ListDeadLetters(service, consumer, include_body) lists the DEADLETTER
// stream, where every service puts the events its consumers gave up on
// and those NATS refused from its outbox, oldest first, by direct gets (no
// consumer) when the bodies are asked for, else through a headers-only
// ordered consumer (a direct get always carries the body): the page token
// stands for the stream sequence of the page's last entry. notify serves
// it because the CLI has no NATS credentials and notify already reads
// streams for WatchEvents; its NATS user may direct-get DEADLETTER and
// read it with ordered consumers (platform/natsauth extras). It needs the admin role
// and a token for every repository. Headers are made valid UTF-8 and
// bounded, and a body, only when asked for, is cut to MaxDeadLetterBody.
//
// # Known limits
//
//   - A subscription's URL is checked when it is posted to, not when the
//     subscription is created: a refused address shows in the delivery's
//     attempts.
//   - The secret is stored in plain text in notify's database (encryption
//     at rest is a platform concern not built yet).
//   - The body is the message as it was received on NATS (events.Event's
//     Received); an event handed over without it (a test calling FanOut
//     directly) is re-encoded from the decoded event, which is
//     byte-for-byte the same for events made by platform/events but would
//     drop a newer producer's unknown customData fields.
//
// # Where things are
//
// service.go has Deps, Service and NewService; the use cases are
// subscriptions.go, fanout.go (events into deliveries), deliveries.go
// (POSTing them, and listing them), watch.go (the live stream) and
// deadletters.go (the dead letters).
package notify
