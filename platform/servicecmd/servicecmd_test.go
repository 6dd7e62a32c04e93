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

func TestNATSFlags(t *testing.T) {
	f := New("build", ":0", "v1")
	_, err := f.Parse([]string{"--nats-replicas", "3"}, env(map[string]string{
		"SLUICE_BUILD_NATS_URL":      "nats://nats-1:4222,nats://nats-2:4222",
		"SLUICE_BUILD_NATS_USER":     "build",
		"SLUICE_BUILD_NATS_PASSWORD": "s3cret",
	}))
	if err != nil {
		t.Fatal(err)
	}
	c := f.NATS()
	if c.URL != "nats://nats-1:4222,nats://nats-2:4222" || c.User != "build" || c.Password != "s3cret" || c.InboxPrefix != "_INBOX_build" || c.Name != "sluice-build" {
		t.Fatalf("NATS() = %+v", c)
	}
	if f.NATSReplicas() != 3 {
		t.Fatalf("replicas %d", f.NATSReplicas())
	}
	def := New("build", ":0", "v1")
	if _, err := def.Parse(nil, env(nil)); err != nil || def.NATSReplicas() != 1 || def.NATS().User != "" {
		t.Fatalf("defaults: %v, replicas %d, %+v", err, def.NATSReplicas(), def.NATS())
	}
	for _, bad := range [][]string{{"--nats-replicas", "0"}, {"--nats-replicas", "6"}, {"--nats-password", "x"}} {
		if _, err := New("build", ":0", "v1").Parse(bad, env(nil)); err == nil {
			t.Errorf("%v: no error", bad)
		}
	}
}

// The password from the environment shows nowhere in the help.
func TestHelpHidesThePassword(t *testing.T) {
	t.Setenv("SLUICE_BUILD_NATS_PASSWORD", "s3cret-value")
	var out, errOut bytes.Buffer
	f := New("build", ":0", "v1")
	if code := f.run([]string{"-h"}, &out, &errOut, nil); code != 0 {
		t.Fatalf("-h: exit %d", code)
	}
	if !strings.Contains(errOut.String(), "SLUICE_BUILD_NATS_PASSWORD") || strings.Contains(out.String()+errOut.String(), "s3cret-value") {
		t.Fatalf("help:\n%s", errOut.String())
	}
}
