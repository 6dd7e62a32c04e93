// Package stepgraph runs the steps of a stage (build or test) as the
// pipeline orders them: a graph of depends_on, independent steps in
// parallel up to a limit, each step under its when: condition, tried again
// up to its retry count, and allowed to fail when it says so. The services
// that run steps give it a Runner (what running, or not running, one step
// means for them); it decides what runs when.
//
// A stage none of whose steps has depends_on runs its steps one after the
// other, in the file's order (each depends on the step above it), as
// pipelines did before depends_on. Once one step names depends_on, a step
// without it depends on nothing, except that a step whose condition calls
// success(), failure(), always() or status() waits for every step above
// it. Whether a step runs is decided when the steps it waits for have
// ended, not when a slot frees: the parallel limit changes when steps run,
// not which.
//
// A stage may hold the steps of several pipelines (the pipeline files of
// a run, Node.Pipeline): each pipeline's steps are a graph of their own.
// What is said above holds within one pipeline: depends_on and status()
// name its steps, its steps run one after the other when none of them has
// depends_on, and success() and failure() see its failures only. The
// pipelines' graphs run side by side under the stage's parallel limit
// (and each under its own, Node.PipelineParallel); a failure in one fails
// the stage but skips no step of another.
package stepgraph

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
)

// Node is one step of a stage as the graph sees it.
type Node struct {
	// Pipeline is the pipeline the step is of ("" for the main one).
	Pipeline string
	Name     string
	// Group is the matrix step the node is a cell of ("" for none):
	// depends_on and status() may name the group for all its cells.
	Group string
	// Matrix are the cell's values by axis.
	Matrix    map[string]string
	DependsOn []string
	// When is the step's condition ("" for none).
	When string
	// Retries is how many more times a failed step runs.
	Retries int
	// AllowFailure: the step's failure does not fail the stage.
	AllowFailure bool
	// PipelineParallel is the most steps of the node's pipeline that run
	// at once (0: no bound but the stage's).
	PipelineParallel int
}

// Status is where a step ended.
type Status int

// The statuses of a step.
const (
	Pending Status = iota
	Succeeded
	StepFailed
	Skipped
)

func (s Status) String() string {
	switch s {
	case Succeeded:
		return "succeeded"
	case StepFailed:
		return "failed"
	case Skipped:
		return "skipped"
	default:
		return "pending"
	}
}

// Outcome is how one try of a step ended.
type Outcome int

// The outcomes of a try.
const (
	// Passed: the step succeeded.
	Passed Outcome = iota
	// Failed: the step failed (an exit code, a time-out); it is tried
	// again while it has retries left.
	Failed
	// FailedForGood: the step failed in a way another try would not
	// change (it could not start).
	FailedForGood
)

// Try is one try of a step: the Number-th of at most Of.
type Try struct{ Number, Of int }

// Last says no try follows this one if it fails.
func (t Try) Last() bool { return t.Number >= t.Of }

// Runner is what running one step means to a service.
type Runner interface {
	// Run runs step i once; an error means the stage cannot go on (the
	// context ended, the store failed) and ends Execute.
	Run(ctx context.Context, i int, try Try) (Outcome, error)
	// NotRun records that step i does not run, and why; failed says the
	// step counts as failed (its condition could not be evaluated).
	NotRun(ctx context.Context, i int, reason string, failed bool) error
}

// Result is where each step of a stage ended.
type Result struct {
	Status []Status
	// Tries is how many times each step ran.
	Tries []int
	// Failed is the first step (in the order they ended) whose failure
	// fails the stage, -1 for none.
	Failed int
}

// Problem is a graph that cannot run: Step (an index into the nodes) and
// what is wrong with it.
type Problem struct {
	Step    int
	Message string
}

func (p *Problem) Error() string { return p.Message }

// Check finds what makes nodes impossible to run: a depends_on naming no
// step (or itself), a condition that does not compile, a cycle.
func Check(nodes []Node) error {
	_, err := plan(nodes)
	return err
}

