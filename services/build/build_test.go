package build_test

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/sluicehq/sluice/platform/artifacts"
	"github.com/sluicehq/sluice/platform/egress"
	"github.com/sluicehq/sluice/platform/events"
	"github.com/sluicehq/sluice/platform/lastlines"
	"github.com/sluicehq/sluice/platform/servicekit"
	"github.com/sluicehq/sluice/platform/servicekit/servicekittest"
	"github.com/sluicehq/sluice/platform/sqldb/sqldbtest"
	buildeventsv1 "github.com/sluicehq/sluice/proto/gen/sluice/build/events/v1"
	buildv1 "github.com/sluicehq/sluice/proto/gen/sluice/build/v1"
	sourceeventsv1 "github.com/sluicehq/sluice/proto/gen/sluice/source/events/v1"
	sourcev1 "github.com/sluicehq/sluice/proto/gen/sluice/source/v1"
	"github.com/sluicehq/sluice/services/build"
	"github.com/sluicehq/sluice/services/build/domain"
)

const (
	subjStarted  = "sluice.build.build.started"
	subjStepGo   = "sluice.build.step.started"
	subjStep     = "sluice.build.step.finished"
	subjArtifact = "sluice.build.artifact.published"
	subjFinished = "sluice.build.build.finished"
)

// payload is ev's payload as a T.
func payload[T any](t *testing.T, ev events.Event) T {
	t.Helper()
	p, ok := ev.Payload.(T)
	if !ok {
		t.Fatalf("%s carries %T", ev.Kind.Subject, ev.Payload)
	}
	return p
}

// checkGapless checks that the lines are numbered 1, 2, 3...
func checkGapless(t *testing.T, lines []*buildv1.LogLine) {
	t.Helper()
	for i, l := range lines {
		if l.GetSeq() != int64(i+1) {
			t.Fatalf("line %d has seq %d; want %d (lines: %v)", i, l.GetSeq(), i+1, texts(lines))
		}
	}
}

func texts(lines []*buildv1.LogLine) []string {
	out := make([]string, len(lines))
	for i, l := range lines {
		out[i] = l.GetStream() + "|" + l.GetStep() + "|" + l.GetText()
	}
	return out
}

// find returns the index of the first line whose text starts with prefix, or -1.
func find(lines []*buildv1.LogLine, prefix string) int {
	return slices.IndexFunc(lines, func(l *buildv1.LogLine) bool { return strings.HasPrefix(l.GetText(), prefix) })
}

// A step's environment is the executor's scrubbed base, the step's own
// variables and Sluice's: nothing else of the worker's. (Not parallel: it
// sets a variable of the test process.)
func TestStepsDoNotSeeTheWorkersEnvironment(t *testing.T) {
	h := newHarness(t)
	t.Setenv("SLUICE_TEST_SECRET", "from the worker's environment")
	req := runRequest(gitRepo(t, map[string]string{"main.go": "package main\n"}), &sourcev1.BuildSpec{
		Steps: []*sourcev1.Step{{Name: "env", Run: `echo "secret=[$SLUICE_TEST_SECRET]"`}},
	})
	h.publish(t, req)
	if fin := h.finished(t, req.GetRunId()); fin.GetStatus() != buildv1.BuildStatus_BUILD_STATUS_SUCCEEDED {
		t.Fatalf("BuildFinished %v", fin)
	}
	if lines := h.logs(t, req.GetRunId()).GetLines(); find(lines, "secret=[]") < 0 || find(lines, "secret=[from") >= 0 {
		t.Errorf("the step saw the worker's variable:\n%s", strings.Join(texts(lines), "\n"))
	}
}

