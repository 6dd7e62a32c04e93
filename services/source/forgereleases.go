package source

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"github.com/sluicehq/sluice/platform/events"
	releaseeventsv1 "github.com/sluicehq/sluice/proto/gen/sluice/release/events/v1"
	sourceeventsv1 "github.com/sluicehq/sluice/proto/gen/sluice/source/events/v1"
	"github.com/sluicehq/sluice/services/source/domain"
)

// Releases on the forge: as source folds a ReleasePublished of a
// repository whose forge_releases is on, it publishes, in the same
// transaction, a ForgeReleaseRequested: notify makes the git tag and the
// forge's release with the changelog (it sets commit statuses the same
// way). The fold runs once per event, so the request is published once
// per release.
//
// The tag is the one a tag's run was of, or "v" and the version. The tag
// Sluice makes comes back as a tag push (its webhook, or the poll's look
// at the refs): the commit is recorded as run for the tag's key
// (domain.CommitKey), here, so that push makes no second run.

// requestForgeRelease enqueues, in tx, the forge release of p, released
// from run; it reports whether it did (the repository makes its releases
// on its forge). A release the request cannot be made of (a tag longer
// than the event's rule) is logged and left out: the fold goes on.
func (s *Service) requestForgeRelease(ctx context.Context, tx *sql.Tx, run domain.Run, p *releaseeventsv1.ReleasePublished) (bool, error) {
	place, on, err := forgeOf(ctx, tx, run.RepositoryID)
	if err != nil {
		return false, err
	}
	rel := p.GetRelease()
	if !on || place.IsZero() || rel.GetCommit() != run.Commit {
		return false, nil
	}
	tag := releaseTag(run, rel.GetVersion())
	ev, err := events.New(&sourceeventsv1.ForgeReleaseRequested{
		Repository: runRepositoryRef(run),
		Forge:      place.Proto(),
		RunId:      run.ID,
		ReleaseId:  rel.GetId(),
		Version:    rel.GetVersion(),
		Tag:        tag,
		Commit:     run.Commit,
		Changelog:  rel.GetChangelog(),
	}, rel.GetId(), run.ID)
	if errors.Is(err, events.ErrInvalidEvent) {
		s.log.Warn("release not made on the forge: it cannot be asked for", slog.String("run_id", run.ID),
			slog.String("repository", run.Repository), slog.String("version", rel.GetVersion()), slog.Any("error", err))
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if err := events.Enqueue(ctx, tx, ev); err != nil {
		return false, err
	}
	_, err = tx.ExecContext(ctx, `INSERT INTO branch_commits (repository_id, branch, commit_sha, run_id) VALUES ($1, $2, $3, $4)
		ON CONFLICT (repository_id, branch, commit_sha) DO NOTHING`, run.RepositoryID, domain.CommitKey("", "refs/tags/"+tag), run.Commit, run.ID)
	if err != nil {
		return false, fmt.Errorf("record the commit of tag %s as run: %w", tag, err)
	}
	return true, nil
}

// releaseTag is the git tag of run's release of version: the tag a tag's
// run was of, else the version ("v1.2.3").
func releaseTag(run domain.Run, version string) string {
	if tag, ok := strings.CutPrefix(run.Ref, "refs/tags/"); ok && tag != "" {
		return tag
	}
	return version
}
