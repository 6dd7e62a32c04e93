package containers

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicehq/sluice/e2e/internal/e2ekit"
	"github.com/sluicehq/sluice/platform/tlsconfig"
	"github.com/sluicehq/sluice/services/release"
)

// ComposeOptions shape a Compose stack.
type ComposeOptions struct {
	// Receiver adds the webhook receiver to the project, by an override
	// file of the test's, and lets notify reach it: SLUICE_NOTIFY_ALLOW_EGRESS
	// set to private, as the committed file tells an operator to do for
	// receivers on the stack's network.
	Receiver bool
}

// ComposeStack is the Compose stack in deploy/compose, as committed,
// brought up by `docker-compose up` with the images: only the host ports,
// the repositories and certificates folders and the NATS admin password
// are set, by environment, so that it cannot collide with anything on this
// machine (and the test can read the dead letters). `down -v` removes it
// when the test ends. Its project name says which test process made it
// (e2ekit.ComposeProject), so that `make test-clean` finds its leftovers.
type ComposeStack struct {
	t       *testing.T
	compose string
	project string
	files   []string
	env     []string
	// dir is the test's folder: repositories, certificates, the admin token.
	dir string
	// Repos is mounted at /repos in source, build, test and release.
	Repos  string
	ports  map[string]int
	caFile string
	// tr trusts the development CA the stack's certificates come from.
	tr *http.Transport
	// Admin is the admin token source made on its first start.
	Admin  string
	cliEnv []string
}

