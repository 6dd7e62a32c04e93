package release

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/durationpb"

	releaseeventsv1 "github.com/sluicehq/sluice/proto/gen/sluice/release/events/v1"
	releasev1 "github.com/sluicehq/sluice/proto/gen/sluice/release/v1"
	sourcev1 "github.com/sluicehq/sluice/proto/gen/sluice/source/v1"
)

// A run's deploy and verify output is its release log, served by GetLogs
// step by step: deploy:<env>, verify:<env>, and "deploy" for every
// environment's deploy.
func TestDeployAndVerifyOutputIsTheRunsReleaseLog(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	commit := h.repo.CommitFiles("feat: talkative deploy", map[string]string{
		"deploy.sh": deployScript + `echo "deployed $SLUICE_RELEASE_VERSION to $SLUICE_ENVIRONMENT"; echo "a warning" >&2` + "\n",
		"health":    "ok\n",
	})
	runID, _ := h.release(commit)

	lines, steps := h.logs(runID, "deploy")
	for _, want := range []string{
		"[deploy:staging] deployed v0.1.0 to staging", "[deploy:staging] a warning",
		"[deploy:production] deployed v0.1.0 to production", "[deploy:production] a warning",
	} {
		if !slices.Contains(lines, want) {
			t.Errorf("deploy log has no line %q:\n%s", want, strings.Join(lines, "\n"))
		}
	}
	for _, l := range lines {
		if strings.HasPrefix(l, "[verify:") {
			t.Errorf("deploy log has a verify line %q", l)
		}
	}
	if want := []string{
		"deploy", "verify", "rollback", "deploy:staging", "verify:staging", "deploy:production", "verify:production",
	}; !slices.Equal(steps, want) {
		t.Errorf("steps = %q, want %q", steps, want)
	}
	staging, _ := h.logs(runID, "deploy:staging")
	if slices.ContainsFunc(staging, func(l string) bool { return strings.Contains(l, "production") }) {
		t.Errorf("deploy:staging log has production's lines:\n%s", strings.Join(staging, "\n"))
	}
	verify, _ := h.logs(runID, "verify:production")
	if len(verify) == 0 || verify[len(verify)-1] != "--- verified v0.1.0 in production" {
		t.Errorf("verify:production log:\n%s", strings.Join(verify, "\n"))
	}

	// Unfiltered, the lines are numbered from 1 without gaps.
	res, err := h.client.GetLogs(context.Background(), &releasev1.GetLogsRequest{RunId: runID})
	if err != nil {
		t.Fatal(err)
	}
	for i, l := range res.GetLines() {
		if l.GetSeq() != int64(i+1) {
			t.Fatalf("line %d has seq %d", i, l.GetSeq())
		}
	}

	// A run that never reached release has no log.
	_, err = h.client.GetLogs(context.Background(), &releasev1.GetLogsRequest{RunId: "no-such-run"})
	wantCode(t, err, connect.CodeNotFound, `run "no-such-run" has no release stage`)
}

// A failing verify command's output is in verify:<env>, and its last lines
// end the stage's failure reason; the automatic rollback's output is in
// rollback:<env>.
func TestFailedVerifyCommandsLastLinesAreInTheReason(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.release(h.initialCommit())
	pipeline := h.pipeline()
	prod := pipeline.GetRelease().GetEnvironments()[1]
	prod.Verify = &sourcev1.VerifySpec{
		// Both lines on stderr: lines keep their order within a stream, but
		// stdout and stderr are two pipes read apart, so a line on each
		// could come in either order (this test failed now and then so).
		Check:   &sourcev1.VerifySpec_Command{Command: `echo "checking $SLUICE_RELEASE_VERSION" >&2; echo "not healthy: $(cat "$SLUICE_STATE_DIR/current")" >&2; test "$SLUICE_RELEASE_VERSION" = v0.1.0`},
		Timeout: durationpb.New(3 * time.Second),
	}
	runID := h.run(h.repo.CommitFiles("fix: anything", map[string]string{"greeting": "x\n"}), "main", pipeline)
	fin := h.finished(runID)
	want := "verification failed on production: " + strconv.Quote(prod.GetVerify().GetCommand()) + " exited with code 1 after 3s; rolled back production to v0.1.0" +
		"\nlast lines of verify:production:\n| checking v0.1.1\n| not healthy: v0.1.1"
	if fin.GetOutcome() != releaseeventsv1.ReleaseOutcome_RELEASE_OUTCOME_FAILED || !fin.GetRolledBack() || fin.GetReason() != want {
		t.Fatalf("ReleaseFinished = %v\nwant reason %q", fin, want)
	}
	failed := eventsOf[*releaseeventsv1.DeploymentFailed](h.events, runID)
	if len(failed) != 1 || failed[0].GetDeployment().GetFailedStep() != "verify:production" ||
		!slices.Equal(failed[0].GetDeployment().GetLastLogLines(), []string{"checking v0.1.1", "not healthy: v0.1.1"}) {
		t.Fatalf("DeploymentFailed = %v", failed)
	}
	rollback, steps := h.logs(runID, "rollback")
	if !slices.Contains(rollback, "--- rolling production back to v0.1.0") || !slices.Contains(rollback, "--- verified v0.1.0 in production") {
		t.Errorf("rollback log:\n%s", strings.Join(rollback, "\n"))
	}
	if !slices.Contains(steps, "rollback:production") || slices.Contains(steps, "rollback:staging") {
		t.Errorf("steps = %q, want rollback:production and no rollback:staging", steps)
	}
}

