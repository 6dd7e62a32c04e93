package executor

import (
	"bytes"
	"sync"
)

// outputSink serializes calls to a Spec.Output function shared by the
// stdout and stderr line writers.
type outputSink struct {
	mu sync.Mutex
	fn func(stream, line string)
}

func (s *outputSink) emit(stream string, line []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fn(stream, string(line))
}

// lineWriter is an io.Writer that splits what is written to it into lines
// (at most max bytes long) and hands each one to the sink. It is used by one
// goroutine at a time; flush delivers a final unterminated line.
type lineWriter struct {
	stream string
	sink   *outputSink
	max    int
	buf    []byte
}

func newLineWriter(stream string, sink *outputSink, max int) *lineWriter {
	return &lineWriter{stream: stream, sink: sink, max: max}
}

func (w *lineWriter) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		room := w.max - len(w.buf)
		i := bytes.IndexByte(p, '\n')
		switch {
		case i >= 0 && i <= room:
			// The line ends within the limit.
			w.buf = append(w.buf, p[:i]...)
			w.emit()
			p = p[i+1:]
		case i < 0 && len(p) <= room:
			// No newline yet: keep the bytes until more arrive.
			w.buf = append(w.buf, p...)
			p = nil
		default:
			// The line is longer than max: deliver a full chunk.
			w.buf = append(w.buf, p[:room]...)
			p = p[room:]
			w.emit()
		}
	}
	return n, nil
}

// flush delivers a buffered line that has no trailing newline.
func (w *lineWriter) flush() {
	if len(w.buf) > 0 {
		w.emit()
	}
}

func (w *lineWriter) emit() {
	w.sink.emit(w.stream, w.buf)
	w.buf = w.buf[:0]
}
