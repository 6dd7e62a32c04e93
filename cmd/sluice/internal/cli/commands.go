package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"connectrpc.com/connect"
	"github.com/spf13/cobra"
	"google.golang.org/protobuf/proto"

	buildv1 "github.com/sluicehq/sluice/proto/gen/sluice/build/v1"
	notifyv1 "github.com/sluicehq/sluice/proto/gen/sluice/notify/v1"
	releasev1 "github.com/sluicehq/sluice/proto/gen/sluice/release/v1"
	sourcev1 "github.com/sluicehq/sluice/proto/gen/sluice/source/v1"
	testv1 "github.com/sluicehq/sluice/proto/gen/sluice/test/v1"
)

// render prints res as JSON with --output json, else as text prints it.
func (s *session) render(res proto.Message, err error, text func() error) error {
	if err != nil {
		return err
	}
	if s.json() {
		return printJSON(s.app.Stdout, res)
	}
	return text()
}

// readPages reads a list page by page, each as large as the API allows
// (1000) and no larger than what is left of limit, until it has limit
// items or the last page; page gets each page's size and token.
func readPages[T any](limit int, page func(size int32, token string) ([]T, string, error)) ([]T, error) {
	var items []T
	token := ""
	for len(items) < limit {
		got, next, err := page(int32(min(limit-len(items), 1000)), token)
		if err != nil {
			return nil, err
		}
		items = append(items, got...)
		if token = next; token == "" {
			break
		}
	}
	return items, nil
}

// needArgs checks the positional arguments against their names in the
// usage line; a name in brackets is optional.
func needArgs(names ...string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		required := 0
		for _, n := range names {
			if !strings.HasPrefix(n, "[") {
				required++
			}
		}
		switch {
		case len(args) < required:
			return usagef(cmd, "missing %s (usage: %s)", strings.Join(names[len(args):required], " "), cmd.UseLine())
		case len(args) > len(names):
			return usagef(cmd, "unexpected argument %q (usage: %s)", sanitizeLine(args[len(names)]), cmd.UseLine())
		}
		return nil
	}
}

// completionTimeout bounds the API calls that shell completion makes.
const completionTimeout = 3 * time.Second

// completeRepos completes a first argument with the registered
// repositories' names.
func (s *session) completeRepos(cmd *cobra.Command, args []string, _ string) ([]cobra.Completion, cobra.ShellCompDirective) {
	if len(args) > 0 {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	ctx, cancel := context.WithTimeout(cmd.Context(), completionTimeout)
	defer cancel()
	res, err := s.source().ListRepositories(ctx, &sourcev1.ListRepositoriesRequest{})
	if err != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	var out []cobra.Completion
	for _, r := range res.GetRepositories() {
		out = append(out, cobra.CompletionWithDesc(sanitizeLine(r.GetName()), sanitizeLine(r.GetUrl())))
	}
	return out, cobra.ShellCompDirectiveNoFileComp
}

// allRepositories lists every repository, page after page.
func (s *session) allRepositories(ctx context.Context) (*sourcev1.ListRepositoriesResponse, error) {
	all := &sourcev1.ListRepositoriesResponse{}
	token := ""
	for {
		res, err := s.source().ListRepositories(ctx, &sourcev1.ListRepositoriesRequest{PageSize: 1000, PageToken: token})
		if err != nil {
			return nil, err
		}
		all.Repositories = append(all.Repositories, res.GetRepositories()...)
		if token = res.GetNextPageToken(); token == "" {
			return all, nil
		}
	}
}

// completeRuns completes a first argument with the newest runs' ids.
func (s *session) completeRuns(cmd *cobra.Command, args []string, _ string) ([]cobra.Completion, cobra.ShellCompDirective) {
	if len(args) > 0 {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	ctx, cancel := context.WithTimeout(cmd.Context(), completionTimeout)
	defer cancel()
	res, err := s.source().ListRuns(ctx, &sourcev1.ListRunsRequest{PageSize: 20})
	if err != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	var out []cobra.Completion
	for _, r := range res.GetRuns() {
		out = append(out, cobra.CompletionWithDesc(sanitizeLine(r.GetId()),
			sanitizeLine(fmt.Sprintf("%s %s %s", r.GetRepository(), runWord(r.GetStatus()), firstLine(r.GetCommitMessage())))))
	}
	return out, cobra.ShellCompDirectiveNoFileComp
}

func (s *session) repoCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "repo",
		Short: "Register and list repositories",
		Long:  "Register git repositories for Sluice to watch, and list them.",
		Example: `  $ sluice repo add https://github.com/acme/shop.git --branch main
  $ sluice repo ls`,
		Args:                       cobra.ArbitraryArgs,
		RunE:                       groupRun,
		SuggestionsMinimumDistance: 2,
	}
	cmd.AddCommand(s.repoAddCmd(), s.repoListCmd())
	return cmd
}

