package stepgraph_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/sluicehq/sluice/platform/stepgraph"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fake runs steps by name: fails says how many tries of a step fail
// (-1: all), block holds a step until released; it records the order steps
// started and ended, the most that ran at once, and the steps not run.
type fake struct {
	nodes []stepgraph.Node
	fails map[string]int
	errs  map[string]error
	// forGood are steps that fail for good at once.
	forGood map[string]bool
	hold    time.Duration
	holds   map[string]time.Duration

	mu         sync.Mutex
	started    []string
	ended      []string
	running    int
	most       int
	runningBy  map[string]int // by pipeline
	mostBy     map[string]int
	notRun     map[string]string
	notRunFail map[string]bool
}

func (f *fake) Run(ctx context.Context, i int, t stepgraph.Try) (stepgraph.Outcome, error) {
	name, try := stepgraph.Label(f.nodes[i].Pipeline, f.nodes[i].Name), t.Number
	f.mu.Lock()
	f.started = append(f.started, fmt.Sprintf("%s#%d", name, try))
	f.running++
	f.most = max(f.most, f.running)
	if f.runningBy == nil {
		f.runningBy, f.mostBy = map[string]int{}, map[string]int{}
	}
	pipeline := f.nodes[i].Pipeline
	f.runningBy[pipeline]++
	f.mostBy[pipeline] = max(f.mostBy[pipeline], f.runningBy[pipeline])
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		f.runningBy[pipeline]--
		f.running--
		f.ended = append(f.ended, name)
		f.mu.Unlock()
	}()
	if err := f.errs[name]; err != nil {
		return stepgraph.Passed, err
	}
	hold := f.hold
	if h, ok := f.holds[name]; ok {
		hold = h
	}
	select {
	case <-time.After(hold):
	case <-ctx.Done():
		return stepgraph.Passed, ctx.Err()
	}
	if f.forGood[name] {
		return stepgraph.FailedForGood, nil
	}
	if n, ok := f.fails[name]; ok && (n < 0 || try <= n) {
		return stepgraph.Failed, nil
	}
	return stepgraph.Passed, nil
}

func (f *fake) NotRun(_ context.Context, i int, reason string, failed bool) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.notRun == nil {
		f.notRun, f.notRunFail = map[string]string{}, map[string]bool{}
	}
	name := stepgraph.Label(f.nodes[i].Pipeline, f.nodes[i].Name)
	f.notRun[name] = reason
	f.notRunFail[name] = failed
	return nil
}

func statuses(nodes []stepgraph.Node, res stepgraph.Result) string {
	var out []string
	for i, n := range nodes {
		out = append(out, stepgraph.Label(n.Pipeline, n.Name)+"="+res.Status[i].String())
	}
	return strings.Join(out, " ")
}

func TestWithoutDependsOnStepsRunInTheFilesOrder(t *testing.T) {
	t.Parallel()
	nodes := []stepgraph.Node{{Name: "a"}, {Name: "b"}, {Name: "c"}}
	f := &fake{nodes: nodes, fails: map[string]int{"b": -1}}
	res, err := stepgraph.Execute(context.Background(), nodes, stepgraph.Facts{}, 4, f)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(f.started, " "); got != "a#1 b#1" {
		t.Errorf("started %s, want a#1 b#1", got)
	}
	if got := statuses(nodes, res); got != "a=succeeded b=failed c=skipped" {
		t.Errorf("statuses %s", got)
	}
	if res.Failed != 1 || f.notRun["c"] != "an earlier step failed" {
		t.Errorf("failed %d, c not run because %q", res.Failed, f.notRun["c"])
	}
	if f.most != 1 {
		t.Errorf("%d steps ran at once, want 1", f.most)
	}
}

