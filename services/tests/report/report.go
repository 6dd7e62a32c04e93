// Package report reads test result files into suites and cases: the event
// stream of `go test -json` and JUnit XML. It knows nothing of test runs,
// storage or transport; the test service stores what it returns.
package report

import (
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/sluicehq/sluice/platform/lastlines"
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
// kept, each cut to lastlines.DefaultMaxLen bytes.
const MaxOutputLines = 50

// MaxNameLength bounds the name of a suite or a case, in bytes: a longer
// one is cut, ending in "…". A name goes into the test run's events and
// failure reason, which must stay far below what NATS carries, whatever a
// report holds.
const MaxNameLength = 1024

// cutName cuts s to MaxNameLength bytes at a character boundary.
func cutName(s string) string {
	if len(s) <= MaxNameLength {
		return s
	}
	keep := MaxNameLength - len("…")
	for keep > 0 && !utf8.RuneStart(s[keep]) {
		keep--
	}
	return s[:keep] + "…"
}

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

// maxErrorLength bounds the message of an Error, in bytes: it may quote
// the report (an element's name), and the test run's failure reason
// carries it.
const maxErrorLength = 1024

// Error is "line N: MSG", MSG cut to maxErrorLength bytes.
func (e *Error) Error() string {
	msg := e.Msg
	if len(msg) > maxErrorLength {
		keep := maxErrorLength - len("…")
		for keep > 0 && !utf8.RuneStart(msg[keep]) {
			keep--
		}
		msg = msg[:keep] + "…"
	}
	if e.Line > 0 {
		return fmt.Sprintf("line %d: %s", e.Line, msg)
	}
	return msg
}

// newOutput keeps the last MaxOutputLines lines of a case's output.
func newOutput() *lastlines.Buffer { return lastlines.New(MaxOutputLines, 0) }

// lastLines returns the last MaxOutputLines lines of s, without trailing
// blank lines.
func lastLines(s string) string {
	out := newOutput()
	out.Append(strings.TrimRight(s, "\n\r\t "))
	return out.String()
}

func seconds(f float64) time.Duration {
	if f <= 0 {
		return 0
	}
	return time.Duration(f * float64(time.Second))
}
