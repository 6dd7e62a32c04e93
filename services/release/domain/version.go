// Package domain holds the release service's plain types and rules:
// semantic versions, how commits bump them, changelogs, and the states of
// releases and deployments. It knows nothing about SQL or transport.
package domain

import (
	"cmp"
	"fmt"
	"strconv"
	"strings"
)

// Version is a semantic version as Sluice writes it: vMAJOR.MINOR.PATCH.
type Version struct {
	Major, Minor, Patch int
}

// FirstVersion is the version of a repository's first release.
func FirstVersion() Version { return Version{Major: 0, Minor: 1, Patch: 0} }

// ParseVersion parses "v1.2.3". Pre-release and build suffixes are not used
// by Sluice and are refused, as are leading zeros.
func ParseVersion(s string) (Version, error) {
	rest, ok := strings.CutPrefix(s, "v")
	if !ok {
		return Version{}, fmt.Errorf("version %q: want vMAJOR.MINOR.PATCH, e.g. v1.2.3", s)
	}
	parts := strings.Split(rest, ".")
	if len(parts) != 3 {
		return Version{}, fmt.Errorf("version %q: want vMAJOR.MINOR.PATCH, e.g. v1.2.3", s)
	}
	var nums [3]int
	for i, p := range parts {
		if p == "" || (len(p) > 1 && p[0] == '0') || strings.TrimLeft(p, "0123456789") != "" {
			return Version{}, fmt.Errorf("version %q: %q is not a number without leading zeros", s, p)
		}
		n, err := strconv.Atoi(p)
		if err != nil {
			return Version{}, fmt.Errorf("version %q: %w", s, err)
		}
		nums[i] = n
	}
	return Version{Major: nums[0], Minor: nums[1], Patch: nums[2]}, nil
}

// String is "vMAJOR.MINOR.PATCH".
func (v Version) String() string {
	return fmt.Sprintf("v%d.%d.%d", v.Major, v.Minor, v.Patch)
}

// Compare returns -1, 0 or 1 as v is lower than, equal to or higher than o.
func (v Version) Compare(o Version) int {
	return cmp.Or(cmp.Compare(v.Major, o.Major), cmp.Compare(v.Minor, o.Minor), cmp.Compare(v.Patch, o.Patch))
}

// Bump is how much a release moves the version.
type Bump int

// Bumps, from the smallest.
const (
	BumpPatch Bump = iota
	BumpMinor
	BumpMajor
)

func (b Bump) String() string {
	switch b {
	case BumpMajor:
		return "major"
	case BumpMinor:
		return "minor"
	default:
		return "patch"
	}
}

// Apply returns v bumped by b. This is plain semver: a breaking change
// moves a 0.x version to 1.0.0.
func (v Version) Apply(b Bump) Version {
	switch b {
	case BumpMajor:
		return Version{Major: v.Major + 1}
	case BumpMinor:
		return Version{Major: v.Major, Minor: v.Minor + 1}
	default:
		return Version{Major: v.Major, Minor: v.Minor, Patch: v.Patch + 1}
	}
}

// NextVersion is the version of a release made of commits, after previous
// (nil for a repository's first release, which is always FirstVersion).
func NextVersion(previous *Version, commits []Commit) Version {
	if previous == nil {
		return FirstVersion()
	}
	return previous.Apply(BumpFor(commits))
}
