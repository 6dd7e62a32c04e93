package cli

import (
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/sluicehq/sluice/platform/keyring"
	"github.com/sluicehq/sluice/platform/prototime"
	sourcev1 "github.com/sluicehq/sluice/proto/gen/sluice/source/v1"
	"github.com/sluicehq/sluice/proto/gen/sluice/source/v1/sourcev1connect"
)

// maxSecretInput bounds what secret set reads: one byte more than a value
// may have, so a longer one is refused rather than cut.
const maxSecretInput = 64<<10 + 1

func (s *session) secrets() sourcev1connect.SecretServiceClient {
	return sourcev1connect.NewSecretServiceClient(s.http, s.serviceURL("source"))
}

func (s *session) secretCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "secret",
		Short: "Set, list and remove the secrets steps ask for (admins)",
		Long: `A step asks for a secret by name in .sluice.yaml:

  env:
    TOKEN: {secret: REGISTRY_TOKEN}

Secrets belong to a repository, or to the whole platform (--platform); a
repository's secret hides a platform-wide one of the same name. Sluice stores
values encrypted, never shows them again, and masks them in step logs.`,
		Example: `  $ sluice secret set my-service REGISTRY_TOKEN < token.txt
  $ sluice secret set --platform SLACK_WEBHOOK --from-file hook.txt
  $ sluice secret ls my-service
  $ sluice secret rm my-service REGISTRY_TOKEN
  $ sluice secret keygen > secret-key`,
		Args: cobra.ArbitraryArgs,
		RunE: groupRun,
	}
	cmd.AddCommand(s.secretSetCmd(), s.secretListCmd(), s.secretRemoveCmd(), s.secretKeygenCmd())
	return cmd
}

// secretScope reads "<repo> NAME" or, with --platform, "NAME".
func secretScope(cmd *cobra.Command, platform bool, args []string, withName bool) (repo, name string, err error) {
	want := 0
	if !platform {
		want++
	}
	if withName {
		want++
	}
	if len(args) != want {
		switch {
		case platform && withName:
			return "", "", usagef(cmd, "with --platform, give only the secret's NAME")
		case platform:
			return "", "", usagef(cmd, "with --platform, give no repository")
		case withName:
			return "", "", usagef(cmd, "give the repository and the secret's NAME (or --platform NAME)")
		default:
			return "", "", usagef(cmd, "give the repository (or --platform)")
		}
	}
	if !platform {
		repo, args = args[0], args[1:]
	}
	if withName {
		name = args[0]
	}
	return repo, name, nil
}

func (s *session) secretSetCmd() *cobra.Command {
	var platform bool
	var fromFile string
	cmd := &cobra.Command{
		Use:   "set (<repo> | --platform) NAME [--from-file FILE]",
		Short: "Create or replace a secret; the value comes from stdin or a file",
		Long: `Create or replace a secret. The value is read from standard input or
--from-file, never from a flag or an argument (which shell history and ps
keep). From standard input one trailing newline is dropped; a file is taken
exactly as it is. A value has 4 to 65536 bytes.`,
		Example: `  $ sluice secret set my-service REGISTRY_TOKEN < token.txt
  $ printf %s "$TOKEN" | sluice secret set my-service REGISTRY_TOKEN
  $ sluice secret set --platform DEPLOY_KEY --from-file id_ed25519`,
		Args: cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			repo, name, err := secretScope(cmd, platform, args, true)
			if err != nil {
				return err
			}
			in, done, err := s.input(cmd, fromFile, "Value (end with Ctrl-D): ")
			if err != nil {
				return err
			}
			defer done()
			b, err := io.ReadAll(io.LimitReader(in, maxSecretInput))
			if err != nil {
				return fmt.Errorf("read the value: %w", err)
			}
			value := string(b)
			if fromFile == "" {
				// What echo or a terminal adds; a file is taken exactly
				// (an SSH key needs its last newline).
				value = strings.TrimSuffix(value, "\n")
				value = strings.TrimSuffix(value, "\r")
			}
			res, err := s.secrets().SetSecret(cmd.Context(), &sourcev1.SetSecretRequest{Repository: repo, Name: name, Value: value})
			return s.render(res, err, func() error {
				fmt.Fprintf(s.app.Stdout, "secret %s set for %s\n", sanitizeLine(res.GetSecret().GetName()), scopeLabel(repo))
				return nil
			})
		},
	}
	cmd.Flags().BoolVar(&platform, "platform", false, "a platform-wide secret, for every repository")
	cmd.Flags().StringVar(&fromFile, "from-file", "", "read the value from this file instead of stdin")
	return withFields(cmd, "repository", "<repo>", "name", "NAME", "value", "the value")
}