func (s *session) repoAddCmd() *cobra.Command {
	var name, branch string
	var cred gitCredentialFlags
	var place forgeFlags
	var prSecrets, forkPRs, forgeReleases bool
	cmd := &cobra.Command{
		Use:   "add <git-url-or-path>",
		Short: "Register a repository",
		Long: `Register a git repository by URL or local path. Sluice then runs every change
pushed to its branch. Registering the same repository again changes nothing.

It prints the repository's webhook URL and secret: point the forge's push
webhook at them, or let Sluice poll.

With --forge (github, gitea, forgejo or gitlab) the repository is on that
forge: its webhooks are checked in that forge's scheme and, given a token with
--forge-token-file, Sluice reports back there. The forge's address and the
project's path default to what the repository's URL says. With
--forge-releases each release is made there too: its git tag and the forge's
release with the changelog.

A private repository's credential is never part of its URL: give an HTTPS
token with --git-token-file, or an SSH deploy key with --ssh-key-file and the
server's host keys with --known-hosts-file (an unknown host key is refused).
Sluice keeps it as the repository's secrets, encrypted, and never shows it;
rotate it with sluice secret set (docs/security.md, "Repository credentials").`,
		Example: `  $ sluice repo add https://github.com/acme/shop.git
  $ sluice repo add ./shop --name shop --branch main
  $ sluice repo add https://github.com/acme/private.git --git-token-file token.txt
  $ ssh-keyscan github.com > known_hosts
  $ sluice repo add git@github.com:acme/private.git --ssh-key-file deploy_key --known-hosts-file known_hosts
  $ sluice repo add https://git.example.com/acme/shop.git --forge gitea --forge-token-file forge-token.txt --forge-releases`,
		Args: needArgs("<git-url-or-path>"),
		RunE: func(cmd *cobra.Command, args []string) error {
			url := args[0]
			// A local path is sent absolute: the server resolves nothing relative.
			if !strings.Contains(url, "://") && !strings.Contains(url, "@") {
				if abs, err := filepath.Abs(url); err == nil {
					if _, statErr := os.Stat(abs); statErr == nil {
						url = abs
					}
				}
			}
			credential, err := cred.credential(s, cmd)
			if err != nil {
				return err
			}
			onForge, forgeToken, err := place.forge(s, cmd)
			if err != nil {
				return err
			}
			res, err := s.source().CreateRepository(cmd.Context(), &sourcev1.CreateRepositoryRequest{
				Url: url, Name: name, Branch: branch, GitCredential: credential, Forge: onForge, ForgeToken: forgeToken,
				PullRequestSecrets: prSecrets, ForkPullRequests: forkPRs, ForgeReleases: forgeReleases,
			})
			return s.render(res, err, func() error {
				r := res.GetRepository()
				w := s.app.Stdout
				if !res.GetCreated() {
					fmt.Fprintf(w, "repository %s already registered (%s, branch %s)\n", sanitizeLine(r.GetName()), sanitizeLine(r.GetUrl()), sanitizeLine(r.GetBranch()))
					return nil
				}
				fmt.Fprintf(w, "registered %s (%s), watching branch %s\n", sanitizeLine(r.GetName()), sanitizeLine(r.GetUrl()), sanitizeLine(r.GetBranch()))
				fmt.Fprintf(w, "webhook: POST %s/webhooks/%s/%s with secret %s\n", s.serviceURL("source"), webhookForge(r.GetForge()), sanitizeLine(r.GetName()), sanitizeLine(r.GetWebhookSecret()))
				return nil
			})
		},
	}
	cmd.Flags().StringVar(&name, "name", "", "repository name (default: from the URL)")
	cmd.Flags().StringVar(&branch, "branch", "", "branch to watch and release (default: the repository's HEAD branch)")
	cred.add(cmd)
	place.add(cmd)
	cmd.Flags().BoolVar(&prSecrets, "pull-request-secrets", false, "let runs of pull requests from the repository's own branches have the secrets their pipeline asks for (never those from forks)")
	cmd.Flags().BoolVar(&forkPRs, "fork-pull-requests", false, "run pull requests from forks too (never with secrets): their commands run on the build hosts")
	cmd.Flags().BoolVar(&forgeReleases, "forge-releases", false, "make each release on the forge too: its git tag and the forge's release with the changelog (needs --forge and a token that may push tags)")
	return withFields(cmd, "url", "<git-url-or-path>", "name", "--name", "branch", "--branch")
}

func (s *session) repoListCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "ls",
		Aliases: []string{"list"},
		Short:   "List repositories",
		Example: `  $ sluice repo ls
  $ sluice repo ls --output json`,
		Args: needArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			res, err := s.allRepositories(cmd.Context())
			return s.render(res, err, func() error {
				t := &table{}
				t.add("NAME", "BRANCH", "LAST COMMIT", "URL")
				for _, r := range res.GetRepositories() {
					t.add(sanitizeLine(r.GetName()), sanitizeLine(r.GetBranch()), sanitizeLine(shortSHA(r.GetLastSeenCommit())), sanitizeLine(r.GetUrl()))
				}
				return t.write(s.app.Stdout)
			})
		},
	}
}

