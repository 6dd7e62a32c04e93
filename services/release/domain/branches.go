package domain

import (
	"fmt"
	"path"
	"regexp"
	"slices"
	"strings"
)

// EnvironmentBranches is the platform's rule of which branches may deploy
// automatically to which environment (the release service's
// environment-branches setting). A pipeline's release branches narrow it
// and never widen it: a run deploys to an environment automatically only
// when both allow its branch.
type EnvironmentBranches struct {
	named map[string][]string
	// others are the patterns of every environment not named.
	others []string
}

// DefaultBranches are the patterns of an environment that the setting
// does not name when it has no "*" entry. Events do not carry a
// repository's default branch, so the usual default branch names stand in
// for it.
var DefaultBranches = []string{"main", "master"}

// AnyEnvironment is the setting's name for every environment it does not
// name otherwise.
const AnyEnvironment = "*"

// AnyBranch is the pattern that matches every branch, "/" and all.
const AnyBranch = "**"

var environmentName = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)

// ParseEnvironmentBranches reads the setting: comma-separated entries
// ENVIRONMENT=PATTERNS, where ENVIRONMENT is an environment's name or "*"
// (every environment not named) and PATTERNS are branch patterns separated
// by "|" (path.Match globs: "*" stays within one "/"-separated part, so
// "release/*" matches "release/1.2"; "**" alone matches every branch), or
// nothing: no branch deploys there automatically. For example
// "production=main,staging=main|release/*". An environment may be named
// once. Without a "*" entry, environments not named take DefaultBranches;
// so does every environment when s is empty. The error names the entry
// that is wrong.
func ParseEnvironmentBranches(s string) (EnvironmentBranches, error) {
	e := EnvironmentBranches{named: map[string][]string{}, others: DefaultBranches}
	if strings.TrimSpace(s) == "" {
		return e, nil
	}
	seen := map[string]bool{}
	for i, entry := range strings.Split(s, ",") {
		entry = strings.TrimSpace(entry)
		if entry == "" {
			return EnvironmentBranches{}, fmt.Errorf("entry %d is empty (separate entries with one comma)", i+1)
		}
		env, list, ok := strings.Cut(entry, "=")
		env = strings.TrimSpace(env)
		if !ok {
			return EnvironmentBranches{}, fmt.Errorf("entry %q: want ENVIRONMENT=BRANCHES, e.g. production=main", entry)
		}
		if env != AnyEnvironment && !environmentName.MatchString(env) {
			return EnvironmentBranches{}, fmt.Errorf("entry %q: %q is not an environment name (lower-case letters, digits, '-' and '_', at most 63) or %s",
				entry, env, AnyEnvironment)
		}
		if seen[env] {
			return EnvironmentBranches{}, fmt.Errorf("entry %q: environment %s is named twice", entry, env)
		}
		seen[env] = true
		patterns := []string{}
		if list = strings.TrimSpace(list); list != "" {
			for _, p := range strings.Split(list, "|") {
				p = strings.TrimSpace(p)
				if err := checkPattern(p); err != nil {
					return EnvironmentBranches{}, fmt.Errorf("entry %q: %w", entry, err)
				}
				patterns = append(patterns, p)
			}
		}
		if env == AnyEnvironment {
			e.others = patterns
		} else {
			e.named[env] = patterns
		}
	}
	return e, nil
}

func checkPattern(p string) error {
	switch {
	case p == "":
		return fmt.Errorf("an empty branch pattern (separate patterns with one |)")
	case strings.ContainsAny(p, " \t"):
		return fmt.Errorf("branch pattern %q has a space", p)
	}
	if _, err := path.Match(p, ""); err != nil {
		return fmt.Errorf("branch pattern %q: %w", p, err)
	}
	return nil
}

// Branches are the patterns of the branches that may deploy automatically
// to environment; none means no branch may.
func (e EnvironmentBranches) Branches(environment string) []string {
	if p, ok := e.named[environment]; ok {
		return p
	}
	if e.named == nil {
		return DefaultBranches // the zero value is the default setting
	}
	return e.others
}

// Allows reports whether branch may deploy automatically to environment.
func (e EnvironmentBranches) Allows(environment, branch string) bool {
	if branch == "" {
		return false
	}
	return slices.ContainsFunc(e.Branches(environment), func(p string) bool { return BranchMatches(p, branch) })
}

// BranchMatches reports whether branch matches pattern (see
// ParseEnvironmentBranches).
func BranchMatches(pattern, branch string) bool {
	if pattern == AnyBranch {
		return true
	}
	ok, err := path.Match(pattern, branch)
	return err == nil && ok
}

// Describe says which branches may deploy to environment, for messages:
// "main|master", or "no branch".
func (e EnvironmentBranches) Describe(environment string) string {
	p := e.Branches(environment)
	if len(p) == 0 {
		return "no branch"
	}
	return strings.Join(p, "|")
}

// Deployable splits the environments of the pipeline by whether branch
// may deploy to them automatically on the platform's rule: the ones it
// may, in the pipeline's order, and the names of the ones it may not.
// (That the pipeline releases branch at all is SkipReason's to say.)
func (s ReleaseSpec) Deployable(branch string, platform EnvironmentBranches) (allowed []Environment, refused []string) {
	for _, env := range s.Environments {
		if platform.Allows(env.Name, branch) {
			allowed = append(allowed, env)
		} else {
			refused = append(refused, env.Name)
		}
	}
	return allowed, refused
}
