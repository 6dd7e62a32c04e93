package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"connectrpc.com/connect"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	buildv1 "github.com/sluicehq/sluice/proto/gen/sluice/build/v1"
	releasev1 "github.com/sluicehq/sluice/proto/gen/sluice/release/v1"
	sourcev1 "github.com/sluicehq/sluice/proto/gen/sluice/source/v1"
	testv1 "github.com/sluicehq/sluice/proto/gen/sluice/test/v1"
)

// result is one run of the CLI.
type result struct {
	code           int
	stdout, stderr string
}

func newApp(env map[string]string, out, errOut io.Writer) *App {
	return &App{Stdout: out, Stderr: errOut, Getenv: func(k string) string { return env[k] }, Version: "v9.9.9",
		IsTerminal: func(io.Writer) bool { return false }}
}

func run(t *testing.T, env map[string]string, args ...string) result {
	t.Helper()
	var out, errOut bytes.Buffer
	code := newApp(env, &out, &errOut).Run(context.Background(), args)
	return result{code, out.String(), errOut.String()}
}

func TestUsageErrorsExitTwo(t *testing.T) {
	t.Parallel()
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"nope"}, `sluice: unknown command "nope"`},
		{[]string{"show"}, "sluice show: missing <run-id> (usage: sluice show <run-id> [flags])"},
		{[]string{"show", "a", "b"}, `sluice show: unexpected argument "b"`},
		{[]string{"rollback", "hello"}, "--env is required"},
		{[]string{"rollback", "hello", "--env", "staging", "--to", "banana"}, `--to "banana" is not a version; a version looks like v1.2.3`},
		{[]string{"subscribe", "--url", "http://x"}, "--url and --secret are required"},
		{[]string{"runs", "--output", "yaml"}, `invalid argument "yaml" for "-o, --output" flag: must be text or json`},
		{[]string{"trigger", "hello", "--bogus"}, "sluice trigger: unknown flag --bogus"},
		{[]string{"runs", "--limit", "many"}, `invalid argument "many" for "--limit" flag`},
		{[]string{"version", "extra"}, `unexpected argument "extra"`},
	}
	for _, tt := range tests {
		r := run(t, nil, tt.args...)
		if r.code != 2 || !strings.Contains(r.stderr, tt.want) {
			t.Errorf("sluice %v: exit %d, stderr %q; want 2 and %q", tt.args, r.code, r.stderr, tt.want)
		}
		if lines := strings.Split(strings.TrimSpace(r.stderr), "\n"); len(lines) != 2 || !strings.HasPrefix(lines[1], "Run 'sluice") {
			t.Errorf("sluice %v: stderr %q; want the error and where help is, one line each", tt.args, r.stderr)
		}
		if r.stdout != "" {
			t.Errorf("sluice %v: printed %q on stdout", tt.args, r.stdout)
		}
	}
}

func TestTyposGetSuggestions(t *testing.T) {
	t.Parallel()
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"trigge", "hello"}, `sluice: unknown command "trigge"; did you mean "trigger"?`},
		{[]string{"rollbak"}, `did you mean "rollback"?`},
		{[]string{"repo", "lss"}, `sluice repo: unknown command "lss" for "sluice repo"; did you mean "ls"?`},
		{[]string{"trigger", "hello", "--folow"}, "unknown flag --folow; did you mean --follow?"},
		{[]string{"runs", "-limit", "5"}, "did you mean --limit?"},
		{[]string{"logs", "r1", "--stpe", "x"}, "did you mean --step?"},
		{[]string{"help", "trigge"}, `sluice: unknown command "trigge"; did you mean "trigger"?`},
		{[]string{"completion", "bsh"}, `unknown command "bsh" for "sluice completion"; did you mean "bash", "zsh" or "fish"?`},
	}
	for _, tt := range tests {
		r := run(t, nil, tt.args...)
		if r.code != 2 || !strings.Contains(r.stderr, tt.want) {
			t.Errorf("sluice %v: exit %d, stderr %q; want 2 and %q", tt.args, r.code, r.stderr, tt.want)
		}
	}
}

func TestGroupAloneShowsItsHelp(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{{"repo"}, {"repo", "--help"}, {"help", "repo"}} {
		r := run(t, nil, args...)
		if r.code != 0 || !strings.Contains(r.stdout, "USAGE\n  sluice repo <command> [flags]") ||
			!strings.Contains(r.stdout, "add  ") || !strings.Contains(r.stdout, "ls  ") || r.stderr != "" {
			t.Errorf("sluice %v: exit %d\nstdout:\n%s\nstderr:\n%s", args, r.code, r.stdout, r.stderr)
		}
	}
	for _, args := range [][]string{nil, {"help"}} {
		r := run(t, nil, args...)
		if r.code != 0 || !strings.Contains(r.stdout, "USAGE\n  sluice <command> [flags]") {
			t.Errorf("sluice %v: exit %d\n%s", args, r.code, r.stdout)
		}
	}
	r := run(t, nil, "completion")
	if r.code != 0 || !strings.Contains(r.stdout, "USAGE\n  sluice completion <command> [flags]") || !strings.Contains(r.stdout, "fish  ") {
		t.Errorf("sluice completion: exit %d\n%s", r.code, r.stdout)
	}
}