func (s *session) triggerCmd() *cobra.Command {
	var ref string
	var follow bool
	cmd := &cobra.Command{
		Use:   "trigger <repo>",
		Short: "Start a run",
		Long: `Start a run of a repository at the head of its watched branch, or of another
branch, tag or commit.

With --follow it shows the run stage by stage until it ends, and exits 0 only
if the run succeeded.`,
		Example: `  $ sluice trigger hello --follow
  $ sluice trigger hello --ref v1.2.0`,
		Args:              needArgs("<repo>"),
		ValidArgsFunction: s.completeRepos,
		RunE: func(cmd *cobra.Command, args []string) error {
			res, err := s.source().TriggerRun(cmd.Context(), &sourcev1.TriggerRunRequest{Repository: args[0], Ref: ref})
			if err != nil {
				return err
			}
			return s.started(cmd.Context(), res, res.GetRun(), follow, "")
		},
	}
	cmd.Flags().StringVar(&ref, "ref", "", "branch, tag or commit (default: the watched branch)")
	cmd.Flags().BoolVar(&follow, "follow", false, "show the run's progress; exit 0 only if it succeeded")
	return withFields(cmd, "repository", "<repo>", "ref", "--ref")
}

func (s *session) cancelCmd() *cobra.Command {
	var follow, force bool
	cmd := &cobra.Command{
		Use:   "cancel <run-id>",
		Short: "Cancel a run",
		Long: `Cancel a queued or running run: its running steps are stopped (SIGTERM, then
SIGKILL after a grace period), nothing more of it starts, and it ends
cancelled, with a notification like any other end. A release already under
way is not interrupted. Cancelling a run twice changes nothing; a run that
ended cannot be cancelled. A run still waiting to start ends at once.

With --force the run ends cancelled at once, without waiting for its stages
to say they stopped (they are still asked to): for a run that no stage
answers for, stuck queued or running.

With --follow it shows the run until it ends, and exits 0 only if it ended
cancelled.`,
		Example: `  $ sluice cancel 01a241d7-6533-7754-8392-2fcf9d8b3f73
  $ sluice cancel 01a241d7-6533-7754-8392-2fcf9d8b3f73 --follow
  $ sluice cancel 01a241d7-6533-7754-8392-2fcf9d8b3f73 --force`,
		Args:              needArgs("<run-id>"),
		ValidArgsFunction: s.completeRuns,
		RunE: func(cmd *cobra.Command, args []string) error {
			res, err := s.source().CancelRun(cmd.Context(), &sourcev1.CancelRunRequest{RunId: args[0], Force: force})
			if err != nil {
				return err
			}
			run := res.GetRun()
			if follow {
				return followRun(cmd.Context(), s.source(), run.GetId(), s.app.Stdout, s.json(), s.style, sourcev1.RunStatus_RUN_STATUS_CANCELLED)
			}
			if s.json() {
				return printJSON(s.app.Stdout, res)
			}
			if run.GetStatus() == sourcev1.RunStatus_RUN_STATUS_CANCELLED {
				fmt.Fprintf(s.app.Stdout, "run %s: cancelled\n", sanitizeLine(run.GetId()))
				return nil
			}
			fmt.Fprintf(s.app.Stdout, "run %s: cancel requested (it is %s; it ends cancelled once its stage has stopped)\n",
				sanitizeLine(run.GetId()), runWord(run.GetStatus()))
			return nil
		},
	}
	cmd.Flags().BoolVar(&follow, "follow", false, "show the run until it ends; exit 0 only if it ended cancelled")
	cmd.Flags().BoolVar(&force, "force", false, "end the run now, without waiting for its stages to stop (for a stuck run)")
	return withFields(cmd, "run_id", "<run-id>")
}

// started follows a run just started (exiting 0 only if it succeeds), or
// prints res (--output json) or a line that says it started, and note.
func (s *session) started(ctx context.Context, res proto.Message, run *sourcev1.Run, follow bool, note string) error {
	if follow {
		return followRun(ctx, s.source(), run.GetId(), s.app.Stdout, s.json(), s.style, sourcev1.RunStatus_RUN_STATUS_SUCCEEDED)
	}
	if s.json() {
		return printJSON(s.app.Stdout, res)
	}
	fmt.Fprintf(s.app.Stdout, "run %s started for %s at %s (%s)%s\n", sanitizeLine(run.GetId()), sanitizeLine(run.GetRepository()),
		sanitizeLine(shortSHA(run.GetCommit())), sanitizeLine(run.GetBranch()), note)
	return nil
}

