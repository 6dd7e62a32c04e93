package pathglob

import (
	"strings"
	"testing"
)

// BenchmarkMatchBoundedAlternatives prints what one match costs with the
// most alternatives Valid lets a pattern have (six {,} groups: 64
// combinations, the groups that cost the most, as each may match
// nothing), against a branch name and a long path.
func BenchmarkMatchBoundedAlternatives(b *testing.B) {
	pattern := strings.Repeat("{,}", 6) + "x"
	if !Valid(pattern) {
		b.Fatalf("%q is not valid", pattern)
	}
	for what, name := range map[string]string{"branch": "main", "long-path": strings.Repeat("a/", 500) + "b"} {
		b.Run(what, func(b *testing.B) {
			for b.Loop() {
				Match(pattern, name)
			}
		})
	}
}
