// Package pathglob matches "/"-separated names (paths in a repository,
// branch and tag names) against the globs a pipeline file writes: "*"
// and "?" within one "/"-separated part, "**" across parts, "[...]"
// classes and "{a,b}" alternatives (doublestar's syntax). The on: section
// of a pipeline, its steps' changed() conditions and artifact paths use
// the same syntax.
package pathglob

import "github.com/bmatcuk/doublestar/v4"

// Valid reports whether pattern is a well-formed glob.
func Valid(pattern string) bool { return doublestar.ValidatePattern(pattern) }

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
