// Package images checks the container images `make images` builds: their
// tags and labels against the checkout, --version, their configuration and
// size, that the build, test and release images have a working shell, that a
// service's healthcheck subcommand works inside its image, and that the
// PostgreSQL image initializes and serves.
//
// The tests skip only when Docker is not reachable. When it is, the images
// must exist and match the checkout: `make test` runs `make images` first,
// or run `make images` yourself before `go test ./e2e/images/`.
package images

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluicehq/sluice/e2e/internal/e2ekit"
)

const (
	imageSource = "https://github.com/sluicehq/sluice"
	sluiceUID   = "10001"
	mb          = 1 << 20
)

// image is what the tests expect of one image.
type image struct {
	name     string
	service  string // the service it runs, "" for nats, postgres and sluice
	port     string
	shell    bool // has /bin/sh (runs commands)
	min, max int64
}

var allImages = []image{
	{name: "sluice-source", service: "source", port: "8081", min: 5 * mb, max: 60 * mb},
	{name: "sluice-build", service: "build", port: "8082", shell: true, min: 5 * mb, max: 60 * mb},
	{name: "sluice-test", service: "test", port: "8083", shell: true, min: 5 * mb, max: 60 * mb},
	{name: "sluice-release", service: "release", port: "8084", shell: true, min: 5 * mb, max: 60 * mb},
	{name: "sluice-notify", service: "notify", port: "8085", min: 5 * mb, max: 60 * mb},
	{name: "sluice", port: "8080", shell: true, min: 5 * mb, max: 90 * mb},
	{name: "sluice-nats", port: "4222", min: 5 * mb, max: 40 * mb},
	{name: "sluice-postgres", port: "5432", shell: true, min: 30 * mb, max: 150 * mb},
}

// inspected is the part of `docker image inspect` the tests read.
type inspected struct {
	ID     string `json:"Id"`
	Size   int64
	Config struct {
		User         string
		Env          []string
		Entrypoint   []string
		Cmd          []string
		WorkingDir   string
		ExposedPorts map[string]struct{}
		Volumes      map[string]struct{}
		Labels       map[string]string
		Healthcheck  *struct{ Test []string }
	}
}

var dockerState struct {
	once            sync.Once
	err             error
	version, commit string
	tag             string
}

// setup skips the test when Docker is not reachable and returns the
// version, commit and tag the images must carry: the checkout's, worked out
// as the Makefile does.
func setup(t *testing.T) (version, commit, tag string) {
	t.Helper()
	d := &dockerState
	d.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, "docker", "version", "--format", "{{.Server.Version}}").CombinedOutput()
		if err != nil {
			d.err = fmt.Errorf("%w: %s", err, bytes.TrimSpace(out))
			return
		}
		d.version = gitOr(ctx, "0.0.0-dev", "describe", "--tags", "--always", "--dirty")
		d.commit = gitOr(ctx, "unknown", "rev-parse", "HEAD")
		d.tag = strings.NewReplacer("+", "-", "/", "-").Replace(d.version)
	})
	if d.err != nil {
		t.Skipf("Docker is not reachable, so the images cannot be checked: %v", d.err)
	}
	return d.version, d.commit, d.tag
}

func gitOr(ctx context.Context, fallback string, args ...string) string {
	out, err := exec.CommandContext(ctx, "git", args...).Output()
	if err != nil || len(bytes.TrimSpace(out)) == 0 {
		return fallback
	}
	return string(bytes.TrimSpace(out))
}

// dockerTimeout bounds one docker command.
const dockerTimeout = 2 * time.Minute

