package pipeline

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
	"google.golang.org/protobuf/proto"

	"github.com/sluicehq/sluice/platform/stepgraph"
	sourcev1 "github.com/sluicehq/sluice/proto/gen/sluice/source/v1"
)

// The step model beyond a list of commands: depends_on, when, retry,
// allow_failure and matrix, and a stage's max_parallel. A matrix step is
// expanded here into one step per cell, so every stage after source sees
// plain steps (each cell with its own name, status and log); depends_on
// naming a matrix step names its every cell.

// The limits of the step model (docs/pipeline.md lists them).
const (
	maxRetries      = 5
	maxParallel     = 64
	maxAxes         = 8   // one step's matrix
	maxAxisValues   = 16  // one axis
	maxCells        = 64  // one step's matrix, all axes together
	maxValueLength  = 255 // one matrix value
	maxDependencies = 100 // one step's depends_on, once expanded
)

// draft is one step as the file writes it, before its matrix is expanded,
// with the nodes its later checks point at.
type draft struct {
	step      *sourcev1.Step
	node      *yaml.Node
	runNode   *yaml.Node
	imageNode *yaml.Node
	envNode   *yaml.Node
	whenNode  *yaml.Node
	depsNode  *yaml.Node
	deps      []nameRef
	axes      []axis
	axesNode  *yaml.Node
}

// nameRef is a step's name in depends_on, and where.
type nameRef struct {
	name string
	node *yaml.Node
}

// axis is one variable of a matrix and its values.
type axis struct {
	name   string
	values []string
}

// decodeStep decodes one item of a steps list into d.
func (p *parser) decodeStep(item *yaml.Node, d *draft, names map[string]int) {
	step := d.step
	p.fields(item,
		field{key: "name", required: true, decode: func(n *yaml.Node) { step.Name = p.name(n, "step", names) }},
		field{key: "run", required: true, decode: func(n *yaml.Node) { d.runNode, step.Run = n, p.command(n) }},
		field{key: "timeout", decode: func(n *yaml.Node) { step.Timeout = p.duration(n) }},
		field{key: "env", decode: func(n *yaml.Node) {
			d.envNode = n
			step.Env, step.Secrets = p.env(n)
		}},
		field{key: "image", decode: func(n *yaml.Node) {
			// Checked once the matrix values are in it (expand).
			d.imageNode = n
			step.Image, _ = p.str(n)
			if step.Image == "" && isString(n) {
				p.errorAt(resolve(n), "", "image must not be empty")
			}
		}},
		field{key: "depends_on", decode: func(n *yaml.Node) { d.depsNode, d.deps = n, p.dependsOn(n) }},
		field{key: "when", decode: func(n *yaml.Node) { d.whenNode, step.When = n, p.condition(n) }},
		field{key: "retry", decode: func(n *yaml.Node) { step.Retry = int32(p.integer(n, "retry", 0, maxRetries)) }},
		field{key: "allow_failure", decode: func(n *yaml.Node) { step.AllowFailure = p.boolean(n) }},
		field{key: "matrix", decode: func(n *yaml.Node) { d.axesNode, d.axes = n, p.matrix(n) }},
	)
}

// dependsOn decodes a list of step names.
func (p *parser) dependsOn(n *yaml.Node) []nameRef {
	var refs []nameRef
	seen := map[string]bool{}
	for _, item := range p.list(n, "dependencies", maxSteps) {
		s, ok := p.str(item)
		switch {
		case !ok:
		case seen[s]:
			p.errorAt(resolve(item), "", "step %q is already listed", s)
		default:
			seen[s] = true
			refs = append(refs, nameRef{name: s, node: resolve(item)})
		}
	}
	return refs
}

// condition decodes a when: condition; it is compiled once every step of
// the stage is known (expand).
func (p *parser) condition(n *yaml.Node) string {
	s, ok := p.str(n)
	if ok && len(s) > stepgraph.MaxConditionLength {
		p.errorAt(resolve(n), "", "condition is %d bytes long; at most %d are allowed", len(s), stepgraph.MaxConditionLength)
		return ""
	}
	return s
}

// integer decodes a whole number from lo to hi.
func (p *parser) integer(n *yaml.Node, what string, lo, hi int) int {
	n = resolve(n)
	v, err := strconv.Atoi(n.Value)
	switch {
	case n.Kind != yaml.ScalarNode || n.ShortTag() != "!!int" || err != nil:
		p.errorAt(n, "", "expected a whole number, got %s", describe(n))
	case v < lo || v > hi:
		p.errorAt(n, "", "%s must be from %d to %d, got %d", what, lo, hi, v)
	default:
		return v
	}
	return 0
}

