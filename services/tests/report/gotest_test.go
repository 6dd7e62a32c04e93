package report

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// writeFiles writes files (path -> content) under dir.
func writeFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// goTestJSON runs the real `go test -json ./...` over a tiny module and
// returns what it printed.
func goTestJSON(t *testing.T) []byte {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command on PATH")
	}
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{
		"go.mod": "module example.com/sample\n\ngo 1.26\n",
		"calc/calc.go": `package calc

func Add(a, b int) int { return a + b }
`,
		"calc/calc_test.go": `package calc

import "testing"

func TestAdd(t *testing.T) {
	if Add(1, 2) != 3 {
		t.Fatal("1+2 != 3")
	}
}

func TestWrong(t *testing.T) {
	t.Log("checking 2+2")
	if got := Add(2, 2); got != 5 {
		t.Errorf("Add(2, 2) = %d, want 5", got)
	}
}

func TestLater(t *testing.T) { t.Skip("not today") }

func TestTable(t *testing.T) {
	t.Run("zero", func(t *testing.T) {})
	t.Run("negative", func(t *testing.T) {
		if Add(-1, -1) != -2 {
			t.Fatal("bad")
		}
	})
}
`,
		"broken/broken_test.go": `package broken

import "testing"

func TestNothing(t *testing.T) { undefinedFunction() }
`,
		"notests/notests.go": "package notests\n",
	})
	cmd := exec.CommandContext(t.Context(), goBin, "test", "-json", "./...")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=mod", "GOTOOLCHAIN=local")
	out, err := cmd.Output()
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		t.Fatalf("go test -json: %v", err)
	}
	if err == nil {
		t.Fatalf("go test -json passed; the sample has a failing test:\n%s", out)
	}
	return out
}

type wantCase struct {
	suite, name string
	status      Status
	output      []string // substrings of the kept output
}

func checkReport(t *testing.T, rep Report, want []wantCase) {
	t.Helper()
	var got []wantCase
	for _, s := range rep.Suites {
		for _, c := range s.Cases {
			got = append(got, wantCase{suite: s.Name, name: c.Name, status: c.Status})
		}
	}
	if len(got) != len(want) {
		t.Fatalf("got %d cases %v, want %d %v", len(got), got, len(want), want)
	}
	i := 0
	for _, s := range rep.Suites {
		for _, c := range s.Cases {
			w := want[i]
			i++
			if s.Name != w.suite || c.Name != w.name || c.Status != w.status {
				t.Errorf("case %d = %s %s %s, want %s %s %s", i, s.Name, c.Name, c.Status, w.suite, w.name, w.status)
			}
			for _, sub := range w.output {
				if !strings.Contains(c.Output, sub) {
					t.Errorf("case %s output %q lacks %q", c.Name, c.Output, sub)
				}
			}
			if c.Status != Failed && c.Output != "" {
				t.Errorf("case %s is %s but kept output %q", c.Name, c.Status, c.Output)
			}
		}
	}
}

func TestParseGoTestJSONRealSample(t *testing.T) {
	t.Parallel()
	rep, err := ParseGoTestJSON(strings.NewReader(string(goTestJSON(t))))
	if err != nil {
		t.Fatal(err)
	}
	checkReport(t, rep, []wantCase{
		{"example.com/sample/broken", BuildFailedCase, Failed, []string{"undefined: undefinedFunction"}},
		{"example.com/sample/calc", "TestAdd", Passed, nil},
		{"example.com/sample/calc", "TestWrong", Failed, []string{"checking 2+2", "Add(2, 2) = 4, want 5", "--- FAIL: TestWrong"}},
		{"example.com/sample/calc", "TestLater", Skipped, nil},
		{"example.com/sample/calc", "TestTable", Passed, nil},
		{"example.com/sample/calc", "TestTable/zero", Passed, nil},
		{"example.com/sample/calc", "TestTable/negative", Passed, nil},
	})
	if got, want := rep.Counts(), (Counts{Passed: 4, Failed: 2, Skipped: 1}); got != want {
		t.Errorf("counts = %+v, want %+v", got, want)
	}
	for _, s := range rep.Suites {
		if s.Name == "example.com/sample/calc" && s.Duration <= 0 {
			t.Errorf("suite %s has no duration", s.Name)
		}
	}
}

