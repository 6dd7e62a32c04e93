package stepgraph_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/sluicehq/sluice/platform/stepgraph"
)

// nop runs every step at once, successfully.
type nop struct{}

func (nop) Run(context.Context, int, stepgraph.Try) (stepgraph.Outcome, error) {
	return stepgraph.Passed, nil
}
func (nop) NotRun(context.Context, int, string, bool) error { return nil }

// BenchmarkExecute is what scheduling costs a stage of 100 steps (the
// most a section holds), without the steps' own time: one after the other,
// a graph of 10 layers of 10 parallel steps, and 100 steps under a
// condition each.
func BenchmarkExecute(b *testing.B) {
	sequential := make([]stepgraph.Node, 100)
	layered := make([]stepgraph.Node, 100)
	conditioned := make([]stepgraph.Node, 100)
	for i := range 100 {
		sequential[i] = stepgraph.Node{Name: fmt.Sprintf("s%d", i)}
		layered[i] = stepgraph.Node{Name: fmt.Sprintf("s%d", i)}
		if i >= 10 {
			for j := (i/10 - 1) * 10; j < i/10*10; j++ {
				layered[i].DependsOn = append(layered[i].DependsOn, fmt.Sprintf("s%d", j))
			}
		}
		conditioned[i] = stepgraph.Node{Name: fmt.Sprintf("s%d", i), When: `branch == "main" && changed("**/*.go")`}
	}
	facts := stepgraph.Facts{Branch: "main", Changed: []string{"a/b.go"}, ChangedKnown: true}
	for _, bc := range []struct {
		name  string
		nodes []stepgraph.Node
	}{{"sequential", sequential}, {"layered", layered}, {"conditions", conditioned}} {
		b.Run(bc.name, func(b *testing.B) {
			for b.Loop() {
				if _, err := stepgraph.Execute(context.Background(), bc.nodes, facts, 4, nop{}); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N)/100, "µs/step")
		})
	}
}
