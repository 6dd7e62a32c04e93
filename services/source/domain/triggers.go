package domain

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/sluicehq/sluice/platform/pathglob"
	sourcev1 "github.com/sluicehq/sluice/proto/gen/sluice/source/v1"
)

// TagPrefix starts the ref of a tag.
const TagPrefix = "refs/tags/"

// Tag is the tag ref names ("" when ref is not a tag's).
func Tag(ref string) string {
	if tag, ok := strings.CutPrefix(ref, TagPrefix); ok {
		return tag
	}
	return ""
}

// CommitKey is what a commit's runs by push and poll are recorded under
// (one per key and commit): the branch, or the ref of a run of a tag or
// a commit.
func CommitKey(branch, ref string) string {
	switch {
	case strings.HasPrefix(branch, "refs/"):
		// A branch named like a ref (refs/tags/v1) must not share the
		// key of that ref.
		return "refs/heads/" + branch
	case branch != "":
		return branch
	}
	return ref
}

// pullRequestBranch is the name of the branch a pull request's runs are
// on, pull/<n>.
var pullRequestBranch = regexp.MustCompile(`^pull/[0-9]+$`)

// ReservedBranch says why pushes of branch start no run ("" when they
// may): a name like a ref's (refs/tags/v1) would pass for that ref, and
// pull/<n> is the name pull request n's runs are on (its caches, its
// concurrency group), which a fork's pull request must not share with
// the repository's own branch.
func ReservedBranch(branch string) string {
	switch {
	case strings.HasPrefix(branch, "refs/"):
		return fmt.Sprintf("branch %s is named like a ref; such branches start no run", branch)
	case pullRequestBranch.MatchString(branch):
		return fmt.Sprintf("branch %s has the name pull request runs are on; such branches start no run", branch)
	}
	return ""
}

// Unwanted says why a pushed change, to branch or (branch "") to the tag
// ref names, starts no run under the on: section of pipeline p (see
// pipeline.proto's Triggers); "" when it does. watched is the
// repository's branch, which is what pushes run without an on.push. The
// run's changes decide on.push.paths: unknown changes (nil, or
// incomplete) pass. Pull requests, manual triggers and reruns are not
// asked.
func Unwanted(p *sourcev1.Pipeline, watched, ref, branch string, changes *sourcev1.Changes) string {
	on := p.GetOn()
	if branch == "" {
		tag := Tag(ref)
		switch {
		case tag == "":
			return fmt.Sprintf("%s is neither a branch nor a tag", ref)
		case len(on.GetTags()) == 0:
			return fmt.Sprintf("tag %s: the pipeline has no on.tag, so tags start no run", tag)
		case !pathglob.MatchAny(on.GetTags(), tag):
			return fmt.Sprintf("tag %s matches none of the pipeline's on.tag (%s)", tag, strings.Join(on.GetTags(), ", "))
		}
		return ""
	}
	branches := on.GetPush().GetBranches()
	switch {
	case len(branches) == 0 && branch != watched:
		return fmt.Sprintf("push to %s, not to the repository's branch %s (the pipeline's on.push.branches names more)", branch, watched)
	case len(branches) > 0 && !pathglob.MatchAny(branches, branch):
		return fmt.Sprintf("branch %s matches none of the pipeline's on.push.branches (%s)", branch, strings.Join(branches, ", "))
	}
	paths := on.GetPush().GetPaths()
	if len(paths) == 0 || changes == nil || !changes.GetComplete() || pathglob.AnyMatches(paths, changes.GetPaths()) {
		return ""
	}
	return fmt.Sprintf("the push changed no path matching the pipeline's on.push.paths (%s)", strings.Join(paths, ", "))
}