// TailLogs follows a release log while the deploy writes it and ends with
// the stage.
func TestTailLogsFollowsTheDeployUntilTheStageEnds(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	commit := h.repo.CommitFiles("feat: slow deploy", map[string]string{
		"deploy.sh": `echo first; sleep 1; echo second` + "\n" + deployScript,
		"health":    "ok\n",
	})
	runID := h.run(commit, "main", h.pipeline())
	waitEvent(t, h.events, func(p *releaseeventsv1.ReleasePublished) bool { return p.GetRunId() == runID })

	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	stream, err := h.client.TailLogs(ctx, &releasev1.TailLogsRequest{RunId: runID, Step: "deploy"})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	var seqs []int64
	for stream.Receive() {
		for _, l := range stream.Msg().GetLines() {
			if l.GetStream() != "meta" {
				got = append(got, l.GetStep()+" "+l.GetText())
			}
			seqs = append(seqs, l.GetSeq())
		}
	}
	if err := stream.Err(); err != nil {
		t.Fatalf("tail: %v", err)
	}
	if want := []string{"deploy:staging first", "deploy:staging second", "deploy:production first", "deploy:production second"}; !slices.Equal(got, want) {
		t.Fatalf("tailed %q, want %q", got, want)
	}
	if !slices.IsSorted(seqs) {
		t.Fatalf("sequence numbers out of order: %v", seqs)
	}
	if fin := h.finished(runID); fin.GetOutcome() != releaseeventsv1.ReleaseOutcome_RELEASE_OUTCOME_SUCCEEDED {
		t.Fatalf("ReleaseFinished = %v", fin)
	}

	// No release stage, no tail: the caller is told at once.
	stream, err = h.client.TailLogs(ctx, &releasev1.TailLogsRequest{RunId: "no-such-run"})
	if err == nil {
		for stream.Receive() {
		}
		err = stream.Err()
	}
	var ce *connect.Error
	if !errors.As(err, &ce) || ce.Code() != connect.CodeNotFound {
		t.Fatalf("TailLogs of an unknown run: %v, want not found", err)
	}
}

// A manual rollback's output is a log of its own, under its deployment id.
func TestManualRollbackHasItsOwnLog(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.release(h.initialCommit())
	h.release(h.repo.CommitFiles("feat: greet", map[string]string{"greeting": "hi\n"}))
	res, err := h.client.Rollback(context.Background(), &releasev1.RollbackRequest{Repository: repoName, Environment: "staging"})
	if err != nil {
		t.Fatal(err)
	}
	lines, steps := h.logs(res.GetDeployment().GetId(), "rollback:staging")
	if len(lines) == 0 || lines[0] != "--- rolling staging back to v0.1.0 on request" || lines[len(lines)-1] != "--- verified v0.1.0 in staging" {
		t.Fatalf("rollback log:\n%s", strings.Join(lines, "\n"))
	}
	if want := []string{"deploy", "verify", "rollback", "rollback:staging"}; !slices.Equal(steps, want) {
		t.Fatalf("steps = %q, want %q", steps, want)
	}
}
