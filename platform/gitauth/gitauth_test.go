package gitauth_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"testing"

	"github.com/go-git/go-git/v5/plumbing/transport"
	githttp "github.com/go-git/go-git/v5/plumbing/transport/http"
	gitssh "github.com/go-git/go-git/v5/plumbing/transport/ssh"
	"github.com/skeema/knownhosts"
	"golang.org/x/crypto/ssh"
	xknownhosts "golang.org/x/crypto/ssh/knownhosts"

	"github.com/sluicehq/sluice/platform/egress"
	"github.com/sluicehq/sluice/platform/gitauth"
	"github.com/sluicehq/sluice/platform/gittest"
	"github.com/sluicehq/sluice/platform/tlsconfig"
)

func TestHTTPSTokenIsBasicAuthWithTheDefaultUsername(t *testing.T) {
	c := gitauth.Credential{Token: "s3cr3t-token"}
	auth, err := c.Auth("https://git.example/org/repo.git")
	if err != nil {
		t.Fatal(err)
	}
	basic, ok := auth.(*githttp.BasicAuth)
	if !ok || basic.Username != gitauth.DefaultUsername || basic.Password != "s3cr3t-token" {
		t.Fatalf("auth = %#v, want basic auth %s:<token>", auth, gitauth.DefaultUsername)
	}
	if strings.Contains(auth.String(), "s3cr3t-token") {
		t.Errorf("auth.String() shows the token: %s", auth.String())
	}
	c.Username = "oauth2"
	auth, _ = c.Auth("http://127.0.0.1:3000/repo")
	if basic, ok := auth.(*githttp.BasicAuth); !ok || basic.Username != "oauth2" {
		t.Errorf("auth = %#v, want basic auth as oauth2", auth)
	}
	if got := c.Values(); got[gitauth.TokenSecret] != "s3cr3t-token" || got[gitauth.UsernameSecret] != "oauth2" || len(got) != 2 {
		t.Errorf("Values() = %v", got)
	}
}

// A token goes over plain http:// only to this machine: to any other host
// anyone on the network path could read it.
func TestATokenIsNeverSentOverPlainHTTPToAnotherHost(t *testing.T) {
	c := gitauth.Credential{Token: "tok-plain-canary"}
	for _, tc := range []struct {
		url     string
		refused bool
	}{
		{"http://git.example/org/repo.git", true},
		{"HTTP://git.example/repo.git", true},
		{"http://10.0.0.7:3000/repo.git", true},
		{"http://localhost.git.example/repo.git", true},
		{"http://[2001:db8::1]/repo.git", true},
		{"https://git.example/org/repo.git", false},
		{"http://127.0.0.1:3000/repo.git", false},
		{"http://localhost/repo.git", false},
		{"http://git.localhost:8080/repo.git", false},
		{"http://[::1]:3000/repo.git", false},
	} {
		auth, err := c.Auth(tc.url)
		if !tc.refused {
			if _, ok := auth.(*githttp.BasicAuth); err != nil || !ok {
				t.Errorf("%s: %#v, %v; want basic auth", tc.url, auth, err)
			}
			continue
		}
		plain := new(*tlsconfig.PlainHTTPError)
		if auth != nil || !errors.As(err, plain) || !gitauth.Refused(err) {
			t.Errorf("%s: %#v, %v; want a refusal of plain http", tc.url, auth, err)
			continue
		}
		if msg := err.Error(); !strings.Contains(msg, "https://") || strings.Contains(msg, c.Token) {
			t.Errorf("%s: the refusal %q does not say to use https://, or shows the token", tc.url, msg)
		}
		if gitauth.PlainHTTP(tc.url) == nil {
			t.Errorf("PlainHTTP(%s) = nil, want the refusal Auth gives", tc.url)
		}
	}
}

