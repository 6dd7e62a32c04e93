package pipeline

import (
	"errors"
	"fmt"
	"runtime"
	"strings"
	"testing"
)

// laughs is a "billion laughs" pipeline: a step whose env holds, through
// levels of ten aliases each, 10^levels copies of one value. It is a few
// hundred bytes long.
func laughs(levels int) string {
	var b strings.Builder
	b.WriteString("version: 1\nl0: &l0 [x]\n")
	for i := 1; i <= levels; i++ {
		fmt.Fprintf(&b, "l%d: &l%d [%s]\n", i, i, strings.TrimSuffix(strings.Repeat(fmt.Sprintf("*l%d, ", i-1), 10), ", "))
	}
	fmt.Fprintf(&b, "build:\n  steps:\n    - {name: a, run: make, env: {V: *l%d}}\n", levels)
	return b.String()
}

// TestBillionLaughs: a file of 9 levels of ten aliases stands for 10^9
// nodes; it is refused at the alias that passes the limit, before the
// decoder follows any.
func TestBillionLaughs(t *testing.T) {
	t.Parallel()
	doc := laughs(9)
	if len(doc) > 1024 {
		t.Fatalf("the file is %d bytes", len(doc))
	}
	_, err := Parse(file, []byte(doc))
	// The aliases of l1..l4 stand for 20+210+2110+21110 nodes; l5's
	// fourth alias of l4 (21111 nodes each) passes 100000.
	want := `.sluice.yaml:7:25: the aliases stand for more than 100000 YAML nodes; at most 100000 are allowed (hint: an alias stands for a copy of its anchor's whole value, the aliases in it included; the source service's max-pipeline-alias-nodes setting sets the limit)`
	if err == nil || err.Error() != want {
		t.Fatalf("Parse:\n%v\nwant:\n%s", err, want)
	}
}

// knownKeyAliases is a pipeline whose 100 steps are aliases of one step
// whose env has 100 aliases of one mapping of keys unknown keys: each
// alias is followed by the parser (a value of a known key), and each of
// the 10^4 copies of the mapping would report keys problems.
func knownKeyAliases(keys int) string {
	var b strings.Builder
	b.WriteString("version: 1\nbuild:\n  steps:\n    - &s {name: a, run: b, env: {V0: &m {")
	for j := range keys {
		fmt.Fprintf(&b, "k%d: 0, ", j)
	}
	b.WriteString("}")
	for i := 1; i < 100; i++ {
		fmt.Fprintf(&b, ", V%d: *m", i)
	}
	b.WriteString("}}\n")
	b.WriteString(strings.Repeat("    - *s\n", 99))
	return b.String()
}

// TestAliasesOfKnownKeys: aliases the parser follows, of values it
// reports problems in. With a mapping of 1000 keys the 10 KB file would
// take a minute and gigabytes to report 10^7 problems; with 10 keys, as
// here, it would report 210000 problems. It is refused at the alias that
// passes the limit.
func TestAliasesOfKnownKeys(t *testing.T) {
	t.Parallel()
	_, err := Parse(file, []byte(knownKeyAliases(10)))
	// Each alias of the step stands for its 2207 nodes (those of the 99
	// aliases of the mapping's 21 included); the 45th passes 100000.
	want := `.sluice.yaml:49:7: the aliases stand for more than 100000 YAML nodes; at most 100000 are allowed`
	if err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Fatalf("Parse:\n%.500v\nwant:\n%s", err, want)
	}
}

// envAliases is a pipeline of steps steps whose env is one anchored
// mapping of one variable (3 nodes: the mapping, a key, a value): every
// step after the first stands for 3 nodes through its alias.
func envAliases(steps int) string {
	return lines("version: 1\nbuild:\n  steps:\n    - {name: s0, run: make, env: &e {A: x}}\n", steps-1,
		func(i int) string { return fmt.Sprintf("    - {name: s%d, run: make, env: *e}", i+1) })
}

