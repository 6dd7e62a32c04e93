package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/e2e/internal/e2ekit"
)

// bufCLI is the buf the Makefile installs (`make tools`); CI has it, so
// there the test must run.
func bufCLI(t *testing.T) string {
	t.Helper()
	p := filepath.Join(e2ekit.RepoRoot(), "bin", "buf")
	if _, err := os.Stat(p); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s is missing (make tools installs it): %v", p, err)
		}
		t.Skipf("%s is missing; `make tools` installs it", p)
	}
	return p
}

func runBuf(t *testing.T, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bufCLI(t), args...)
	cmd.Dir = t.TempDir() // no protos in sight: only reflection can tell buf the schema
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("buf %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// Every service answers gRPC server reflection, so `buf curl --reflect`
// (and grpcurl) lists and calls it without the protos.
func TestServerReflection(t *testing.T) {
	p, _ := startAllInOne(t, t.TempDir())
	services := runBuf(t, "curl", "--reflect", "--list-services", p.url)
	for _, s := range []string{"sluice.source.v1.SourceService", "sluice.build.v1.BuildService", "sluice.test.v1.TestService",
		"sluice.release.v1.ReleaseService", "sluice.notify.v1.NotifyService", "grpc.health.v1.Health"} {
		if !strings.Contains(services, s) {
			t.Errorf("reflection does not list %s:\n%s", s, services)
		}
	}
	methods := runBuf(t, "curl", "--reflect", "--list-methods", p.url)
	if !strings.Contains(methods, "sluice.source.v1.SourceService/TriggerRun") {
		t.Errorf("reflection does not list TriggerRun:\n%s", methods)
	}
	admin, err := os.ReadFile(filepath.Join(p.dataDir, "admin-token"))
	if err != nil {
		t.Fatal(err)
	}
	auth := "Authorization: Bearer " + strings.TrimSpace(string(admin))
	for _, protocol := range []string{"connect", "grpc"} {
		out := runBuf(t, "curl", "--reflect", "--protocol", protocol, "--header", auth, "--data", "{}", p.url+"/sluice.source.v1.SourceService/ListRepositories")
		if strings.TrimSpace(out) != "{}" {
			t.Errorf("ListRepositories over %s: %q, want {} (no repositories yet)", protocol, out)
		}
	}
}
