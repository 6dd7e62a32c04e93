// Package lastlines keeps the last lines of some output in bounded memory:
// the last lines of a failed step that an event carries, a deployment's
// log, a failed test case's output.
package lastlines

import (
	"bytes"
	"strings"
	"sync"

	"github.com/sluicehq/sluice/platform/cut"
)

// DefaultMaxLen is the longest line a Buffer keeps when New is given no
// bound: enough for any line meant for a person, and small enough that an
// event carrying a few dozen lines stays far below the NATS message size.
const DefaultMaxLen = 1024

// Buffer keeps the last n lines added or written to it, each cut to at
// most maxLen bytes with a mark saying how much was cut (cut.Text), and
// counts the lines it no longer keeps. It is safe for concurrent use. Its
// zero value keeps nothing; use New.
type Buffer struct {
	mu     sync.Mutex
	n      int
	maxLen int
	ring   []string // the kept lines; once full, ring[next] is the oldest
	next   int
	total  int // complete lines seen
	// part is an unterminated line from Write: at most maxLen+1 bytes, so
	// that a longer one is known to be too long; partSize is its whole
	// length.
	part     []byte
	partSize int
}

// New keeps the last n lines (none when n < 1), each at most maxLen bytes
// (DefaultMaxLen when maxLen < 1; at least 4). A longer line is cut at a
// character boundary and ends in a mark saying how much was cut, such as
// "… [cut: 63 KiB more]" (only "…" when maxLen is below cut.MinMax).
func New(n, maxLen int) *Buffer {
	if maxLen < 1 {
		maxLen = DefaultMaxLen
	}
	n = max(n, 0)
	return &Buffer{n: n, maxLen: max(maxLen, len(cut.Ellipsis)+1), ring: make([]string, 0, n)}
}

// Add records one line as it is: a newline in it does not split it.
func (b *Buffer) Add(line string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.add(line, len(line))
}

// add records line, the start of a line of size bytes.
func (b *Buffer) add(line string, size int) {
	b.total++
	if b.n == 0 {
		return
	}
	line = keep(line, size, b.maxLen)
	if len(b.ring) < b.n {
		b.ring = append(b.ring, line)
		return
	}
	b.ring[b.next] = line
	b.next = (b.next + 1) % b.n
}

// Write splits p into lines at '\n' (dropping a '\r' before it) and adds
// each; the bytes after the last newline wait for the next Write. However
// long a line runs without a newline, only about maxLen bytes of it are
// held. Write never fails.
func (b *Buffer) Write(p []byte) (int, error) {
	b.Append(string(p))
	return len(p), nil
}

// Append is Write for text held in a string.
func (b *Buffer) Append(text string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for len(text) > 0 {
		i := strings.IndexByte(text, '\n')
		chunk := text
		if i >= 0 {
			chunk = text[:i]
		}
		b.partSize += len(chunk)
		if room := b.maxLen + 1 - len(b.part); len(chunk) > room {
			chunk = chunk[:room]
		}
		b.part = append(b.part, chunk...)
		if i < 0 {
			break
		}
		size := b.partSize
		if len(b.part) == b.partSize && bytes.HasSuffix(b.part, []byte("\r")) {
			size--
		}
		b.add(string(bytes.TrimSuffix(b.part, []byte("\r"))), size)
		b.part, b.partSize = b.part[:0], 0
		text = text[i+1:]
	}
}

// Lines returns the kept lines, oldest first, at most n of them; an
// unterminated line from Write counts as the newest.
func (b *Buffer) Lines() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.lines()
}

func (b *Buffer) lines() []string {
	out := make([]string, 0, len(b.ring)+1)
	out = append(out, b.ring[b.next:]...)
	out = append(out, b.ring[:b.next]...)
	if len(b.part) > 0 {
		out = append(out, keep(string(b.part), b.partSize, b.maxLen))
	}
	if len(out) > b.n {
		out = out[len(out)-b.n:]
	}
	return out
}

// Dropped is how many lines were seen but are not among Lines.
func (b *Buffer) Dropped() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	seen := b.total
	if len(b.part) > 0 {
		seen++
	}
	return seen - len(b.lines())
}

// String returns Lines joined by newlines.
func (b *Buffer) String() string { return strings.Join(b.Lines(), "\n") }

// keep is what is kept of line, the start of a line of size bytes: valid
// UTF-8 (process output may be any bytes; what is kept goes into events
// and API answers, which carry UTF-8 only), cut to maxLen bytes.
func keep(line string, size, maxLen int) string {
	valid := strings.ToValidUTF8(line, "\uFFFD")
	return cut.TextOf(valid, size+len(valid)-len(line), maxLen)
}