// compiled is a graph ready to run: each node's dependencies as indexes
// (deps: every step it waits for; needs: those its depends_on names, which
// must succeed), its condition compiled.
type compiled struct {
	nodes []Node
	deps  [][]int
	needs [][]int
	when  []*Condition
}

func plan(nodes []Node) (*compiled, error) {
	c := &compiled{nodes: nodes, deps: make([][]int, len(nodes)), needs: make([][]int, len(nodes)), when: make([]*Condition, len(nodes))}
	// Names are a pipeline's: each key is the pipeline, NUL, the name.
	byName := map[string][]int{}
	names := map[string][]string{}
	dependent := map[string]bool{} // a step of the pipeline has depends_on
	for i, n := range nodes {
		byName[scoped(n.Pipeline, n.Name)] = append(byName[scoped(n.Pipeline, n.Name)], i)
		names[n.Pipeline] = append(names[n.Pipeline], n.Name)
		if n.Group != "" && n.Group != n.Name {
			if _, seen := byName[scoped(n.Pipeline, n.Group)]; !seen {
				names[n.Pipeline] = append(names[n.Pipeline], n.Group)
			}
			byName[scoped(n.Pipeline, n.Group)] = append(byName[scoped(n.Pipeline, n.Group)], i)
		}
		if len(n.DependsOn) > 0 {
			dependent[n.Pipeline] = true
		}
	}
	above := map[string][]int{} // the steps of each pipeline so far
	for i, n := range nodes {
		if n.When != "" {
			cond, err := Compile(n.When, names[n.Pipeline])
			if err != nil {
				return nil, &Problem{Step: i, Message: fmt.Sprintf("step %s: when: %v", Label(n.Pipeline, n.Name), err)}
			}
			c.when[i] = cond
		}
		earlier := above[n.Pipeline]
		above[n.Pipeline] = append(earlier, i)
		switch {
		case !dependent[n.Pipeline] && len(earlier) > 0:
			c.deps[i] = []int{earlier[len(earlier)-1]}
		case len(n.DependsOn) == 0 && c.when[i] != nil && c.when[i].ownsStatus:
			c.deps[i] = slices.Clone(earlier)
		}
		for _, d := range n.DependsOn {
			idx, ok := byName[scoped(n.Pipeline, d)]
			if !ok || slices.Contains(idx, i) {
				why := "the stage has no step " + d
				if n.Pipeline != "" {
					why = "pipeline " + n.Pipeline + " has no step " + d
				}
				if ok {
					why = "a step cannot depend on itself"
				}
				return nil, &Problem{Step: i, Message: fmt.Sprintf("step %s: depends_on %s: %s", Label(n.Pipeline, n.Name), d, why)}
			}
			c.needs[i] = append(c.needs[i], idx...)
		}
		slices.Sort(c.needs[i])
		c.needs[i] = slices.Compact(c.needs[i])
		c.deps[i] = append(c.deps[i], c.needs[i]...)
		slices.Sort(c.deps[i])
		c.deps[i] = slices.Compact(c.deps[i])
	}
	if cycle := c.cycle(); cycle != nil {
		var path []string
		for _, i := range cycle {
			path = append(path, Label(nodes[i].Pipeline, nodes[i].Name))
		}
		return nil, &Problem{Step: cycle[0], Message: "depends_on makes a cycle: " + strings.Join(path, " -> ")}
	}
	return c, nil
}

// cycle returns the steps of a cycle of dependencies (the first step again
// at the end), nil when there is none.
func (c *compiled) cycle() []int {
	const (
		unseen = iota
		onPath
		done
	)
	mark := make([]int, len(c.nodes))
	var path []int
	var visit func(i int) []int
	visit = func(i int) []int {
		mark[i] = onPath
		path = append(path, i)
		for _, d := range c.deps[i] {
			switch mark[d] {
			case onPath:
				from := slices.Index(path, d)
				return append(slices.Clone(path[from:]), d)
			case unseen:
				if cyc := visit(d); cyc != nil {
					return cyc
				}
			}
		}
		path = path[:len(path)-1]
		mark[i] = done
		return nil
	}
	for i := range c.nodes {
		if mark[i] == unseen {
			if cyc := visit(i); cyc != nil {
				return cyc
			}
		}
	}
	return nil
}

