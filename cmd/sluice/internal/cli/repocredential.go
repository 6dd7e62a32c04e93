package cli

import (
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	sourcev1 "github.com/sluicehq/sluice/proto/gen/sluice/source/v1"
)

// gitCredentialFlags are the flags of `repo add` that give a private
// repository's credential: values from files (or "-" for standard input),
// never from a flag's value.
type gitCredentialFlags struct {
	tokenFile, username, keyFile, knownHostsFile string
}

// The most each credential file may hold (the request's limits).
const (
	maxGitToken      = 4096
	maxSSHKey        = 16 << 10
	maxKnownHostsLen = 64 << 10
)

func (f *gitCredentialFlags) add(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.tokenFile, "git-token-file", "", `file holding an HTTPS token for a private repository ("-": stdin)`)
	cmd.Flags().StringVar(&f.username, "git-username", "", "user name sent with the token (default: x-access-token)")
	cmd.Flags().StringVar(&f.keyFile, "ssh-key-file", "", `file holding an SSH deploy key (private, no passphrase; "-": stdin)`)
	cmd.Flags().StringVar(&f.knownHostsFile, "known-hosts-file", "", "known_hosts lines of the SSH server (ssh-keyscan HOST), required with --ssh-key-file")
	withFields(cmd,
		"git_credential.https_token.token", "--git-token-file", "git_credential.https_token.username", "--git-username",
		"git_credential.ssh_key.private_key", "--ssh-key-file", "git_credential.ssh_key.known_hosts", "--known-hosts-file")
}

// credential reads the credential the flags name; nil when they name none.
func (f *gitCredentialFlags) credential(s *session, cmd *cobra.Command) (*sourcev1.GitCredential, error) {
	switch {
	case f.tokenFile != "" && (f.keyFile != "" || f.knownHostsFile != ""):
		return nil, usagef(cmd, "--git-token-file is for an https:// URL, --ssh-key-file for an ssh one: give one of them")
	case f.username != "" && f.tokenFile == "":
		return nil, usagef(cmd, "--git-username goes with --git-token-file")
	case (f.keyFile == "") != (f.knownHostsFile == ""):
		return nil, usagef(cmd, "--ssh-key-file needs --known-hosts-file (the server's host keys: ssh-keyscan HOST, checked against the forge's published keys), and the other way round")
	case f.tokenFile != "":
		token, err := readCredentialFile(s, cmd, f.tokenFile, "--git-token-file", maxGitToken, "Token: ")
		if err != nil {
			return nil, err
		}
		return &sourcev1.GitCredential{Kind: &sourcev1.GitCredential_HttpsToken{HttpsToken: &sourcev1.HTTPSToken{
			Token: strings.TrimSpace(token), Username: f.username,
		}}}, nil
	case f.keyFile != "":
		if f.keyFile == "-" && f.knownHostsFile == "-" {
			return nil, usagef(cmd, "only one of --ssh-key-file and --known-hosts-file can be read from stdin")
		}
		key, err := readCredentialFile(s, cmd, f.keyFile, "--ssh-key-file", maxSSHKey, "SSH private key (end with Ctrl-D): ")
		if err != nil {
			return nil, err
		}
		hosts, err := readCredentialFile(s, cmd, f.knownHostsFile, "--known-hosts-file", maxKnownHostsLen, "known_hosts lines (end with Ctrl-D): ")
		if err != nil {
			return nil, err
		}
		return &sourcev1.GitCredential{Kind: &sourcev1.GitCredential_SshKey{SshKey: &sourcev1.SSHKey{PrivateKey: key, KnownHosts: hosts}}}, nil
	}
	return nil, nil
}

// readCredentialFile reads file ("-": standard input), refusing more than
// limit bytes.
func readCredentialFile(s *session, cmd *cobra.Command, file, flag string, limit int, prompt string) (string, error) {
	if file == "-" {
		file = ""
	}
	in, done, err := s.input(cmd, file, prompt)
	if err != nil {
		return "", fmt.Errorf("%s: %w", flag, err)
	}
	defer done()
	b, err := io.ReadAll(io.LimitReader(in, int64(limit)+1))
	if err != nil {
		return "", fmt.Errorf("%s: %w", flag, err)
	}
	if len(b) > limit {
		return "", usagef(cmd, "%s: more than %d bytes", flag, limit)
	}
	return string(b), nil
}

// forgeFlags are the flags of `repo add` that say which forge the
// repository lives on, and give its API token (from a file, never a flag's
// value).
type forgeFlags struct {
	kind, url, project, tokenFile string
}

func (f *forgeFlags) add(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.kind, "forge", "", "the forge the repository lives on: github, gitea (forgejo) or gitlab")
	cmd.Flags().StringVar(&f.url, "forge-url", "", "the forge's address, e.g. https://git.example.com (default: from the repository's URL)")
	cmd.Flags().StringVar(&f.project, "forge-project", "", "owner/name on the forge, group/.../name on GitLab (default: from the repository's URL)")
	cmd.Flags().StringVar(&f.tokenFile, "forge-token-file", "", `file holding the token Sluice calls the forge's API with ("-": stdin)`)
	withFields(cmd, "forge.kind", "--forge", "forge.url", "--forge-url", "forge.project", "--forge-project", "forge_token", "--forge-token-file")
}

// forge reads what the flags say; nil and "" when they name no forge.
func (f *forgeFlags) forge(s *session, cmd *cobra.Command) (*sourcev1.Forge, string, error) {
	if f.kind == "" {
		if f.url != "" || f.project != "" || f.tokenFile != "" {
			return nil, "", usagef(cmd, "--forge-url, --forge-project and --forge-token-file need --forge")
		}
		return nil, "", nil
	}
	kind, ok := sourcev1.ForgeKind_value["FORGE_KIND_"+strings.ToUpper(f.kind)]
	if strings.EqualFold(f.kind, "forgejo") {
		kind, ok = int32(sourcev1.ForgeKind_FORGE_KIND_GITEA), true
	}
	if !ok || kind == 0 {
		return nil, "", usagef(cmd, "--forge: %q is not github, gitea, forgejo or gitlab", f.kind)
	}
	place := &sourcev1.Forge{Kind: sourcev1.ForgeKind(kind), Url: f.url, Project: f.project}
	if f.tokenFile == "" {
		return place, "", nil
	}
	token, err := readCredentialFile(s, cmd, f.tokenFile, "--forge-token-file", maxGitToken, "Forge token: ")
	return place, strings.TrimSpace(token), err
}

// webhookForge is the forge part of a repository's webhook path: its
// forge's, or github (the GitHub-style webhooks of a repository without one).
func webhookForge(f *sourcev1.Forge) string {
	name := strings.ToLower(strings.TrimPrefix(f.GetKind().String(), "FORGE_KIND_"))
	if f.GetKind() == sourcev1.ForgeKind_FORGE_KIND_UNSPECIFIED {
		return "github"
	}
	return name
}
