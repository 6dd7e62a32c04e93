// Package cli is the sluice command line: `sluice up` runs the platform,
// every other command talks to it over its public Connect API.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"

	"connectrpc.com/connect"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/sluicehq/sluice/platform/auth"
	"github.com/sluicehq/sluice/platform/tlsconfig"
	"github.com/sluicehq/sluice/proto/gen/sluice/build/v1/buildv1connect"
	"github.com/sluicehq/sluice/proto/gen/sluice/notify/v1/notifyv1connect"
	"github.com/sluicehq/sluice/proto/gen/sluice/release/v1/releasev1connect"
	"github.com/sluicehq/sluice/proto/gen/sluice/source/v1/sourcev1connect"
	"github.com/sluicehq/sluice/proto/gen/sluice/test/v1/testv1connect"
)

// DefaultServer is where the CLI looks for the platform.
const DefaultServer = "http://127.0.0.1:8080"

// Up is `sluice up`, the platform in one process; main wires it in. The
// CLI parses its flags like any command's, then runs it.
type Up interface {
	// Flags are its flags.
	Flags() *pflag.FlagSet
	// Run runs the platform once the flags are parsed.
	Run(ctx context.Context, stdout, stderr io.Writer) error
}

// App is the CLI with its inputs and outputs.
type App struct {
	Stdout, Stderr io.Writer
	Getenv         func(string) string
	// IsTerminal says whether a writer is a terminal (then status words get
	// symbols and colour). Nil asks the operating system about Stdout.
	IsTerminal func(io.Writer) bool
	Version    string
	Commit     string // git commit; `sluice version` shows it when set
	// NewUp makes `sluice up`; nil in a build without the platform.
	NewUp func() Up
	// HTTPClient carries the API calls; nil is a client that trusts
	// --ca-file's CAs (or the system's roots) over https.
	HTTPClient *http.Client
}

// session is one Run: the global flags and how output looks.
type session struct {
	app    *App
	server string
	// caFile is the CA bundle trusted over https (--ca-file); plainHTTP
	// allows a token over http:// to a host that is not loopback.
	caFile    string
	plainHTTP bool
	output    outputFormat
	style     style
	// base carries calls as the App gave it; http is base sending the
	// session's token.
	base *http.Client
	http *http.Client
}

// clientWith is the session's client sending secret instead.
func (s *session) clientWith(secret string) *http.Client {
	c := *s.base
	c.Transport = auth.WithSecret(s.base.Transport, func() string { return secret })
	return &c
}

// Run runs the command line and returns the process exit code.
func (a *App) Run(ctx context.Context, args []string) int {
	if a.Getenv == nil {
		a.Getenv = os.Getenv
	}
	if a.IsTerminal == nil {
		a.IsTerminal = isTerminal
	}
	s := &session{app: a, output: "text", base: a.HTTPClient, style: terminalStyle(a.IsTerminal(a.Stdout), a.Getenv)}
	if s.base == nil {
		s.base = &http.Client{Transport: &tlsTransport{caFile: func() string { return s.caFile }}}
	}
	// Whatever carries the calls, a token never goes over plain HTTP
	// across the network unless the user allows it.
	guarded := *s.base
	next := guarded.Transport
	if next == nil {
		next = http.DefaultTransport
	}
	guarded.Transport = tlsconfig.GuardPlainHTTP(next, plainHTTPHint, func() bool { return s.plainHTTP })
	s.base = &guarded
	authed := *s.base
	authed.Transport = auth.WithSecret(s.base.Transport, sync.OnceValue(s.secret))
	s.http = &authed
	if len(args) > 0 && args[0] == "-version" {
		// Older Sluice binaries answered it (Go's single-dash flags).
		args = append([]string{"version"}, args[1:]...)
	}
	root := s.rootCmd()
	root.SetArgs(append([]string{}, args...))
	cmd, err := root.ExecuteContextC(ctx)
	return s.exit(cmd, err)
}

// exit prints err for the user and picks the exit code: 0 done, 1 failed,
// 2 a command line mistake, or the code an exitError carries.
func (s *session) exit(cmd *cobra.Command, err error) int {
	if err == nil {
		return 0
	}
	name := "sluice"
	if cmd != nil {
		name = cmd.CommandPath()
	}
	var ue *usageError
	var ee *exitError
	switch {
	case errors.As(err, &ue):
		path := "sluice"
		if ue.cmd != nil {
			path = ue.cmd.CommandPath()
		}
		fmt.Fprintf(s.app.Stderr, "%s: %s\n", path, ue.msg)
		fmt.Fprintf(s.app.Stderr, "Run '%s --help' for usage.\n", path)
		return 2
	case errors.As(err, &ee):
		if ee.msg != "" {
			fmt.Fprintf(s.app.Stderr, "%s: %s\n", name, ee.msg)
		}
		return ee.code
	case errors.Is(err, context.Canceled) || connect.CodeOf(err) == connect.CodeCanceled:
		return 130 // interrupted (Ctrl-C): the shell says so
	default:
		fmt.Fprintf(s.app.Stderr, "%s: %s\n", name, s.describe(cmd, err))
		return 1
	}
}

