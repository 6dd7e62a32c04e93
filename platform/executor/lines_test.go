package executor

import (
	"slices"
	"strings"
	"testing"
)

func TestLineWriterSplitsAcrossWrites(t *testing.T) {
	for _, tc := range []struct {
		name   string
		writes []string
		want   []string
	}{
		{"whole lines", []string{"a\nb\n"}, []string{"a", "b"}},
		{"line split over writes", []string{"he", "llo\nwor", "ld\n"}, []string{"hello", "world"}},
		{"empty lines", []string{"\n\na\n"}, []string{"", "", "a"}},
		{"partial last line", []string{"a\nrest"}, []string{"a", "rest"}},
		{"carriage return kept", []string{"a\r\n"}, []string{"a\r"}},
		{"long line", []string{"abcdefghijkl\n"}, []string{"abcde", "fghij", "kl"}},
		{"exactly max", []string{"abcde\n"}, []string{"abcde"}},
		{"exactly max, newline later", []string{"abcde", "\n", "f"}, []string{"abcde", "f"}},
		{"long line over writes", []string{"ab", "cde", "fg", "hijkl"}, []string{"abcde", "fghij", "kl"}},
		{"nothing", nil, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got []string
			sink := &outputSink{fn: func(stream, line string) {
				if stream != Stdout {
					t.Errorf("stream = %q", stream)
				}
				got = append(got, line)
			}}
			w := newLineWriter(Stdout, sink, 5)
			for _, s := range tc.writes {
				n, err := w.Write([]byte(s))
				if n != len(s) || err != nil {
					t.Fatalf("Write(%q) = %d, %v", s, n, err)
				}
			}
			w.flush()
			if !slices.Equal(got, tc.want) {
				t.Errorf("lines = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestLineWriterDoesNotAliasBuffer(t *testing.T) {
	var got []string
	w := newLineWriter(Stderr, &outputSink{fn: func(_, line string) { got = append(got, line) }}, 64)
	buf := []byte("first\n")
	_, _ = w.Write(buf)
	copy(buf, "XXXXX\n")
	_, _ = w.Write([]byte(strings.Repeat("z", 3) + "\n"))
	if !slices.Equal(got, []string{"first", "zzz"}) {
		t.Errorf("lines = %q", got)
	}
}