// boolean decodes true or false.
func (p *parser) boolean(n *yaml.Node) bool {
	n = resolve(n)
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!bool" {
		p.errorAt(n, "write true or false", "expected a boolean, got %s", describe(n))
		return false
	}
	return n.Value == "true" || n.Value == "True" || n.Value == "TRUE"
}

// matrix decodes a mapping of axis names to lists of values (strings,
// numbers or booleans, as written).
func (p *parser) matrix(n *yaml.Node) []axis {
	pairs, ok := p.mapping(n)
	if !ok {
		return nil
	}
	if len(pairs) == 0 {
		p.errorAt(resolve(n), "", "the matrix has no axis")
		return nil
	}
	if len(pairs) > maxAxes {
		p.errorAt(resolve(n), "", "the matrix has %d axes; at most %d are allowed", len(pairs), maxAxes)
		return nil
	}
	var axes []axis
	for _, kv := range pairs {
		name := kv.key.Value
		if !validEnvName(name) || len(name) > maxNameLength {
			p.errorAt(kv.key, "use letters, digits and _, starting with a letter or _, at most 63", "invalid matrix axis name %q", name)
			continue
		}
		a := axis{name: name}
		seen := map[string]bool{}
		for _, item := range p.list(kv.value, "values", maxAxisValues) {
			item = resolve(item)
			if item.Kind != yaml.ScalarNode || item.ShortTag() == "!!null" || item.Value == "" {
				p.errorAt(item, "", "expected a value (a string, a number or a boolean), got %s", describe(item))
				continue
			}
			switch v := item.Value; {
			case len(v) > maxValueLength:
				p.errorAt(item, "", "matrix value is longer than %d bytes", maxValueLength)
			case seen[v]:
				p.errorAt(item, "", "value %q is already listed", v)
			default:
				seen[v] = true
				a.values = append(a.values, v)
			}
		}
		if len(resolve(kv.value).Content) == 0 && resolve(kv.value).Kind == yaml.SequenceNode {
			p.errorAt(resolve(kv.value), "", "axis %q has no value", name)
		}
		axes = append(axes, a)
	}
	return axes
}

// maxParallelSteps decodes a stage's max_parallel.
func (p *parser) maxParallelSteps(n *yaml.Node) int32 {
	return int32(p.integer(n, "max_parallel", 1, maxParallel))
}

// matrixRefs calls fn for each matrix reference in s, in order:
// "${{ matrix.NAME }}" (spaces around the inside optional) from s[start]
// to s[end-1]. It scans s once, allocating nothing: a value of 8 KiB may
// hold hundreds of references, in each of a matrix's cells.
func matrixRefs(s string, fn func(start, end int, name string)) {
	for i := 0; ; {
		j := strings.Index(s[i:], "${{")
		if j < 0 {
			return
		}
		start := i + j
		k := start + len("${{")
		for k < len(s) && (s[k] == ' ' || s[k] == '\t') {
			k++
		}
		rest, ok := strings.CutPrefix(s[k:], "matrix.")
		if !ok {
			i = start + len("${{")
			continue
		}
		k = len(s) - len(rest)
		nameStart := k
		for k < len(s) && (s[k] == '_' || '0' <= s[k] && s[k] <= '9' || 'a' <= s[k]|0x20 && s[k]|0x20 <= 'z') {
			k++
		}
		name := s[nameStart:k]
		for k < len(s) && (s[k] == ' ' || s[k] == '\t') {
			k++
		}
		if !strings.HasPrefix(s[k:], "}}") {
			i = start + len("${{")
			continue
		}
		end := k + len("}}")
		fn(start, end, name)
		i = end
	}
}