// commandPaths lists every command and subcommand but help's.
func commandPaths(c *cobra.Command) [][]string {
	var out [][]string
	for _, sub := range c.Commands() {
		if sub.Hidden || sub.Name() == "help" {
			continue
		}
		out = append(out, strings.Fields(strings.TrimPrefix(sub.CommandPath(), "sluice ")))
		out = append(out, commandPaths(sub)...)
	}
	return out
}

func TestHelpOfEveryCommand(t *testing.T) {
	t.Parallel()
	app := newApp(nil, io.Discard, io.Discard)
	app.NewUp = newFakeUp(nil)
	root := (&session{app: app}).rootCmd()
	paths := append([][]string{{}}, commandPaths(root)...)
	if len(paths) < 20 {
		t.Fatalf("only %d commands: %v", len(paths), paths)
	}
	for _, path := range paths {
		var out, errOut bytes.Buffer
		app := newApp(nil, &out, &errOut)
		app.NewUp = newFakeUp(nil)
		code := app.Run(context.Background(), append(append([]string{}, path...), "--help"))
		name := strings.Join(append([]string{"sluice"}, path...), " ")
		if code != 0 || !strings.Contains(out.String(), "USAGE\n  "+name) || errOut.Len() != 0 {
			t.Errorf("%s --help: exit %d\nstdout:\n%s\nstderr:\n%s", name, code, out.String(), errOut.String())
		}
		if len(path) == 0 || path[0] == "completion" {
			continue
		}
		// Sluice's own commands read like gh's: a summary, examples, flags.
		for _, want := range []string{"EXAMPLES\n  $ " + name, "FLAGS\n"} {
			if !strings.Contains(out.String(), want) {
				t.Errorf("%s --help lacks %q:\n%s", name, want, out.String())
			}
		}
	}
}

func TestCompletionScripts(t *testing.T) {
	t.Parallel()
	for shell, want := range map[string]string{
		"bash": "complete -o default -F __start_sluice sluice",
		"zsh":  "#compdef sluice",
		"fish": "complete -c sluice",
	} {
		r := run(t, nil, "completion", shell)
		if r.code != 0 || !strings.Contains(r.stdout, want) || len(r.stdout) < 1000 {
			t.Errorf("completion %s: exit %d, %d bytes, want %q in it; stderr %q", shell, r.code, len(r.stdout), want, r.stderr)
		}
	}
}

func TestCompletionOffersRepositories(t *testing.T) {
	t.Parallel()
	f := startFake(t, true)
	f.source.addRepo(&sourcev1.Repository{Id: "r1", Name: "hello", Url: "/srv/hello"})
	r := run(t, f.env(), cobra.ShellCompRequestCmd, "trigger", "")
	if r.code != 0 || !strings.HasPrefix(r.stdout, "hello\t/srv/hello\n") {
		t.Fatalf("exit %d: %q", r.code, r.stdout)
	}
}

func TestVersion(t *testing.T) {
	t.Parallel()
	for _, arg := range []string{"version", "--version", "-version", "-v"} {
		if r := run(t, nil, arg); r.code != 0 || r.stdout != "sluice v9.9.9\n" {
			t.Errorf("%s: %d %q", arg, r.code, r.stdout)
		}
	}
	var out bytes.Buffer
	app := newApp(nil, &out, &out)
	app.Commit = "0123abc"
	if code := app.Run(context.Background(), []string{"version"}); code != 0 || out.String() != "sluice v9.9.9 (0123abc)\n" {
		t.Fatalf("version with commit: %d %q", code, out.String())
	}
	if r := run(t, nil, "version", "--output", "json"); r.code != 0 || r.stdout != `{"version":"v9.9.9"}`+"\n" {
		t.Fatalf("version --output json: %d %q", r.code, r.stdout)
	}
}

// fakeUp stands in for the all-in-one server: a flag and a recorded run.
type fakeUp struct {
	fs      *pflag.FlagSet
	dataDir string
	ran     *string
	err     error
}

func newFakeUp(ran *string) func() Up {
	return func() Up {
		u := &fakeUp{fs: pflag.NewFlagSet("up", pflag.ContinueOnError), ran: ran}
		u.fs.StringVar(&u.dataDir, "data-dir", "", "where the data lives")
		return u
	}
}

func (u *fakeUp) Flags() *pflag.FlagSet { return u.fs }

func (u *fakeUp) Run(context.Context, io.Writer, io.Writer) error {
	if u.ran != nil {
		*u.ran = u.dataDir
	}
	return u.err
}

