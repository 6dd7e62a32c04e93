package build_test

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/sluicehq/sluice/platform/events"
	"github.com/sluicehq/sluice/platform/servicekit"
	"github.com/sluicehq/sluice/platform/sqldb/sqldbtest"

	"github.com/sluicehq/sluice/platform/artifacts"
	buildeventsv1 "github.com/sluicehq/sluice/proto/gen/sluice/build/events/v1"
	buildv1 "github.com/sluicehq/sluice/proto/gen/sluice/build/v1"
	sourcev1 "github.com/sluicehq/sluice/proto/gen/sluice/source/v1"
	"github.com/sluicehq/sluice/services/build"
	"github.com/sluicehq/sluice/services/build/internal/buildtest"
)

const (
	subjStarted  = "sluice.build.build.started"
	subjStepGo   = "sluice.build.step.started"
	subjStep     = "sluice.build.step.finished"
	subjArtifact = "sluice.build.artifact.published"
	subjFinished = "sluice.build.build.finished"
)

func finished(t *testing.T, rec *buildtest.Recorder, runID string) *buildeventsv1.BuildFinished {
	t.Helper()
	return payload[*buildeventsv1.BuildFinished](t, rec.WaitFor(t, runID, subjFinished))
}

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

func TestBuildSucceeds(t *testing.T) {
	n := buildtest.StartNATS(t)
	rec := buildtest.Record(t, n.JS)
	inst := startInstance(t, n, build.Config{WorkerID: "worker-1"})
	t.Setenv("SLUICE_TEST_SECRET", "from the worker's environment")

	content := "hello, artifact\n"
	repo := buildtest.GitRepo(t, map[string]string{"hello.txt": content, "README.md": "# hello\n"})
	req := buildtest.RunRequest(repo, &sourcev1.BuildSpec{
		Steps: []*sourcev1.Step{
			{Name: "compile", Run: "mkdir -p bin\ncp hello.txt bin/hello\necho \"compiled $SLUICE_COMMIT\"\necho warning >&2"},
			{
				Name:    "check",
				Run:     `test -f bin/hello && echo "step=$SLUICE_STEP run=$SLUICE_RUN_ID branch=$SLUICE_BRANCH repo=$SLUICE_REPOSITORY greeting=$GREETING secret=[$SLUICE_TEST_SECRET]"`,
				Env:     map[string]string{"GREETING": "hi"},
				Timeout: durationpb.New(time.Minute),
			},
		},
		Artifacts: []*sourcev1.ArtifactSpec{{Name: "hello", Path: "bin/hello"}},
	})
	runID := req.GetRunId()
	n.Publish(t, req, "")

	fin := finished(t, rec, runID)
	settle(t, n, inst)
	sum := sha256.Sum256([]byte(content))
	wantSHA := hex.EncodeToString(sum[:])

	// BuildFinished carries the outcome and the artifact.
	if fin.GetStatus() != buildv1.BuildStatus_BUILD_STATUS_SUCCEEDED || fin.GetFailureReason() != "" {
		t.Fatalf("BuildFinished status %v, reason %q; want SUCCEEDED", fin.GetStatus(), fin.GetFailureReason())
	}
	if fin.GetCommit() != repo.Commit || fin.GetBranch() != "main" || fin.GetRepository().GetUrl() != repo.Dir {
		t.Errorf("BuildFinished commit %s branch %s repository %v; want %s main %s", fin.GetCommit(), fin.GetBranch(), fin.GetRepository(), repo.Commit, repo.Dir)
	}
	if len(fin.GetArtifacts()) != 1 || fin.GetArtifacts()[0].GetSha256() != wantSHA ||
		fin.GetArtifacts()[0].GetSize() != int64(len(content)) || fin.GetArtifacts()[0].GetObject() != runID+"/hello" {
		t.Errorf("BuildFinished artifacts %v; want hello (%s, %d bytes) at %s/hello", fin.GetArtifacts(), wantSHA, len(content), runID)
	}
	if sd, d := fin.GetStepDuration().AsDuration(), fin.GetDuration().AsDuration(); sd <= 0 || sd > d {
		t.Errorf("step_duration %s, duration %s; want 0 < step_duration <= duration", sd, d)
	}

	// The artifact is in the object store with that digest.
	obs, err := n.JS.ObjectStore(t.Context(), artifacts.Bucket)
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
	evs := rec.Of(runID)
	want := []string{subjStarted, subjStepGo, subjStep, subjStepGo, subjStep, subjArtifact, subjFinished}
	if got := buildtest.Subjects(evs); !slices.Equal(got, want) {
		t.Fatalf("events %v; want %v", got, want)
	}
	started := payload[*buildeventsv1.BuildStarted](t, evs[0])
	if started.GetAttempt() != 1 || started.GetCommit() != repo.Commit {
		t.Errorf("BuildStarted %v; want attempt 1 at %s", started, repo.Commit)
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

	// GetBuild by run id and by build id.
	b := inst.build(t, runID)
	if b.GetId() != fin.GetBuildId() || inst.build(t, b.GetId()).GetRunId() != runID {
		t.Errorf("GetBuild by run and build id disagree: %v", b)
	}
	if b.GetStatus() != buildv1.BuildStatus_BUILD_STATUS_SUCCEEDED || b.GetAttempt() != 1 || b.GetEndTime() == nil || b.GetCommit() != repo.Commit {
		t.Errorf("build %v; want SUCCEEDED, attempt 1, ended, at %s", b, repo.Commit)
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
	list, err := inst.client.ListBuilds(t.Context(), &buildv1.ListBuildsRequest{})
	if err != nil || len(list.GetBuilds()) != 1 || list.GetBuilds()[0].GetId() != b.GetId() {
		t.Errorf("ListBuilds: %v, %v; want the one build", list.GetBuilds(), err)
	}

	// The log: gapless, complete, stdout/stderr/meta lines of each step.
	logs := inst.logs(t, runID)
	lines := logs.GetLines()
	checkGapless(t, lines)
	if !logs.GetComplete() || logs.GetNextSeq() != int64(len(lines)+1) {
		t.Errorf("complete %v next_seq %d; want complete, %d", logs.GetComplete(), logs.GetNextSeq(), len(lines)+1)
	}
	wantLines := []string{
		"meta|compile|--- step compile: mkdir -p bin",
		"stdout|compile|compiled " + repo.Commit,
		"stderr|compile|warning",
		"meta|check|--- step check: test -f bin/hello",
		"stdout|check|step=check run=" + runID + " branch=main repo=hello greeting=hi secret=[]",
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
	page, err := inst.client.GetLogs(t.Context(), &buildv1.GetLogsRequest{RunId: runID, FromSeq: 3, Limit: 2})
	if err != nil {
		t.Fatal(err)
	}
	if len(page.GetLines()) != 2 || page.GetLines()[0].GetSeq() != 3 || page.GetNextSeq() != 5 || page.GetComplete() {
		t.Errorf("page from 3 limit 2: %v next %d complete %v; want seqs 3,4 next 5 incomplete", texts(page.GetLines()), page.GetNextSeq(), page.GetComplete())
	}
	check, err := inst.client.GetLogs(t.Context(), &buildv1.GetLogsRequest{RunId: runID, Step: "check"})
	if err != nil {
		t.Fatal(err)
	}
	if len(check.GetLines()) != 3 || !check.GetComplete() {
		t.Errorf("check's lines %v; want banner, output, exit line", texts(check.GetLines()))
	}

	// The workspace is gone.
	if entries, err := os.ReadDir(workspaces(inst.cfg)); err != nil || len(entries) != 0 {
		t.Errorf("workspaces left: %v (%v)", entries, err)
	}

	// Unknown ids and bad requests.
	_, err = inst.client.GetBuild(t.Context(), &buildv1.GetBuildRequest{Id: "no-such-build"})
	if connect.CodeOf(err) != connect.CodeNotFound || !strings.Contains(err.Error(), "no-such-build") {
		t.Errorf("GetBuild(unknown): %v; want NotFound naming it", err)
	}
	_, err = inst.client.GetLogs(t.Context(), &buildv1.GetLogsRequest{RunId: "no-such-run"})
	if connect.CodeOf(err) != connect.CodeNotFound || !strings.Contains(err.Error(), "no build for run no-such-run") {
		t.Errorf("GetLogs(unknown): %v; want NotFound \"no build for run no-such-run\"", err)
	}
	_, err = inst.client.GetBuild(t.Context(), &buildv1.GetBuildRequest{})
	if connect.CodeOf(err) != connect.CodeInvalidArgument {
		t.Errorf("GetBuild(empty id): %v; want InvalidArgument", err)
	}
}

func TestBuildFailures(t *testing.T) {
	n := buildtest.StartNATS(t)
	rec := buildtest.Record(t, n.JS)
	inst := startInstance(t, n, build.Config{WorkerID: "worker-1"})
	repo := buildtest.GitRepo(t, map[string]string{"main.go": "package main\n"})

	t.Run("failing step", func(t *testing.T) {
		marker := filepath.Join(t.TempDir(), "package-ran")
		req := buildtest.RunRequest(repo, &sourcev1.BuildSpec{
			Steps: []*sourcev1.Step{
				{Name: "compile", Run: `i=1; while [ $i -le 25 ]; do echo "line $i"; i=$((i+1)); done; exit 2`},
				{Name: "package", Run: `touch "$MARKER"`, Env: map[string]string{"MARKER": marker}},
			},
			Artifacts: []*sourcev1.ArtifactSpec{{Name: "hello", Path: "main.go"}},
		})
		n.Publish(t, req, "")
		fin := finished(t, rec, req.GetRunId())

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
		settle(t, n, inst)
		if got := buildtest.Subjects(rec.Of(req.GetRunId())); !slices.Equal(got, []string{subjStarted, subjStepGo, subjStep, subjFinished}) {
			t.Errorf("events %v; want started, one step, finished (no artifact)", got)
		}
		b := inst.build(t, req.GetRunId())
		if b.GetStatus() != buildv1.BuildStatus_BUILD_STATUS_FAILED || b.GetFailureReason() != fin.GetFailureReason() || len(b.GetSteps()) != 2 ||
			b.GetSteps()[0].GetStatus() != buildv1.StepStatus_STEP_STATUS_FAILED || b.GetSteps()[0].GetExitCode() != 2 ||
			b.GetSteps()[1].GetStatus() != buildv1.StepStatus_STEP_STATUS_SKIPPED || len(b.GetArtifacts()) != 0 {
			t.Errorf("build %v; want FAILED, compile FAILED(2), package SKIPPED, no artifacts", b)
		}
		if b.GetFailedStep() != "compile" || b.GetExitCode() != 2 || !slices.Equal(b.GetLastLogLines(), wantLast) || b.GetStartTime() == nil {
			t.Errorf("GetBuild failure fields %q %d %q %v; want those of BuildFinished", b.GetFailedStep(), b.GetExitCode(), b.GetLastLogLines(), b.GetStartTime())
		}
		lines := inst.logs(t, req.GetRunId()).GetLines()
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
			name: "artifact outside the workspace",
			spec: &sourcev1.BuildSpec{
				Steps:     []*sourcev1.Step{{Name: "compile", Run: "ln -s /etc/hostname escape"}},
				Artifacts: []*sourcev1.ArtifactSpec{{Name: "escape", Path: "escape"}},
			},
			reason: `artifact "escape": `,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := buildtest.RunRequest(repo, tc.spec)
			if tc.commit != "" {
				req.Commit = tc.commit
			}
			n.Publish(t, req, "")
			fin := finished(t, rec, req.GetRunId())
			if fin.GetStatus() != buildv1.BuildStatus_BUILD_STATUS_FAILED || !strings.HasPrefix(fin.GetFailureReason(), tc.reason) {
				t.Errorf("BuildFinished %v, %q; want FAILED with %q", fin.GetStatus(), fin.GetFailureReason(), tc.reason)
			}
			if b := inst.build(t, req.GetRunId()); b.GetStatus() != buildv1.BuildStatus_BUILD_STATUS_FAILED || len(b.GetArtifacts()) != 0 {
				t.Errorf("build %v; want FAILED without artifacts", b)
			}
			t.Log(fin.GetFailureReason())
		})
	}
	settle(t, n, inst)
	if entries, err := os.ReadDir(workspaces(inst.cfg)); err != nil || len(entries) != 0 {
		t.Errorf("workspaces left: %v (%v)", entries, err)
	}
}

func TestStepTimeoutKillsProcessGroup(t *testing.T) {
	n := buildtest.StartNATS(t)
	rec := buildtest.Record(t, n.JS)
	inst := startInstance(t, n, build.Config{WorkerID: "worker-1"})
	repo := buildtest.GitRepo(t, map[string]string{"main.go": "package main\n"})
	pidFile := filepath.Join(t.TempDir(), "background.pid")

	req := buildtest.RunRequest(repo, &sourcev1.BuildSpec{Steps: []*sourcev1.Step{{
		Name:    "slow",
		Run:     `sleep 60 & echo $! > "$PIDFILE"; echo started; sleep 60; wait`,
		Env:     map[string]string{"PIDFILE": pidFile},
		Timeout: durationpb.New(time.Second),
	}}})
	n.Publish(t, req, "")
	fin := finished(t, rec, req.GetRunId())

	if fin.GetStatus() != buildv1.BuildStatus_BUILD_STATUS_FAILED || fin.GetFailureReason() != `step "slow" timed out after 1s` ||
		fin.GetFailedStep() != "slow" || fin.GetExitCode() != -1 || !slices.Equal(fin.GetLastLogLines(), []string{"started"}) {
		t.Errorf("BuildFinished %v; want FAILED, slow timed out after 1s", fin)
	}
	b := inst.build(t, req.GetRunId())
	if st := b.GetSteps()[0]; st.GetStatus() != buildv1.StepStatus_STEP_STATUS_TIMED_OUT || st.GetExitCode() != -1 {
		t.Errorf("step %v; want TIMED_OUT", st)
	}
	lines := inst.logs(t, req.GetRunId()).GetLines()
	if find(lines, "--- step slow timed out after 1s, killed") < 0 {
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
	settle(t, n, inst)
}

func TestDuplicateRunRequestMakesOneBuild(t *testing.T) {
	n := buildtest.StartNATS(t)
	rec := buildtest.Record(t, n.JS)
	inst := startInstance(t, n, build.Config{WorkerID: "worker-1"})
	repo := buildtest.GitRepo(t, map[string]string{"main.go": "package main\n"})

	req := buildtest.RunRequest(repo, &sourcev1.BuildSpec{Steps: []*sourcev1.Step{{Name: "compile", Run: "sleep 0.5; echo built"}}})
	ev := n.Publish(t, req, "")
	// The same event stored again under another message id, while the first
	// is being built (four workers take both at once)...
	n.PublishEvent(t, ev, "copy-1-"+ev.ID)
	finished(t, rec, req.GetRunId())
	settle(t, n, inst)
	// ...and once more after it ended.
	n.PublishEvent(t, ev, "copy-2-"+ev.ID)
	settle(t, n, inst)

	if got := buildtest.Subjects(rec.Of(req.GetRunId())); !slices.Equal(got, []string{subjStarted, subjStepGo, subjStep, subjFinished}) {
		t.Errorf("events %v; want one build's", got)
	}
	list, err := inst.client.ListBuilds(t.Context(), &buildv1.ListBuildsRequest{Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.GetBuilds()) != 1 || list.GetBuilds()[0].GetAttempt() != 1 || list.GetBuilds()[0].GetStatus() != buildv1.BuildStatus_BUILD_STATUS_SUCCEEDED {
		t.Errorf("builds %v; want one SUCCEEDED in attempt 1", list.GetBuilds())
	}
	lines := inst.logs(t, req.GetRunId()).GetLines()
	if n := len(slices.DeleteFunc(slices.Clone(lines), func(l *buildv1.LogLine) bool { return l.GetText() != "built" })); n != 1 {
		t.Errorf("the step ran %d times; want once:\n%s", n, strings.Join(texts(lines), "\n"))
	}
}

func TestTakeoverOfBuildLeftRunning(t *testing.T) {
	n := buildtest.StartNATS(t)
	rec := buildtest.Record(t, n.JS)

	// Two replicas on one database, as replicas on PostgreSQL would be.
	dbURL := sqldbtest.URL(t)
	workers := map[string]*instance{}
	for _, id := range []string{"worker-a", "worker-b"} {
		workers[id] = startInstance(t, n, build.Config{Settings: servicekit.Settings{DatabaseURL: dbURL}, WorkerID: id, Heartbeat: 200 * time.Millisecond})
	}
	// Redeliver an unacknowledged run request after 2s instead of 30s
	// (after the replicas provisioned the declared consumer).
	shortAckWait(t, n, 2*time.Second)

	marker := filepath.Join(t.TempDir(), "first-attempt")
	repo := buildtest.GitRepo(t, map[string]string{"main.go": "package main\n"})
	req := buildtest.RunRequest(repo, &sourcev1.BuildSpec{Steps: []*sourcev1.Step{
		{
			Name: "work",
			Run:  `if [ -f "$MARKER" ]; then echo "second attempt"; else touch "$MARKER"; echo "first attempt"; sleep 60; fi`,
			Env:  map[string]string{"MARKER": marker},
		},
		{Name: "after", Run: "echo after"},
	}})
	runID := req.GetRunId()
	n.Publish(t, req, "")

	// One replica took the run and is inside the step.
	var holder, other string
	buildtest.Eventually(t, "the first attempt to run", func() bool {
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

	fin := finished(t, rec, runID)
	settle(t, n, survivor)
	if fin.GetStatus() != buildv1.BuildStatus_BUILD_STATUS_SUCCEEDED {
		t.Fatalf("BuildFinished %v; want SUCCEEDED after the takeover", fin)
	}
	got := survivor.build(t, runID)
	if got.GetAttempt() != 2 || got.GetStatus() != buildv1.BuildStatus_BUILD_STATUS_SUCCEEDED ||
		got.GetSteps()[0].GetStatus() != buildv1.StepStatus_STEP_STATUS_SUCCEEDED || got.GetSteps()[1].GetStatus() != buildv1.StepStatus_STEP_STATUS_SUCCEEDED {
		t.Errorf("build %v; want SUCCEEDED in attempt 2 with both steps", got)
	}

	evs := rec.Of(runID)
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
	if got := buildtest.Subjects(others); !slices.Equal(got, []string{subjStarted, subjStarted, subjStep, subjStep, subjFinished}) {
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
func shortAckWait(t *testing.T, n *buildtest.NATS, d time.Duration) {
	t.Helper()
	c, err := n.JS.Consumer(t.Context(), "SOURCE", build.RunsConsumer)
	if err != nil {
		t.Fatal(err)
	}
	cfg := c.CachedInfo().Config
	cfg.AckWait, cfg.BackOff = d, nil
	if _, err := n.JS.CreateOrUpdateConsumer(t.Context(), "SOURCE", cfg); err != nil {
		t.Fatal(err)
	}
}

func TestTailLogsFollowsTheBuild(t *testing.T) {
	n := buildtest.StartNATS(t)
	inst := startInstance(t, n, build.Config{WorkerID: "worker-1"})
	repo := buildtest.GitRepo(t, map[string]string{"main.go": "package main\n"})
	gate := filepath.Join(t.TempDir(), "gate")
	req := buildtest.RunRequest(repo, &sourcev1.BuildSpec{Steps: []*sourcev1.Step{
		{Name: "wait", Run: `echo ready; while [ ! -f "$GATE" ]; do sleep 0.05; done; echo "gate open"`, Env: map[string]string{"GATE": gate}},
		{Name: "after", Run: "echo after"},
	}})
	runID := req.GetRunId()

	// Tail before the run is even requested: it waits for the build.
	stream, err := inst.client.TailLogs(t.Context(), &buildv1.TailLogsRequest{RunId: runID})
	if err != nil {
		t.Fatal(err)
	}
	defer stream.Close()
	n.Publish(t, req, "")

	var tailed []*buildv1.LogLine
	opened := false
	for stream.Receive() {
		for _, l := range stream.Msg().GetLines() {
			tailed = append(tailed, l)
			if l.GetText() == "ready" && !opened {
				// The line arrived while the step is still blocked.
				if b := inst.build(t, runID); b.GetStatus() != buildv1.BuildStatus_BUILD_STATUS_RUNNING {
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
	stored := inst.logs(t, runID)
	if !stored.GetComplete() || !slices.Equal(texts(tailed), texts(stored.GetLines())) {
		t.Errorf("tailed:\n%s\nstored (complete %v):\n%s", strings.Join(texts(tailed), "\n"), stored.GetComplete(), strings.Join(texts(stored.GetLines()), "\n"))
	}
	if b := inst.build(t, runID); b.GetStatus() != buildv1.BuildStatus_BUILD_STATUS_SUCCEEDED {
		t.Errorf("build %v; want SUCCEEDED", b.GetStatus())
	}
}