func TestDependsOnRunsIndependentStepsInParallelUpToTheLimit(t *testing.T) {
	t.Parallel()
	nodes := []stepgraph.Node{
		{Name: "deps"},
		{Name: "lint", DependsOn: []string{"deps"}},
		{Name: "unit-1", Group: "unit", DependsOn: []string{"deps"}},
		{Name: "unit-2", Group: "unit", DependsOn: []string{"deps"}},
		{Name: "unit-3", Group: "unit", DependsOn: []string{"deps"}},
		{Name: "package", DependsOn: []string{"lint", "unit"}},
	}
	f := &fake{nodes: nodes, hold: 50 * time.Millisecond}
	res, err := stepgraph.Execute(context.Background(), nodes, stepgraph.Facts{}, 2, f)
	if err != nil {
		t.Fatal(err)
	}
	if res.Failed != -1 || slices.ContainsFunc(res.Status, func(s stepgraph.Status) bool { return s != stepgraph.Succeeded }) {
		t.Fatalf("statuses %s", statuses(nodes, res))
	}
	if f.most != 2 {
		t.Errorf("%d steps ran at once, want the limit 2", f.most)
	}
	if f.started[0] != "deps#1" || f.started[len(f.started)-1] != "package#1" || f.ended[0] != "deps" {
		t.Errorf("started %v, ended %v: deps first, package last", f.started, f.ended)
	}
}

func TestAFailureSkipsWhatDependsOnItAndWhatStartsLater(t *testing.T) {
	t.Parallel()
	nodes := []stepgraph.Node{
		{Name: "a"},
		{Name: "b", DependsOn: []string{"a"}},
		{Name: "slow"},
		{Name: "after-slow", DependsOn: []string{"slow"}},
		{Name: "cleanup", When: "always()"},
		{Name: "on-failure", DependsOn: []string{"a", "slow"}, When: `failure() && status("a") == "failed"`},
		{Name: "on-success", DependsOn: []string{"a"}, When: "success()"},
	}
	f := &fake{nodes: nodes, fails: map[string]int{"a": -1}, holds: map[string]time.Duration{"slow": 200 * time.Millisecond}}
	res, err := stepgraph.Execute(context.Background(), nodes, stepgraph.Facts{}, 4, f)
	if err != nil {
		t.Fatal(err)
	}
	want := "a=failed b=skipped slow=succeeded after-slow=skipped cleanup=succeeded on-failure=succeeded on-success=skipped"
	if got := statuses(nodes, res); got != want {
		t.Errorf("statuses\n %s\nwant\n %s", got, want)
	}
	if f.notRun["after-slow"] != "an earlier step failed" || f.notRun["b"] != "step a failed" {
		t.Errorf("reasons %v", f.notRun)
	}
	// cleanup has no depends_on but calls always(): it waits for every step above it.
	if slices.Index(f.ended, "slow") < 0 || slices.Index(f.ended, "slow") > slices.Index(f.ended, "cleanup") {
		t.Errorf("cleanup ended before slow: %v", f.ended)
	}
}

func TestAllowedFailureAndRetries(t *testing.T) {
	t.Parallel()
	nodes := []stepgraph.Node{
		{Name: "flaky", Retries: 2},
		{Name: "lint", AllowFailure: true},
		{Name: "hopeless", Retries: 1, AllowFailure: true},
		{Name: "no-image", Retries: 3, AllowFailure: true},
		{Name: "last"},
	}
	f := &fake{nodes: nodes, fails: map[string]int{"flaky": 2, "lint": -1, "hopeless": -1}, forGood: map[string]bool{"no-image": true}}
	res, err := stepgraph.Execute(context.Background(), nodes, stepgraph.Facts{}, 1, f)
	if err != nil {
		t.Fatal(err)
	}
	if got := statuses(nodes, res); got != "flaky=succeeded lint=failed hopeless=failed no-image=failed last=succeeded" {
		t.Errorf("statuses %s", got)
	}
	if res.Failed != -1 {
		t.Errorf("the stage failed at %d; allowed failures do not fail it", res.Failed)
	}
	if !slices.Equal(res.Tries, []int{3, 1, 2, 1, 1}) {
		t.Errorf("tries %v, want [3 1 2 1 1]", res.Tries)
	}
}

