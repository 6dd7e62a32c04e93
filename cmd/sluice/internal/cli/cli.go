// Package cli is the sluice command line: `sluice up` runs the platform,
// every other command talks to it over its public Connect API.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"connectrpc.com/connect"

	"github.com/sluicehq/sluice/proto/gen/sluice/build/v1/buildv1connect"
	"github.com/sluicehq/sluice/proto/gen/sluice/notify/v1/notifyv1connect"
	"github.com/sluicehq/sluice/proto/gen/sluice/release/v1/releasev1connect"
	"github.com/sluicehq/sluice/proto/gen/sluice/source/v1/sourcev1connect"
	"github.com/sluicehq/sluice/proto/gen/sluice/test/v1/testv1connect"
)

// DefaultServer is where the CLI looks for the platform.
const DefaultServer = "http://127.0.0.1:8080"

// UpFunc runs the platform (`sluice up`); main wires it in.
type UpFunc func(ctx context.Context, args []string, stdout, stderr io.Writer) error

// App is the CLI with its inputs and outputs.
type App struct {
	Stdout, Stderr io.Writer
	Getenv         func(string) string
	Version        string
	Commit         string // git commit; `sluice version` shows it when set
	Up             UpFunc
}

// ErrUsage marks a command line mistake; the command prints its usage.
var ErrUsage = errors.New("usage")

// exitError carries a specific exit code (e.g. a followed run that failed).
type exitError struct {
	code int
	msg  string
}

func (e *exitError) Error() string { return e.msg }

type command struct {
	name    string
	args    string
	summary string
	run     func(ctx context.Context, c *call) error
}

func (a *App) commands() []command {
	return []command{
		{"up", "[--data-dir DIR] [--addr HOST:PORT] [--nats-url URL] [--services LIST] [--example DIR]", "run the platform in one process", a.cmdUp},
		{"repo add", "<git-url-or-path> [--name NAME] [--branch BRANCH]", "register a repository", cmdRepoAdd},
		{"repo ls", "", "list repositories", cmdRepoList},
		{"trigger", "<repo> [--ref REF] [--follow]", "start a run; --follow streams it and exits 0 only if it succeeded", cmdTrigger},
		{"runs", "[<repo>] [--limit N]", "list runs, newest first", cmdRuns},
		{"show", "<run-id>", "show a run stage by stage", cmdShow},
		{"logs", "<run-id> [--step NAME] [-f]", "print a run's step logs (build, then test); -f follows", cmdLogs},
		{"releases", "<repo>", "list a repository's releases", cmdReleases},
		{"deployments", "<repo> [--env NAME]", "list a repository's deployments", cmdDeployments},
		{"rollback", "<repo> --env NAME [--to VERSION]", "redeploy an earlier verified release", cmdRollback},
		{"subscribe", "--url URL --secret SECRET [--events TYPES] [--repo REPO]", "send events to a webhook", cmdSubscribe},
		{"deliveries", "[--subscription ID] [--limit N]", "list webhook deliveries and their attempts", cmdDeliveries},
		{"events", "[--filter SUBJECT]", "tail the live event stream", cmdEvents},
		{"version", "", "print the version", a.cmdVersion},
	}
}

// Run runs the command line and returns the process exit code.
func (a *App) Run(ctx context.Context, args []string) int {
	if a.Getenv == nil {
		a.Getenv = os.Getenv
	}
	cmds := a.commands()
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		a.usage(cmds)
		return 0
	}
	if args[0] == "--version" || args[0] == "-version" {
		// As every Sluice binary answers it (and the images' checks ask it).
		args = append([]string{"version"}, args[1:]...)
	}
	var cmd *command
	var rest []string
	for i := range cmds {
		words := strings.Fields(cmds[i].name)
		if len(args) >= len(words) && strings.Join(args[:len(words)], " ") == cmds[i].name {
			if cmd == nil || len(words) > len(strings.Fields(cmd.name)) {
				cmd, rest = &cmds[i], args[len(words):]
			}
		}
	}
	if cmd == nil {
		fmt.Fprintf(a.Stderr, "sluice: unknown command %q\n\n", strings.Join(args, " "))
		a.usage(cmds)
		return 2
	}
	c := &call{app: a, name: cmd.name, args: rest}
	c.flags = newFlagSet(c, cmd.name)
	err := cmd.run(ctx, c)
	var ee *exitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee):
		if ee.msg != "" {
			fmt.Fprintln(a.Stderr, "sluice:", ee.msg)
		}
		return ee.code
	case errors.Is(err, ErrUsage) || errors.Is(err, flag.ErrHelp):
		if !errors.Is(err, flag.ErrHelp) && err.Error() != ErrUsage.Error() {
			fmt.Fprintf(a.Stderr, "sluice %s: %s\n", cmd.name, strings.TrimSuffix(err.Error(), ": usage"))
		}
		fmt.Fprintf(a.Stderr, "usage: sluice %s %s\n", cmd.name, cmd.args)
		c.flags.SetOutput(a.Stderr)
		c.flags.PrintDefaults()
		return 2
	default:
		fmt.Fprintf(a.Stderr, "sluice %s: %s\n", cmd.name, describe(err))
		return 1
	}
}

