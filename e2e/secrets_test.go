package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/platform/gitauth"
	"github.com/sluicehq/sluice/platform/gittest"
)

// leakyPipeline hands a step two secrets and has it print them in every
// form it can make (the file names no value: values live in the secret
// store), try the platform's files and other processes' environments, and
// prove it got the value by printing its hash.
const leakyPipeline = `version: 1
build:
  steps:
    - name: leak
      env:
        TOKEN: {secret: CANARY_TOKEN}
        SHARED: {secret: CANARY_SHARED}
      run: |
        printf 'sha:%s\n' "$(printf '%s' "$TOKEN" | sha256sum | cut -c1-64)"
        echo "plain: $TOKEN and $SHARED"
        printf '%s' "$TOKEN" | base64 -w0; echo
        printf 'user:%s' "$TOKEN" | base64 -w0; echo
        printf '%s' "$TOKEN" | od -An -tx1 | tr -d ' \n'; echo
        printf '%s\n' "$TOKEN" | sed 's/"/\\"/g'
        printf '%s\n' "$TOKEN" | sed -e 's/+/%2B/g' -e 's/ /+/g' -e 's/"/%22/g' -e 's/&/%26/g' -e 's#/#%2F#g'
        printf '%s' "${TOKEN%??????????}"; sleep 0.3; printf '%s\n' "${TOKEN#"${TOKEN%??????????}"}"
        echo "$SHARED" >&2
        cat /proc/[0-9]*/environ 2>/dev/null | tr '\0' '\n' | grep -v -e '^TOKEN=' -e '^SHARED='
        ls ../.. ../../.. 2>&1 | head -40
        cat ../../../admin-token ../../../secret-key 2>&1
        for db in ../../build.db ../../../source/source.db ../../../notify/notify.db; do head -c 200000 "$db" 2>&1 | tr -c '[:print:]\n' ' ' | head -50; done
        for f in /proc/[0-9]*/cmdline; do tr '\0' ' ' < "$f"; echo; done 2>/dev/null | grep -i -e password -e secret -e token || true
test:
  steps:
    - name: unit
      env:
        SHARED: {secret: CANARY_SHARED}
      run: |
        echo "testing with $SHARED"
        mkdir -p reports
        name=$(printf '%s' "$SHARED" | sed -e 's/&/\&amp;/g' -e 's/"/\&quot;/g')
        printf '<testsuite name="s"><testcase classname="c" name="uses %s"/></testsuite>\n' "$name" > reports/junit.xml
  reports:
    - path: reports/junit.xml
      format: junit
release:
  branches: [main]
  environments:
    - name: staging
      deploy: echo "deploying with $KEY"
      env:
        KEY: {secret: CANARY_SHARED}
`

// canary is a secret value with the characters that make its JSON and URL
// forms differ from it.
func canary(t *testing.T, kind string) string {
	t.Helper()
	return "canary-" + kind + "-" + randomHex(t) + ` "q" & a/b+c`
}