// TestAliasLimitCountsNodes: the limit counts every node an alias stands
// for: at the limit the file is accepted, one node over it refused at the
// alias that passes it.
func TestAliasLimitCountsNodes(t *testing.T) {
	t.Parallel()
	doc := envAliases(11) // 10 aliases of 3 nodes
	if _, err := ParseLimited(file, []byte(doc), Limits{MaxAliasNodes: 30}); err != nil {
		t.Fatalf("30 nodes through aliases with a limit of 30: %v", err)
	}
	_, err := ParseLimited(file, []byte(doc), Limits{MaxAliasNodes: 29})
	want := `.sluice.yaml:14:35: the aliases stand for more than 29 YAML nodes; at most 29 are allowed`
	if err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Fatalf("limit 29:\n%v\nwant:\n%s", err, want)
	}
	// Aliases of aliases count what they stand for, nested aliases
	// included: l2 stands for 1 + 2*(1+1) nodes.
	nested := "version: 1\nl1: &l1 [x]\nl2: &l2 [*l1, *l1]\nbuild: {steps: [{name: a, run: make, env: {V: *l2}}]}\n"
	// The aliases in l2 (2 nodes each) and the alias of l2 (5 nodes).
	if _, err := ParseLimited(file, []byte(nested), Limits{MaxAliasNodes: 9}); err == nil || !strings.Contains(err.Error(), "expected a string, got a list") {
		t.Fatalf("limit 9: %v; want only the env value refused", err)
	}
	if _, err := ParseLimited(file, []byte(nested), Limits{MaxAliasNodes: 8}); err == nil || !strings.HasPrefix(err.Error(), ".sluice.yaml:4:47: the aliases stand for more than 8") {
		t.Fatalf("limit 8: %v", err)
	}
}

// TestRecursiveAlias: an alias inside the value it stands for would make
// an endless document; it is refused where it is.
func TestRecursiveAlias(t *testing.T) {
	t.Parallel()
	_, err := Parse(file, []byte("version: 1\nbuild: &b\n  steps: [*b]\n"))
	want := `.sluice.yaml:3:11: alias *b stands for a value that holds the alias itself`
	if err == nil || err.Error() != want {
		t.Fatalf("Parse:\n%v\nwant:\n%s", err, want)
	}
}

// TestFileSizeLimit: a file over the size limit is refused before it is
// decoded, with the limit and the setting that sets it.
func TestFileSizeLimit(t *testing.T) {
	t.Parallel()
	doc := "version: 1\nbuild: {steps: [{name: a, run: make}]}\n"
	if _, err := ParseLimited(file, []byte(doc), Limits{MaxSize: len(doc)}); err != nil {
		t.Fatalf("a file at the limit: %v", err)
	}
	_, err := ParseLimited(file, []byte(doc), Limits{MaxSize: len(doc) - 1})
	want := fmt.Sprintf(".sluice.yaml: the file is %d bytes; at most %d are allowed (hint: the source service's max-pipeline-size setting sets the limit)", len(doc), len(doc)-1)
	if err == nil || err.Error() != want {
		t.Fatalf("Parse:\n%v\nwant:\n%s", err, want)
	}
}

// TestProblemsAreBounded: a file may hold a problem per line, each quoting
// a value as long as the file; the message lists the first MaxListed
// problems, each value cut, so a failed run's reason fits in its events.
func TestProblemsAreBounded(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("X", 5000)
	doc := lines("version: 1\nbuild:\n  steps:\n", 100, func(i int) string {
		return fmt.Sprintf("    - {name: %s%d, run: make}", long, i)
	})
	_, err := Parse(file, []byte(doc))
	var errs *Errors
	if !errors.As(err, &errs) || len(*errs) != 100 {
		t.Fatalf("Parse: %d problems (%T), want 100", len(*errs), err)
	}
	for _, e := range *errs {
		if len(e.Message) > 2*maxQuoted || !strings.Contains(e.Message, "XXX…\"") {
			t.Fatalf("a message of %d bytes, quoting %.60q…; want the value cut to %d bytes", len(e.Message), e.Message, maxQuoted)
		}
	}
	msg := err.Error()
	if n := strings.Count(msg, "\n") + 1; n != MaxListed+1 || !strings.HasSuffix(msg, "\n… and 50 more problems") {
		t.Fatalf("the message has %d lines, ending %q; want %d problems and a count of the rest", n, msg[len(msg)-40:], MaxListed)
	}
}

