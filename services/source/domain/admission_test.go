package domain_test

import (
	"fmt"
	"slices"
	"testing"

	"github.com/sluicehq/sluice/services/source/domain"
)

func waiting(repo string, n int, group string, limit int) []domain.WaitingRun {
	out := make([]domain.WaitingRun, n)
	for i := range out {
		out[i] = domain.WaitingRun{ID: fmt.Sprintf("%s-%d", repo, i), RepositoryID: repo, Group: group, GroupLimit: limit}
	}
	return out
}

func TestAdmit(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name    string
		waiting []domain.WaitingRun
		active  []domain.ActiveRuns
		limits  domain.Limits
		want    []string
	}{
		{name: "no limits admit every run in order",
			waiting: waiting("a", 3, "", 0), want: []string{"a-0", "a-1", "a-2"}},
		{name: "the per-repository limit counts the active runs",
			waiting: waiting("a", 5, "", 0), active: []domain.ActiveRuns{{RepositoryID: "a", Count: 2}},
			limits: domain.Limits{PerRepository: 3}, want: []string{"a-0"}},
		{name: "a group of limit 1 with an active run admits none of it",
			waiting: append(waiting("a", 2, "branch main", 1), domain.WaitingRun{ID: "a-x", RepositoryID: "a", Group: "branch dev", GroupLimit: 1}),
			active:  []domain.ActiveRuns{{RepositoryID: "a", Group: "branch main", Count: 1}},
			want:    []string{"a-x"}},
		{name: "a group admits up to its limit, oldest first",
			waiting: waiting("a", 4, "repository", 3), active: []domain.ActiveRuns{{RepositoryID: "a", Group: "repository", Count: 1}},
			want: []string{"a-0", "a-1"}},
		{name: "groups of the same name in two repositories are two groups",
			waiting: append(waiting("a", 2, "branch main", 1), waiting("b", 2, "branch main", 1)...),
			want:    []string{"a-0", "b-0"}},
		{name: "under the total limit the repository with the fewest active runs goes first",
			waiting: append(waiting("busy", 200, "", 0), waiting("quiet", 1, "", 0)...),
			active:  []domain.ActiveRuns{{RepositoryID: "busy", Count: 3}},
			limits:  domain.Limits{Total: 4}, want: []string{"quiet-0"}},
		{name: "repositories take turns, the oldest first between equals",
			waiting: append(waiting("a", 3, "", 0), waiting("b", 3, "", 0)...),
			limits:  domain.Limits{Total: 4}, want: []string{"a-0", "b-0", "a-1", "b-1"}},
		{name: "a full total admits nothing",
			waiting: waiting("a", 1, "", 0), active: []domain.ActiveRuns{{RepositoryID: "z", Count: 2}},
			limits: domain.Limits{Total: 2}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			if got := domain.Admit(c.waiting, c.active, c.limits); !slices.Equal(got, c.want) {
				t.Errorf("Admit = %v, want %v", got, c.want)
			}
		})
	}
}

// BenchmarkAdmit measures one admission pass over a burst: 100 waiting
// runs in each of 50 repositories, limits of 8 per repository and 100 in
// all.
func BenchmarkAdmit(b *testing.B) {
	var w []domain.WaitingRun
	for r := range 50 {
		w = append(w, waiting(fmt.Sprintf("repo%d", r), 100, "", 0)...)
	}
	for b.Loop() {
		if got := domain.Admit(w, nil, domain.Limits{PerRepository: 8, Total: 100}); len(got) != 100 {
			b.Fatal(len(got))
		}
	}
}
