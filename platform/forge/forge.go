// Package forge is what Sluice knows of the forges its repositories live
// on: GitHub, Gitea (and Forgejo, which speaks Gitea's API) and GitLab. It
// checks and reads their webhooks (webhook.go), each with its own
// signature scheme, into one Event shape the source service acts on.
//
// A repository on a forge is a Repo: the forge's kind, its address as a
// browser sees it, and the project's path there (owner/name; GitLab allows
// groups: group/subgroup/name).
package forge

import (
	"errors"
	"fmt"
	neturl "net/url"
	"regexp"
	"strings"
)

// Kind is a forge's software.
type Kind string

// The forges Sluice speaks to. None is a repository with no forge: it is
// polled, or sent GitHub-style webhooks, and told nothing back.
const (
	None   Kind = ""
	GitHub Kind = "github"
	Gitea  Kind = "gitea"
	GitLab Kind = "gitlab"
)

// Kinds lists the forges, in the order docs and errors name them.
func Kinds() []Kind { return []Kind{GitHub, Gitea, GitLab} }

// ParseKind reads a forge's name as the webhook paths and the CLI spell it.
// Forgejo is Gitea.
func ParseKind(s string) (Kind, error) {
	switch strings.ToLower(s) {
	case "github":
		return GitHub, nil
	case "gitea", "forgejo":
		return Gitea, nil
	case "gitlab":
		return GitLab, nil
	}
	return None, fmt.Errorf("%q is not a forge Sluice knows (github, gitea, gitlab)", s)
}

// Repo is a repository's place on its forge.
type Repo struct {
	Kind Kind
	// URL is the forge's address: https://github.com, https://gitlab.com
	// or a self-hosted one such as https://git.example.com (a GitHub
	// Enterprise Server's too). The API's address is derived from it.
	URL string
	// Project is owner/name, or group/subgroup/name on GitLab.
	Project string
}

// IsZero reports whether r names no forge.
func (r Repo) IsZero() bool { return r.Kind == None }

// Owner and Name split Project at its last '/'.
func (r Repo) Owner() string {
	if i := strings.LastIndex(r.Project, "/"); i >= 0 {
		return r.Project[:i]
	}
	return ""
}

// Name is the project's last element.
func (r Repo) Name() string { return r.Project[strings.LastIndex(r.Project, "/")+1:] }

// ErrInvalid marks a Repo that cannot be used; the message names the field.
var ErrInvalid = errors.New("invalid forge")

var projectPattern = regexp.MustCompile(`^[A-Za-z0-9_.][A-Za-z0-9_.-]*(/[A-Za-z0-9_.][A-Za-z0-9_.-]*)+$`)

// Validate checks r: a known kind, an http(s) URL without credentials,
// query or fragment, and a project path of two (GitLab: two or more)
// plain segments.
func (r Repo) Validate() error {
	if r.Kind == None {
		return nil
	}
	if _, err := ParseKind(string(r.Kind)); err != nil {
		return fmt.Errorf("forge.kind: %w: %w", err, ErrInvalid)
	}
	u, err := neturl.Parse(r.URL)
	switch {
	case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "":
		return fmt.Errorf("forge.url: %q must be an http:// or https:// address: %w", r.URL, ErrInvalid)
	case u.User != nil:
		return fmt.Errorf("forge.url: must not contain credentials; the forge's token is the repository's secret %s: %w", TokenSecret, ErrInvalid)
	case u.RawQuery != "" || u.Fragment != "":
		return fmt.Errorf("forge.url: %q must not have a query or fragment: %w", r.URL, ErrInvalid)
	}
	if len(r.Project) > 512 || !projectPattern.MatchString(r.Project) || strings.Contains(r.Project, "..") {
		return fmt.Errorf("forge.project: %q must be owner/name (GitLab: group/.../name) of letters, digits, '.', '_' and '-': %w", r.Project, ErrInvalid)
	}
	if r.Kind != GitLab && strings.Count(r.Project, "/") != 1 {
		return fmt.Errorf("forge.project: %q must be owner/name on %s: %w", r.Project, r.Kind, ErrInvalid)
	}
	return nil
}

// TokenSecret is the reserved name of the repository secret that holds
// the token Sluice calls the forge's API with (commit statuses, releases,
// reconciliation). It is a secret of the repository, never part of a URL.
const TokenSecret = "SLUICE_FORGE_TOKEN"

// FromCloneURL derives a Repo of kind from a repository's git URL
// (https://host/owner/name.git, ssh://git@host/owner/name.git or
// git@host:owner/name.git): the forge's address is https://host (http for
// an http clone URL, with its port) and the project is the path without
// ".git". ok is false when the URL has no host or no owner/name path.
func FromCloneURL(kind Kind, cloneURL string) (Repo, bool) {
	scheme, host, path := "https", "", ""
	if u, err := neturl.Parse(cloneURL); err == nil && u.Host != "" {
		host, path = u.Hostname(), u.Path
		if u.Scheme == "http" || u.Scheme == "https" {
			scheme, host = u.Scheme, u.Host
			// A forge served under a path (https://host/gitea/o/r): the
			// address cannot be told from the project, so ask for it.
			if strings.Count(strings.Trim(path, "/"), "/") > 1 && kind != GitLab {
				return Repo{}, false
			}
		}
	} else if at, rest, ok := strings.Cut(cloneURL, "@"); ok && !strings.Contains(at, "/") {
		// scp-like: git@host:owner/name.git
		h, p, ok := strings.Cut(rest, ":")
		if !ok {
			return Repo{}, false
		}
		host, path = h, p
	}
	path = strings.TrimSuffix(strings.Trim(path, "/"), ".git")
	r := Repo{Kind: kind, URL: scheme + "://" + host, Project: path}
	if host == "" || r.Validate() != nil {
		return Repo{}, false
	}
	return r, true
}
