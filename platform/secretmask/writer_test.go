package secretmask

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"strings"
	"testing"
)

func TestWriterEverySplit(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		values []string
		text   string
	}{
		{"plain", []string{"hunter22"}, "pw=hunter22; again hunter22\n"},
		{"overlapping values", []string{"abcdef12", "ef12ghij"}, "xabcdef12ghij abcdef12ef12ghij\n"},
		{"repeated prefix", []string{"aaab"}, "aaaaaaab aab aaab\n"},
		{"encodings", []string{"s3cr3t!"}, "czNjcjN0IQ== 733363723374 s3cr3t%21\n"},
		{"multi-line", []string{"first line\nsecond line"}, "first line\r\nsecond line\n  second line\n"},
		{"at both ends", []string{"edge-value"}, "edge-value middle edge-value"},
		{"nothing to mask", []string{"absent-value"}, "absent-valu absent-valuE\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			m := New(tc.values)
			text := []byte(tc.text)
			want := m.String(tc.text)
			for _, v := range tc.values {
				if strings.Contains(want, v) {
					t.Fatalf("String(%q) = %q shows %q", tc.text, want, v)
				}
			}
			check := func(cuts []int) {
				t.Helper()
				if got := writeSplit(t, m, text, cuts); got != want {
					t.Fatalf("cut at %v: %q, want %q", cuts, got, want)
				}
			}
			check(nil)
			every := make([]int, 0, len(text))
			for i := range len(text) {
				every = append(every, i)
				for j := i; j < len(text); j++ {
					check([]int{i, j})
				}
			}
			check(every) // a byte at a time
		})
	}
}

// TestWriterKeepsCoveredBytesMasked: the Writer holds back bytes that a
// match covers when they could also start the next one; when the next
// write brings only a shorter match among them ("b"), the covered bytes
// past it stay masked. FuzzWriterMatchesString found the Writer showing
// the "c" of the last "abcabc" here (its input is in
// testdata/fuzz/FuzzWriterMatchesString).
func TestWriterKeepsCoveredBytesMasked(t *testing.T) {
	t.Parallel()
	m := New([]string{"abcabc", "b"})
	text := []byte("abcabcabcabca")
	if got, want := writeSplit(t, m, text, []int{1, 2, 3, 4, 5, 6}), "***a"; got != want || m.String(string(text)) != want {
		t.Fatalf("Writer %q, String %q; want %q", got, m.String(string(text)), want)
	}
}

func TestWriterPassesOnWhatCannotStartASecret(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	w := New([]string{"hunter22"}).Writer(&out)
	step := func(in, want string) {
		t.Helper()
		if _, err := w.Write([]byte(in)); err != nil {
			t.Fatal(err)
		}
		if out.String() != want {
			t.Fatalf("after Write(%q): %q, want %q", in, out.String(), want)
		}
	}
	step("build ok\n", "build ok\n")
	step("token: hun", "build ok\ntoken: ")
	step("ter2", "build ok\ntoken: ")
	step("2 and hu", "build ok\ntoken: *** and ")
	step("mm\n", "build ok\ntoken: *** and humm\n")
	step("tail h", "build ok\ntoken: *** and humm\ntail ")
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if want := "build ok\ntoken: *** and humm\ntail h"; out.String() != want {
		t.Fatalf("after Close: %q, want %q", out.String(), want)
	}
}

func TestWriterHoldsBackAtMostTheLongestFormLessOne(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(5, 6))
	values := []string{"abababababc", "bcbcbcbcd"}
	m := New(values)
	w, ok := m.Writer(io.Discard).(*writer)
	if !ok {
		t.Fatal("Writer is not a *writer")
	}
	for range 5000 {
		n := rng.IntN(20)
		p := make([]byte, n)
		for i := range p {
			p[i] = "abcd"[rng.IntN(4)]
		}
		if _, err := w.Write(p); err != nil {
			t.Fatal(err)
		}
		if len(w.st.held) > m.ac.maxLen-1 {
			t.Fatalf("holds %d bytes (%q); the longest form has %d", len(w.st.held), w.st.held, m.ac.maxLen)
		}
	}
}

func TestWriterMemoryStaysBounded(t *testing.T) {
	t.Parallel()
	const chunk = 32 << 10
	w, ok := New([]string{"hunter22"}).Writer(io.Discard).(*writer)
	if !ok {
		t.Fatal("Writer is not a *writer")
	}
	line := []byte("log line with hunter22 in it and then hunt")
	p := bytes.Repeat(line, chunk/len(line))
	for range 8 << 20 / len(p) {
		if _, err := w.Write(p); err != nil {
			t.Fatal(err)
		}
	}
	// One large write is let go once done.
	if _, err := w.Write(bytes.Repeat(line, 1<<20/len(line))); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(p); err != nil {
		t.Fatal(err)
	}
	if c := cap(w.st.held); c > maxKeptCap {
		t.Errorf("held has capacity %d", c)
	}
	if c := cap(w.st.runs) * 16; c > maxKeptCap {
		t.Errorf("runs have capacity %d bytes", c)
	}
	if c := cap(w.st.out); c > maxKeptCap {
		t.Errorf("out has capacity %d", c)
	}
}