func (s *session) rerunCmd() *cobra.Command {
	var failed, follow bool
	cmd := &cobra.Command{
		Use:   "rerun <run-id>",
		Short: "Run an ended run's commit again",
		Long: `Start a new run of an ended run's commit (its ref and branch). With --failed,
the new run starts at the stage that failed or was cancelled: the stages before
it reuse what the ended run made (the build's artifacts, the passed tests), and
run no step.

With --follow it shows the new run stage by stage until it ends, and exits 0
only if it succeeded.`,
		Example:           `  $ sluice rerun 01a241d7-6533-7754-8392-2fcf9d8b3f73 --failed --follow`,
		Args:              needArgs("<run-id>"),
		ValidArgsFunction: s.completeRuns,
		RunE: func(cmd *cobra.Command, args []string) error {
			res, err := s.source().RerunRun(cmd.Context(), &sourcev1.RerunRunRequest{RunId: args[0], Failed: failed})
			if err != nil {
				return err
			}
			run := res.GetRun()
			return s.started(cmd.Context(), res, run, follow,
				fmt.Sprintf(", rerunning %s from its %s stage", sanitizeLine(run.GetRerunOf()), sanitizeLine(run.GetRerunFrom())))
		},
	}
	cmd.Flags().BoolVar(&failed, "failed", false, "start at the stage that failed, reusing the stages before it")
	cmd.Flags().BoolVar(&follow, "follow", false, "show the new run's progress; exit 0 only if it succeeded")
	return withFields(cmd, "run_id", "<run-id>")
}

func (s *session) runsCmd() *cobra.Command {
	var limit int32
	var pr int64
	cmd := &cobra.Command{
		Use:   "runs [<repo>]",
		Short: "List runs, newest first",
		Long:  "List the runs of every repository, or of one, newest first; with --pr, those of one of its pull (merge) requests.",
		Example: `  $ sluice runs
  $ sluice runs hello --limit 5
  $ sluice runs hello --pr 7
  $ sluice runs hello --output json`,
		Args:              needArgs("[<repo>]"),
		ValidArgsFunction: s.completeRepos,
		RunE: func(cmd *cobra.Command, args []string) error {
			req := &sourcev1.ListRunsRequest{PageSize: limit, PullRequest: pr}
			if pr != 0 && len(args) == 0 {
				return usagef(cmd, "--pr needs the repository: sluice runs <repo> --pr %d", pr)
			}
			if len(args) == 1 {
				req.Repository = args[0]
			}
			res, err := s.source().ListRuns(cmd.Context(), req)
			return s.render(res, err, func() error {
				t := &table{}
				t.add("RUN", "REPOSITORY", "COMMIT", "STATUS", "RELEASE", "STARTED", "DURATION", "MESSAGE")
				for _, r := range res.GetRuns() {
					t.add(sanitizeLine(r.GetId()), sanitizeLine(r.GetRepository()), sanitizeLine(shortSHA(r.GetCommit())), s.style.status(runWord(r.GetStatus()), 0),
						sanitizeLine(firstNonEmpty(r.GetReleaseVersion(), "-")), ago(r.GetCreateTime().AsTime()), runDuration(r),
						truncate(sanitizeLine(firstLine(r.GetCommitMessage())), 50))
				}
				return t.write(s.app.Stdout)
			})
		},
	}
	cmd.Flags().Int32Var(&limit, "limit", 20, "how many runs (at most 1000)")
	cmd.Flags().Int64Var(&pr, "pr", 0, "only the runs of this pull (merge) request")
	return withFields(cmd, "repository", "<repo>", "limit", "--limit", "page_size", "--limit", "pull_request", "--pr")
}

func (s *session) showCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "show <run-id>",
		Short: "Show a run stage by stage",
		Long: `Show a run: its commit, status and release, and each stage with its outcome;
a failed stage with its failing step, exit code and last log lines.`,
		Example: `  $ sluice show 01a241d7-6533-7754-8392-2fcf9d8b3f73
  $ sluice show 01a241d7-6533-7754-8392-2fcf9d8b3f73 --output json`,
		Args:              needArgs("<run-id>"),
		ValidArgsFunction: s.completeRuns,
		RunE: func(cmd *cobra.Command, args []string) error {
			res, err := s.source().GetRun(cmd.Context(), &sourcev1.GetRunRequest{RunId: args[0]})
			return s.render(res, err, func() error {
				s.printRun(res.GetRun())
				s.printSteps(cmd.Context(), res.GetRun())
				return nil
			})
		},
	}
	return withFields(cmd, "run_id", "<run-id>")
}