func TestBuildSucceeds(t *testing.T) {
	t.Parallel()
	h := newHarness(t)

	content := "hello, artifact\n"
	repo := gitRepo(t, map[string]string{"hello.txt": content, "README.md": "# hello\n"})
	req := runRequest(repo, &sourcev1.BuildSpec{
		Steps: []*sourcev1.Step{
			{Name: "compile", Run: "mkdir -p bin\ncp hello.txt bin/hello\necho \"compiled $SLUICE_COMMIT\"\necho warning >&2"},
			{
				Name:    "check",
				Run:     `test -f bin/hello && echo "step=$SLUICE_STEP run=$SLUICE_RUN_ID branch=$SLUICE_BRANCH repo=$SLUICE_REPOSITORY greeting=$GREETING"`,
				Env:     map[string]string{"GREETING": "hi"},
				Timeout: durationpb.New(time.Minute),
			},
		},
		Artifacts: []*sourcev1.ArtifactSpec{{Name: "hello", Path: "bin/hello"}},
	})
	runID := req.GetRunId()
	h.publish(t, req)

	fin := h.finished(t, runID)
	h.settle(t)
	sum := sha256.Sum256([]byte(content))
	wantSHA := hex.EncodeToString(sum[:])

	// BuildFinished carries the outcome and the artifact.
	if fin.GetStatus() != buildv1.BuildStatus_BUILD_STATUS_SUCCEEDED || fin.GetFailureReason() != "" {
		t.Fatalf("BuildFinished status %v, reason %q; want SUCCEEDED", fin.GetStatus(), fin.GetFailureReason())
	}
	if fin.GetCommit() != repo.commit || fin.GetBranch() != "main" || fin.GetRepository().GetUrl() != repo.dir {
		t.Errorf("BuildFinished commit %s branch %s repository %v; want %s main %s", fin.GetCommit(), fin.GetBranch(), fin.GetRepository(), repo.commit, repo.dir)
	}
	if len(fin.GetArtifacts()) != 1 || fin.GetArtifacts()[0].GetSha256() != wantSHA ||
		fin.GetArtifacts()[0].GetSize() != int64(len(content)) || fin.GetArtifacts()[0].GetObject() != runID+"/hello" {
		t.Errorf("BuildFinished artifacts %v; want hello (%s, %d bytes) at %s/hello", fin.GetArtifacts(), wantSHA, len(content), runID)
	}
	if sd, d := fin.GetStepDuration().AsDuration(), fin.GetDuration().AsDuration(); sd <= 0 || sd > d {
		t.Errorf("step_duration %s, duration %s; want 0 < step_duration <= duration", sd, d)
	}

	// The artifact is in the object store with that digest.
	obs, err := h.js.ObjectStore(t.Context(), artifacts.Bucket)
	if err != nil {
		t.Fatal(err)
	}
	data, err := obs.GetBytes(t.Context(), runID+"/hello")
	if err != nil {
		t.Fatalf("read artifact back: %v", err)
	}
	if got := sha256.Sum256(data); string(data) != content || hex.EncodeToString(got[:]) != wantSHA {
		t.Errorf("stored artifact %q; want %q", data, content)
	}

	// Every event once, in order.
	evs := h.rec.of(runID)
	want := []string{subjStarted, subjStepGo, subjStep, subjStepGo, subjStep, subjArtifact, subjFinished}
	if got := subjects(evs); !slices.Equal(got, want) {
		t.Fatalf("events %v; want %v", got, want)
	}
	started := payload[*buildeventsv1.BuildStarted](t, evs[0])
	if started.GetAttempt() != 1 || started.GetCommit() != repo.commit {
		t.Errorf("BuildStarted %v; want attempt 1 at %s", started, repo.commit)
	}
	for i, name := range []string{"compile", "check"} {
		ss := payload[*buildeventsv1.StepStarted](t, evs[1+2*i])
		if ss.GetStep() != name || ss.GetAttempt() != 1 || ss.GetRepository().GetName() != "hello" {
			t.Errorf("StepStarted %d: %v; want %s, attempt 1, of hello", i, ss, name)
		}
		sf := payload[*buildeventsv1.StepFinished](t, evs[2+2*i])
		if sf.GetStep() != name || sf.GetStatus() != buildv1.StepStatus_STEP_STATUS_SUCCEEDED || sf.GetExitCode() != 0 || sf.GetAttempt() != 1 {
			t.Errorf("StepFinished %d: %v; want %s SUCCEEDED", i, sf, name)
		}
	}
	if ap := payload[*buildeventsv1.ArtifactPublished](t, evs[5]); ap.GetArtifact().GetSha256() != wantSHA {
		t.Errorf("ArtifactPublished %v; want sha256 %s", ap, wantSHA)
	}
	for _, ev := range evs {
		// A step's events are about its task run, the others about the build.
		want := fin.GetBuildId()
		if s, ok := ev.Payload.(interface{ GetStep() string }); ok {
			want = events.TaskRunID(fin.GetBuildId(), s.GetStep())
		}
		if ev.SubjectID != want || ev.ChainID != runID {
			t.Errorf("%s: subject %s chain %s; want %s, run %s", ev.Kind.Subject, ev.SubjectID, ev.ChainID, want, runID)
		}
	}

	// GetBuild by run_id, and by id: the build's or the run's.
	b := h.build(t, runID)
	if b.GetId() != fin.GetBuildId() {
		t.Errorf("GetBuild(run_id) = build %s; want %s", b.GetId(), fin.GetBuildId())
	}
	for _, id := range []string{b.GetId(), runID} {
		res, err := h.client.GetBuild(t.Context(), &buildv1.GetBuildRequest{Id: id})
		if err != nil || res.GetBuild().GetId() != b.GetId() || res.GetBuild().GetRunId() != runID {
			t.Errorf("GetBuild(id %s) = %v, %v; want build %s of run %s", id, res.GetBuild(), err, b.GetId(), runID)
		}
	}
	if b.GetStatus() != buildv1.BuildStatus_BUILD_STATUS_SUCCEEDED || b.GetAttempt() != 1 || b.GetEndTime() == nil || b.GetCommit() != repo.commit {
		t.Errorf("build %v; want SUCCEEDED, attempt 1, ended, at %s", b, repo.commit)
	}
	if b.GetStepDuration().AsDuration() <= 0 || b.GetStepDuration().AsDuration() != fin.GetStepDuration().AsDuration() || b.GetWorkerId() == "" {
		t.Errorf("step duration %v (finished says %v), worker %q", b.GetStepDuration().AsDuration(), fin.GetStepDuration().AsDuration(), b.GetWorkerId())
	}
	if len(b.GetSteps()) != 2 {
		t.Fatalf("steps %v; want compile and check", b.GetSteps())
	}
	for _, st := range b.GetSteps() {
		if st.GetStatus() != buildv1.StepStatus_STEP_STATUS_SUCCEEDED || st.GetStartTime() == nil || st.GetEndTime() == nil {
			t.Errorf("step %v; want SUCCEEDED with times", st)
		}
	}
	if len(b.GetArtifacts()) != 1 || b.GetArtifacts()[0].GetSha256() != wantSHA {
		t.Errorf("artifacts %v; want hello with %s", b.GetArtifacts(), wantSHA)
	}
	list, err := h.client.ListBuilds(t.Context(), &buildv1.ListBuildsRequest{})
	if err != nil || len(list.GetBuilds()) != 1 || list.GetBuilds()[0].GetId() != b.GetId() || list.GetNextPageToken() != "" {
		t.Errorf("ListBuilds: %v, %v; want the one build and no next page", list, err)
	}

	// The log: gapless, complete, stdout/stderr/meta lines of each step.
	logs := h.logs(t, runID)
	lines := logs.GetLines()
	checkGapless(t, lines)
	if !logs.GetComplete() || logs.GetNextSeq() != int64(len(lines)+1) {
		t.Errorf("complete %v next_seq %d; want complete, %d", logs.GetComplete(), logs.GetNextSeq(), len(lines)+1)
	}
	wantLines := []string{
		"meta|compile|--- step compile: mkdir -p bin",
		"stdout|compile|compiled " + repo.commit,
		"stderr|compile|warning",
		"meta|check|--- step check: test -f bin/hello",
		"stdout|check|step=check run=" + runID + " branch=main repo=hello greeting=hi",
	}
	got := texts(lines)
	for _, w := range wantLines {
		if !slices.ContainsFunc(got, func(g string) bool { return strings.HasPrefix(g, w) }) {
			t.Errorf("log has no line %q:\n%s", w, strings.Join(got, "\n"))
		}
	}
	if i := find(lines, "--- step compile exited with code 0 after "); i < 0 || i > find(lines, "--- step check:") {
		t.Errorf("compile's exit line missing or after check's banner:\n%s", strings.Join(got, "\n"))
	}
	if last := lines[len(lines)-1].GetText(); !strings.HasPrefix(last, "--- build succeeded in ") {
		t.Errorf("last line %q; want the build's end", last)
	}

	// Paging and the step filter.
	page, err := h.client.GetLogs(t.Context(), &buildv1.GetLogsRequest{RunId: runID, FromSeq: 3, Limit: 2})
	if err != nil {
		t.Fatal(err)
	}
	if len(page.GetLines()) != 2 || page.GetLines()[0].GetSeq() != 3 || page.GetNextSeq() != 5 || page.GetComplete() {
		t.Errorf("page from 3 limit 2: %v next %d complete %v; want seqs 3,4 next 5 incomplete", texts(page.GetLines()), page.GetNextSeq(), page.GetComplete())
	}
	check, err := h.client.GetLogs(t.Context(), &buildv1.GetLogsRequest{RunId: runID, Step: "check"})
	if err != nil {
		t.Fatal(err)
	}
	if len(check.GetLines()) != 3 || !check.GetComplete() {
		t.Errorf("check's lines %v; want banner, output, exit line", texts(check.GetLines()))
	}

	// The workspace is gone.
	if entries, err := os.ReadDir(h.workspaces()); err != nil || len(entries) != 0 {
		t.Errorf("workspaces left: %v (%v)", entries, err)
	}

	// Unknown ids and bad requests.
	_, err = h.client.GetBuild(t.Context(), &buildv1.GetBuildRequest{Id: "no-such-build"})
	if connect.CodeOf(err) != connect.CodeNotFound || !strings.Contains(err.Error(), "no-such-build") {
		t.Errorf("GetBuild(unknown): %v; want NotFound naming it", err)
	}
	_, err = h.client.GetBuild(t.Context(), &buildv1.GetBuildRequest{RunId: b.GetId()})
	if connect.CodeOf(err) != connect.CodeNotFound || !strings.Contains(err.Error(), "no build for run "+b.GetId()) {
		t.Errorf("GetBuild(run_id: a build id): %v; want NotFound: run_id names a run only", err)
	}
	_, err = h.client.GetLogs(t.Context(), &buildv1.GetLogsRequest{RunId: "no-such-run"})
	if connect.CodeOf(err) != connect.CodeNotFound || !strings.Contains(err.Error(), "no build for run no-such-run") {
		t.Errorf("GetLogs(unknown): %v; want NotFound \"no build for run no-such-run\"", err)
	}
	for _, req := range []*buildv1.GetBuildRequest{{}, {Id: b.GetId(), RunId: runID}} {
		_, err = h.client.GetBuild(t.Context(), req)
		if connect.CodeOf(err) != connect.CodeInvalidArgument {
			t.Errorf("GetBuild(%v): %v; want InvalidArgument: exactly one of id and run_id", req, err)
		}
	}
}