// recorder is a destination that records what it gets and whether it was
// closed.
type recorder struct {
	bytes.Buffer
	closed bool
	err    error
}

func (r *recorder) Write(p []byte) (int, error) {
	if r.err != nil {
		return 0, r.err
	}
	return r.Buffer.Write(p)
}

func (r *recorder) Close() error {
	r.closed = true
	return nil
}

func TestWriterClose(t *testing.T) {
	t.Parallel()
	dst := &recorder{}
	w := New([]string{"hunter22"}).Writer(dst)
	if _, err := w.Write([]byte("ends with hunter2")); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := w.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
	}
	if got := dst.String(); got != "ends with hunter2" {
		t.Errorf("got %q", got)
	}
	if dst.closed {
		t.Error("Close closed the destination")
	}
	if n, err := w.Write([]byte("x")); n != 0 || !errors.Is(err, errClosed) {
		t.Errorf("Write after Close = %d, %v", n, err)
	}
}

func TestWriterReportsTheDestinationsError(t *testing.T) {
	t.Parallel()
	boom := errors.New("disk full")
	dst := &recorder{err: boom}
	w := New([]string{"hunter22"}).Writer(dst)
	if n, err := w.Write([]byte("some text\n")); n != 0 || !errors.Is(err, boom) {
		t.Fatalf("Write = %d, %v; want 0 and %v", n, err, boom)
	}
	dst.err = nil
	if _, err := w.Write([]byte("more\n")); !errors.Is(err, boom) {
		t.Errorf("second Write: %v, want the first error again", err)
	}
	if err := w.Close(); !errors.Is(err, boom) {
		t.Errorf("Close: %v, want the first error again", err)
	}
}

func TestEmptyMasker(t *testing.T) {
	t.Parallel()
	for _, values := range [][]string{nil, {}, {""}} {
		m := New(values)
		if !m.Empty() {
			t.Errorf("New(%q).Empty() = false", values)
		}
		if got := m.String("text"); got != "text" {
			t.Errorf("String = %q", got)
		}
		var out bytes.Buffer
		w := m.Writer(&out)
		if _, err := w.Write([]byte("partial")); err != nil {
			t.Fatal(err)
		}
		if out.String() != "partial" {
			t.Errorf("Writer holds back %q", out.String())
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if New([]string{"", "x"}).Empty() {
		t.Error("a Masker with a value is Empty")
	}
}

func TestMasking(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		values []string
		text   string
		want   string
	}{
		{"short values are masked too", []string{"ab"}, "cabd", "c***d"},
		{"overlapping values are one run", []string{"abcdef12", "ef12ghij"}, "<abcdef12ghij>", "<***>"},
		{"touching occurrences are one run", []string{"abcdef12", "ef12ghij"}, "<abcdef12ef12ghij>", "<***>"},
		{"separate occurrences", []string{"hunter22"}, "hunter22 hunter22", "*** ***"},
		{"base64", []string{"hunter22"}, "aHVudGVyMjI= aHVudGVyMjI", "*** ***"},
		{"embedded base64", []string{"hunter22"}, "dXNlcjpodW50ZXIyMgo=", "dXNlcjp***go="},
		{"hex", []string{"hunter22"}, "68756e7465723232 68756E7465723232", "*** ***"},
		{"url", []string{"a b&c/d"}, "a+b%26c%2Fd a%20b&c%2Fd", "*** ***"},
		{"json", []string{`say "<hi>"`}, `"say \"\u003chi\u003e\"" "say \"<hi>\""`, `"***" "***"`},
		{"line of a multi-line value", []string{"key line one\nkey line two"}, "> key line two\n", "> ***\n"},
		{"CRLF multi-line value", []string{"key line one\nkey line two"}, "key line one\r\nkey line two", "***"},
		{"duplicate values", []string{"hunter22", "hunter22"}, "hunter22", "***"},
		{"invalid UTF-8", []string{"\xff\xfe\xfd"}, "a\xff\xfe\xfdb", "a***b"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := New(tc.values).String(tc.text); got != tc.want {
				t.Errorf("String(%q) = %q, want %q", tc.text, got, tc.want)
			}
		})
	}
}
