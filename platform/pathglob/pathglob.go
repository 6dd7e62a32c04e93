// Package pathglob matches "/"-separated names (paths in a repository,
// branch and tag names) against the globs a pipeline file writes: "*"
// and "?" within one "/"-separated part, "**" across parts, "[...]"
// classes and "{a,b}" alternatives (doublestar's syntax). The on: section
// of a pipeline, its steps' changed() conditions and artifact paths use
// the same syntax.
package pathglob

import "github.com/bmatcuk/doublestar/v4"

// MaxAlternatives bounds what the {a,b} groups of a pattern multiply
// to: matching tries their combinations by backtracking, so that each
// group multiplies what a match may cost ("{,}" 30 times would take
// minutes).
const MaxAlternatives = 64

// Valid reports whether pattern is a well-formed glob whose {a,b} groups
// are not nested and multiply to at most MaxAlternatives.
func Valid(pattern string) bool {
	return doublestar.ValidatePattern(pattern) && alternatives(pattern) <= MaxAlternatives
}

// alternatives is the product of the sizes of pattern's {a,b} groups;
// more than MaxAlternatives for a nested group.
func alternatives(pattern string) int {
	total, depth, group := 1, 0, 0
	escaped, inClass := false, false
	for _, r := range pattern {
		switch {
		case escaped:
			escaped = false
		case r == '\\':
			escaped = true
		case inClass:
			inClass = r != ']'
		case r == '[':
			inClass = true
		case r == '{':
			if depth++; depth > 1 {
				return MaxAlternatives + 1
			}
			group = 1
		case r == ',' && depth == 1:
			group++
		case r == '}' && depth == 1:
			depth--
			if total *= group; total > MaxAlternatives {
				return total
			}
		}
	}
	return total
}

// Match reports whether name matches pattern; a malformed pattern matches
// nothing.
func Match(pattern, name string) bool {
	ok, err := doublestar.Match(pattern, name)
	return err == nil && ok
}

// MatchAny reports whether name matches one of patterns.
func MatchAny(patterns []string, name string) bool {
	for _, p := range patterns {
		if Match(p, name) {
			return true
		}
	}
	return false
}

// AnyMatches reports whether one of names matches one of patterns.
func AnyMatches(patterns, names []string) bool {
	for _, n := range names {
		if MatchAny(patterns, n) {
			return true
		}
	}
	return false
}
