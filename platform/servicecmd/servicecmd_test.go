package servicecmd

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"go.uber.org/fx"

	"github.com/sluicehq/sluice/platform/servicekit"
)

// fakeConfig stands in for a service's Config.
type fakeConfig struct {
	servicekit.Settings
	Workers     int
	StepTimeout time.Duration
}

func (c *fakeConfig) RegisterFlags(f *servicekit.Flags) {
	c.Settings.RegisterFlags(f)
	f.IntVar(&c.Workers, "workers", "builds at once")
	f.DurationVar(&c.StepTimeout, "step-timeout", "step timeout")
}

func (c fakeConfig) WithDefaults() fakeConfig {
	c.Settings = c.Settings.WithDefaults("build")
	return c
}

func (c fakeConfig) Validate() error {
	if c.Workers < 1 {
		return errors.Join(c.Settings.Validate(), errors.New("workers must be at least 1"))
	}
	return c.Settings.Validate()
}

func command(version, commit string) Command[fakeConfig] {
	return Command[fakeConfig]{
		Service: "build", Addr: "127.0.0.1:8082", Version: version, Commit: commit,
		Config: fakeConfig{Settings: servicekit.Settings{DataDir: "data/build"}, Workers: 4, StepTimeout: time.Minute},
		Module: func(fakeConfig) fx.Option { return fx.Options() },
	}
}

func env(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func parseArgs(t *testing.T, args []string, vars map[string]string) (settings[fakeConfig], error) {
	t.Helper()
	var errOut bytes.Buffer
	return parse[fakeConfig](command("v1", ""), args, &errOut, env(vars))
}

func TestEnvironmentThenFlags(t *testing.T) {
	t.Parallel()
	s, err := parseArgs(t, []string{"--workers", "8"}, map[string]string{
		"SLUICE_BUILD_WORKERS":      "2",
		"SLUICE_BUILD_STEP_TIMEOUT": "5m",
		"SLUICE_BUILD_DATA_DIR":     "/var/lib/build",
	})
	if err != nil {
		t.Fatal(err)
	}
	c := s.config
	if c.Workers != 8 || c.StepTimeout != 5*time.Minute || c.DataDir != "/var/lib/build" || s.process.Addr != "127.0.0.1:8082" {
		t.Fatalf("config %+v, process %+v", c, s.process)
	}
}

func TestBadEnvironmentNamesTheVariable(t *testing.T) {
	t.Parallel()
	_, err := parseArgs(t, nil, map[string]string{"SLUICE_BUILD_WORKERS": "lots"})
	if err == nil || !strings.Contains(err.Error(), `$SLUICE_BUILD_WORKERS="lots"`) {
		t.Fatalf("err = %v", err)
	}
}

func TestRunExitCodes(t *testing.T) {
	t.Parallel()
	var out, errOut bytes.Buffer
	if code := Run[fakeConfig](command("v1.2.3", ""), []string{"--version"}, &out, &errOut, env(nil)); code != 0 || out.String() != "sluice-build v1.2.3\n" {
		t.Fatalf("--version: %d %q", code, out.String())
	}
	out.Reset()
	if code := Run[fakeConfig](command("v1.2.3", "0123abc"), []string{"--version"}, &out, &errOut, env(nil)); code != 0 || out.String() != "sluice-build v1.2.3 (0123abc)\n" {
		t.Fatalf("--version with commit: %d %q", code, out.String())
	}
	errOut.Reset()
	if code := Run[fakeConfig](command("v1", ""), []string{"--workers", "0"}, &out, &errOut, env(nil)); code != 2 || !strings.Contains(errOut.String(), "sluice-build: workers must be at least 1") {
		t.Fatalf("bad config: %d %q", code, errOut.String())
	}
	if code := Run[fakeConfig](command("v1", ""), []string{"stray"}, &out, &errOut, env(nil)); code != 2 {
		t.Fatalf("stray argument: exit %d", code)
	}
	if code := Run[fakeConfig](command("v1", ""), []string{"--nope"}, &out, &errOut, env(nil)); code != 2 {
		t.Fatalf("unknown flag: exit %d", code)
	}
	if code := Run[fakeConfig](command("v1", ""), []string{"--log-level", "loud"}, &out, &errOut, env(nil)); code != 2 {
		t.Fatalf("bad log level: exit %d", code)
	}
}

func TestNATSFlags(t *testing.T) {
	t.Parallel()
	s, err := parseArgs(t, []string{"--nats-replicas", "3"}, map[string]string{
		"SLUICE_BUILD_NATS_URL":      "nats://nats-1:4222,nats://nats-2:4222",
		"SLUICE_BUILD_NATS_USER":     "build",
		"SLUICE_BUILD_NATS_PASSWORD": "s3cret",
	})
	if err != nil {
		t.Fatal(err)
	}
	c := s.process.NATS("build")
	if c.URL != "nats://nats-1:4222,nats://nats-2:4222" || c.User != "build" || c.Password != "s3cret" || c.InboxPrefix != "_INBOX_build" || c.Name != "sluice-build" {
		t.Fatalf("NATS() = %+v", c)
	}
	if s.config.NATSReplicas != 3 {
		t.Fatalf("replicas %d", s.config.NATSReplicas)
	}
	def, err := parseArgs(t, nil, nil)
	if err != nil || def.config.NATSReplicas != 0 || def.process.NATS("build").User != "" || def.process.NATSURL != DefaultNATSURL {
		t.Fatalf("defaults: %v, %+v %+v", err, def.config, def.process)
	}
	for _, bad := range [][]string{{"--nats-replicas", "6"}, {"--nats-replicas", "-1"}, {"--nats-password", "x"}} {
		s, err := parseArgs(t, bad, nil)
		if err == nil {
			err = errors.Join(s.process.Validate(), s.config.WithDefaults().Validate())
		}
		if err == nil {
			t.Errorf("%v: no error", bad)
		}
	}
}

// The password from the environment shows nowhere in the help.
func TestHelpHidesThePassword(t *testing.T) {
	var out, errOut bytes.Buffer
	vars := env(map[string]string{"SLUICE_BUILD_NATS_PASSWORD": "s3cret-value"})
	if code := Run[fakeConfig](command("v1", ""), []string{"-h"}, &out, &errOut, vars); code != 0 {
		t.Fatalf("-h: exit %d", code)
	}
	if !strings.Contains(errOut.String(), "SLUICE_BUILD_NATS_PASSWORD") || strings.Contains(out.String()+errOut.String(), "s3cret-value") {
		t.Fatalf("help:\n%s", errOut.String())
	}
}
