package report

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/sluicehq/sluice/platform/lastlines"
)

// Names of the synthetic cases that stand for a package that failed
// without a failing test.
const (
	// BuildFailedCase: the package's test binary did not compile.
	BuildFailedCase = "[build failed]"
	// PackageFailedCase: the package failed outside any test (TestMain,
	// a leak check, a panic in init).
	PackageFailedCase = "[package failed]"
	// PackageUnfinishedCase: the stream ended before the package did (the
	// go command was killed, a timeout).
	PackageUnfinishedCase = "[package did not finish]"
)

// goTestEvent is one line of `go test -json` (cmd/test2json), plus the
// build events the go command adds since Go 1.24.
type goTestEvent struct {
	Action      string
	Package     string
	Test        string
	Elapsed     float64
	Output      string
	ImportPath  string
	FailedBuild string
}

type goTest struct {
	name    string
	status  Status // 0 until the test ends
	elapsed float64
	output  *lastlines.Buffer
}

type goPackage struct {
	name        string
	tests       map[string]*goTest
	order       []*goTest
	output      *lastlines.Buffer
	action      string // pass, fail or skip once the package ended
	elapsed     float64
	failedBuild string
}

func (p *goPackage) test(name string) *goTest {
	t, ok := p.tests[name]
	if !ok {
		t = &goTest{name: name, output: newOutput()}
		p.tests[name] = t
		p.order = append(p.order, t)
	}
	return t
}

// ParseGoTestJSON reads the output of `go test -json`: one suite per
// package (in the order the packages appear), one case per test and
// subtest ("TestX/sub"). A package that failed without a failing test
// becomes a failed case named BuildFailedCase, PackageFailedCase or
// PackageUnfinishedCase. Packages without tests are left out. A line that
// is not a test2json event is an *Error with its line number.
func ParseGoTestJSON(r io.Reader) (Report, error) {
	br := bufio.NewReader(r)
	pkgs := map[string]*goPackage{}
	var order []*goPackage
	pkg := func(name string) *goPackage {
		p, ok := pkgs[name]
		if !ok {
			p = &goPackage{name: name, tests: map[string]*goTest{}, output: newOutput()}
			pkgs[name] = p
			order = append(order, p)
		}
		return p
	}
	buildOutput := map[string]*lastlines.Buffer{}

	for lineNo := 1; ; lineNo++ {
		line, err := br.ReadBytes('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			return Report{}, fmt.Errorf("read: %w", err)
		}
		if trimmed := bytes.TrimSpace(line); len(trimmed) > 0 {
			var ev goTestEvent
			if jerr := json.Unmarshal(trimmed, &ev); jerr != nil {
				return Report{}, &Error{Line: lineNo, Msg: fmt.Sprintf("not a go test -json event: %v", jerr)}
			}
			if ev.Action == "" {
				return Report{}, &Error{Line: lineNo, Msg: `not a go test -json event: no "Action"`}
			}
			switch ev.Action {
			case "build-output":
				t, ok := buildOutput[ev.ImportPath]
				if !ok {
					t = newOutput()
					buildOutput[ev.ImportPath] = t
				}
				t.Append(ev.Output)
			case "start", "run", "output", "pass", "fail", "skip":
				if ev.Package == "" {
					return Report{}, &Error{Line: lineNo, Msg: fmt.Sprintf("%q event without a Package", ev.Action)}
				}
				applyGoTestEvent(pkg(ev.Package), ev)
			default:
				// pause, cont, bench, attr, build-fail and actions added later
				// carry nothing we keep.
			}
		}
		if errors.Is(err, io.EOF) {
			break
		}
	}

	var rep Report
	for _, p := range order {
		if s, ok := p.suite(buildOutput); ok {
			rep.Suites = append(rep.Suites, s)
		}
	}
	return rep, nil
}

func applyGoTestEvent(p *goPackage, ev goTestEvent) {
	if ev.Test == "" {
		switch ev.Action {
		case "output":
			p.output.Append(ev.Output)
		case "pass", "fail", "skip":
			p.action, p.elapsed, p.failedBuild = ev.Action, ev.Elapsed, ev.FailedBuild
		}
		return
	}
	t := p.test(ev.Test)
	switch ev.Action {
	case "output":
		t.output.Append(ev.Output)
	case "pass":
		t.status, t.elapsed = Passed, ev.Elapsed
	case "fail":
		t.status, t.elapsed = Failed, ev.Elapsed
	case "skip":
		t.status, t.elapsed = Skipped, ev.Elapsed
	}
}

func (p *goPackage) suite(buildOutput map[string]*lastlines.Buffer) (Suite, bool) {
	s := Suite{Name: cutName(p.name), Duration: seconds(p.elapsed)}
	failed := false
	for _, t := range p.order {
		c := Case{Name: cutName(t.name), Status: t.status, Duration: seconds(t.elapsed)}
		if c.Status == 0 {
			// Started but never ended: the package died under it.
			c.Status = Failed
			t.output.Append("\n(the test did not finish)\n")
		}
		if c.Status == Failed {
			failed = true
			c.Output = lastLines(t.output.String())
		}
		s.Cases = append(s.Cases, c)
	}
	if !failed {
		switch {
		case p.action == "fail" && p.failedBuild != "":
			out := newOutput()
			if b, ok := buildOutput[p.failedBuild]; ok {
				out.Append(b.String() + "\n")
			}
			out.Append(p.output.String())
			s.Cases = append(s.Cases, Case{Name: BuildFailedCase, Status: Failed, Output: lastLines(out.String())})
		case p.action == "fail":
			s.Cases = append(s.Cases, Case{Name: PackageFailedCase, Status: Failed, Output: lastLines(p.output.String())})
		case p.action == "":
			s.Cases = append(s.Cases, Case{Name: PackageUnfinishedCase, Status: Failed, Output: lastLines(p.output.String())})
		}
	}
	return s, len(s.Cases) > 0
}
