package cli

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"connectrpc.com/connect"
	"github.com/spf13/cobra"

	"github.com/sluicehq/sluice/platform/stepgraph"
	buildv1 "github.com/sluicehq/sluice/proto/gen/sluice/build/v1"
	releasev1 "github.com/sluicehq/sluice/proto/gen/sluice/release/v1"
	sourcev1 "github.com/sluicehq/sluice/proto/gen/sluice/source/v1"
	testv1 "github.com/sluicehq/sluice/proto/gen/sluice/test/v1"
)

// logLine is one step log line of any stage; its JSON is what
// `logs --output json` prints, a line each.
type logLine struct {
	Stage  string `json:"stage"`
	Seq    int64  `json:"seq"`
	Step   string `json:"step"`
	Stream string `json:"stream"`
	Text   string `json:"text"`
}

// logPage is one read of a stage's stored log.
type logPage struct {
	lines    []logLine
	next     int64 // the sequence number to read from next
	complete bool  // the stage has ended and every line was read
}

// logSource is one stage's step logs, served by the service that runs the
// stage. `sluice logs` reads the sources in order; a stage whose service
// serves logs is one more entry in logSources.
type logSource struct {
	stage string
	// page reads stored lines from a sequence number on; a connect
	// NotFound error means the service has no log for the run (yet).
	page func(ctx context.Context, s *session, runID, step string, from int64) (logPage, error)
	// tail, when set, streams lines as they are written until the stage
	// ends (-f); without it -f polls page.
	tail func(ctx context.Context, s *session, runID, step string, emit func(logLine)) error
	// steps names the stage's steps in a run.
	steps func(ctx context.Context, s *session, run *sourcev1.Run) ([]string, error)
}

// logPageSize is how many lines one page asks for.
const logPageSize = 5000

func logSources() []logSource {
	return []logSource{
		{
			stage: "build",
			page: func(ctx context.Context, s *session, runID, step string, from int64) (logPage, error) {
				res, err := s.build().GetLogs(ctx, &buildv1.GetLogsRequest{RunId: runID, Step: step, FromSeq: from, Limit: logPageSize})
				return logPage{lines: logLines("build", res.GetLines()), next: res.GetNextSeq(), complete: res.GetComplete()}, err
			},
			tail: func(ctx context.Context, s *session, runID, step string, emit func(logLine)) error {
				stream, err := s.build().TailLogs(ctx, &buildv1.TailLogsRequest{RunId: runID, Step: step, FromSeq: 1})
				if err != nil {
					return err
				}
				defer stream.Close()
				for stream.Receive() {
					for _, l := range logLines("build", stream.Msg().GetLines()) {
						emit(l)
					}
				}
				return stream.Err()
			},
			steps: func(_ context.Context, _ *session, run *sourcev1.Run) ([]string, error) {
				return stepNames(run.GetPipeline().GetBuild().GetSteps()), nil
			},
		},
		{
			stage: "test",
			page: func(ctx context.Context, s *session, runID, step string, from int64) (logPage, error) {
				res, err := s.test().GetLogs(ctx, &testv1.GetLogsRequest{RunId: runID, Step: step, FromSeq: from, Limit: logPageSize})
				return logPage{lines: logLines("test", res.GetLines()), next: res.GetNextSeq(), complete: res.GetComplete()}, err
			},
			steps: func(_ context.Context, _ *session, run *sourcev1.Run) ([]string, error) {
				return stepNames(run.GetPipeline().GetTest().GetSteps()), nil
			},
		},
		{
			// The release log's steps are deploy:<env>, verify:<env> and
			// rollback:<env>; --step deploy is every environment's deploy.
			stage: "release",
			page: func(ctx context.Context, s *session, runID, step string, from int64) (logPage, error) {
				res, err := s.release().GetLogs(ctx, &releasev1.GetLogsRequest{RunId: runID, Step: step, FromSeq: from, Limit: logPageSize})
				return logPage{lines: logLines("release", res.GetLines()), next: res.GetNextSeq(), complete: res.GetComplete()}, err
			},
			tail: tailRelease,
			steps: func(ctx context.Context, s *session, run *sourcev1.Run) ([]string, error) {
				res, err := s.release().GetLogs(ctx, &releasev1.GetLogsRequest{RunId: run.GetId(), Limit: 1})
				if connect.CodeOf(err) == connect.CodeNotFound {
					return nil, nil // the run has no release stage (yet)
				}
				return res.GetSteps(), err
			},
		},
	}
}

