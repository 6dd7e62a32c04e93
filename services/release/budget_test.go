package release

import (
	"context"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/format/packfile"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/storer"
	"github.com/go-git/go-git/v5/storage/memory"

	releaseeventsv1 "github.com/sluicehq/sluice/proto/gen/sluice/release/events/v1"
	releasev1 "github.com/sluicehq/sluice/proto/gen/sluice/release/v1"

	"github.com/sluicehq/sluice/platform/events"
)

// commitMany commits n commits with message(i) on the checked-out branch,
// each with the tree of the one before, and returns the last one's sha.
// They are made in memory and stored as one pack: thousands in a moment.
func (h *harness) commitMany(n int, message func(i int) string) string {
	h.t.Helper()
	repo := h.repo.Git()
	head, err := repo.Head()
	if err != nil {
		h.t.Fatal(err)
	}
	parent, err := repo.CommitObject(head.Hash())
	if err != nil {
		h.t.Fatal(err)
	}
	mem := memory.NewStorage()
	sig := parent.Author
	hash := parent.Hash
	hashes := make([]plumbing.Hash, 0, n)
	for i := range n {
		sig.When = sig.When.Add(time.Second)
		c := &object.Commit{Author: sig, Committer: sig, Message: message(i), TreeHash: parent.TreeHash, ParentHashes: []plumbing.Hash{hash}}
		obj := mem.NewEncodedObject()
		if err := c.Encode(obj); err != nil {
			h.t.Fatal(err)
		}
		if hash, err = mem.SetEncodedObject(obj); err != nil {
			h.t.Fatal(err)
		}
		hashes = append(hashes, hash)
	}
	packs, ok := repo.Storer.(storer.PackfileWriter)
	if !ok {
		h.t.Fatalf("the repository's storage %T writes no packs", repo.Storer)
	}
	w, err := packs.PackfileWriter()
	if err != nil {
		h.t.Fatal(err)
	}
	if _, err := packfile.NewEncoder(w, mem, false).Encode(hashes, 0); err != nil {
		h.t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		h.t.Fatal(err)
	}
	if err := repo.Storer.SetReference(plumbing.NewHashReference(head.Name(), hash)); err != nil {
		h.t.Fatal(err)
	}
	return hash.String()
}

// A first release of 10,000 commits with long subjects has a changelog
// larger than an event may be: ReleasePublished carries it cut, with a
// mark saying how much is left out, the release itself keeps all of it,
// and the stage goes on.
func TestHugeChangelogIsCutInTheEventOnly(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.initialCommit()
	subject := strings.Repeat("a long subject ", 8)
	head := h.commitMany(maxCommits-1, func(i int) string { return fmt.Sprintf("fix: %d %s\n", i, subject) })
	runID := h.run(head, "main", h.pipeline())
	// Listing and classifying 10,000 commits takes a while under the race
	// detector: longer than waitFor.
	for deadline := time.Now().Add(2 * time.Minute); ; time.Sleep(100 * time.Millisecond) {
		if fin := eventsOf[*releaseeventsv1.ReleaseFinished](h.events, runID); len(fin) > 0 {
			if fin[0].GetOutcome() != releaseeventsv1.ReleaseOutcome_RELEASE_OUTCOME_SUCCEEDED {
				t.Fatalf("the release stage ended %v: %s", fin[0].GetOutcome(), fin[0].GetReason())
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the release stage did not end")
		}
	}

	published := eventsOf[*releaseeventsv1.ReleasePublished](h.events, runID)
	if len(published) != 1 {
		t.Fatalf("%d ReleasePublished; want 1", len(published))
	}
	changelog := published[0].GetRelease().GetChangelog()
	m := regexp.MustCompile(`\n… \[cut: (\d+) more lines, [0-9.]+ [KM]iB\]$`).FindStringSubmatch(changelog)
	if m == nil || !strings.HasPrefix(changelog, "### Fixes\n\n- fix: 9998 ") {
		t.Fatalf("the published changelog starts %q and ends %q; want it cut with a mark", changelog[:min(len(changelog), 40)], changelog[max(0, len(changelog)-80):])
	}
	cut, _ := strconv.Atoi(m[1])
	if kept := strings.Count(changelog, "\n- "); kept+cut < maxCommits-1 || kept < 1000 {
		t.Errorf("%d commits kept and %d lines cut; want the %d commits accounted for", kept, cut, maxCommits-1)
	}
	rels, err := h.client.ListReleases(context.Background(), &releasev1.ListReleasesRequest{Repository: repoName})
	if err != nil {
		t.Fatal(err)
	}
	full := rels.GetReleases()[0].GetChangelog()
	if len(full) <= events.MaxBody || strings.Contains(full, "[cut: ") || strings.Count(full, "\n- ") != maxCommits {
		t.Errorf("the release's own changelog: %d bytes, %d commits; want all %d of them", len(full), strings.Count(full, "\n- "), maxCommits)
	}
}
