package cli

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/sluicehq/sluice/platform/prototime"
	auditv1 "github.com/sluicehq/sluice/proto/gen/sluice/audit/v1"
	sourcev1 "github.com/sluicehq/sluice/proto/gen/sluice/source/v1"
	"github.com/sluicehq/sluice/proto/gen/sluice/source/v1/sourcev1connect"
)

// maxAuditLimit bounds what `sluice audit --limit` reads: ten full pages.
const maxAuditLimit = 10000

func (s *session) audit() sourcev1connect.AuditServiceClient {
	return sourcev1connect.NewAuditServiceClient(s.http, s.serviceURL("source"))
}

func (s *session) auditCmd() *cobra.Command {
	var repo, actor, action, since, until string
	var limit int
	cmd := &cobra.Command{
		Use:   "audit [--repo REPO] [--actor TOKEN-OR-NAME] [--action ACTION] [--since 24h] [--limit N]",
		Short: "Show the audit log: who changed what, and who was refused (admins)",
		Long: `Every call that changes something, in any service, is in the audit log,
newest first: registering a repository, triggering a run, rolling back,
subscribing and unsubscribing, making and revoking tokens, setting and
removing secrets (their names, never their values). Refused attempts are
in it too, with the code they got (permission_denied, unauthenticated).

An actor is a token (its id and name, never its secret) or a Sluice
service. --action takes an action (run.trigger) or every action under a
prefix ending in a dot (secret.). --since and --until take a duration
back from now (24h, 7d) or a time (2026-01-02T15:04:05Z).`,
		Example: `  $ sluice audit
  $ sluice audit --repo hello --since 24h
  $ sluice audit --action secret. --actor ci
  $ sluice audit --limit 500 --output json`,
		Args: needArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if limit < 1 || limit > maxAuditLimit {
				return usagef(cmd, "--limit must be 1 to %d", maxAuditLimit)
			}
			req := &sourcev1.ListAuditEntriesRequest{Repository: repo, Actor: actor, Action: action}
			var err error
			if req.Since, err = pointInTime(since); err != nil {
				return usagef(cmd, "--since: %s", err.Error())
			}
			if req.Until, err = pointInTime(until); err != nil {
				return usagef(cmd, "--until: %s", err.Error())
			}
			entries, err := readPages(limit, func(size int32, token string) ([]*auditv1.AuditEntry, string, error) {
				req.PageSize, req.PageToken = size, token
				r, err := s.audit().ListAuditEntries(cmd.Context(), req)
				return r.GetEntries(), r.GetNextPageToken(), err
			})
			if err != nil {
				return err
			}
			res := &sourcev1.ListAuditEntriesResponse{Entries: entries}
			return s.render(res, nil, func() error {
				t := &table{}
				t.add("TIME", "ACTOR", "ROLE", "ACTION", "REPOSITORY", "TARGET", "OUTCOME")
				for _, e := range res.GetEntries() {
					who := e.GetActorName()
					if e.GetActorId() != "" {
						who = fmt.Sprintf("%s (%s)", e.GetActorId(), e.GetActorName())
					}
					if e.GetActorKind() != "user" {
						who = e.GetActorKind() + " " + who
					}
					t.add(prototime.Time(e.GetTime()).Local().Format(time.DateTime), sanitizeLine(who), firstNonEmpty(e.GetActorRole(), "-"),
						sanitizeLine(e.GetAction()), sanitizeLine(firstNonEmpty(e.GetRepository(), "-")),
						truncate(sanitizeLine(firstNonEmpty(e.GetTarget(), "-")), 60), sanitizeLine(e.GetOutcome()))
				}
				return t.write(s.app.Stdout)
			})
		},
	}
	cmd.Flags().StringVar(&repo, "repo", "", "only this repository's entries")
	cmd.Flags().StringVar(&actor, "actor", "", "only this token's (its id or name) or service's entries")
	cmd.Flags().StringVar(&action, "action", "", "only this action (run.trigger), or the actions under a prefix ending in a dot (secret.)")
	cmd.Flags().StringVar(&since, "since", "", "only entries from this long ago (24h, 7d) or this time (RFC 3339) on")
	cmd.Flags().StringVar(&until, "until", "", "only entries before this long ago (1h) or this time (RFC 3339)")
	cmd.Flags().IntVar(&limit, "limit", 50, fmt.Sprintf("how many entries, newest first (at most %d)", maxAuditLimit))
	_ = cmd.RegisterFlagCompletionFunc("repo", s.completeRepos)
	return withFields(cmd, "repository", "--repo", "actor", "--actor", "action", "--action", "since", "--since", "until", "--until",
		"page_size", "--limit")
}

// pointInTime reads a time back from now (24h, 7d) or an RFC 3339 time;
// "" is none.
func pointInTime(v string) (*timestamppb.Timestamp, error) {
	if v == "" {
		return nil, nil
	}
	if t, err := time.Parse(time.RFC3339, v); err == nil {
		return timestamppb.New(t), nil
	}
	d, err := parseExpiry(v)
	if err != nil {
		return nil, fmt.Errorf("%q is neither a duration like 24h or 7d nor a time like 2026-01-02T15:04:05Z", v)
	}
	return timestamppb.New(time.Now().Add(-d)), nil
}
