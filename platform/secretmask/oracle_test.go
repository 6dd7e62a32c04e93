package secretmask

import (
	"bytes"
	"encoding/base64"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

// naiveMask masks text the slow and obvious way: mark every byte of every
// occurrence of every form of every value, then replace each run of marked
// bytes with Mask.
func naiveMask(values []string, text string) string {
	var patterns []string
	for _, v := range values {
		patterns = append(patterns, forms(v)...)
	}
	return naiveMaskPatterns(patterns, text)
}

func naiveMaskPatterns(patterns []string, text string) string {
	marked := make([]bool, len(text))
	for _, p := range patterns {
		if p == "" {
			continue
		}
		for i := 0; i+len(p) <= len(text); i++ {
			if text[i:i+len(p)] == p {
				for j := i; j < i+len(p); j++ {
					marked[j] = true
				}
			}
		}
	}
	var b strings.Builder
	for i := 0; i < len(text); i++ {
		switch {
		case !marked[i]:
			b.WriteByte(text[i])
		case i == 0 || !marked[i-1]:
			b.WriteString(Mask)
		}
	}
	return b.String()
}

// maskRuns masks text with the automaton of patterns alone.
func maskRuns(patterns []string, text string) string {
	var st stream
	st.feed(newAutomaton(patterns), []byte(text), true)
	return string(st.out)
}

func TestAutomatonMatchesNaiveSearch(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(1, 2))
	// A small alphabet makes patterns overlap, share prefixes and end
	// inside each other, and sends the deep (sparse) states through long
	// chains of fail links.
	word := func(alphabet string, n int) string {
		b := make([]byte, n)
		for i := range b {
			b[i] = alphabet[rng.IntN(len(alphabet))]
		}
		return string(b)
	}
	for round := range 2000 {
		alphabet := "ab"
		if round%3 == 0 {
			alphabet = "abc\x00\xff"
		}
		seen := map[string]bool{}
		var patterns []string
		for range 1 + rng.IntN(6) {
			p := word(alphabet, 1+rng.IntN(7))
			if !seen[p] {
				seen[p] = true
				patterns = append(patterns, p)
			}
		}
		text := word(alphabet, rng.IntN(60))
		if got, want := maskRuns(patterns, text), naiveMaskPatterns(patterns, text); got != want {
			t.Fatalf("patterns %q, text %q: got %q, want %q", patterns, text, got, want)
		}
	}
}

func TestAutomatonWithEveryByteValue(t *testing.T) {
	t.Parallel()
	// Patterns that use all 256 byte values (a binary secret) still get a
	// column each.
	all := make([]byte, 256)
	for i := range all {
		all[i] = byte(i)
	}
	patterns := []string{string(all[:128]), string(all[128:]), "\x00\x01\x7f"}
	text := "x" + string(all[120:200]) + "y" + string(all[128:]) + "\x00\x01\x7f\x00"
	if got, want := maskRuns(patterns, text), naiveMaskPatterns(patterns, text); got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
}

func TestScanReportsWhatCouldStartAPattern(t *testing.T) {
	t.Parallel()
	a := newAutomaton([]string{"secret", "cretin"})
	for _, tc := range []struct {
		text string
		hold int
	}{
		{"", 0},
		{"hello world\n", 0},
		{"a sec", 3},
		{"a secre", 5},    // "secre", and "cre" of cretin
		{"a secret", 4},   // "secret" cannot grow; "cret" of cretin can
		{"a cretin", 0},   // a whole pattern that cannot grow
		{"xxs", 1},        // "s"
		{"secretsecr", 4}, // "secr"
	} {
		if _, hold := a.scan([]byte(tc.text), nil); hold != tc.hold {
			t.Errorf("scan(%q) hold = %d, want %d", tc.text, hold, tc.hold)
		}
	}
}

func TestFormsOfAValue(t *testing.T) {
	t.Parallel()
	v := "p@ss w/rd+<ü>&'"
	got := forms(v)
	for _, want := range []string{
		v,
		"cEBzcyB3L3JkKzzDvD4mJw==", // base64
		"cEBzcyB3L3JkKzzDvD4mJw",   // unpadded
		"BAc3Mgdy9yZCs8w7w+Ji",     // v one byte into a base64 stream
		"BAc3Mgdy9yZCs8w7w-Ji",     // the same, URL alphabet
		"wQHNzIHcvcmQrPMO8PiYn",    // v two bytes in
		"704073732077" + "2f72642b3cc3bc3e2627",
		"704073732077" + "2F72642B3CC3BC3E2627",
		"p%40ss+w%2Frd%2B%3C%C3%BC%3E%26%27", // url.QueryEscape
		"p@ss%20w%2Frd+%3C%C3%BC%3E&%27",     // url.PathEscape
		`p@ss w/rd+\u003cü\u003e\u0026'`,     // json.Marshal
		`p@ss w/rd+<ü>&'`,                    // without HTML escaping: v itself
	} {
		if !slices.Contains(got, want) {
			t.Errorf("forms(%q) lacks %q; has %q", v, want, got)
		}
	}
	seen := map[string]bool{}
	for _, f := range got {
		if seen[f] {
			t.Errorf("form %q twice", f)
		}
		seen[f] = true
	}
	if f := forms(""); f != nil {
		t.Errorf("forms(\"\") = %q, want none", f)
	}
}