// Each pipeline of a stage is a graph of its own: a failure in one skips
// nothing of another, the order without depends_on and the names that
// depends_on and status() see are the pipeline's, and so are success()
// and failure(); the stage fails with the first failure.
func TestPipelinesAreGraphsOfTheirOwn(t *testing.T) {
	t.Parallel()
	nodes := []stepgraph.Node{
		{Name: "build"},
		{Name: "test"},
		{Name: "report", When: "failure()"},
		{Pipeline: "lint", Name: "build"},
		{Pipeline: "lint", Name: "test", When: `status("build") == "succeeded" && pipeline == "lint"`},
		{Pipeline: "lint", Name: "report", When: "failure()"},
		{Pipeline: "docs", Name: "a", DependsOn: []string{"b"}},
		{Pipeline: "docs", Name: "b"},
	}
	f := &fake{nodes: nodes, fails: map[string]int{"build": -1}, hold: 20 * time.Millisecond}
	res, err := stepgraph.Execute(context.Background(), nodes, stepgraph.Facts{}, 8, f)
	if err != nil {
		t.Fatal(err)
	}
	want := "build=failed test=skipped report=succeeded lint/build=succeeded lint/test=succeeded lint/report=skipped docs/a=succeeded docs/b=succeeded"
	if got := statuses(nodes, res); got != want {
		t.Errorf("statuses\n got %s\nwant %s", got, want)
	}
	if res.Failed != 0 {
		t.Errorf("the stage's failure is step %d, want 0", res.Failed)
	}
	// The pipelines ran side by side: the first steps of each at once.
	if f.most < 3 {
		t.Errorf("at most %d steps ran at once, want the three pipelines' side by side", f.most)
	}
	ended := strings.Join(f.ended, " ")
	if strings.Index(ended, "docs/b") > strings.Index(ended, "docs/a") {
		t.Errorf("docs/a ended before docs/b, which it depends on: %s", ended)
	}
	// A pipeline's names are its own: depends_on, status() of another's.
	for _, bad := range [][]stepgraph.Node{
		{{Name: "a"}, {Pipeline: "lint", Name: "b", DependsOn: []string{"a"}}},
		{{Name: "a"}, {Pipeline: "lint", Name: "b", When: `status("a") == "failed"`}},
	} {
		if err := stepgraph.Check(bad); err == nil || !strings.Contains(err.Error(), "step lint/b") {
			t.Errorf("a step naming another pipeline's step: %v", err)
		}
	}
}

// A pipeline's own parallel limit bounds its steps alone.
func TestAPipelinesParallelLimit(t *testing.T) {
	t.Parallel()
	var nodes []stepgraph.Node
	for _, p := range []string{"", "lint"} {
		for _, n := range []string{"a", "b", "c"} {
			node := stepgraph.Node{Pipeline: p, Name: n}
			if p == "lint" {
				node.PipelineParallel = 1
			}
			if n == "c" {
				node.DependsOn = []string{"a"}
			}
			nodes = append(nodes, node)
		}
	}
	f := &fake{nodes: nodes, hold: 30 * time.Millisecond}
	if _, err := stepgraph.Execute(context.Background(), nodes, stepgraph.Facts{}, 8, f); err != nil {
		t.Fatal(err)
	}
	if f.mostBy["lint"] != 1 || f.mostBy[""] < 2 {
		t.Errorf("at most %d steps of lint at once (want 1), %d of the main pipeline (want 2 or more)", f.mostBy["lint"], f.mostBy[""])
	}
}

