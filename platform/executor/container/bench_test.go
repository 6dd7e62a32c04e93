package container_test

import (
	"context"
	"os/exec"
	"slices"
	"testing"
	"time"

	"github.com/sluicehq/sluice/platform/executor"
	"github.com/sluicehq/sluice/platform/executor/container/containertest"
)

// stepStarts is how many steps each backend starts in BenchmarkStepStart.
const stepStarts = 30

// BenchmarkStepStart is the time from asking for a step that does nothing
// (`true`) to its result: on the process executor (in its sandbox), in a
// container of the container backend (create, attach, start, wait,
// remove), and with a plain `docker run --rm` of the same image for
// comparison. Each reports p50 and p95 over stepStarts steps.
func BenchmarkStepStart(b *testing.B) {
	img := containertest.Busybox(b)
	dir := b.TempDir()
	report := func(b *testing.B, run func() error) {
		b.Helper()
		var took []time.Duration
		for b.Loop() {
			for range stepStarts {
				start := time.Now()
				if err := run(); err != nil {
					b.Fatal(err)
				}
				took = append(took, time.Since(start))
			}
		}
		slices.Sort(took)
		b.ReportMetric(float64(took[len(took)/2].Microseconds())/1000, "p50-ms")
		b.ReportMetric(float64(took[len(took)*95/100].Microseconds())/1000, "p95-ms")
	}
	step := func(s executor.Executor, image string) func() error {
		return func() error {
			res, err := s.Run(context.Background(), executor.Spec{Name: "noop", Image: image, Command: "true", Dir: dir, Output: func(string, string) {}})
			if err == nil && res.ExitCode != 0 {
				b.Fatalf("exit %d", res.ExitCode)
			}
			return err
		}
	}
	b.Run("process", func(b *testing.B) {
		report(b, step(&executor.Local{}, ""))
	})
	b.Run("container", func(b *testing.B) {
		d := containertest.Docker(b, containertest.Config())
		s, err := d.Open(context.Background(), executor.StageSpec{RunID: "bench-" + time.Now().Format("150405.000000"), Stage: "build", Dir: dir, Images: map[string]string{"noop": img}})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = s.Close(context.Background()) })
		report(b, step(s, img))
	})
	b.Run("docker-run", func(b *testing.B) {
		args := []string{"run", "--rm", "--network", "none"}
		for k, v := range containertest.TestLabels() {
			args = append(args, "--label", k+"="+v)
		}
		report(b, func() error {
			return exec.CommandContext(context.Background(), "docker", append(args, img, "true")...).Run()
		})
	})
}
