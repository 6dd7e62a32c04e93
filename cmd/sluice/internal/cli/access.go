package cli

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/sluicehq/sluice/cmd/sluice/internal/credentials"
	"github.com/sluicehq/sluice/platform/auth"
	"github.com/sluicehq/sluice/platform/prototime"
	sourcev1 "github.com/sluicehq/sluice/proto/gen/sluice/source/v1"
	"github.com/sluicehq/sluice/proto/gen/sluice/source/v1/sourcev1connect"
)

// secret is the token the CLI sends: $SLUICE_TOKEN, else the one saved for
// --server by `sluice login` (or `sluice up`).
func (s *session) secret() string {
	if t := strings.TrimSpace(s.app.Getenv("SLUICE_TOKEN")); t != "" {
		return t
	}
	path, err := credentials.Path(s.app.Getenv)
	if err != nil {
		return ""
	}
	t, err := credentials.Token(path, s.server)
	if err != nil {
		fmt.Fprintf(s.app.Stderr, "sluice: reading credentials: %s\n", sanitizeLine(err.Error()))
		return ""
	}
	return t
}

func (s *session) access() sourcev1connect.AccessServiceClient {
	return sourcev1connect.NewAccessServiceClient(s.http, s.serviceURL("source"))
}

func (s *session) tokenCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "token",
		Short: "Create, list and revoke API tokens (admins)",
		Long: `API tokens are how people and CI jobs call Sluice. A token has a role
(viewer reads; operator also triggers, cancels, rolls back and subscribes;
admin also manages repositories, tokens and secrets) and may be limited to
some repositories. Sluice keeps only a token's hash: its secret is shown
once, when it is made.`,
		Example: `  $ sluice token create --name ci --role operator --repo my-service --expires 90d
  $ sluice token ls
  $ sluice token revoke <token-id>`,
		Args: cobra.ArbitraryArgs,
		RunE: groupRun,
	}
	cmd.AddCommand(s.tokenCreateCmd(), s.tokenListCmd(), s.tokenRevokeCmd())
	return cmd
}

func (s *session) tokenCreateCmd() *cobra.Command {
	var name, role, expires string
	var repos []string
	cmd := &cobra.Command{
		Use:   "create --name NAME --role viewer|operator|admin [--repo REPO ...] [--expires 90d]",
		Short: "Make a token and print its secret once",
		Example: `  $ sluice token create --name alice --role admin
  $ sluice token create --name ci --role operator --repo my-service --expires 90d`,
		Args: needArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if name == "" {
				return usagef(cmd, "missing --name (who or what the token is for)")
			}
			r, err := auth.ParseRole(role)
			if err != nil {
				return usagef(cmd, "--role: %s", err.Error())
			}
			req := &sourcev1.CreateTokenRequest{Name: name, Role: r, Repositories: repos}
			if expires != "" {
				d, err := parseExpiry(expires)
				if err != nil {
					return usagef(cmd, "--expires: %s", err.Error())
				}
				req.ExpiresIn = durationpb.New(d)
			}
			res, err := s.access().CreateToken(cmd.Context(), req)
			return s.render(res, err, func() error {
				t := res.GetToken()
				fmt.Fprintf(s.app.Stdout, "token %s (%s, %s%s)\n", t.GetId(), sanitizeLine(t.GetName()), auth.RoleName(t.GetRole()), reposSuffix(t.GetRepositories()))
				fmt.Fprintln(s.app.Stdout, res.GetSecret())
				fmt.Fprintln(s.app.Stderr, "Keep the token now: Sluice shows it only this once.")
				return nil
			})
		},
	}
	cmd.Flags().StringVar(&name, "name", "", "who or what the token is for")
	cmd.Flags().StringVar(&role, "role", "viewer", "viewer, operator or admin")
	cmd.Flags().StringArrayVar(&repos, "repo", nil, "limit the token to this repository (repeat for more)")
	cmd.Flags().StringVar(&expires, "expires", "", "how long it is valid: 90d, 12h, 30m (default: it does not expire)")
	return withFields(cmd, "name", "--name", "role", "--role", "repositories", "--repo", "expires_in", "--expires")
}

