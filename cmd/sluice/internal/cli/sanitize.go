package cli

import (
	"strings"
	"unicode/utf8"
)

// Sanitize makes text that came from the server safe to print on a
// terminal: step log lines, commit messages, failure reasons, names. It
// removes
//   - escape sequences: CSI (ESC [ … final), OSC (ESC ] … BEL or ST, which
//     carries hyperlinks and window titles), DCS, SOS, PM and APC strings,
//     and two-character escapes (ESC c, ESC 7, …);
//   - C0 controls other than \n and \t (so \r, backspace and bell too) and DEL;
//   - C1 controls (U+0080–U+009F, and the same bytes outside UTF-8, which
//     terminals taking 8-bit controls read as CSI, OSC, …), with the
//     parameters or string a C1 CSI, OSC, DCS, SOS, PM or APC introduces;
//   - bidirectional formatting characters (LRE, RLE, PDF, LRO, RLO, LRI,
//     RLI, FSI, PDI, LRM, RLM, ALM), which can make text read as something
//     it is not.
//
// Other bytes that are not UTF-8 become U+FFFD. A string the terminal
// would have kept reading (an OSC without its terminator) ends at the end
// of the line.
func Sanitize(s string) string {
	if isPlain(s) {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == '\n' || c == '\t':
			b.WriteByte(c)
			i++
		case c == 0x1b:
			i = skipEscape(s, i+1)
		case c < 0x20 || c == 0x7f:
			i++
		case c < utf8.RuneSelf:
			b.WriteByte(c)
			i++
		default:
			r, size := utf8.DecodeRuneInString(s[i:])
			switch {
			case r == utf8.RuneError && size == 1 && c <= 0x9f:
				i = skipC1(s, rune(c), i+1)
			case r == utf8.RuneError && size == 1:
				b.WriteRune(utf8.RuneError)
				i++
			case r <= 0x9f:
				i = skipC1(s, r, i+size)
			case isBidiControl(r):
				i += size
			default:
				b.WriteString(s[i : i+size])
				i += size
			}
		}
	}
	return b.String()
}

// sanitizeLine is Sanitize for one table cell or one line: line breaks and
// tabs become spaces.
func sanitizeLine(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '\n' || r == '\t' {
			return ' '
		}
		return r
	}, Sanitize(s))
}

// isPlain reports whether s is printable ASCII, \n and \t only.
func isPlain(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < 0x20 && c != '\n' && c != '\t') || c >= 0x7f {
			return false
		}
	}
	return true
}

// skipEscape returns where the escape sequence whose ESC is just before i
// ends.
func skipEscape(s string, i int) int {
	if i >= len(s) {
		return i
	}
	switch c := s[i]; {
	case c == '[':
		return skipCSI(s, i+1)
	case c == ']' || c == 'P' || c == 'X' || c == '^' || c == '_':
		return skipControlString(s, i+1)
	case c >= 0x20 && c <= 0x2f: // intermediates, then one final byte
		for i < len(s) && s[i] >= 0x20 && s[i] <= 0x2f {
			i++
		}
		if i < len(s) && s[i] >= 0x30 && s[i] <= 0x7e {
			i++
		}
		return i
	case c >= 0x30 && c <= 0x7e:
		return i + 1
	}
	return i
}

// skipC1 returns where the sequence a C1 control starts ends; i is just
// after the control.
func skipC1(s string, r rune, i int) int {
	switch r {
	case 0x9b: // CSI
		return skipCSI(s, i)
	case 0x9d, 0x90, 0x98, 0x9e, 0x9f: // OSC, DCS, SOS, PM, APC
		return skipControlString(s, i)
	}
	return i
}

// skipCSI skips a CSI's parameter, intermediate and final bytes. A byte
// that cannot be in one ends the sequence and is read as text again.
func skipCSI(s string, i int) int {
	for i < len(s) && s[i] >= 0x30 && s[i] <= 0x3f {
		i++
	}
	for i < len(s) && s[i] >= 0x20 && s[i] <= 0x2f {
		i++
	}
	if i < len(s) && s[i] >= 0x40 && s[i] <= 0x7e {
		i++
	}
	return i
}

// skipControlString skips an OSC, DCS, SOS, PM or APC string up to and
// including its terminator: BEL, ST (ESC \ or C1 ST), CAN or SUB. An ESC
// that does not start ST, or a line break, ends it too but is kept.
func skipControlString(s string, i int) int {
	for i < len(s) {
		switch s[i] {
		case 0x07, 0x18, 0x1a, 0x9c:
			return i + 1
		case '\n':
			return i
		case 0x1b:
			if i+1 < len(s) && s[i+1] == '\\' {
				return i + 2
			}
			return i
		case 0xc2:
			if i+1 < len(s) && s[i+1] == 0x9c {
				return i + 2
			}
		}
		i++
	}
	return i
}

func isBidiControl(r rune) bool {
	return (r >= 0x202a && r <= 0x202e) || (r >= 0x2066 && r <= 0x2069) || r == 0x200e || r == 0x200f || r == 0x061c
}