// cutMark ends a line cut to its bound: it says how much was cut.
var cutMark = regexp.MustCompile(`… \[cut: [0-9.]+ KiB more\]$`)

func TestBuildFailures(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	repo := gitRepo(t, map[string]string{"main.go": "package main\n"})

	// The builds run side by side; the group ends when all have.
	t.Run("runs", func(t *testing.T) {
		// A step that fails after printing 20 lines of 64 KiB: the build's
		// events carry its last lines, each cut to lastlines.DefaultMaxLen
		// with a mark that says how much of it was cut.
		t.Run("failing step with long lines", func(t *testing.T) {
			t.Parallel()
			req := runRequest(repo, &sourcev1.BuildSpec{Steps: []*sourcev1.Step{{
				Name: "compile",
				Run:  `l=$(head -c 65536 /dev/zero | tr '\0' x); i=0; while [ $i -lt 20 ]; do echo "$l"; i=$((i+1)); done; exit 1`,
			}}})
			h.publish(t, req)
			ev := h.rec.waitFor(t, req.GetRunId(), subjFinished)
			fin := payload[*buildeventsv1.BuildFinished](t, ev)
			lines := fin.GetLastLogLines()
			if len(lines) != domain.LastLogLines {
				t.Fatalf("%d last lines; want %d", len(lines), domain.LastLogLines)
			}
			for i, line := range lines {
				if len(line) > lastlines.DefaultMaxLen || !strings.HasPrefix(line, "xxx") || !cutMark.MatchString(line) {
					t.Errorf("last line %d: %d bytes, ends %q; want at most %d bytes ending in a mark saying how much was cut",
						i, len(line), line[max(0, len(line)-30):], lastlines.DefaultMaxLen)
				}
			}
			if n := len(ev.Received.Data); n > events.MaxBody {
				t.Errorf("BuildFinished is %d bytes; want it within the event budget, %d", n, events.MaxBody)
			}
		})

		t.Run("failing step", func(t *testing.T) {
			t.Parallel()
			marker := h.file(t, "package-ran")
			req := runRequest(repo, &sourcev1.BuildSpec{
				Steps: []*sourcev1.Step{
					{Name: "compile", Run: `i=1; while [ $i -le 25 ]; do echo "line $i"; i=$((i+1)); done; exit 2`},
					{Name: "package", Run: `touch "$MARKER"`, Env: map[string]string{"MARKER": marker}},
				},
				Artifacts: []*sourcev1.ArtifactSpec{{Name: "hello", Path: "main.go"}},
			})
			h.publish(t, req)
			fin := h.finished(t, req.GetRunId())

			if fin.GetStatus() != buildv1.BuildStatus_BUILD_STATUS_FAILED ||
				fin.GetFailureReason() != `step "compile" exited with code 2` ||
				fin.GetFailedStep() != "compile" || fin.GetExitCode() != 2 {
				t.Errorf("BuildFinished %v; want FAILED by compile with code 2", fin)
			}
			var wantLast []string
			for i := 6; i <= 25; i++ {
				wantLast = append(wantLast, "line "+strconv.Itoa(i))
			}
			if !slices.Equal(fin.GetLastLogLines(), wantLast) {
				t.Errorf("last_log_lines %q; want %q", fin.GetLastLogLines(), wantLast)
			}
			if _, err := os.Stat(marker); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("the step after the failing one ran (stat %s: %v)", marker, err)
			}
			h.settle(t)
			// The step after the failing one is skipped, and says so.
			if got := subjects(h.rec.of(req.GetRunId())); !slices.Equal(got, []string{subjStarted, subjStepGo, subjStep, subjStep, subjFinished}) {
				t.Errorf("events %v; want started, one step run, one skipped, finished (no artifact)", got)
			}
			b := h.build(t, req.GetRunId())
			if b.GetStatus() != buildv1.BuildStatus_BUILD_STATUS_FAILED || b.GetFailureReason() != fin.GetFailureReason() || len(b.GetSteps()) != 2 ||
				b.GetSteps()[0].GetStatus() != buildv1.StepStatus_STEP_STATUS_FAILED || b.GetSteps()[0].GetExitCode() != 2 ||
				b.GetSteps()[1].GetStatus() != buildv1.StepStatus_STEP_STATUS_SKIPPED || b.GetSteps()[1].GetReason() != "an earlier step failed" ||
				b.GetSteps()[0].GetTries() != 1 || b.GetSteps()[1].GetTries() != 0 || len(b.GetArtifacts()) != 0 {
				t.Errorf("build %v; want FAILED, compile FAILED(2), package SKIPPED, no artifacts", b)
			}
			if b.GetFailedStep() != "compile" || b.GetExitCode() != 2 || !slices.Equal(b.GetLastLogLines(), wantLast) || b.GetStartTime() == nil {
				t.Errorf("GetBuild failure fields %q %d %q %v; want those of BuildFinished", b.GetFailedStep(), b.GetExitCode(), b.GetLastLogLines(), b.GetStartTime())
			}
			lines := h.logs(t, req.GetRunId()).GetLines()
			checkGapless(t, lines)
			if find(lines, "--- step compile exited with code 2 after ") < 0 || find(lines, `--- build failed: step "compile" exited with code 2`) < 0 {
				t.Errorf("log lacks the exit and failure lines:\n%s", strings.Join(texts(lines), "\n"))
			}
		})

		for _, tc := range []struct {
			name   string
			commit string
			spec   *sourcev1.BuildSpec
			reason string
		}{
			{
				name:   "commit not in repository",
				commit: strings.Repeat("ab", 20),
				spec:   &sourcev1.BuildSpec{Steps: []*sourcev1.Step{{Name: "compile", Run: "true"}}},
				reason: "checkout failed: ",
			},
			{
				name: "missing artifact",
				spec: &sourcev1.BuildSpec{
					Steps:     []*sourcev1.Step{{Name: "compile", Run: "mkdir -p bin"}},
					Artifacts: []*sourcev1.ArtifactSpec{{Name: "hello", Path: "bin/hello"}},
				},
				reason: `artifact "hello": bin/hello not found`,
			},
			{
				// Opening a named pipe to read waits for a writer: the
				// worker would wait for good.
				name: "artifact that is a named pipe",
				spec: &sourcev1.BuildSpec{
					Steps:     []*sourcev1.Step{{Name: "compile", Run: "mkdir -p bin && mkfifo bin/hello"}},
					Artifacts: []*sourcev1.ArtifactSpec{{Name: "hello", Path: "bin/hello"}},
				},
				reason: `artifact "hello": bin/hello is a named pipe (FIFO), not a regular file`,
			},
			{
				// A directory is kept as a gzipped tar of its files: one
				// without a regular file (a named pipe is not one) has
				// nothing to keep.
				name: "artifact that is a directory without files",
				spec: &sourcev1.BuildSpec{
					Steps:     []*sourcev1.Step{{Name: "compile", Run: "mkdir -p bin/hello/sub && mkfifo bin/hello/pipe"}},
					Artifacts: []*sourcev1.ArtifactSpec{{Name: "hello", Path: "bin/hello"}},
				},
				reason: `artifact "hello": the directory bin/hello holds no regular file`,
			},
			{
				name: "artifact glob that matches no file",
				spec: &sourcev1.BuildSpec{
					Steps:     []*sourcev1.Step{{Name: "compile", Run: "mkdir -p bin && touch bin/hello"}},
					Artifacts: []*sourcev1.ArtifactSpec{{Name: "hello", Path: "bin/**/*.exe"}},
				},
				reason: `artifact "hello": no regular file matches bin/**/*.exe`,
			},
			{
				name: "artifact directory over the size limit",
				spec: &sourcev1.BuildSpec{
					Steps:     []*sourcev1.Step{{Name: "compile", Run: "mkdir -p bin && truncate -s 100G bin/hello"}},
					Artifacts: []*sourcev1.ArtifactSpec{{Name: "hello", Path: "bin"}},
				},
				reason: `artifact "hello": bin is more than 2147483648 bytes; at most 2147483648 are stored`,
			},
			{
				// A sparse file claims 100 GB it never wrote: refused by
				// its size before a byte is read.
				name: "artifact over the size limit",
				spec: &sourcev1.BuildSpec{
					Steps:     []*sourcev1.Step{{Name: "compile", Run: "mkdir -p bin && truncate -s 100G bin/hello"}},
					Artifacts: []*sourcev1.ArtifactSpec{{Name: "hello", Path: "bin/hello"}},
				},
				reason: `artifact "hello": bin/hello is 107374182400 bytes; at most 2147483648 are stored (hint: the build service's max-artifact-size setting sets the limit)`,
			},
			{
				name: "artifact outside the workspace",
				spec: &sourcev1.BuildSpec{
					Steps:     []*sourcev1.Step{{Name: "compile", Run: "ln -s /etc/hostname escape"}},
					Artifacts: []*sourcev1.ArtifactSpec{{Name: "escape", Path: "escape"}},
				},
				reason: `artifact "escape": `,
			},
		} {
			t.Run(tc.name, func(t *testing.T) {
				t.Parallel()
				req := runRequest(repo, tc.spec)
				if tc.commit != "" {
					req.Commit = tc.commit
				}
				h.publish(t, req)
				fin := h.finished(t, req.GetRunId())
				if fin.GetStatus() != buildv1.BuildStatus_BUILD_STATUS_FAILED || !strings.HasPrefix(fin.GetFailureReason(), tc.reason) {
					t.Errorf("BuildFinished %v, %q; want FAILED with %q", fin.GetStatus(), fin.GetFailureReason(), tc.reason)
				}
				if b := h.build(t, req.GetRunId()); b.GetStatus() != buildv1.BuildStatus_BUILD_STATUS_FAILED || len(b.GetArtifacts()) != 0 {
					t.Errorf("build %v; want FAILED without artifacts", b)
				}
				t.Log(fin.GetFailureReason())
			})
		}
	})
	h.settle(t)
	if entries, err := os.ReadDir(h.workspaces()); err != nil || len(entries) != 0 {
		t.Errorf("workspaces left: %v (%v)", entries, err)
	}
}

