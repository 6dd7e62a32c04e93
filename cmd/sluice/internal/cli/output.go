package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/mattn/go-isatty"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// style is how status words look: with symbols and colour on a terminal,
// plain words otherwise (what scripts and the e2e tests read).
type style struct {
	symbols bool // ✓ ✗ ● … before status words
	color   bool // ANSI colours (never with NO_COLOR)
}

// terminalStyle decides the style for stdout. Symbols need a terminal;
// colour needs a terminal, an empty $NO_COLOR (https://no-color.org: any
// non-empty value turns colour off) and a $TERM other than "dumb".
func terminalStyle(tty bool, getenv func(string) string) style {
	if !tty {
		return style{}
	}
	return style{symbols: true, color: getenv("NO_COLOR") == "" && getenv("TERM") != "dumb"}
}

// isTerminal reports whether w is a terminal: a file whose descriptor is a
// tty (or a Cygwin/MSYS pty, which go-isatty also recognises).
func isTerminal(w io.Writer) bool {
	f, ok := w.(interface{ Fd() uintptr })
	if !ok {
		return false
	}
	return isatty.IsTerminal(f.Fd()) || isatty.IsCygwinTerminal(f.Fd())
}

// tone is the kind of a status, which picks its symbol and colour.
type tone int

const (
	toneNone tone = iota
	toneOK
	toneFailed
	toneActive
	toneWaiting
	toneMuted
)

// toneOf maps the status words of every service's enums to a tone.
func toneOf(word string) tone {
	switch word {
	case "succeeded", "verified", "passed", "deployed", "published":
		return toneOK
	case "failed", "bad", "dead", "error", "timed_out":
		return toneFailed
	case "running", "deploying", "verifying":
		return toneActive
	case "queued", "pending":
		return toneWaiting
	case "skipped", "cancelled", "rolled_back":
		return toneMuted
	}
	return toneNone
}

// looks is a tone's symbol and its SGR colour parameter.
func (t tone) looks() (symbol, sgr string) {
	switch t {
	case toneOK:
		return "✓", "32" // green
	case toneFailed:
		return "✗", "31" // red
	case toneActive:
		return "●", "33" // yellow
	case toneWaiting:
		return "…", "90" // grey
	case toneMuted:
		return "-", "90"
	}
	return " ", ""
}

// paint colours s for its tone when colour is on.
func (st style) paint(t tone, s string) string {
	if _, sgr := t.looks(); st.color && sgr != "" {
		return "\x1b[" + sgr + "m" + s + "\x1b[0m"
	}
	return s
}

// status is a status word as the user reads it: "succeeded", or on a
// terminal "✓ succeeded" in green. width pads the word (before colouring)
// so that a column of them lines up; 0 pads nothing.
func (st style) status(word string, width int) string {
	t := toneOf(word)
	if width > 0 {
		word = padRight(word, width)
	}
	if st.symbols {
		symbol, _ := t.looks()
		word = symbol + " " + word
	}
	return st.paint(t, word)
}

func padRight(s string, width int) string {
	if n := utf8.RuneCountInString(s); n < width {
		return s + strings.Repeat(" ", width-n)
	}
	return s
}

// table prints rows in columns two spaces apart; the last column is not
// padded. Cells may hold the style's colours: widths count what shows.
type table struct {
	rows [][]string
}

func (t *table) add(cells ...string) { t.rows = append(t.rows, cells) }

func (t *table) write(w io.Writer) error {
	var widths []int
	for _, r := range t.rows {
		for i, c := range r {
			if i >= len(widths) {
				widths = append(widths, 0)
			}
			widths[i] = max(widths[i], shownWidth(c))
		}
	}
	var b strings.Builder
	for _, r := range t.rows {
		var line strings.Builder
		for i, c := range r {
			line.WriteString(c)
			if i < len(r)-1 {
				line.WriteString(strings.Repeat(" ", widths[i]-shownWidth(c)+2))
			}
		}
		b.WriteString(strings.TrimRight(line.String(), " "))
		b.WriteByte('\n')
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// shownWidth is how many cells s takes: its runes less the style's escape
// sequences (the only ones left after Sanitize).
func shownWidth(s string) int { return utf8.RuneCountInString(Sanitize(s)) }

func printJSON(w io.Writer, m proto.Message) error {
	b, err := protojson.MarshalOptions{Multiline: true, Indent: "  "}.Marshal(m)
	if err != nil {
		return fmt.Errorf("encode JSON: %w", err)
	}
	_, err = fmt.Fprintln(w, string(b))
	return err
}

// printJSONLine writes v as one line of JSON.
func printJSONLine(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}

// enumWord is an enum value as a user reads it: RUN_STATUS_FAILED is "failed".
func enumWord(name, prefix string) string {
	return strings.ToLower(strings.TrimPrefix(name, prefix))
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	return s
}

func indentLines(s, indent string) string {
	return strings.ReplaceAll(strings.TrimRight(s, "\n"), "\n", "\n"+indent)
}

// truncate shortens s to n runes, the last one an ellipsis.
func truncate(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n-1]) + "…"
}

func firstNonEmpty(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}

func ago(t time.Time) string {
	if t.IsZero() || t.Unix() == 0 {
		return "-"
	}
	d := time.Since(t).Round(time.Second)
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds ago", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm ago", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh ago", int(d.Hours()))
	}
	return t.Local().Format("2006-01-02")
}

func shortSHA(s string) string {
	if len(s) > 10 {
		return s[:10]
	}
	return s
}
