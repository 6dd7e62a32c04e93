// Package gitauth is how Sluice reads a private repository: its
// credential, an HTTPS token or an SSH deploy key, is kept as secrets of
// the repository under reserved names (never in its URL), and becomes a
// go-git transport.AuthMethod here. An SSH host key is verified against
// known_hosts lines given with the key; an unknown or changed host key is
// refused, never accepted silently.
package gitauth

import (
	"errors"
	"fmt"
	neturl "net/url"
	"os"
	"strings"

	"github.com/go-git/go-git/v5/plumbing/transport"
	githttp "github.com/go-git/go-git/v5/plumbing/transport/http"
	gitssh "github.com/go-git/go-git/v5/plumbing/transport/ssh"
	"github.com/skeema/knownhosts"
	"golang.org/x/crypto/ssh"
	xknownhosts "golang.org/x/crypto/ssh/knownhosts"

	"github.com/sluicehq/sluice/platform/egress"
	"github.com/sluicehq/sluice/platform/secretmask"
	"github.com/sluicehq/sluice/platform/tlsconfig"
	sourcev1 "github.com/sluicehq/sluice/proto/gen/sluice/source/v1"
)

// The reserved secret names a repository's credential is kept under.
const (
	// TokenSecret is an HTTPS token (or password), sent with HTTP basic
	// authentication.
	TokenSecret = "SLUICE_GIT_TOKEN"
	// UsernameSecret is the user name sent with the token; DefaultUsername
	// when it is not set.
	UsernameSecret = "SLUICE_GIT_USERNAME"
	// SSHKeySecret is an SSH private key (PEM or OpenSSH format, without a
	// passphrase).
	SSHKeySecret = "SLUICE_GIT_SSH_KEY"
	// KnownHostsSecret is the known_hosts lines the SSH server's host key
	// must match.
	KnownHostsSecret = "SLUICE_GIT_KNOWN_HOSTS"
)

// DefaultUsername is sent with a token when SLUICE_GIT_USERNAME is not set.
// GitHub takes it with an installation or fine-grained token; GitLab,
// Gitea and Bitbucket take a token with any user name (or their own, such
// as oauth2 or x-token-auth, which SLUICE_GIT_USERNAME sets).
const DefaultUsername = "x-access-token"

// DefaultSSHUser is the user an ssh URL without one logs in as.
const DefaultSSHUser = "git"

// Kind is the kind of credential a repository has. Its numbers are
// stored (the services keep the kind of a run's repository) and are those
// of sourcev1.GitCredentialKind.
type Kind int

// The kinds of credential.
const (
	None       Kind = 0
	HTTPSToken Kind = 1
	SSHKey     Kind = 2
)

// KindFromProto is the Kind of k; an unknown kind is None.
func KindFromProto(k sourcev1.GitCredentialKind) Kind {
	switch k {
	case sourcev1.GitCredentialKind_GIT_CREDENTIAL_KIND_HTTPS_TOKEN:
		return HTTPSToken
	case sourcev1.GitCredentialKind_GIT_CREDENTIAL_KIND_SSH_KEY:
		return SSHKey
	}
	return None
}

// Proto is k as the API and the events say it.
func (k Kind) Proto() sourcev1.GitCredentialKind {
	switch k {
	case HTTPSToken:
		return sourcev1.GitCredentialKind_GIT_CREDENTIAL_KIND_HTTPS_TOKEN
	case SSHKey:
		return sourcev1.GitCredentialKind_GIT_CREDENTIAL_KIND_SSH_KEY
	}
	return sourcev1.GitCredentialKind_GIT_CREDENTIAL_KIND_UNSPECIFIED
}

func (k Kind) String() string {
	switch k {
	case HTTPSToken:
		return "https-token"
	case SSHKey:
		return "ssh-key"
	}
	return "none"
}

// Names lists the secret names a credential of kind k is read from.
func (k Kind) Names() []string {
	switch k {
	case HTTPSToken:
		return []string{TokenSecret, UsernameSecret}
	case SSHKey:
		return []string{KnownHostsSecret, SSHKeySecret}
	}
	return nil
}

