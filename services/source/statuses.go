package source

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/sluicehq/sluice/platform/events"
	"github.com/sluicehq/sluice/platform/forge"
	"github.com/sluicehq/sluice/platform/sqldb"
	sourceeventsv1 "github.com/sluicehq/sluice/proto/gen/sluice/source/events/v1"
	"github.com/sluicehq/sluice/services/source/domain"
)

// Commit statuses: every time a run is stored, what its commit statuses on
// the repository's forge say (domain.CommitStatuses) is compared with what
// was last said for that commit and context, and each change is published
// as a CommitStatusChanged, in the transaction that stores the run, so
// none is lost. Notify sets them on the forge. The newest run of a commit
// speaks for it: a late change of an older run (a run rerun since) is not
// published.

// publishStatuses enqueues, in tx, the changes of run's commit statuses.
// A repository without a forge has none.
func publishStatuses(ctx context.Context, tx *sql.Tx, run domain.Run) error {
	place, _, err := forgeOf(ctx, tx, run.RepositoryID)
	if err != nil || place.IsZero() {
		return err
	}
	for _, st := range domain.CommitStatuses(run) {
		var seq int64
		err := tx.QueryRowContext(ctx, `INSERT INTO commit_statuses (repository_id, commit_sha, context, run_id, run_created_at, state, description, sequence)
			VALUES ($1, $2, $3, $4, $5, $6, $7, 1)
			ON CONFLICT (repository_id, commit_sha, context) DO UPDATE SET run_id = excluded.run_id, run_created_at = excluded.run_created_at,
				state = excluded.state, description = excluded.description, sequence = commit_statuses.sequence + 1
			WHERE (excluded.run_created_at > commit_statuses.run_created_at
					OR (excluded.run_created_at = commit_statuses.run_created_at AND excluded.run_id >= commit_statuses.run_id))
				AND (excluded.run_id <> commit_statuses.run_id OR excluded.state <> commit_statuses.state
					OR excluded.description <> commit_statuses.description)
			RETURNING sequence`,
			run.RepositoryID, run.Commit, st.Context, run.ID, sqldb.Nanos(run.CreatedAt), string(st.State), st.Description).Scan(&seq)
		if errors.Is(err, sql.ErrNoRows) {
			continue // unchanged, or a newer run's
		}
		if err != nil {
			return fmt.Errorf("record commit status %s of run %s: %w", st.Context, run.ID, err)
		}
		ev, err := events.New(commitStatusToProto(run, place, st, uint64(seq)), run.ID, run.ID)
		if err != nil {
			return err
		}
		if err := events.Enqueue(ctx, tx, ev); err != nil {
			return err
		}
	}
	return nil
}

// forgeOf is, in tx, the forge repository id lives on (none: the zero
// value, also for a repository not there) and whether it makes its
// releases there.
func forgeOf(ctx context.Context, tx *sql.Tx, id string) (place forge.Repo, releases bool, err error) {
	var kind string
	var on int
	err = tx.QueryRowContext(ctx, `SELECT forge_kind, forge_url, forge_project, forge_releases FROM repositories WHERE id = $1`, id).
		Scan(&kind, &place.URL, &place.Project, &on)
	if errors.Is(err, sql.ErrNoRows) {
		return forge.Repo{}, false, nil
	}
	if err != nil {
		return forge.Repo{}, false, fmt.Errorf("read the forge of repository %s: %w", id, err)
	}
	place.Kind = forge.Kind(kind)
	return place, on == 1, nil
}

func commitStatusToProto(run domain.Run, place forge.Repo, st forge.Status, seq uint64) *sourceeventsv1.CommitStatusChanged {
	return &sourceeventsv1.CommitStatusChanged{
		Repository:  runRepositoryRef(run),
		Forge:       place.Proto(),
		RunId:       run.ID,
		Commit:      run.Commit,
		Context:     st.Context,
		State:       st.State.Proto(),
		Description: st.Description,
		Sequence:    seq,
	}
}