func TestFormsOfAMultiLineValue(t *testing.T) {
	t.Parallel()
	v := "-----BEGIN KEY-----\n  MIIBOgIBAAJBAKj34\nshort\n-----END KEY-----\n"
	got := forms(v)
	for _, want := range []string{
		v,
		strings.ReplaceAll(v, "\n", "\r\n"),
		"-----BEGIN KEY-----",
		"MIIBOgIBAAJBAKj34",
		"-----END KEY-----",
	} {
		if !slices.Contains(got, want) {
			t.Errorf("forms lacks %q", want)
		}
	}
	if slices.Contains(got, "short") {
		t.Errorf("forms has the line %q, shorter than %d bytes", "short", minLineLen)
	}
	// The CRLF spelling of the value gives the same forms.
	crlf := forms(strings.ReplaceAll(v, "\n", "\r\n"))
	for _, f := range []string{v, "MIIBOgIBAAJBAKj34"} {
		if !slices.Contains(crlf, f) {
			t.Errorf("forms of the CRLF value lack %q", f)
		}
	}
}

// TestEmbeddedBase64IsMasked encodes a value between random neighbours, as
// `echo "user:$TOKEN" | base64` does, and checks that no run of base64
// characters that depends on the value alone is left in the clear.
func TestEmbeddedBase64IsMasked(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(3, 4))
	randBytes := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rng.IntN(256))
		}
		return b
	}
	for range 300 {
		v := string(randBytes(8 + rng.IntN(30)))
		m := New([]string{v})
		before, after := randBytes(rng.IntN(10)), randBytes(rng.IntN(10))
		stream := slices.Concat(before, []byte(v), after)
		for _, e := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding, base64.RawStdEncoding, base64.RawURLEncoding} {
			text := e.EncodeToString(stream)
			masked := m.String(text)
			// v's n bytes stand in the stream as about 4n/3 characters, of
			// which at most two at each end mix in a neighbour.
			if len(masked) > len(text)-(len(v)*4/3-4)+len(Mask) {
				t.Fatalf("value %q between %q and %q: %q masked only to %q", v, before, after, text, masked)
			}
		}
	}
}

func TestStringMatchesNaiveMask(t *testing.T) {
	t.Parallel()
	values := []string{"hunter22", "s3cr3t-T0ken", "line one ok\nline two ok", "a&b<c>"}
	m := New(values)
	for _, text := range []string{
		"",
		"nothing here",
		"hunter22",
		"xhunter22y hunter22hunter22",
		"aHVudGVyMjI= and 68756e7465723232 and 68756E7465723232",
		"s3cr3t-T0ken%0A and s3cr3t-T0ken",
		"line one ok\r\nline two ok",
		"print: line two ok!",
		`{"v":"a\u0026b\u003cc\u003e"}`,
		"a%26b%3Cc%3E",
		"hunter2s3cr3t-T0ken", // overlapping forms of different values
	} {
		if got, want := m.String(text), naiveMask(values, text); got != want {
			t.Errorf("String(%q) = %q, want %q", text, got, want)
		}
	}
}

// writeSplit writes text to a Writer of m in pieces that end at the given
// offsets (ascending), closes it and returns what came out.
func writeSplit(t testing.TB, m *Masker, text []byte, cuts []int) string {
	t.Helper()
	var out bytes.Buffer
	w := m.Writer(&out)
	prev := 0
	for _, c := range append(cuts, len(text)) {
		// A copy, so a Writer that kept the caller's slice would be caught.
		piece := slices.Clone(text[prev:c])
		if n, err := w.Write(piece); n != len(piece) || err != nil {
			t.Fatalf("Write(%q) = %d, %v", piece, n, err)
		}
		clear(piece)
		prev = c
	}
	if err := w.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	return out.String()
}

func FuzzWriterMatchesString(f *testing.F) {
	for _, seed := range []struct {
		v1, v2 string
		text   string
		cuts   []byte
	}{
		{"hunter22", "", "the password is hunter22, ok", []byte{3, 20, 21}},
		{"abcabc", "bca", "abcabcabcabca", []byte{1, 2, 3, 4, 5, 6}},
		{"secret", "cretin", "secretin cretinous secre", []byte{5, 7}},
		{"tok", "", "dG9r tok 746f6b 746F6B", []byte{0, 1, 2, 9}},
		{"multi\nline value", "x", "multi\r\nline value\nmulti", []byte{6, 7}},
		{"s3cr3t-T0ken", "a&b<c>", "user:s3cr3t-T0ken | dXNlcjpzM2NyM3QtVDBrZW4K a\\u0026b", []byte{10, 30}},
		{"", "", "no values at all", []byte{4}},
		{"\x00\xff\x10", "aa", "aaa\x00\xff\x10aa", []byte{1, 1, 8}},
	} {
		f.Add(seed.v1, seed.v2, []byte(seed.text), seed.cuts)
	}
	f.Fuzz(func(t *testing.T, v1, v2 string, text, cutBytes []byte) {
		if len(v1)+len(v2) > 200 || len(text) > 4096 {
			t.Skip()
		}
		values := []string{v1, v2}
		m := New(values)
		want := m.String(string(text))
		if len(text) <= 512 {
			if oracle := naiveMask(values, string(text)); want != oracle {
				t.Fatalf("String(%q) = %q, naive %q", text, want, oracle)
			}
		}
		var cuts []int
		for _, c := range cutBytes {
			if len(text) > 0 {
				cuts = append(cuts, int(c)%len(text))
			}
		}
		slices.Sort(cuts)
		if got := writeSplit(t, m, text, cuts); got != want {
			t.Fatalf("values %q, text %q cut at %v: Writer gave %q, String %q", values, text, cuts, got, want)
		}
	})
}