// StartCompose brings up the Compose stack and waits until every service
// is ready and accepts the admin token.
func StartCompose(t *testing.T, opts ComposeOptions) *ComposeStack {
	t.Helper()
	need(t)
	compose, err := exec.LookPath("docker-compose")
	if err != nil {
		t.Fatalf("docker-compose is not installed: %v", err)
	}
	c := &ComposeStack{t: t, compose: compose, project: e2ekit.ComposeProject(), dir: t.TempDir(), ports: map[string]int{}}
	c.Repos = filepath.Join(c.dir, "repos")
	if err := os.MkdirAll(c.Repos, 0o755); err != nil {
		t.Fatal(err)
	}

	// The stack's certificates, made as `make dev-certs` makes them, into
	// the test's folder (SLUICE_CERTS_DIR).
	certs := filepath.Join(c.dir, "certs")
	mk := exec.CommandContext(t.Context(), "make", "-C", e2ekit.RepoRoot(), "dev-certs", "COMPOSE_CERTS_DIR="+certs)
	if out, err := mk.CombinedOutput(); err != nil {
		t.Fatalf("make dev-certs: %v\n%s", err, out)
	}
	if err := makeReadable(c.dir); err != nil {
		t.Fatal(err)
	}
	c.caFile = filepath.Join(certs, "ca.pem")
	trust, err := tlsconfig.NewClient(tlsconfig.ClientOptions{CAFile: c.caFile})
	if err != nil {
		t.Fatal(err)
	}
	c.tr = trust.Transport()
	t.Cleanup(c.tr.CloseIdleConnections)

	c.env = append(os.Environ(), "SLUICE_REPOS_DIR="+c.Repos, "SLUICE_TAG="+Tag, "SLUICE_CERTS_DIR="+certs,
		"NATS_ADMIN_PASSWORD="+natsAdminPassword)
	for _, svc := range append([]string{"nats"}, services...) {
		c.ports[svc] = e2ekit.FreePort(t)
		c.env = append(c.env, fmt.Sprintf("SLUICE_%s_PORT=%d", strings.ToUpper(svc), c.ports[svc]))
	}
	c.files = []string{filepath.Join(e2ekit.RepoRoot(), "deploy", "compose", "docker-compose.yml")}
	if opts.Receiver {
		c.ports["receiver"] = e2ekit.FreePort(t)
		override := filepath.Join(c.dir, "receiver.yml")
		if err := os.WriteFile(override, fmt.Appendf(nil, `services:
  notify:
    environment:
      SLUICE_NOTIFY_ALLOW_EGRESS: private
  receiver:
    image: %s
    environment:
      RECEIVER_SECRET: %s
    ports:
      - "127.0.0.1:%d:8090"
`, suite.receiverImage, receiverSecret, c.ports["receiver"]), 0o644); err != nil {
			t.Fatal(err)
		}
		c.files = append(c.files, override)
	}
	t.Cleanup(func() {
		if t.Failed() {
			out, _ := c.Compose(time.Minute, "logs", "--no-color", "--tail", "40")
			t.Logf("docker-compose logs:\n%s", out)
		}
		if out, err := c.Compose(2*time.Minute, "down", "-v", "--remove-orphans"); err != nil {
			t.Errorf("docker-compose down: %v\n%s", err, out)
		}
	})
	start := time.Now()
	if out, err := c.Compose(5*time.Minute, "up", "-d"); err != nil {
		t.Fatalf("docker-compose up: %v\n%s", err, out)
	}
	// Every API serves https only, with the development CA's certificates.
	client := &http.Client{Transport: c.tr, Timeout: 3 * time.Second}
	c.cliEnv = []string{"SLUICE_CA_FILE=" + c.caFile}
	for _, svc := range services {
		c.cliEnv = append(c.cliEnv, "SLUICE_"+strings.ToUpper(svc)+"_URL="+c.URL(svc))
		eventually(t, svc+" ready", 2*time.Minute, func() error { return clientOK(client, c.URL(svc)+"/readyz") })
	}
	if opts.Receiver {
		eventually(t, "receiver ready", 30*time.Second, func() error {
			return httpOK(fmt.Sprintf("http://127.0.0.1:%d/healthz", c.ports["receiver"]))
		})
	}
	t.Logf("compose stack %s ready in %s", c.project, time.Since(start).Round(time.Millisecond))

	// The admin token source made on its first start, copied out of its
	// volume as docs/operations.md says.
	id := c.ContainerID("source")
	if out, err := exec.CommandContext(t.Context(), "docker", "cp", id+":/data/admin-token", c.dir).CombinedOutput(); err != nil {
		t.Fatalf("docker cp the admin token: %v\n%s", err, out)
	}
	admin, err := os.ReadFile(filepath.Join(c.dir, "admin-token"))
	if err != nil {
		t.Fatal(err)
	}
	c.Admin = strings.TrimSpace(string(admin))
	c.cliEnv = append(c.cliEnv, "SLUICE_TOKEN="+c.Admin)
	// Every service learns the token a moment after source registers it.
	for _, svc := range services {
		eventually(t, svc+" accepts the admin token", time.Minute, func() error {
			return e2ekit.AcceptsTokenVia(client, c.URL(svc), svc, c.Admin)
		})
	}
	return c
}