func reposSuffix(repos []string) string {
	if len(repos) == 0 {
		return ""
	}
	clean := make([]string, len(repos))
	for i, r := range repos {
		clean[i] = sanitizeLine(r)
	}
	return ", repositories " + strings.Join(clean, ", ")
}

// parseExpiry reads a duration with a days unit besides Go's: 90d, 36h.
func parseExpiry(v string) (time.Duration, error) {
	if days, ok := strings.CutSuffix(v, "d"); ok {
		n, err := strconv.Atoi(days)
		if err != nil || n <= 0 {
			return 0, fmt.Errorf("%q is not a number of days", v)
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("%q is not a duration like 90d, 12h or 30m", v)
	}
	return d, nil
}

func (s *session) tokenListCmd() *cobra.Command {
	var all bool
	cmd := &cobra.Command{
		Use:     "ls",
		Aliases: []string{"list"},
		Short:   "List tokens (never their secrets)",
		Example: `  $ sluice token ls
  $ sluice token ls --all`,
		Args: needArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			res := &sourcev1.ListTokensResponse{}
			page := ""
			for {
				r, err := s.access().ListTokens(cmd.Context(), &sourcev1.ListTokensRequest{IncludeRevoked: all, PageToken: page})
				if err != nil {
					return err
				}
				res.Tokens = append(res.Tokens, r.GetTokens()...)
				if page = r.GetNextPageToken(); page == "" {
					break
				}
			}
			return s.render(res, nil, func() error {
				t := &table{}
				t.add("ID", "NAME", "ROLE", "REPOSITORIES", "CREATED", "EXPIRES", "STATE")
				for _, tok := range res.GetTokens() {
					repos := "all"
					if len(tok.GetRepositories()) > 0 {
						repos = strings.TrimPrefix(reposSuffix(tok.GetRepositories()), ", repositories ")
					}
					expires := "never"
					if tok.GetExpiresAt() != nil {
						expires = prototime.Time(tok.GetExpiresAt()).UTC().Format(time.DateOnly)
					}
					state := "active"
					switch {
					case tok.GetRevokedAt() != nil:
						state = "revoked"
					case tok.GetExpiresAt() != nil && time.Now().After(prototime.Time(tok.GetExpiresAt())):
						state = "expired"
					}
					t.add(tok.GetId(), sanitizeLine(tok.GetName()), auth.RoleName(tok.GetRole()), repos, ago(prototime.Time(tok.GetCreatedAt())), expires, state)
				}
				return t.write(s.app.Stdout)
			})
		},
	}
	cmd.Flags().BoolVar(&all, "all", false, "include revoked tokens")
	return cmd
}

func (s *session) tokenRevokeCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "revoke <token-id>",
		Short:   "Revoke a token; every service refuses it within seconds",
		Example: `  $ sluice token revoke 3xq7k2m9a4b6c8d1`,
		Args:    needArgs("<token-id>"),
		RunE: func(cmd *cobra.Command, args []string) error {
			res, err := s.access().RevokeToken(cmd.Context(), &sourcev1.RevokeTokenRequest{Id: args[0]})
			return s.render(res, err, func() error {
				fmt.Fprintf(s.app.Stdout, "token %s (%s) revoked\n", res.GetToken().GetId(), sanitizeLine(res.GetToken().GetName()))
				return nil
			})
		},
	}
	return withFields(cmd, "id", "<token-id>")
}

