package stepcache

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicehq/sluice/platform/stepgraph"
	sourcev1 "github.com/sluicehq/sluice/proto/gen/sluice/source/v1"
)

// Stage is the caches of one attempt of a stage: Prepare evaluates their
// keys once the workspace is checked out, Restore runs before the first
// step and Save after the steps succeeded. Each says what it did in the
// stage's log, through say; none fails the stage. Their error is the
// context's, when the attempt was interrupted.
type Stage struct {
	store   *Store
	scope   Scope
	dirs    Dirs
	entries []stageEntry
	say     func(string)
}

type stageEntry struct {
	key   string
	paths []string
	hit   bool
}

// Attempt is what Prepare needs of a stage's attempt.
type Attempt struct {
	// Specs are the stage's caches, as the pipeline declares them.
	Specs []Spec
	// RepositoryID and DefaultBranch (the repository's watched branch,
	// "" when not known) scope the caches with Facts' branch or ref.
	RepositoryID, DefaultBranch string
	// Facts are what the keys know of the run.
	Facts stepgraph.Facts
	// Dirs are the attempt's workspace, checked out, and home.
	Dirs Dirs
	// Say writes a line into the stage's log.
	Say func(string)
}

// Prepare evaluates the keys of a's caches and binds the stage's cache
// store, bucket. A key that cannot be evaluated, or a store that cannot
// be opened, leaves the caches out (and says so).
func Prepare(ctx context.Context, js jetstream.JetStream, bucket string, limits Limits, log *slog.Logger, a Attempt) (*Stage, error) {
	scope := Scope{RepositoryID: a.RepositoryID, Repository: a.Facts.Repository, Branch: a.Facts.Branch, Ref: a.Facts.Ref, DefaultBranch: a.DefaultBranch}
	st := &Stage{scope: scope, dirs: a.Dirs, say: a.Say}
	for _, spec := range a.Specs {
		k, err := ParseKey(spec.Key)
		var key string
		if err == nil {
			key, err = k.Eval(a.Facts, a.Dirs.Workspace)
		}
		if err != nil {
			st.say(fmt.Sprintf("cache %q: no key (%v); the stage runs without it", spec.Key, err))
			continue
		}
		st.entries = append(st.entries, stageEntry{key: key, paths: spec.Paths})
	}
	if len(st.entries) == 0 {
		return st, nil
	}
	store, err := Open(ctx, js, bucket, limits, log)
	if err != nil {
		if ctx.Err() != nil {
			return nil, context.Cause(ctx)
		}
		st.say(fmt.Sprintf("caches are not kept: %v", err))
		st.entries = nil
		return st, nil
	}
	st.store = store
	return st, nil
}

// Restore restores each cache, the run branch's or else the default
// branch's.
func (st *Stage) Restore(ctx context.Context) error {
	for i := range st.entries {
		e := &st.entries[i]
		began := time.Now()
		r, err := st.store.Restore(ctx, st.scope, e.key, e.paths, st.dirs)
		switch {
		case ctx.Err() != nil:
			return context.Cause(ctx)
		case err != nil:
			st.say(fmt.Sprintf("cache %s: not restored (%v); the steps run without it (what it wrote is removed)", e.key, err))
			// A broken archive is replaced by the next save.
		case r.Object == "":
			st.say(fmt.Sprintf("cache %s: not found; it is saved if the steps succeed", e.key))
		default:
			e.hit = true
			_, own := st.scope.own()
			from := "branch " + own
			if st.scope.Branch == "" {
				from = own
			}
			if r.Fallback {
				from = "the default branch " + st.scope.DefaultBranch
			}
			st.say(fmt.Sprintf("cache %s: restored from %s (%s, %d files) in %s", e.key, from, size(r.Size), r.Files, time.Since(began).Round(time.Millisecond)))
		}
	}
	return nil
}

// Save saves the caches Restore did not find, under the run's branch.
func (st *Stage) Save(ctx context.Context) error {
	for _, e := range st.entries {
		if e.hit {
			continue
		}
		began := time.Now()
		saved, err := st.store.Save(ctx, st.scope, e.key, e.paths, st.dirs)
		switch {
		case ctx.Err() != nil:
			return context.Cause(ctx)
		case errors.Is(err, ErrTooLarge):
			st.say(fmt.Sprintf("cache %s: not saved: %v (%d bytes)", e.key, err, st.store.limits.MaxEntrySize))
		case err != nil:
			st.say(fmt.Sprintf("cache %s: not saved (%v)", e.key, err))
		case saved.Object == "":
			st.say(fmt.Sprintf("cache %s: not saved: none of its paths exists", e.key))
		default:
			line := fmt.Sprintf("cache %s: saved (%s, %d files) in %s", e.key, size(saved.Size), saved.Files, time.Since(began).Round(time.Millisecond))
			if saved.Evicted > 0 {
				line += fmt.Sprintf("; %d least recently used caches evicted", saved.Evicted)
			}
			st.say(line)
		}
	}
	return nil
}

// size is n bytes for people.
func size(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d bytes", n)
}

// SpecsOf are a stage's cache: entries, as its pipeline declares them.
func SpecsOf(pb []*sourcev1.CacheSpec) []Spec {
	var specs []Spec
	for _, c := range pb {
		specs = append(specs, Spec{Key: c.GetKey(), Paths: slices.Clone(c.GetPaths())})
	}
	return specs
}
