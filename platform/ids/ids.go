// Package ids makes the identifiers Sluice gives what it stores: builds,
// runs, releases, subscriptions, deliveries, events.
package ids

import "github.com/google/uuid"

// New returns a new UUIDv7 in its canonical text form. UUIDv7s begin with
// their creation time, so ids made later sort later and index well.
//
// It panics only when the system's random source fails, which Go treats as
// fatal anyway (crypto/rand.Read never returns an error since Go 1.24).
func New() string {
	return uuid.Must(uuid.NewV7()).String()
}
