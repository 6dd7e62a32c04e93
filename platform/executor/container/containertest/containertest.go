// Package containertest gives tests a Docker backend whose containers and
// networks carry the tests' labels (so `make test-clean` removes what a
// killed test run left), and a busybox image built here, FROM scratch,
// from the host's static busybox (nothing is pulled).
package containertest

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moby/moby/api/types/jsonstream"
	"github.com/moby/moby/client"

	"github.com/sluicehq/sluice/platform/executor/container"
)

// What the tests make carries TestLabel, and in TestOwnerLabel the test
// process that made it (see scripts/test-clean).
const (
	TestLabel      = "org.sluicehq.sluice.test"
	TestOwnerLabel = "org.sluicehq.sluice.test.owner"
)

// TestLabels are the labels of what this test process makes. The owner is
// the process as its PID namespace sees it, "<namespace inode>-<pid>", so
// that a clean-up in another namespace (a CI runner in a container on the
// same Docker engine) leaves it alone.
func TestLabels() map[string]string {
	ns := "0"
	if link, err := os.Readlink("/proc/self/ns/pid"); err == nil {
		ns = strings.TrimSuffix(strings.TrimPrefix(link, "pid:["), "]")
	}
	return map[string]string{TestLabel: "e2e", TestOwnerLabel: ns + "-" + strconv.Itoa(os.Getpid())}
}

// Config is the backend's configuration for tests: images never pulled,
// the test labels on everything.
func Config() container.Config {
	cfg := container.Config{Engine: container.EngineDocker, Pull: container.PullNever}
	for k, v := range TestLabels() {
		cfg.Labels = append(cfg.Labels, k+"="+v)
	}
	return cfg
}

// Docker is a backend on the host's Docker Engine with cfg; the test
// fails when there is none.
func Docker(t testing.TB, cfg container.Config) *container.Docker {
	t.Helper()
	d, err := container.New(t.Context(), cfg, time.Minute, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("the container tests need a Docker Engine: %v", err)
	}
	t.Cleanup(func() { _ = d.Close() })
	return d
}

// BusyboxImage is the image Busybox builds.
const BusyboxImage = "sluice-test-busybox:1"

var busybox struct {
	once sync.Once
	err  error
}

// Busybox builds BusyboxImage once per process (when the engine does not
// have it yet): FROM scratch, the host's static /bin/busybox installed
// into /bin, a passwd naming uid 10001. `make images` installs Debian's
// busybox-static.
func Busybox(t testing.TB) string {
	t.Helper()
	busybox.once.Do(func() { busybox.err = buildBusybox(context.Background()) })
	if busybox.err != nil {
		t.Fatalf("busybox image: %v", busybox.err)
	}
	return BusyboxImage
}

func buildBusybox(ctx context.Context) error {
	api, err := client.New(client.FromEnv)
	if err != nil {
		return err
	}
	defer func() { _ = api.Close() }()
	if _, err := api.ImageInspect(ctx, BusyboxImage); err == nil {
		return nil
	}
	bin, err := os.ReadFile("/bin/busybox")
	if err != nil {
		return fmt.Errorf("%w (install Debian's busybox-static)", err)
	}
	dockerfile := "FROM scratch\nCOPY busybox /bin/busybox\nRUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\nCOPY passwd /etc/passwd\n"
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range []struct {
		name string
		mode int64
		body []byte
	}{
		{"Dockerfile", 0o644, []byte(dockerfile)},
		{"busybox", 0o755, bin},
		{"passwd", 0o644, []byte("root:x:0:0:root:/root:/bin/sh\nstep:x:10001:10001:step:/tmp:/bin/sh\n")},
	} {
		if err := tw.WriteHeader(&tar.Header{Name: f.name, Mode: f.mode, Size: int64(len(f.body))}); err != nil {
			return err
		}
		if _, err := tw.Write(f.body); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	res, err := api.ImageBuild(ctx, &buf, client.ImageBuildOptions{
		Tags: []string{BusyboxImage}, Remove: true, ForceRemove: true,
		Labels: map[string]string{"org.sluicehq.sluice.test.image": "busybox"},
	})
	if err != nil {
		return fmt.Errorf("build %s: %w", BusyboxImage, err)
	}
	defer func() { _ = res.Body.Close() }()
	dec := json.NewDecoder(res.Body)
	for {
		var m jsonstream.Message
		switch err := dec.Decode(&m); {
		case errors.Is(err, io.EOF):
			return nil
		case err != nil:
			return fmt.Errorf("build %s: %w", BusyboxImage, err)
		case m.Error != nil:
			return fmt.Errorf("build %s: %s", BusyboxImage, m.Error.Message)
		}
	}
}
