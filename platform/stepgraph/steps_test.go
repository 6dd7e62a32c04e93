package stepgraph_test

import (
	"testing"

	"github.com/sluicehq/sluice/platform/stepgraph"
	sourcev1 "github.com/sluicehq/sluice/proto/gen/sluice/source/v1"
)

func TestFactsOfARun(t *testing.T) {
	t.Parallel()
	changes := &sourcev1.Changes{Paths: []string{"a.go"}, Complete: true}
	for _, tc := range []struct {
		ref, branch string
		trigger     sourcev1.Trigger
		event, tag  string
	}{
		{"refs/heads/main", "main", sourcev1.Trigger_TRIGGER_WEBHOOK, "push", ""},
		{"refs/heads/main", "main", sourcev1.Trigger_TRIGGER_POLL, "push", ""},
		{"refs/tags/v1.2.0", "", sourcev1.Trigger_TRIGGER_POLL, "tag", "v1.2.0"},
		{"refs/tags/v1.2.0", "", sourcev1.Trigger_TRIGGER_MANUAL, "manual", "v1.2.0"},
		{"0123abcd", "", sourcev1.Trigger_TRIGGER_MANUAL, "manual", ""},
	} {
		f := stepgraph.FactsOf("app", "c0ffee", tc.ref, tc.branch, tc.trigger, changes)
		if f.Event != tc.event || f.Tag != tc.tag || f.Branch != tc.branch || f.Ref != tc.ref || f.Repository != "app" || f.Commit != "c0ffee" ||
			!f.ChangedKnown || len(f.Changed) != 1 {
			t.Errorf("FactsOf(%s, %s) = %+v, want event %s tag %q", tc.ref, tc.trigger, f, tc.event, tc.tag)
		}
	}
	if f := stepgraph.FactsOf("app", "c", "refs/heads/x", "x", sourcev1.Trigger_TRIGGER_POLL, nil); f.ChangedKnown {
		t.Errorf("no changes: %+v, want them unknown", f)
	}
}
