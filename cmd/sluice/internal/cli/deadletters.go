package cli

import (
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/sluicehq/sluice/platform/prototime"
	notifyv1 "github.com/sluicehq/sluice/proto/gen/sluice/notify/v1"
)

// maxDeadLetterLimit bounds what `sluice deadletters --limit` reads: ten
// full pages.
const maxDeadLetterLimit = 10000

func (s *session) deadLettersCmd() *cobra.Command {
	var service, consumer string
	var limit int
	var body bool
	cmd := &cobra.Command{
		Use:   "deadletters [--service SERVICE] [--consumer CONSUMER] [--limit N] [--body]",
		Short: "Show the events the services gave up on (admins)",
		Long: `Show the dead letters, oldest first: the events a service's consumer gave
up on (its handler failed on every delivery, refused the event for good, or
panicked on it) and the events NATS refused from a service's outbox
(consumer "outbox"), with the reason. The DEADLETTER stream keeps them
7 days. Each one names the event (its type and id), the run it belongs to,
and where it came from.

--body prints each event's body too, at most 64 KiB of it: a longer one is
cut, and says how much. docs/operations.md says what to do about them.`,
		Example: `  $ sluice deadletters
  $ sluice deadletters --service build --consumer build-runs --body
  $ sluice deadletters --consumer outbox --limit 500 --output json`,
		Args: needArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if limit < 1 || limit > maxDeadLetterLimit {
				return usagef(cmd, "--limit must be 1 to %d", maxDeadLetterLimit)
			}
			req := &notifyv1.ListDeadLettersRequest{Service: service, Consumer: consumer, IncludeBody: body}
			list, err := readPages(limit, func(size int32, token string) ([]*notifyv1.DeadLetter, string, error) {
				req.PageSize, req.PageToken = size, token
				r, err := s.notify().ListDeadLetters(cmd.Context(), req)
				return r.GetDeadLetters(), r.GetNextPageToken(), err
			})
			if err != nil {
				return err
			}
			res := &notifyv1.ListDeadLettersResponse{DeadLetters: list}
			return s.render(res, nil, func() error {
				if body {
					return writeDeadLetters(s.app.Stdout, res.GetDeadLetters())
				}
				t := &table{}
				t.add("SEQ", "TIME", "SERVICE", "CONSUMER", "EVENT", "RUN", "REASON")
				for _, d := range res.GetDeadLetters() {
					t.add(fmt.Sprint(d.GetSequence()), prototime.Time(d.GetTime()).Local().Format(time.DateTime),
						sanitizeLine(d.GetService()), sanitizeLine(d.GetConsumer()),
						truncate(sanitizeLine(firstNonEmpty(d.GetEventType(), d.GetSubject(), "-")), 50),
						sanitizeLine(firstNonEmpty(d.GetRunId(), "-")), truncate(sanitizeLine(firstNonEmpty(d.GetReason(), "-")), 80))
				}
				return t.write(s.app.Stdout)
			})
		},
	}
	cmd.Flags().StringVar(&service, "service", "", "only this service's dead letters (source, build, test, release, notify)")
	cmd.Flags().StringVar(&consumer, "consumer", "", "only this consumer's (build-runs), or the outbox's (outbox)")
	cmd.Flags().IntVar(&limit, "limit", 50, fmt.Sprintf("how many dead letters, oldest first (at most %d)", maxDeadLetterLimit))
	cmd.Flags().BoolVar(&body, "body", false, "print each event's body too (at most 64 KiB of it)")
	_ = cmd.RegisterFlagCompletionFunc("service", cobra.FixedCompletions([]string{"source", "build", "test", "release", "notify"}, cobra.ShellCompDirectiveNoFileComp))
	return withFields(cmd, "service", "--service", "consumer", "--consumer", "page_size", "--limit")
}

// writeDeadLetters prints each dead letter in full, its body indented.
// Everything in one came from an event or a handler's error: sanitized.
func writeDeadLetters(w io.Writer, list []*notifyv1.DeadLetter) error {
	for i, d := range list {
		if i > 0 {
			if _, err := fmt.Fprintln(w); err != nil {
				return err
			}
		}
		from := sanitizeLine(d.GetSubject())
		if d.GetStream() != "" {
			from += " (" + sanitizeLine(d.GetStream()) + ")"
		}
		_, err := fmt.Fprintf(w, "dead letter %d  %s  %s/%s\n  from:   %s\n  event:  %s %s\n  run:    %s\n  reason: %s\n  body:   %d bytes\n    %s\n",
			d.GetSequence(), prototime.Time(d.GetTime()).Local().Format(time.DateTime),
			sanitizeLine(d.GetService()), sanitizeLine(d.GetConsumer()), firstNonEmpty(from, "-"),
			sanitizeLine(firstNonEmpty(d.GetEventType(), "-")), sanitizeLine(d.GetEventId()),
			sanitizeLine(firstNonEmpty(d.GetRunId(), "-")), sanitizeLine(firstNonEmpty(d.GetReason(), "-")),
			d.GetBodySize(), indentLines(Sanitize(d.GetBody()), "    "))
		if err != nil {
			return err
		}
	}
	return nil
}
