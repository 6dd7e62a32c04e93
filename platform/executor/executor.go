// Package executor defines how Sluice runs one step (a shell command) and
// provides Local, the backend that runs steps as local processes, and
// Steps, which runs a stage's steps on Local or, for a step that names an
// image, on a container backend (package container is Docker's).
//
// The build, test and release services all run their commands through an
// Executor, so the rules for environment, timeouts, cancellation and output
// live in one place.
package executor

import (
	"context"
	"time"
)

// MaxLineLen is the longest line handed to Spec.Output. Longer lines are
// split into chunks of at most MaxLineLen bytes; no byte is dropped.
const MaxLineLen = 64 * 1024

// Spec describes one step to run.
type Spec struct {
	// Name is the step name, used in error messages.
	Name string
	// Command is run with the executor's shell as `Shell -c Command`.
	Command string
	// Dir is the working directory. It is required and must exist. A
	// sandboxed step may write in it.
	Dir string
	// Home is the step's HOME, private to its run: steps of one run share
	// it, no other run sees it. TMPDIR is Home/tmp and XDG_CACHE_HOME
	// Home/.cache, so the caches of tools that follow them (Go's build
	// and module caches among them) are the run's own. It is made if
	// missing and the caller removes it with the run's workspace; empty
	// gives the step a home of its own that is removed when it ends.
	Home string
	// Writable are more directories a sandboxed step may write (a deploy's
	// state directory); they must exist.
	Writable []string
	// KeepProcesses leaves running what the step started in the background
	// when its main process ends (a deploy that starts a service on this
	// host), and lets the step signal processes outside its sandbox of
	// the same user (so such a deploy can stop what the previous one
	// started). Otherwise everything the step started is killed when it
	// ends, setsid daemons included. On timeout or cancellation
	// everything is killed either way.
	KeepProcesses bool
	// Env is added on top of the scrubbed base environment (see Local.PassEnv).
	Env map[string]string
	// Timeout bounds the run; 0 means the executor's default.
	Timeout time.Duration
	// Output, if non-nil, is called once per line of output. stream is
	// "stdout" or "stderr"; line has no trailing newline. A final line that
	// does not end in a newline is delivered too, and lines longer than
	// MaxLineLen are split. Calls are serialized, never concurrent, and the
	// order of lines within one stream is preserved. Output must not block
	// for long: the command blocks on writing while Output runs.
	Output func(stream string, line string)
	// Image is the container image the step runs in (a Backend that runs
	// containers does it); empty runs it as a process on this host.
	Image string
	// Secrets are values masked out of Output, in every form package
	// secretmask knows (as they are, base64, hex, URL and JSON escaped,
	// line by line), before the output is split into lines, so a value
	// that spans lines or arrives in pieces is masked too. Masking holds
	// back output that could be the start of a secret until the next bytes
	// show it is not (or the step ends). Secrets are never logged.
	Secrets []string
}

// HomeOf is the home of the run whose workspace is ws: next to it, so a
// checkout into ws never sees it. The caller removes it with ws.
func HomeOf(ws string) string { return ws + ".home" }

// Result is the outcome of a step that was started.
type Result struct {
	// ExitCode is the command's exit status, or -1 when it was killed by a
	// signal, timed out or was cancelled.
	ExitCode int
	// TimedOut reports that the step ran longer than its timeout and was killed.
	TimedOut bool
	// Cancelled reports that the caller's context was done before the step
	// finished, so it was killed.
	Cancelled bool
	// Duration is the wall time from start to the end of Run.
	Duration time.Duration
}

// Executor runs steps.
//
// Run returns an error only when the step could not be started (bad spec,
// missing directory, missing shell, context already done). A command that
// runs and fails is reported as a Result with ExitCode != 0 and a nil error.
type Executor interface {
	Run(ctx context.Context, spec Spec) (Result, error)
}

// Stream names passed to Spec.Output.
const (
	Stdout = "stdout"
	Stderr = "stderr"
)

// StageSpec is what the steps of one attempt at a stage of a run share:
// their workspace and home, and the service containers they reach by
// name. A backend labels what it starts for the stage with RunID, Stage
// and Attempt, and removes whatever an earlier attempt at the same stage
// of the same run left (a worker that died mid-step) before it starts
// anything.
type StageSpec struct {
	// RunID and Stage ("build", "test") name the stage; Attempt counts
	// the attempts at it.
	RunID   string
	Stage   string
	Attempt int
	// Dir is the workspace, Home the run's home (see Spec).
	Dir  string
	Home string
	// Services are containers started before the first step and removed
	// when the stage is closed.
	Services []Service
	// Images are the images of the stage's steps that name one, by step
	// name: the stage needs a container backend even without services.
	Images map[string]string
	// Env is given to the services and the container steps of the stage
	// (the run's SLUICE_* variables), under their own.
	Env map[string]string
	// Secrets are masked out of what the backend reports of the stage's
	// services (their failure to start).
	Secrets []string
}

// Service is a container that runs beside a stage's steps.
type Service struct {
	// Name is the host name steps reach it by.
	Name  string
	Image string
	// Command replaces the image's command (not its entrypoint) when set.
	Command []string
	Env     map[string]string
}

// Backend opens stages. Every backend runs steps with the same contract
// (Executor); a backend that runs containers (Docker, or a Kubernetes one
// with a pod per step) keeps what it starts for a stage apart from other
// stages and the platform, and removes it on Close.
type Backend interface {
	// Open readies st: it removes what an earlier attempt at the same
	// stage left, then makes what the steps share (a network, the
	// services). An error means no step can run; it names the cause.
	Open(ctx context.Context, st StageSpec) (Stage, error)
}

// Stage runs the steps of one opened stage.
type Stage interface {
	Executor
	// Close stops and removes what the stage started; call it once the
	// stage's steps ended (with a context that is not already done).
	Close(ctx context.Context) error
}