// expand turns the drafts of a stage into its steps: a matrix step into
// its cells, depends_on into the cells' names; it checks the conditions
// and that the graph has no cycle.
func (p *parser) expand(drafts []*draft) []*sourcev1.Step {
	var steps []*sourcev1.Step
	var from []*draft
	cells := map[string][]string{}
	taken := map[string]bool{}
	for _, d := range drafts {
		taken[d.step.Name] = true
	}
	for _, d := range drafts {
		combos := []map[string]string{nil}
		if d.axesNode != nil {
			combos = product(d.axes)
			if len(combos) > maxCells {
				p.errorAt(resolve(d.axesNode), "", "the matrix makes %d steps; at most %d are allowed", len(combos), maxCells)
				continue
			}
			if len(steps)+len(combos) > maxSteps {
				p.errorAt(resolve(d.axesNode), "", "with its matrix the stage has more than %d steps", maxSteps)
				continue
			}
		}
		for _, values := range combos {
			cell := d.step
			if values != nil {
				cell = proto.CloneOf(d.step)
				cell.Name = cellName(d.step.Name, d.axes, values)
				switch {
				case !validName(cell.Name) || len(cell.Name) > maxNameLength:
					p.errorAt(resolve(d.axesNode), "shorten the step's name or the values", "the matrix makes step name %q: at most %d lowercase letters, digits, \"-\" and \"_\"", cell.Name, maxNameLength)
					continue
				case taken[cell.Name]:
					p.errorAt(resolve(d.axesNode), "rename the step", "the matrix makes step name %q, which another step has", cell.Name)
					continue
				}
				taken[cell.Name] = true
				cell.MatrixOf, cell.Matrix = d.step.Name, values
			}
			if values != nil {
				// Each value is checked against its limit again once the
				// matrix's are in it, and the whole expansion against the
				// size a pipeline may have, before anything is built.
				size := p.substitutedSize(d.runNode, "command", cell.Run, values, maxCommandSize)
				for _, k := range slices.Sorted(maps.Keys(cell.Env)) {
					size += p.substitutedSize(d.envNode, "the value of "+k, cell.Env[k], values, maxEnvValueSize)
				}
				if p.expanded += size; p.expanded > 2*MaxEncodedSize {
					p.errorAt(resolve(d.axesNode), encodedSizeHint, "with its matrix the pipeline is more than %d bytes; at most %d", 2*MaxEncodedSize, MaxEncodedSize)
					return steps
				}
			}
			cell.Run = p.substitute(d.runNode, cell.Run, values)
			if d.imageNode != nil && cell.Image != "" {
				cell.Image = p.substitute(d.imageNode, cell.Image, values)
				p.checkImage(resolve(d.imageNode), cell.Image)
			}
			for k, v := range cell.Env {
				cell.Env[k] = p.substitute(d.envNode, v, values)
			}
			steps = append(steps, cell)
			from = append(from, d)
			cells[d.step.Name] = append(cells[d.step.Name], cell.Name)
		}
	}
	known := slices.Sorted(maps.Keys(cells))
	// status() may name a matrix step or one of its cells.
	statusNames := slices.Clone(known)
	for _, st := range steps {
		if st.MatrixOf != "" {
			statusNames = append(statusNames, st.Name)
		}
	}
	for i, st := range steps {
		d := from[i]
		for _, ref := range d.deps {
			names, ok := cells[ref.name]
			switch {
			case ref.name == d.step.Name:
				p.errorAt(ref.node, "", "a step cannot depend on itself")
			case !ok:
				hint := ""
				if c := closest(ref.name, known); c != "" {
					hint = fmt.Sprintf("did you mean %q?", c)
				}
				p.errorAt(ref.node, hint, "the stage has no step %q", ref.name)
			default:
				st.DependsOn = append(st.DependsOn, names...)
			}
		}
		if len(st.DependsOn) > maxDependencies {
			p.errorAt(resolve(d.depsNode), "", "step %s depends on %d steps; at most %d", st.Name, len(st.DependsOn), maxDependencies)
		}
	}
	broken := map[*draft]bool{}
	for _, d := range drafts {
		if d.whenNode == nil || !isString(d.whenNode) {
			continue // none, or reported
		}
		if _, err := stepgraph.Compile(d.step.When, statusNames); err != nil {
			p.conditionError(d.whenNode, err)
			broken[d] = true
		}
	}
	// The graph's cycles, with the conditions that compile (a condition
	// that calls a status function waits for the steps above it).
	nodes := stepgraph.Nodes(steps, nil)
	for i := range nodes {
		if broken[from[i]] {
			nodes[i].When = ""
		}
	}
	var problem *stepgraph.Problem
	if err := stepgraph.Check(nodes); errors.As(err, &problem) {
		d := from[problem.Step]
		at := d.node
		if d.depsNode != nil {
			at = d.depsNode
		}
		p.errorAt(resolve(at), "", "%s", problem.Message)
	}
	return steps
}