func TestStepTimeoutKillsProcessGroup(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	repo := gitRepo(t, map[string]string{"main.go": "package main\n"})
	pidFile := h.file(t, "background.pid")

	req := runRequest(repo, &sourcev1.BuildSpec{Steps: []*sourcev1.Step{{
		Name:    "slow",
		Run:     `sleep 60 & echo $! > "$PIDFILE"; echo started; sleep 60; wait`,
		Env:     map[string]string{"PIDFILE": pidFile},
		Timeout: durationpb.New(3 * time.Second),
	}}})
	h.publish(t, req)
	fin := h.finished(t, req.GetRunId())

	if fin.GetStatus() != buildv1.BuildStatus_BUILD_STATUS_FAILED || fin.GetFailureReason() != `step "slow" timed out after 3s` ||
		fin.GetFailedStep() != "slow" || fin.GetExitCode() != -1 || !slices.Equal(fin.GetLastLogLines(), []string{"started"}) {
		t.Errorf("BuildFinished %v; want FAILED, slow timed out after 3s", fin)
	}
	b := h.build(t, req.GetRunId())
	if st := b.GetSteps()[0]; st.GetStatus() != buildv1.StepStatus_STEP_STATUS_TIMED_OUT || st.GetExitCode() != -1 {
		t.Errorf("step %v; want TIMED_OUT", st)
	}
	lines := h.logs(t, req.GetRunId()).GetLines()
	if find(lines, "--- step slow timed out after 3s, killed") < 0 {
		t.Errorf("log lacks the timeout line:\n%s", strings.Join(texts(lines), "\n"))
	}

	// The background sleep was killed with the step's process group.
	data, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	pid := strings.TrimSpace(string(data))
	stat, err := os.ReadFile("/proc/" + pid + "/stat")
	if err == nil {
		// Only a zombie that nobody reaped yet may remain: "pid (comm) Z ...".
		if _, rest, _ := strings.Cut(string(stat), ") "); !strings.HasPrefix(rest, "Z") {
			t.Errorf("background process %s still alive: %s", pid, stat)
		}
	}
	h.settle(t)
}

