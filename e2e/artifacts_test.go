package e2e

import (
	"archive/tar"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// `sluice artifacts <run>` lists a build's artifacts with their sizes and
// digests, and `sluice artifact get` downloads one, checked, to -o; an
// unknown name is refused naming those the build has. Directories and
// globs reach test and a deploy unpacked, and the build's cache the next
// run.
func TestDownloadAnArtifactOnTheAllInOne(t *testing.T) {
	t.Parallel()
	p, _ := startAllInOne(t, t.TempDir())
	const content = "hello from an artifact\n"
	repo := newGitRepo(t, map[string]string{".sluice.yaml": `version: 1
build:
  cache:
    - {key: "deps-${{ hashFiles('deps.lock') }}", paths: [.deps, ~/tools]}
  steps:
    - name: fetch
      run: if [ -f .deps/got ]; then echo "deps from $(cat .deps/got), tool $(cat ~/tools/t)"; else mkdir -p .deps ~/tools && echo "$SLUICE_RUN_ID" > .deps/got && echo t1 > ~/tools/t; fi
    - name: compile
      run: mkdir -p out out/web/css out/a; printf 'hello from an artifact\n' > out/app; echo page > out/web/index.html; echo css > out/web/css/site.css; echo log > out/a/b.log; echo no > out/a/b.txt
  artifacts:
    - {name: app, path: out/app}
    - {name: web, path: out/web}
    - {name: logs, path: "out/**/*.log"}
test:
  steps:
    - name: fetched
      run: test "$(cat out/web/css/site.css)" = css && test -f out/a/b.log && test ! -f out/a/b.txt
release:
  branches: [main]
  environments:
    - name: staging
      deploy: test "$(cat "$SLUICE_ARTIFACTS_DIR/web/index.html")" = page && test -f "$SLUICE_ARTIFACTS_DIR/logs/a/b.log"
`, "deps.lock": "a 1.0\n"})
	mustCLI(t, p.env, "repo", "add", repo.Dir, "--name", "kept")
	if out, code := cli(t, p.env, "trigger", "kept", "--follow"); code != 0 {
		t.Fatalf("trigger --follow exit %d:\n%s", code, out)
	}
	runID := lastRunID(t, p, "kept")
	sum := sha256.Sum256([]byte(content))
	digest := hex.EncodeToString(sum[:])
	if list := mustCLI(t, p.env, "artifacts", runID); !strings.Contains(list, "app") || !strings.Contains(list, digest) || !strings.Contains(list, "23") {
		t.Errorf("sluice artifacts:\n%s", list)
	}

	dest := filepath.Join(t.TempDir(), "app")
	out := mustCLI(t, p.env, "artifact", "get", runID, "app", "-o", dest)
	if !strings.Contains(out, digest) {
		t.Errorf("artifact get said:\n%s", out)
	}
	if got, err := os.ReadFile(dest); err != nil || string(got) != content {
		t.Fatalf("the downloaded file: %q, %v", got, err)
	}
	// A directory, kept as a gzipped tar of its files.
	if list := mustCLI(t, p.env, "artifacts", runID); !strings.Contains(list, "tar.gz") {
		t.Errorf("sluice artifacts does not show the directory's format:\n%s", list)
	}
	web := filepath.Join(t.TempDir(), "web.tar.gz")
	mustCLI(t, p.env, "artifact", "get", runID, "web", "-o", web)
	if got := tarNames(t, web); strings.Join(got, " ") != "css/ css/site.css index.html" {
		t.Errorf("web.tar.gz holds %v", got)
	}
	if out, code := cli(t, p.env, "artifact", "get", runID, "nope", "-o", dest+"2"); code == 0 || !strings.Contains(out, `no artifact "nope" (it has app, web, logs)`) {
		t.Errorf("an unknown artifact: exit %d:\n%s", code, out)
	}
	if _, err := os.Stat(dest + "2"); !os.IsNotExist(err) {
		t.Errorf("a refused download left a file: %v", err)
	}

	// The next run restores the build's cache the first one saved (the
	// build service's NATS user may put, read, touch and list its store).
	if logs := mustCLI(t, p.env, "logs", runID); !strings.Contains(logs, ": saved (") {
		t.Fatalf("the first run saved no cache:\n%s", logs)
	}
	repo.CommitFiles("docs", map[string]string{"NOTES.md": "notes\n"})
	if out, code := cli(t, p.env, "trigger", "kept", "--follow"); code != 0 {
		t.Fatalf("second trigger --follow exit %d:\n%s", code, out)
	}
	logs := mustCLI(t, p.env, "logs", lastRunID(t, p, "kept"))
	if !regexp.MustCompile(`--- cache deps-[0-9a-f]{32}: restored from branch main \(.*, 2 files\)`).MatchString(logs) ||
		!strings.Contains(logs, "deps from "+runID+", tool t1") {
		t.Errorf("the second run did not restore the first one's cache:\n%s", logs)
	}
}

// tarNames are the names in the gzipped tar at path, sorted.
func tarNames(t *testing.T, path string) []string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	var names []string
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, hdr.Name)
	}
	slices.Sort(names)
	return names
}
