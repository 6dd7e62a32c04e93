package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	buildv1 "github.com/sluicehq/sluice/proto/gen/sluice/build/v1"
	notifyv1 "github.com/sluicehq/sluice/proto/gen/sluice/notify/v1"
	releasev1 "github.com/sluicehq/sluice/proto/gen/sluice/release/v1"
	sourcev1 "github.com/sluicehq/sluice/proto/gen/sluice/source/v1"
	testv1 "github.com/sluicehq/sluice/proto/gen/sluice/test/v1"
)

func printJSON(w io.Writer, m proto.Message) error {
	b, err := protojson.MarshalOptions{Multiline: true, Indent: "  ", EmitUnpopulated: false}.Marshal(m)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(w, string(b))
	return err
}

func table(w io.Writer) *tabwriter.Writer { return tabwriter.NewWriter(w, 0, 4, 2, ' ', 0) }

func cmdRepoAdd(ctx context.Context, c *call) error {
	name := c.flags.String("name", "", "repository name (default: from the URL)")
	branch := c.flags.String("branch", "", "branch to watch and release (default: the repository's HEAD branch)")
	if err := c.parse(1, 1); err != nil {
		return err
	}
	url := c.pos[0]
	// A local path is sent absolute: the server resolves nothing relative.
	if !strings.Contains(url, "://") && !strings.Contains(url, "@") {
		if abs, err := filepath.Abs(url); err == nil {
			if _, statErr := os.Stat(abs); statErr == nil {
				url = abs
			}
		}
	}
	res, err := c.source().CreateRepository(ctx, &sourcev1.CreateRepositoryRequest{Url: url, Name: *name, Branch: *branch})
	if err != nil {
		return err
	}
	if c.json() {
		return printJSON(c.app.Stdout, res)
	}
	r := res.GetRepository()
	if !res.GetCreated() {
		fmt.Fprintf(c.app.Stdout, "repository %s already registered (%s, branch %s)\n", r.GetName(), r.GetUrl(), r.GetBranch())
		return nil
	}
	fmt.Fprintf(c.app.Stdout, "registered %s (%s), watching branch %s\n", r.GetName(), r.GetUrl(), r.GetBranch())
	fmt.Fprintf(c.app.Stdout, "webhook: POST %s/webhooks/github/%s with secret %s\n", c.serviceURL("source"), r.GetName(), r.GetWebhookSecret())
	return nil
}

func cmdRepoList(ctx context.Context, c *call) error {
	if err := c.parse(0, 0); err != nil {
		return err
	}
	res, err := c.source().ListRepositories(ctx, &sourcev1.ListRepositoriesRequest{})
	if err != nil {
		return err
	}
	if c.json() {
		return printJSON(c.app.Stdout, res)
	}
	tw := table(c.app.Stdout)
	fmt.Fprintln(tw, "NAME\tBRANCH\tLAST COMMIT\tURL")
	for _, r := range res.GetRepositories() {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", r.GetName(), r.GetBranch(), shortSHA(r.GetLastSeenCommit()), r.GetUrl())
	}
	return tw.Flush()
}

func cmdTrigger(ctx context.Context, c *call) error {
	ref := c.flags.String("ref", "", "branch, tag or commit (default: the watched branch)")
	follow := c.flags.Bool("follow", false, "stream the run's progress; exit 0 only if it succeeded")
	if err := c.parse(1, 1); err != nil {
		return err
	}
	res, err := c.source().TriggerRun(ctx, &sourcev1.TriggerRunRequest{Repository: c.pos[0], Ref: *ref})
	if err != nil {
		return err
	}
	run := res.GetRun()
	if !*follow {
		if c.json() {
			return printJSON(c.app.Stdout, res)
		}
		fmt.Fprintf(c.app.Stdout, "run %s started for %s at %s (%s)\n", run.GetId(), run.GetRepository(), shortSHA(run.GetCommit()), run.GetBranch())
		return nil
	}
	return Follow(ctx, c.source(), run.GetId(), c.app.Stdout, c.json())
}