// Reserved reports whether name is one of the credential's secret names.
func Reserved(name string) bool {
	switch name {
	case TokenSecret, UsernameSecret, SSHKeySecret, KnownHostsSecret:
		return true
	}
	return false
}

// Protocol is how url is reached: "https" (http or https), "ssh", or ""
// for anything else (a local path, git://).
func Protocol(url string) string {
	ep, err := transport.NewEndpoint(url)
	if err != nil {
		return ""
	}
	switch ep.Protocol {
	case "http", "https":
		return "https"
	case "ssh":
		return "ssh"
	}
	return ""
}

// KindFor is the kind of credential url is read with, given which of the
// secrets the repository has: a token for an http(s) URL, a key for an ssh
// one, else none.
func KindFor(url string, hasToken, hasKey bool) Kind {
	switch p := Protocol(url); {
	case p == "https" && hasToken:
		return HTTPSToken
	case p == "ssh" && hasKey:
		return SSHKey
	}
	return None
}

// Credential is a repository's credential. The zero value is none.
type Credential struct {
	Username   string
	Token      string
	SSHKey     string
	KnownHosts string
}

// FromSecrets makes the credential of kind k from the values of its
// secrets (by name); a kind whose secrets are missing is an error naming
// them.
func FromSecrets(k Kind, values map[string]string) (Credential, error) {
	c := Credential{Username: values[UsernameSecret], Token: values[TokenSecret], SSHKey: values[SSHKeySecret], KnownHosts: values[KnownHostsSecret]}
	switch k {
	case HTTPSToken:
		if c.Token == "" {
			return Credential{}, fmt.Errorf("the repository's secret %s is not set", TokenSecret)
		}
		return Credential{Username: c.Username, Token: c.Token}, nil
	case SSHKey:
		if c.SSHKey == "" || c.KnownHosts == "" {
			return Credential{}, fmt.Errorf("an SSH deploy key needs both the repository's secrets %s and %s", SSHKeySecret, KnownHostsSecret)
		}
		return Credential{SSHKey: c.SSHKey, KnownHosts: c.KnownHosts}, nil
	}
	return Credential{}, nil
}

// Kind is the kind of c.
func (c Credential) Kind() Kind {
	switch {
	case c.Token != "":
		return HTTPSToken
	case c.SSHKey != "":
		return SSHKey
	}
	return None
}

// Secrets are the values that must never be shown: for the masker of a
// run's logs.
func (c Credential) Secrets() []string {
	var out []string
	for _, v := range []string{c.Token, c.SSHKey} {
		if v != "" {
			out = append(out, v)
		}
	}
	return out
}

// Values are the secrets c is stored as, by reserved name (the username
// only when it is not the default).
func (c Credential) Values() map[string]string {
	out := map[string]string{}
	switch c.Kind() {
	case HTTPSToken:
		out[TokenSecret] = c.Token
		if c.Username != "" && c.Username != DefaultUsername {
			out[UsernameSecret] = c.Username
		}
	case SSHKey:
		out[SSHKeySecret] = c.SSHKey
		out[KnownHostsSecret] = c.KnownHosts
	}
	return out
}

// ErrWrongProtocol is returned (wrapped) when the credential does not fit
// the URL (a token for an ssh URL, a key for an https one).
var ErrWrongProtocol = errors.New("the repository's credential does not fit its URL")

// PlainHTTP is a *tlsconfig.PlainHTTPError when a token sent to url would
// cross the network unencrypted: an http:// URL to a host that is not
// loopback (tlsconfig.PlainText, the rule the CLI follows too); else nil.
// A URL that does not parse is nil: go-git does not read it, so nothing is
// sent (Auth finds no protocol for it).
func PlainHTTP(url string) error {
	if u, err := neturl.Parse(url); err == nil && tlsconfig.PlainText(u) {
		return &tlsconfig.PlainHTTPError{Host: u.Host, Hint: "register the repository by its https:// URL (docs/security.md, \"Repository credentials\")"}
	}
	return nil
}

