package domain

import (
	"fmt"
	"slices"
	"testing"
	"time"
)

func TestDecide(t *testing.T) {
	t.Parallel()
	pass := StepResult{Name: "unit", Duration: time.Second}
	fail := StepResult{Name: "unit", ExitCode: 1, Duration: 2 * time.Second}
	timeout := StepResult{Name: "slow", ExitCode: -1, TimedOut: true, Timeout: 5 * time.Minute}
	ok := Case{Suite: "p", Name: "TestOK", Status: CasePassed}
	a := Case{Suite: "p", Name: "TestA", Status: CaseFailed}
	b := Case{Suite: "p", Name: "TestB", Status: CaseFailed}
	build := Case{Suite: "example.com/x", Name: "[build failed]", Status: CaseFailed}
	many := []Case{}
	for _, n := range []string{"T1", "T2", "T3", "T4", "T5", "T6", "T7"} {
		many = append(many, Case{Suite: "p", Name: n, Status: CaseFailed})
	}

	tests := []struct {
		name       string
		steps      []StepResult
		problems   []string
		cases      []Case
		wantStatus Status
		wantReason string
		wantStep   string
	}{
		{"all passed", []StepResult{pass}, nil, []Case{ok}, StatusPassed, "", ""},
		{"nothing to test", nil, nil, nil, StatusPassed, "", ""},
		{"failed cases", []StepResult{pass}, nil, []Case{ok, a, b}, StatusFailed, "2 tests failed: TestA, TestB", ""},
		{"failed cases and the step that ran them", []StepResult{fail}, nil, []Case{a}, StatusFailed,
			`1 test failed: TestA; step "unit" exited with code 1`, "unit"},
		{"failed step without reports", []StepResult{pass, fail}, nil, nil, StatusFailed, `step "unit" exited with code 1`, "unit"},
		{"timed out step", []StepResult{timeout}, nil, nil, StatusFailed, `step "slow" timed out after 5m0s`, "slow"},
		{"report missing after a failed step", []StepResult{fail}, []string{`report "r.json": no file matches`}, nil, StatusFailed,
			`step "unit" exited with code 1; report "r.json": no file matches`, "unit"},
		{"report missing", []StepResult{pass}, []string{`report "r.json": no file matches`}, []Case{ok}, StatusError,
			`report "r.json": no file matches`, ""},
		{"build failure case", []StepResult{pass}, nil, []Case{build}, StatusFailed, "1 test failed: example.com/x [build failed]", ""},
		{"many failed cases", nil, nil, many, StatusFailed, "7 tests failed: T1, T2, T3, T4, T5 and 2 more", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			o := Decide(tt.steps, tt.problems, nil, tt.cases)
			if o.Status != tt.wantStatus || o.Reason != tt.wantReason {
				t.Errorf("Decide = %s %q, want %s %q", o.Status, o.Reason, tt.wantStatus, tt.wantReason)
			}
			gotStep := ""
			if o.FailedStep != nil {
				gotStep = o.FailedStep.Name
			}
			if gotStep != tt.wantStep {
				t.Errorf("failed step = %q, want %q", gotStep, tt.wantStep)
			}
		})
	}
}

func TestFailedCaseNamesAreCapped(t *testing.T) {
	t.Parallel()
	var cases []Case
	for i := 0; i < 30; i++ {
		cases = append(cases, Case{Suite: "p", Name: "T", Status: CaseFailed}, Case{Suite: "p", Name: "ok", Status: CasePassed})
	}
	o := Outcome{Cases: cases}
	if n := len(o.FailedCaseNames()); n != MaxFailedCases {
		t.Errorf("%d failed case names, want %d", n, MaxFailedCases)
	}
}

func TestPublishedCasesAreBoundedFailedFirst(t *testing.T) {
	t.Parallel()
	var cases []Case
	for i := 0; i < 200; i++ {
		cases = append(cases, Case{Suite: "p", Name: fmt.Sprintf("Pass%d", i), Status: CasePassed})
		if i%50 == 49 {
			cases = append(cases, Case{Suite: "p", Name: fmt.Sprintf("Skip%d", i), Status: CaseSkipped},
				Case{Suite: "p", Name: fmt.Sprintf("Fail%d", i), Status: CaseFailed})
		}
	}
	o := Outcome{Cases: cases}
	positions, omitted := o.PublishedCases()
	if len(positions) != MaxCaseEvents || omitted != len(cases)-MaxCaseEvents {
		t.Fatalf("%d published, %d omitted; want %d and %d", len(positions), omitted, MaxCaseEvents, len(cases)-MaxCaseEvents)
	}
	var names []string
	for _, p := range positions[:10] {
		names = append(names, cases[p].Name)
	}
	want := []string{"Fail49", "Fail99", "Fail149", "Fail199", "Skip49", "Skip99", "Skip149", "Skip199", "Pass0", "Pass1"}
	if !slices.Equal(names, want) {
		t.Errorf("first published %v; want %v", names, want)
	}
	if p, n := (Outcome{Cases: cases[:3]}).PublishedCases(); len(p) != 3 || n != 0 {
		t.Errorf("3 cases: %d published, %d omitted; want all", len(p), n)
	}
}

func TestEndedSteps(t *testing.T) {
	t.Parallel()
	ran := []StepResult{
		{Name: "lint", Duration: time.Second},
		{Name: "unit", ExitCode: 2, Duration: 2 * time.Second},
	}
	got := EndedSteps([]string{"lint", "unit", "e2e"}, ran)
	want := []Step{
		{Name: "lint", Status: StepSucceeded, Duration: time.Second},
		{Name: "unit", Status: StepFailed, ExitCode: 2, Duration: 2 * time.Second},
		{Name: "e2e", Status: StepSkipped},
	}
	if !slices.Equal(got, want) {
		t.Errorf("EndedSteps = %+v, want %+v", got, want)
	}
	for _, tc := range []struct {
		r    StepResult
		want StepStatus
	}{
		{StepResult{}, StepSucceeded},
		{StepResult{ExitCode: 1}, StepFailed},
		{StepResult{ExitCode: -1, TimedOut: true}, StepTimedOut},
		{StepResult{ExitCode: -1, Cancelled: true}, StepCancelled},
	} {
		if got := tc.r.Status(); got != tc.want {
			t.Errorf("%+v.Status() = %s, want %s", tc.r, got, tc.want)
		}
	}
	if got := PendingSteps([]string{"a", "b"}); !slices.Equal(got, []Step{{Name: "a", Status: StepPending}, {Name: "b", Status: StepPending}}) {
		t.Errorf("PendingSteps = %+v", got)
	}
}
