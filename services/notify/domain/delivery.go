package domain

import (
	"time"

	"github.com/sluicehq/sluice/platform/retry"
)

// Status is where a delivery stands.
type Status string

// Delivery states. A delivery starts pending and ends succeeded (a 2xx
// answer) or dead (every attempt failed, or its subscription was deleted).
const (
	StatusPending   Status = "pending"
	StatusSucceeded Status = "succeeded"
	StatusDead      Status = "dead"
)

// ReasonSubscriptionDeleted is the last error of a pending delivery dropped
// because its subscription was deleted.
const ReasonSubscriptionDeleted = "subscription deleted before the event was delivered"

// Delivery is one event on its way to one subscription.
type Delivery struct {
	ID             string
	SubscriptionID string
	EventID        string
	EventType      string
	// Subject is the event's CloudEvents subject (a build id, a run id...).
	Subject    string
	Repository string
	// ChainID is the event's chain (run) id.
	ChainID string
	// Headers are the CloudEvents attributes as NATS carried them (ce-*).
	Headers map[string]string
	// Body is the CDEvent JSON.
	Body          []byte
	Status        Status
	AttemptCount  int
	LastError     string
	CreatedAt     time.Time
	NextAttemptAt time.Time
	Attempts      []Attempt
}

// Attempt is one POST of a delivery.
type Attempt struct {
	Number int
	Time   time.Time
	// HTTPStatus is 0 when no response came.
	HTTPStatus int
	Error      string
	Duration   time.Duration
}

// Succeeded reports whether the subscriber accepted the attempt.
func (a Attempt) Succeeded() bool { return a.HTTPStatus >= 200 && a.HTTPStatus < 300 }

// Retry is the retry schedule of failed attempts.
type Retry struct {
	MaxAttempts int
	// Wait is the pause after each failed attempt: the base after the
	// first, doubling up to the max, and up to 10% shorter at random so
	// that deliveries failing together spread out (NewRetry).
	Wait retry.Backoff
}

// NewRetry is the schedule of at most maxAttempts attempts, waiting base
// after the first failure, doubling up to maxWait.
func NewRetry(maxAttempts int, base, maxWait time.Duration) Retry {
	return Retry{MaxAttempts: maxAttempts, Wait: retry.Backoff{Initial: base, Max: maxWait, Jitter: 0.1}}
}

// After returns the delay before the attempt that follows failed attempt
// number n (1-based).
func (r Retry) After(n int) time.Duration { return r.Wait.Delay(n) }

// Exhausted reports whether a delivery whose attempt number n failed is
// dead: no attempts are left.
func (r Retry) Exhausted(n int) bool { return n >= r.MaxAttempts }