func TestDuplicateRunRequestMakesOneBuild(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	repo := gitRepo(t, map[string]string{"main.go": "package main\n"})

	req := runRequest(repo, &sourcev1.BuildSpec{Steps: []*sourcev1.Step{{Name: "compile", Run: "sleep 0.5; echo built"}}})
	ev := h.publish(t, req)
	// The same event stored again under another message id, while the first
	// is being built (four workers take both at once)...
	h.publishEvent(t, ev, "copy-1-"+ev.ID)
	h.finished(t, req.GetRunId())
	h.settle(t)
	// ...and once more after it ended.
	h.publishEvent(t, ev, "copy-2-"+ev.ID)
	h.settle(t)

	if got := subjects(h.rec.of(req.GetRunId())); !slices.Equal(got, []string{subjStarted, subjStepGo, subjStep, subjFinished}) {
		t.Errorf("events %v; want one build's", got)
	}
	list, err := h.client.ListBuilds(t.Context(), &buildv1.ListBuildsRequest{Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.GetBuilds()) != 1 || list.GetBuilds()[0].GetAttempt() != 1 || list.GetBuilds()[0].GetStatus() != buildv1.BuildStatus_BUILD_STATUS_SUCCEEDED {
		t.Errorf("builds %v; want one SUCCEEDED in attempt 1", list.GetBuilds())
	}
	lines := h.logs(t, req.GetRunId()).GetLines()
	if n := len(slices.DeleteFunc(slices.Clone(lines), func(l *buildv1.LogLine) bool { return l.GetText() != "built" })); n != 1 {
		t.Errorf("the step ran %d times; want once:\n%s", n, strings.Join(texts(lines), "\n"))
	}
}

func TestTakeoverOfBuildLeftRunning(t *testing.T) {
	t.Parallel()
	// Two replicas on one database, as replicas on PostgreSQL would be. The
	// heartbeat is short to make the takeover quick, but long enough that a
	// loaded machine renews the live holder's lease in time (at 200ms a slow
	// PostgreSQL let the first attempt lapse before its step printed).
	dbURL := sqldbtest.URL(t)
	replica := func(id string) build.Config {
		return build.Config{Settings: servicekit.Settings{DatabaseURL: dbURL}, WorkerID: id, Heartbeat: time.Second}
	}
	h := newHarness(t, replica("worker-a"), replica("worker-b"))
	workers := map[string]*instance{"worker-a": h.replicas[0], "worker-b": h.replicas[1]}
	// Redeliver an unacknowledged run request after 2s instead of 30s
	// (after the replicas provisioned the declared consumer).
	h.shortAckWait(t, 2*time.Second)

	marker := h.file(t, "first-attempt")
	repo := gitRepo(t, map[string]string{"main.go": "package main\n"})
	req := runRequest(repo, &sourcev1.BuildSpec{Steps: []*sourcev1.Step{
		{
			Name: "work",
			Run:  `if [ -f "$MARKER" ]; then echo "second attempt"; else touch "$MARKER"; echo "first attempt"; sleep 60; fi`,
			Env:  map[string]string{"MARKER": marker},
		},
		{Name: "after", Run: "echo after"},
	}})
	runID := req.GetRunId()
	h.publish(t, req)

	// One replica took the run and is inside the step.
	var holder, other string
	servicekittest.Eventually(t, "the first attempt to run", func() bool {
		res, err := workers["worker-a"].client.GetLogs(t.Context(), &buildv1.GetLogsRequest{RunId: runID})
		if err != nil || find(res.GetLines(), "first attempt") < 0 {
			return false
		}
		started := res.GetLines()[find(res.GetLines(), "--- worker ")].GetText()
		holder = strings.Fields(started)[2]
		return true
	})
	other = map[string]string{"worker-a": "worker-b", "worker-b": "worker-a"}[holder]
	if other == "" {
		t.Fatalf("unknown holder %q", holder)
	}
	dead, survivor := workers[holder], workers[other]

	// The holder dies: it loses NATS (no more heartbeats, no nak), then stops.
	dead.nc.Close()
	dead.stop()

	fin := h.finished(t, runID)
	h.settle(t, survivor)
	if fin.GetStatus() != buildv1.BuildStatus_BUILD_STATUS_SUCCEEDED {
		t.Fatalf("BuildFinished %v; want SUCCEEDED after the takeover", fin)
	}
	got := survivor.build(t, runID)
	if got.GetAttempt() != 2 || got.GetStatus() != buildv1.BuildStatus_BUILD_STATUS_SUCCEEDED ||
		got.GetSteps()[0].GetStatus() != buildv1.StepStatus_STEP_STATUS_SUCCEEDED || got.GetSteps()[1].GetStatus() != buildv1.StepStatus_STEP_STATUS_SUCCEEDED {
		t.Errorf("build %v; want SUCCEEDED in attempt 2 with both steps", got)
	}

	evs := h.rec.of(runID)
	var attempts []int32
	for _, ev := range evs {
		if s, ok := ev.Payload.(*buildeventsv1.BuildStarted); ok {
			attempts = append(attempts, s.GetAttempt())
		}
	}
	if !slices.Equal(attempts, []int32{1, 2}) {
		t.Errorf("BuildStarted attempts %v; want [1 2]", attempts)
	}
	// The first attempt's step start is published from the shared outbox,
	// before or after the second attempt's start.
	var stepStarts []string
	others := slices.DeleteFunc(slices.Clone(evs), func(ev events.Event) bool {
		s, ok := ev.Payload.(*buildeventsv1.StepStarted)
		if ok {
			stepStarts = append(stepStarts, fmt.Sprintf("%s#%d", s.GetStep(), s.GetAttempt()))
		}
		return ok
	})
	if got := subjects(others); !slices.Equal(got, []string{subjStarted, subjStarted, subjStep, subjStep, subjFinished}) {
		t.Errorf("events %v; want both starts, the second attempt's steps, one finish", got)
	}
	if slices.Sort(stepStarts); !slices.Equal(stepStarts, []string{"after#2", "work#1", "work#2"}) {
		t.Errorf("step starts %v; want work in both attempts, after in the second", stepStarts)
	}

	// One log across both workers: gapless, in order.
	logs := survivor.logs(t, runID)
	lines := logs.GetLines()
	checkGapless(t, lines)
	order := []string{
		"--- worker " + holder + " started the build (attempt 1)",
		"first attempt",
		"--- step work cancelled after ",
		"--- worker " + holder + " stopped working on the build: ",
		"--- worker " + other + " took over (attempt 2)",
		"second attempt",
		"--- build succeeded in ",
	}
	last := -1
	for _, w := range order {
		i := find(lines, w)
		if i <= last {
			t.Fatalf("line %q missing or out of order:\n%s", w, strings.Join(texts(lines), "\n"))
		}
		last = i
	}
	if !logs.GetComplete() {
		t.Error("log not complete")
	}
}

// shortAckWait makes JetStream redeliver an unacknowledged run request
// after d, so a takeover test need not wait the declared 30s.
func (h *harness) shortAckWait(t *testing.T, d time.Duration) {
	t.Helper()
	c, err := h.js.Consumer(t.Context(), "SOURCE", build.RunsConsumer)
	if err != nil {
		t.Fatal(err)
	}
	cfg := c.CachedInfo().Config
	cfg.AckWait, cfg.BackOff = d, nil
	if _, err := h.js.CreateOrUpdateConsumer(t.Context(), "SOURCE", cfg); err != nil {
		t.Fatal(err)
	}
}

func TestTailLogsFollowsTheBuild(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	repo := gitRepo(t, map[string]string{"main.go": "package main\n"})
	gate := h.file(t, "gate")
	req := runRequest(repo, &sourcev1.BuildSpec{Steps: []*sourcev1.Step{
		{Name: "wait", Run: `echo ready; while [ ! -f "$GATE" ]; do sleep 0.05; done; echo "gate open"`, Env: map[string]string{"GATE": gate}},
		{Name: "after", Run: "echo after"},
	}})
	runID := req.GetRunId()

	// Tail before the run is even requested: it waits for the build.
	stream, err := h.client.TailLogs(t.Context(), &buildv1.TailLogsRequest{RunId: runID})
	if err != nil {
		t.Fatal(err)
	}
	defer stream.Close()
	h.publish(t, req)

	var tailed []*buildv1.LogLine
	opened := false
	for stream.Receive() {
		for _, l := range stream.Msg().GetLines() {
			tailed = append(tailed, l)
			if l.GetText() == "ready" && !opened {
				// The line arrived while the step is still blocked.
				if b := h.build(t, runID); b.GetStatus() != buildv1.BuildStatus_BUILD_STATUS_RUNNING {
					t.Errorf("build %v when its first line was tailed; want RUNNING", b.GetStatus())
				}
				if err := os.WriteFile(gate, nil, 0o644); err != nil {
					t.Fatal(err)
				}
				opened = true
			}
		}
	}
	if err := stream.Err(); err != nil {
		t.Fatalf("tail ended with %v; want a clean end when the build completed", err)
	}
	if !opened {
		t.Fatal("never saw the step's first line")
	}
	checkGapless(t, tailed)
	stored := h.logs(t, runID)
	if !stored.GetComplete() || !slices.Equal(texts(tailed), texts(stored.GetLines())) {
		t.Errorf("tailed:\n%s\nstored (complete %v):\n%s", strings.Join(texts(tailed), "\n"), stored.GetComplete(), strings.Join(texts(stored.GetLines()), "\n"))
	}
	if b := h.build(t, runID); b.GetStatus() != buildv1.BuildStatus_BUILD_STATUS_SUCCEEDED {
		t.Errorf("build %v; want SUCCEEDED", b.GetStatus())
	}
}

// A run request its proto's rules refuse (a run id that cannot name a
// workspace or an artifact object, a commit or a pipeline source would
// never have sent) is dead-lettered on its first delivery: no build, no
// event, no workspace. The rules are checked when the event is decoded;
// the service does not check again.
func TestInvalidRunRequestsAreDeadLettered(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	repo := gitRepo(t, map[string]string{"main.go": "package main\n"})
	t.Run("requests", func(t *testing.T) {
		for _, tc := range []struct {
			name string
			edit func(*sourceeventsv1.RunRequested, *sourcev1.BuildSpec)
			// want is what the reason names.
			want string
		}{
			{"run id leaving the workspaces", func(r *sourceeventsv1.RunRequested, _ *sourcev1.BuildSpec) { r.RunId = "../../etc" }, "run_id"},
			{"run id with a slash", func(r *sourceeventsv1.RunRequested, _ *sourcev1.BuildSpec) { r.RunId = "a/b" }, "run_id"},
			{"hidden run id", func(r *sourceeventsv1.RunRequested, _ *sourcev1.BuildSpec) { r.RunId = ".hidden" }, "run_id"},
			{"run id too long", func(r *sourceeventsv1.RunRequested, _ *sourcev1.BuildSpec) { r.RunId = strings.Repeat("a", 65) }, "run_id"},
			{"no run id", func(r *sourceeventsv1.RunRequested, _ *sourcev1.BuildSpec) { r.RunId = "" }, "run_id"},
			{"short commit", func(r *sourceeventsv1.RunRequested, _ *sourcev1.BuildSpec) { r.Commit = "abc123" }, "commit"},
			{"no pipeline", func(r *sourceeventsv1.RunRequested, _ *sourcev1.BuildSpec) { r.Pipeline = nil }, "pipeline"},
			{"empty step name", func(_ *sourceeventsv1.RunRequested, b *sourcev1.BuildSpec) { b.Steps[1].Name = "" }, "pipeline.build.steps[1].name"},
			{"two steps of one name", func(_ *sourceeventsv1.RunRequested, b *sourcev1.BuildSpec) { b.Steps[1].Name = "compile" }, "step names must be unique"},
			{"empty command", func(_ *sourceeventsv1.RunRequested, b *sourcev1.BuildSpec) { b.Steps[0].Run = "" }, "pipeline.build.steps[0].run"},
			{"negative timeout", func(_ *sourceeventsv1.RunRequested, b *sourcev1.BuildSpec) {
				b.Steps[0].Timeout = durationpb.New(-time.Second)
			}, "pipeline.build.steps[0].timeout"},
			{"artifact name with a slash", func(_ *sourceeventsv1.RunRequested, b *sourcev1.BuildSpec) { b.Artifacts[0].Name = "a/b" }, "pipeline.build.artifacts[0].name"},
			{"absolute artifact path", func(_ *sourceeventsv1.RunRequested, b *sourcev1.BuildSpec) { b.Artifacts[0].Path = "/etc/passwd" }, "pipeline.build.artifacts[0].path"},
			{"artifact path leaving the workspace", func(_ *sourceeventsv1.RunRequested, b *sourcev1.BuildSpec) { b.Artifacts[0].Path = "bin/../../x" }, "pipeline.build.artifacts[0].path"},
			{"two artifacts of one name", func(_ *sourceeventsv1.RunRequested, b *sourcev1.BuildSpec) {
				b.Artifacts = append(b.Artifacts, b.Artifacts[0])
			}, "artifact names must be unique"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				t.Parallel()
				spec := &sourcev1.BuildSpec{
					Steps:     []*sourcev1.Step{{Name: "compile", Run: "mkdir -p bin && touch bin/hello"}, {Name: "vet", Run: "true"}},
					Artifacts: []*sourcev1.ArtifactSpec{{Name: "hello", Path: "bin/hello"}},
				}
				req := runRequest(repo, spec)
				tc.edit(req, spec)
				reason := h.deadLetter(t, h.publishUnchecked(t, req))
				if !strings.Contains(reason, events.ErrInvalidEvent.Error()) || !strings.Contains(reason, tc.want) {
					t.Errorf("dead-lettered because %q; want an invalid event naming %q", reason, tc.want)
				}
			})
		}
	})
	h.settle(t)
	list, err := h.client.ListBuilds(t.Context(), &buildv1.ListBuildsRequest{})
	if err != nil || len(list.GetBuilds()) != 0 {
		t.Errorf("ListBuilds: %v, %v; want no build", list.GetBuilds(), err)
	}
	if n := h.rec.count(); n != 0 {
		t.Errorf("%d events published; want none", n)
	}
	if entries, err := os.ReadDir(h.workspaces()); err == nil && len(entries) != 0 {
		t.Errorf("workspaces made: %v", entries)
	}
}