func randomHex(t *testing.T) string {
	t.Helper()
	b := make([]byte, 12)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// forms are the encodings of v a step printed, which must appear nowhere.
func forms(v string) []string {
	js, _ := json.Marshal(v)
	return []string{
		v,
		base64.StdEncoding.EncodeToString([]byte(v)),
		hex.EncodeToString([]byte(v)),
		url.QueryEscape(v),
		strings.Trim(string(js), `"`),
		strings.ReplaceAll(v, `"`, `\"`),
	}
}

// TestSecretLeakHunt sets secrets with the CLI, runs a pipeline whose step
// prints them in every encoding (and whose test report names one), and
// searches for every form of them, of the repository's webhook secret, of
// its credential (a token its git server wants) and of the subscription's
// secret in the CLI's output, the platform's
// terminal output, every delivered webhook and every file of the data
// directory (its log, the databases, the NATS store with every event).
func TestSecretLeakHunt(t *testing.T) {
	dataDir := t.TempDir()
	// A credential in the platform's own environment, as the NATS and
	// database passwords are in a service's: a step must not read it.
	processCanary := "canary-process-" + randomHex(t)
	t.Setenv("SLUICE_E2E_PROCESS_CANARY", processCanary)
	p, pr := startAllInOne(t, dataDir)
	// The platform's own credentials, which live in its data directory.
	var ownFiles []string
	for _, name := range []string{"admin-token", "secret-key"} {
		b, err := os.ReadFile(filepath.Join(dataDir, name))
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(string(b), "\n") {
			if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
				ownFiles = append(ownFiles, line)
			}
		}
	}
	// The subscription's signing secret: given once (a flag of subscribe),
	// never shown again, kept encrypted.
	subscription := "canary-subscription-" + randomHex(t)
	sub := newSubscriber(t, subscription)
	mustCLI(t, p.env, "subscribe", "--url", sub.srv.URL, "--secret", subscription)

	token, shared := canary(t, "token"), canary(t, "shared")
	repo := newGitRepo(t, map[string]string{".sluice.yaml": leakyPipeline})
	// The repository is private: served over HTTP only with a token (its
	// repository credential, without spaces, which a token cannot have).
	// Source reads it, and build, test and release check it out, with the
	// token; without it, it cannot be registered.
	gitToken := "canary-gittoken-" + randomHex(t) + `-"q"&a/b+c`
	server := gittest.ServeHTTP(t, filepath.Dir(repo.Dir), gitauth.DefaultUsername, gitToken)
	repoURL := server.URL + "/" + filepath.Base(repo.Dir)
	refused, code := cli(t, p.env, "repo", "add", repoURL, "--name", "leaky")
	if code == 0 || !strings.Contains(refused, "needs a credential") || !strings.Contains(refused, "--git-token-file") {
		t.Fatalf("repo add of a private repository without its token: exit %d:\n%s\nwant a refusal saying how to give it", code, refused)
	}
	tokenFile := filepath.Join(t.TempDir(), "git-token")
	if err := os.WriteFile(tokenFile, []byte(gitToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// The webhook secret is shown once, when the repository is added, and
	// never again.
	added := mustCLI(t, p.env, "repo", "add", repoURL, "--name", "leaky", "--git-token-file", tokenFile)
	webhook := regexp.MustCompile(`with secret ([0-9a-f]{64})`).FindStringSubmatch(added)
	if webhook == nil {
		t.Fatalf("repo add shows no webhook secret:\n%s", added)
	}
	outputs := []string{refused}
	outputs = append(outputs, cliStdin(t, p.env, token+"\n", "secret", "set", "leaky", "CANARY_TOKEN"))
	outputs = append(outputs, cliStdin(t, p.env, shared, "secret", "set", "--platform", "CANARY_SHARED"))
	ls := mustCLI(t, p.env, "secret", "ls", "leaky")
	if !strings.Contains(ls, "CANARY_TOKEN") {
		t.Fatalf("secret ls:\n%s", ls)
	}
	outputs = append(outputs, ls, mustCLI(t, p.env, "secret", "ls", "--platform"))

	// The live event stream (WatchEvents), as a subscriber of
	// `sluice events` sees it for the whole run.
	watch := startProc(t, "sluice events", p.env, bin(t, "sluice"), "events", "--output", "json")
	follow, code := cli(t, p.env, "trigger", "leaky", "--follow")
	if code != 0 {
		t.Fatalf("trigger --follow exit %d:\n%s", code, follow)
	}
	runID := lastRunID(t, p, "leaky")
	logs := mustCLI(t, p.env, "logs", runID)
	outputs = append(outputs, follow, logs, mustCLI(t, p.env, "show", runID), mustCLI(t, p.env, "show", runID, "--output", "json"),
		mustCLI(t, p.env, "logs", runID, "--output", "json"), mustCLI(t, p.env, "deliveries"),
		mustCLI(t, p.env, "repo", "ls"), mustCLI(t, p.env, "repo", "ls", "--output", "json"))

	// The step had the value: its hash is right.
	sum := sha256.Sum256([]byte(token))
	if !strings.Contains(logs, "sha:"+hex.EncodeToString(sum[:])) {
		t.Fatalf("the step did not get the secret's value; its log:\n%s", logs)
	}
	// And every form it printed was masked.
	if n := strings.Count(logs, "***"); n < 10 {
		t.Errorf("%d masks in the log, want at least 10:\n%s", n, logs)
	}
	for _, want := range []string{"testing with ***", "deploying with ***"} {
		if !strings.Contains(logs, want) {
			t.Errorf("the log lacks %q: a secret of the test step or the deploy is not masked:\n%s", want, logs)
		}
	}
	// The step tried the platform's files and was refused (the sandbox).
	for _, want := range []string{"admin-token: Permission denied", "secret-key: Permission denied", "build.db' for reading: Permission denied", "source.db' for reading: Permission denied"} {
		if !strings.Contains(logs, want) {
			t.Errorf("the log lacks %q:\n%s", want, logs)
		}
	}
	sub.waitFor("dev.cdevents.pipelinerun.finished.0.3.0", runID)
	waitOutput(t, watch, "dev.cdevents.pipelinerun.finished.0.3.0")
	watch.stop()
	if !strings.Contains(watch.out.String(), runID) {
		t.Fatalf("sluice events saw nothing of run %s:\n%s", runID, watch.out.String())
	}
	outputs = append(outputs, watch.out.String())

	if n := server.Refused(); n == 0 {
		t.Error("the git server refused no request: the repository did not need its token")
	}
	canaries := []string{token, shared, subscription, webhook[1], processCanary, gitToken}
	huntFor := func(where, text string, values []string) {
		t.Helper()
		for _, v := range values {
			for _, f := range forms(v) {
				if strings.Contains(text, f) {
					t.Errorf("%s holds a secret (%q)", where, f)
				}
			}
		}
	}
	// The platform's own credentials are what a step must not get: they
	// must not be in its log, or anything made from it.
	hunt := func(where, text string) {
		t.Helper()
		huntFor(where, text, append(slices.Clone(canaries), ownFiles...))
	}
	for i, out := range outputs {
		hunt("CLI output "+string(rune('a'+i)), out)
	}
	huntFor("repo add's output", added, []string{gitToken}) // it shows the webhook secret, once
	// Its JSON log is <data-dir>/sluice.log, searched with the other files.
	// `sluice up` shows the admin token it made once, there.
	huntFor("the platform's terminal output", pr.out.String(), canaries)
	sub.mu.Lock()
	for i, body := range sub.bodies {
		hunt("delivery "+sub.types[i], body)
	}
	if len(sub.bodies) == 0 {
		t.Error("no deliveries to search")
	}
	sub.mu.Unlock()

	// Stop the platform so its databases and the NATS store are complete
	// on disk, then read every file.
	pr.stop()
	files := 0
	err := filepath.WalkDir(dataDir, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		files++
		for _, v := range canaries {
			for _, f := range forms(v) {
				if bytes.Contains(b, []byte(f)) {
					t.Errorf("%s holds a secret (%q)", path, f)
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if files < 5 {
		t.Fatalf("only %d files in the data directory", files)
	}
	t.Logf("searched %d CLI outputs, %d bytes of log, %d deliveries and %d files", len(outputs), len(pr.out.String()), len(sub.bodies), files)
}

// cliStdin runs the CLI with stdin and fails the test unless it exits 0.
func cliStdin(t *testing.T, env []string, stdin string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin(t, "sluice"), args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("sluice %v: %v\n%s", args, err, out)
	}
	return string(out)
}
