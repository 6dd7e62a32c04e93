package cut_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/sluicehq/sluice/platform/cut"
)

func TestTextKeepsWhatFits(t *testing.T) {
	t.Parallel()
	if got := cut.Text("short", 100); got != "short" {
		t.Errorf("Text(short) = %q", got)
	}
	long := strings.Repeat("x", 64<<10)
	got := cut.Text(long, 1024)
	if len(got) > 1024 || !strings.HasPrefix(got, "xxxx") || !strings.HasSuffix(got, "… [cut: 63 KiB more]") {
		t.Errorf("Text of one long line = …%q (%d bytes)", got[max(0, len(got)-40):], len(got))
	}
	// Many lines: the cut falls at the end of a line and counts the lines.
	var b strings.Builder
	for i := range 10000 {
		fmt.Fprintf(&b, "- change number %d (abcdef1)\n", i)
	}
	got = cut.Text(b.String(), 4096)
	if len(got) > 4096 || !strings.HasPrefix(got, "- change number 0 (abcdef1)\n") {
		t.Fatalf("Text of many lines: %d bytes, starts %q", len(got), got[:40])
	}
	kept := strings.Count(got, "\n")
	want := fmt.Sprintf("\n… [cut: %d more lines, ", 10000-kept)
	if !strings.Contains(got, want) || !strings.HasSuffix(got, " KiB]") {
		t.Errorf("Text of many lines ends %q; want it to say %q", got[len(got)-60:], want)
	}
	// Characters are never split.
	got = cut.Text(strings.Repeat("é", 1000), 101)
	if !utf8.ValidString(got) || len(got) > 101 {
		t.Errorf("Text of two-byte characters: %q", got)
	}
}

func TestTextWithATinyLimitEndsInAnEllipsis(t *testing.T) {
	t.Parallel()
	if got := cut.Text("abcdefghijkl", 10); got != "abcdefg…" {
		t.Errorf("Text(limit 10) = %q", got)
	}
	if got := cut.Text("abc", 2); got != "" {
		t.Errorf("Text(limit 2) = %q", got)
	}
}

func TestTextOfCountsWhatIsNotAtHand(t *testing.T) {
	t.Parallel()
	head := strings.Repeat("y", 2000)
	got := cut.TextOf(head, 1<<20, 1024)
	if len(got) > 1024 || !strings.HasSuffix(got, "[cut: 1023 KiB more]") {
		t.Errorf("TextOf = …%q", got[len(got)-30:])
	}
}

func TestFirstAndLastLines(t *testing.T) {
	t.Parallel()
	lines := make([]string, 500)
	for i := range lines {
		lines[i] = fmt.Sprintf("line %03d %s", i, strings.Repeat("z", 90))
	}
	if got := cut.FirstLines(lines[:3], 1000); !slices.Equal(got, lines[:3]) {
		t.Errorf("FirstLines of what fits changed it: %q", got)
	}
	first := cut.FirstLines(lines, 2000)
	n := len(first) - 1
	if n < 10 || !slices.Equal(first[:n], lines[:n]) || first[n] != fmt.Sprintf("… [cut: %d more lines, %s]", 500-n, kib(100*(500-n))) {
		t.Errorf("FirstLines = %d lines, last %q", len(first), first[len(first)-1])
	}
	last := cut.LastLines(lines, 2000)
	n = len(last) - 1
	if n < 10 || !slices.Equal(last[1:], lines[500-n:]) || last[0] != fmt.Sprintf("… [cut: %d earlier lines, %s]", 500-n, kib(100*(500-n))) {
		t.Errorf("LastLines = %d lines, first %q", len(last), last[0])
	}
	for _, got := range [][]string{first, last} {
		if size := len(strings.Join(got, "\n")) + 1; size > 2000 {
			t.Errorf("%d bytes kept; want at most 2000", size)
		}
	}
	// One line longer than the limit is itself cut.
	huge := []string{"first", strings.Repeat("h", 10000)}
	if got := cut.LastLines(huge, 1000); len(got) != 2 || got[0] != "… [cut: 1 earlier line, 6 B]" || !strings.HasSuffix(got[1], "more]") {
		t.Errorf("LastLines of a huge line = %q", got)
	}
}

func kib(n int) string {
	if n < 1024 {
		return fmt.Sprintf("%d B", n)
	}
	v := float64(n) / 1024
	if v < 10 {
		return fmt.Sprintf("%.1f KiB", v)
	}
	return fmt.Sprintf("%.0f KiB", v)
}
