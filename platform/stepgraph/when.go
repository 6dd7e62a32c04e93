package stepgraph

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/file"
	"github.com/expr-lang/expr/parser"
	"github.com/expr-lang/expr/vm"

	"github.com/sluicehq/sluice/platform/pathglob"
)

// A step's when: condition is an expression of expr-lang
// (https://expr-lang.org) that gives a boolean. It sees these names:
//
//	branch      the run's branch ("" for a tag)
//	tag         the tag, when the run's ref is refs/tags/<tag>
//	ref         the run's full ref
//	event       "push" (a poll or a webhook found the commit), "tag" (the
//	            same, for a tag), "pull_request" (a pull or merge request
//	            was opened, reopened or pushed to), "schedule" (a
//	            schedule of on.schedule came due) or "manual"
//	commit      the commit's full hash
//	repository  the repository's name
//	pipeline    the name of the pipeline the step is of: its file's under
//	            .sluice/ ("lint" for .sluice/lint.yaml), "" for .sluice.yaml
//	matrix      the step's matrix values, by axis name (a map)
//
// and these functions:
//
//	changed(glob...)  a path the run's commits changed matches one of
//	                  the globs ("**" for any folders); true when the
//	                  changed paths are not known
//	status(step)      "succeeded", "failed", "skipped" or "pending" (not
//	                  ended yet) of a step of the stage, or of every cell
//	                  of a matrix step at once
//	success()         no step of the stage has failed so far
//	failure()         a step of the stage has failed
//	always()          true
//
// When the stage holds several pipelines, status, success and failure see
// the steps of the step's own pipeline only (see the package's comment).
//
// A condition that calls none of success, failure, always and status is
// taken as success() && (the condition), and also needs the step's
// dependencies to have succeeded: as in GitHub Actions, a step runs after
// a failure only when its condition says so.

// allowedBuiltins are the only builtins of expr-lang a condition may call:
// the string functions; the others (all, map, filter, repeat, ...) loop,
// and a short condition could run for minutes.
var allowedBuiltins = []string{"len", "lower", "upper", "trim", "trimPrefix", "trimSuffix"}

// MaxConditionLength bounds a when: condition, in bytes.
const MaxConditionLength = 1024

// maxConditionNodes bounds a condition's syntax tree.
const maxConditionNodes = 200

// Facts are what a condition knows of the run.
type Facts struct {
	Branch, Tag, Ref, Event, Commit, Repository string
	// Changed are the paths the run's commits changed; ChangedKnown says
	// they are known (else changed() is true).
	Changed      []string
	ChangedKnown bool
}

// env is what a condition is compiled against and evaluated in.
type env struct {
	Branch     string            `expr:"branch"`
	Tag        string            `expr:"tag"`
	Ref        string            `expr:"ref"`
	Event      string            `expr:"event"`
	Commit     string            `expr:"commit"`
	Repository string            `expr:"repository"`
	Pipeline   string            `expr:"pipeline"`
	Matrix     map[string]string `expr:"matrix"`

	ChangedFn func(globs ...string) bool `expr:"changed"`
	StatusFn  func(step string) string   `expr:"status"`
	SuccessFn func() bool                `expr:"success"`
	FailureFn func() bool                `expr:"failure"`
	AlwaysFn  func() bool                `expr:"always"`
}

// statusFunctions are the functions that make a condition decide on its
// own whether the step runs after a failure.
var statusFunctions = []string{"success", "failure", "always", "status"}

// Condition is a compiled when: condition.
type Condition struct {
	source  string
	program *vm.Program
	// ownsStatus: the condition calls success, failure, always or status.
	ownsStatus bool
}

// ConditionError is a condition that does not compile: Line and Column
// (both from 1) are its position inside the condition's text.
type ConditionError struct {
	Line, Column int
	Message      string
}

func (e *ConditionError) Error() string {
	return fmt.Sprintf("%d:%d: %s", e.Line, e.Column, e.Message)
}

// Compile checks and compiles a when: condition. steps are the names a
// status() call may name (the stage's steps, and its matrix steps' own
// names); a status() of another name, or of a name that is not a string
// literal, is an error.
func Compile(source string, steps []string) (*Condition, error) {
	if len(source) > MaxConditionLength {
		return nil, &ConditionError{Line: 1, Column: 1, Message: fmt.Sprintf("the condition is %d bytes; at most %d", len(source), MaxConditionLength)}
	}
	if strings.TrimSpace(source) == "" {
		return nil, &ConditionError{Line: 1, Column: 1, Message: "the condition is empty"}
	}
	program, tree, err := CompileExpression("a condition", source, env{}, maxConditionNodes, expr.AsBool())
	if err != nil {
		return nil, err
	}
	c := &Condition{source: source, program: program}
	v := &calls{source: source, steps: steps}
	node := tree.Node
	ast.Walk(&node, v)
	if v.err != nil {
		return nil, v.err
	}
	c.ownsStatus = v.ownsStatus
	return c, nil
}

// String is the condition's text.
func (c *Condition) String() string { return c.source }

// calls checks the function calls of a condition.
type calls struct {
	source     string
	steps      []string
	ownsStatus bool
	err        error
}

