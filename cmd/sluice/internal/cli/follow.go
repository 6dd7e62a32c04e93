package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"connectrpc.com/connect"

	sourcev1 "github.com/sluicehq/sluice/proto/gen/sluice/source/v1"
)

// Follow streams a run's progress, in plain text or JSON, until it ends.
// It returns an error with exit code 1 when the run did not succeed.
func Follow(ctx context.Context, client sourceWatcher, runID string, w io.Writer, asJSON bool) error {
	return followRun(ctx, client, runID, w, asJSON, style{}, sourcev1.RunStatus_RUN_STATUS_SUCCEEDED)
}

type sourceWatcher interface {
	WatchRun(context.Context, *sourcev1.WatchRunRequest) (*connect.ServerStreamForClient[sourcev1.WatchRunResponse], error)
}

func followRun(ctx context.Context, client sourceWatcher, runID string, w io.Writer, asJSON bool, st style, want sourcev1.RunStatus) error {
	var last *sourcev1.Run
	for attempt := 0; ; attempt++ {
		stream, err := client.WatchRun(ctx, &sourcev1.WatchRunRequest{RunId: runID})
		if err != nil {
			return err
		}
		p := &progress{w: w, json: asJSON, style: st}
		if last != nil {
			p.seen = stageStates(last)
			p.started = true
		}
		for stream.Receive() {
			last = stream.Msg().GetRun()
			p.update(last)
		}
		err = stream.Err()
		_ = stream.Close()
		if last != nil && isFinal(last.GetStatus()) {
			break
		}
		// The server went away mid-stream (a restart): reconnect.
		if err != nil && connect.CodeOf(err) != connect.CodeUnavailable && connect.CodeOf(err) != connect.CodeUnknown {
			return err
		}
		if attempt > 120 || ctx.Err() != nil {
			if err == nil {
				err = errors.New("the stream kept ending before the run did")
			}
			return fmt.Errorf("lost the run's progress: %w", err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
	}
	if last.GetStatus() != want {
		return &exitError{code: 1}
	}
	return nil
}

func isFinal(s sourcev1.RunStatus) bool {
	return s == sourcev1.RunStatus_RUN_STATUS_SUCCEEDED || s == sourcev1.RunStatus_RUN_STATUS_FAILED || s == sourcev1.RunStatus_RUN_STATUS_CANCELLED
}

// progress prints what changed in a run since the last update.
type progress struct {
	w       io.Writer
	json    bool
	style   style
	seen    map[string]sourcev1.StageStatus
	started bool
}

func stageStates(r *sourcev1.Run) map[string]sourcev1.StageStatus {
	m := map[string]sourcev1.StageStatus{}
	for _, s := range r.GetStages() {
		m[s.GetName()] = s.GetStatus()
	}
	return m
}

func (p *progress) update(r *sourcev1.Run) {
	if p.json {
		_ = printJSON(p.w, r)
		return
	}
	if p.seen == nil {
		p.seen = map[string]sourcev1.StageStatus{}
	}
	if !p.started {
		p.started = true
		fmt.Fprintf(p.w, "run %s: %s at %s (%s)\n", sanitizeLine(r.GetId()), sanitizeLine(r.GetRepository()),
			sanitizeLine(shortSHA(r.GetCommit())), sanitizeLine(firstLine(r.GetCommitMessage())))
	}
	for _, s := range r.GetStages() {
		if p.seen[s.GetName()] == s.GetStatus() {
			continue
		}
		p.seen[s.GetName()] = s.GetStatus()
		if s.GetStatus() == sourcev1.StageStatus_STAGE_STATUS_PENDING {
			continue
		}
		fmt.Fprintln(p.w, stageLine(s, p.style))
		if s.GetStatus() == sourcev1.StageStatus_STAGE_STATUS_FAILED {
			for _, l := range s.GetLastLogLines() {
				fmt.Fprintf(p.w, "           | %s\n", sanitizeLine(l))
			}
		}
	}
	if !isFinal(r.GetStatus()) {
		return
	}
	id := sanitizeLine(r.GetId())
	switch word := runWord(r.GetStatus()); r.GetStatus() {
	case sourcev1.RunStatus_RUN_STATUS_SUCCEEDED:
		v := ""
		if r.GetReleaseVersion() != "" {
			v = ", released " + sanitizeLine(r.GetReleaseVersion())
		}
		fmt.Fprintf(p.w, "run %s %s in %s%s\n", id, p.style.paint(toneOK, word), runDuration(r), v)
	default:
		fmt.Fprintf(p.w, "run %s %s: %s\n", id, p.style.paint(toneOf(word), word), indentLines(Sanitize(r.GetFailureReason()), "  "))
	}
}

// stageLine is one stage of a run: "  build    succeeded  590ms; 1 artifact".
func stageLine(s *sourcev1.Stage, st style) string {
	return fmt.Sprintf("  %-8s %s%s", sanitizeLine(s.GetName()), st.status(stageWord(s.GetStatus()), 10), stageNote(s))
}

// stageNote is what a stage line says after the status: the time taken,
// the detail, the reason. A failed stage says why once: its reason, whose
// first line is the run's failure (printed in full, last lines and all,
// with the run), and not the detail, which told the same as it happened.
func stageNote(s *sourcev1.Stage) string {
	var parts []string
	if s.GetStartTime() != nil && s.GetEndTime() != nil {
		parts = append(parts, s.GetEndTime().AsTime().Sub(s.GetStartTime().AsTime()).Round(10*time.Millisecond).String())
	}
	failed := s.GetStatus() == sourcev1.StageStatus_STAGE_STATUS_FAILED && s.GetReason() != ""
	if s.GetDetail() != "" && !failed {
		parts = append(parts, sanitizeLine(s.GetDetail()))
	}
	if s.GetReason() != "" {
		parts = append(parts, sanitizeLine(firstLine(s.GetReason())))
	}
	if len(parts) == 0 {
		return ""
	}
	return " " + strings.Join(parts, "; ")
}

func runDuration(r *sourcev1.Run) string {
	if r.GetCreateTime() == nil || r.GetEndTime() == nil {
		return "-"
	}
	return r.GetEndTime().AsTime().Sub(r.GetCreateTime().AsTime()).Round(10 * time.Millisecond).String()
}

func stageWord(s sourcev1.StageStatus) string {
	return enumWord(s.String(), "STAGE_STATUS_")
}

func runWord(s sourcev1.RunStatus) string {
	return enumWord(s.String(), "RUN_STATUS_")
}
