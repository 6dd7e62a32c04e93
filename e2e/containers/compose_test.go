package containers

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/e2e/internal/e2ekit"
	"github.com/sluicehq/sluice/platform/tlsconfig"
)

// The Compose stack in deploy/compose, as committed: `docker-compose up`
// with the images brings up a platform that the CLI drives, and `down -v`
// removes it. Only the host ports and the repositories folder are set, by
// environment, so that it cannot collide with anything on this machine.
func TestComposeStackRunsAPipeline(t *testing.T) {
	need(t)
	compose, err := exec.LookPath("docker-compose")
	if err != nil {
		t.Fatalf("docker-compose is not installed: %v", err)
	}
	project := e2ekit.ComposeProject()
	dir := t.TempDir()
	repos := filepath.Join(dir, "repos")
	e2ekit.NewGitRepo(t, filepath.Join(repos, "shell"), map[string]string{".sluice.yaml": shellPipeline, "VERSION": "1\n"})
	if err := makeReadable(dir); err != nil {
		t.Fatal(err)
	}

	// The stack's certificates, made as `make dev-certs` makes them, into
	// the test's folder (SLUICE_CERTS_DIR).
	certs := filepath.Join(dir, "certs")
	mk := exec.CommandContext(t.Context(), "make", "-C", e2ekit.RepoRoot(), "dev-certs", "COMPOSE_CERTS_DIR="+certs)
	if out, err := mk.CombinedOutput(); err != nil {
		t.Fatalf("make dev-certs: %v\n%s", err, out)
	}
	if err := makeReadable(dir); err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(certs, "ca.pem")
	trust, err := tlsconfig.NewClient(tlsconfig.ClientOptions{CAFile: caFile})
	if err != nil {
		t.Fatal(err)
	}
	tr := trust.Transport()
	t.Cleanup(tr.CloseIdleConnections)
	client := &http.Client{Transport: tr, Timeout: 3 * time.Second}

	ports := map[string]int{}
	env := append(os.Environ(), "SLUICE_REPOS_DIR="+repos, "SLUICE_TAG="+Tag, "SLUICE_CERTS_DIR="+certs)
	for _, svc := range append([]string{"nats"}, services...) {
		ports[svc] = e2ekit.FreePort(t)
		env = append(env, fmt.Sprintf("SLUICE_%s_PORT=%d", strings.ToUpper(svc), ports[svc]))
	}
	file := filepath.Join(e2ekit.RepoRoot(), "deploy", "compose", "docker-compose.yml")
	run := func(timeout time.Duration, args ...string) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		cmd := exec.CommandContext(ctx, compose, append([]string{"-p", project, "-f", file}, args...)...)
		cmd.Env = env
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		err := cmd.Run()
		return out.String(), err
	}
	t.Cleanup(func() {
		if t.Failed() {
			out, _ := run(time.Minute, "logs", "--no-color", "--tail", "40")
			t.Logf("docker-compose logs:\n%s", out)
		}
		if out, err := run(2*time.Minute, "down", "-v", "--remove-orphans"); err != nil {
			t.Errorf("docker-compose down: %v\n%s", err, out)
		}
	})
	start := time.Now()
	if out, err := run(5*time.Minute, "up", "-d"); err != nil {
		t.Fatalf("docker-compose up: %v\n%s", err, out)
	}
	// Every API serves https only, with the development CA's certificates.
	cliEnv := []string{"SLUICE_CA_FILE=" + caFile}
	for _, svc := range services {
		url := fmt.Sprintf("https://127.0.0.1:%d", ports[svc])
		cliEnv = append(cliEnv, "SLUICE_"+strings.ToUpper(svc)+"_URL="+url)
		deadline := time.Now().Add(2 * time.Minute)
		for clientOK(client, url+"/readyz") != nil {
			if time.Now().After(deadline) {
				t.Fatalf("%s is not ready after 2m", svc)
			}
			time.Sleep(500 * time.Millisecond)
		}
	}
	t.Logf("compose stack %s ready in %s", project, time.Since(start).Round(time.Millisecond))
	// Plain HTTP is not served.
	if err := clientOK(&http.Client{Timeout: 3 * time.Second}, fmt.Sprintf("http://127.0.0.1:%d/readyz", ports["source"])); err == nil {
		t.Fatal("source answers plain http")
	}

	// The admin token source made on its first start, copied out of its
	// volume as docs/operations.md says.
	id, err := run(time.Minute, "ps", "-q", "source")
	if err != nil {
		t.Fatalf("docker-compose ps: %v\n%s", err, id)
	}
	if out, err := exec.CommandContext(t.Context(), "docker", "cp", strings.TrimSpace(id)+":/data/admin-token", dir).CombinedOutput(); err != nil {
		t.Fatalf("docker cp the admin token: %v\n%s", err, out)
	}
	admin, err := os.ReadFile(filepath.Join(dir, "admin-token"))
	if err != nil {
		t.Fatal(err)
	}
	cliEnv = append(cliEnv, "SLUICE_TOKEN="+strings.TrimSpace(string(admin)))

	sluice := func(args ...string) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, filepath.Join(suite.binDir, "sluice"), args...)
		cmd.Env = append(os.Environ(), cliEnv...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("sluice %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	// Every service learns the token a moment after source registers it.
	for _, svc := range services {
		deadline := time.Now().Add(time.Minute)
		for e2ekit.AcceptsTokenVia(client, fmt.Sprintf("https://127.0.0.1:%d", ports[svc]), svc, strings.TrimSpace(string(admin))) != nil {
			if time.Now().After(deadline) {
				t.Fatalf("%s does not accept the admin token after 1m", svc)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	sluice("repo", "add", "/repos/shell", "--name", "shell")
	out := sluice("trigger", "shell", "--follow")
	if !strings.Contains(out, "succeeded") || !strings.Contains(out, "v0.1.0") {
		t.Fatalf("trigger --follow:\n%s", out)
	}
	if out := sluice("deployments", "shell"); !strings.Contains(out, "verified") {
		t.Fatalf("deployments: %s", out)
	}
	var runs struct {
		Runs []struct {
			Status string `json:"status"`
		} `json:"runs"`
	}
	if err := json.Unmarshal([]byte(sluice("runs", "shell", "--output", "json")), &runs); err != nil {
		t.Fatal(err)
	}
	var tally Tally
	for _, r := range runs.Runs {
		tally.Started++
		switch r.Status {
		case "RUN_STATUS_SUCCEEDED":
			tally.Succeeded++
		case "RUN_STATUS_FAILED", "RUN_STATUS_CANCELLED":
			tally.Failed++
		default:
			tally.Lost++
		}
	}
	t.Logf("TALLY %s: %s", t.Name(), tally)
	if tally.Started != 1 || tally.Succeeded != 1 {
		t.Fatalf("want one run, succeeded: %s", tally)
	}
}
