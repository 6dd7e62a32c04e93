// Package notify is the notify service: webhook subscriptions to Sluice's
// events, their fan-out into durable deliveries, a delivery worker that
// POSTs each event as a signed CloudEvent with retries and dead-lettering,
// and a live stream of every event.
package notify