// docker runs the docker CLI and returns its stdout, stderr and error. A
// container it runs carries the tests' labels (e2ekit.TestLabels).
func docker(t *testing.T, args ...string) (string, string, error) {
	t.Helper()
	if len(args) > 0 && args[0] == "run" {
		args = append(append([]string{"run"}, e2ekit.TestLabelArgs()...), args[1:]...)
	}
	ctx, cancel := context.WithTimeout(context.Background(), dockerTimeout)
	defer cancel()
	var out, errOut bytes.Buffer
	cmd := exec.CommandContext(ctx, "docker", args...)
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	if err != nil {
		err = fmt.Errorf("docker %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(errOut.String()))
	}
	return out.String(), errOut.String(), err
}

func inspect(t *testing.T, ref string) inspected {
	t.Helper()
	out, _, err := docker(t, "image", "inspect", ref)
	if err != nil {
		t.Fatalf("%s is not there (run `make images`; `make test` does it when Docker is reachable): %v", ref, err)
	}
	var imgs []inspected
	if err := json.Unmarshal([]byte(out), &imgs); err != nil || len(imgs) != 1 {
		t.Fatalf("docker image inspect %s: %d images, %v", ref, len(imgs), err)
	}
	return imgs[0]
}

// containerName is a fresh name; the container is removed with its
// volumes when the test ends.
func containerName(t *testing.T, what string) string {
	t.Helper()
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	name := "sluice-imgtest-" + what + "-" + hex.EncodeToString(b)
	t.Cleanup(func() { _, _, _ = docker(t, "rm", "-f", "-v", name) })
	return name
}

func TestTagsLabelsAndSize(t *testing.T) {
	version, commit, tag := setup(t)
	for _, im := range allImages {
		t.Run(im.name, func(t *testing.T) {
			img := inspect(t, im.name+":"+tag)
			if dev := inspect(t, im.name+":dev"); dev.ID != img.ID {
				t.Errorf("%s:dev is %s, %s:%s is %s; both tags come from one build", im.name, dev.ID, im.name, tag, img.ID)
			}
			labels := img.Config.Labels
			for k, want := range map[string]string{
				"org.opencontainers.image.version":  version,
				"org.opencontainers.image.revision": commit,
				"org.opencontainers.image.source":   imageSource,
				"org.opencontainers.image.title":    im.name,
			} {
				if labels[k] != want {
					t.Errorf("label %s = %q, want %q (images older than the checkout? run `make images`)", k, labels[k], want)
				}
			}
			if img.Size < im.min || img.Size > im.max {
				t.Errorf("size %.1f MB, want %d to %d MB", float64(img.Size)/mb, im.min/mb, im.max/mb)
			}
			t.Logf("%s:%s %.1f MB", im.name, tag, float64(img.Size)/mb)
			// nats-server has no probe command; every other image has a healthcheck.
			if hasHealthcheck := img.Config.Healthcheck != nil && len(img.Config.Healthcheck.Test) > 0; hasHealthcheck != (im.name != "sluice-nats") {
				t.Errorf("healthcheck %+v", img.Config.Healthcheck)
			}
			if _, ok := img.Config.ExposedPorts[im.port+"/tcp"]; !ok {
				t.Errorf("exposes %v, want %s/tcp among them", keys(img.Config.ExposedPorts), im.port)
			}
		})
	}
}

func keys(m map[string]struct{}) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

func TestServiceImageConfig(t *testing.T) {
	_, _, tag := setup(t)
	for _, im := range allImages {
		if im.service == "" {
			continue
		}
		t.Run(im.name, func(t *testing.T) {
			c := inspect(t, im.name+":"+tag).Config
			bin := "/usr/local/bin/sluice-" + im.service
			env := strings.ToUpper(im.service)
			if !slices.Equal(c.Entrypoint, []string{bin}) {
				t.Errorf("entrypoint %q, want [%s]", c.Entrypoint, bin)
			}
			if c.User != sluiceUID+":"+sluiceUID {
				t.Errorf("user %q, want %s:%s", c.User, sluiceUID, sluiceUID)
			}
			for _, want := range []string{"SLUICE_" + env + "_ADDR=0.0.0.0:" + im.port, "SLUICE_" + env + "_DATA_DIR=/data", "HOME=/tmp"} {
				if !slices.Contains(c.Env, want) {
					t.Errorf("env %q lacks %s", c.Env, want)
				}
			}
			if _, ok := c.Volumes["/data"]; !ok {
				t.Errorf("volumes %v, want /data", keys(c.Volumes))
			}
			if c.Healthcheck == nil || !slices.Equal(c.Healthcheck.Test, []string{"CMD", bin, "healthcheck"}) {
				t.Errorf("healthcheck %+v, want CMD %s healthcheck", c.Healthcheck, bin)
			}
		})
	}
}

func TestVersionOutput(t *testing.T) {
	version, commit, tag := setup(t)
	pgVersion := inspect(t, "sluice-postgres:"+tag).Config.Labels["sluice.postgresql.version"]
	natsVersion := inspect(t, "sluice-nats:"+tag).Config.Labels["sluice.nats-server.version"]
	if pgVersion == "" || natsVersion == "" {
		t.Fatalf("labels sluice.postgresql.version %q, sluice.nats-server.version %q: want both", pgVersion, natsVersion)
	}
	for _, tt := range []struct {
		name string
		args []string
		want string
	}{
		{"sluice", []string{"version"}, fmt.Sprintf("sluice %s (%s)\n", version, commit)},
		{"sluice-nats", []string{"--version"}, "nats-server: " + natsVersion + "\n"},
		// The entrypoint runs a command that is not an option as it is.
		{"sluice-postgres", []string{"postgres", "--version"}, "postgres (PostgreSQL) " + pgVersion + " "},
	} {
		out, _, err := docker(t, append([]string{"run", "--rm", tt.name + ":" + tag}, tt.args...)...)
		if err != nil || !strings.HasPrefix(out, tt.want) {
			t.Errorf("%s %v: %q, %v; want %q", tt.name, tt.args, out, err, tt.want)
		}
	}
	for _, im := range allImages {
		if im.service == "" {
			continue
		}
		want := fmt.Sprintf("sluice-%s %s (%s)\n", im.service, version, commit)
		out, _, err := docker(t, "run", "--rm", im.name+":"+tag, "--version")
		if err != nil || out != want {
			t.Errorf("%s --version: %q, %v; want %q", im.name, out, err, want)
		}
	}
}

func TestShell(t *testing.T) {
	_, _, tag := setup(t)
	sum := sha256.Sum256([]byte("ok\n"))
	want := hex.EncodeToString(sum[:]) + "  -\n" + sluiceUID + "\n"
	// Steps run as `/bin/sh -c`; the data folder is writable by the user.
	script := "set -o pipefail; echo ok | sha256sum; id -u; touch /data/x /tmp/x; command -v env >/dev/null && test -x /usr/bin/env"
	for _, im := range allImages {
		if !im.shell || im.service == "" {
			continue
		}
		out, _, err := docker(t, "run", "--rm", "--entrypoint", "/bin/sh", im.name+":"+tag, "-c", script)
		if err != nil || out != want {
			t.Errorf("%s: sh -c %q: %q, %v; want %q", im.name, script, out, err, want)
		}
	}
	// The others have no shell at all.
	for _, name := range []string{"sluice-source", "sluice-notify", "sluice-nats"} {
		if _, _, err := docker(t, "run", "--rm", "--entrypoint", "/bin/sh", name+":"+tag, "-c", "true"); err == nil {
			t.Errorf("%s has a /bin/sh", name)
		}
	}
}

// A service without NATS serves /readyz with 503: the healthcheck
// subcommand, run inside the image with the image's environment, says so.
func TestHealthcheckInImage(t *testing.T) {
	_, _, tag := setup(t)
	t.Parallel()
	name := containerName(t, "notify")
	if _, _, err := docker(t, "run", "-d", "--name", name, "sluice-notify:"+tag); err != nil {
		t.Fatal(err)
	}
	var last string
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		_, stderr, err := docker(t, "exec", name, "sluice-notify", "healthcheck")
		if err == nil {
			t.Fatalf("healthcheck passed without NATS")
		}
		last = stderr
		if strings.HasPrefix(stderr, "sluice-notify healthcheck: not ready: 503 Service Unavailable: ") {
			return
		}
	}
	logs, _, _ := docker(t, "logs", name)
	t.Fatalf("healthcheck never reported the 503; last: %q\nlogs:\n%s", last, logs)
}