func (v *calls) Visit(node *ast.Node) {
	if v.err != nil {
		return
	}
	call, ok := (*node).(*ast.CallNode)
	if !ok {
		return
	}
	callee, ok := call.Callee.(*ast.IdentifierNode)
	if !ok {
		return
	}
	if slices.Contains(statusFunctions, callee.Value) {
		v.ownsStatus = true
	}
	switch callee.Value {
	case "status":
		if len(call.Arguments) != 1 {
			return // the type check has refused it
		}
		name, ok := call.Arguments[0].(*ast.StringNode)
		if !ok {
			v.err = v.at(call.Arguments[0], "status() takes a step's name as a quoted string")
			return
		}
		if !slices.Contains(v.steps, name.Value) {
			v.err = v.at(call.Arguments[0], fmt.Sprintf("status(%q): the stage has no step %q", name.Value, name.Value))
		}
	case "changed":
		for _, arg := range call.Arguments {
			glob, ok := arg.(*ast.StringNode)
			if !ok {
				v.err = v.at(arg, "changed() takes globs as quoted strings")
				return
			}
			if !pathglob.Valid(glob.Value) {
				v.err = v.at(arg, fmt.Sprintf("changed(%q): not a valid glob", glob.Value))
				return
			}
		}
	}
}

// at is a ConditionError at node.
func (v *calls) at(node ast.Node, msg string) error { return errorAt(v.source, node, msg) }

// errorAt is a ConditionError at node of source.
func errorAt(source string, node ast.Node, msg string) *ConditionError {
	e := (&file.Error{Location: node.Location(), Message: msg}).Bind(file.NewSource(source))
	return &ConditionError{Line: max(e.Line, 1), Column: e.Column + 1, Message: msg}
}

// CompileExpression compiles what (its errors say "in a condition", "in
// a cache key"), an expression of expr-lang, against env, as
// conditions and cache keys are: with the string builtins alone, at most
// maxNodes nodes, and kind (expr.AsBool(), expr.AsKind(...)); it refuses
// what could make an expression cost more than its length (predicates,
// ranges, let: the looping builtins are not enabled at all). The error is
// a *ConditionError; tree is the expression as written (the compiler's
// optimizer folds constants, which would hide calls).
func CompileExpression(what, source string, env any, maxNodes uint, kind expr.Option) (*vm.Program, *parser.Tree, error) {
	opts := []expr.Option{expr.Env(env), kind, expr.MaxNodes(maxNodes), expr.DisableAllBuiltins()}
	for _, name := range allowedBuiltins {
		opts = append(opts, expr.EnableBuiltin(name))
	}
	program, err := expr.Compile(source, opts...)
	if err != nil {
		var fe *file.Error
		if errors.As(err, &fe) {
			return nil, nil, &ConditionError{Line: max(fe.Line, 1), Column: fe.Column + 1, Message: fe.Message}
		}
		return nil, nil, &ConditionError{Line: 1, Column: 1, Message: err.Error()}
	}
	tree, err := parser.Parse(source)
	if err != nil {
		return nil, nil, &ConditionError{Line: 1, Column: 1, Message: err.Error()}
	}
	c := &costly{source: source, in: " in " + what}
	node := tree.Node
	ast.Walk(&node, c)
	if c.err != nil {
		return nil, nil, c.err
	}
	return program, tree, nil
}

// costly finds what could make an expression cost more than its length:
// loops over ranges and predicates, and variables (which could also hide
// a condition's status function's call).
type costly struct {
	source, in string
	err        *ConditionError
}

func (c *costly) Visit(node *ast.Node) {
	if c.err != nil {
		return
	}
	switch n := (*node).(type) {
	case *ast.PredicateNode, *ast.PointerNode:
		c.err = errorAt(c.source, n, "predicates are not allowed"+c.in)
	case *ast.VariableDeclaratorNode:
		c.err = errorAt(c.source, n, "let is not allowed"+c.in)
	case *ast.BinaryNode:
		if n.Operator == ".." {
			c.err = errorAt(c.source, n, "ranges are not allowed"+c.in)
		}
	}
}

// state is what a condition's status functions read while a stage runs.
type state interface {
	status(name string) string
	failed() bool
}

// eval evaluates c for a step with its matrix values.
func (c *Condition) eval(f Facts, pipeline string, matrix map[string]string, st state) (bool, error) {
	e := env{
		Branch: f.Branch, Tag: f.Tag, Ref: f.Ref, Event: f.Event, Commit: f.Commit, Repository: f.Repository,
		Pipeline:  pipeline,
		Matrix:    matrix,
		ChangedFn: func(globs ...string) bool { return changed(f, globs) },
		StatusFn:  st.status,
		SuccessFn: func() bool { return !st.failed() },
		FailureFn: st.failed,
		AlwaysFn:  func() bool { return true },
	}
	if e.Matrix == nil {
		e.Matrix = map[string]string{}
	}
	out, err := expr.Run(c.program, e)
	if err != nil {
		return false, fmt.Errorf("when %q: %w", c.source, err)
	}
	ok, isBool := out.(bool)
	if !isBool {
		return false, fmt.Errorf("when %q gave %T, not a boolean", c.source, out)
	}
	return ok, nil
}

// changed says whether one of the paths f knows matches one of globs.
func changed(f Facts, globs []string) bool {
	return !f.ChangedKnown || pathglob.AnyMatches(globs, f.Changed)
}