func (s *session) printRun(r *sourcev1.Run) {
	w := s.app.Stdout
	fmt.Fprintf(w, "run         %s\n", sanitizeLine(r.GetId()))
	fmt.Fprintf(w, "repository  %s\n", sanitizeLine(r.GetRepository()))
	fmt.Fprintf(w, "commit      %s %s\n", sanitizeLine(r.GetCommit()), sanitizeLine(firstLine(r.GetCommitMessage())))
	fmt.Fprintf(w, "ref         %s (branch %s)\n", sanitizeLine(firstNonEmpty(r.GetRef(), "-")), sanitizeLine(firstNonEmpty(r.GetBranch(), "-")))
	fmt.Fprintf(w, "trigger     %s\n", enumWord(r.GetTrigger().String(), "TRIGGER_"))
	fmt.Fprintf(w, "status      %s\n", s.style.status(runWord(r.GetStatus()), 0))
	fmt.Fprintf(w, "started     %s\n", r.GetCreateTime().AsTime().Local().Format(time.RFC3339))
	if r.GetEndTime() != nil {
		fmt.Fprintf(w, "duration    %s\n", runDuration(r))
	}
	if r.GetReleaseVersion() != "" {
		fmt.Fprintf(w, "release     %s\n", sanitizeLine(r.GetReleaseVersion()))
	}
	if r.GetFailureReason() != "" {
		fmt.Fprintf(w, "failure     %s\n", indentLines(Sanitize(r.GetFailureReason()), "            "))
	}
	if r.GetRerunOf() != "" {
		fmt.Fprintf(w, "rerun of    %s, from its %s stage\n", sanitizeLine(r.GetRerunOf()), sanitizeLine(r.GetRerunFrom()))
	}
	if r.GetConcurrencyGroup() != "" {
		fmt.Fprintf(w, "group       %s\n", sanitizeLine(r.GetConcurrencyGroup()))
	}
	if r.GetStatus() == sourcev1.RunStatus_RUN_STATUS_QUEUED && r.GetAdmitTime() == nil {
		fmt.Fprintln(w, "waiting     for room in its concurrency group, or under the limits of active runs")
	}
	if r.GetCancelRequestTime() != nil {
		fmt.Fprintf(w, "cancel      requested by %s at %s\n", sanitizeLine(firstNonEmpty(r.GetCancelRequestedBy(), "-")),
			r.GetCancelRequestTime().AsTime().Local().Format(time.RFC3339))
	}
	fmt.Fprintln(w, "stages:")
	for _, st := range r.GetStages() {
		fmt.Fprintln(w, stageLine(st, s.style))
		if st.GetFailedStep() != "" {
			fmt.Fprintf(w, "           step %q exited with code %d\n", sanitizeLine(st.GetFailedStep()), st.GetExitCode())
		}
		for _, l := range st.GetLastLogLines() {
			fmt.Fprintf(w, "           | %s\n", sanitizeLine(l))
		}
	}
}

// printSteps lists the steps of the run's build and test stages, as the
// build and test services tell them: each step's status, its tries when
// it ran more than once, and why one did not run. A stage not started
// yet (or a service that does not answer) lists none.
func (s *session) printSteps(ctx context.Context, r *sourcev1.Run) {
	type step struct {
		name, status, reason string
		tries                int32
	}
	var stages [][]step
	var names []string
	if len(r.GetPipeline().GetBuild().GetSteps()) > 0 {
		if res, err := s.build().GetBuild(ctx, &buildv1.GetBuildRequest{RunId: r.GetId()}); err == nil {
			var steps []step
			for _, st := range res.GetBuild().GetSteps() {
				steps = append(steps, step{st.GetName(), enumWord(st.GetStatus().String(), "STEP_STATUS_"), st.GetReason(), st.GetTries()})
			}
			stages, names = append(stages, steps), append(names, "build")
		}
	}
	if len(r.GetPipeline().GetTest().GetSteps()) > 0 {
		if res, err := s.test().GetTestRun(ctx, &testv1.GetTestRunRequest{RunId: r.GetId()}); err == nil {
			var steps []step
			for _, st := range res.GetTestRun().GetSteps() {
				steps = append(steps, step{st.GetName(), enumWord(st.GetStatus().String(), "STEP_STATUS_"), st.GetReason(), st.GetTries()})
			}
			stages, names = append(stages, steps), append(names, "test")
		}
	}
	w := s.app.Stdout
	for i, steps := range stages {
		if len(steps) == 0 {
			continue
		}
		fmt.Fprintf(w, "%s steps:\n", names[i])
		width := 0
		for _, st := range steps {
			width = max(width, len(st.name))
		}
		for _, st := range steps {
			var notes []string
			if st.tries > 1 {
				notes = append(notes, fmt.Sprintf("%d tries", st.tries))
			}
			if st.reason != "" {
				notes = append(notes, sanitizeLine(st.reason))
			}
			if len(notes) == 0 {
				fmt.Fprintf(w, "  %-*s %s\n", width, sanitizeLine(st.name), s.style.status(st.status, 0))
				continue
			}
			fmt.Fprintf(w, "  %-*s %s %s\n", width, sanitizeLine(st.name), s.style.status(st.status, 10), strings.Join(notes, "; "))
		}
	}
}

