package e2e

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// `sluice artifacts <run>` lists a build's artifacts with their sizes and
// digests, and `sluice artifact get` downloads one, checked, to -o; an
// unknown name is refused naming those the build has.
func TestDownloadAnArtifactOnTheAllInOne(t *testing.T) {
	t.Parallel()
	p, _ := startAllInOne(t, t.TempDir())
	const content = "hello from an artifact\n"
	repo := newGitRepo(t, map[string]string{".sluice.yaml": `version: 1
build:
  steps:
    - name: compile
      run: mkdir -p out; printf 'hello from an artifact\n' > out/app
  artifacts:
    - {name: app, path: out/app}
`})
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
	if out, code := cli(t, p.env, "artifact", "get", runID, "nope", "-o", dest+"2"); code == 0 || !strings.Contains(out, `no artifact "nope" (it has app)`) {
		t.Errorf("an unknown artifact: exit %d:\n%s", code, out)
	}
	if _, err := os.Stat(dest + "2"); !os.IsNotExist(err) {
		t.Errorf("a refused download left a file: %v", err)
	}
}
