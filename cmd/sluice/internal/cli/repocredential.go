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
