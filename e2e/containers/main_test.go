// Package containers holds the end-to-end tests in which every Sluice
// service runs in its own container (the images `make images` builds) on a
// three-node NATS cluster and PostgreSQL, on a Docker network each test makes
// for itself. They use dockertest against the local Docker engine; nothing
// is pulled.
//
// Without Docker the tests skip, unless $SLUICE_E2E_CONTAINERS_REQUIRED is
// set (CI sets it), in which case they fail.
package containers

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ory/dockertest/v3"
	"github.com/ory/dockertest/v3/docker"

	"github.com/sluicehq/sluice/e2e/internal/e2ekit"
)

// EnvRequired makes a missing Docker engine or image a failure.
const EnvRequired = "SLUICE_E2E_CONTAINERS_REQUIRED"

// Tag is the tag of the images under test (`make images` tags every image
// with it as well as with its version).
const Tag = "dev"

// The images `make images` builds.
var images = []string{"sluice-source", "sluice-build", "sluice-test", "sluice-release", "sluice-notify", "sluice-nats", "sluice-postgres"}

// suite is what TestMain prepares once.
var suite struct {
	pool *dockertest.Pool
	// unavailable says why the tests cannot run here (no Docker, no images).
	unavailable error
	// binDir holds the host binaries: the CLI and the receiver.
	binDir string
	// receiverImage is the subscriber image built from ./receiver.
	receiverImage string
	// nextRelease is an image of the release service built later, with a
	// different version, for the rolling upgrade.
	nextRelease string
}

func TestMain(m *testing.M) {
	code := func() int {
		dir, err := os.MkdirTemp("", "sluice-e2e-containers-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer func() { _ = os.RemoveAll(dir) }()
		suite.binDir = dir
		suite.unavailable = prepare(dir)
		if suite.unavailable == nil {
			defer cleanupImages()
		}
		return m.Run()
	}()
	os.Exit(code)
}

func prepare(dir string) error {
	pool, err := dockertest.NewPool("")
	if err != nil {
		return fmt.Errorf("docker: %w", err)
	}
	pool.MaxWait = 2 * time.Minute
	if err := pool.Client.Ping(); err != nil {
		return fmt.Errorf("docker engine not reachable: %w", err)
	}
	suite.pool = pool
	var missing []string
	for _, img := range images {
		if _, err := pool.Client.InspectImage(img + ":" + Tag); err != nil {
			missing = append(missing, img+":"+Tag)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("images %s are missing: run `make images`", strings.Join(missing, ", "))
	}
	root := e2ekit.RepoRoot()
	build := func(out, pkg string, env ...string) error {
		cmd := exec.CommandContext(context.Background(), "go", "build", "-trimpath", "-o", filepath.Join(dir, out), pkg)
		cmd.Dir = root
		cmd.Env = append(os.Environ(), env...)
		if b, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("go build %s: %w\n%s", pkg, err, b)
		}
		return nil
	}
	if err := build("sluice", "./cmd/sluice"); err != nil {
		return err
	}
	// The receiver and the newer release binary go into images: static.
	ctxDir := filepath.Join(dir, "receiver-image")
	if err := os.MkdirAll(ctxDir, 0o755); err != nil {
		return err
	}
	if err := build(filepath.Join("receiver-image", "receiver"), "./e2e/containers/receiver", "CGO_ENABLED=0"); err != nil {
		return err
	}
	suite.receiverImage = "sluice-e2e-receiver:" + Tag
	if err := dockerBuild(ctxDir, suite.receiverImage, "FROM scratch\nCOPY receiver /receiver\nUSER 10001\nEXPOSE 8090\nENTRYPOINT [\"/receiver\"]\n"); err != nil {
		return err
	}
	nextDir := filepath.Join(dir, "release-next")
	if err := os.MkdirAll(nextDir, 0o755); err != nil {
		return err
	}
	// The same code with another version stamped in: a newer build as far
	// as the rolling upgrade can tell (labels and --version differ).
	cmd := exec.CommandContext(context.Background(), "go", "build", "-trimpath",
		"-ldflags", "-X main.version=e2e-next", "-o", filepath.Join(nextDir, "sluice-release"), "./services/release/cmd/sluice-release")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("build the next release binary: %w\n%s", err, b)
	}
	suite.nextRelease = "sluice-release:e2e-next"
	return dockerBuild(nextDir, suite.nextRelease,
		"FROM sluice-release:"+Tag+"\nCOPY sluice-release /usr/local/bin/sluice-release\nLABEL org.opencontainers.image.version=e2e-next\n")
}

// dockerBuild builds an image from a Dockerfile text and the files in dir,
// with the legacy builder (no BuildKit here) and without pulling.
func dockerBuild(dir, tag, dockerfile string) error {
	if err := os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte(dockerfile), 0o644); err != nil {
		return err
	}
	cmd := exec.CommandContext(context.Background(), "docker", "build", "-q", "-t", tag, dir)
	cmd.Env = append(os.Environ(), "DOCKER_BUILDKIT=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("docker build %s: %w\n%s", tag, err, b)
	}
	return nil
}

func cleanupImages() {
	for _, img := range []string{suite.receiverImage, suite.nextRelease} {
		if img != "" {
			_ = suite.pool.Client.RemoveImageExtended(img, docker.RemoveImageOptions{Force: true})
		}
	}
}

// need skips or fails the test when the suite cannot run here.
func need(t *testing.T) *dockertest.Pool {
	t.Helper()
	if suite.unavailable != nil {
		if os.Getenv(EnvRequired) != "" {
			t.Fatalf("container end-to-end tests cannot run: %v", suite.unavailable)
		}
		t.Skipf("container end-to-end tests skipped: %v (set %s to make this a failure)", suite.unavailable, EnvRequired)
	}
	return suite.pool
}

var errNotReady = errors.New("not ready")
