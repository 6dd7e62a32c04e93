package stepcache_test

import (
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/platform/stepcache"
	"github.com/sluicehq/sluice/platform/stepgraph"
)

func TestParseKeyNamesWhereATemplateIsWrong(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		template, want string
	}{
		{"", "1:1: the key is empty"},
		{"go-${{ hashFiles('go.sum')", "1:4: ${{ is not closed by }}"},
		{"go-${{ }}", "1:7: the expression is empty"},
		{"go-${{ nope }}", "1:8: unknown name nope"},
		{"go-${{ (1..3)[0] == 1 ? 'a' : 'b' }}", "ranges are not allowed"},
		{"go-${{ let x = branch; x }}", "let is not allowed in a cache key"},
		{"go-${{ 1 + 2 }}", "expected string"},
		{"go}}", "1:3: }} without ${{"},
		{"a-${{ branch }}-}}", "1:17: }} without ${{"},
		{"é-${{ nope }}", "1:7: unknown name nope"},
		{"x\n${{ branch +  }}", "2:"},
		{strings.Repeat("a", stepcache.MaxTemplateLength+1), "at most 512"},
	} {
		_, err := stepcache.ParseKey(tc.template)
		var ke *stepcache.KeyError
		if !errors.As(err, &ke) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParseKey(%q) = %v; want a KeyError with %q", tc.template, err, tc.want)
		}
	}
}

func write(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func eval(t *testing.T, template, ws string, facts stepgraph.Facts) (string, error) {
	t.Helper()
	k, err := stepcache.ParseKey(template)
	if err != nil {
		t.Fatal(err)
	}
	return k.Eval(facts, ws)
}

func TestKeyFollowsTheHashedFiles(t *testing.T) {
	t.Parallel()
	ws := t.TempDir()
	write(t, filepath.Join(ws, "go.sum"), "a v1.0.0 h1:x\n")
	write(t, filepath.Join(ws, "tools/go.sum"), "b v1.0.0 h1:y\n")
	facts := stepgraph.Facts{Branch: "main", Repository: "hello"}
	const template = "go-${{ hashFiles('**/go.sum') }}-${{ repository }}"

	first, err := eval(t, template, ws, facts)
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`^go-[0-9a-f]{32}-hello$`).MatchString(first) {
		t.Fatalf("key %q; want go-<32 hex digits>-hello", first)
	}
	again, _ := eval(t, template, ws, facts)
	if again != first {
		t.Errorf("the same files gave %q, then %q", first, again)
	}
	write(t, filepath.Join(ws, "tools/go.sum"), "b v1.0.1 h1:z\n")
	changed, _ := eval(t, template, ws, facts)
	if changed == first {
		t.Errorf("a changed go.sum kept the key %q", first)
	}

	// A symbolic link out of the workspace is not read, and no file
	// hashes to "".
	outside := filepath.Join(t.TempDir(), "secret")
	write(t, outside, "secret\n")
	empty := t.TempDir()
	if err := os.Symlink(outside, filepath.Join(empty, "go.sum")); err != nil {
		t.Fatal(err)
	}
	if got, err := eval(t, template, empty, facts); err != nil || got != "go--hello" {
		t.Errorf("key of a workspace whose go.sum leaves it = %q, %v; want go--hello", got, err)
	}
}

func TestKeyThatIsNotAKeyIsRefused(t *testing.T) {
	t.Parallel()
	ws := t.TempDir()
	for _, tc := range []struct {
		template string
		facts    stepgraph.Facts
	}{
		{"go-${{ branch }}", stepgraph.Facts{Branch: "feature/x"}},
		{"${{ tag }}", stepgraph.Facts{Branch: "main"}},
		{"go-${{ hashFiles('../go.sum') }}", stepgraph.Facts{}},
		{strings.Repeat("k", 100) + "${{ commit }}", stepgraph.Facts{Commit: strings.Repeat("c", 40)}},
	} {
		if got, err := eval(t, tc.template, ws, tc.facts); err == nil {
			t.Errorf("key %q gave %q; want an error", tc.template, got)
		}
	}
}