func TestCredentialMustFitTheURL(t *testing.T) {
	key, _ := gittest.NewSSHKey(t)
	for _, tc := range []struct {
		c   gitauth.Credential
		url string
	}{
		{gitauth.Credential{Token: "tok-123"}, "ssh://git@git.example/repo.git"},
		{gitauth.Credential{Token: "tok-123"}, "git@git.example:repo.git"},
		{gitauth.Credential{SSHKey: key, KnownHosts: "git.example ssh-ed25519 AAAA"}, "https://git.example/repo.git"},
	} {
		if _, err := tc.c.Auth(tc.url); err == nil {
			t.Errorf("a %s for %s: no error", tc.c.Kind(), tc.url)
		}
	}
	if auth, err := (gitauth.Credential{}).Auth("https://git.example/repo.git"); auth != nil || err != nil {
		t.Errorf("no credential: %v, %v; want nil, nil", auth, err)
	}
}

func TestKindFor(t *testing.T) {
	for _, tc := range []struct {
		url              string
		hasToken, hasKey bool
		want             gitauth.Kind
	}{
		{"https://h/r.git", true, true, gitauth.HTTPSToken},
		{"https://h/r.git", false, true, gitauth.None},
		{"ssh://git@h/r.git", true, true, gitauth.SSHKey},
		{"git@h:r.git", false, true, gitauth.SSHKey},
		{"git@h:r.git", true, false, gitauth.None},
		{"/srv/git/r", true, true, gitauth.None},
	} {
		if got := gitauth.KindFor(tc.url, tc.hasToken, tc.hasKey); got != tc.want {
			t.Errorf("KindFor(%s, %v, %v) = %s, want %s", tc.url, tc.hasToken, tc.hasKey, got, tc.want)
		}
	}
}

func TestFromSecretsNamesWhatIsMissing(t *testing.T) {
	if _, err := gitauth.FromSecrets(gitauth.SSHKey, map[string]string{gitauth.SSHKeySecret: "k"}); err == nil || !strings.Contains(err.Error(), gitauth.KnownHostsSecret) {
		t.Errorf("key without known_hosts: %v", err)
	}
	if _, err := gitauth.FromSecrets(gitauth.HTTPSToken, map[string]string{gitauth.UsernameSecret: "bob"}); err == nil || !strings.Contains(err.Error(), gitauth.TokenSecret) {
		t.Errorf("username without token: %v", err)
	}
	c, err := gitauth.FromSecrets(gitauth.HTTPSToken, map[string]string{gitauth.TokenSecret: "tok-123", gitauth.SSHKeySecret: "k"})
	if err != nil || c != (gitauth.Credential{Token: "tok-123"}) {
		t.Errorf("token: %+v, %v", c, err)
	}
}

func TestSSHKeyParsing(t *testing.T) {
	key, _ := gittest.NewSSHKey(t)
	if _, err := gitauth.ParseSSHKey(key); err != nil {
		t.Fatalf("a valid key: %v", err)
	}
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	block, err := ssh.MarshalPrivateKeyWithPassphrase(priv, "", []byte("pass"))
	if err != nil {
		t.Fatal(err)
	}
	locked := string(pem.EncodeToMemory(block))
	if _, err := gitauth.ParseSSHKey(locked); err == nil || !strings.Contains(err.Error(), "passphrase") {
		t.Errorf("a key with a passphrase: %v", err)
	}
	broken := strings.Replace(key, "\n", "\nXXXXsecretXXXX", 2)
	if _, err := gitauth.ParseSSHKey(broken); err == nil || strings.Contains(err.Error(), "XXXXsecretXXXX") {
		t.Errorf("a broken key: %v (must fail without quoting it)", err)
	}
	if err := gitauth.Check(gitauth.SSHKeySecret, strings.Repeat("A", gitauth.MaxSSHKey+1)); err == nil {
		t.Error("an oversized key was accepted")
	}
}

