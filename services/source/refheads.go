package source

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"

	"github.com/sluicehq/sluice/services/source/domain"
	"github.com/sluicehq/sluice/services/source/gitmirror"
)

// Missed pushes of branches and tags: a webhook can be lost, so at every
// poll, after the fetch, source compares the mirror's branches and tags
// with what it saw of them last (the table ref_heads) and handles a ref
// that moved, or is new, as its push would have been handled: a run when
// the pipeline's on: section asks for one (domain.Unwanted), none
// otherwise. A ref whose commit has a run already (its webhook came) is
// only recorded. The repository's own branch is the poll's (poll.go).

// maxRefsPerPoll bounds the moved refs one poll of a repository handles;
// the others wait for the next poll.
const maxRefsPerPoll = 100

// snapshotMarker is the ref_heads row that says the snapshot of a
// repository's refs was taken.
const snapshotMarker = ""

// reconcileRefs handles the repository's branches and tags that moved
// since the last poll.
func (s *Service) reconcileRefs(ctx context.Context, repo domain.Repository) error {
	refs, err := s.mirrors.Refs(repo.ID)
	if err != nil {
		return err
	}
	seen, err := s.store.RefHeads(ctx, repo.ID)
	if err != nil {
		return err
	}
	if _, ok := seen[snapshotMarker]; !ok {
		// Registered before ref_heads: what is there now is history.
		return s.store.InTx(ctx, func(tx *sql.Tx) error { return snapshotRefs(ctx, tx, repo.ID, refs) })
	}
	var errs []error
	handled := 0
	for _, ref := range slices.Sorted(maps.Keys(refs)) {
		object := refs[ref]
		if ref == "refs/heads/"+repo.Branch || seen[ref] == object {
			continue
		}
		if b, ok := strings.CutPrefix(ref, "refs/heads/"); ok && domain.ReservedBranch(b) != "" {
			continue
		}
		if handled == maxRefsPerPoll {
			break
		}
		handled++
		if err := s.pollRef(ctx, repo, ref, object); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", ref, err))
		}
	}
	for ref := range seen {
		if _, ok := refs[ref]; !ok && ref != snapshotMarker {
			// Deleted: made again, it is new.
			errs = append(errs, s.store.ForgetRefHead(ctx, repo.ID, ref))
		}
	}
	return errors.Join(errs...)
}

// pollRef handles a ref that moved to object as its push would have been:
// a run when the pipeline asks for one, recorded as seen either way.
func (s *Service) pollRef(ctx context.Context, repo domain.Repository, ref, object string) error {
	res, err := s.mirrors.Resolve(repo.ID, ref)
	switch {
	case errors.Is(err, gitmirror.ErrNotFound):
		return nil // gone since the listing
	case errors.Is(err, gitmirror.ErrNotCommit):
		// A tag of a tree or a blob: nothing to run.
		s.log.Debug("poll: a ref that is no commit is recorded", slog.String("repository", repo.Name), slog.String("ref", ref), slog.Any("error", err))
		return s.store.SetRefHead(ctx, repo.ID, ref, object)
	case err != nil:
		return err
	}
	run, err := s.startRun(ctx, repo, res, domain.TriggerPoll, func(tx *sql.Tx, run domain.Run) error {
		if err := setRefHead(ctx, tx, repo.ID, ref, object); err != nil {
			return err
		}
		return enqueueChange(ctx, tx, repo, run, domain.TriggerPoll, "")
	})
	var existing *existingRun
	var no *unwantedRun
	switch {
	case err == nil:
		s.log.Info("poll: a push no webhook announced got its run", slog.String("repository", repo.Name),
			slog.String("ref", ref), slog.String("commit", res.Commit), slog.String("run_id", run.ID))
		return nil
	case errors.As(err, &existing), errors.As(err, &no):
		return s.store.SetRefHead(ctx, repo.ID, ref, object)
	}
	return err
}

// --- the table ref_heads ---

// RefHeads is what the poll last saw of the repository's refs, by ref
// (with the snapshot marker once taken).
func (s *Store) RefHeads(ctx context.Context, repoID string) (map[string]string, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT ref, object_sha FROM ref_heads WHERE repository_id = $1`, repoID)
	if err != nil {
		return nil, fmt.Errorf("read the refs seen: %w", err)
	}
	defer rows.Close()
	out := map[string]string{}
	for rows.Next() {
		var ref, object string
		if err := rows.Scan(&ref, &object); err != nil {
			return nil, fmt.Errorf("read the refs seen: %w", err)
		}
		out[ref] = object
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read the refs seen: %w", err)
	}
	return out, nil
}

// SetRefHead records that ref was seen at object.
func (s *Store) SetRefHead(ctx context.Context, repoID, ref, object string) error {
	return s.InTx(ctx, func(tx *sql.Tx) error { return setRefHead(ctx, tx, repoID, ref, object) })
}

func setRefHead(ctx context.Context, tx *sql.Tx, repoID, ref, object string) error {
	_, err := tx.ExecContext(ctx, `INSERT INTO ref_heads (repository_id, ref, object_sha) VALUES ($1, $2, $3)
		ON CONFLICT (repository_id, ref) DO UPDATE SET object_sha = excluded.object_sha`, repoID, ref, object)
	if err != nil {
		return fmt.Errorf("record %s as seen: %w", ref, err)
	}
	return nil
}

// ForgetRefHead forgets a ref that is gone.
func (s *Store) ForgetRefHead(ctx context.Context, repoID, ref string) error {
	if _, err := s.db.ExecContext(ctx, `DELETE FROM ref_heads WHERE repository_id = $1 AND ref = $2`, repoID, ref); err != nil {
		return fmt.Errorf("forget %s: %w", ref, err)
	}
	return nil
}

// snapshotRefs records refs as seen, and the snapshot as taken: they are
// the repository's history, which starts no run.
func snapshotRefs(ctx context.Context, tx *sql.Tx, repoID string, refs map[string]string) error {
	for ref, object := range refs {
		if err := setRefHead(ctx, tx, repoID, ref, object); err != nil {
			return err
		}
	}
	return setRefHead(ctx, tx, repoID, snapshotMarker, "")
}
