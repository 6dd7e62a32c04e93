package cli

import (
	"crypto/tls"
	"errors"
	"fmt"
	"regexp"
	"strings"

	"buf.build/gen/go/bufbuild/protovalidate/protocolbuffers/go/buf/validate"
	"connectrpc.com/connect"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/sluicehq/sluice/platform/tlsconfig"
)

// usageError is a command line mistake: exit code 2, and a pointer to the
// command's help.
type usageError struct {
	cmd *cobra.Command
	msg string
}

func (e *usageError) Error() string { return e.msg }

func usagef(cmd *cobra.Command, format string, args ...any) error {
	return &usageError{cmd: cmd, msg: fmt.Sprintf(format, args...)}
}

// exitError carries a specific exit code (e.g. a followed run that failed)
// and, when msg is set, what to say.
type exitError struct {
	code int
	msg  string
}

func (e *exitError) Error() string { return e.msg }

// unknownCommand is the error for a word that names no subcommand of cmd,
// with the names it may have been a typo of.
func unknownCommand(cmd *cobra.Command, word string) error {
	msg := fmt.Sprintf("unknown command %q", word)
	if cmd.HasParent() {
		msg = fmt.Sprintf("unknown command %q for %q", word, cmd.CommandPath())
	}
	return &usageError{cmd: cmd, msg: msg + didYouMean(cmd.SuggestionsFor(word))}
}

// flagError rewords pflag's errors and suggests a flag for a typo.
func flagError(cmd *cobra.Command, err error) error {
	var notExist *pflag.NotExistError
	if !errors.As(err, &notExist) {
		return &usageError{cmd: cmd, msg: err.Error()}
	}
	typed := notExist.GetSpecifiedName()
	msg := "unknown flag --" + typed
	if short := notExist.GetSpecifiedShortnames(); short != "" {
		// -limit (Go's flag package style) is read as -l -i -m ...: the
		// user meant --limit.
		typed = short
		msg = fmt.Sprintf("unknown flag -%s", short)
		if len(short) > 1 {
			msg = fmt.Sprintf("unknown shorthand flag %q in -%s", notExist.GetSpecifiedName(), short)
		}
	}
	var names []string
	cmd.Flags().VisitAll(func(f *pflag.Flag) {
		near := len(typed) > 2 && (levenshtein(strings.ToLower(typed), f.Name) <= 2 || strings.HasPrefix(f.Name, typed))
		if !f.Hidden && (f.Name == typed || near) {
			names = append(names, "--"+f.Name)
		}
	})
	return &usageError{cmd: cmd, msg: msg + didYouMean(names)}
}

// didYouMean is "; did you mean X?" for suggestions (commands are
// quoted, flags not), empty without any.
func didYouMean(names []string) string {
	if len(names) == 0 {
		return ""
	}
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = n
		if !strings.HasPrefix(n, "-") {
			q[i] = fmt.Sprintf("%q", n)
		}
	}
	if len(q) == 1 {
		return "; did you mean " + q[0] + "?"
	}
	return "; did you mean " + strings.Join(q[:len(q)-1], ", ") + " or " + q[len(q)-1] + "?"
}

