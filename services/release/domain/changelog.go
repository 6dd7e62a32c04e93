package domain

import (
	"regexp"
	"strings"
)

// Commit is one commit that goes into a release.
type Commit struct {
	SHA     string
	Message string
}

// Subject is the commit message's first line.
func (c Commit) Subject() string {
	subject, _, _ := strings.Cut(strings.TrimSpace(c.Message), "\n")
	return strings.TrimSpace(subject)
}

// ShortSHA is the first 7 characters of the sha.
func (c Commit) ShortSHA() string { return ShortSHA(c.SHA) }

// ShortSHA is the first 7 characters of sha.
func ShortSHA(sha string) string {
	if len(sha) > 7 {
		return sha[:7]
	}
	return sha
}

// Change is what a commit means for the version, by Conventional Commits.
type Change int

// Changes, from the smallest.
const (
	// ChangeOther is any commit that is not a feature or a fix, including
	// messages that do not follow Conventional Commits.
	ChangeOther Change = iota
	ChangeFix
	ChangeFeature
	ChangeBreaking
)

// header matches a Conventional Commits header: type, optional (scope),
// optional "!", then ":".
var header = regexp.MustCompile(`^([A-Za-z][A-Za-z0-9-]*)(\([^()\n]*\))?(!)?:`)

// Classify reads a commit message the Conventional Commits way: a "!"
// before the ":" or a "BREAKING CHANGE:" (or "BREAKING-CHANGE:") footer is
// a breaking change, "feat" a feature, "fix" a fix, anything else other.
func Classify(message string) Change {
	message = strings.TrimSpace(message)
	first, body, _ := strings.Cut(message, "\n")
	m := header.FindStringSubmatch(strings.TrimSpace(first))
	if m != nil && m[3] == "!" {
		return ChangeBreaking
	}
	for _, line := range strings.Split(body, "\n") {
		line = strings.TrimSpace(line)
		if strings.HasPrefix(line, "BREAKING CHANGE:") || strings.HasPrefix(line, "BREAKING-CHANGE:") {
			return ChangeBreaking
		}
	}
	if m == nil {
		return ChangeOther
	}
	switch strings.ToLower(m[1]) {
	case "feat":
		return ChangeFeature
	case "fix":
		return ChangeFix
	}
	return ChangeOther
}

// BumpFor is the bump the commits call for: major for a breaking change,
// minor for a feature, patch for anything else (also for no commits).
func BumpFor(commits []Commit) Bump {
	bump := BumpPatch
	for _, c := range commits {
		switch Classify(c.Message) {
		case ChangeBreaking:
			return BumpMajor
		case ChangeFeature:
			bump = BumpMinor
		}
	}
	return bump
}

// Changelog is the markdown changelog of commits: groups "Breaking
// changes", "Features", "Fixes" and "Other" (empty groups left out), one
// line "- subject (shortsha)" per commit, in the order given (source lists
// commits newest first).
func Changelog(commits []Commit) string {
	groups := []struct {
		change Change
		title  string
	}{
		{ChangeBreaking, "Breaking changes"},
		{ChangeFeature, "Features"},
		{ChangeFix, "Fixes"},
		{ChangeOther, "Other"},
	}
	var b strings.Builder
	for _, g := range groups {
		var lines []string
		for _, c := range commits {
			if Classify(c.Message) == g.change {
				lines = append(lines, "- "+c.Subject()+" ("+c.ShortSHA()+")")
			}
		}
		if len(lines) == 0 {
			continue
		}
		if b.Len() > 0 {
			b.WriteString("\n")
		}
		b.WriteString("### " + g.title + "\n\n")
		for _, l := range lines {
			b.WriteString(l + "\n")
		}
	}
	if b.Len() == 0 {
		return "No changes.\n"
	}
	return b.String()
}