func (a *App) usage(cmds []command) {
	fmt.Fprintln(a.Stdout, "sluice: a self-hosted CI/CD platform.")
	fmt.Fprintln(a.Stdout, "\nusage: sluice <command> [flags]   (every command takes --server URL and --output text|json)")
	fmt.Fprintln(a.Stdout, "\ncommands:")
	for _, c := range cmds {
		fmt.Fprintf(a.Stdout, "  %-12s %-60s %s\n", c.name, c.args, c.summary)
	}
}

func (a *App) cmdVersion(_ context.Context, c *call) error {
	if err := c.parse(0, 0); err != nil {
		return err
	}
	if a.Commit != "" {
		fmt.Fprintf(a.Stdout, "sluice %s (%s)\n", a.Version, a.Commit)
		return nil
	}
	fmt.Fprintln(a.Stdout, "sluice", a.Version)
	return nil
}

func (a *App) cmdUp(ctx context.Context, c *call) error {
	if a.Up == nil {
		return errors.New("this build has no platform in it")
	}
	return a.Up(ctx, c.args, a.Stdout, a.Stderr)
}

// describe turns an RPC error into what a user should read.
func describe(err error) string {
	var ce *connect.Error
	if errors.As(err, &ce) {
		msg := ce.Message()
		switch ce.Code() {
		case connect.CodeUnavailable:
			return "cannot reach the platform: " + msg + " (is `sluice up` running? --server or $SLUICE_SERVER say where)"
		case connect.CodeInvalidArgument:
			return "invalid request: " + msg
		case connect.CodeNotFound:
			return msg
		case connect.CodeUnimplemented:
			return "the server does not serve this (is that service running?): " + msg
		}
		return fmt.Sprintf("%s (%s)", msg, ce.Code())
	}
	return err.Error()
}

// call is one command invocation: its flags, arguments and clients.
type call struct {
	app    *App
	name   string
	args   []string
	flags  *flag.FlagSet
	server *string
	output *string
	pos    []string
}

// newFlagSet makes a command's flags with the ones every command takes.
func newFlagSet(c *call, name string) *flag.FlagSet {
	fs := flag.NewFlagSet("sluice "+name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	c.server = fs.String("server", firstNonEmpty(c.app.Getenv("SLUICE_SERVER"), DefaultServer), "the platform's URL (or $SLUICE_SERVER)")
	c.output = fs.String("output", "text", "text or json")
	return fs
}

// parse parses flags anywhere among the arguments and checks the count of
// positional arguments.
func (c *call) parse(minPos, maxPos int) error {
	args := c.args
	for {
		if err := c.flags.Parse(args); err != nil {
			return fmt.Errorf("%w: %w", ErrUsage, err)
		}
		if c.flags.NArg() == 0 {
			break
		}
		c.pos = append(c.pos, c.flags.Arg(0))
		args = c.flags.Args()[1:]
	}
	if len(c.pos) < minPos || (maxPos >= 0 && len(c.pos) > maxPos) {
		return fmt.Errorf("%w: wrong number of arguments", ErrUsage)
	}
	if *c.output != "text" && *c.output != "json" {
		return fmt.Errorf("%w: --output must be text or json", ErrUsage)
	}
	return nil
}

func (c *call) json() bool { return *c.output == "json" }

// serviceURL is the URL for one service: $SLUICE_<SERVICE>_URL when the
// services run apart, else --server.
func (c *call) serviceURL(service string) string {
	if u := c.app.Getenv("SLUICE_" + strings.ToUpper(service) + "_URL"); u != "" {
		return strings.TrimRight(u, "/")
	}
	return strings.TrimRight(*c.server, "/")
}

var httpClient = &http.Client{Timeout: 0}

func (c *call) source() sourcev1connect.SourceServiceClient {
	return sourcev1connect.NewSourceServiceClient(httpClient, c.serviceURL("source"))
}
func (c *call) build() buildv1connect.BuildServiceClient {
	return buildv1connect.NewBuildServiceClient(httpClient, c.serviceURL("build"))
}
func (c *call) test() testv1connect.TestServiceClient {
	return testv1connect.NewTestServiceClient(httpClient, c.serviceURL("test"))
}
func (c *call) release() releasev1connect.ReleaseServiceClient {
	return releasev1connect.NewReleaseServiceClient(httpClient, c.serviceURL("release"))
}
func (c *call) notify() notifyv1connect.NotifyServiceClient {
	return notifyv1connect.NewNotifyServiceClient(httpClient, c.serviceURL("notify"))
}

func firstNonEmpty(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}

func ago(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	d := time.Since(t).Round(time.Second)
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds ago", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm ago", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh ago", int(d.Hours()))
	}
	return t.Local().Format("2006-01-02")
}

func shortSHA(s string) string {
	if len(s) > 10 {
		return s[:10]
	}
	return s
}