// levenshtein is the edit distance between a and b.
func levenshtein(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	prev := make([]int, len(rb)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(ra); i++ {
		cur := make([]int, len(rb)+1)
		cur[0] = i
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev = cur
	}
	return prev[len(rb)]
}

// fieldAnnotation is the prefix of the cobra annotations that map a request
// field (to_version) to what the user typed it as (--to).
const fieldAnnotation = "sluice.field."

// withFields records which flag or argument sets each request field, so
// that errors about a field name what the user typed.
func withFields(cmd *cobra.Command, fieldThenName ...string) *cobra.Command {
	if cmd.Annotations == nil {
		cmd.Annotations = map[string]string{}
	}
	for i := 0; i+1 < len(fieldThenName); i += 2 {
		cmd.Annotations[fieldAnnotation+fieldThenName[i]] = fieldThenName[i+1]
	}
	return cmd
}

// fieldName is what a request field is called on cmd's command line.
func fieldName(cmd *cobra.Command, field string) string {
	if cmd != nil {
		if n, ok := cmd.Annotations[fieldAnnotation+field]; ok {
			return n
		}
	}
	return strings.ReplaceAll(field, "_", " ")
}

// patternHints say in words what a field's pattern rule accepts, so that
// no user reads a regular expression.
func patternHint(field string) string {
	switch field {
	case "to_version", "version":
		return "must be a version such as v1.2.3"
	case "filter":
		return "must be a NATS subject filter under sluice, such as sluice.build.>"
	case "name", "repository":
		return "may hold only letters, digits, '.', '_' and '-'"
	}
	return "is not in a form the server accepts"
}

var (
	// connectCodePrefix matches "failed_precondition: " and the like, which
	// a message relayed from one service through another can carry, once
	// or more.
	connectCodePrefix = regexp.MustCompile(`\b(canceled|unknown|invalid_argument|deadline_exceeded|not_found|already_exists|permission_denied|resource_exhausted|failed_precondition|aborted|out_of_range|unimplemented|internal|unavailable|data_loss|unauthenticated): `)
	// kindSuffix matches the error kinds services append (platform/apierror).
	kindSuffix = regexp.MustCompile(`(: (not found|invalid argument|already exists|failed precondition|unavailable))+$`)
	// regexRule is how protovalidate words a failed pattern rule.
	regexRule = regexp.MustCompile("does not match regex pattern `[^`]*`")
	// textViolation is one violation in protovalidate's text: "field: why".
	textViolation = regexp.MustCompile(`^\s*(?:- )?([a-z][a-z0-9_.\[\]]*): (.*)$`)
	// sentence tells a not-found message that says more than what was not
	// found ("repository "x" has no releases").
	sentence = regexp.MustCompile(`\b(was|were|has|have|is|are|no|never|nothing)\b`)
)

// describe turns an error into what a user should read: no Connect codes,
// no proto field names, no regular expressions, nothing from the server
// that a terminal would act on.
func (s *session) describe(cmd *cobra.Command, err error) string {
	var plain *tlsconfig.PlainHTTPError
	if errors.As(err, &plain) {
		return plain.Error()
	}
	var untrusted *tls.CertificateVerificationError
	if errors.As(err, &untrusted) {
		return fmt.Sprintf("the certificate of the platform at %s is not trusted: %v (give its CA with --ca-file or $SLUICE_CA_FILE)", s.server, untrusted.Err)
	}
	var ce *connect.Error
	if !errors.As(err, &ce) {
		return sanitizeLine(err.Error())
	}
	msg := cleanMessage(ce.Message())
	switch ce.Code() {
	case connect.CodeUnavailable:
		return fmt.Sprintf("cannot reach the platform at %s: %s (is `sluice up` running? --server or $SLUICE_SERVER say where)", s.server, msg)
	case connect.CodeInvalidArgument:
		return describeInvalid(cmd, ce, msg)
	case connect.CodeNotFound:
		return notFound(msg)
	case connect.CodeUnimplemented:
		return "the server does not serve this (is that service running?): " + msg
	case connect.CodeDeadlineExceeded:
		return "the platform took too long to answer: " + msg
	case connect.CodeUnauthenticated:
		if strings.Contains(msg, "sluice login") {
			return msg
		}
		return msg + " (set $SLUICE_TOKEN, or run `sluice login`)"
	case connect.CodePermissionDenied:
		return "not allowed: " + msg + " (`sluice whoami` shows your token; an admin can make one with more rights)"
	}
	return msg
}

// cleanMessage strips from a server's message what a terminal would act
// on, the Connect codes and the error kinds.
func cleanMessage(msg string) string {
	msg = Sanitize(msg)
	msg = connectCodePrefix.ReplaceAllString(msg, "")
	return strings.TrimSpace(kindSuffix.ReplaceAllString(msg, ""))
}

// notFound words a not-found message: `repository "x"` becomes
// `repository "x" not found`; a message that is a sentence stays as it is.
func notFound(msg string) string {
	if sentence.MatchString(msg) || strings.HasSuffix(msg, "not found") {
		return msg
	}
	return msg + " not found"
}

// describeInvalid names the flags whose values the server refused, from
// the violations the validation interceptor attaches (or, without them,
// from its text).
func describeInvalid(cmd *cobra.Command, ce *connect.Error, msg string) string {
	var parts []string
	for _, d := range ce.Details() {
		v, err := d.Value()
		if err != nil {
			continue
		}
		vs, ok := v.(*validate.Violations)
		if !ok {
			continue
		}
		for _, vi := range vs.GetViolations() {
			field := ""
			if els := vi.GetField().GetElements(); len(els) > 0 {
				field = els[0].GetFieldName()
			}
			why := cleanMessage(vi.GetMessage())
			if field == "" {
				// A rule of the whole request (one field's value by
				// another's): its message says which.
				parts = append(parts, why)
				continue
			}
			if strings.HasSuffix(vi.GetRuleId(), ".pattern") || regexRule.MatchString(why) {
				why = patternHint(field)
			}
			parts = append(parts, fieldName(cmd, field)+": "+why)
		}
	}
	if len(parts) > 0 {
		return strings.Join(parts, "; ")
	}
	// The text: "validation error: field: why" or "validation errors:\n - field: why".
	msg = strings.TrimPrefix(strings.TrimPrefix(msg, "validation errors:"), "validation error:")
	for _, line := range strings.Split(msg, "\n") {
		if line = strings.TrimSpace(line); line == "" {
			continue
		}
		if m := textViolation.FindStringSubmatch(line); m != nil {
			field, why := strings.SplitN(m[1], "[", 2)[0], m[2]
			if regexRule.MatchString(why) {
				why = patternHint(field)
			}
			line = fieldName(cmd, field) + ": " + why
		}
		parts = append(parts, regexRule.ReplaceAllString(line, "is not in a form the server accepts"))
	}
	return strings.Join(parts, "; ")
}
