package executor_test

import (
	"context"
	"testing"

	"github.com/sluicehq/sluice/platform/executor"
)

// BenchmarkRun is the cost of one step that does nothing (`true`), with
// the sandbox (a supervisor, Landlock, the sweep) and without it.
func BenchmarkRun(b *testing.B) {
	for _, mode := range []string{executor.IsolationLandlock, executor.IsolationOff} {
		b.Run(mode, func(b *testing.B) {
			l := &executor.Local{Isolation: executor.Isolation{Mode: mode}}
			dir := b.TempDir()
			for b.Loop() {
				res, err := l.Run(context.Background(), executor.Spec{Name: "noop", Command: "true", Dir: dir, Output: func(string, string) {}})
				if err != nil || res.ExitCode != 0 {
					b.Fatalf("%+v %v", res, err)
				}
			}
		})
	}
}