// ListBuilds pages newest first by (create time, id): every build once,
// builds made at the same moment ordered by id; the superseded limit
// still sizes a page.
func TestListBuildsPages(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	store := build.NewStore(h.db)
	t0 := time.Now().UTC().Truncate(time.Second)
	for i := range 7 {
		b := domain.Build{
			ID: fmt.Sprintf("b%02d", i), RunID: fmt.Sprintf("r%02d", i), Commit: strings.Repeat("a", 40), Branch: "main",
			Repository: domain.Repository{ID: "repo-1", Name: "hello", URL: "/nowhere"},
			// Two builds a second.
			CreateTime: t0.Add(time.Duration(i/2) * time.Second),
		}
		if created, err := store.Create(t.Context(), b, nil); err != nil || !created {
			t.Fatalf("create %s: %v, %v", b.ID, created, err)
		}
	}
	ids := func(res *buildv1.ListBuildsResponse) []string {
		var out []string
		for _, b := range res.GetBuilds() {
			out = append(out, b.GetId())
		}
		return out
	}
	var got []string
	token := ""
	for pages := 0; ; pages++ {
		if pages == 3 {
			t.Fatalf("a fourth page after %v; want 7 builds in 3 pages", got)
		}
		res, err := h.client.ListBuilds(t.Context(), &buildv1.ListBuildsRequest{PageSize: 3, PageToken: token})
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, ids(res)...)
		if token = res.GetNextPageToken(); token == "" {
			break
		}
	}
	if want := []string{"b06", "b05", "b04", "b03", "b02", "b01", "b00"}; !slices.Equal(got, want) {
		t.Errorf("pages of 3 list %v; want %v", got, want)
	}
	legacy, err := h.client.ListBuilds(t.Context(), &buildv1.ListBuildsRequest{Limit: 2})
	if err != nil || !slices.Equal(ids(legacy), []string{"b06", "b05"}) || legacy.GetNextPageToken() == "" {
		t.Errorf("ListBuilds(limit 2) = %v, %v; want b06, b05 and a next page", legacy, err)
	}
	for _, req := range []*buildv1.ListBuildsRequest{{PageToken: "not-a-token"}, {PageSize: 1001}, {PageToken: strings.Repeat("a", 1025)}} {
		_, err := h.client.ListBuilds(t.Context(), req)
		if connect.CodeOf(err) != connect.CodeInvalidArgument || !strings.Contains(err.Error(), "page_") {
			t.Errorf("ListBuilds(%v): %v; want InvalidArgument naming the field", req, err)
		}
	}
}