// Follow streams a run's progress until it ends. It returns an error with
// exit code 1 when the run did not succeed.
func Follow(ctx context.Context, client sourceWatcher, runID string, w io.Writer, asJSON bool) error {
	var last *sourcev1.Run
	for attempt := 0; ; attempt++ {
		stream, err := client.WatchRun(ctx, &sourcev1.WatchRunRequest{RunId: runID})
		if err != nil {
			return err
		}
		p := &progress{w: w, json: asJSON}
		if last != nil {
			p.seen = stageStates(last)
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
			return fmt.Errorf("lost the run's progress: %w", err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
	}
	if last.GetStatus() != sourcev1.RunStatus_RUN_STATUS_SUCCEEDED {
		return &exitError{code: 1}
	}
	return nil
}

type sourceWatcher interface {
	WatchRun(context.Context, *sourcev1.WatchRunRequest) (*connect.ServerStreamForClient[sourcev1.WatchRunResponse], error)
}

func isFinal(s sourcev1.RunStatus) bool {
	return s == sourcev1.RunStatus_RUN_STATUS_SUCCEEDED || s == sourcev1.RunStatus_RUN_STATUS_FAILED || s == sourcev1.RunStatus_RUN_STATUS_CANCELLED
}

type progress struct {
	w       io.Writer
	json    bool
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
		fmt.Fprintf(p.w, "run %s: %s at %s (%s)\n", r.GetId(), r.GetRepository(), shortSHA(r.GetCommit()), firstLine(r.GetCommitMessage()))
	}
	for _, s := range r.GetStages() {
		if p.seen[s.GetName()] == s.GetStatus() {
			continue
		}
		p.seen[s.GetName()] = s.GetStatus()
		if s.GetStatus() == sourcev1.StageStatus_STAGE_STATUS_PENDING {
			continue
		}
		fmt.Fprintf(p.w, "  %-8s %-10s%s\n", s.GetName(), stageWord(s.GetStatus()), stageNote(s))
		if s.GetStatus() == sourcev1.StageStatus_STAGE_STATUS_FAILED {
			for _, l := range s.GetLastLogLines() {
				fmt.Fprintf(p.w, "           | %s\n", l)
			}
		}
	}
	if isFinal(r.GetStatus()) {
		switch r.GetStatus() {
		case sourcev1.RunStatus_RUN_STATUS_SUCCEEDED:
			v := ""
			if r.GetReleaseVersion() != "" {
				v = ", released " + r.GetReleaseVersion()
			}
			fmt.Fprintf(p.w, "run %s succeeded in %s%s\n", r.GetId(), runDuration(r), v)
		default:
			fmt.Fprintf(p.w, "run %s %s: %s\n", r.GetId(), runWord(r.GetStatus()), r.GetFailureReason())
		}
	}
}

func stageNote(s *sourcev1.Stage) string {
	var parts []string
	if s.GetStartTime() != nil && s.GetEndTime() != nil {
		parts = append(parts, s.GetEndTime().AsTime().Sub(s.GetStartTime().AsTime()).Round(10*time.Millisecond).String())
	}
	if s.GetDetail() != "" {
		parts = append(parts, s.GetDetail())
	}
	if s.GetReason() != "" {
		parts = append(parts, s.GetReason())
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

// enumWord is an enum value as a user reads it: RUN_STATUS_FAILED is "failed".
func enumWord(name, prefix string) string {
	return strings.ToLower(strings.TrimPrefix(name, prefix))
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	return s
}

func cmdRuns(ctx context.Context, c *call) error {
	limit := c.flags.Int("limit", 20, "how many runs")
	if err := c.parse(0, 1); err != nil {
		return err
	}
	req := &sourcev1.ListRunsRequest{Limit: int32(*limit)}
	if len(c.pos) == 1 {
		req.Repository = c.pos[0]
	}
	res, err := c.source().ListRuns(ctx, req)
	if err != nil {
		return err
	}
	if c.json() {
		return printJSON(c.app.Stdout, res)
	}
	tw := table(c.app.Stdout)
	fmt.Fprintln(tw, "RUN\tREPOSITORY\tCOMMIT\tSTATUS\tRELEASE\tSTARTED\tDURATION\tMESSAGE")
	for _, r := range res.GetRuns() {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.GetId(), r.GetRepository(), shortSHA(r.GetCommit()), runWord(r.GetStatus()),
			firstNonEmpty(r.GetReleaseVersion(), "-"), ago(r.GetCreateTime().AsTime()), runDuration(r), truncate(firstLine(r.GetCommitMessage()), 50))
	}
	return tw.Flush()
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n-1] + "…"
}

func cmdShow(ctx context.Context, c *call) error {
	if err := c.parse(1, 1); err != nil {
		return err
	}
	res, err := c.source().GetRun(ctx, &sourcev1.GetRunRequest{RunId: c.pos[0]})
	if err != nil {
		return err
	}
	if c.json() {
		return printJSON(c.app.Stdout, res)
	}
	r := res.GetRun()
	w := c.app.Stdout
	fmt.Fprintf(w, "run         %s\n", r.GetId())
	fmt.Fprintf(w, "repository  %s\n", r.GetRepository())
	fmt.Fprintf(w, "commit      %s %s\n", r.GetCommit(), firstLine(r.GetCommitMessage()))
	fmt.Fprintf(w, "ref         %s (branch %s)\n", firstNonEmpty(r.GetRef(), "-"), firstNonEmpty(r.GetBranch(), "-"))
	fmt.Fprintf(w, "trigger     %s\n", enumWord(r.GetTrigger().String(), "TRIGGER_"))
	fmt.Fprintf(w, "status      %s\n", runWord(r.GetStatus()))
	fmt.Fprintf(w, "started     %s\n", r.GetCreateTime().AsTime().Local().Format(time.RFC3339))
	if r.GetEndTime() != nil {
		fmt.Fprintf(w, "duration    %s\n", runDuration(r))
	}
	if r.GetReleaseVersion() != "" {
		fmt.Fprintf(w, "release     %s\n", r.GetReleaseVersion())
	}
	if r.GetFailureReason() != "" {
		fmt.Fprintf(w, "failure     %s\n", indentLines(r.GetFailureReason(), "            "))
	}
	fmt.Fprintln(w, "stages:")
	for _, s := range r.GetStages() {
		fmt.Fprintf(w, "  %-8s %-10s%s\n", s.GetName(), stageWord(s.GetStatus()), stageNote(s))
		if s.GetFailedStep() != "" {
			fmt.Fprintf(w, "           step %q exited with code %d\n", s.GetFailedStep(), s.GetExitCode())
		}
		for _, l := range s.GetLastLogLines() {
			fmt.Fprintf(w, "           | %s\n", l)
		}
	}
	return nil
}

func indentLines(s, indent string) string {
	return strings.ReplaceAll(strings.TrimRight(s, "\n"), "\n", "\n"+indent)
}

func cmdLogs(ctx context.Context, c *call) error {
	step := c.flags.String("step", "", "only this step")
	follow := c.flags.Bool("f", false, "follow: keep printing until the run's steps end")
	if err := c.parse(1, 1); err != nil {
		return err
	}
	runID := c.pos[0]
	printLine := func(stage, step, stream, text string, seq int64) {
		if c.json() {
			fmt.Fprintf(c.app.Stdout, "{\"stage\":%q,\"seq\":%d,\"step\":%q,\"stream\":%q,\"text\":%q}\n", stage, seq, step, stream, text)
			return
		}
		if stream == "meta" {
			fmt.Fprintf(c.app.Stdout, "%s\n", text)
			return
		}
		fmt.Fprintf(c.app.Stdout, "[%s] %s\n", step, text)
	}
	// Build logs: streamed live with -f, else paged.
	if *follow {
		stream, err := c.build().TailLogs(ctx, &buildv1.TailLogsRequest{RunId: runID, Step: *step, FromSeq: 1})
		if err != nil {
			return err
		}
		for stream.Receive() {
			for _, l := range stream.Msg().GetLines() {
				printLine("build", l.GetStep(), l.GetStream(), l.GetText(), l.GetSeq())
			}
		}
		if err := stream.Err(); err != nil {
			return err
		}
	} else {
		found, err := pageLogs(ctx, false, func(from int64) (int64, bool, int, error) {
			res, err := c.build().GetLogs(ctx, &buildv1.GetLogsRequest{RunId: runID, Step: *step, FromSeq: from, Limit: 5000})
			for _, l := range res.GetLines() {
				printLine("build", l.GetStep(), l.GetStream(), l.GetText(), l.GetSeq())
			}
			return res.GetNextSeq(), res.GetComplete(), len(res.GetLines()), err
		})
		if err != nil {
			return err
		}
		if !found {
			return fmt.Errorf("no logs for run %s (has it been built?)", runID)
		}
	}
	// Test logs, when tests ran.
	_, err := pageLogs(ctx, *follow, func(from int64) (int64, bool, int, error) {
		res, err := c.test().GetLogs(ctx, &testv1.GetLogsRequest{RunId: runID, Step: *step, FromSeq: from, Limit: 5000})
		for _, l := range res.GetLines() {
			printLine("test", l.GetStep(), l.GetStream(), l.GetText(), l.GetSeq())
		}
		return res.GetNextSeq(), res.GetComplete(), len(res.GetLines()), err
	})
	return err
}

// pageLogs reads a log page by page through fetch (which prints the lines
// and returns the next sequence number, whether the log is complete and how
// many lines came) until the log is complete, or, without follow, until no
// more lines come. found is false when the service has no log for the run.
func pageLogs(ctx context.Context, follow bool, fetch func(from int64) (next int64, complete bool, n int, err error)) (found bool, err error) {
	for from := int64(1); ; {
		next, complete, n, err := fetch(from)
		if connect.CodeOf(err) == connect.CodeNotFound {
			return found, nil
		}
		if err != nil {
			return found, err
		}
		found = true
		if complete {
			return true, nil
		}
		if n == 0 {
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
		from = next
	}
}

func cmdReleases(ctx context.Context, c *call) error {
	limit := c.flags.Int("limit", 20, "how many releases")
	if err := c.parse(1, 1); err != nil {
		return err
	}
	res, err := c.release().ListReleases(ctx, &releasev1.ListReleasesRequest{Repository: c.pos[0], Limit: int32(*limit)})
	if err != nil {
		return err
	}
	if c.json() {
		return printJSON(c.app.Stdout, res)
	}
	tw := table(c.app.Stdout)
	fmt.Fprintln(tw, "VERSION\tSTATUS\tCOMMIT\tRUN\tCREATED\tARTIFACTS")
	for _, r := range res.GetReleases() {
		var names []string
		for _, a := range r.GetArtifacts() {
			names = append(names, a.GetName())
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", r.GetVersion(), enumWord(r.GetStatus().String(), "RELEASE_STATUS_"),
			shortSHA(r.GetCommit()), r.GetRunId(), ago(r.GetCreateTime().AsTime()), strings.Join(names, ","))
	}
	return tw.Flush()
}

func cmdDeployments(ctx context.Context, c *call) error {
	env := c.flags.String("env", "", "only this environment")
	limit := c.flags.Int("limit", 20, "how many deployments")
	if err := c.parse(1, 1); err != nil {
		return err
	}
	res, err := c.release().ListDeployments(ctx, &releasev1.ListDeploymentsRequest{Repository: c.pos[0], Environment: *env, Limit: int32(*limit)})
	if err != nil {
		return err
	}
	if c.json() {
		return printJSON(c.app.Stdout, res)
	}
	tw := table(c.app.Stdout)
	fmt.Fprintln(tw, "ENVIRONMENT\tVERSION\tSTATUS\tROLLBACK\tSTARTED\tREASON")
	for _, d := range res.GetDeployments() {
		rb := ""
		if d.GetRollback() {
			rb = "yes"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", d.GetEnvironment(), d.GetVersion(),
			enumWord(d.GetStatus().String(), "DEPLOYMENT_STATUS_"), rb, ago(d.GetCreateTime().AsTime()), truncate(d.GetReason(), 80))
	}
	return tw.Flush()
}

func cmdRollback(ctx context.Context, c *call) error {
	env := c.flags.String("env", "", "environment to roll back (required)")
	to := c.flags.String("to", "", "version to roll back to (default: the last verified release before the current one)")
	if err := c.parse(1, 1); err != nil {
		return err
	}
	if *env == "" {
		return fmt.Errorf("%w: --env is required", ErrUsage)
	}
	res, err := c.release().Rollback(ctx, &releasev1.RollbackRequest{Repository: c.pos[0], Environment: *env, ToVersion: *to})
	if err != nil {
		return err
	}
	if c.json() {
		return printJSON(c.app.Stdout, res)
	}
	d := res.GetDeployment()
	fmt.Fprintf(c.app.Stdout, "rolled %s back to %s: %s\n", d.GetEnvironment(), d.GetVersion(),
		enumWord(d.GetStatus().String(), "DEPLOYMENT_STATUS_"))
	if d.GetStatus() != releasev1.DeploymentStatus_DEPLOYMENT_STATUS_VERIFIED {
		return &exitError{code: 1, msg: "rollback did not verify: " + d.GetReason()}
	}
	return nil
}

func cmdSubscribe(ctx context.Context, c *call) error {
	url := c.flags.String("url", "", "where to POST events (required)")
	secret := c.flags.String("secret", "", "HMAC-SHA256 signing secret, at least 8 characters (required)")
	types := c.flags.String("events", "", "comma-separated CloudEvents types or prefixes ending in * (default: all)")
	repo := c.flags.String("repo", "", "only this repository's events")
	if err := c.parse(0, 0); err != nil {
		return err
	}
	if *url == "" || *secret == "" {
		return fmt.Errorf("%w: --url and --secret are required", ErrUsage)
	}
	var list []string
	for _, t := range strings.Split(*types, ",") {
		if t = strings.TrimSpace(t); t != "" {
			list = append(list, t)
		}
	}
	res, err := c.notify().CreateSubscription(ctx, &notifyv1.CreateSubscriptionRequest{Url: *url, Secret: *secret, EventTypes: list, Repository: *repo})
	if err != nil {
		return err
	}
	if c.json() {
		return printJSON(c.app.Stdout, res)
	}
	fmt.Fprintf(c.app.Stdout, "subscription %s: events go to %s\n", res.GetSubscription().GetId(), res.GetSubscription().GetUrl())
	return nil
}

func cmdDeliveries(ctx context.Context, c *call) error {
	sub := c.flags.String("subscription", "", "only this subscription's deliveries")
	limit := c.flags.Int("limit", 50, "how many deliveries")
	if err := c.parse(0, 0); err != nil {
		return err
	}
	res, err := c.notify().ListDeliveries(ctx, &notifyv1.ListDeliveriesRequest{SubscriptionId: *sub, Limit: int32(*limit)})
	if err != nil {
		return err
	}
	if c.json() {
		return printJSON(c.app.Stdout, res)
	}
	tw := table(c.app.Stdout)
	fmt.Fprintln(tw, "DELIVERY\tEVENT\tSTATUS\tATTEMPTS\tLAST\tCREATED")
	for _, d := range res.GetDeliveries() {
		last := "-"
		if n := len(d.GetAttempts()); n > 0 {
			a := d.GetAttempts()[n-1]
			last = fmt.Sprintf("%d %s", a.GetHttpStatus(), a.GetError())
		}
		if d.GetStatus() == notifyv1.DeliveryStatus_DELIVERY_STATUS_DEAD && d.GetLastError() != "" {
			last = d.GetLastError()
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\n", d.GetId(), d.GetEventType(),
			enumWord(d.GetStatus().String(), "DELIVERY_STATUS_"), len(d.GetAttempts()), truncate(last, 60), ago(d.GetCreateTime().AsTime()))
	}
	return tw.Flush()
}

func cmdEvents(ctx context.Context, c *call) error {
	filter := c.flags.String("filter", "", "NATS subject filter, e.g. sluice.build.> (default: everything)")
	if err := c.parse(0, 0); err != nil {
		return err
	}
	stream, err := c.notify().WatchEvents(ctx, &notifyv1.WatchEventsRequest{Filter: *filter})
	if err != nil {
		return err
	}
	defer stream.Close()
	for stream.Receive() {
		ev := stream.Msg().GetEvent()
		if c.json() {
			if err := printJSON(c.app.Stdout, ev); err != nil {
				return err
			}
			continue
		}
		fmt.Fprintf(c.app.Stdout, "%s  %-34s %-48s %s\n", ev.GetTime().AsTime().Local().Format("15:04:05.000"), ev.GetNatsSubject(), ev.GetType(), ev.GetSubject())
	}
	if err := stream.Err(); err != nil && !errors.Is(err, context.Canceled) && ctx.Err() == nil {
		return err
	}
	return nil
}
