package domain

import (
	"fmt"
	"slices"
	"strings"

	"github.com/sluicehq/sluice/platform/apierror"
	"github.com/sluicehq/sluice/platform/events"
)

// DefaultWatchFilter is what an empty watch filter means: every event.
const DefaultWatchFilter = "sluice.>"

// WatchTarget is one event stream a watch reads, with the subject filter
// to read it with: the watch filter narrowed to the stream's subjects.
type WatchTarget struct {
	Stream string
	Filter string
}

// WatchTargets returns the streams of Sluice's events whose subjects can
// match the NATS subject filter, in catalogue order. An empty filter means
// DefaultWatchFilter. Errors wrap apierror.ErrInvalidArgument and name the
// field.
func WatchTargets(filter string) ([]WatchTarget, error) {
	if filter == "" {
		filter = DefaultWatchFilter
	}
	tokens, err := parseFilter(filter)
	if err != nil {
		return nil, fmt.Errorf("filter %q: %w", filter, err)
	}
	var targets []WatchTarget
	for _, k := range events.Catalogue() {
		stream := k.Stream()
		if slices.ContainsFunc(targets, func(t WatchTarget) bool { return t.Stream == stream }) {
			continue
		}
		streamSubjects := []string{"sluice", k.Service, ">"}
		if narrowed, ok := intersect(tokens, streamSubjects); ok {
			targets = append(targets, WatchTarget{Stream: stream, Filter: narrowed})
		}
	}
	if len(targets) == 0 {
		return nil, fmt.Errorf("filter %q: matches no event subject (they are sluice.<service>.>): %w", filter, apierror.ErrInvalidArgument)
	}
	return targets, nil
}

func parseFilter(filter string) ([]string, error) {
	tokens := strings.Split(filter, ".")
	for i, t := range tokens {
		switch {
		case t == "":
			return nil, fmt.Errorf("empty token: %w", apierror.ErrInvalidArgument)
		case t == ">" && i != len(tokens)-1:
			return nil, fmt.Errorf("\">\" may only be the last token: %w", apierror.ErrInvalidArgument)
		case t != "*" && t != ">" && strings.ContainsAny(t, "*>"):
			return nil, fmt.Errorf("token %q: wildcards must be whole tokens: %w", t, apierror.ErrInvalidArgument)
		}
	}
	return tokens, nil
}

// intersect returns a subject filter matching exactly the subjects both a
// and b match, and false when no subject matches both.
func intersect(a, b []string) (string, bool) {
	var out []string
	for i := 0; ; i++ {
		if i == len(a) || i == len(b) {
			return strings.Join(out, "."), len(a) == len(b)
		}
		ta, tb := a[i], b[i]
		switch {
		case ta == ">":
			return strings.Join(append(out, b[i:]...), "."), true
		case tb == ">":
			return strings.Join(append(out, a[i:]...), "."), true
		case ta == "*":
			out = append(out, tb)
		case tb == "*", ta == tb:
			out = append(out, ta)
		default:
			return "", false
		}
	}
}