func TestParseGoTestJSON(t *testing.T) {
	t.Parallel()
	var sixty strings.Builder
	sixty.WriteString(`{"Action":"run","Package":"p","Test":"TestLoud"}` + "\n")
	for i := 1; i <= 60; i++ {
		sixty.WriteString(`{"Action":"output","Package":"p","Test":"TestLoud","Output":"line ` + strconv.Itoa(i) + `\n"}` + "\n")
	}
	sixty.WriteString(`{"Action":"fail","Package":"p","Test":"TestLoud","Elapsed":1.5}` + "\n")
	sixty.WriteString(`{"Action":"fail","Package":"p","Elapsed":2}` + "\n")

	tests := []struct {
		name      string
		in        string
		want      []wantCase
		check     func(t *testing.T, rep Report)
		errLine   int
		errSubstr string
	}{
		{
			name: "empty stream",
			in:   "",
		},
		{
			name: "package without test files is left out",
			in: `{"Action":"start","Package":"p"}
{"Action":"output","Package":"p","Output":"?   \tp\t[no test files]\n"}
{"Action":"skip","Package":"p","Elapsed":0}
`,
		},
		{
			name: "package failing after its tests passed (TestMain, leak check)",
			in: `{"Action":"start","Package":"p"}
{"Action":"run","Package":"p","Test":"TestA"}
{"Action":"pass","Package":"p","Test":"TestA","Elapsed":0.01}
{"Action":"output","Package":"p","Output":"goleak: Errors on successful test run: found unexpected goroutines\n"}
{"Action":"output","Package":"p","Output":"FAIL\tp\t0.02s\n"}
{"Action":"fail","Package":"p","Elapsed":0.02}
`,
			want: []wantCase{
				{"p", "TestA", Passed, nil},
				{"p", PackageFailedCase, Failed, []string{"goleak: Errors"}},
			},
		},
		{
			name: "stream cut while a test runs",
			in: `{"Action":"start","Package":"p"}
{"Action":"run","Package":"p","Test":"TestHang"}
{"Action":"output","Package":"p","Test":"TestHang","Output":"=== RUN   TestHang\n"}
`,
			want: []wantCase{{"p", "TestHang", Failed, []string{"=== RUN   TestHang", "(the test did not finish)"}}},
		},
		{
			name: "stream cut after a passing test",
			in: `{"Action":"start","Package":"p"}
{"Action":"run","Package":"p","Test":"TestA"}
{"Action":"pass","Package":"p","Test":"TestA"}
`,
			want: []wantCase{{"p", "TestA", Passed, nil}, {"p", PackageUnfinishedCase, Failed, nil}},
		},
		{
			name: "only the last 50 output lines of a failed case are kept",
			in:   sixty.String(),
			want: []wantCase{{"p", "TestLoud", Failed, []string{"line 11\n", "line 60"}}},
			check: func(t *testing.T, rep Report) {
				c := rep.Suites[0].Cases[0]
				if n := strings.Count(c.Output, "\n") + 1; n != MaxOutputLines {
					t.Errorf("kept %d lines, want %d", n, MaxOutputLines)
				}
				if strings.Contains(c.Output, "line 10\n") {
					t.Errorf("kept line 10: %q", c.Output)
				}
				if c.Duration != 1500*time.Millisecond {
					t.Errorf("duration = %v, want 1.5s", c.Duration)
				}
				if rep.Suites[0].Duration != 2*time.Second {
					t.Errorf("suite duration = %v, want 2s", rep.Suites[0].Duration)
				}
			},
		},
		{
			name: "unknown actions are ignored",
			in: `{"Action":"start","Package":"p"}
{"Action":"run","Package":"p","Test":"TestA"}
{"Action":"pause","Package":"p","Test":"TestA"}
{"Action":"cont","Package":"p","Test":"TestA"}
{"Action":"attr","Package":"p","Test":"TestA","Key":"k","Value":"v"}
{"Action":"pass","Package":"p","Test":"TestA"}
{"Action":"pass","Package":"p"}
`,
			want: []wantCase{{"p", "TestA", Passed, nil}},
		},
		{
			name: "a line that is not JSON",
			in: `{"Action":"start","Package":"p"}
{"Action":"run","Package":"p","Test":"TestA"}
FAIL	p [build failed]
`,
			errLine:   3,
			errSubstr: "not a go test -json event",
		},
		{
			name:      "JSON without an Action",
			in:        `{"Package":"p"}` + "\n",
			errLine:   1,
			errSubstr: `no "Action"`,
		},
		{
			name:      "event without a package",
			in:        "\n\n" + `{"Action":"run","Test":"TestA"}` + "\n",
			errLine:   3,
			errSubstr: "without a Package",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			rep, err := ParseGoTestJSON(strings.NewReader(tt.in))
			if tt.errSubstr != "" {
				var perr *Error
				if !errors.As(err, &perr) {
					t.Fatalf("err = %v, want a *report.Error", err)
				}
				if perr.Line != tt.errLine || !strings.Contains(perr.Error(), tt.errSubstr) {
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
