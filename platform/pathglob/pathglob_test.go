package pathglob

import (
	"strings"
	"testing"
)

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
	valid := []string{"main", "release/*", "**", "{a,b}", "[a-z]*",
		strings.Repeat("{,}", 6) + "x",         // 64 combinations, the most
		"{a,b,c,d,e,f,g,h}{a,b,c,d,e,f,g,h}",   // 64 too
		`\{` + strings.Repeat(",", 100) + `\}`, // escaped: no group
		"[{]" + strings.Repeat("{a,b}", 6),     // a class holds no group
	}
	for _, p := range valid {
		if !Valid(p) {
			t.Errorf("Valid(%q) = false", p)
		}
	}
	invalid := []string{"[", "{a,b", "a\\",
		strings.Repeat("{,}", 7) + "x", // 128 combinations
		strings.Repeat("{,}", 30) + "x",
		"{a,{b,c}}", // nested
		"{a,b,c,d,e,f,g,h,i}{a,b,c,d,e,f,g,h}",
	}
	for _, p := range invalid {
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
