package servicecmd

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"go.uber.org/fx"
)

func env(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func TestEnvironmentThenFlags(t *testing.T) {
	f := New("build", "127.0.0.1:8082", "v1")
	workers := f.Int("workers", 4, "builds at once")
	timeout := f.Duration("step-timeout", time.Minute, "step timeout")
	_, err := f.Parse([]string{"--workers", "8"}, env(map[string]string{
		"SLUICE_BUILD_WORKERS":      "2",
		"SLUICE_BUILD_STEP_TIMEOUT": "5m",
		"SLUICE_BUILD_DATA_DIR":     "/var/lib/build",
	}))
	if err != nil {
		t.Fatal(err)
	}
	if *workers != 8 || *timeout != 5*time.Minute || f.DataDir() != "/var/lib/build" || *f.addr != "127.0.0.1:8082" {
		t.Fatalf("workers %d timeout %v dir %q addr %q", *workers, *timeout, f.DataDir(), *f.addr)
	}
}

func TestBadEnvironmentNamesTheVariable(t *testing.T) {
	f := New("test", ":0", "v1")
	f.Int("workers", 4, "")
	_, err := f.Parse(nil, env(map[string]string{"SLUICE_TEST_WORKERS": "lots"}))
	if err == nil || !strings.Contains(err.Error(), `SLUICE_TEST_WORKERS="lots"`) {
		t.Fatalf("err = %v", err)
	}
}

func TestRunExitCodes(t *testing.T) {
	var out, errOut bytes.Buffer
	f := New("notify", ":0", "v1.2.3")
	if code := f.run([]string{"--version"}, &out, &errOut, nil); code != 0 || out.String() != "sluice-notify v1.2.3\n" {
		t.Fatalf("--version: %d %q", code, out.String())
	}
	out.Reset()
	f = New("notify", ":0", "v1.2.3").WithCommit("0123abc")
	if code := f.run([]string{"--version"}, &out, &errOut, nil); code != 0 || out.String() != "sluice-notify v1.2.3 (0123abc)\n" {
		t.Fatalf("--version with commit: %d %q", code, out.String())
	}
	f = New("notify", ":0", "v1")
	code := f.run(nil, &out, &errOut, func() (fx.Option, error) { return nil, errors.New("notify config: DataDir is required") })
	if code != 2 || !strings.Contains(errOut.String(), "sluice-notify: notify config: DataDir is required") {
		t.Fatalf("bad config: %d %q", code, errOut.String())
	}
	f = New("notify", ":0", "v1")
	if code := f.run([]string{"stray"}, &out, &errOut, nil); code != 2 {
		t.Fatalf("stray argument: exit %d", code)
	}
}