// `sluice up`'s flags are parsed by the CLI like any command's: help lists
// them, a typo is a usage error with a suggestion.
func TestUpFlags(t *testing.T) {
	t.Parallel()
	var ran string
	var out bytes.Buffer
	app := newApp(nil, &out, &out)
	app.NewUp = newFakeUp(&ran)
	if code := app.Run(context.Background(), []string{"up", "--data-dir", "/tmp/x"}); code != 0 || ran != "/tmp/x" {
		t.Fatalf("exit %d, ran with %q, output %q", code, ran, out.String())
	}
	out.Reset()
	if code := app.Run(context.Background(), []string{"up", "--help"}); code != 0 ||
		!strings.Contains(out.String(), "USAGE\n  sluice up [flags]") || !strings.Contains(out.String(), "--data-dir string") ||
		strings.Contains(out.String(), "--server") {
		t.Fatalf("up --help: exit %d\n%s", code, out.String())
	}
	out.Reset()
	if code := app.Run(context.Background(), []string{"up", "--data-dri", "x"}); code != 2 || !strings.Contains(out.String(), "did you mean --data-dir?") {
		t.Fatalf("up --data-dri: exit %d %q", code, out.String())
	}
	out.Reset()
	if code := app.Run(context.Background(), []string{"up", "extra"}); code != 2 {
		t.Fatalf("up extra: exit %d %q", code, out.String())
	}
	app.NewUp = func() Up {
		return &fakeUp{fs: pflag.NewFlagSet("up", pflag.ContinueOnError), err: errors.New("start: address in use")}
	}
	out.Reset()
	if code := app.Run(context.Background(), []string{"up"}); code != 1 || out.String() != "sluice up: start: address in use\n" {
		t.Fatalf("failed up: exit %d %q", code, out.String())
	}
}

func TestUnreachableServerIsExplained(t *testing.T) {
	t.Parallel()
	r := run(t, map[string]string{"SLUICE_SERVER": "http://127.0.0.1:1"}, "repo", "ls")
	if r.code != 1 || !strings.Contains(r.stderr, "cannot reach the platform at http://127.0.0.1:1") || strings.Contains(r.stderr, "unavailable:") {
		t.Fatalf("exit %d, stderr %q", r.code, r.stderr)
	}
}

