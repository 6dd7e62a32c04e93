package build_test

import (
	"regexp"
	"strings"
	"testing"

	buildv1 "github.com/sluicehq/sluice/proto/gen/sluice/build/v1"
	sourcev1 "github.com/sluicehq/sluice/proto/gen/sluice/source/v1"
)

// A cache the first run saved is restored by the next run of the branch,
// and by a run of another branch from the default branch's; a changed
// key misses.
func TestCacheIsRestoredOnTheNextRun(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	spec := func() *sourcev1.BuildSpec {
		return &sourcev1.BuildSpec{
			Caches: []*sourcev1.CacheSpec{{Key: "deps-${{ hashFiles('deps.lock') }}", Paths: []string{".deps", "~/tools"}}},
			Steps: []*sourcev1.Step{{Name: "fetch", Run: `if [ -f .deps/fetched ]; then echo "cached $(cat .deps/fetched) $(cat ~/tools/tool)"; ` +
				`else mkdir -p .deps ~/tools && echo "$SLUICE_RUN_ID" > .deps/fetched && echo t1 > ~/tools/tool && echo fetched; fi`}},
		}
	}
	repo := gitRepo(t, map[string]string{"deps.lock": "a 1.0\n"})
	run := func(branch, lock string) (string, []string) {
		t.Helper()
		r := repo
		if lock != "" {
			r = gitRepo(t, map[string]string{"deps.lock": lock})
		}
		req := runRequest(r, spec())
		req.Repository.DefaultBranch = "main"
		req.Branch, req.Ref = branch, "refs/heads/"+branch
		h.publish(t, req)
		if fin := h.finished(t, req.GetRunId()); fin.GetStatus() != buildv1.BuildStatus_BUILD_STATUS_SUCCEEDED {
			t.Fatalf("BuildFinished %v", fin)
		}
		return req.GetRunId(), texts(h.logs(t, req.GetRunId()).GetLines())
	}
	has := func(lines []string, pattern string) bool {
		re := regexp.MustCompile(pattern)
		for _, l := range lines {
			if parts := strings.SplitN(l, "|", 3); len(parts) == 3 && re.MatchString(parts[2]) {
				return true
			}
		}
		return false
	}

	first, lines := run("main", "")
	if !has(lines, `^--- cache deps-[0-9a-f]{32}: not found`) || !has(lines, `^fetched$`) || !has(lines, `^--- cache deps-[0-9a-f]{32}: saved \(.*, 2 files\)`) {
		t.Fatalf("first run's log:\n%s", strings.Join(lines, "\n"))
	}
	_, lines = run("main", "")
	if !has(lines, `^--- cache deps-[0-9a-f]{32}: restored from branch main \(.*, 2 files\)`) || !has(lines, "^cached "+first+" t1$") || has(lines, "saved") {
		t.Errorf("second run's log (want the first run's cache, not saved again):\n%s", strings.Join(lines, "\n"))
	}
	_, lines = run("feature/x", "")
	if !has(lines, `restored from the default branch main`) || !has(lines, "^cached "+first+" t1$") {
		t.Errorf("a feature branch's log (want main's cache):\n%s", strings.Join(lines, "\n"))
	}
	_, lines = run("main", "a 2.0\n")
	if !has(lines, `not found`) || !has(lines, `^fetched$`) {
		t.Errorf("a changed lock file's log (want a miss):\n%s", strings.Join(lines, "\n"))
	}
}

// A key that cannot be evaluated leaves the cache out; the build goes on.
func TestCacheWithoutAKeyIsLeftOut(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	req := runRequest(gitRepo(t, map[string]string{"main.go": "package main\n"}), &sourcev1.BuildSpec{
		Caches: []*sourcev1.CacheSpec{{Key: "deps-${{ branch }}", Paths: []string{".deps"}}},
		Steps:  []*sourcev1.Step{{Name: "a", Run: "echo ran"}},
	})
	req.Branch, req.Ref = "feature/x", "refs/heads/feature/x"
	h.publish(t, req)
	if fin := h.finished(t, req.GetRunId()); fin.GetStatus() != buildv1.BuildStatus_BUILD_STATUS_SUCCEEDED {
		t.Fatalf("BuildFinished %v", fin)
	}
	lines := h.logs(t, req.GetRunId()).GetLines()
	if find(lines, `--- cache "deps-${{ branch }}": no key`) < 0 {
		t.Errorf("log:\n%s", strings.Join(texts(lines), "\n"))
	}
}