// input is what a command reads a secret from: file when set, else
// standard input, with prompt when that is a terminal. Secrets never come
// from flags or arguments, which shell history and ps keep. done closes
// the file.
func (s *session) input(cmd *cobra.Command, file, prompt string) (in io.Reader, done func(), err error) {
	if file != "" {
		f, err := os.Open(file)
		if err != nil {
			return nil, nil, err
		}
		return f, func() { _ = f.Close() }, nil
	}
	in = cmd.InOrStdin()
	if f, ok := in.(*os.File); ok && s.app.IsTerminal(f) {
		fmt.Fprint(s.app.Stderr, prompt)
	}
	return in, func() {}, nil
}

// maxTokenInput bounds what login reads.
const maxTokenInput = 4096

func (s *session) loginCmd() *cobra.Command {
	var tokenFile string
	cmd := &cobra.Command{
		Use:   "login [--token-file FILE]",
		Short: "Save a token for --server (read from stdin or a file)",
		Long: `Check a token against the platform and save it for --server in the
credentials file (` + "`$XDG_CONFIG_HOME/sluice/credentials.json`" + `, mode 0600). The token is
read from standard input or --token-file, never from a flag. $SLUICE_TOKEN,
when set, wins over a saved token.`,
		Example: `  $ sluice login < token.txt
  $ sluice login --server https://sluice.example.com --token-file ~/sluice-token`,
		Args: needArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			in, done, err := s.input(cmd, tokenFile, "Token: ")
			if err != nil {
				return err
			}
			defer done()
			line, err := bufio.NewReaderSize(io.LimitReader(in, maxTokenInput), maxTokenInput).ReadString('\n')
			if err != nil && !errors.Is(err, io.EOF) {
				return err
			}
			secret := strings.TrimSpace(line)
			if err := auth.CheckSecret(secret); err != nil {
				return err
			}
			client := sourcev1connect.NewAccessServiceClient(s.clientWith(secret), s.serviceURL("source"))
			me, err := client.WhoAmI(cmd.Context(), &sourcev1.WhoAmIRequest{})
			if err != nil {
				return err
			}
			path, err := credentials.Path(s.app.Getenv)
			if err != nil {
				return err
			}
			if err := credentials.Save(path, s.server, secret); err != nil {
				return fmt.Errorf("save the token: %w", err)
			}
			fmt.Fprintf(s.app.Stdout, "logged in to %s as %s (saved in %s)\n", sanitizeLine(s.server), describeIdentity(me), path)
			return nil
		},
	}
	cmd.Flags().StringVar(&tokenFile, "token-file", "", "read the token from this file instead of stdin")
	return cmd
}

func (s *session) logoutCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "logout",
		Short:   "Forget the token saved for --server",
		Example: `  $ sluice logout`,
		Args:    needArgs(),
		RunE: func(*cobra.Command, []string) error {
			path, err := credentials.Path(s.app.Getenv)
			if err != nil {
				return err
			}
			if err := credentials.Save(path, s.server, ""); err != nil {
				return err
			}
			fmt.Fprintf(s.app.Stdout, "logged out of %s\n", sanitizeLine(s.server))
			return nil
		},
	}
}

func (s *session) whoamiCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "whoami",
		Short:   "Show which token the CLI calls with",
		Example: `  $ sluice whoami`,
		Args:    needArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			res, err := s.access().WhoAmI(cmd.Context(), &sourcev1.WhoAmIRequest{})
			return s.render(res, err, func() error {
				fmt.Fprintln(s.app.Stdout, describeIdentity(res))
				return nil
			})
		},
	}
}

func describeIdentity(me *sourcev1.WhoAmIResponse) string {
	if me.GetKind() == string(auth.KindService) {
		return "service " + sanitizeLine(me.GetName())
	}
	out := fmt.Sprintf("token %s (%s), %s%s", me.GetTokenId(), sanitizeLine(me.GetName()), auth.RoleName(me.GetRole()), reposSuffix(me.GetRepositories()))
	if me.GetExpiresAt() != nil {
		out += ", expires " + prototime.Time(me.GetExpiresAt()).UTC().Format(time.RFC3339)
	}
	return out
}