// outputFormat is the --output flag's value: text or json.
type outputFormat string

func (o *outputFormat) String() string { return string(*o) }
func (o *outputFormat) Type() string   { return "format" }
func (o *outputFormat) Set(v string) error {
	if v != "text" && v != "json" {
		return errors.New("must be text or json")
	}
	*o = outputFormat(v)
	return nil
}

func (s *session) json() bool { return s.output == "json" }

// serviceURL is the URL for one service: $SLUICE_<SERVICE>_URL when the
// services run apart, else --server.
func (s *session) serviceURL(service string) string {
	if u := s.app.Getenv("SLUICE_" + strings.ToUpper(service) + "_URL"); u != "" {
		return strings.TrimRight(u, "/")
	}
	return strings.TrimRight(s.server, "/")
}

func (s *session) source() sourcev1connect.SourceServiceClient {
	return sourcev1connect.NewSourceServiceClient(s.http, s.serviceURL("source"))
}

func (s *session) build() buildv1connect.BuildServiceClient {
	return buildv1connect.NewBuildServiceClient(s.http, s.serviceURL("build"))
}

func (s *session) test() testv1connect.TestServiceClient {
	return testv1connect.NewTestServiceClient(s.http, s.serviceURL("test"))
}

func (s *session) release() releasev1connect.ReleaseServiceClient {
	return releasev1connect.NewReleaseServiceClient(s.http, s.serviceURL("release"))
}

func (s *session) notify() notifyv1connect.NotifyServiceClient {
	return notifyv1connect.NewNotifyServiceClient(s.http, s.serviceURL("notify"))
}

// The command groups of `sluice --help`.
const (
	groupPipeline = "pipeline"
	groupRelease  = "release"
	groupEvents   = "events"
	groupPlatform = "platform"
)

func (s *session) rootCmd() *cobra.Command {
	a := s.app
	root := &cobra.Command{
		Use:   "sluice <command>",
		Short: "Sluice: a self-hosted CI/CD platform",
		Long: `Sluice builds, tests, releases, deploys and verifies every change pushed to a
registered git repository. 'sluice up' runs the platform; every other command
talks to it over its API.`,
		Example: `  $ sluice up --example examples/hello
  $ sluice repo add ../my-service --name my-service
  $ sluice trigger my-service --follow
  $ sluice runs my-service
  $ sluice logs <run-id> --step compile`,
		Version:                    versionString(a.Version, a.Commit),
		Args:                       cobra.ArbitraryArgs,
		RunE:                       groupRun,
		SilenceErrors:              true,
		SilenceUsage:               true,
		SuggestionsMinimumDistance: 2,
		CompletionOptions:          cobra.CompletionOptions{HiddenDefaultCmd: false},
	}
	root.SetOut(a.Stdout)
	root.SetErr(a.Stderr)
	root.SetVersionTemplate("sluice {{.Version}}\n")
	root.SetUsageTemplate(usageTemplate)
	root.SetFlagErrorFunc(flagError)
	root.AddGroup(
		&cobra.Group{ID: groupPipeline, Title: "PIPELINE COMMANDS"},
		&cobra.Group{ID: groupRelease, Title: "RELEASE COMMANDS"},
		&cobra.Group{ID: groupEvents, Title: "EVENT COMMANDS"},
		&cobra.Group{ID: groupPlatform, Title: "PLATFORM COMMANDS"},
	)
	root.SetCompletionCommandGroupID(groupPlatform)
	root.SetHelpCommand(helpCmd())

	pf := root.PersistentFlags()
	pf.BoolP("help", "h", false, "Show help for a command")
	pf.StringVar(&s.server, "server", firstNonEmpty(a.Getenv("SLUICE_SERVER"), DefaultServer),
		"the platform's URL ($SLUICE_SERVER); $SLUICE_<SERVICE>_URL points at one service run apart")
	pf.StringVar(&s.caFile, "ca-file", a.Getenv("SLUICE_CA_FILE"),
		"CA bundle (PEM) that the platform's https:// certificate is checked against ($SLUICE_CA_FILE); default the system's roots")
	pf.BoolVar(&s.plainHTTP, "allow-plain-http", a.Getenv("SLUICE_ALLOW_PLAIN_HTTP") == "1",
		"send the token and calls over plain http:// to a host other than this machine ($SLUICE_ALLOW_PLAIN_HTTP=1); anyone on the network path can read them")
	pf.VarP(&s.output, "output", "o", "text or json")
	_ = root.RegisterFlagCompletionFunc("output", cobra.FixedCompletions([]string{"text", "json"}, cobra.ShellCompDirectiveNoFileComp))
	root.Flags().BoolP("version", "v", false, "Show sluice's version")

	var cmds []*cobra.Command
	cmds = append(cmds, inGroup(groupPipeline, s.repoCmd(), s.triggerCmd(), s.cancelCmd(), s.rerunCmd(), s.runsCmd(), s.showCmd(), s.logsCmd(), s.artifactsCmd(), s.artifactCmd())...)
	cmds = append(cmds, inGroup(groupRelease, s.releasesCmd(), s.deploymentsCmd(), s.rollbackCmd())...)
	cmds = append(cmds, inGroup(groupEvents, s.subscribeCmd(), s.deliveriesCmd(), s.eventsCmd())...)
	cmds = append(cmds, inGroup(groupPlatform, s.upCmd(), s.loginCmd(), s.logoutCmd(), s.whoamiCmd(), s.tokenCmd(), s.secretCmd(), s.auditCmd(), s.deadLettersCmd(), s.versionCmd())...)
	root.AddCommand(cmds...)
	// cobra's completion command, made now so that it behaves as repo does:
	// alone it shows its help, with a shell it does not know it says so.
	root.InitDefaultCompletionCmd()
	if c, _, err := root.Find([]string{"completion"}); err == nil && c != root {
		c.Args, c.RunE, c.SuggestionsMinimumDistance = cobra.ArbitraryArgs, groupRun, 2
		c.Example = "  $ sluice completion bash > /etc/bash_completion.d/sluice\n  $ sluice completion zsh > \"${fpath[1]}/_sluice\"\n  $ sluice completion fish > ~/.config/fish/completions/sluice.fish"
	}
	return root
}

