package domain

import (
	"strings"
	"testing"

	sourcev1 "github.com/sluicehq/sluice/proto/gen/sluice/source/v1"
)

func TestUnwanted(t *testing.T) {
	t.Parallel()
	none := &sourcev1.Pipeline{}
	branches := &sourcev1.Pipeline{On: &sourcev1.Triggers{Push: &sourcev1.PushTrigger{Branches: []string{"main", "release/*"}}}}
	paths := &sourcev1.Pipeline{On: &sourcev1.Triggers{Push: &sourcev1.PushTrigger{Paths: []string{"services/api/**", "go.mod"}}}}
	tags := &sourcev1.Pipeline{On: &sourcev1.Triggers{Tags: []string{"v*"}}}
	changed := func(complete bool, p ...string) *sourcev1.Changes {
		return &sourcev1.Changes{Paths: p, Complete: complete}
	}
	tests := []struct {
		name        string
		p           *sourcev1.Pipeline
		ref, branch string
		changes     *sourcev1.Changes
		want        string // "" or a part of the reason
	}{
		{"watched branch, no on", none, "refs/heads/main", "main", nil, ""},
		{"other branch, no on", none, "refs/heads/dev", "dev", nil, "not to the repository's branch main"},
		{"listed branch", branches, "refs/heads/release/1.2", "release/1.2", nil, ""},
		{"watched branch listed", branches, "refs/heads/main", "main", nil, ""},
		{"unlisted branch", branches, "refs/heads/dev", "dev", nil, "matches none of the pipeline's on.push.branches (main, release/*)"},
		{"deeper than the glob", branches, "refs/heads/release/1/x", "release/1/x", nil, "matches none"},
		{"path matches", paths, "refs/heads/main", "main", changed(true, "README.md", "services/api/x.go"), ""},
		{"no path matches", paths, "refs/heads/main", "main", changed(true, "README.md", "docs/x.md"), "changed no path matching the pipeline's on.push.paths (services/api/**, go.mod)"},
		{"changes unknown", paths, "refs/heads/main", "main", nil, ""},
		{"changes incomplete", paths, "refs/heads/main", "main", changed(false, "README.md"), ""},
		{"paths only filter the watched branch", paths, "refs/heads/dev", "dev", changed(true, "go.mod"), "not to the repository's branch"},
		{"tag, no on.tag", none, "refs/tags/v1.0.0", "", nil, "the pipeline has no on.tag"},
		{"tag matches", tags, "refs/tags/v1.0.0", "", nil, ""},
		{"tag does not match", tags, "refs/tags/nightly", "", nil, "tag nightly matches none of the pipeline's on.tag (v*)"},
		{"tags do not see paths", &sourcev1.Pipeline{On: &sourcev1.Triggers{Tags: []string{"v*"}, Push: paths.On.Push}}, "refs/tags/v2", "", changed(true, "docs/x.md"), ""},
		{"a sha", tags, "0123456789012345678901234567890123456789", "", nil, "neither a branch nor a tag"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := Unwanted(tt.p, "main", tt.ref, tt.branch, tt.changes)
			if (tt.want == "") != (got == "") || !strings.Contains(got, tt.want) {
				t.Fatalf("Unwanted = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestTag(t *testing.T) {
	t.Parallel()
	for ref, want := range map[string]string{"refs/tags/v1": "v1", "refs/tags/a/b": "a/b", "refs/heads/main": "", "v1": ""} {
		if got := Tag(ref); got != want {
			t.Errorf("Tag(%q) = %q, want %q", ref, got, want)
		}
	}
}
