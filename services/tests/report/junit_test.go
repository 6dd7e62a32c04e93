package report

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestParseJUnitXML(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		in        string
		want      []wantCase
		check     func(t *testing.T, rep Report)
		errLine   int
		errSubstr string
	}{
		{
			name: "testsuites root as Maven Surefire writes it",
			in: `<?xml version="1.0" encoding="UTF-8"?>
<testsuites name="all" tests="5" failures="1" errors="1" skipped="1" time="3.5">
  <testsuite name="com.example.CalcTest" tests="4" time="1,234.5">
    <properties><property name="java.version" value="21"/></properties>
    <testcase name="adds" classname="com.example.CalcTest" time="0.25"/>
    <testcase name="divides" classname="com.example.CalcTest" time="0.5">
      <failure message="expected:&lt;2&gt; but was:&lt;3&gt;" type="AssertionError">at CalcTest.divides(CalcTest.java:12)</failure>
      <system-out>dividing 6 by 3</system-out>
    </testcase>
    <testcase name="crashes" classname="com.example.CalcTest">
      <error message="NullPointerException"/>
    </testcase>
    <testcase name="later" classname="com.example.CalcTest"><skipped message="disabled"/></testcase>
  </testsuite>
  <testsuite name="com.example.EmptyTest" tests="0"/>
  <testsuite name="com.example.OtherTest">
    <testcase name="works" classname="com.example.OtherTest" time="0.125"/>
  </testsuite>
</testsuites>
`,
			want: []wantCase{
				{"com.example.CalcTest", "adds", Passed, nil},
				{"com.example.CalcTest", "divides", Failed, []string{"expected:<2> but was:<3>", "CalcTest.java:12", "dividing 6 by 3"}},
				{"com.example.CalcTest", "crashes", Failed, []string{"NullPointerException"}},
				{"com.example.CalcTest", "later", Skipped, nil},
				{"com.example.OtherTest", "works", Passed, nil},
			},
			check: func(t *testing.T, rep Report) {
				if d := rep.Suites[0].Duration; d != 1234500*time.Millisecond {
					t.Errorf("suite time = %v, want 1234.5s", d)
				}
				if d := rep.Suites[1].Duration; d != 125*time.Millisecond {
					t.Errorf("suite without time = %v, want the sum of its cases 125ms", d)
				}
				if d := rep.Suites[0].Cases[1].Duration; d != 500*time.Millisecond {
					t.Errorf("case time = %v, want 500ms", d)
				}
				if got, want := rep.Counts(), (Counts{Passed: 2, Failed: 2, Skipped: 1}); got != want {
					t.Errorf("counts = %+v, want %+v", got, want)
				}
			},
		},
		{
			name: "bare testsuite root as pytest writes it",
			in: `<?xml version="1.0" encoding="utf-8"?><testsuite name="pytest" errors="0" failures="1" skipped="0" tests="2" time="0.03"><testcase classname="tests.test_math" name="test_add" time="0.001" /><testcase classname="tests.test_math" name="test_sub" time="0.002"><failure message="assert 1 == 2">def test_sub():
&gt;       assert 1 == 2
E       assert 1 == 2</failure></testcase></testsuite>`,
			want: []wantCase{
				{"pytest", "tests.test_math.test_add", Passed, nil},
				{"pytest", "tests.test_math.test_sub", Failed, []string{"assert 1 == 2", ">       assert 1 == 2"}},
			},
		},
		{
			name: "nested suites become suites of their own",
			in: `<testsuites>
  <testsuite name="outer">
    <testcase name="a"/>
    <testsuite name="inner"><testcase name="b"/></testsuite>
    <testsuite><testcase name="c"><skipped/></testcase></testsuite>
  </testsuite>
</testsuites>
<!-- written by a test -->
`,
			want: []wantCase{
				{"outer", "a", Passed, nil},
				{"inner", "b", Passed, nil},
				{"outer", "c", Skipped, nil},
			},
		},
		{
			name: "ISO-8859-1 encoding",
			in:   "<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?>\n<testsuite name=\"caf\xe9\"><testcase name=\"na\xefve\"/></testsuite>",
			want: []wantCase{{"café", "naïve", Passed, nil}},
		},
		{
			name: "mismatched end tag",
			in: `<testsuites>
  <testsuite name="s">
    <testcase name="a">
    </testsuite>
</testsuites>`,
			errLine:   4,
			errSubstr: "XML syntax error",
		},
		{
			name: "file cut short",
			in: `<testsuites>
  <testsuite name="s">
    <testcase name="a"/>`,
			errLine:   3,
			errSubstr: "unexpected EOF",
		},
		{
			name:      "not a JUnit report",
			in:        "<html>\n<body/></html>",
			errLine:   1,
			errSubstr: "root element is <html>",
		},
		{
			name:      "empty file",
			in:        "",
			errSubstr: "no root element",
		},
		{
			name: "testcase without a name",
			in: `<testsuite name="s">
  <testcase name="a"/>
  <testcase classname="s" time="1"/>
</testsuite>`,
			errLine:   3,
			errSubstr: "<testcase> without a name attribute",
		},
		{
			name: "time that is not a number",
			in: `<testsuite name="s">
  <testcase name="a" time="fast"/>
</testsuite>`,
			errLine:   2,
			errSubstr: `time "fast" is not a number`,
		},
		{
			name:      "a second root element",
			in:        "<testsuite name=\"s\"><testcase name=\"a\"/></testsuite>\n<testsuite/>",
			errLine:   2,
			errSubstr: "after the root element",
		},
		{
			name:      "unsupported encoding",
			in:        `<?xml version="1.0" encoding="Shift_JIS"?><testsuite/>`,
			errSubstr: `unsupported encoding "Shift_JIS"`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			rep, err := ParseJUnitXML(strings.NewReader(tt.in))
			if tt.errSubstr != "" {
				var perr *Error
				if !errors.As(err, &perr) {
					t.Fatalf("err = %v, want a *report.Error", err)
				}
				if (tt.errLine != 0 && perr.Line != tt.errLine) || !strings.Contains(perr.Error(), tt.errSubstr) {
					t.Fatalf("err = %q (line %d), want line %d containing %q", perr, perr.Line, tt.errLine, tt.errSubstr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			checkReport(t, rep, tt.want)
			if tt.check != nil {
				tt.check(t, rep)
			}
		})
	}
}
