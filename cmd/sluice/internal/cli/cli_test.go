package cli

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

func run(t *testing.T, env map[string]string, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	app := &App{Stdout: &out, Stderr: &errOut, Getenv: func(k string) string { return env[k] }, Version: "v9.9.9"}
	code := app.Run(context.Background(), args)
	return code, out.String(), errOut.String()
}

func TestUsageErrorsExitTwo(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"nope"}, `unknown command "nope"`},
		{[]string{"show"}, "usage: sluice show <run-id>"},
		{[]string{"show", "a", "b"}, "wrong number of arguments"},
		{[]string{"rollback", "hello"}, "--env is required"},
		{[]string{"subscribe", "--url", "http://x"}, "--url and --secret are required"},
		{[]string{"runs", "--output", "yaml"}, "--output must be text or json"},
		{[]string{"trigger", "hello", "--bogus"}, "flag provided but not defined: -bogus"},
	}
	for _, tt := range tests {
		code, _, stderr := run(t, nil, tt.args...)
		if code != 2 || !strings.Contains(stderr, tt.want) {
			t.Errorf("sluice %v: exit %d, stderr %q; want 2 and %q", tt.args, code, stderr, tt.want)
		}
	}
}

func TestFlagsMayFollowArguments(t *testing.T) {
	c := &call{app: &App{Getenv: func(string) string { return "" }}, args: []string{"repo-path", "--name", "x", "--output", "json"}}
	c.flags = newFlagSet(c, "t")
	name := c.flags.String("name", "", "")
	if err := c.parse(1, 1); err != nil {
		t.Fatal(err)
	}
	if c.pos[0] != "repo-path" || *name != "x" || !c.json() {
		t.Fatalf("pos %v name %q json %v", c.pos, *name, c.json())
	}
}

func TestServiceURLs(t *testing.T) {
	c := &call{app: &App{Getenv: func(k string) string {
		return map[string]string{"SLUICE_BUILD_URL": "http://b:8082/"}[k]
	}}}
	c.flags = newFlagSet(c, "t")
	if err := c.parse(0, 0); err != nil {
		t.Fatal(err)
	}
	if got := c.serviceURL("build"); got != "http://b:8082" {
		t.Fatalf("build URL %q", got)
	}
	if got := c.serviceURL("source"); got != DefaultServer {
		t.Fatalf("source URL %q", got)
	}
}

func TestVersionAndHelp(t *testing.T) {
	for _, arg := range []string{"version", "--version", "-version"} {
		if code, out, _ := run(t, nil, arg); code != 0 || out != "sluice v9.9.9\n" {
			t.Fatalf("%s: %d %q", arg, code, out)
		}
	}
	var out2 bytes.Buffer
	app := &App{Stdout: &out2, Stderr: &out2, Version: "v9.9.9", Commit: "0123abc"}
	if code := app.Run(context.Background(), []string{"version"}); code != 0 || out2.String() != "sluice v9.9.9 (0123abc)\n" {
		t.Fatalf("version with commit: %d %q", code, out2.String())
	}
	code, out, _ := run(t, nil, "--help")
	if code != 0 || !strings.Contains(out, "trigger") || !strings.Contains(out, "rollback") {
		t.Fatalf("help: %d %q", code, out)
	}
}

func TestUnreachableServerIsExplained(t *testing.T) {
	code, _, stderr := run(t, map[string]string{"SLUICE_SERVER": "http://127.0.0.1:1"}, "repo", "ls")
	if code != 1 || !strings.Contains(stderr, "cannot reach the platform") {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
}
