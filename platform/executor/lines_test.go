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

// FuzzLineWriter holds the line writer to a plain reading of its contract,
// however the output is cut into writes: every line is at most max bytes
// and holds no newline, a newline ends a line, a longer line comes in
// pieces of max bytes, and nothing is lost or added.
func FuzzLineWriter(f *testing.F) {
	f.Add([]byte("a\nb\n"), uint8(5), []byte{1, 2})
	f.Add([]byte("abcdefghijkl\n\n\nxyz"), uint8(5), []byte{3})
	f.Add([]byte("abcde\nfghij"), uint8(5), []byte{5, 1})
	f.Add([]byte("\x00\r\n\xff"), uint8(1), []byte{})
	f.Fuzz(func(t *testing.T, data []byte, maxLen uint8, cuts []byte) {
		limit := int(maxLen)%64 + 1
		var want []string
		pieces := strings.Split(string(data), "\n")
		for i, piece := range pieces {
			terminated := i < len(pieces)-1
			if piece == "" {
				if terminated {
					want = append(want, "")
				}
				continue
			}
			for len(piece) > limit {
				want = append(want, piece[:limit])
				piece = piece[limit:]
			}
			want = append(want, piece)
		}
		var got []string
		w := newLineWriter(Stdout, &outputSink{fn: func(_, line string) { got = append(got, line) }}, limit)
		rest := data
		for i := 0; len(rest) > 0; i++ {
			n := len(rest)
			if len(cuts) > 0 {
				n = min(n, int(cuts[i%len(cuts)])%17+1)
			}
			if k, err := w.Write(rest[:n]); k != n || err != nil {
				t.Fatalf("Write of %d bytes = %d, %v", n, k, err)
			}
			rest = rest[n:]
		}
		w.flush()
		if !slices.Equal(got, want) {
			t.Fatalf("max %d, cuts %v:\ngot  %q\nwant %q", limit, cuts, got, want)
		}
	})
}
