package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	sourcev1 "github.com/sluicehq/sluice/proto/gen/sluice/source/v1"
)

// The credential of repo add comes from files, never from a flag's value,
// and is sent in the create request; a half-given one is a usage error.
func TestRepoAddSendsTheCredentialFromFiles(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write := func(name, content string) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	token := write("token", "tok-cli-canary-1\n")
	key := write("key", "-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n-----END OPENSSH PRIVATE KEY-----\n")
	hosts := write("known_hosts", "git.example ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl\n")
	big := write("big", strings.Repeat("x", maxGitToken+1))

	f := startFake(t, true)
	r := run(t, f.env(), "repo", "add", "https://git.example/x.git", "--git-token-file", token, "--git-username", "oauth2")
	if r.code != 0 || strings.Contains(r.stdout+r.stderr, "tok-cli-canary-1") {
		t.Fatalf("exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	r = run(t, f.env(), "repo", "add", "git@git.example:y.git", "--ssh-key-file", key, "--known-hosts-file", hosts)
	if r.code != 0 {
		t.Fatalf("exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	if len(f.source.added) != 2 {
		t.Fatalf("%d repositories added, want 2", len(f.source.added))
	}
	if tok := f.source.added[0].GetGitCredential().GetHttpsToken(); tok.GetToken() != "tok-cli-canary-1" || tok.GetUsername() != "oauth2" {
		t.Errorf("token sent: %v (the file's trailing newline is not part of it)", tok)
	}
	if k := f.source.added[1].GetGitCredential().GetSshKey(); !strings.HasSuffix(k.GetPrivateKey(), "KEY-----\n") || !strings.HasPrefix(k.GetKnownHosts(), "git.example ssh-ed25519") {
		t.Errorf("key sent: %v (taken exactly as the files hold it)", k)
	}

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--ssh-key-file", key}, "--ssh-key-file needs --known-hosts-file"},
		{[]string{"--git-token-file", token, "--ssh-key-file", key, "--known-hosts-file", hosts}, "give one of them"},
		{[]string{"--git-username", "bob"}, "--git-username goes with --git-token-file"},
		{[]string{"--git-token-file", big}, "more than 4096 bytes"},
		{[]string{"--ssh-key-file", "-", "--known-hosts-file", "-"}, "only one of"},
	} {
		r := run(t, f.env(), append([]string{"repo", "add", "https://git.example/z.git"}, tc.args...)...)
		if r.code != 2 || !strings.Contains(r.stderr, tc.want) {
			t.Errorf("repo add %v: exit %d, stderr %q; want 2 and %q", tc.args, r.code, r.stderr, tc.want)
		}
	}
	if len(f.source.added) != 2 {
		t.Errorf("a refused command sent a request: %d added", len(f.source.added))
	}
}

// --forge names the repository's forge, its token comes from a file, and
// the webhook line names the forge's path.
func TestRepoAddOnAForge(t *testing.T) {
	t.Parallel()
	token := filepath.Join(t.TempDir(), "forge-token")
	if err := os.WriteFile(token, []byte("gitea-cli-canary-2\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	f := startFake(t, true)
	r := run(t, f.env(), "repo", "add", "https://git.example/acme/x.git", "--forge", "forgejo", "--forge-project", "acme/x", "--forge-token-file", token)
	if r.code != 0 || strings.Contains(r.stdout+r.stderr, "gitea-cli-canary-2") {
		t.Fatalf("exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	added := f.source.added[0]
	if added.GetForge().GetKind().String() != "FORGE_KIND_GITEA" || added.GetForge().GetProject() != "acme/x" || added.GetForgeToken() != "gitea-cli-canary-2" {
		t.Errorf("sent forge %v, token %q", added.GetForge(), added.GetForgeToken())
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--forge", "bitbucket"}, "not github, gitea, forgejo or gitlab"},
		{[]string{"--forge-token-file", token}, "need --forge"},
	} {
		r := run(t, f.env(), append([]string{"repo", "add", "https://git.example/z.git"}, tc.args...)...)
		if r.code != 2 || !strings.Contains(r.stderr, tc.want) {
			t.Errorf("repo add %v: exit %d, stderr %q; want 2 and %q", tc.args, r.code, r.stderr, tc.want)
		}
	}
}

func TestWebhookForge(t *testing.T) {
	t.Parallel()
	for want, f := range map[string]*sourcev1.Forge{
		"github": nil,
		"gitea":  {Kind: sourcev1.ForgeKind_FORGE_KIND_GITEA},
		"gitlab": {Kind: sourcev1.ForgeKind_FORGE_KIND_GITLAB},
	} {
		if got := webhookForge(f); got != want {
			t.Errorf("webhookForge(%v) = %q, want %q", f, got, want)
		}
	}
}

func TestRunsOfAPullRequestNeedItsRepository(t *testing.T) {
	t.Parallel()
	f := startFake(t, true)
	r := run(t, f.env(), "runs", "--pr", "3")
	if r.code != 2 || !strings.Contains(r.stderr, "--pr needs the repository") {
		t.Errorf("runs --pr without a repository: exit %d, stderr %q", r.code, r.stderr)
	}
}