func scopeLabel(repo string) string {
	if repo == "" {
		return "the platform"
	}
	return "repository " + sanitizeLine(repo)
}

func (s *session) secretListCmd() *cobra.Command {
	var platform bool
	cmd := &cobra.Command{
		Use:     "ls (<repo> | --platform)",
		Aliases: []string{"list"},
		Short:   "List secrets: names and dates, never values",
		Example: `  $ sluice secret ls my-service
  $ sluice secret ls --platform`,
		Args: cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			repo, _, err := secretScope(cmd, platform, args, false)
			if err != nil {
				return err
			}
			res, err := s.secrets().ListSecrets(cmd.Context(), &sourcev1.ListSecretsRequest{Repository: repo})
			return s.render(res, err, func() error {
				t := &table{}
				t.add("NAME", "UPDATED", "BY", "CREATED")
				for _, sec := range res.GetSecrets() {
					t.add(sanitizeLine(sec.GetName()), ago(prototime.Time(sec.GetUpdatedAt())), sanitizeLine(sec.GetUpdatedBy()), ago(prototime.Time(sec.GetCreatedAt())))
				}
				return t.write(s.app.Stdout)
			})
		},
	}
	cmd.Flags().BoolVar(&platform, "platform", false, "list the platform-wide secrets")
	return withFields(cmd, "repository", "<repo>")
}

func (s *session) secretRemoveCmd() *cobra.Command {
	var platform bool
	cmd := &cobra.Command{
		Use:     "rm (<repo> | --platform) NAME",
		Aliases: []string{"remove"},
		Short:   "Remove a secret; runs that ask for it fail from then on",
		Example: `  $ sluice secret rm my-service REGISTRY_TOKEN`,
		Args:    cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			repo, name, err := secretScope(cmd, platform, args, true)
			if err != nil {
				return err
			}
			res, err := s.secrets().DeleteSecret(cmd.Context(), &sourcev1.DeleteSecretRequest{Repository: repo, Name: name})
			return s.render(res, err, func() error {
				fmt.Fprintf(s.app.Stdout, "secret %s removed from %s\n", sanitizeLine(name), scopeLabel(repo))
				return nil
			})
		},
	}
	cmd.Flags().BoolVar(&platform, "platform", false, "a platform-wide secret")
	return withFields(cmd, "repository", "<repo>", "name", "NAME")
}

func (s *session) secretKeygenCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "keygen",
		Short: "Print a new key for the services' secret-key-file (age format)",
		Long: `Print a new age key (post-quantum hybrid) for the secret-key-file of source
and notify, or their $SLUICE_<SERVICE>_SECRET_KEY. To rotate, put the new key
on the first line of the file above the old one, restart the service (it
re-encrypts every secret with the first key and logs how many), then remove
the old key (docs/security.md).`,
		Example: `  $ sluice secret keygen > secret-key && chmod 600 secret-key`,
		Args:    needArgs(),
		RunE: func(_ *cobra.Command, _ []string) error {
			key, err := keyring.Generate()
			if err != nil {
				return err
			}
			fmt.Fprintln(s.app.Stdout, key)
			return nil
		},
	}
}
