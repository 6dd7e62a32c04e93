// Package domain holds notify's plain types and rules: what a subscription
// is and which events it wants, a delivery's states and its retry schedule,
// and which event subjects a watch filter reaches. No SQL, no transport.
package domain

import (
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/sluicehq/sluice/platform/apierror"
	"github.com/sluicehq/sluice/platform/events"
)

// Subscription is a webhook endpoint and the events it wants.
type Subscription struct {
	ID  string
	URL string
	// Secret keys the HMAC signature of every delivery; it is never shown.
	Secret string
	// EventTypes are CloudEvents types or prefixes ending in "*"; empty
	// means every event.
	EventTypes []string
	// Repository is a repository name; empty means every repository.
	Repository string
	CreatedAt  time.Time
}

// MinSecretLen is the shortest secret accepted.
const MinSecretLen = 8

// Validate checks a subscription as a user asked for it. Errors wrap
// apierror.ErrInvalidArgument and name the field.
//
// Any http(s) URL is accepted, loopback and private addresses included:
// there is no SSRF filtering yet (see the package doc of notify).
func (s Subscription) Validate() error {
	if err := validateURL(s.URL); err != nil {
		return err
	}
	if len(s.Secret) < MinSecretLen {
		return fmt.Errorf("secret: must be at least %d characters: %w", MinSecretLen, apierror.ErrInvalidArgument)
	}
	for i, t := range s.EventTypes {
		if err := validateEventType(t); err != nil {
			return fmt.Errorf("event_types[%d] %q: %w", i, t, err)
		}
	}
	if strings.TrimSpace(s.Repository) != s.Repository {
		return fmt.Errorf("repository %q: must not start or end with spaces: %w", s.Repository, apierror.ErrInvalidArgument)
	}
	return nil
}

func validateURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("url %q: %w: %w", raw, apierror.ErrInvalidArgument, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return fmt.Errorf("url %q: must be an http or https URL: %w", raw, apierror.ErrInvalidArgument)
	}
	if u.Host == "" {
		return fmt.Errorf("url %q: has no host: %w", raw, apierror.ErrInvalidArgument)
	}
	if u.User != nil {
		return fmt.Errorf("url %q: must not carry credentials; the secret signs each delivery: %w", raw, apierror.ErrInvalidArgument)
	}
	return nil
}

// validateEventType accepts a catalogued CloudEvents type or a prefix
// ending in "*" that at least one catalogued type has.
func validateEventType(t string) error {
	prefix, isPrefix := strings.CutSuffix(t, "*")
	if strings.Contains(prefix, "*") {
		return fmt.Errorf("\"*\" may only end a prefix: %w", apierror.ErrInvalidArgument)
	}
	if !isPrefix {
		if _, ok := events.KindByType(t); !ok {
			return fmt.Errorf("not a Sluice event type (such as dev.cdevents.build.finished.0.3.0), nor a prefix ending in \"*\": %w", apierror.ErrInvalidArgument)
		}
		return nil
	}
	for _, k := range events.Catalogue() {
		if strings.HasPrefix(k.Type, prefix) {
			return nil
		}
	}
	return fmt.Errorf("no Sluice event type starts with %q: %w", prefix, apierror.ErrInvalidArgument)
}

// Matches reports whether the subscription wants an event of type
// eventType about repository (empty when the event names none).
func (s Subscription) Matches(eventType, repository string) bool {
	if s.Repository != "" && s.Repository != repository {
		return false
	}
	if len(s.EventTypes) == 0 {
		return true
	}
	for _, t := range s.EventTypes {
		if prefix, ok := strings.CutSuffix(t, "*"); ok {
			if strings.HasPrefix(eventType, prefix) {
				return true
			}
		} else if t == eventType {
			return true
		}
	}
	return false
}
