package executor_test

import (
	"context"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/platform/executor"
	"github.com/sluicehq/sluice/platform/runner"
	"github.com/sluicehq/sluice/platform/runner/runnertest"
)

// A Spec.Output that panics (a bug in whatever stores the step's log) is
// called from exec's goroutines that copy the output: the panic fails the
// step with an error, counted under the Supervisor the context carries,
// and the process goes on; the rest of the output is read and dropped, so
// the step is not blocked on a full pipe.
func TestOutputThatPanicsFailsTheStep(t *testing.T) {
	for _, tc := range []struct {
		name    string
		secrets []string
	}{{name: "plain"}, {name: "masked", secrets: []string{"hunter2"}}} {
		t.Run(tc.name, func(t *testing.T) {
			sup := runnertest.New(t)
			var lines []string // Output's calls are serialized
			_, err := (&executor.Local{}).Run(runner.NewContext(context.Background(), sup.Supervisor), executor.Spec{
				Name: t.Name(), Dir: t.TempDir(), Secrets: tc.secrets,
				// More than a pipe holds after the panic.
				Command: "echo one; echo bad; seq 1 200000; echo done",
				Output: func(_, line string) {
					if line == "bad" {
						panic("cannot store " + line)
					}
					lines = append(lines, line)
				},
			})
			p, ok := runner.Panicked(err)
			if !ok || p.Value != "cannot store bad" {
				t.Fatalf("Run returned %v; want the output's panic", err)
			}
			if !strings.Contains(err.Error(), "output") {
				t.Errorf("error %q does not say the output failed", err)
			}
			if len(lines) != 1 || lines[0] != "one" {
				t.Errorf("Output got %q; want only the line before the panic", lines)
			}
			if n := sup.Panics(t, "step output"); n != 1 {
				t.Errorf("%v panics of the output counted; want 1", n)
			}
		})
	}
}
