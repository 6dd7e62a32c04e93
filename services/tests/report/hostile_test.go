package report

import (
	"bytes"
	"errors"
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"
)

// nestedSuites is a JUnit report of depth elements: a <testsuites> root,
// suites nested in each other, and a case in the innermost.
func nestedSuites(depth int) string {
	return "<testsuites>\n" + strings.Repeat("<testsuite name=\"s\">", depth-2) + `<testcase name="c"/>` +
		strings.Repeat("</testsuite>", depth-2) + "\n</testsuites>\n"
}

// TestJUnitDepthIsBounded: suites nested a million deep would overflow
// the parser's stack, which kills the process (here the stack is bounded
// to 16 MiB, so that a parser without the bound dies after 20 MB of input
// rather than a gigabyte); elements nested in a case would fill the
// decoder's memory. Both are refused past MaxJUnitDepth levels, and a
// report of that depth is read. (Not parallel: it bounds the stack of
// every goroutine.)
func TestJUnitDepthIsBounded(t *testing.T) {
	defer debug.SetMaxStack(debug.SetMaxStack(16 << 20))

	rep, err := ParseJUnitXML(strings.NewReader(nestedSuites(MaxJUnitDepth)))
	if err != nil {
		t.Fatalf("a report %d levels deep: %v", MaxJUnitDepth, err)
	}
	checkReport(t, rep, []wantCase{{"s", "c", Passed, nil}})

	want := "line 2: elements nest more than 100 deep; at most 100 levels are read"
	for name, in := range map[string]string{
		"suites":           nestedSuites(MaxJUnitDepth + 1),
		"a million suites": nestedSuites(1_000_000),
		"in a case":        "<testsuite>\n<testcase name=\"c\">" + strings.Repeat("<x>", 1_000_000) + strings.Repeat("</x>", 1_000_000) + "</testcase></testsuite>",
	} {
		_, err := ParseJUnitXML(strings.NewReader(in))
		var perr *Error
		if !errors.As(err, &perr) || err.Error() != want {
			t.Errorf("%s: %v; want an *Error %q", name, err, want)
		}
	}
}

// outputFragments is a go test -json stream of n output events of a
// failing test, of its package and of its package's build, none with a
// newline: each continues the line the last one began.
func outputFragments(n int) []byte {
	var b bytes.Buffer
	b.WriteString(`{"Action":"run","Package":"p","Test":"T"}` + "\n")
	for range n {
		b.WriteString(`{"Action":"output","Package":"p","Test":"T","Output":"fragment without a newline "}` + "\n")
		b.WriteString(`{"Action":"output","Package":"p","Output":"fragment without a newline "}` + "\n")
		b.WriteString(`{"Action":"build-output","ImportPath":"p","Output":"fragment without a newline "}` + "\n")
	}
	b.WriteString(`{"Action":"fail","Package":"p","Test":"T"}` + "\n")
	b.WriteString(`{"Action":"fail","Package":"p","FailedBuild":"p"}` + "\n")
	return b.Bytes()
}

// allocated is how many bytes f allocates.
func allocated(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// TestGoTestJSONOutputFragmentsCostLinear: output that never ends its line
// is kept to a bounded tail as it comes. Keeping it by appending each
// fragment to the line so far copied the line at every fragment: n
// fragments cost n²/2 of them, 20000 of 27 bytes 5 GB. The bytes the
// parser allocates for 4 times the fragments must be about 4 times, not 16
// times, those for one. (Not parallel: it counts what the process
// allocates.)
func TestGoTestJSONOutputFragmentsCostLinear(t *testing.T) {
	parse := func(in []byte) func() {
		return func() {
			if _, err := ParseGoTestJSON(bytes.NewReader(in)); err != nil {
				t.Fatal(err)
			}
		}
	}
	small, large := outputFragments(2000), outputFragments(8000)
	a, b := allocated(parse(small)), allocated(parse(large))
	t.Logf("2000 fragments: %d KB allocated; 8000: %d KB (%.1f times)", a/1000, b/1000, float64(b)/float64(a))
	if b > 6*a {
		t.Errorf("4 times the fragments allocate %.1f times the bytes (%d KB, %d KB); want about 4", float64(b)/float64(a), a/1000, b/1000)
	}
	rep, err := ParseGoTestJSON(bytes.NewReader(large))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range rep.Suites[0].Cases {
		if len(c.Output) > 2*1024 {
			t.Errorf("case %s kept %d bytes of output: the line is not cut", c.Name, len(c.Output))
		}
	}
}

// BenchmarkGoTestJSONOutputFragments prints what a stream of output
// fragments without a newline costs per fragment at 10^3..10^5 of them: a
// cost that does not grow with the number is linear time.
func BenchmarkGoTestJSONOutputFragments(b *testing.B) {
	for _, n := range []int{1000, 10_000, 100_000} {
		in := outputFragments(n)
		b.Run(fmt.Sprintf("fragments=%d", 3*n), func(b *testing.B) {
			b.SetBytes(int64(len(in)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := ParseGoTestJSON(bytes.NewReader(in)); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(3*n), "ns/fragment")
		})
	}
}

// TestNamesAndMessagesAreBounded: a report's names and the messages that
// quote it go into the test run's events: a name of 100 KB is cut to
// MaxNameLength bytes, a message to maxErrorLength.
func TestNamesAndMessagesAreBounded(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("é", 50_000)
	// MaxNameLength bytes with the 3 of "…": 1021 of the name, cut back to
	// 1020, a character's start (é is 2 bytes).
	cut := long[:1020] + "…"
	junit, err := ParseJUnitXML(strings.NewReader(`<testsuite name="` + long + `"><testcase name="` + long + `"/></testsuite>`))
	if err != nil {
		t.Fatal(err)
	}
	gotest, err := ParseGoTestJSON(strings.NewReader(`{"Action":"pass","Package":"` + long + `","Test":"` + long + `"}` + "\n"))
	if err != nil {
		t.Fatal(err)
	}
	for name, rep := range map[string]Report{"junit": junit, "go-test-json": gotest} {
		if s := rep.Suites[0]; s.Name != cut || s.Cases[0].Name != cut {
			t.Errorf("%s: suite name of %d bytes, case name of %d; want %d bytes ending in …", name, len(s.Name), len(s.Cases[0].Name), len(cut))
		}
	}
	for name, in := range map[string]string{
		"root":     "<" + long + "/>",
		"time":     `<testsuite name="` + long + `" time="x"><testcase name="c"/></testsuite>`,
		"closed":   "<testsuite><" + long + "></testsuite>",
		"encoding": `<?xml version="1.0" encoding="` + long + `"?><testsuite/>`,
	} {
		_, err := ParseJUnitXML(strings.NewReader(in))
		if err == nil || len(err.Error()) > maxErrorLength+len("line 1: ") || !strings.HasSuffix(err.Error(), "…") {
			t.Errorf("%s: an error of %d bytes: %.100v; want one cut to %d bytes", name, len(fmt.Sprint(err)), err, maxErrorLength)
		}
	}
}