// Execute runs nodes with r: a step starts once its dependencies have
// ended and its condition held then, at most parallel at once (at least
// one), in the file's order.
// It returns when every step has ended or been passed over, or at the
// first error of r (after the steps under way have returned: their
// context is cancelled).
func Execute(ctx context.Context, nodes []Node, facts Facts, parallel int, r Runner) (Result, error) {
	c, err := plan(nodes)
	if err != nil {
		return Result{}, err
	}
	x := &execution{c: c, facts: facts, r: r,
		res: Result{Status: make([]Status, len(nodes)), Tries: make([]int, len(nodes)), Failed: -1}}
	parallel = max(parallel, 1)

	type ended struct {
		i   int
		out Outcome
		err error
	}
	// Buffered for every step: a step's goroutine never waits on the loop,
	// even when the loop has returned (a panic in r): the deferred cancel
	// then stops the steps, and Wait waits for them.
	done := make(chan ended, len(nodes))
	var wg sync.WaitGroup
	defer wg.Wait()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	const (
		waiting = iota // for its dependencies
		queued         // decided to run, waiting for a free slot
		started
		over
	)
	state := make([]int, len(nodes))
	running, finished := 0, 0
	byPipeline := map[string]int{} // the steps running of each pipeline
	var firstErr error
	for finished < len(nodes) {
		if firstErr == nil && ctx.Err() != nil {
			firstErr = context.Cause(ctx)
		}
		// Decide on every step whose dependencies have ended, when they
		// end (passing one over may let others be decided): whether it runs
		// does not depend on when a slot frees.
		for progressed := true; progressed && firstErr == nil; {
			progressed = false
			for i := range nodes {
				if state[i] != waiting || !x.depsEnded(i) {
					continue
				}
				progressed = true
				run, reason, failed := x.decide(i)
				if run {
					state[i] = queued
					continue
				}
				state[i] = over
				finished++
				x.end(i, map[bool]Status{false: Skipped, true: StepFailed}[failed])
				if err := r.NotRun(ctx, i, reason, failed); err != nil {
					firstErr = err
					cancel()
					break
				}
			}
		}
		for i := 0; firstErr == nil && i < len(nodes) && running < parallel; i++ {
			if state[i] != queued {
				continue
			}
			if limit := nodes[i].PipelineParallel; limit > 0 && byPipeline[nodes[i].Pipeline] >= limit {
				continue
			}
			state[i] = started
			running++
			byPipeline[nodes[i].Pipeline]++
			tries := max(nodes[i].Retries, 0) + 1
			wg.Go(func() {
				e := ended{i: i}
				for n := 1; ; n++ {
					x.tried(i, n)
					e.out, e.err = r.Run(ctx, i, Try{Number: n, Of: tries})
					if e.err != nil || e.out != Failed || n >= tries || ctx.Err() != nil {
						break
					}
				}
				done <- e
			})
		}
		if running == 0 {
			if firstErr == nil && finished < len(nodes) {
				firstErr = errors.New("stepgraph: no step can start") // plan refuses cycles: a bug
			}
			break
		}
		e := <-done
		running--
		byPipeline[nodes[e.i].Pipeline]--
		finished++
		state[e.i] = over
		switch {
		case e.err != nil:
			if firstErr == nil {
				firstErr = e.err
			}
			cancel()
		case e.out != Passed:
			x.end(e.i, StepFailed)
		default:
			x.end(e.i, Succeeded)
		}
	}
	return x.result(), firstErr
}

