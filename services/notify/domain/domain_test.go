package domain_test

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/platform/apierror"
	"github.com/sluicehq/sluice/services/notify/domain"
)

func TestSubscriptionValidate(t *testing.T) {
	t.Parallel()
	ok := domain.Subscription{URL: "https://example.com/hook", Secret: "s3cret-s3cret"}
	for _, tc := range []struct {
		name  string
		edit  func(*domain.Subscription)
		field string // "" when valid
	}{
		{"valid", func(*domain.Subscription) {}, ""},
		{"http loopback", func(s *domain.Subscription) { s.URL = "http://127.0.0.1:9/x" }, ""},
		{"exact type", func(s *domain.Subscription) { s.EventTypes = []string{"dev.cdevents.build.finished.0.3.0"} }, ""},
		{"prefix", func(s *domain.Subscription) { s.EventTypes = []string{"dev.cdevents.service.*"} }, ""},
		{"everything", func(s *domain.Subscription) { s.EventTypes = []string{"*"} }, ""},
		{"ftp url", func(s *domain.Subscription) { s.URL = "ftp://example.com/x" }, "url"},
		{"relative url", func(s *domain.Subscription) { s.URL = "/hook" }, "url"},
		{"url without host", func(s *domain.Subscription) { s.URL = "http:///hook" }, "url"},
		{"url with credentials", func(s *domain.Subscription) { s.URL = "https://u:p@example.com/" }, "url"},
		{"short secret", func(s *domain.Subscription) { s.Secret = "short" }, "secret"},
		{"unknown type", func(s *domain.Subscription) {
			s.EventTypes = []string{"dev.cdevents.build.finished.0.3.0", "dev.cdevents.build.exploded.0.1.0"}
		}, `event_types[1] "dev.cdevents.build.exploded.0.1.0"`},
		{"prefix of nothing", func(s *domain.Subscription) { s.EventTypes = []string{"dev.cdevnts.*"} }, `event_types[0] "dev.cdevnts.*"`},
		{"star inside", func(s *domain.Subscription) { s.EventTypes = []string{"dev.*.build.*"} }, `event_types[0]`},
		{"repository spaces", func(s *domain.Subscription) { s.Repository = " hello" }, "repository"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := ok
			tc.edit(&s)
			err := s.Validate()
			if tc.field == "" {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if !errors.Is(err, apierror.ErrInvalidArgument) {
				t.Fatalf("Validate() = %v, want an invalid argument", err)
			}
			if !strings.HasPrefix(err.Error(), tc.field) {
				t.Errorf("Validate() = %q, want it to start with %q", err, tc.field)
			}
		})
	}
}

func TestSubscriptionMatches(t *testing.T) {
	t.Parallel()
	const finished, started, deployed = "dev.cdevents.build.finished.0.3.0", "dev.cdevents.build.started.0.3.0", "dev.cdevents.service.deployed.0.3.0"
	for _, tc := range []struct {
		sub       domain.Subscription
		typ, repo string
		want      bool
	}{
		{domain.Subscription{}, finished, "", true},
		{domain.Subscription{}, finished, "hello", true},
		{domain.Subscription{EventTypes: []string{finished}}, finished, "hello", true},
		{domain.Subscription{EventTypes: []string{finished}}, started, "hello", false},
		{domain.Subscription{EventTypes: []string{"dev.cdevents.build.*"}}, started, "", true},
		{domain.Subscription{EventTypes: []string{"dev.cdevents.build.*"}}, deployed, "", false},
		{domain.Subscription{EventTypes: []string{"dev.cdevents.build.*", deployed}}, deployed, "", true},
		{domain.Subscription{Repository: "hello"}, finished, "hello", true},
		{domain.Subscription{Repository: "hello"}, finished, "other", false},
		{domain.Subscription{Repository: "hello"}, finished, "", false},
	} {
		if got := tc.sub.Matches(tc.typ, tc.repo); got != tc.want {
			t.Errorf("%+v.Matches(%q, %q) = %v, want %v", tc.sub, tc.typ, tc.repo, got, tc.want)
		}
	}
}

func TestRetryAfter(t *testing.T) {
	t.Parallel()
	r := domain.NewRetry(6, time.Second, 5*time.Second)
	for range 50 {
		for n, want := range map[int]time.Duration{1: time.Second, 2: 2 * time.Second, 3: 4 * time.Second, 4: 5 * time.Second, 60: 5 * time.Second} {
			// The jitter takes off at most 10%, and never adds.
			if got := r.After(n); got > want || got < want-want/10 {
				t.Errorf("After(%d) = %v, want within 10%% below %v", n, got, want)
			}
		}
	}
	if r.Exhausted(5) || !r.Exhausted(6) {
		t.Errorf("Exhausted(5), Exhausted(6) = %v, %v; want false, true", r.Exhausted(5), r.Exhausted(6))
	}
}