// inGroup puts commands in a help group.
func inGroup(id string, cmds ...*cobra.Command) []*cobra.Command {
	for _, c := range cmds {
		c.GroupID = id
	}
	return cmds
}

// helpCmd is `sluice help [command]`; unlike cobra's it fails on a command
// that does not exist, with a suggestion.
func helpCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "help [command]",
		Short:   "Help about any command",
		Example: "  $ sluice help trigger\n  $ sluice help repo add",
		GroupID: groupPlatform,
		Args:    cobra.ArbitraryArgs,
		ValidArgsFunction: func(c *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
			var out []cobra.Completion
			if cmd, rest, err := c.Root().Find(args); err == nil && len(rest) == 0 {
				for _, sub := range cmd.Commands() {
					if sub.IsAvailableCommand() && strings.HasPrefix(sub.Name(), toComplete) {
						out = append(out, cobra.CompletionWithDesc(sub.Name(), sub.Short))
					}
				}
			}
			return out, cobra.ShellCompDirectiveNoFileComp
		},
		RunE: func(c *cobra.Command, args []string) error {
			cmd, rest, err := c.Root().Find(args)
			if err != nil {
				return err
			}
			if len(rest) > 0 {
				return unknownCommand(cmd, rest[0])
			}
			return cmd.Help()
		},
	}
}

// groupRun is what a command that only holds subcommands does when run:
// alone it shows its help; with a word that is no subcommand it says so.
func groupRun(cmd *cobra.Command, args []string) error {
	if len(args) == 0 {
		return cmd.Help()
	}
	return unknownCommand(cmd, args[0])
}

func versionString(version, commit string) string {
	if commit != "" {
		return fmt.Sprintf("%s (%s)", version, commit)
	}
	return version
}

// usageTemplate lays out help as gh does: usage line, commands, flags,
// examples.
const usageTemplate = `USAGE
  {{if .HasAvailableSubCommands}}{{.CommandPath}} <command> [flags]{{else}}{{.UseLine}}{{end}}{{if gt (len .Aliases) 0}}

ALIASES
  {{.NameAndAliases}}{{end}}{{if .HasAvailableSubCommands}}{{$cmds := .Commands}}{{if eq (len .Groups) 0}}

COMMANDS{{range $cmds}}{{if .IsAvailableCommand}}
  {{rpad .Name .NamePadding}}  {{.Short}}{{end}}{{end}}{{else}}{{range $group := .Groups}}

{{.Title}}{{range $cmds}}{{if (and (eq .GroupID $group.ID) (or .IsAvailableCommand (eq .Name "help")))}}
  {{rpad .Name .NamePadding}}  {{.Short}}{{end}}{{end}}{{end}}{{end}}{{end}}{{if .HasAvailableLocalFlags}}

FLAGS
{{.LocalFlags.FlagUsages | trimTrailingWhitespaces}}{{end}}{{if .HasAvailableInheritedFlags}}

INHERITED FLAGS
{{.InheritedFlags.FlagUsages | trimTrailingWhitespaces}}{{end}}{{if .HasExample}}

EXAMPLES
{{.Example}}{{end}}{{if .HasAvailableSubCommands}}

LEARN MORE
  Use '{{.CommandPath}} <command> --help' for more about a command.{{end}}
`
