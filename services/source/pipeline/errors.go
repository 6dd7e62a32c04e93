package pipeline

import (
	"fmt"
	"strings"
)

// Error is one problem in a pipeline file. Line and Column are 1-based and
// point at the offending key or value; they are zero when unknown (yaml.v3
// reports some syntax errors without a column, a few without a line).
type Error struct {
	File         string
	Line, Column int
	Message      string
	// Hint is an optional suggestion for fixing the problem.
	Hint string
}

// Error formats e as "FILE:LINE:COL: MESSAGE (hint: HINT)", leaving out the
// parts that are unknown or empty.
func (e Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Line)
		if e.Column > 0 {
			fmt.Fprintf(&b, ":%d", e.Column)
		}
	}
	b.WriteString(": ")
	b.WriteString(e.Message)
	if e.Hint != "" {
		fmt.Fprintf(&b, " (hint: %s)", e.Hint)
	}
	return b.String()
}

// Errors is every problem found in a pipeline file, sorted by position.
type Errors []Error

// MaxListed is how many problems Errors.Error lists. The message is a
// failed run's reason, which its events carry, and a file may hold as
// many problems as it has lines: the first ones are what its author
// needs.
const MaxListed = 50

// Error returns one line per problem, for the first MaxListed of them,
// and then a line counting the others.
func (e Errors) Error() string {
	lines := make([]string, 0, min(len(e), MaxListed)+1)
	for _, err := range e[:min(len(e), MaxListed)] {
		lines = append(lines, err.Error())
	}
	if more := len(e) - MaxListed; more > 0 {
		lines = append(lines, fmt.Sprintf("… and %d more problems", more))
	}
	return strings.Join(lines, "\n")
}

// closest returns the candidate nearest to s by edit distance, or "" when
// none is near enough to be a plausible typo. Ties go to the earlier
// candidate.
func closest(s string, candidates []string) string {
	best, bestDistance := "", 0
	lower := ""
	for _, c := range candidates {
		// The distance is at least the difference of the lengths, and
		// lowercasing makes a string at most 3 times shorter (K, the
		// Kelvin sign, is 3 bytes and k one): a long string is no typo of
		// a short candidate, and is neither lowercased nor compared.
		if len(s)/3-len(c) > max(2, len(c)/3) {
			continue
		}
		if lower == "" {
			lower = strings.ToLower(s)
		}
		d := editDistance(lower, c)
		if d < len(s) && d <= max(2, len(c)/3) && (best == "" || d < bestDistance) {
			best, bestDistance = c, d
		}
	}
	return best
}

// editDistance is the Levenshtein distance between a and b, in bytes.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			substitution := prev[j-1]
			if a[i-1] != b[j-1] {
				substitution++
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, substitution)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