// Compose runs docker-compose on the stack's project.
func (c *ComposeStack) Compose(timeout time.Duration, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	pre := []string{"-p", c.project}
	for _, f := range c.files {
		pre = append(pre, "-f", f)
	}
	cmd := exec.CommandContext(ctx, c.compose, append(pre, args...)...)
	cmd.Env = c.env
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

// must runs docker-compose and fails the test when it fails.
func (c *ComposeStack) must(timeout time.Duration, args ...string) string {
	c.t.Helper()
	out, err := c.Compose(timeout, args...)
	if err != nil {
		c.t.Fatalf("docker-compose %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// ContainerID is the id of the Compose service's container.
func (c *ComposeStack) ContainerID(svc string) string {
	c.t.Helper()
	return strings.TrimSpace(c.must(time.Minute, "ps", "-q", svc))
}

// URL is svc's API on the host: the replica whose port is published.
func (c *ComposeStack) URL(svc string) string {
	return fmt.Sprintf("https://127.0.0.1:%d", c.ports[svc])
}

// CLI runs the sluice CLI on the host against the stack.
func (c *ComposeStack) CLI(args ...string) string {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(suite.binDir, "sluice"), args...)
	cmd.Env = append(os.Environ(), c.cliEnv...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		c.t.Fatalf("sluice %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// T is the stack's test.
func (c *ComposeStack) T() *testing.T { return c.t }

// API is a client set, over https, for the replicas whose ports are published.
func (c *ComposeStack) API() API { return newAPI(c.tr, c.URL, c.Admin) }

// ReposDir is the stack's Repos folder.
func (c *ComposeStack) ReposDir() string { return c.Repos }

// ReceiverURL is the receiver's URL on the project's network.
func (c *ComposeStack) ReceiverURL() string { return "http://receiver:8090/" }

// ReceivedURL is the receiver's list of deliveries, on the host.
func (c *ComposeStack) ReceivedURL() string {
	return fmt.Sprintf("http://127.0.0.1:%d/received", c.ports["receiver"])
}

// natsAdmin connects to the published NATS node (nats-1) as admin, over TLS.
func (c *ComposeStack) natsAdmin() jetstream.JetStream {
	c.t.Helper()
	return natsAdmin(c.t, fmt.Sprintf("tls://127.0.0.1:%d", c.ports["nats"]), nats.RootCAs(c.caFile))
}

// DeadLetters counts the messages in the DEADLETTER stream, as admin.
func (c *ComposeStack) DeadLetters() uint64 {
	c.t.Helper()
	return deadLetters(c.t, c.natsAdmin())
}

// DeployLog reads deploys.log from the environment's deploy state in NATS
// (the object store every release replica restores it from before a
// deploy and stores it to after): the replicas' volumes are their own.
func (c *ComposeStack) DeployLog(repo, env string) string {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	obs, err := c.natsAdmin().ObjectStore(ctx, release.StateBucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		return ""
	}
	if err != nil {
		c.t.Fatalf("the deploy state store: %v", err)
	}
	state, err := obs.GetBytes(ctx, release.StateObject(repo, env))
	if errors.Is(err, jetstream.ErrObjectNotFound) {
		return ""
	}
	if err != nil {
		c.t.Fatalf("the deploy state of %s/%s: %v", repo, env, err)
	}
	tr := tar.NewReader(bytes.NewReader(state))
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return ""
		}
		if err != nil {
			c.t.Fatalf("the deploy state of %s/%s: %v", repo, env, err)
		}
		if hdr.Name == "deploys.log" {
			b, err := io.ReadAll(tr)
			if err != nil {
				c.t.Fatal(err)
			}
			return string(b)
		}
	}
}

// The Compose stack, as committed, runs a pipeline that the CLI drives.
func TestComposeStackRunsAPipeline(t *testing.T) {
	c := StartCompose(t, ComposeOptions{})
	// Plain HTTP is not served.
	if err := clientOK(&http.Client{Timeout: 3 * time.Second}, fmt.Sprintf("http://127.0.0.1:%d/readyz", c.ports["source"])); err == nil {
		t.Fatal("source answers plain http")
	}
	NewRepo(c, "shell", map[string]string{".sluice.yaml": shellPipeline, "VERSION": "1\n"})
	c.CLI("repo", "add", "/repos/shell", "--name", "shell")
	out := c.CLI("trigger", "shell", "--follow")
	if !strings.Contains(out, "succeeded") || !strings.Contains(out, "v0.1.0") {
		t.Fatalf("trigger --follow:\n%s", out)
	}
	if out := c.CLI("deployments", "shell"); !strings.Contains(out, "verified") {
		t.Fatalf("deployments: %s", out)
	}
	var runs struct {
		Runs []struct {
			Status string `json:"status"`
		} `json:"runs"`
	}
	if err := json.Unmarshal([]byte(c.CLI("runs", "shell", "--output", "json")), &runs); err != nil {
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

// The Compose stack, as committed (with the receiver beside it): during 24
// runs, one container of each service is killed in turn (SIGKILL: no
// drain, no lease given back), source, build-1, test-1, notify and the
// NATS node nats-2, each started again a few seconds later; then the release replica in the last run's deploy is killed. Every run finishes once, and nothing is released,
// deployed or notified twice or missed.
//
// A killed container is started again by the test, as a restart policy
// would start a crashed one: the file's `restart: unless-stopped` does not,
// because Docker counts `docker kill` as a manual stop (checked on Docker
// 20.10: after `docker kill` the container stays exited, restart count 0;
// after a SIGKILL of its process from the host, i.e. a crash, Docker
// restarts it).
//
// The release replica running the last run's deploy is killed in the
// middle of it (its deploy pauses 8 s for it), and the pipeline's
// on_interrupt: redeploy has the replica that takes the environment over
// run it again (deploys retried 1), as in
// TestEveryServiceKilledInTurnLosesNothing.
func TestComposeStackKilledServiceByServiceLosesNothing(t *testing.T) {
	const runs = 24
	c := StartCompose(t, ComposeOptions{Receiver: true})
	w := NewWorkload(c, "killcompose", nil)
	// source, notify and nats-2 are the only ones of theirs (nats-2 one of
	// three); build-1, test-1 publish the host ports the test's API calls
	// use, so those calls see the replica come back.
	victims := map[int]string{2: "source", 6: "build-1", 10: "test-1", 14: "notify", 18: "nats-2"}
	var restarted sync.WaitGroup
	again := func(svc string) {
		restarted.Go(func() {
			time.Sleep(5 * time.Second)
			t.Logf("starting %s again", svc)
			if out, err := c.Compose(2*time.Minute, "start", svc); err != nil {
				t.Errorf("docker-compose start %s: %v\n%s", svc, err, out)
			}
		})
	}
	w.TriggerEvery(runs, 500*time.Millisecond, func(i int) {
		if i == runs-1 {
			// The last run's deploy pauses long enough to be found and
			// killed in flight (seconds pass between seeing it deploying
			// and the kill: 2 s were not always enough).
			w.Next = map[string]string{"deploy-pause": "8\n"}
		}
		svc, ok := victims[i]
		if !ok {
			return
		}
		t.Logf("killing %s", svc)
		c.kill(svc)
		again(svc)
	})
	if svc := KillReleaseMidDeploy(c, w, w.RunIDs[len(w.RunIDs)-1], 3*time.Minute); svc != "" {
		again(svc)
	}
	restarted.Wait()
	tally := w.Finish(6 * time.Minute)
	assertClean(t, tally, runs)
	if tally.DeploysRetried != 1 {
		t.Fatalf("%d deploys were started again, want the one interrupted: %s", tally.DeploysRetried, tally)
	}
}

// container is the name of svc's container (docker-compose v1 names
// them <project>_<service>_1).
func (c *ComposeStack) container(svc string) string { return c.project + "_" + svc + "_1" }

// kill sends the Compose service's container SIGKILL.
func (c *ComposeStack) kill(svc string) {
	c.t.Helper()
	c.must(time.Minute, "kill", "-s", "SIGKILL", svc)
}

// LogsMentioning is every line of the release and notify containers' logs
// that contains s, each prefixed with its service.
func (c *ComposeStack) LogsMentioning(s string) string {
	var out strings.Builder
	for _, svc := range []string{"release-1", "release-2", "notify"} {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		o, _ := exec.CommandContext(ctx, "docker", "logs", c.container(svc)).CombinedOutput()
		cancel()
		for line := range strings.Lines(string(o)) {
			if strings.Contains(line, s) {
				out.WriteString(svc + " | " + line)
			}
		}
	}
	return out.String()
}

// ReleaseReplicas are the Compose file's release-1 and release-2, by
// their service names.
func (c *ComposeStack) ReleaseReplicas() []Replica {
	var out []Replica
	for _, svc := range []string{"release-1", "release-2"} {
		out = append(out, Replica{
			Name: svc,
			// docker logs, not docker-compose logs: the latter takes a
			// second or more, and the deploy it looks for pauses a few seconds.
			Logs: func() string {
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				defer cancel()
				o, _ := exec.CommandContext(ctx, "docker", "logs", "--tail", "200", c.container(svc)).CombinedOutput()
				return string(o)
			},
			Kill: func() { c.kill(svc) },
		})
	}
	return out
}