// product is every combination of the axes' values, the first axis
// varying slowest.
func product(axes []axis) []map[string]string {
	combos := []map[string]string{{}}
	for _, a := range axes {
		if len(combos)*max(len(a.values), 1) > maxCells*maxAxisValues {
			return make([]map[string]string, maxCells+1) // too many: the caller says so
		}
		var next []map[string]string
		for _, c := range combos {
			for _, v := range a.values {
				m := maps.Clone(c)
				m[a.name] = v
				next = append(next, m)
			}
		}
		combos = next
	}
	return combos
}

// cellName names a cell: the step's name and its values in axis order,
// each in lowercase with what a name cannot hold made "_".
func cellName(step string, axes []axis, values map[string]string) string {
	parts := []string{step}
	for _, a := range axes {
		parts = append(parts, strings.Map(func(r rune) rune {
			switch {
			case 'a' <= r && r <= 'z', '0' <= r && r <= '9', r == '-', r == '_':
				return r
			case 'A' <= r && r <= 'Z':
				return r - 'A' + 'a'
			default:
				return '_'
			}
		}, values[a.name]))
	}
	return strings.Join(parts, "-")
}

// substitutedSize is the size of s once values are in place of its
// matrix references, computed without building it; over limit, it is
// reported at n (what names the value) and counted as limit.
func (p *parser) substitutedSize(n *yaml.Node, what, s string, values map[string]string, limit int) int {
	size := len(s)
	matrixRefs(s, func(start, end int, name string) { size += len(values[name]) - (end - start) })
	if size > limit {
		p.errorAt(resolve(n), "", "with the matrix's values in it, %s is %d bytes long; at most %d are allowed", what, size, limit)
		return limit
	}
	return size
}

// substitute puts the cell's values in place of ${{ matrix.NAME }} in s;
// a name that is not an axis (or any, for a step without a matrix) is
// reported at n.
func (p *parser) substitute(n *yaml.Node, s string, values map[string]string) string {
	if !strings.Contains(s, "${{") {
		return s
	}
	var b strings.Builder
	last, reported := 0, false
	matrixRefs(s, func(start, end int, name string) {
		b.WriteString(s[last:start])
		last = end
		v, ok := values[name]
		switch {
		case ok:
			b.WriteString(v)
			return
		case reported: // one problem per value is enough
		case values == nil:
			p.errorAt(resolve(n), "add a matrix to the step, or remove the reference", "%s: the step has no matrix", s[start:end])
		default:
			p.errorAt(resolve(n), "", "%s: the matrix has no axis %q", s[start:end], name)
		}
		reported = true
		b.WriteString(s[start:end])
	})
	b.WriteString(s[last:])
	return b.String()
}

// isString says n is a string scalar.
func isString(n *yaml.Node) bool {
	n = resolve(n)
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!str"
}

// conditionError reports a condition that does not compile at its place
// in the file: its own line and column counted from where the value
// starts (a quoted scalar one character after its quote; a block scalar
// on the lines after its indicator).
func (p *parser) conditionError(n *yaml.Node, err error) {
	var ce *stepgraph.ConditionError
	if !errors.As(err, &ce) {
		p.errorAt(resolve(n), "", "condition: %v", err)
		return
	}
	p.errorInValue(n, ce.Line, ce.Column, "condition: "+cutQuoted(ce.Message), "see docs/pipeline.md, \"Conditions\"")
}

// errorInValue reports an error at line:col (from 1) of a scalar's value:
// the value's own line and column counted from where it starts (a quoted
// scalar one character after its quote; a block scalar on the lines after
// its indicator).
func (p *parser) errorInValue(n *yaml.Node, vline, vcol int, msg, hint string) {
	n = resolve(n)
	line, col := n.Line, n.Column
	switch n.Style {
	case yaml.LiteralStyle, yaml.FoldedStyle:
		line += vline
		col += 2 // the content is indented beyond the key
	case yaml.DoubleQuotedStyle, yaml.SingleQuotedStyle:
		line += vline - 1
		if vline == 1 {
			col += 1 + vcol - 1
		}
	default:
		line += vline - 1
		if vline == 1 {
			col += vcol - 1
		}
	}
	p.errs = append(p.errs, Error{File: p.file, Line: line, Column: col, Message: msg, Hint: hint})
}