// repository asks source for a repository, so that commands served by
// other services can say that it does not exist (they would list nothing)
// and can send its canonical name.
func (s *session) repository(ctx context.Context, nameOrID string) (*sourcev1.Repository, error) {
	res, err := s.source().GetRepository(ctx, &sourcev1.GetRepositoryRequest{Repository: nameOrID})
	if connect.CodeOf(err) == connect.CodeNotFound {
		return nil, &exitError{code: 1, msg: fmt.Sprintf("repository %q not found", sanitizeLine(nameOrID))}
	}
	if err != nil {
		return nil, err
	}
	return res.GetRepository(), nil
}

func (s *session) releasesCmd() *cobra.Command {
	var limit int32
	cmd := &cobra.Command{
		Use:   "releases <repo>",
		Short: "List a repository's releases",
		Long: `List a repository's releases, newest first: each version with its commit, the
run that made it and its artifacts. A release whose verification failed is
marked bad.`,
		Example: `  $ sluice releases hello
  $ sluice releases hello --output json`,
		Args:              needArgs("<repo>"),
		ValidArgsFunction: s.completeRepos,
		RunE: func(cmd *cobra.Command, args []string) error {
			repo, err := s.repository(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			res, err := s.release().ListReleases(cmd.Context(), &releasev1.ListReleasesRequest{Repository: repo.GetName(), PageSize: limit})
			return s.render(res, err, func() error {
				t := &table{}
				t.add("VERSION", "STATUS", "COMMIT", "RUN", "CREATED", "ARTIFACTS")
				for _, r := range res.GetReleases() {
					var names []string
					for _, a := range r.GetArtifacts() {
						names = append(names, sanitizeLine(a.GetName()))
					}
					if r.GetPruneTime() != nil {
						names = []string{"pruned " + ago(r.GetPruneTime().AsTime())}
					}
					t.add(sanitizeLine(r.GetVersion()), s.style.status(enumWord(r.GetStatus().String(), "RELEASE_STATUS_"), 0),
						sanitizeLine(shortSHA(r.GetCommit())), sanitizeLine(r.GetRunId()), ago(r.GetCreateTime().AsTime()), strings.Join(names, ","))
				}
				return t.write(s.app.Stdout)
			})
		},
	}
	cmd.Flags().Int32Var(&limit, "limit", 20, "how many releases (at most 1000)")
	return withFields(cmd, "repository", "<repo>", "limit", "--limit", "page_size", "--limit")
}

func (s *session) deploymentsCmd() *cobra.Command {
	var env string
	var limit int32
	cmd := &cobra.Command{
		Use:   "deployments <repo>",
		Short: "List a repository's deployments",
		Long: `List what was deployed where, newest first: each deployment's environment,
version and status, and whether it was a rollback.`,
		Example: `  $ sluice deployments hello
  $ sluice deployments hello --env staging`,
		Args:              needArgs("<repo>"),
		ValidArgsFunction: s.completeRepos,
		RunE: func(cmd *cobra.Command, args []string) error {
			repo, err := s.repository(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			res, err := s.release().ListDeployments(cmd.Context(), &releasev1.ListDeploymentsRequest{Repository: repo.GetName(), Environment: env, PageSize: limit})
			return s.render(res, err, func() error {
				t := &table{}
				t.add("ENVIRONMENT", "VERSION", "STATUS", "ROLLBACK", "STARTED", "REASON")
				for _, d := range res.GetDeployments() {
					rb := ""
					if d.GetRollback() {
						rb = "yes"
					}
					t.add(sanitizeLine(d.GetEnvironment()), sanitizeLine(d.GetVersion()), s.style.status(enumWord(d.GetStatus().String(), "DEPLOYMENT_STATUS_"), 0),
						rb, ago(d.GetCreateTime().AsTime()), truncate(sanitizeLine(d.GetReason()), 80))
				}
				return t.write(s.app.Stdout)
			})
		},
	}
	cmd.Flags().StringVar(&env, "env", "", "only this environment")
	cmd.Flags().Int32Var(&limit, "limit", 20, "how many deployments (at most 1000)")
	return withFields(cmd, "repository", "<repo>", "environment", "--env", "limit", "--limit", "page_size", "--limit")
}

// versionPattern is a semantic version as --to takes it, v optional.
var versionPattern = regexp.MustCompile(`^v?(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)$`)

func (s *session) rollbackCmd() *cobra.Command {
	var env, to string
	cmd := &cobra.Command{
		Use:   "rollback <repo> --env NAME [--to VERSION]",
		Short: "Redeploy an earlier verified release",
		Long: `Redeploy an earlier release of a repository to an environment, and verify it.

Without --to, rollback picks the newest verified release older than the one
deployed now. With --to it redeploys that version, unless it is marked bad
(one of its deploys or verifications failed). It exits 1 if the redeployed
release does not verify.`,
		Example: `  $ sluice rollback hello --env staging
  $ sluice rollback hello --env staging --to v0.1.0`,
		Args:              needArgs("<repo>"),
		ValidArgsFunction: s.completeRepos,
		RunE: func(cmd *cobra.Command, args []string) error {
			if env == "" {
				return usagef(cmd, "--env is required")
			}
			if to != "" {
				if !versionPattern.MatchString(to) {
					return usagef(cmd, "--to %q is not a version; a version looks like v1.2.3", sanitizeLine(to))
				}
				to = "v" + strings.TrimPrefix(to, "v")
			}
			repo, err := s.repository(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			res, err := s.release().Rollback(cmd.Context(), &releasev1.RollbackRequest{Repository: repo.GetName(), Environment: env, ToVersion: to})
			if err != nil {
				return err
			}
			d := res.GetDeployment()
			if s.json() {
				if err := printJSON(s.app.Stdout, res); err != nil {
					return err
				}
			} else {
				word := enumWord(d.GetStatus().String(), "DEPLOYMENT_STATUS_")
				fmt.Fprintf(s.app.Stdout, "rolled %s back to %s: %s\n", sanitizeLine(d.GetEnvironment()), sanitizeLine(d.GetVersion()), s.style.paint(toneOf(word), word))
			}
			if d.GetStatus() != releasev1.DeploymentStatus_DEPLOYMENT_STATUS_VERIFIED {
				msg := "rollback did not verify: " + sanitizeLine(d.GetReason())
				for _, l := range d.GetLastLogLines() {
					msg += "\n| " + sanitizeLine(l)
				}
				if d.GetId() != "" {
					msg += "\n(sluice logs " + sanitizeLine(d.GetId()) + " prints all of its output)"
				}
				return &exitError{code: 1, msg: msg}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&env, "env", "", "environment to roll back (required)")
	cmd.Flags().StringVar(&to, "to", "", "version to roll back to, e.g. v0.1.0 (default: the newest verified release older than the one deployed now)")
	return withFields(cmd, "repository", "<repo>", "environment", "--env", "to_version", "--to")
}

func (s *session) subscribeCmd() *cobra.Command {
	var url, secret, repo string
	var types []string
	cmd := &cobra.Command{
		Use:   "subscribe --url URL --secret SECRET",
		Short: "Send events to a webhook",
		Long: `Subscribe a webhook to Sluice's events. Each event is POSTed to the URL as a
CloudEvent, signed with HMAC-SHA256 over the secret, and retried with back-off
until it is delivered or given up ('sluice deliveries' shows each attempt).`,
		Example: `  $ sluice subscribe --url http://127.0.0.1:9000/hook --secret s3cr3t-value
  $ sluice subscribe --url https://chat.example/hook --secret s3cr3t-value --events 'dev.cdevents.service.*' --repo hello`,
		Args: needArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if url == "" || secret == "" {
				return usagef(cmd, "--url and --secret are required")
			}
			var list []string
			for _, t := range types {
				if t = strings.TrimSpace(t); t != "" {
					list = append(list, t)
				}
			}
			res, err := s.notify().CreateSubscription(cmd.Context(), &notifyv1.CreateSubscriptionRequest{Url: url, Secret: secret, EventTypes: list, Repository: repo})
			return s.render(res, err, func() error {
				fmt.Fprintf(s.app.Stdout, "subscription %s: events go to %s\n", sanitizeLine(res.GetSubscription().GetId()), sanitizeLine(res.GetSubscription().GetUrl()))
				return nil
			})
		},
	}
	cmd.Flags().StringVar(&url, "url", "", "where to POST events (required)")
	cmd.Flags().StringVar(&secret, "secret", "", "HMAC-SHA256 signing secret, at least 8 characters (required)")
	cmd.Flags().StringSliceVar(&types, "events", nil, "CloudEvents types or prefixes ending in *, comma-separated (default: all)")
	cmd.Flags().StringVar(&repo, "repo", "", "only this repository's events")
	return withFields(cmd, "url", "--url", "secret", "--secret", "event_types", "--events", "repository", "--repo")
}

func (s *session) deliveriesCmd() *cobra.Command {
	var sub string
	var limit int32
	cmd := &cobra.Command{
		Use:   "deliveries",
		Short: "List webhook deliveries and their attempts",
		Long: `List the events sent to webhooks, newest first: each delivery's status, how
many attempts it took and how the last one went.`,
		Example: `  $ sluice deliveries
  $ sluice deliveries --subscription 01a2b3c4 --limit 10`,
		Args: needArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			res, err := s.notify().ListDeliveries(cmd.Context(), &notifyv1.ListDeliveriesRequest{SubscriptionId: sub, PageSize: limit})
			return s.render(res, err, func() error {
				t := &table{}
				t.add("DELIVERY", "EVENT", "STATUS", "ATTEMPTS", "LAST", "CREATED")
				for _, d := range res.GetDeliveries() {
					last := "-"
					if n := len(d.GetAttempts()); n > 0 {
						a := d.GetAttempts()[n-1]
						last = fmt.Sprintf("%d %s", a.GetHttpStatus(), a.GetError())
					}
					if d.GetStatus() == notifyv1.DeliveryStatus_DELIVERY_STATUS_DEAD && d.GetLastError() != "" {
						last = d.GetLastError()
					}
					t.add(sanitizeLine(d.GetId()), sanitizeLine(d.GetEventType()), s.style.status(enumWord(d.GetStatus().String(), "DELIVERY_STATUS_"), 0),
						fmt.Sprint(len(d.GetAttempts())), truncate(sanitizeLine(last), 60), ago(d.GetCreateTime().AsTime()))
				}
				return t.write(s.app.Stdout)
			})
		},
	}
	cmd.Flags().StringVar(&sub, "subscription", "", "only this subscription's deliveries")
	cmd.Flags().Int32Var(&limit, "limit", 50, "how many deliveries (at most 1000)")
	return withFields(cmd, "subscription_id", "--subscription", "limit", "--limit", "page_size", "--limit")
}

func (s *session) eventsCmd() *cobra.Command {
	var filter string
	cmd := &cobra.Command{
		Use:   "events",
		Short: "Tail the live event stream",
		Long: `Print the platform's events as they happen (CloudEvents carrying CDEvents)
until interrupted.`,
		Example: `  $ sluice events
  $ sluice events --filter 'sluice.build.>'
  $ sluice events --output json`,
		Args: needArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			stream, err := s.notify().WatchEvents(ctx, &notifyv1.WatchEventsRequest{Filter: filter})
			if err != nil {
				return err
			}
			defer stream.Close()
			for stream.Receive() {
				ev := stream.Msg().GetEvent()
				if s.json() {
					if err := printJSON(s.app.Stdout, ev); err != nil {
						return err
					}
					continue
				}
				fmt.Fprintf(s.app.Stdout, "%s  %-34s %-48s %s\n", ev.GetTime().AsTime().Local().Format("15:04:05.000"),
					sanitizeLine(ev.GetNatsSubject()), sanitizeLine(ev.GetType()), sanitizeLine(ev.GetSubject()))
			}
			if err := stream.Err(); err != nil && !errors.Is(err, context.Canceled) && ctx.Err() == nil {
				return err
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&filter, "filter", "", "NATS subject filter, e.g. 'sluice.build.>' (default: everything)")
	return withFields(cmd, "filter", "--filter")
}

func (s *session) versionCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "version",
		Short:   "Print the version",
		Example: `  $ sluice version`,
		Args:    needArgs(),
		RunE: func(_ *cobra.Command, _ []string) error {
			if s.json() {
				return printJSONLine(s.app.Stdout, struct {
					Version string `json:"version"`
					Commit  string `json:"commit,omitempty"`
				}{s.app.Version, s.app.Commit})
			}
			fmt.Fprintln(s.app.Stdout, "sluice", versionString(s.app.Version, s.app.Commit))
			return nil
		},
	}
}

// upCmd runs the whole platform in one process; its flags are the
// all-in-one server's (every service's settings among them).
func (s *session) upCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "up [flags]",
		Short: "Run the whole platform in one process",
		Long: `Run the five services and an embedded NATS server with JetStream in one
process, with a SQLite database per service under the data directory, until
interrupted. With --example it registers an example repository, runs it and
follows the run.

Every setting of a service's own binary is a flag here, prefixed with the
service's name (sluice-build --workers is --build-workers), and is read from
the same SLUICE_<SERVICE>_* variable; a flag wins over its variable.`,
		Example: `  $ sluice up
  $ sluice up --data-dir /tmp/sluice --addr 127.0.0.1:9090
  $ sluice up --example examples/hello
  $ sluice up --build-workers 8 --source-poll-interval 0`,
		Args: needArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return errors.New("this build has no platform in it")
		},
	}
	if s.app.NewUp != nil {
		up := s.app.NewUp()
		cmd.Flags().AddFlagSet(up.Flags())
		// Old names the server still takes (--poll-interval).
		cmd.Flags().SetNormalizeFunc(up.Flags().GetNormalizeFunc())
		cmd.RunE = func(cmd *cobra.Command, _ []string) error {
			return up.Run(cmd.Context(), s.app.Stdout, s.app.Stderr)
		}
	}
	defaultHelp := cmd.HelpFunc()
	cmd.SetHelpFunc(func(cmd *cobra.Command, args []string) {
		for _, name := range []string{"output", "server"} { // up takes neither
			if f := cmd.Root().PersistentFlags().Lookup(name); f != nil {
				f.Hidden = true
			}
		}
		defaultHelp(cmd, args)
	})
	return cmd
}