// Without allow-egress local, a build of a local repository fails its
// checkout with the refusal, which names the setting; no step runs.
func TestLocalRepositoryRefusedWithoutAllowEgress(t *testing.T) {
	t.Parallel()
	h := newHarness(t, build.Config{Settings: servicekit.Settings{AllowEgress: []string{egress.Loopback}}, WorkerID: "worker-1"})
	marker := h.file(t, "ran")
	req := runRequest(gitRepo(t, map[string]string{"main.go": "package main\n"}),
		&sourcev1.BuildSpec{Steps: []*sourcev1.Step{{Name: "compile", Run: "touch " + marker}}})
	h.publish(t, req)
	fin := h.finished(t, req.GetRunId())
	if fin.GetStatus() != buildv1.BuildStatus_BUILD_STATUS_FAILED || !strings.HasPrefix(fin.GetFailureReason(), "checkout failed: egress refused: ") ||
		!strings.Contains(fin.GetFailureReason(), `add "local" to the allow-egress ($SLUICE_BUILD_ALLOW_EGRESS) setting`) {
		t.Fatalf("BuildFinished %v, %q; want FAILED with the refusal of the local repository", fin.GetStatus(), fin.GetFailureReason())
	}
	if _, err := os.Stat(marker); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a step ran (stat %s: %v)", marker, err)
	}
}