func TestKnownHostsParsing(t *testing.T) {
	_, pub := gittest.NewSSHKey(t)
	line := knownhosts.Line([]string{"[git.example]:2222"}, pub)
	if _, err := gitauth.KnownHosts("# a comment\n\n" + line + "\n"); err != nil {
		t.Fatalf("a valid line: %v", err)
	}
	for _, bad := range []string{"", "# only a comment\n", line + "\nnot a known hosts line\n", strings.Repeat("#", gitauth.MaxKnownHosts+1)} {
		if err := gitauth.Check(gitauth.KnownHostsSecret, bad); err == nil {
			t.Errorf("known_hosts %.40q accepted", bad)
		}
	}
}

// hostKeyCheck is what the SSH client does with a server's host key.
func hostKeyCheck(t *testing.T, c gitauth.Credential, url string, addr string, key ssh.PublicKey) (algorithms []string, err error) {
	t.Helper()
	auth, err := c.Auth(url)
	if err != nil {
		t.Fatal(err)
	}
	pk, ok := auth.(*gitssh.PublicKeys)
	if !ok {
		t.Fatalf("auth = %#v, want public keys", auth)
	}
	if pk.User != "deploy" && pk.User != gitauth.DefaultSSHUser {
		t.Errorf("ssh user = %q", pk.User)
	}
	cfg, err := pk.ClientConfig()
	if err != nil {
		t.Fatal(err)
	}
	tcp, _ := net.ResolveTCPAddr("tcp", "192.0.2.1:2222")
	return cfg.HostKeyAlgorithms, cfg.HostKeyCallback(addr, tcp, key)
}

func TestUnknownHostKeysAreRefused(t *testing.T) {
	key, _ := gittest.NewSSHKey(t)
	_, hostKey := gittest.NewSSHKey(t)
	_, otherKey := gittest.NewSSHKey(t)
	c := gitauth.Credential{SSHKey: key, KnownHosts: knownhosts.Line([]string{"[git.example]:2222"}, hostKey)}
	url := "ssh://deploy@git.example:2222/repo.git"
	algorithms, err := hostKeyCheck(t, c, url, "git.example:2222", hostKey)
	if err != nil {
		t.Errorf("the known host key was refused: %v", err)
	}
	if !slices.Equal(algorithms, []string{ssh.KeyAlgoED25519}) {
		t.Errorf("host key algorithms = %v, want the known key's type only (else the server could show a key known_hosts does not list)", algorithms)
	}
	if _, err := hostKeyCheck(t, c, url, "git.example:2222", otherKey); err == nil || !knownhosts.IsHostKeyChanged(err) {
		t.Errorf("another key for the known host: %v, want a refusal", err)
	}
	c2 := gitauth.Credential{SSHKey: key, KnownHosts: knownhosts.Line([]string{"other.example"}, hostKey)}
	if _, err := hostKeyCheck(t, c2, "git@git.example:repo.git", "git.example:22", hostKey); err == nil || !knownhosts.IsHostUnknown(err) {
		t.Errorf("a host known_hosts does not list: %v, want a refusal", err)
	}
}

func TestExplainMasksTheCredentialAndSaysWhatToDo(t *testing.T) {
	token := "tok-explain-canary-42"
	echoed := fmt.Errorf("fetch: %w: server said: Basic %s and %s", transport.ErrAuthenticationRequired,
		base64.StdEncoding.EncodeToString([]byte("x-access-token:"+token)), token)
	err := gitauth.Credential{Token: token}.Explain(echoed)
	if !errors.Is(err, transport.ErrAuthenticationRequired) {
		t.Errorf("%v does not match its cause's sentinel", err)
	}
	if strings.Contains(err.Error(), token) || strings.Contains(err.Error(), base64.StdEncoding.EncodeToString([]byte(token))[:12]) {
		t.Errorf("the error shows the token: %v", err)
	}
	if !strings.HasPrefix(err.Error(), "the server refused the repository's https-token") {
		t.Errorf("no hint for a refused token: %v", err)
	}
	err = gitauth.Credential{}.Explain(fmt.Errorf("ls-remote: %w", transport.ErrAuthenticationRequired))
	if !strings.HasPrefix(err.Error(), "the repository needs a credential") || !strings.Contains(err.Error(), "--git-token-file") || !strings.Contains(err.Error(), gitauth.TokenSecret) {
		t.Errorf("no hint for a missing credential: %v", err)
	}
	if !gitauth.Refused(err) {
		t.Errorf("%v is not a refusal", err)
	}
	plain := errors.New("connection refused")
	if gitauth.Refused(plain) {
		t.Errorf("%v is a refusal", plain)
	}
	if got := (gitauth.Credential{}).Explain(plain).Error(); got != plain.Error() {
		t.Errorf("an unrelated error became %q", got)
	}
}