// tailRelease follows a run's release log. The release stage starts only
// after the tests passed, so while the run goes on and its release has not
// started, it waits; a run that ends without one has no release log
// (connect NotFound).
func tailRelease(ctx context.Context, s *session, runID, step string, emit func(logLine)) error {
	for {
		stream, err := s.release().TailLogs(ctx, &releasev1.TailLogsRequest{RunId: runID, Step: step, FromSeq: 1})
		if err != nil {
			return err
		}
		for stream.Receive() {
			for _, l := range logLines("release", stream.Msg().GetLines()) {
				emit(l)
			}
		}
		err = stream.Err()
		_ = stream.Close()
		if connect.CodeOf(err) != connect.CodeNotFound {
			return err
		}
		res, rerr := s.source().GetRun(ctx, &sourcev1.GetRunRequest{RunId: runID})
		if rerr != nil || isFinal(res.GetRun().GetStatus()) || releaseSettled(res.GetRun()) {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// releaseSettled reports whether the run's release stage can no longer
// start: it ended (skipped, say, after a failed test) without a log.
func releaseSettled(run *sourcev1.Run) bool {
	for _, st := range run.GetStages() {
		if st.GetName() == "release" {
			switch st.GetStatus() {
			case sourcev1.StageStatus_STAGE_STATUS_PENDING, sourcev1.StageStatus_STAGE_STATUS_RUNNING:
				return false
			default:
				return true
			}
		}
	}
	return true
}

// serviceLogLine is the log line message every service's logs API has.
type serviceLogLine interface {
	GetSeq() int64
	GetStep() string
	GetStream() string
	GetText() string
}

// logLines converts a service's log lines to one stage's logLines.
func logLines[L serviceLogLine](stage string, lines []L) []logLine {
	out := make([]logLine, len(lines))
	for i, l := range lines {
		out[i] = logLine{stage, l.GetSeq(), l.GetStep(), l.GetStream(), l.GetText()}
	}
	return out
}

func stepNames(steps []*sourcev1.Step) []string {
	names := make([]string, 0, len(steps))
	for _, s := range steps {
		names = append(names, stepgraph.StepLabel(s))
	}
	return names
}

func (s *session) logsCmd() *cobra.Command {
	var step string
	var follow bool
	cmd := &cobra.Command{
		Use:   "logs <run-id>",
		Short: "Print a run's step logs",
		Long: `Print a run's step logs: the build's, the tests', then the release's. Each
line is prefixed with its step's name; lines starting with --- are Sluice's
own notes.

The release's steps are deploy:<environment>, verify:<environment> and
rollback:<environment>; --step deploy prints every environment's deploy. The
id of a rollback made with 'sluice rollback' prints that rollback's output.

With -f it keeps printing while the run's steps write.`,
		Example: `  $ sluice logs 01a241d7-6533-7754-8392-2fcf9d8b3f73
  $ sluice logs 01a241d7-6533-7754-8392-2fcf9d8b3f73 --step compile -f
  $ sluice logs 01a241d7-6533-7754-8392-2fcf9d8b3f73 --step deploy`,
		Args:              needArgs("<run-id>"),
		ValidArgsFunction: s.completeRuns,
		RunE: func(cmd *cobra.Command, args []string) error {
			return s.logs(cmd.Context(), args[0], step, follow)
		},
	}
	cmd.Flags().StringVar(&step, "step", "", "only this step's lines")
	cmd.Flags().BoolVarP(&follow, "follow", "f", false, "keep printing until the run's steps end")
	return withFields(cmd, "run_id", "<run-id>", "step", "--step")
}

func (s *session) logs(ctx context.Context, runID, step string, follow bool) error {
	sources := logSources()
	if step != "" {
		if err := s.checkStep(ctx, sources, runID, step); err != nil {
			return err
		}
	}
	emit := func(l logLine) {
		switch {
		case s.json():
			_ = printJSONLine(s.app.Stdout, l)
		case l.Stream == "meta":
			fmt.Fprintln(s.app.Stdout, Sanitize(l.Text))
		default:
			fmt.Fprintf(s.app.Stdout, "[%s] %s\n", sanitizeLine(l.Step), Sanitize(l.Text))
		}
	}
	if follow {
		if err := s.awaitAdmission(ctx, runID, emit); err != nil {
			return err
		}
	}
	anyFound := false
	for _, src := range sources {
		if follow && src.tail != nil {
			err := src.tail(ctx, s, runID, step, emit)
			switch {
			case connect.CodeOf(err) == connect.CodeNotFound:
				// The service has no log for the run.
			case err != nil:
				return err
			default:
				anyFound = true
			}
			continue
		}
		found, err := pageLogs(ctx, follow, func(from int64) (logPage, error) {
			p, err := src.page(ctx, s, runID, step, from)
			for _, l := range p.lines {
				emit(l)
			}
			return p, err
		})
		if err != nil {
			return err
		}
		// A stage may have a log without the one before: a rollback made
		// with `sluice rollback` has a release log of its own.
		anyFound = anyFound || found
	}
	if !anyFound {
		return fmt.Errorf("no logs for run %s (has it been built?)", sanitizeLine(runID))
	}
	return nil
}

// awaitAdmission waits, for logs -f, until run runID is let start: a run
// may wait in source longer than the stages wait for a run they have not
// seen. It says once that the run waits, and fails when the run ended
// without starting (cancelled while it waited). An id that is no run (a
// rollback's) is not waited for.
func (s *session) awaitAdmission(ctx context.Context, runID string, emit func(logLine)) error {
	stream, err := s.source().WatchRun(ctx, &sourcev1.WatchRunRequest{RunId: runID})
	if err != nil {
		return err
	}
	defer func() { _ = stream.Close() }()
	told := false
	for stream.Receive() {
		r := stream.Msg().GetRun()
		switch {
		case r.GetAdmitTime() != nil || r.GetStatus() == sourcev1.RunStatus_RUN_STATUS_RUNNING:
			return nil
		case r.GetStatus() != sourcev1.RunStatus_RUN_STATUS_QUEUED:
			// A run that never started skipped its first stage, the build.
			if slices.ContainsFunc(r.GetStages(), func(st *sourcev1.Stage) bool {
				return st.GetName() == "build" && st.GetStatus() == sourcev1.StageStatus_STAGE_STATUS_SKIPPED
			}) {
				return &exitError{code: 1, msg: fmt.Sprintf("run %s ended before it started (%s): it has no logs", sanitizeLine(runID), sanitizeLine(r.GetFailureReason()))}
			}
			return nil
		case !told:
			emit(logLine{Stream: "meta", Text: "--- the run waits for room in its concurrency group, or under the limits of active runs"})
			told = true
		}
	}
	if err := stream.Err(); err != nil && connect.CodeOf(err) != connect.CodeNotFound {
		return err
	}
	return nil
}

// checkStep fails, naming the run's steps, when none of them is step.
func (s *session) checkStep(ctx context.Context, sources []logSource, runID, step string) error {
	res, err := s.source().GetRun(ctx, &sourcev1.GetRunRequest{RunId: runID})
	if err != nil {
		return err
	}
	var all []string
	for _, src := range sources {
		names, err := src.steps(ctx, s, res.GetRun())
		if err != nil {
			return err
		}
		if slices.Contains(names, step) {
			return nil
		}
		for _, n := range names {
			all = append(all, fmt.Sprintf("%s (%s)", sanitizeLine(n), src.stage))
		}
	}
	if len(all) == 0 {
		return &exitError{code: 1, msg: fmt.Sprintf("run %s has no step %q: it has no steps", sanitizeLine(runID), sanitizeLine(step))}
	}
	return &exitError{code: 1, msg: fmt.Sprintf("run %s has no step %q; its steps are %s", sanitizeLine(runID), sanitizeLine(step), strings.Join(all, ", "))}
}

// pageLogs reads a log page by page through fetch (which prints the lines)
// until the log is complete, or, without follow, until no more lines come.
// found is false when the service has no log for the run.
func pageLogs(ctx context.Context, follow bool, fetch func(from int64) (logPage, error)) (found bool, err error) {
	for from := int64(1); ; {
		p, err := fetch(from)
		if connect.CodeOf(err) == connect.CodeNotFound {
			return found, nil
		}
		if err != nil {
			return found, err
		}
		found = true
		if p.complete {
			return true, nil
		}
		if len(p.lines) == 0 {
			if !follow {
				return true, nil
			}
			select {
			case <-ctx.Done():
				return true, ctx.Err()
			case <-time.After(500 * time.Millisecond):
			}
			continue
		}
		from = p.next
	}
}