func TestWatchTargets(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		filter string
		want   []domain.WatchTarget
	}{
		{"", []domain.WatchTarget{
			{"SOURCE", "sluice.source.>"}, {"BUILD", "sluice.build.>"}, {"TEST", "sluice.test.>"},
			{"RELEASE", "sluice.release.>"}, {"NOTIFY", "sluice.notify.>"},
		}},
		{"sluice.>", []domain.WatchTarget{
			{"SOURCE", "sluice.source.>"}, {"BUILD", "sluice.build.>"}, {"TEST", "sluice.test.>"},
			{"RELEASE", "sluice.release.>"}, {"NOTIFY", "sluice.notify.>"},
		}},
		{"sluice.build.>", []domain.WatchTarget{{"BUILD", "sluice.build.>"}}},
		{"sluice.build.build.finished", []domain.WatchTarget{{"BUILD", "sluice.build.build.finished"}}},
		{"sluice.*.run.finished", []domain.WatchTarget{
			{"SOURCE", "sluice.source.run.finished"}, {"BUILD", "sluice.build.run.finished"}, {"TEST", "sluice.test.run.finished"},
			{"RELEASE", "sluice.release.run.finished"}, {"NOTIFY", "sluice.notify.run.finished"},
		}},
		{"sluice.*.>", []domain.WatchTarget{
			{"SOURCE", "sluice.source.>"}, {"BUILD", "sluice.build.>"}, {"TEST", "sluice.test.>"},
			{"RELEASE", "sluice.release.>"}, {"NOTIFY", "sluice.notify.>"},
		}},
	} {
		got, err := domain.WatchTargets(tc.filter)
		if err != nil {
			t.Errorf("WatchTargets(%q): %v", tc.filter, err)
			continue
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("WatchTargets(%q) = %v, want %v", tc.filter, got, tc.want)
		}
	}
	for _, bad := range []string{"sluice", "sluice.build", "sluice.deadletter.>", "sluice.>.x", "sluice.bu*", "sluice..x"} {
		_, err := domain.WatchTargets(bad)
		if !errors.Is(err, apierror.ErrInvalidArgument) || !strings.HasPrefix(err.Error(), "filter ") {
			t.Errorf("WatchTargets(%q) = %v, want an invalid argument naming the filter", bad, err)
		}
	}
}

func TestSign(t *testing.T) {
	t.Parallel()
	body := []byte(`{"context":{}}`)
	sig := domain.Sign(body, "secret-1")
	if !strings.HasPrefix(sig, "sha256=") || len(sig) != len("sha256=")+64 {
		t.Fatalf("Sign = %q, want sha256=<64 hex digits>", sig)
	}
	if !domain.Verify(body, "secret-1", sig) {
		t.Error("Verify rejects the signature Sign made")
	}
	if domain.Verify(body, "secret-2", sig) || domain.Verify([]byte(`{"context":{} }`), "secret-1", sig) {
		t.Error("Verify accepts a signature under another secret or over another body")
	}
}

func TestDeadLetterSubjects(t *testing.T) {
	t.Parallel()
	for f, want := range map[domain.DeadLetterFilter]string{
		{}:                   "sluice.deadletter.*.*",
		{Service: "build"}:   "sluice.deadletter.build.*",
		{Consumer: "outbox"}: "sluice.deadletter.*.outbox",
		{Service: "notify", Consumer: "notify-test"}: "sluice.deadletter.notify.notify-test",
	} {
		if got := f.Subject(); got != want {
			t.Errorf("%+v: %q, want %q", f, got, want)
		}
	}
	for subject, want := range map[string][2]string{
		"sluice.deadletter.build.build-runs": {"build", "build-runs"},
		"sluice.deadletter.source.outbox":    {"source", "outbox"},
		"sluice.deadletter.build":            {},
		"sluice.deadletter.build.a.b":        {},
		"sluice.deadletter..x":               {},
		"sluice.build.build.finished":        {},
	} {
		service, consumer, ok := domain.DeadLetterOrigin(subject)
		if ok != (want[0] != "") || service != want[0] || consumer != want[1] {
			t.Errorf("%s: %q %q %v, want %v", subject, service, consumer, ok, want)
		}
	}
}
