// Package secretmask replaces secret values with "***" in text, as a whole
// string or as a stream (the output of a step, written in chunks that may
// split a secret anywhere).
//
// For each value v a Masker masks these forms:
//
//   - v itself;
//   - when v contains a newline: v with "\n" line endings and with "\r\n"
//     line endings, and each line of v that is at least 8 bytes long after
//     trimming surrounding white space (the trimmed line), so a key printed
//     line by line, re-indented or with other line endings is masked too;
//   - base64 of v, with the standard and the URL alphabet, padded and
//     unpadded;
//   - v inside a longer base64 stream (as in `echo "user:$TOKEN" | base64`):
//     for each of the 3 positions v can have relative to the stream's
//     3-byte groups, the run of base64 characters that depend on v's bytes
//     only (the first and last characters, which mix in the neighbouring
//     bytes, are dropped), with either alphabet, when that run is at least
//     8 characters long;
//   - hex of v, lower and upper case;
//   - v URL-encoded by url.QueryEscape and by url.PathEscape;
//   - v as the body of a JSON string (without the quotes), with the HTML
//     escaping of json.Marshal (<, >, & as \u003c, ...) and without it.
//
// Forms that coincide (a value with nothing to escape has one URL form, the
// same as v) are one pattern.
//
// Wherever occurrences of any forms overlap or touch, their union is masked
// as one "***", so no byte of any form stays visible, and the output does
// not depend on the order of the values. The masker masks whatever values
// it is given, however short (the secrets store enforces a minimum length;
// a one-letter value would mask that letter everywhere); it ignores the
// empty string.
//
// Matching uses an Aho–Corasick automaton built once per Masker, so its cost
// per byte of text does not grow with the number of values.
package secretmask

import (
	"errors"
	"fmt"
	"io"
)

// Mask is what replaces each run of masked bytes.
const Mask = "***"

// Masker replaces every known form of a set of secret values with Mask. It
// is immutable and safe for concurrent use; each Writer is used by one
// goroutine at a time.
type Masker struct {
	ac *automaton // nil when there is nothing to mask
}

// New returns a Masker for values (see the package comment for the forms it
// masks). Empty values are ignored.
func New(values []string) *Masker {
	var patterns []string
	seen := map[string]bool{}
	for _, v := range values {
		for _, f := range forms(v) {
			if !seen[f] {
				seen[f] = true
				patterns = append(patterns, f)
			}
		}
	}
	return &Masker{ac: newAutomaton(patterns)}
}

// Empty reports whether the Masker masks nothing (it was given no non-empty
// value).
func (m *Masker) Empty() bool { return m.ac == nil }

// String returns s with every form of every value masked.
func (m *Masker) String(s string) string {
	if m.Empty() {
		return s
	}
	var st stream
	st.feed(m.ac, []byte(s), true)
	return string(st.out)
}

// Writer returns a writer that passes what is written to it on to w with
// every form of every value masked. A value split across writes, at any
// byte, is masked: Write holds back the end of the text that could still
// be the start of a form (at most the longest form less one byte) and
// passes on all the rest. Close passes on what is held back; it does not
// close w. Whatever the writes, the bytes that reach w are those of String
// on everything written. The Writer is not safe for concurrent use.
func (m *Masker) Writer(w io.Writer) io.WriteCloser {
	return &writer{ac: m.ac, w: w}
}

// errClosed is returned by a Write after Close.
var errClosed = errors.New("secretmask: write after Close")

type writer struct {
	ac     *automaton
	w      io.Writer
	st     stream
	closed bool
	err    error // the first error of w, returned from then on
}

func (w *writer) Write(p []byte) (int, error) {
	switch {
	case w.err != nil:
		return 0, w.err
	case w.closed:
		return 0, errClosed
	case w.ac == nil:
		return w.pass(p, len(p))
	}
	w.st.feed(w.ac, p, false)
	return w.pass(w.st.out, len(p))
}

// Close passes on the held-back bytes. Calling it again does nothing.
func (w *writer) Close() error {
	if w.closed {
		return w.err
	}
	w.closed = true
	if w.err != nil || w.ac == nil {
		return w.err
	}
	w.st.feed(w.ac, nil, true)
	_, err := w.pass(w.st.out, 0)
	w.st = stream{}
	return err
}

// pass writes out to w and reports n bytes taken on success.
func (w *writer) pass(out []byte, n int) (int, error) {
	if len(out) == 0 {
		return n, nil
	}
	if _, err := w.w.Write(out); err != nil {
		w.err = fmt.Errorf("secretmask: %w", err)
		return 0, w.err
	}
	return n, nil
}

// maxKeptCap bounds the bytes of each buffer a stream keeps between
// writes; a larger buffer (left by one large write) is let go.
const maxKeptCap = 256 << 10

// stream is the state of masking a text that arrives in pieces.
type stream struct {
	held    []byte // the bytes not passed on yet
	covered int    // how many leading bytes of held a match already covers
	inMask  bool   // the last byte passed on was masked
	runs    []span // scratch
	out     []byte // the output of the last feed
}

// feed masks p, which follows the bytes fed before, and leaves in s.out
// the output for every byte that no later occurrence can cover: all of
// them when final.
func (s *stream) feed(ac *automaton, p []byte, final bool) {
	// What one large write left behind is let go.
	s.out = shrink(s.out, maxKeptCap)
	s.runs = shrink(s.runs, maxKeptCap/16)
	buf := p
	if len(s.held) > 0 {
		s.held = append(s.held, p...)
		buf = s.held
	}
	if s.covered > 0 {
		s.runs = append(s.runs, span{0, s.covered})
	}
	// Every occurrence of a form that ends in p starts in buf: held is all
	// that could be the start of one.
	runs, hold := ac.scan(buf, s.runs)
	s.runs = runs
	cut := len(buf)
	if !final {
		cut -= hold
	}

	pos := 0
	covered, inMask := 0, s.inMask
	for _, r := range runs {
		if r.start >= cut {
			break // found again with the next bytes
		}
		s.out = append(s.out, buf[pos:r.start]...)
		if r.start > 0 || !s.inMask {
			s.out = append(s.out, Mask...)
		}
		pos = min(r.end, cut)
		covered = r.end - pos
		inMask = r.end >= cut
	}
	if pos < cut {
		s.out = append(s.out, buf[pos:cut]...)
		inMask = false
	}
	if cut > 0 {
		s.covered, s.inMask = covered, inMask
	}

	rest := buf[cut:]
	if len(rest) < cap(s.held)/2 {
		s.held = shrink(s.held, maxKeptCap)
	}
	s.held = append(s.held[:0], rest...)
}

// shrink returns s emptied, or nil when it has room for more than limit
// elements.
func shrink[T any](s []T, limit int) []T {
	if cap(s) > limit {
		return nil
	}
	return s[:0]
}
