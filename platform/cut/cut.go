// Package cut shortens text and lists of lines to a size bound, never
// silently: what is cut off is replaced by a mark that says how much, such
// as "… [cut: 412 more lines, 1.2 MiB]". Events keep to their size budget
// with it (platform/events), and a step's last lines with it
// (platform/lastlines).
package cut

import (
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/dustin/go-humanize"
)

// Ellipsis starts every mark. A bound too small for a whole mark (less
// than MinMax) gets it alone.
const Ellipsis = "…"

// MinMax is the smallest bound that holds a whole mark and a little of
// the text; below it, a cut text ends in Ellipsis only.
const MinMax = 48

// Mark says that lines lines and size bytes were cut off. A cut within a
// line (lines 0) says only the size: "… [cut: 63 KiB more]".
func Mark(lines, size int) string {
	switch {
	case lines == 1:
		return fmt.Sprintf("%s [cut: 1 more line, %s]", Ellipsis, bytes(size))
	case lines > 1:
		return fmt.Sprintf("%s [cut: %d more lines, %s]", Ellipsis, lines, bytes(size))
	}
	return fmt.Sprintf("%s [cut: %s more]", Ellipsis, bytes(size))
}

// earlierMark says that the lines lines before the ones kept, size bytes,
// were cut off.
func earlierMark(lines, size int) string {
	if lines == 1 {
		return fmt.Sprintf("%s [cut: 1 earlier line, %s]", Ellipsis, bytes(size))
	}
	return fmt.Sprintf("%s [cut: %d earlier lines, %s]", Ellipsis, lines, bytes(size))
}

func bytes(n int) string { return humanize.IBytes(uint64(max(n, 0))) }

// Text returns s when it is at most limit bytes long; else the start of s
// and then the mark for the rest (Mark), limit bytes at most. The cut
// falls at a character boundary, and at the end of a line when that keeps
// at least half of what fits. A limit below MinMax ends the text in
// Ellipsis only; one below len(Ellipsis) keeps nothing.
func Text(s string, limit int) string { return TextOf(s, len(s), limit) }

// TextOf is Text for a text of which only the start, head, is at hand
// (a line too long to keep whole): size is the whole text's length in
// bytes. The lines of the text beyond head are not counted.
func TextOf(head string, size, limit int) string {
	size = max(size, len(head))
	if size <= limit {
		return head
	}
	if limit < MinMax {
		if limit < len(Ellipsis) {
			return ""
		}
		return head[:boundary(head, limit-len(Ellipsis))] + Ellipsis
	}
	keep := limit - len(Mark(strings.Count(head, "\n"), size)) - slack
	for {
		keep = boundary(head, max(keep, 0))
		if nl := strings.LastIndexByte(head[:keep], '\n'); nl >= 0 && nl+1 >= keep/2 {
			keep = nl + 1
		}
		mark := Mark(linesAfter(head, keep), size-keep)
		if keep+len(mark) <= limit || keep == 0 {
			return head[:keep] + mark
		}
		keep = limit - len(mark)
	}
}

// slack is room kept for a mark whose numbers come out a few characters
// longer than the estimate (humanize's sizes are not monotonic in length).
const slack = 8

// linesAfter counts the lines of s that begin after s[:at]: those that
// a cut at at drops whole.
func linesAfter(s string, at int) int {
	rest := s[at:]
	if rest == "" {
		return 0
	}
	n := strings.Count(rest, "\n")
	if !strings.HasSuffix(rest, "\n") {
		n++
	}
	if at > 0 && s[at-1] != '\n' {
		n-- // the end of a line already begun
	}
	return n
}

// FirstLines returns lines when they fit in limit bytes (each line
// counting its length and one byte for its end); else the first lines that
// fit and, last, a line with the mark for the rest (Mark). When not even
// one line fits beside the mark, the first is cut (Text). The mark alone
// may exceed a limit below MinMax.
func FirstLines(lines []string, limit int) []string {
	total := size(lines)
	if total <= limit {
		return lines
	}
	mark := func(kept int) string { return Mark(len(lines)-kept, total-size(lines[:kept])) }
	room := limit - len(mark(0)) - 1 - slack
	kept, used := 0, 0
	for kept < len(lines) && used+len(lines[kept])+1 <= room {
		used += len(lines[kept]) + 1
		kept++
	}
	out := append([]string{}, lines[:kept]...)
	if kept == 0 && room > MinMax {
		return append(out, Text(lines[0], room), mark(1))
	}
	return append(out, mark(kept))
}

// LastLines is FirstLines that keeps the last lines: the mark, saying how
// many earlier lines were cut, comes first. When not even one line fits,
// the last is cut (Text, which keeps its start).
func LastLines(lines []string, limit int) []string {
	total := size(lines)
	if total <= limit {
		return lines
	}
	mark := func(kept int) string {
		return earlierMark(len(lines)-kept, total-size(lines[len(lines)-kept:]))
	}
	room := limit - len(mark(0)) - 1 - slack
	kept, used := 0, 0
	for kept < len(lines) && used+len(lines[len(lines)-1-kept])+1 <= room {
		used += len(lines[len(lines)-1-kept]) + 1
		kept++
	}
	if kept == 0 && room > MinMax {
		return []string{mark(1), Text(lines[len(lines)-1], room)}
	}
	return append([]string{mark(kept)}, lines[len(lines)-kept:]...)
}

func size(lines []string) int {
	n := 0
	for _, l := range lines {
		n += len(l) + 1
	}
	return n
}

// boundary is the largest n <= at that is a character boundary of s.
func boundary(s string, at int) int {
	if at >= len(s) {
		return len(s)
	}
	for at > 0 && !utf8.RuneStart(s[at]) {
		at--
	}
	return at
}
