package supervisor

import (
	"os/exec"
	"strings"
	"testing"
)

// TestImportsOnlyTheStandardLibraryAndUnix keeps the supervisor cheap: Go
// initializes a package as soon as its imports are, in import-path order,
// so this package's init runs before the service's heavy packages only as
// long as it waits for nothing but the standard library and x/sys/unix.
// One more import (a Landlock library with libpsx, the servicekit) and
// every step pays the whole service's initialization again.
func TestImportsOnlyTheStandardLibraryAndUnix(t *testing.T) {
	t.Parallel()
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go tool on PATH")
	}
	out, err := exec.CommandContext(t.Context(), goTool, "list", "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	allowed := map[string]bool{
		"golang.org/x/sys/unix": true,
		"github.com/sluicehq/sluice/platform/executor/internal/supervisor": true,
	}
	for _, dep := range strings.Fields(string(out)) {
		if !allowed[dep] {
			t.Errorf("the supervisor depends on %s", dep)
		}
	}
}

func TestHandledAccessGrowsWithTheABI(t *testing.T) {
	t.Parallel()
	last := uint64(0)
	for abi := MinABI; abi <= 11; abi++ {
		h := handledFS(abi)
		if h < last || h&accessRead != accessRead {
			t.Errorf("ABI %d handles %#x (before %#x)", abi, h, last)
		}
		last = h
	}
	if handledFS(1)&(1<<13) != 0 || handledFS(2)&(1<<13) == 0 {
		t.Error("refer is handled from ABI 2 on")
	}
}
