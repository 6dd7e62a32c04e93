package domain

import "slices"

// Admission limits and the fair queue.
//
// A new run waits (queued, not admitted) until it may start: at most
// ConcurrencyLimit runs of its concurrency group, Limits.PerRepository
// runs of its repository and Limits.Total runs in all are active
// (admitted and not ended) at once. Admit picks the runs that may start
// now: each repository's waiting runs in the order they were made, and
// across repositories the one with the fewest active runs first, so one
// repository's burst of runs does not hold back another's first.

// Limits bound the active runs; 0 is no limit.
type Limits struct {
	PerRepository int
	Total         int
}

// WaitingRun is a run that waits to start.
type WaitingRun struct {
	ID           string
	RepositoryID string
	// Group and GroupLimit are the run's concurrency group and its limit
	// ("" and 0: none).
	Group      string
	GroupLimit int
}

// ActiveRuns counts the active runs of one concurrency group of a
// repository (Group "": the runs of no group).
type ActiveRuns struct {
	RepositoryID string
	Group        string
	Count        int
}

// Admit returns the ids of the waiting runs that may start now, given the
// runs active now. waiting is in the order the runs were made.
func Admit(waiting []WaitingRun, active []ActiveRuns, limits Limits) []string {
	type groupKey struct{ repo, group string }
	perRepo := map[string]int{}
	perGroup := map[groupKey]int{}
	total := 0
	for _, a := range active {
		perRepo[a.RepositoryID] += a.Count
		perGroup[groupKey{a.RepositoryID, a.Group}] += a.Count
		total += a.Count
	}
	// Each repository's queue, the repositories in the order of their
	// oldest waiting run; position is a run's place in waiting.
	type queued struct {
		WaitingRun
		position int
	}
	queues := map[string][]queued{}
	var repos []string
	for i, w := range waiting {
		if _, ok := queues[w.RepositoryID]; !ok {
			repos = append(repos, w.RepositoryID)
		}
		queues[w.RepositoryID] = append(queues[w.RepositoryID], queued{w, i})
	}
	roomIn := func(w WaitingRun) bool {
		return w.Group == "" || perGroup[groupKey{w.RepositoryID, w.Group}] < max(w.GroupLimit, 1)
	}
	var admitted []string
	for limits.Total <= 0 || total < limits.Total {
		// The candidate of each repository with room: its oldest waiting
		// run whose group has room. The repository with the fewest
		// active runs goes first; between equals, the older candidate.
		best, bestAt := "", -1
		for _, repo := range repos {
			if limits.PerRepository > 0 && perRepo[repo] >= limits.PerRepository {
				continue
			}
			at := slices.IndexFunc(queues[repo], func(q queued) bool { return roomIn(q.WaitingRun) })
			if at < 0 {
				continue
			}
			if best == "" || perRepo[repo] < perRepo[best] ||
				(perRepo[repo] == perRepo[best] && queues[repo][at].position < queues[best][bestAt].position) {
				best, bestAt = repo, at
			}
		}
		if best == "" {
			break
		}
		w := queues[best][bestAt].WaitingRun
		queues[best] = slices.Delete(queues[best], bestAt, bestAt+1)
		admitted = append(admitted, w.ID)
		perRepo[best]++
		perGroup[groupKey{best, w.Group}]++
		total++
	}
	return admitted
}
