package executor

import (
	"context"
	"io"

	"github.com/sluicehq/sluice/platform/runner"
	"github.com/sluicehq/sluice/platform/secretmask"
)

// Output is where a backend writes a step's stdout and stderr: it masks
// spec.Secrets, splits the bytes into lines and hands them to
// spec.Output, under the rules Spec.Output promises, whatever the
// backend. Writes never fail; a panic in Spec.Output (or the masker) is
// counted by the context's Supervisor, ends the step's output (the rest
// is read and dropped, so the step never blocks on it) and is returned by
// Close.
type Output struct {
	// Stdout and Stderr take the step's streams; each is written by one
	// goroutine at a time. They discard everything when spec.Output is
	// nil.
	Stdout, Stderr io.Writer

	guard          *outputGuard
	stdout, stderr *lineWriter
	masked         []io.Closer
}

// NewOutput is the Output of spec's step, run under ctx.
func NewOutput(ctx context.Context, spec Spec) *Output {
	o := &Output{Stdout: io.Discard, Stderr: io.Discard, guard: &outputGuard{sup: runner.FromContext(ctx)}}
	if spec.Output == nil {
		return o
	}
	sink := &outputSink{fn: spec.Output}
	o.stdout = newLineWriter(Stdout, sink, MaxLineLen)
	o.stderr = newLineWriter(Stderr, sink, MaxLineLen)
	var out, errOut io.Writer = o.stdout, o.stderr
	if m := secretmask.New(spec.Secrets); !m.Empty() {
		// Masking comes before the split into lines, so a secret that
		// spans lines is masked too.
		mo, me := m.Writer(o.stdout), m.Writer(o.stderr)
		out, errOut = mo, me
		o.masked = []io.Closer{mo, me}
	}
	o.Stdout, o.Stderr = o.guard.writer(out), o.guard.writer(errOut)
	return o
}

// Close delivers what is held back (bytes that could have been the start
// of a secret, a last line without a newline) once the step's streams
// ended and nothing writes to Stdout or Stderr any more. The error is a
// panic of the output's, if there was one.
func (o *Output) Close() error {
	if o.stdout != nil {
		o.guard.run(func() {
			for _, c := range o.masked {
				_ = c.Close()
			}
			o.stdout.flush()
			o.stderr.flush()
		})
	}
	return o.guard.failure()
}
