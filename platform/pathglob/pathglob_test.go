package pathglob

import "testing"

func TestMatch(t *testing.T) {
	t.Parallel()
	tests := []struct {
		pattern, name string
		want          bool
	}{
		{"main", "main", true},
		{"main", "mainline", false},
		{"release/*", "release/1.2", true},
		{"release/*", "release/1/hotfix", false},
		{"release/**", "release/1/hotfix", true},
		{"**", "any/branch/at/all", true},
		{"v*", "v1.2.3", true},
		{"v*", "1.2.3", false},
		{"v{1,2}.*", "v2.0", true},
		{"services/api/**", "services/api/cmd/main.go", true},
		{"services/api/**", "services/web/main.go", false},
		{"*.md", "docs/readme.md", false},
		{"**/*.md", "docs/readme.md", true},
		{"[", "[", false}, // malformed: matches nothing
	}
	for _, tt := range tests {
		if got := Match(tt.pattern, tt.name); got != tt.want {
			t.Errorf("Match(%q, %q) = %v, want %v", tt.pattern, tt.name, got, tt.want)
		}
	}
}

func TestValid(t *testing.T) {
	t.Parallel()
	for _, p := range []string{"main", "release/*", "**", "{a,b}", "[a-z]*"} {
		if !Valid(p) {
			t.Errorf("Valid(%q) = false", p)
		}
	}
	for _, p := range []string{"[", "{a,b", "a\\"} {
		if Valid(p) {
			t.Errorf("Valid(%q) = true", p)
		}
	}
}

func TestAnyMatches(t *testing.T) {
	t.Parallel()
	if !AnyMatches([]string{"docs/**", "go.mod"}, []string{"main.go", "go.mod"}) {
		t.Error("go.mod matches go.mod")
	}
	if AnyMatches([]string{"docs/**"}, []string{"main.go", "go.mod"}) {
		t.Error("nothing is under docs/")
	}
	if AnyMatches([]string{"docs/**"}, nil) {
		t.Error("no names match nothing")
	}
}
