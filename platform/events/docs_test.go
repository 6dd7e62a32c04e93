package events_test

import (
	"os"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/platform/events"
)

// docs/events.md is the event catalogue users read; it must name every
// event's subject, type and payload, and no event that does not exist.
func TestDocsListEveryEvent(t *testing.T) {
	data, err := os.ReadFile("../../docs/events.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(data)
	known := map[string]bool{}
	for _, k := range events.Catalogue() {
		row := "| `" + k.Subject + "` | `" + k.Type + "` | `" + string(k.PayloadName()) + "` |"
		if !strings.Contains(doc, row) {
			t.Errorf("docs/events.md has no row %s", row)
		}
		known[k.Subject] = true
	}
	for _, line := range strings.Split(doc, "\n") {
		if strings.HasPrefix(line, "| `sluice.") && strings.Count(line, "|") == 5 {
			subject := strings.Trim(strings.Split(line, "|")[1], " `")
			if !known[subject] && !strings.HasPrefix(subject, "sluice.deadletter") {
				t.Errorf("docs/events.md lists %s, which is not in the catalogue", subject)
			}
		}
	}
}

// docs/events.md says which fields of which event may be cut to keep it
// within its size budget, as the catalogue does.
func TestDocsListCutFields(t *testing.T) {
	data, err := os.ReadFile("../../docs/events.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(data)
	for _, k := range events.Catalogue() {
		fields := k.CutFields()
		if len(fields) == 0 {
			continue
		}
		row := "| `" + k.Subject + "` | `" + strings.Join(fields, "`, `") + "` |"
		if !strings.Contains(doc, row) {
			t.Errorf("docs/events.md has no row %s", row)
		}
	}
}
