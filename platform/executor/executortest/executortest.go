// Package executortest gives tests the step sandbox settings that let
// their steps use the Go toolchain the tests run with.
package executortest

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/platform/executor"
)

// GoIsolation is the sandbox with the toolchain of the go command on PATH
// readable and the test process's own Go build cache shared with the
// steps (as a step's default HOME once shared it), so steps that build Go
// do not start from a cold cache. The module cache stays the run's own.
func GoIsolation(t testing.TB) executor.Isolation {
	t.Helper()
	root := executor.GoToolchainRoot()
	if root == "" {
		t.Fatal("no go command on PATH")
	}
	out, err := exec.CommandContext(t.Context(), filepath.Join(root, "bin", "go"), "env", "GOCACHE").Output()
	if err != nil {
		t.Fatalf("go env GOCACHE: %v", err)
	}
	cache := strings.TrimSpace(string(out))
	return executor.Isolation{
		ReadPaths:  []string{root},
		WritePaths: []string{cache},
		Env:        []string{"GOCACHE=" + cache},
	}
}