func TestConditionsSeeTheRun(t *testing.T) {
	t.Parallel()
	nodes := []stepgraph.Node{
		{Name: "main-only", When: `branch == "main"`},
		{Name: "docs", When: `changed("docs/**", "*.md")`},
		{Name: "code", When: `changed("**/*.go")`},
		{Name: "go-1", Group: "go", Matrix: map[string]string{"go": "1.26"}, When: `matrix.go != "1.26"`},
		{Name: "go-2", Group: "go", Matrix: map[string]string{"go": "1.27"}, When: `matrix.go != "1.26"`},
		{Name: "tagged", When: `event == "tag" && tag startsWith "v"`},
	}
	f := &fake{nodes: nodes}
	facts := stepgraph.Facts{Branch: "dev", Event: "push", Changed: []string{"docs/a/b.md"}, ChangedKnown: true}
	res, err := stepgraph.Execute(context.Background(), nodes, facts, 4, f)
	if err != nil {
		t.Fatal(err)
	}
	if got := statuses(nodes, res); got != "main-only=skipped docs=succeeded code=skipped go-1=skipped go-2=succeeded tagged=skipped" {
		t.Errorf("statuses %s", got)
	}
	if f.notRun["main-only"] != `when branch == "main" is false` {
		t.Errorf("reason %q", f.notRun["main-only"])
	}
	// Changed paths not known: changed() is true.
	f = &fake{nodes: nodes[2:3]}
	res, err = stepgraph.Execute(context.Background(), nodes[2:3], stepgraph.Facts{}, 4, f)
	if err != nil || res.Status[0] != stepgraph.Succeeded {
		t.Errorf("changed() with unknown paths: %v %v", res.Status, err)
	}
}

func TestARunnerErrorStopsTheStage(t *testing.T) {
	t.Parallel()
	broken := errors.New("store down")
	nodes := []stepgraph.Node{
		{Name: "long"},
		{Name: "broken"},
		{Name: "later", DependsOn: []string{"broken"}},
	}
	f := &fake{nodes: nodes, errs: map[string]error{"broken": broken}, hold: time.Minute}
	start := time.Now()
	_, err := stepgraph.Execute(context.Background(), nodes, stepgraph.Facts{}, 4, f)
	if !errors.Is(err, broken) {
		t.Fatalf("err %v, want %v", err, broken)
	}
	if time.Since(start) > 30*time.Second {
		t.Errorf("the long step was not cancelled")
	}
	if slices.Contains(f.started, "later#1") {
		t.Errorf("a step started after the error: %v", f.started)
	}
}

func TestCheckFindsWhatCannotRun(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		nodes []stepgraph.Node
		want  string
		step  int
	}{
		{[]stepgraph.Node{{Name: "a", DependsOn: []string{"b"}}}, "step a: depends_on b: the stage has no step b", 0},
		{[]stepgraph.Node{{Name: "a", DependsOn: []string{"a"}}}, "step a: depends_on a: a step cannot depend on itself", 0},
		{[]stepgraph.Node{{Name: "a", DependsOn: []string{"c"}}, {Name: "b", DependsOn: []string{"a"}}, {Name: "c", DependsOn: []string{"b"}}},
			"depends_on makes a cycle: a -> c -> b -> a", 0},
		{[]stepgraph.Node{{Name: "a"}, {Name: "b", When: `status("nope") == "failed"`}}, `step b: when: 1:8: status("nope"): the stage has no step "nope"`, 1},
		{[]stepgraph.Node{{Name: "a", When: `branch ==`}}, "step a: when: 1:", 0},
		{[]stepgraph.Node{{Name: "a", When: `branch`}}, "step a: when: 1:1: expected bool", 0},
		{[]stepgraph.Node{{Name: "a", When: `changed("[")`}}, `step a: when: 1:9: changed("["): not a valid glob`, 0},
	} {
		err := stepgraph.Check(tc.nodes)
		var p *stepgraph.Problem
		if !errors.As(err, &p) || !strings.HasPrefix(p.Message, tc.want) || p.Step != tc.step {
			t.Errorf("Check: %v (step %v), want %q at step %d", err, p, tc.want, tc.step)
		}
	}
}

