package forge

import (
	"context"
	"fmt"
	"net/http"
	"strings"

	"code.gitea.io/sdk/gitea"
	"github.com/google/go-github/v84/github"
	gitlab "gitlab.com/gitlab-org/api/client-go/v2"
)

// Release is a release on a forge: the release of Tag, which is made at
// Commit when the repository has no such tag, titled Name, with Notes
// (Markdown: the changelog).
type Release struct {
	Tag, Commit, Name, Notes string
}

// MaxReleaseNotes is the most of a release's notes sent, in bytes (GitHub
// takes 125000 characters); longer notes are cut, on a rune, saying so.
const MaxReleaseNotes = 100_000

// notes is rel's notes cut to MaxReleaseNotes.
func (rel Release) notes() string {
	const cut = "\n\n… (cut)"
	if len(rel.Notes) <= MaxReleaseNotes {
		return rel.Notes
	}
	n := MaxReleaseNotes - len(cut)
	for n > 0 && !isRuneStart(rel.Notes[n]) {
		n--
	}
	return rel.Notes[:n] + cut
}

func isRuneStart(b byte) bool { return b&0xC0 != 0x80 }

// tagAt is what the forge's answer about rel's tag (the commit sha it is
// at, or code and err) says of making rel: nil when the tag is at
// rel.Commit or not there yet (the release makes it there); rejected when
// it is at another commit, for a release there would show another
// commit's source under the version (a tag pushed before the release, or
// moved since).
func tagAt(what string, rel Release, sha string, code int, err error) error {
	switch {
	case err == nil && strings.TrimSpace(sha) != rel.Commit:
		return fmt.Errorf("%s: tag %s is at commit %.12s, not at the released %.12s: %w", what, rel.Tag, strings.TrimSpace(sha), rel.Commit, ErrRejected)
	case err == nil || code == http.StatusNotFound:
		return nil
	}
	return classify(what+": look for tag "+rel.Tag, code, err)
}

// conflict reports whether code says the release (or its tag's) is there
// already: GitHub answers 422, Gitea and GitLab 409.
func conflict(code int) bool {
	return code == http.StatusConflict || code == http.StatusUnprocessableEntity
}

// made is what a create that answered code with err comes to. A conflict
// is nil when the forge has a release of the tag after all (made by an
// earlier attempt whose answer was lost, or by hand), so that a release is
// made once however often it is asked for; without one, it is rejected.
func made(what string, code int, err error, exists func() (bool, error)) error {
	if !conflict(code) {
		return classify(what, code, err)
	}
	ok, xerr := exists()
	switch {
	case xerr != nil:
		return fmt.Errorf("%s: %w; %w", what, err, xerr)
	case ok:
		return nil
	}
	return fmt.Errorf("%s: %w: %w", what, err, ErrRejected)
}

func (g *githubClient) CreateRelease(ctx context.Context, rel Release) error {
	sha, res, err := g.c.Repositories.GetCommitSHA1(ctx, g.repo.Owner(), g.repo.Name(), "refs/tags/"+rel.Tag, "")
	code := statusOf(res)
	if code == http.StatusUnprocessableEntity {
		code = http.StatusNotFound // GitHub's "No commit found for SHA": no such tag
	}
	if err := tagAt("github: create the release", rel, sha, code, err); err != nil {
		return err
	}
	_, res, err = g.c.Repositories.CreateRelease(ctx, g.repo.Owner(), g.repo.Name(), &github.RepositoryRelease{
		TagName: github.Ptr(rel.Tag), TargetCommitish: github.Ptr(rel.Commit), Name: github.Ptr(rel.Name), Body: github.Ptr(rel.notes()),
	})
	if err == nil {
		return nil
	}
	return made("github: create the release", statusOf(res), err, func() (bool, error) {
		_, res, err := g.c.Repositories.GetReleaseByTag(ctx, g.repo.Owner(), g.repo.Name(), rel.Tag)
		return found(statusOf(res), err)
	})
}

func (g *giteaClient) CreateRelease(ctx context.Context, rel Release) error {
	c, err := g.client(ctx)
	if err != nil {
		return err
	}
	tag, res, err := c.GetTag(g.repo.Owner(), g.repo.Name(), rel.Tag)
	sha := ""
	if err == nil && tag.Commit != nil {
		sha = tag.Commit.SHA
	}
	if err := tagAt("gitea: create the release", rel, sha, giteaCode(res), err); err != nil {
		return err
	}
	_, res, err = c.CreateRelease(g.repo.Owner(), g.repo.Name(), gitea.CreateReleaseOption{
		TagName: rel.Tag, Target: rel.Commit, Title: rel.Name, Note: rel.notes(),
	})
	if err == nil {
		return nil
	}
	return made("gitea: create the release", giteaCode(res), err, func() (bool, error) {
		_, res, err := c.GetReleaseByTag(g.repo.Owner(), g.repo.Name(), rel.Tag)
		return found(giteaCode(res), err)
	})
}

func (g *gitlabClient) CreateRelease(ctx context.Context, rel Release) error {
	tag, res, err := g.c.Tags.GetTag(g.repo.Project, rel.Tag, gitlab.WithContext(ctx))
	sha := ""
	if err == nil && tag.Commit != nil {
		sha = tag.Commit.ID
	}
	if err := tagAt("gitlab: create the release", rel, sha, gitlabCode(res), err); err != nil {
		return err
	}
	_, res, err = g.c.Releases.CreateRelease(g.repo.Project, &gitlab.CreateReleaseOptions{
		TagName: gitlab.Ptr(rel.Tag), Ref: gitlab.Ptr(rel.Commit), Name: gitlab.Ptr(rel.Name), Description: gitlab.Ptr(rel.notes()),
	}, gitlab.WithContext(ctx))
	if err == nil {
		return nil
	}
	return made("gitlab: create the release", gitlabCode(res), err, func() (bool, error) {
		_, res, err := g.c.Releases.GetRelease(g.repo.Project, rel.Tag, gitlab.WithContext(ctx))
		return found(gitlabCode(res), err)
	})
}

// found is whether a look-up that answered code with err found what it
// looked for; an error other than "not found" is an error.
func found(code int, err error) (bool, error) {
	switch {
	case err == nil:
		return true, nil
	case code == http.StatusNotFound:
		return false, nil
	}
	return false, fmt.Errorf("look for the release: %w", err)
}
