package domain_test

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/services/build/domain"
)

func TestCheckPipeline(t *testing.T) {
	ok := domain.Run{
		Steps:     []domain.StepSpec{{Name: "compile", Run: "go build"}, {Name: "vet", Run: "go vet"}},
		Artifacts: []domain.ArtifactSpec{{Name: "hello", Path: "bin/hello"}},
	}
	if err := ok.CheckPipeline(); err != nil {
		t.Fatalf("valid pipeline: %v", err)
	}
	for _, tc := range []struct {
		name string
		edit func(*domain.Run)
		want string
	}{
		{"empty step name", func(r *domain.Run) { r.Steps[1].Name = " " }, "pipeline.build.steps[1].name is empty"},
		{"duplicate step", func(r *domain.Run) { r.Steps[1].Name = "compile" }, `pipeline.build.steps[1].name "compile" is used by an earlier step`},
		{"empty command", func(r *domain.Run) { r.Steps[0].Run = "" }, `pipeline.build.steps[0].run (step "compile") is empty`},
		{"negative timeout", func(r *domain.Run) { r.Steps[0].Timeout = -time.Second }, "pipeline.build.steps[0].timeout"},
		{"artifact name with a slash", func(r *domain.Run) { r.Artifacts[0].Name = "a/b" }, "pipeline.build.artifacts[0].name"},
		{"absolute artifact path", func(r *domain.Run) { r.Artifacts[0].Path = "/etc/passwd" }, "pipeline.build.artifacts[0].path"},
		{"artifact path leaving the workspace", func(r *domain.Run) { r.Artifacts[0].Path = "../x" }, "pipeline.build.artifacts[0].path"},
		{"duplicate artifact", func(r *domain.Run) { r.Artifacts = append(r.Artifacts, r.Artifacts[0]) }, `pipeline.build.artifacts[1].name "hello" is used`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := ok
			r.Steps = slices.Clone(ok.Steps)
			r.Artifacts = slices.Clone(ok.Artifacts)
			tc.edit(&r)
			if err := r.CheckPipeline(); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v; want one with %q", err, tc.want)
			}
		})
	}
}

func TestCheckRunID(t *testing.T) {
	for _, id := range []string{"01a219bb-7580-758d-94fe-b1f674712eab", "run_1.2"} {
		if err := domain.CheckRunID(id); err != nil {
			t.Errorf("%q: %v", id, err)
		}
	}
	for _, id := range []string{"", "..", "../etc", "a/b", ".hidden", strings.Repeat("a", 65)} {
		if err := domain.CheckRunID(id); err == nil {
			t.Errorf("%q accepted", id)
		}
	}
}

func TestFailureReasons(t *testing.T) {
	if got := domain.StepExited("compile", 2, nil).Reason; got != `step "compile" exited with code 2` {
		t.Errorf("exited: %q", got)
	}
	if got := domain.StepTimeout("compile", 5*time.Minute, nil).Reason; got != `step "compile" timed out after 5m0s` {
		t.Errorf("timeout: %q", got)
	}
	if got := domain.ArtifactMissing(domain.ArtifactSpec{Name: "hello", Path: "bin/hello"}).Reason; got != `artifact "hello": bin/hello not found` {
		t.Errorf("missing artifact: %q", got)
	}
	if (domain.Failure{}).Failed() {
		t.Error("zero failure counts as failed")
	}
}

func TestClaimable(t *testing.T) {
	now := time.Now()
	for _, tc := range []struct {
		b    domain.Build
		want bool
	}{
		{domain.Build{Status: domain.Queued}, true},
		{domain.Build{Status: domain.Running, LeaseExpires: now.Add(time.Second)}, false},
		{domain.Build{Status: domain.Running, LeaseExpires: now.Add(-time.Second)}, true},
		{domain.Build{Status: domain.Running}, true}, // released
		{domain.Build{Status: domain.Succeeded}, false},
		{domain.Build{Status: domain.Failed}, false},
	} {
		if got := tc.b.Claimable(now); got != tc.want {
			t.Errorf("%s lease %v: claimable %v; want %v", tc.b.Status, tc.b.LeaseExpires, got, tc.want)
		}
	}
}

func TestCommandSummary(t *testing.T) {
	if got := domain.CommandSummary("\n  mkdir -p bin\n go build ./...\n"); got != "mkdir -p bin" {
		t.Errorf("summary %q; want the first line", got)
	}
}