// Auth is the go-git authentication of c for url: nil when c is none;
// HTTP basic authentication (the token as password) for an https URL, or
// an http one to a loopback host (PlainHTTP refuses any other); SSH
// public-key authentication for an ssh URL, whose server must show a host
// key the known_hosts lines list for its host.
func (c Credential) Auth(url string) (transport.AuthMethod, error) {
	kind := c.Kind()
	if kind == None {
		return nil, nil
	}
	proto := Protocol(url)
	switch {
	case kind == HTTPSToken && proto == "https":
		if err := PlainHTTP(url); err != nil {
			return nil, err
		}
		user := c.Username
		if user == "" {
			user = DefaultUsername
		}
		return &githttp.BasicAuth{Username: user, Password: c.Token}, nil
	case kind == SSHKey && proto == "ssh":
		return c.sshAuth(url)
	}
	return nil, fmt.Errorf("%w: an %s is for %s URLs", ErrWrongProtocol, kind, map[Kind]string{HTTPSToken: "https://", SSHKey: "ssh://"}[kind])
}

func (c Credential) sshAuth(url string) (transport.AuthMethod, error) {
	signer, err := ParseSSHKey(c.SSHKey)
	if err != nil {
		return nil, err
	}
	db, err := KnownHosts(c.KnownHosts)
	if err != nil {
		return nil, err
	}
	ep, err := transport.NewEndpoint(url)
	if err != nil {
		return nil, fmt.Errorf("repository url: %w", err)
	}
	user := ep.User
	if user == "" {
		user = DefaultSSHUser
	}
	port := ep.Port
	if port == 0 {
		port = 22
	}
	hostWithPort := fmt.Sprintf("%s:%d", ep.Host, port)
	return &gitssh.PublicKeys{
		User:   user,
		Signer: signer,
		HostKeyCallbackHelper: gitssh.HostKeyCallbackHelper{
			HostKeyCallback:   db.HostKeyCallback(),
			HostKeyAlgorithms: db.HostKeyAlgorithms(hostWithPort),
		},
	}, nil
}

// MaxSSHKey and MaxKnownHosts bound the texts parsed (the secrets' own
// limit is 64 KiB).
const (
	MaxSSHKey     = 16 << 10
	MaxKnownHosts = 64 << 10
)

// ParseSSHKey parses an SSH private key without a passphrase. Its errors
// never quote the key.
func ParseSSHKey(key string) (ssh.Signer, error) {
	if len(key) > MaxSSHKey {
		return nil, fmt.Errorf("the SSH key has more than %d bytes", MaxSSHKey)
	}
	signer, err := ssh.ParsePrivateKey([]byte(key))
	if _, ok := errors.AsType[*ssh.PassphraseMissingError](err); ok {
		return nil, errors.New("the SSH key is protected by a passphrase: give a deploy key without one (ssh-keygen -p -N '' -f KEY)")
	}
	if err != nil {
		return nil, errors.New("the SSH key is not a private key in PEM or OpenSSH format")
	}
	return signer, nil
}

// KnownHosts parses known_hosts lines (the OpenSSH format: hashed host
// names, patterns, [host]:port, @cert-authority and @revoked markers). At
// least one line must name a host key.
func KnownHosts(text string) (*knownhosts.HostKeyDB, error) {
	if len(text) > MaxKnownHosts {
		return nil, fmt.Errorf("the known_hosts text has more than %d bytes", MaxKnownHosts)
	}
	if err := checkKnownHostsLines(text); err != nil {
		return nil, err
	}
	// knownhosts reads files only: a file that lives for the parse.
	f, err := os.CreateTemp("", "sluice-known-hosts-*")
	if err != nil {
		return nil, fmt.Errorf("known_hosts: %w", err)
	}
	defer func() { _ = os.Remove(f.Name()) }()
	_, err = f.WriteString(text)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("known_hosts: %w", err)
	}
	db, err := knownhosts.NewDB(f.Name())
	if err != nil {
		return nil, errors.New("known_hosts: " + strings.ReplaceAll(err.Error(), f.Name(), "line"))
	}
	return db, nil
}