// The PostgreSQL image initializes on first start, runs the init SQL, turns
// healthy and takes password logins over TCP.
func TestPostgresImage(t *testing.T) {
	_, _, tag := setup(t)
	t.Parallel()
	initdir := t.TempDir()
	sql := "CREATE ROLE build LOGIN PASSWORD 'build-pw'; CREATE DATABASE build OWNER build;\n"
	if err := os.WriteFile(filepath.Join(initdir, "10-build.sql"), []byte(sql), 0o644); err != nil {
		t.Fatal(err)
	}
	// The server runs as postgres (uid 100), which must read the folder.
	if err := os.Chmod(initdir, 0o755); err != nil {
		t.Fatal(err)
	}
	name := containerName(t, "postgres")
	if _, _, err := docker(t, "run", "-d", "--name", name, "-e", "POSTGRES_PASSWORD=pw",
		"-v", initdir+":/docker-entrypoint-initdb.d:ro", "sluice-postgres:"+tag); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	status := ""
	for deadline := start.Add(90 * time.Second); time.Now().Before(deadline) && status != "healthy"; time.Sleep(250 * time.Millisecond) {
		out, _, err := docker(t, "inspect", "-f", "{{.State.Status}} {{.State.Health.Status}}", name)
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasPrefix(out, "exited") {
			break
		}
		status = strings.Fields(out)[1]
	}
	if status != "healthy" {
		logs, stderr, _ := docker(t, "logs", name)
		t.Fatalf("not healthy after %v (%s):\n%s%s", time.Since(start).Round(time.Millisecond), status, logs, stderr)
	}
	t.Logf("healthy after %v", time.Since(start).Round(time.Millisecond))
	out, _, err := docker(t, "exec", "-e", "PGPASSWORD=build-pw", name,
		"psql", "-h", "127.0.0.1", "-U", "build", "-d", "build", "-Atc", "select current_user || ' ' || current_database()")
	if err != nil || out != "build build\n" {
		t.Fatalf("psql as build over TCP: %q, %v", out, err)
	}
	if _, _, err := docker(t, "exec", "-e", "PGPASSWORD=wrong", name,
		"psql", "-h", "127.0.0.1", "-U", "build", "-d", "build", "-Atc", "select 1"); err == nil {
		t.Fatal("a wrong password was let in")
	}
}