func TestServiceURLs(t *testing.T) {
	t.Parallel()
	// Build is elsewhere: --server would answer GetLogs, the fake at
	// $SLUICE_BUILD_URL does.
	f := startFake(t, true)
	f.build.logs["r1"] = []*buildv1.LogLine{{Seq: 1, Step: "compile", Stream: "stdout", Text: "from the build fake"}}
	r := run(t, map[string]string{"SLUICE_BUILD_URL": f.url + "/", "SLUICE_TEST_URL": f.url, "SLUICE_RELEASE_URL": f.url},
		"logs", "r1", "--server", "http://127.0.0.1:1")
	if r.code != 0 || r.stdout != "[compile] from the build fake\n" {
		t.Fatalf("exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
}

func TestFlagsMayFollowArguments(t *testing.T) {
	t.Parallel()
	f := startFake(t, true)
	r := run(t, f.env(), "repo", "add", "git@example.com:x.git", "--name", "x", "--output", "json")
	if r.code != 0 || !json.Valid([]byte(r.stdout)) || len(f.source.added) != 1 || f.source.added[0].GetName() != "x" {
		t.Fatalf("exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
}

func statusRuns(f *fakePlatform) {
	for i, st := range []sourcev1.RunStatus{sourcev1.RunStatus_RUN_STATUS_SUCCEEDED, sourcev1.RunStatus_RUN_STATUS_FAILED,
		sourcev1.RunStatus_RUN_STATUS_RUNNING, sourcev1.RunStatus_RUN_STATUS_QUEUED} {
		f.source.addRun(helloRun(fmt.Sprintf("run-%d", i), st))
	}
}

func TestColourOnlyOnATerminal(t *testing.T) {
	t.Parallel()
	f := startFake(t, true)
	statusRuns(f)
	runs := func(tty bool, env map[string]string) string {
		var out, errOut bytes.Buffer
		app := newApp(env, &out, &errOut)
		app.IsTerminal = func(w io.Writer) bool { return tty && w == &out }
		if code := app.Run(context.Background(), []string{"runs"}); code != 0 {
			t.Fatalf("runs: exit %d: %s", code, errOut.String())
		}
		return out.String()
	}
	env := f.env()
	tty := runs(true, env)
	for _, want := range []string{"\x1b[32m✓ succeeded\x1b[0m", "\x1b[31m✗ failed\x1b[0m", "\x1b[33m● running\x1b[0m", "\x1b[90m… queued\x1b[0m"} {
		if !strings.Contains(tty, want) {
			t.Errorf("terminal output lacks %q:\n%s", want, tty)
		}
	}
	// The columns after the coloured one still line up.
	lines := strings.Split(strings.TrimSpace(Sanitize(tty)), "\n")
	col := strings.Index(lines[0], "RELEASE")
	for _, l := range lines[1:] {
		if r := []rune(l); len(r) < col+6 || string(r[col:col+6]) != "v0.1.0" {
			t.Errorf("RELEASE column at %d, row %q", col, l)
		}
	}

	env["NO_COLOR"] = "1"
	noColor := runs(true, env)
	if strings.Contains(noColor, "\x1b") || !strings.Contains(noColor, "✓ succeeded") || !strings.Contains(noColor, "✗ failed") {
		t.Errorf("NO_COLOR output:\n%q", noColor)
	}
	delete(env, "NO_COLOR")
	plain := runs(false, env)
	if strings.Contains(plain, "\x1b") || strings.ContainsAny(plain, "✓✗●…") || !strings.Contains(plain, "  succeeded  ") {
		t.Errorf("output to a pipe:\n%q", plain)
	}
}

func TestTerminalStyle(t *testing.T) {
	t.Parallel()
	env := func(kv ...string) func(string) string {
		return func(k string) string {
			for i := 0; i+1 < len(kv); i += 2 {
				if kv[i] == k {
					return kv[i+1]
				}
			}
			return ""
		}
	}
	for _, tt := range []struct {
		tty  bool
		env  func(string) string
		want style
	}{
		{true, env(), style{symbols: true, color: true}},
		{true, env("NO_COLOR", "0"), style{symbols: true}}, // any non-empty value
		{true, env("TERM", "dumb"), style{symbols: true}},
		{false, env(), style{}},
	} {
		if got := terminalStyle(tt.tty, tt.env); got != tt.want {
			t.Errorf("terminalStyle(%v) = %+v, want %+v", tt.tty, got, tt.want)
		}
	}
	if isTerminal(&bytes.Buffer{}) {
		t.Error("a buffer is a terminal")
	}
}

func TestLogsOfAStepThatDoesNotExist(t *testing.T) {
	t.Parallel()
	f := startFake(t, true)
	f.source.addRun(helloRun("r1", sourcev1.RunStatus_RUN_STATUS_SUCCEEDED))
	f.build.logs["r1"] = []*buildv1.LogLine{{Seq: 1, Step: "compile", Stream: "stdout", Text: "compiling"}}
	f.test.logs["r1"] = []*testv1.LogLine{{Seq: 1, Step: "unit", Stream: "stdout", Text: "ok hello"}}

	r := run(t, f.env(), "logs", "r1", "--step", "nope")
	want := `sluice logs: run r1 has no step "nope"; its steps are compile (build), unit (test)` + "\n"
	if r.code != 1 || r.stderr != want || r.stdout != "" {
		t.Fatalf("exit %d, stdout %q, stderr %q; want 1 and %q", r.code, r.stdout, r.stderr, want)
	}
	r = run(t, f.env(), "logs", "r1", "--step", "unit")
	if r.code != 0 || r.stdout != "[unit] ok hello\n" {
		t.Fatalf("--step unit: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	r = run(t, f.env(), "logs", "r2", "--step", "unit")
	if r.code != 1 || r.stderr != `sluice logs: run "r2" not found`+"\n" {
		t.Fatalf("unknown run: exit %d, stderr %q", r.code, r.stderr)
	}
}

func TestLogLinesAreSanitized(t *testing.T) {
	t.Parallel()
	f := startFake(t, true)
	hostile := "\x1b]8;;http://evil\x07click\x1b]8;;\x07 \x1b[2Jdone\rX\u009b31m\u202e"
	f.build.logs["r1"] = []*buildv1.LogLine{{Seq: 1, Step: "comp\x1b[2Jile", Stream: "stdout", Text: hostile}}
	r := run(t, f.env(), "logs", "r1")
	if r.code != 0 || r.stdout != "[compile] click doneX\n" {
		t.Fatalf("exit %d, stdout %q", r.code, r.stdout)
	}
	// JSON is data: the text as it is, and valid JSON.
	r = run(t, f.env(), "logs", "r1", "--output", "json")
	var l logLine
	if err := json.Unmarshal([]byte(r.stdout), &l); err != nil || r.code != 0 || l.Text != hostile || l.Stage != "build" {
		t.Fatalf("exit %d, %v, %q", r.code, err, r.stdout)
	}
}

func TestReleasesOfAnUnknownRepository(t *testing.T) {
	t.Parallel()
	f := startFake(t, true)
	f.source.addRepo(&sourcev1.Repository{Id: "01abc", Name: "hello"})
	for _, cmd := range []string{"releases", "deployments"} {
		r := run(t, f.env(), cmd, "nope")
		if r.code != 1 || r.stderr != "sluice "+cmd+`: repository "nope" not found`+"\n" {
			t.Errorf("%s nope: exit %d, stderr %q", cmd, r.code, r.stderr)
		}
		// By id, the release service is asked by name.
		if r := run(t, f.env(), cmd, "01abc"); r.code != 0 {
			t.Errorf("%s 01abc: exit %d, stderr %q", cmd, r.code, r.stderr)
		}
	}
	if asked, _ := f.release.calls(); strings.Join(asked, ",") != "hello,hello" {
		t.Fatalf("the release service was asked about %q", asked)
	}
}

func TestRollbackVersions(t *testing.T) {
	t.Parallel()
	f := startFake(t, true)
	f.source.addRepo(&sourcev1.Repository{Id: "01abc", Name: "hello"})
	for _, to := range []string{"0.1.1", "v0.1.1"} {
		r := run(t, f.env(), "rollback", "hello", "--env", "staging", "--to", to)
		if r.code != 0 || r.stdout != "rolled staging back to v0.1.1: verified\n" {
			t.Errorf("--to %s: exit %d, stdout %q, stderr %q", to, r.code, r.stdout, r.stderr)
		}
	}
	if _, rbs := f.release.calls(); len(rbs) != 2 || rbs[0].GetToVersion() != "v0.1.1" || rbs[1].GetToVersion() != "v0.1.1" {
		t.Fatalf("rollbacks asked: %v", rbs)
	}
	r := run(t, f.env(), "rollback", "hello", "--help")
	if !strings.Contains(strings.Join(strings.Fields(r.stdout), " "), "the newest verified release older than the one deployed now") {
		t.Fatalf("rollback --help does not say what it picks:\n%s", r.stdout)
	}
}

func TestErrorsDoNotLeakInternals(t *testing.T) {
	t.Parallel()
	for _, details := range []bool{true, false} {
		f := startFake(t, details)
		f.source.addRepo(&sourcev1.Repository{Id: "01abc", Name: "hello"})
		// A message relayed through two services, with codes and kinds.
		inner := connect.NewError(connect.CodeFailedPrecondition, errors.New(`no release of "hello" was verified in "staging" before v0.1.0; nothing to roll back to: failed precondition`))
		f.release.rollbackErr = connect.NewError(connect.CodeFailedPrecondition, fmt.Errorf("rollback: %w", inner))
		tests := []struct {
			args []string
			want string
		}{
			{[]string{"rollback", "hello", "--env", "staging"}, `sluice rollback: rollback: no release of "hello" was verified in "staging" before v0.1.0; nothing to roll back to`},
			{[]string{"runs", "--limit", "5000"}, "sluice runs: --limit: must be greater than or equal to 0 and less than or equal to 1000"},
			{[]string{"subscribe", "--url", "foo", "--secret", "x"}, "sluice subscribe: --url: must be a valid URI; --secret: must be at least 8 characters"},
			{[]string{"events", "--filter", "a b"}, "sluice events: --filter: must be a NATS subject filter under sluice, such as sluice.build.>"},
			{[]string{"show", strings.Repeat("x", 65)}, "sluice show: <run-id>: must be at most 64 characters"},
			{[]string{"runs", "nope"}, `sluice runs: repository "nope" not found`},
		}
		for _, tt := range tests {
			r := run(t, f.env(), tt.args...)
			if r.code != 1 || r.stderr != tt.want+"\n" {
				t.Errorf("details %v: sluice %v: exit %d, stderr\n%q\nwant\n%q", details, tt.args, r.code, r.stderr, tt.want)
			}
			for _, leak := range []string{"failed_precondition", "invalid_argument", "failed precondition", "`", "validation error", "_"} {
				if strings.Contains(r.stderr, leak) {
					t.Errorf("details %v: sluice %v: stderr %q has %q", details, tt.args, r.stderr, leak)
				}
			}
		}
	}
}

// A rule of a whole request (a reserved secret name's value) is told as
// its message says, without a field name before it.
func TestRequestRulesAreToldAsTheySay(t *testing.T) {
	t.Parallel()
	file := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(file, []byte("tok\twith-tab"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, details := range []bool{true, false} {
		f := startFake(t, details)
		r := run(t, f.env(), "secret", "set", "hello", "SLUICE_GIT_TOKEN", "--from-file", file)
		want := "sluice secret set: the value of SLUICE_GIT_TOKEN must be one line of at most 4096 bytes without spaces or control characters\n"
		if r.code != 1 || r.stderr != want {
			t.Errorf("details %v: exit %d, stderr %q; want %q", details, r.code, r.stderr, want)
		}
	}
}

func TestNotFoundWording(t *testing.T) {
	t.Parallel()
	for msg, want := range map[string]string{
		`repository "x": not found`:                              `repository "x" not found`,
		`release v9.9.9 of "hello": not found`:                   `release v9.9.9 of "hello" not found`,
		`repository "x" has no releases: not found`:              `repository "x" has no releases`,
		`repository "h" was never deployed to "prod": not found`: `repository "h" was never deployed to "prod"`,
		`not_found: not_found: run "r": not found`:               `run "r" not found`,
	} {
		if got := notFound(cleanMessage(msg)); got != want {
			t.Errorf("%q: got %q, want %q", msg, got, want)
		}
	}
}

func TestSanitize(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"plain text, tabs\tand\nnew lines":             "plain text, tabs\tand\nnew lines",
		"héllo 世界 ✓":                                   "héllo 世界 ✓",
		"\x1b]8;;http://evil\x07click\x1b]8;;\x07":     "click",             // OSC 8 hyperlink, BEL-terminated
		"\x1b]8;;http://evil\x1b\\click\x1b]8;;\x1b\\": "click",             // ST-terminated
		"\x1b]0;pwned title\x07ok":                     "ok",                // window title
		"\x1b[2J\x1b[Hcleared":                         "cleared",           // erase screen, home
		"\x1b[31mred\x1b[0m \x1b[?25lhidden cursor":    "red hidden cursor", // SGR, private mode
		"safe\rEVIL":                                 "safeEVIL", // carriage-return overwrite
		"pass\x1b[1A\x1b[2Kfail":                     "passfail", // cursor up, erase line
		"back\bspace\x7f and bell\x07":               "backspace and bell",
		"\x9b2Jraw C1 CSI":                           "raw C1 CSI",   // the byte 0x9b, not UTF-8
		"\u009b2JC1 CSI rune":                        "C1 CSI rune",  // U+009B
		"\u009d0;title\u009cafter":                   "after",        // C1 OSC ... C1 ST
		"\x9d0;title\x9cafter":                       "after",        // the same as bytes
		"\u0085next line\u0084":                      "next line",    // other C1 controls
		"\x1bPq#0;2;0;0;0\x1b\\sixel":                "sixel",        // DCS
		"\x1b_apc\x1b\\\x1b^pm\x1b\\\x1bXsos\x1b\\x": "x",            // APC, PM, SOS
		"\x1b(0line drawing\x1b(B":                   "line drawing", // charset designation
		"\x1b7saved\x1b8\x1bc":                       "saved",        // save, restore, reset
		"\x1b]0;unterminated\nnext line":             "\nnext line",  // an OSC ends at the line
		"end\x1b":                                    "end",
		"end\x1b[":                                   "end",
		"abc\u202edcba\u202c ok":                     "abcdcba ok", // RLO ... PDF
		"\u2066isolate\u2069 \u200emark\u200f\u061c": "isolate mark",
		"bad \xff byte":                              "bad \uFFFD byte",
	} {
		if got := Sanitize(in); got != want {
			t.Errorf("Sanitize(%q) = %q, want %q", in, got, want)
		}
	}
	if got := sanitizeLine("a\nb\tc\x1b[2J"); got != "a b c" {
		t.Errorf("sanitizeLine = %q", got)
	}
}

// FuzzSanitize checks what Sanitize promises for any input: nothing a
// terminal acts on is left, and sanitizing again changes nothing.
func FuzzSanitize(f *testing.F) {
	for _, s := range []string{"\x1b]8;;http://evil\x07x", "\x1b[2J", "a\rb", "\x9b1m", "\u202e", "\x1b]0;\x1b\\", "\xc2\x9b5n", "\x1b\x1b[1m"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		out := Sanitize(in)
		if !utf8.ValidString(out) {
			t.Fatalf("Sanitize(%q) = %q: not UTF-8", in, out)
		}
		for _, r := range out {
			if (r < 0x20 && r != '\n' && r != '\t') || (r >= 0x7f && r <= 0x9f) || isBidiControl(r) {
				t.Fatalf("Sanitize(%q) = %q keeps %U", in, out, r)
			}
		}
		if again := Sanitize(out); again != out {
			t.Fatalf("Sanitize(%q) = %q, again %q", in, out, again)
		}
	})
}

func TestFollowPrintsAFailedRun(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	p := &progress{w: &out}
	r := helloRun("r1", sourcev1.RunStatus_RUN_STATUS_FAILED)
	r.FailureReason = "build: step \"compile\" exited with code 3\x1b[2J"
	r.Stages = []*sourcev1.Stage{{Name: "build", Status: sourcev1.StageStatus_STAGE_STATUS_FAILED, LastLogLines: []string{"main.go:3: undefined: x\r"}}}
	p.update(r)
	want := "run r1: hello at 0c01456670 (feat: hello)\n  build    failed    \n           | main.go:3: undefined: x\nrun r1 failed: build: step \"compile\" exited with code 3\n"
	if out.String() != want {
		t.Fatalf("got\n%q\nwant\n%q", out.String(), want)
	}
}

func TestRollbackThatDoesNotVerifyExitsOne(t *testing.T) {
	t.Parallel()
	f := startFake(t, true)
	f.source.addRepo(&sourcev1.Repository{Id: "01abc", Name: "hello"})
	f.release.rollbackFails = "verify: GET /healthz: 503\x1b]0;x\x07"
	r := run(t, f.env(), "rollback", "hello", "--env", "staging")
	// The reason, then the failing command's last lines and where its
	// whole output is.
	wantErr := "sluice rollback: rollback did not verify: verify: GET /healthz: 503\n| health: down\n(sluice logs rb-1 prints all of its output)\n"
	if r.code != 1 || r.stdout != "rolled staging back to : failed\n" || r.stderr != wantErr {
		t.Fatalf("exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	r = run(t, f.env(), "rollback", "hello", "--env", "staging", "--output", "json")
	var res struct {
		Deployment struct{ Status string } `json:"deployment"`
	}
	if r.code != 1 || json.Unmarshal([]byte(r.stdout), &res) != nil || res.Deployment.Status != "DEPLOYMENT_STATUS_FAILED" {
		t.Fatalf("--output json: exit %d, %q", r.code, r.stdout)
	}
}

func TestInterruptedExits130Quietly(t *testing.T) {
	t.Parallel()
	f := startFake(t, true)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var out, errOut bytes.Buffer
	if code := newApp(f.env(), &out, &errOut).Run(ctx, []string{"runs"}); code != 130 || errOut.Len() != 0 {
		t.Fatalf("exit %d, stderr %q", code, errOut.String())
	}
}

// repo ls lists every repository, however many pages the API cuts them in.
func TestRepoListFollowsPages(t *testing.T) {
	t.Parallel()
	f := startFake(t, true)
	for _, name := range []string{"alpha", "beta", "gamma"} {
		f.source.addRepo(&sourcev1.Repository{Id: "id-" + name, Name: name, Url: "/srv/" + name, Branch: "main"})
	}
	r := run(t, f.env(), "repo", "ls")
	for _, name := range []string{"alpha", "beta", "gamma"} {
		if r.code != 0 || !strings.Contains(r.stdout, "/srv/"+name) {
			t.Fatalf("repo ls: exit %d, %q lacks %s", r.code, r.stdout, name)
		}
	}
}

// The release service's log is the third log source: after the build's
// and the tests', by step, a kind of step being every environment's.
func TestReleaseLogsFollowTheTests(t *testing.T) {
	t.Parallel()
	f := startFake(t, true)
	f.source.addRun(helloRun("r1", sourcev1.RunStatus_RUN_STATUS_FAILED))
	f.build.logs["r1"] = []*buildv1.LogLine{{Seq: 1, Step: "compile", Stream: "stdout", Text: "compiling"}}
	f.test.logs["r1"] = []*testv1.LogLine{{Seq: 1, Step: "unit", Stream: "stdout", Text: "ok hello"}}
	f.release.logs["r1"] = []*releasev1.LogLine{
		{Seq: 1, Step: "deploy:staging", Stream: "meta", Text: "--- deploy: sh deploy.sh"},
		{Seq: 2, Step: "deploy:staging", Stream: "stdout", Text: "started"},
		{Seq: 3, Step: "verify:staging", Stream: "meta", Text: "--- verified v0.1.0 in staging"},
		{Seq: 4, Step: "deploy:production", Stream: "stderr", Text: "port in use"},
		{Seq: 5, Step: "deploy:production", Stream: "meta", Text: "--- deploy exited with code 1"},
	}
	all := "[compile] compiling\n[unit] ok hello\n--- deploy: sh deploy.sh\n[deploy:staging] started\n--- verified v0.1.0 in staging\n" +
		"[deploy:production] port in use\n--- deploy exited with code 1\n"
	for _, args := range [][]string{{"logs", "r1"}, {"logs", "r1", "-f"}} {
		if r := run(t, f.env(), args...); r.code != 0 || r.stdout != all {
			t.Errorf("sluice %v: exit %d, stdout\n%s\nstderr %q", args, r.code, r.stdout, r.stderr)
		}
	}
	r := run(t, f.env(), "logs", "r1", "--step", "deploy")
	if want := "--- deploy: sh deploy.sh\n[deploy:staging] started\n[deploy:production] port in use\n--- deploy exited with code 1\n"; r.code != 0 || r.stdout != want {
		t.Errorf("--step deploy: exit %d, stdout\n%s\nstderr %q", r.code, r.stdout, r.stderr)
	}
	r = run(t, f.env(), "logs", "r1", "--step", "deploy:production", "--output", "json")
	if r.code != 0 || strings.Count(r.stdout, "\n") != 2 || !strings.Contains(r.stdout, `"stage":"release"`) {
		t.Errorf("--step deploy:production: exit %d, stdout\n%s", r.code, r.stdout)
	}
	// The release's steps come from the release service.
	r = run(t, f.env(), "logs", "r1", "--step", "deploy:qa")
	if want := `its steps are compile (build), unit (test), deploy (release), verify (release), rollback (release), deploy:staging (release), verify:staging (release), deploy:production (release)`; r.code != 1 || !strings.Contains(r.stderr, want) {
		t.Errorf("--step deploy:qa: exit %d, stderr %q", r.code, r.stderr)
	}

	// A run without a release stage: no release lines, no error; -f does
	// not wait for a stage that will not come.
	run2 := helloRun("r2", sourcev1.RunStatus_RUN_STATUS_FAILED)
	run2.Stages = []*sourcev1.Stage{{Name: "release", Status: sourcev1.StageStatus_STAGE_STATUS_SKIPPED}}
	f.source.addRun(run2)
	f.build.logs["r2"] = []*buildv1.LogLine{{Seq: 1, Step: "compile", Stream: "stdout", Text: "compiling"}}
	for _, args := range [][]string{{"logs", "r2"}, {"logs", "r2", "-f"}} {
		if r := run(t, f.env(), args...); r.code != 0 || r.stdout != "[compile] compiling\n" {
			t.Errorf("sluice %v: exit %d, stdout %q, stderr %q", args, r.code, r.stdout, r.stderr)
		}
	}
	// A run still going whose release has not started: -f waits for it.
	run3 := helloRun("r3", sourcev1.RunStatus_RUN_STATUS_RUNNING)
	run3.Stages = []*sourcev1.Stage{{Name: "release", Status: sourcev1.StageStatus_STAGE_STATUS_PENDING}}
	f.source.addRun(run3)
	f.build.logs["r3"] = []*buildv1.LogLine{{Seq: 1, Step: "compile", Stream: "stdout", Text: "compiling"}}
	go func() {
		time.Sleep(700 * time.Millisecond)
		f.release.mu.Lock()
		defer f.release.mu.Unlock()
		f.release.logs["r3"] = []*releasev1.LogLine{{Seq: 1, Step: "deploy:staging", Stream: "stdout", Text: "late"}}
	}()
	if r := run(t, f.env(), "logs", "r3", "-f"); r.code != 0 || r.stdout != "[compile] compiling\n[deploy:staging] late\n" {
		t.Errorf("logs r3 -f: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	// A rollback made with `sluice rollback` has a release log and nothing else.
	f.release.logs["rb-1"] = []*releasev1.LogLine{{Seq: 1, Step: "rollback:staging", Stream: "stdout", Text: "restarted"}}
	if r := run(t, f.env(), "logs", "rb-1"); r.code != 0 || r.stdout != "[rollback:staging] restarted\n" {
		t.Errorf("logs rb-1: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
}

// A failed stage says why once: its reason, not the detail that told the
// same as it happened; the reason's last lines once, with the run's
// failure.
func TestFailedStageSaysWhyOnce(t *testing.T) {
	t.Parallel()
	f := startFake(t, true)
	r1 := helloRun("r1", sourcev1.RunStatus_RUN_STATUS_FAILED)
	reason := "deploy exited with code 1 on staging; no earlier verified release of staging to roll back to\nlast lines of deploy:staging:\n| port in use"
	r1.FailureReason = "release failed: " + reason
	r1.Stages = []*sourcev1.Stage{
		{Name: "build", Status: sourcev1.StageStatus_STAGE_STATUS_SUCCEEDED, Detail: "1 artifact: hello"},
		{Name: "release", Status: sourcev1.StageStatus_STAGE_STATUS_FAILED, Reason: reason,
			Detail: "deployment of v0.1.0 failed on staging: deploy exited with code 1"},
	}
	f.source.addRun(r1)
	r := run(t, f.env(), "show", "r1")
	if r.code != 0 {
		t.Fatalf("exit %d, stderr %q", r.code, r.stderr)
	}
	for _, want := range []string{
		"failure     release failed: deploy exited with code 1 on staging; no earlier verified release of staging to roll back to\n" +
			"            last lines of deploy:staging:\n            | port in use\n",
		"  build    succeeded  1 artifact: hello\n",
		"  release  failed     deploy exited with code 1 on staging; no earlier verified release of staging to roll back to\n",
	} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("show has no\n%s\nin\n%s", want, r.stdout)
		}
	}
	if n := strings.Count(r.stdout, "exited with code 1"); n != 2 {
		t.Errorf("show says the exit code %d times (want the run's failure and the stage's):\n%s", n, r.stdout)
	}
	if n := strings.Count(r.stdout, "port in use"); n != 1 {
		t.Errorf("show prints the last line %d times:\n%s", n, r.stdout)
	}
}

// show lists each stage's steps as build and test tell them: status,
// tries, and why a step did not run.
func TestShowListsTheSteps(t *testing.T) {
	t.Parallel()
	f := startFake(t, true)
	f.source.addRun(helloRun("r1", sourcev1.RunStatus_RUN_STATUS_SUCCEEDED))
	f.build.mu.Lock()
	f.build.builds = map[string]*buildv1.Build{"r1": {RunId: "r1", Steps: []*buildv1.Step{
		{Name: "compile", Status: buildv1.StepStatus_STEP_STATUS_SUCCEEDED, Tries: 2},
		{Name: "release-only", Status: buildv1.StepStatus_STEP_STATUS_SKIPPED, Reason: "when branch == \"release\" is false"},
	}}}
	f.build.mu.Unlock()
	f.test.mu.Lock()
	f.test.runs = map[string]*testv1.TestRun{"r1": {RunId: "r1", Steps: []*testv1.Step{
		{Name: "unit", Status: testv1.StepStatus_STEP_STATUS_FAILED, ExitCode: 3, Tries: 1},
	}}}
	f.test.mu.Unlock()
	r := run(t, f.env(), "show", "r1")
	if r.code != 0 {
		t.Fatalf("exit %d, stderr %q", r.code, r.stderr)
	}
	for _, want := range []string{
		"build steps:\n  compile      succeeded  2 tries\n  release-only skipped    when branch == \"release\" is false\n",
		"test steps:\n  unit failed\n",
	} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("show has no\n%s\nin\n%s", want, r.stdout)
		}
	}
}

// logs -f says when a run waits to be let start, and refuses a run that
// ended without starting (cancelled while it waited): it has no logs.
func TestLogsFollowOfAWaitingRun(t *testing.T) {
	t.Parallel()
	f := startFake(t, true)
	waiting := helloRun("w1", sourcev1.RunStatus_RUN_STATUS_QUEUED)
	waiting.EndTime = nil
	f.source.addRun(waiting)
	f.build.logs["w1"] = []*buildv1.LogLine{{Seq: 1, Step: "compile", Stream: "stdout", Text: "compiling"}}
	r := run(t, f.env(), "logs", "w1", "-f")
	if !strings.HasPrefix(r.stdout, "--- the run waits for room in its concurrency group") || !strings.Contains(r.stdout, "[compile] compiling") {
		t.Errorf("logs -f of a waiting run: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}

	never := helloRun("w2", sourcev1.RunStatus_RUN_STATUS_CANCELLED)
	never.FailureReason = "cancelled by run w3 (a newer run of branch main) before it started"
	never.Stages = []*sourcev1.Stage{{Name: "build", Status: sourcev1.StageStatus_STAGE_STATUS_SKIPPED}}
	f.source.addRun(never)
	r = run(t, f.env(), "logs", "w2", "-f")
	if r.code != 1 || !strings.Contains(r.stderr, "run w2 ended before it started (cancelled by run w3") {
		t.Errorf("logs -f of a run that never started: exit %d, stderr %q", r.code, r.stderr)
	}
}
