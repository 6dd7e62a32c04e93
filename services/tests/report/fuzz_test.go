package report

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/sluicehq/sluice/platform/lastlines"
)

// checkFuzzedReport holds what either parser returns for any input to what the
// test service relies on: an error is an *Error (or a read error, which
// these readers never give); a report's suites have cases, each passed,
// failed or skipped, with a bounded output only when it failed, and every
// string is UTF-8 (protobuf refuses to encode a string that is not, and a
// TestRunFinished that cannot be encoded is never published).
func checkFuzzedReport(t *testing.T, rep Report, err error) {
	t.Helper()
	if err != nil {
		var perr *Error
		if !errors.As(err, &perr) {
			t.Fatalf("error %v (%T) is not an *Error", err, err)
		}
		if len(err.Error()) > maxErrorLength+len("line 2147483647: ") {
			t.Fatalf("an error of %d bytes", len(err.Error()))
		}
		if len(rep.Suites) != 0 {
			t.Fatalf("an error and %d suites", len(rep.Suites))
		}
		return
	}
	for _, s := range rep.Suites {
		if len(s.Cases) == 0 {
			t.Fatalf("suite %q has no cases", s.Name)
		}
		if !utf8.ValidString(s.Name) || len(s.Name) > MaxNameLength {
			t.Fatalf("suite name %q is not UTF-8 or longer than %d bytes", s.Name, MaxNameLength)
		}
		if s.Duration < 0 {
			t.Fatalf("suite %q lasted %v", s.Name, s.Duration)
		}
		for _, c := range s.Cases {
			switch {
			case c.Status != Passed && c.Status != Failed && c.Status != Skipped:
				t.Fatalf("case %q is %v", c.Name, c.Status)
			case c.Status != Failed && c.Output != "":
				t.Fatalf("case %q is %v with output %q", c.Name, c.Status, c.Output)
			case !utf8.ValidString(c.Name) || !utf8.ValidString(c.Output):
				t.Fatalf("case %q or its output is not UTF-8", c.Name)
			case len(c.Name) > MaxNameLength:
				t.Fatalf("case name of %d bytes", len(c.Name))
			case c.Duration < 0:
				t.Fatalf("case %q lasted %v", c.Name, c.Duration)
			}
			lines := strings.Split(c.Output, "\n")
			if len(lines) > MaxOutputLines {
				t.Fatalf("case %q kept %d lines of output", c.Name, len(lines))
			}
			for _, l := range lines {
				if len(l) > lastlines.DefaultMaxLen {
					t.Fatalf("case %q kept a line of %d bytes", c.Name, len(l))
				}
			}
		}
	}
}

// FuzzParseJUnitXML: whatever the file, ParseJUnitXML returns an *Error or
// a report the test service can store and publish. Its corpus,
// testdata/fuzz/FuzzParseJUnitXML, holds hostile files (nesting past
// MaxJUnitDepth, a case's output of many lines, Latin-1). Run it with
// go test -fuzz FuzzParseJUnitXML ./services/tests/report or make fuzz.
func FuzzParseJUnitXML(f *testing.F) {
	for _, s := range []string{
		`<?xml version="1.0" encoding="UTF-8"?>
<testsuites>
  <testsuite name="math" time="1,234.5">
    <testcase classname="math" name="add" time="0.5"/>
    <testcase classname="math.Other" name="sub"><failure message="1 != 2" type="assert">trace
line</failure><system-out>out</system-out></testcase>
    <testcase name="skip"><skipped/></testcase>
    <testcase name="err"><error message="boom"/></testcase>
    <testsuite name="inner"><testcase name="deep"/></testsuite>
  </testsuite>
</testsuites>`,
		"<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?>\n<testsuite name=\"caf\xe9\"><testcase name=\"na\xefve\"/></testsuite>",
		`<testsuite name="s"><testcase name="a"></testsuite>`,
		`<testsuite name="s"><testcase name="a" time="x"/></testsuite>`,
		`<testsuite name="s"><testcase/></testsuite>`,
		"<testsuite name=\"s\"><testcase name=\"a\"/></testsuite>\n<testsuite/>",
		`<?xml version="1.0" encoding="Shift_JIS"?><testsuite/>`,
		"<html>\n<body/></html>",
		"",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		rep, err := ParseJUnitXML(bytes.NewReader(data))
		checkFuzzedReport(t, rep, err)
	})
}

// FuzzParseGoTestJSON: whatever the stream, ParseGoTestJSON returns an
// *Error or a report the test service can store and publish. Its corpus,
// testdata/fuzz/FuzzParseGoTestJSON, holds hostile streams (thousands of
// output fragments without a newline, a line as long as the file,
// invalid UTF-8). Run it with go test -fuzz FuzzParseGoTestJSON
// ./services/tests/report or make fuzz.
func FuzzParseGoTestJSON(f *testing.F) {
	for _, s := range []string{
		`{"Action":"start","Package":"p"}
{"Action":"run","Package":"p","Test":"TestA"}
{"Action":"output","Package":"p","Test":"TestA","Output":"=== RUN   TestA\n"}
{"Action":"output","Package":"p","Test":"TestA","Output":"    a_test.go:3: bad\n"}
{"Action":"fail","Package":"p","Test":"TestA","Elapsed":0.01}
{"Action":"run","Package":"p","Test":"TestA/sub"}
{"Action":"skip","Package":"p","Test":"TestA/sub"}
{"Action":"pass","Package":"p","Test":"TestB","Elapsed":1.5}
{"Action":"fail","Package":"p","Elapsed":1.6}
`,
		`{"ImportPath":"q [q.test]","Action":"build-output","Output":"# q\n"}
{"ImportPath":"q [q.test]","Action":"build-output","Output":"./q_test.go:5:2: undefined: x\n"}
{"ImportPath":"q [q.test]","Action":"build-fail"}
{"Action":"start","Package":"q"}
{"Action":"output","Package":"q","Output":"FAIL\tq [build failed]\n"}
{"Action":"fail","Package":"q","Elapsed":0,"FailedBuild":"q [q.test]"}
`,
		`{"Action":"start","Package":"r"}
{"Action":"run","Package":"r","Test":"TestHang"}
{"Action":"output","Package":"r","Test":"TestHang","Output":"panic: test timed out"}
`,
		`{"Action":"output","Package":"p","Test":"T","Output":"\u0000\ufffd\r\n"}` + "\n",
		`{"Package":"p"}` + "\n",
		"\n\n" + `{"Action":"run","Test":"TestA"}` + "\n",
		"not json\n",
		"",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		rep, err := ParseGoTestJSON(bytes.NewReader(data))
		checkFuzzedReport(t, rep, err)
	})
}