// execution is the state of one Execute.
type execution struct {
	c     *compiled
	facts Facts
	r     Runner
	mu    sync.Mutex
	res   Result
	// failing are the pipelines a step of which has failed the stage.
	failing map[string]bool
}

func (x *execution) tried(i, try int) {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.res.Tries[i] = try
}

func (x *execution) end(i int, s Status) {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.res.Status[i] = s
	if s != StepFailed || x.c.nodes[i].AllowFailure {
		return
	}
	if x.res.Failed < 0 {
		x.res.Failed = i
	}
	if x.failing == nil {
		x.failing = map[string]bool{}
	}
	x.failing[x.c.nodes[i].Pipeline] = true
}

func (x *execution) result() Result {
	x.mu.Lock()
	defer x.mu.Unlock()
	return Result{Status: slices.Clone(x.res.Status), Tries: slices.Clone(x.res.Tries), Failed: x.res.Failed}
}

func (x *execution) depsEnded(i int) bool {
	x.mu.Lock()
	defer x.mu.Unlock()
	for _, d := range x.c.deps[i] {
		if x.res.Status[d] == Pending {
			return false
		}
	}
	return true
}

// decide says whether step i runs and, when it does not, why, and whether
// not running it counts as a failure.
func (x *execution) decide(i int) (run bool, reason string, failed bool) {
	n := x.c.nodes[i]
	cond := x.c.when[i]
	if cond == nil || !cond.ownsStatus {
		for _, d := range x.c.needs[i] {
			if st := x.statusOf(d); st == Skipped || (st == StepFailed && !x.c.nodes[d].AllowFailure) {
				return false, fmt.Sprintf("step %s %s", Label(x.c.nodes[d].Pipeline, x.c.nodes[d].Name), st), false
			}
		}
		if x.failed(n.Pipeline) {
			return false, "an earlier step failed", false
		}
	}
	if cond == nil {
		return true, "", false
	}
	ok, err := cond.eval(x.facts, n.Pipeline, n.Matrix, pipelineState{x, n.Pipeline})
	if err != nil {
		return false, "its condition could not be evaluated: " + err.Error(), true
	}
	if !ok {
		return false, fmt.Sprintf("when %s is false", cond), false
	}
	return true, "", false
}

func (x *execution) statusOf(i int) Status {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.res.Status[i]
}

// pipelineState is what the conditions of one pipeline's steps read.
type pipelineState struct {
	x        *execution
	pipeline string
}

func (p pipelineState) status(name string) string { return p.x.status(p.pipeline, name) }
func (p pipelineState) failed() bool              { return p.x.failed(p.pipeline) }

// status is status(name) of a condition of a step of pipeline: a step's
// status, or a matrix step's (failed if a cell failed, pending if one has
// not ended, skipped if every cell was, else succeeded).
func (x *execution) status(pipeline, name string) string {
	x.mu.Lock()
	defer x.mu.Unlock()
	var cells []Status
	for i, n := range x.c.nodes {
		if n.Pipeline == pipeline && (n.Name == name || n.Group == name) {
			cells = append(cells, x.res.Status[i])
		}
	}
	switch {
	case len(cells) == 0:
		return Pending.String()
	case slices.Contains(cells, StepFailed):
		return StepFailed.String()
	case slices.Contains(cells, Pending):
		return Pending.String()
	case !slices.ContainsFunc(cells, func(s Status) bool { return s != Skipped }):
		return Skipped.String()
	default:
		return Succeeded.String()
	}
}

// failed says a step of pipeline has failed and fails the stage.
func (x *execution) failed(pipeline string) bool {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.failing[pipeline]
}

// scoped is the key of a step's name within its pipeline.
func scoped(pipeline, name string) string { return pipeline + "\x00" + name }

// Label is how a step is named where the stage's steps are listed
// together: "<pipeline>/<name>", or its name alone for the main pipeline.
func Label(pipeline, name string) string {
	if pipeline == "" {
		return name
	}
	return pipeline + "/" + name
}