// A tail of a run that never gets a build ends, not_found, once tail-wait
// has passed, for every caller (it used to wait for ever).
func TestTailLogsOfAnUnknownRunEnds(t *testing.T) {
	t.Parallel()
	h := newHarness(t, build.Config{WorkerID: "worker-1", TailWait: time.Second})
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	stream, err := h.client.TailLogs(ctx, &buildv1.TailLogsRequest{RunId: "no-such-run"})
	if err != nil {
		t.Fatal(err)
	}
	defer stream.Close()
	for stream.Receive() {
		if len(stream.Msg().GetLines()) > 0 {
			t.Fatalf("lines of an unknown run: %v", stream.Msg().GetLines())
		}
	}
	if connect.CodeOf(stream.Err()) != connect.CodeNotFound || !strings.Contains(stream.Err().Error(), "no build after waiting 1s") {
		t.Fatalf("tail ended with %v; want not_found after tail-wait", stream.Err())
	}
}

// An artifact that is a directory or a glob is kept as a gzipped tar of
// its regular files, named relative to the directory (or the glob's
// folders before its first pattern); the files a glob does not match, and
// what is not a regular file, are left out.
func TestArtifactsOfDirectoriesAndGlobs(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	req := runRequest(gitRepo(t, map[string]string{"main.go": "package main\n"}), &sourcev1.BuildSpec{
		Steps: []*sourcev1.Step{{Name: "compile", Run: "mkdir -p dist/css out/a/b && echo page > dist/index.html && echo css > dist/css/site.css && " +
			"ln -s /etc/hostname dist/host && mkfifo dist/pipe && echo 1 > out/a/one.log && echo 2 > out/a/b/two.log && echo no > out/a/three.txt && " +
			"echo bin > 'out/app[1].bin'"}},
		// A path with glob characters that names a file is that file.
		Artifacts: []*sourcev1.ArtifactSpec{{Name: "web", Path: "dist"}, {Name: "logs", Path: "out/**/*.log"}, {Name: "legacy", Path: "out/app[1].bin"}},
	})
	h.publish(t, req)
	fin := h.finished(t, req.GetRunId())
	if fin.GetStatus() != buildv1.BuildStatus_BUILD_STATUS_SUCCEEDED || len(fin.GetArtifacts()) != 3 {
		t.Fatalf("BuildFinished %v", fin)
	}
	if legacy := fin.GetArtifacts()[2]; legacy.GetFormat() != buildv1.ArtifactFormat_ARTIFACT_FORMAT_FILE || legacy.GetSize() != 4 {
		t.Errorf("artifact legacy: %v; want the file out/app[1].bin", legacy)
	}
	store, err := artifacts.Open(t.Context(), h.js)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"web": "css/ css/site.css index.html", "logs": "a/b/two.log a/one.log"}
	for _, a := range fin.GetArtifacts()[:2] {
		if a.GetFormat() != buildv1.ArtifactFormat_ARTIFACT_FORMAT_TAR_GZIP {
			t.Errorf("artifact %s has format %s; want TAR_GZIP", a.GetName(), a.GetFormat())
		}
		r, err := store.Open(t.Context(), artifacts.Artifact{Name: a.GetName(), Object: a.GetObject(), SHA256: a.GetSha256(), Size: a.GetSize()})
		if err != nil {
			t.Fatal(err)
		}
		zr, err := gzip.NewReader(r)
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		tr := tar.NewReader(zr)
		for {
			hdr, err := tr.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			names = append(names, hdr.Name)
		}
		_ = r.Close()
		slices.Sort(names)
		if got := strings.Join(names, " "); got != want[a.GetName()] {
			t.Errorf("artifact %s holds %q; want %q", a.GetName(), got, want[a.GetName()])
		}
	}
}