// TestLongUnknownKeyIsNotCompared: an unknown key is compared with the
// known ones for a hint only when it could be a typo of one: a key as
// long as the file, reached through many aliases, costs no comparison.
// (Not parallel: it counts what the process allocates.)
func TestLongUnknownKeyIsNotCompared(t *testing.T) {
	if got := closest(strings.Repeat("s", 60), []string{"steps"}); got != "" {
		t.Errorf("closest(60 s) = %q", got)
	}
	if got := closest("stesp", []string{"steps"}); got != "steps" {
		t.Errorf("closest(stesp) = %q", got)
	}
	// The Kelvin sign lowercases to k: three bytes to one.
	if got := closest("\u212Aey", []string{"key"}); got != "key" {
		t.Errorf("closest(Kelvin ey) = %q", got)
	}
	key := strings.Repeat("S", 1<<20)
	calls := testing.AllocsPerRun(10, func() { closest(key, []string{"steps", "artifacts"}) })
	if calls > 0 {
		t.Errorf("closest of a 1 MiB key allocates %.0f times; want no lowercase copy", calls)
	}
}

// TestExpandedPipelineCostsLittle: a file of 800 KB whose 100 steps share
// one env of 100 values of 8 KiB through an alias stands for 80 MB of
// values, which no event could carry. It is refused before the pipeline is
// checked against its rules and encoded: reading it allocates some times
// the file, not the 80 MB it stands for. (Not parallel: it counts what the
// process allocates.)
func TestExpandedPipelineCostsLittle(t *testing.T) {
	value := strings.Repeat("v", maxEnvValueSize)
	env := lines("", 100, func(i int) string { return fmt.Sprintf("        V%d: %s", i, value) })
	doc := "version: 1\nbuild:\n  steps:\n    - name: s0\n      run: make\n      env: &e\n" + env +
		lines("", 99, func(i int) string { return fmt.Sprintf("    - {name: s%d, run: make, env: *e}", i+1) })
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	_, err := Parse(file, []byte(doc))
	runtime.ReadMemStats(&after)
	if err == nil || !strings.Contains(err.Error(), "bytes once encoded") {
		t.Fatalf("Parse: %v; want the encoded size refused", err)
	}
	allocated := after.TotalAlloc - before.TotalAlloc
	t.Logf("a file of %d bytes standing for %d MB: %d MB allocated", len(doc), 100*100*len(value)/1e6, allocated/1e6)
	if limit := uint64(20 * len(doc)); allocated > limit {
		t.Errorf("reading a file of %d bytes allocated %d MB; want at most %d MB", len(doc), allocated/1e6, limit/1e6)
	}
}

// TestMatrixExpansionCostsLittle: a step of 100 env values full of matrix
// references, over 64 cells, would stand for more than a gigabyte once the
// values are in; each value over its limit is refused before it is built,
// and the expansion stops at the size a pipeline may have. (Not parallel:
// it counts what the process allocates.)
func TestMatrixExpansionCostsLittle(t *testing.T) {
	refs := strings.Repeat("${{matrix.a}}", maxEnvValueSize/len("${{matrix.a}}"))
	env := lines("", 100, func(i int) string { return fmt.Sprintf("        V%d: %q", i, refs) })
	var vs []string
	for i := range 16 {
		vs = append(vs, fmt.Sprintf("%02d%s", i, strings.Repeat("x", 40)))
	}
	values := "[" + strings.Join(vs, ", ") + "]"
	doc := "version: 1\nbuild:\n  steps:\n    - name: s0\n      run: make\n      matrix: {a: " + values + ", b: [1, 2, 3, 4]}\n      env:\n" + env
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	_, err := Parse(file, []byte(doc))
	runtime.ReadMemStats(&after)
	if err == nil || !strings.Contains(err.Error(), "with the matrix's values in it, the value of V0 is") {
		t.Fatalf("Parse: %.500v; want the values refused", err)
	}
	allocated := after.TotalAlloc - before.TotalAlloc
	t.Logf("a file of %d bytes: %d MB allocated", len(doc), allocated/1e6)
	if limit := uint64(20 * len(doc)); allocated > limit {
		t.Errorf("reading a file of %d bytes allocated %d MB; want at most %d MB", len(doc), allocated/1e6, limit/1e6)
	}
}
