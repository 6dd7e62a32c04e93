// Package report reads test result files into suites and cases: the event
// stream of `go test -json` and JUnit XML. It knows nothing of test runs,
// storage or transport; the test service stores what it returns.
package report

import (
	"fmt"
	"strings"
	"time"
)

// Status is the outcome of one test case.
type Status int

// Case outcomes.
const (
	Passed Status = iota + 1
	Failed
	Skipped
)

func (s Status) String() string {
	switch s {
	case Passed:
		return "passed"
	case Failed:
		return "failed"
	case Skipped:
		return "skipped"
	}
	return fmt.Sprintf("Status(%d)", int(s))
}

// MaxOutputLines is how many trailing lines of a failed case's output are
// kept.
const MaxOutputLines = 50

// Case is one test case.
type Case struct {
	Name     string
	Status   Status
	Duration time.Duration
	// Output is the failure message and output of a failed case (its last
	// MaxOutputLines lines); empty for other cases.
	Output string
}

// Suite is a group of cases: a Go package, a JUnit <testsuite>.
type Suite struct {
	Name     string
	Duration time.Duration
	Cases    []Case
}

// Counts are the number of cases per outcome.
type Counts struct {
	Passed, Failed, Skipped int
}

// Counts counts the suite's cases.
func (s Suite) Counts() Counts {
	var c Counts
	for _, tc := range s.Cases {
		switch tc.Status {
		case Passed:
			c.Passed++
		case Failed:
			c.Failed++
		case Skipped:
			c.Skipped++
		}
	}
	return c
}

// Report is what one report file holds.
type Report struct {
	Suites []Suite
}

// Counts counts the cases of every suite.
func (r Report) Counts() Counts {
	var c Counts
	for _, s := range r.Suites {
		sc := s.Counts()
		c.Passed += sc.Passed
		c.Failed += sc.Failed
		c.Skipped += sc.Skipped
	}
	return c
}

// Error is a problem with a report's content. Line is 1-based, 0 when the
// problem has no position.
type Error struct {
	Line int
	Msg  string
}

func (e *Error) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("line %d: %s", e.Line, e.Msg)
	}
	return e.Msg
}

// tail keeps the last MaxOutputLines lines of text written to it in
// pieces.
type tail struct {
	max   int
	lines []string
	part  string // an unterminated last line
}

func newTail() *tail { return &tail{max: MaxOutputLines} }

func (t *tail) write(s string) {
	s = t.part + s
	t.part = ""
	for {
		i := strings.IndexByte(s, '\n')
		if i < 0 {
			t.part = s
			return
		}
		t.add(s[:i])
		s = s[i+1:]
	}
}

func (t *tail) add(line string) {
	t.lines = append(t.lines, strings.TrimSuffix(line, "\r"))
	if len(t.lines) > 2*t.max {
		t.lines = append(t.lines[:0], t.lines[len(t.lines)-t.max:]...)
	}
}

// String returns the kept lines, at most max, joined by newlines.
func (t *tail) String() string {
	lines := t.lines
	if t.part != "" {
		lines = append(lines[:len(lines):len(lines)], t.part)
	}
	if len(lines) > t.max {
		lines = lines[len(lines)-t.max:]
	}
	return strings.Join(lines, "\n")
}

// lastLines returns the last MaxOutputLines lines of s, without trailing
// blank lines.
func lastLines(s string) string {
	t := newTail()
	t.write(strings.TrimRight(s, "\n\r\t "))
	return t.String()
}

func seconds(f float64) time.Duration {
	if f <= 0 {
		return 0
	}
	return time.Duration(f * float64(time.Second))
}