// leakyError is a cause whose text and fields hold the token, as an error
// quoting a server's answer may.
type leakyError struct{ token string }

func (e *leakyError) Error() string { return "server said: " + e.token }

// Explain's error masks the token in its text and gives no way back to
// the unmasked cause: errors.Unwrap and errors.As do not reach it, while
// the sentinels Refused and the callers check still match.
func TestExplainedErrorsDoNotUnwrapToTheCause(t *testing.T) {
	token := "tok-unwrap-canary-7"
	c := gitauth.Credential{Token: token}
	cause := fmt.Errorf("fetch: %w: %w", transport.ErrAuthorizationFailed, &leakyError{token: token})
	err := c.Explain(cause)
	if strings.Contains(err.Error(), token) {
		t.Fatalf("the text shows the token: %v", err)
	}
	if inner := errors.Unwrap(err); inner != nil {
		t.Errorf("errors.Unwrap gives %q", inner)
	}
	if leaky := new(*leakyError); errors.As(err, leaky) {
		t.Errorf("errors.As reaches the cause: %q", (*leaky).token)
	}
	if wrapped := new(interface{ Unwrap() []error }); errors.As(err, wrapped) {
		t.Errorf("errors.As reaches the cause's wrapping: %v", *wrapped)
	}
	if !errors.Is(err, transport.ErrAuthorizationFailed) || !gitauth.Refused(err) || !gitauth.Denied(err) {
		t.Errorf("%v no longer matches the sentinel Refused checks", err)
	}
	if errors.Is(err, transport.ErrRepositoryNotFound) {
		t.Errorf("%v matches a sentinel its cause does not", err)
	}
	// Wrapped on (egress.Brief, %w), it still shows nothing more.
	for e := fmt.Errorf("repository: %w", egress.Brief(err)); e != nil; e = errors.Unwrap(e) {
		if strings.Contains(e.Error(), token) {
			t.Errorf("a wrapping shows the token: %v", e)
		}
	}

	// What holds no secret is still found: an SSH host key refusal and an
	// egress refusal.
	hostKey := c.Explain(fmt.Errorf("ssh: handshake failed: %w", &xknownhosts.KeyError{}))
	if !knownhosts.IsHostUnknown(hostKey) || !gitauth.Refused(hostKey) {
		t.Errorf("%v is not an unknown host key", hostKey)
	}
	dial := c.Explain(fmt.Errorf("dial: %w", &egress.RefusedError{Target: "10.0.0.1", Kind: "a private address"}))
	if refused := new(*egress.RefusedError); !errors.As(dial, refused) || (*refused).Target != "10.0.0.1" {
		t.Errorf("%v does not show its egress refusal", dial)
	}
	if !errors.Is(c.Explain(fmt.Errorf("fetch: %w", context.Canceled)), context.Canceled) {
		t.Error("a cancellation is no longer one")
	}
}

func TestKindsAreTheProtoKinds(t *testing.T) {
	for _, k := range []gitauth.Kind{gitauth.None, gitauth.HTTPSToken, gitauth.SSHKey} {
		if int(k.Proto()) != int(k) || gitauth.KindFromProto(k.Proto()) != k {
			t.Errorf("%s: proto %v", k, k.Proto())
		}
	}
	if gitauth.KindFromProto(99) != gitauth.None {
		t.Error("an unknown kind is not none")
	}
}