// checkKnownHostsLines makes sure every line that is not blank or a
// comment parses, and that there is at least one.
func checkKnownHostsLines(text string) error {
	n := 0
	for i, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if _, _, _, _, _, err := ssh.ParseKnownHosts([]byte(line)); err != nil {
			return fmt.Errorf("known_hosts line %d is not a known_hosts entry (host key-type base64-key)", i+1)
		}
		n++
	}
	if n == 0 {
		return errors.New("known_hosts has no entry: give the server's host key line (ssh-keyscan HOST)")
	}
	return nil
}

// Check refuses a value for the reserved secret name that could not be
// used and that no validation rule can tell: a private key that does not
// parse, known_hosts without an entry. The rules of the API's requests
// (sluice/source/v1: HTTPSToken, SSHKey, SetSecretRequest) say the rest,
// for a value given with a new repository and one set later alike: a
// token is one line of at most 4096 bytes without spaces or control
// characters, a username at most 256 characters without ':', spaces or
// control characters, a key at most MaxSSHKey bytes.
func Check(name, value string) error {
	switch name {
	case SSHKeySecret:
		_, err := ParseSSHKey(value)
		return err
	case KnownHostsSecret:
		_, err := KnownHosts(value)
		return err
	}
	return nil
}

// Explain makes err, a failed read of a repository with credential c,
// safe to show and useful: every form of c's secrets in its text is masked
// (a server may echo what it was sent), and it starts with what to do when
// the server wants a credential, refuses c, or shows an SSH host key
// known_hosts does not list (first, and short, so that a message cut to a
// line keeps it).
//
// It does not unwrap to err, whose chain may hold the credential unmasked
// (an error quoting what the server echoed, a request): errors.Unwrap
// gives nil, and errors.As finds only the errors known to hold no secret,
// an SSH host key's refusal (knownhosts) and an egress refusal. errors.Is
// answers as for err, a yes or no that shows none of it, so that the
// checks of Refused, of a commit not found or of a cancellation still
// work.
func (c Credential) Explain(err error) error {
	if err == nil {
		return nil
	}
	msg := secretmask.New(c.Secrets()).String(err.Error())
	if h := hint(err, c.Kind()); h != "" {
		msg = h + ": " + msg
	}
	return &explained{cause: err, msg: msg}
}

// Denied reports whether err says the server wants a credential or
// refuses the one it was sent.
func Denied(err error) bool {
	return errors.Is(err, transport.ErrAuthenticationRequired) || errors.Is(err, transport.ErrAuthorizationFailed)
}

func hint(err error, k Kind) string {
	denied := Denied(err)
	switch {
	case denied && k == None:
		return "the repository needs a credential: sluice repo add URL --git-token-file FILE, or sluice secret set REPO " + TokenSecret + " (docs/security.md)"
	case denied:
		return "the server refused the repository's " + k.String() + ": set a new one with sluice secret set REPO NAME (docs/security.md)"
	case knownhosts.IsHostUnknown(err):
		return "the SSH server's host key is not in " + KnownHostsSecret
	case knownhosts.IsHostKeyChanged(err):
		return "the SSH server's host key differs from the one " + KnownHostsSecret + " lists: refused"
	}
	return ""
}

// explained is Explain's error. It has no Unwrap: cause is never handed
// out.
type explained struct {
	cause error
	msg   string
}

func (e *explained) Error() string { return e.msg }

// Is answers errors.Is as the cause does.
func (e *explained) Is(target error) bool { return errors.Is(e.cause, target) }

// As finds in the cause only the errors that hold no secret.
func (e *explained) As(target any) bool {
	switch target.(type) {
	case **xknownhosts.KeyError, **egress.RefusedError:
		return errors.As(e.cause, target)
	}
	return false
}

// Refused reports whether err says the repository cannot be read with the
// credential it has, which trying again does not mend: the server wants a
// credential or refuses this one, it does not fit the URL, it would be
// sent over plain http:// (PlainHTTP), or the SSH host key is unknown or
// changed.
func Refused(err error) bool {
	return Denied(err) || errors.Is(err, ErrWrongProtocol) || errors.As(err, new(*tlsconfig.PlainHTTPError)) ||
		knownhosts.IsHostUnknown(err) || knownhosts.IsHostKeyChanged(err)
}
