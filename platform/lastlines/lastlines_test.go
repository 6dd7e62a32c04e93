package lastlines_test

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"unicode/utf8"

	"github.com/sluicehq/sluice/platform/lastlines"
)

func TestKeepsTheLastLinesOldestFirst(t *testing.T) {
	t.Parallel()
	b := lastlines.New(3, 0)
	if got := b.Lines(); len(got) != 0 || b.Dropped() != 0 || b.String() != "" {
		t.Errorf("empty: %q, dropped %d", got, b.Dropped())
	}
	b.Add("1")
	b.Add("")
	if got := b.Lines(); !slices.Equal(got, []string{"1", ""}) {
		t.Errorf("before full: %q", got)
	}
	for i := 3; i <= 7; i++ {
		b.Add(strconv.Itoa(i))
	}
	if got := b.Lines(); !slices.Equal(got, []string{"5", "6", "7"}) {
		t.Errorf("Lines = %q; want 5 6 7", got)
	}
	if got := b.Dropped(); got != 4 {
		t.Errorf("Dropped = %d; want 4", got)
	}
	if got := b.String(); got != "5\n6\n7" {
		t.Errorf("String = %q", got)
	}
	// Lines is a copy.
	b.Lines()[0] = "changed"
	if got := b.Lines()[0]; got != "5" {
		t.Errorf("Lines shares its slice: %q", got)
	}
}

func TestKeepsNothingWhenAskedForNoLines(t *testing.T) {
	t.Parallel()
	for _, n := range []int{0, -1} {
		b := lastlines.New(n, 0)
		b.Add("a")
		_, _ = b.Write([]byte("b\nc"))
		if got := b.Lines(); len(got) != 0 {
			t.Errorf("New(%d): Lines = %q", n, got)
		}
		if got := b.Dropped(); got != 3 {
			t.Errorf("New(%d): Dropped = %d; want 3", n, got)
		}
	}
}

func TestCutsLongLinesAtACharacterBoundary(t *testing.T) {
	t.Parallel()
	b := lastlines.New(5, 10)
	b.Add("exactly 10")
	b.Add(strings.Repeat("x", 100))
	b.Add(strings.Repeat("é", 50)) // two bytes each
	b.Add("日本語のテキスト")              // three bytes each
	got := b.Lines()
	want := []string{"exactly 10", "xxxxxxx…", "ééé…", "日本…"}
	for i, line := range got {
		if len(line) > 10 || !utf8.ValidString(line) {
			t.Errorf("line %d = %q: %d bytes, valid %v; want at most 10 valid bytes", i, line, len(line), utf8.ValidString(line))
		}
	}
	if !slices.Equal(got, want) {
		t.Errorf("Lines = %q; want %q", got, want)
	}
	d := lastlines.New(1, 0)
	d.Add(strings.Repeat("y", lastlines.DefaultMaxLen+1))
	if got := d.Lines()[0]; len(got) > lastlines.DefaultMaxLen || !strings.HasSuffix(got, " B more]") {
		t.Errorf("default bound: a line of %d bytes", len(got))
	}
	tiny := lastlines.New(1, 1) // too small to hold the mark: raised to 4
	tiny.Add("abcdef")
	if got := tiny.Lines()[0]; got != "a…" {
		t.Errorf("maxLen 1: %q; want a…", got)
	}
}

func TestWriteSplitsLinesAcrossWrites(t *testing.T) {
	t.Parallel()
	b := lastlines.New(3, 0)
	for _, p := range []string{"fir", "st\r\nsec", "ond\n", "\n", "unterminated"} {
		if n, err := b.Write([]byte(p)); n != len(p) || err != nil {
			t.Fatalf("Write(%q) = %d, %v", p, n, err)
		}
	}
	// The unterminated line counts as the newest and pushes "first" out.
	if got := b.Lines(); !slices.Equal(got, []string{"second", "", "unterminated"}) {
		t.Errorf("Lines = %q", got)
	}
	if got := b.Dropped(); got != 1 {
		t.Errorf("Dropped = %d; want 1", got)
	}
	b.Append(" now ends\n")
	if got := b.Lines(); !slices.Equal(got, []string{"second", "", "unterminated now ends"}) {
		t.Errorf("after the newline: %q", got)
	}
}

// A line that never ends is cut, whatever arrives after the bound, and
// the next line is whole again.
func TestWriteBoundsAnEndlessLine(t *testing.T) {
	t.Parallel()
	b := lastlines.New(2, 16)
	chunk := []byte(strings.Repeat("z", 4096))
	for range 1000 {
		_, _ = b.Write(chunk)
	}
	if got := b.Lines(); len(got) != 1 || got[0] != strings.Repeat("z", 13)+"…" {
		t.Errorf("endless line: %q", got)
	}
	_, _ = b.Write([]byte("\nnext\n"))
	if got := b.Lines(); !slices.Equal(got, []string{strings.Repeat("z", 13) + "…", "next"}) {
		t.Errorf("Lines = %q", got)
	}
}

func TestConcurrentUse(t *testing.T) {
	t.Parallel()
	b := lastlines.New(10, 0)
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 500 {
				b.Add(fmt.Sprintf("%d-%d", g, i))
				_, _ = b.Write([]byte("w\n"))
				_ = b.Lines()
				_ = b.Dropped()
			}
		})
	}
	wg.Wait()
	if got := len(b.Lines()); got != 10 {
		t.Errorf("%d lines kept; want 10", got)
	}
	if got := b.Dropped(); got != 4*500*2-10 {
		t.Errorf("Dropped = %d; want %d", got, 4*500*2-10)
	}
}

// Output that is not UTF-8 is kept as valid UTF-8: the lines travel in
// events and API answers.
func TestInvalidUTF8IsReplaced(t *testing.T) {
	t.Parallel()
	b := lastlines.New(2, 0)
	b.Add("ok \xff\xfe bytes")
	b.Append("more \x80\n")
	for _, l := range b.Lines() {
		if !utf8.ValidString(l) {
			t.Fatalf("line %q is not valid UTF-8", l)
		}
	}
	if got := b.Lines(); got[0] != "ok \uFFFD bytes" {
		t.Fatalf("Lines = %q", got)
	}
}

// A line cut to the bound says how much of it was cut, whether it came
// whole (Add) or in pieces (Write), so that no one takes it for the whole
// line.
func TestCutLineSaysHowMuchWasCut(t *testing.T) {
	t.Parallel()
	b := lastlines.New(3, 0)
	line := strings.Repeat("x", 64<<10)
	b.Add(line)
	for range 16 {
		b.Append(line[:4<<10])
	}
	b.Append("\n")
	b.Append(line)
	want := "… [cut: 63 KiB more]"
	for i, got := range b.Lines() {
		if len(got) > lastlines.DefaultMaxLen || !strings.HasSuffix(got, want) || !strings.HasPrefix(got, "xxx") {
			t.Errorf("line %d: %d bytes, ends %q; want at most %d ending %q", i, len(got), got[max(0, len(got)-30):], lastlines.DefaultMaxLen, want)
		}
	}
}