// What could make a condition cost more than its length is refused when
// it is compiled: loops over ranges or predicates, let; a status function
// the optimizer would fold away still counts.
func TestConditionsThatCouldLoopAreRefused(t *testing.T) {
	t.Parallel()
	for _, c := range []string{
		`len(map(1..100000000, # * 2)) > 0`,
		`all(["a"], {true})`,
		`let r = 1..2000; all(r, {all(r, {all(r, {true})})})`,
		`let f = always; f()`,
		`len(repeat("a", 100000000)) > 0`,
	} {
		if _, err := stepgraph.Compile(c, nil); err == nil {
			t.Errorf("Compile(%q) accepted it", c)
		}
	}
	nodes := []stepgraph.Node{{Name: "a"}, {Name: "b", When: "always() || true"}, {Name: "c", When: `lower(branch) == "main" && true`}}
	f := &fake{nodes: nodes, fails: map[string]int{"a": -1}}
	res, err := stepgraph.Execute(context.Background(), nodes, stepgraph.Facts{Branch: "MAIN"}, 1, f)
	if err != nil {
		t.Fatal(err)
	}
	if got := statuses(nodes, res); got != "a=failed b=succeeded c=skipped" {
		t.Errorf("statuses %s", got)
	}
}

// Whether a step runs is decided when its dependencies end, not when a
// slot frees: one step at a time or many, an independent step ready from
// the start runs though another failed before it got a slot.
func TestTheParallelLimitDoesNotChangeWhatRuns(t *testing.T) {
	t.Parallel()
	nodes := []stepgraph.Node{{Name: "a"}, {Name: "b"}, {Name: "c", DependsOn: []string{"b"}}}
	for _, parallel := range []int{1, 2} {
		f := &fake{nodes: nodes, fails: map[string]int{"a": -1}, holds: map[string]time.Duration{"b": 100 * time.Millisecond}}
		res, err := stepgraph.Execute(context.Background(), nodes, stepgraph.Facts{}, parallel, f)
		if err != nil {
			t.Fatal(err)
		}
		if got := statuses(nodes, res); got != "a=failed b=succeeded c=skipped" {
			t.Errorf("parallel %d: statuses %s", parallel, got)
		}
	}
}

// An ended context starts nothing and is Execute's error.
func TestAnEndedContextStartsNothing(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	nodes := []stepgraph.Node{{Name: "a"}, {Name: "b", When: "always()"}}
	f := &fake{nodes: nodes}
	if _, err := stepgraph.Execute(ctx, nodes, stepgraph.Facts{}, 2, f); !errors.Is(err, context.Canceled) {
		t.Errorf("err %v, want context.Canceled", err)
	}
	if len(f.started) != 0 {
		t.Errorf("started %v", f.started)
	}
}

// A runner that panics in NotRun leaves no step running behind it.
func TestAPanicLeavesNoStepRunning(t *testing.T) {
	t.Parallel()
	nodes := []stepgraph.Node{{Name: "slow"}, {Name: "a"}, {Name: "skipped", DependsOn: []string{"a"}, When: `branch == "x"`}}
	f := &panicky{fake: fake{nodes: nodes, holds: map[string]time.Duration{"slow": time.Minute}}}
	func() {
		defer func() { _ = recover() }()
		_, _ = stepgraph.Execute(context.Background(), nodes, stepgraph.Facts{}, 2, f)
	}()
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.running != 0 || len(f.started) != 2 {
		t.Errorf("%d steps still run (started %v)", f.running, f.started)
	}
}

type panicky struct{ fake }

func (p *panicky) NotRun(context.Context, int, string, bool) error {
	time.Sleep(50 * time.Millisecond) // slow is under way
	panic("NotRun failed")
}
