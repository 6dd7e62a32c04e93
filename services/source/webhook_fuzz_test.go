package source_test

import (
	"net/http"
	"strings"
	"testing"

	sourcev1 "github.com/sluicehq/sluice/proto/gen/sluice/source/v1"
)

// FuzzWebhook posts whatever the fuzzer makes to the GitHub-style webhook of
// a registered repository, signed with the repository's secret or not: the
// answer is never a 5xx (one hostile delivery does not look like an outage
// to the forge, nor stop anything), and without a valid signature nothing
// is recorded and no run starts.
func FuzzWebhook(f *testing.F) {
	for _, seed := range []struct {
		event, delivery string
		body            []byte
		signed          bool
	}{
		{"push", "d-1", pushBody("refs/heads/main", "0123456789012345678901234567890123456789"), true},
		{"push", "d-2", pushBody("refs/heads/main", "0123456789012345678901234567890123456789"), false},
		{"ping", "d-3", []byte(`{"zen":"x"}`), true},
		{"push", "", []byte(`{"ref":`), true},
		{"push", "d-4", []byte(`{"ref":"refs/heads/main","after":"zz"}`), true},
		{"push", "d-5", []byte(`[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[`), true},
		{"pull_request", "d-6", []byte(`{"action":"opened"}`), true},
		{"push", "d\x00\n7", []byte(`{"ref":"refs/heads/main\u0000","after":"0123456789012345678901234567890123456789"}`), true},
	} {
		f.Add(seed.event, seed.delivery, seed.body, seed.signed)
	}
	h := newHarness(f, 0)
	src, _ := newGitRepo(f, "app", "main", validPipeline)
	repo := h.register(src.Dir)
	runs := func(t *testing.T) int {
		res, err := h.client.ListRuns(t.Context(), &sourcev1.ListRunsRequest{Repository: "app", PageSize: 1000})
		if err != nil {
			t.Fatal(err)
		}
		return len(res.GetRuns())
	}
	f.Fuzz(func(t *testing.T, event, delivery string, body []byte, signed bool) {
		before := runs(t)
		signature := "sha256=00"
		if signed {
			signature = sign(repo.WebhookSecret, body)
		}
		a, err := h.tryRawHook("app", event, delivery, signature, body)
		if err != nil && strings.Contains(err.Error(), "invalid header field") {
			t.Skip("no HTTP client sends this header") // Go's refuses it before sending
		}
		if err != nil {
			t.Fatal(err)
		}
		if a >= http.StatusInternalServerError {
			t.Fatalf("answer %d", a)
		}
		if !signed {
			if a != http.StatusUnauthorized && a != http.StatusBadRequest && a != http.StatusRequestEntityTooLarge {
				t.Errorf("an unsigned delivery got %d", a)
			}
			if after := runs(t); after != before {
				t.Errorf("an unsigned delivery made a run (%d -> %d)", before, after)
			}
		}
	})
}
