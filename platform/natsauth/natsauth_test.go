package natsauth_test

import (
	"bytes"
	"context"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"go.uber.org/goleak"

	"github.com/sluicehq/sluice/deploy"
	"github.com/sluicehq/sluice/platform/natsauth"
	"github.com/sluicehq/sluice/platform/natsprovision"
	"github.com/sluicehq/sluice/platform/natstest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m, natstest.KnownLeaks()...) }

// repoRoot is the folder with go.work, above the working directory.
func repoRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.work")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.work above the working directory: run the tests in the repository")
		}
		dir = parent
	}
}

// The committed auth configs are what the generator makes of the
// committed declarations.
func TestCommittedAuthConfIsGenerated(t *testing.T) {
	want, err := natsauth.Generate(deploy.NATS())
	if err != nil {
		t.Fatal(err)
	}
	root := repoRoot(t)
	for _, rel := range []string{"deploy/nats/auth.conf", "deploy/k8s/base/nats/auth.conf"} {
		got, err := os.ReadFile(filepath.Join(root, filepath.FromSlash(rel)))
		if err != nil {
			t.Errorf("%s: %v; run make generate", rel, err)
			continue
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s is not what platform/natsauth generates from deploy/nats: run make generate", rel)
		}
	}
	// The binaries embed deploy/nats, the auth config with it.
	embedded, err := fs.ReadFile(deploy.NATS(), "auth.conf")
	if err != nil || !bytes.Equal(embedded, want) {
		t.Errorf("deploy.NATS() auth.conf differs from the generated one (%v): run make generate", err)
	}
}

// passwords returns a NATS_<USER>_PASSWORD=... environment for every user
// but the ones left out.
func passwords(t *testing.T, leaveOut ...string) []string {
	t.Helper()
	d, err := natsprovision.Load(deploy.NATS())
	if err != nil {
		t.Fatal(err)
	}
	users, err := natsauth.Users(d)
	if err != nil {
		t.Fatal(err)
	}
	var env []string
	for _, u := range users {
		if !slices.Contains(leaveOut, u.Name) {
			env = append(env, natsauth.PasswordEnv(u.Name)+"=pw-"+u.Name)
		}
	}
	return env
}

// writeServerConfig writes a server config that includes the generated
// auth config, as a deployment does, and returns its path.
func writeServerConfig(t *testing.T) string {
	t.Helper()
	conf, err := natsauth.Generate(deploy.NATS())
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "auth.conf"), conf, 0o600); err != nil {
		t.Fatal(err)
	}
	main := filepath.Join(dir, "nats.conf")
	if err := os.WriteFile(main, []byte("include ./auth.conf\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return main
}

// nats-server -t accepts the config with every password set, and refuses
// it when one is missing.
func TestServerChecksConfig(t *testing.T) {
	bin, err := natstest.Binary()
	if err != nil {
		t.Fatal(err)
	}
	conf := writeServerConfig(t)
	check := func(env []string) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, bin, "-c", conf, "-t")
		cmd.Env = append(os.Environ(), env...)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	if out, err := check(passwords(t)); err != nil || !strings.Contains(out, "is valid") {
		t.Fatalf("nats-server -t: %v\n%s", err, out)
	}
	out, err := check(passwords(t, "test"))
	if err == nil || !strings.Contains(out, "NATS_TEST_PASSWORD") {
		t.Fatalf("nats-server -t without NATS_TEST_PASSWORD: %v\n%s", err, out)
	}
}

func publishOf(t *testing.T, users []natsauth.User, name string) []string {
	t.Helper()
	for _, u := range users {
		if u.Name == name {
			var subjects []string
			for _, r := range u.Publish {
				subjects = append(subjects, r.Subject)
			}
			return subjects
		}
	}
	t.Fatalf("no user %s", name)
	return nil
}

// A consumer declared under deploy/nats gives its service the rights to
// it, and nobody else.
func TestPermissionsFollowTheDeclarations(t *testing.T) {
	fsys := fstest.MapFS{}
	err := fs.WalkDir(deploy.NATS(), ".", func(p string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return err
		}
		data, err := fs.ReadFile(deploy.NATS(), p)
		fsys[p] = &fstest.MapFile{Data: data}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	fsys["consumers/release/release-audit.json"] = &fstest.MapFile{Data: []byte(
		`{"stream":"NOTIFY","config":{"durable_name":"release-audit","filter_subject":"sluice.notify.>","ack_policy":"explicit"}}`)}
	d, err := natsprovision.Load(fsys)
	if err != nil {
		t.Fatal(err)
	}
	users, err := natsauth.Users(d)
	if err != nil {
		t.Fatal(err)
	}
	release := publishOf(t, users, "release")
	for _, want := range []string{
		"$JS.API.STREAM.INFO.NOTIFY",
		// One filter_subject is part of the create subject (nats.go).
		"$JS.API.CONSUMER.CREATE.NOTIFY.release-audit.sluice.notify.>",
		"$JS.API.CONSUMER.INFO.NOTIFY.release-audit",
		"$JS.API.CONSUMER.MSG.NEXT.NOTIFY.release-audit",
		"$JS.ACK.NOTIFY.release-audit.>",
	} {
		if !slices.Contains(release, want) {
			t.Errorf("release may not publish %s:\n%s", want, strings.Join(release, "\n"))
		}
	}
	for _, other := range []string{"source", "build", "test", "notify"} {
		for _, s := range publishOf(t, users, other) {
			if strings.Contains(s, "release-audit") {
				t.Errorf("%s got %s", other, s)
			}
		}
	}
	// The declared consumers (filter_subjects) use the create subject
	// without the filter.
	if build := publishOf(t, users, "build"); !slices.Contains(build, "$JS.API.CONSUMER.CREATE.SOURCE.build-runs") {
		t.Errorf("build may not create its consumer:\n%s", strings.Join(build, "\n"))
	}
	// Only the owner writes to the object store; its readers read.
	for _, u := range []string{"source", "test", "release", "notify"} {
		if slices.Contains(publishOf(t, users, u), "$O.sluice-artifacts.>") {
			t.Errorf("%s may write artifacts", u)
		}
	}
	for _, u := range []string{"test", "release"} {
		if !slices.Contains(publishOf(t, users, u), "$JS.API.CONSUMER.CREATE.OBJ_sluice-artifacts.>") {
			t.Errorf("%s may not read artifacts", u)
		}
	}
}

func TestDeclarationErrors(t *testing.T) {
	stream := func(name string) *fstest.MapFile {
		return &fstest.MapFile{Data: []byte(`{"name":"` + name + `","subjects":["x.>"]}`)}
	}
	for name, c := range map[string]struct {
		fsys fstest.MapFS
		want string
	}{
		"consumer of an undeclared stream": {fstest.MapFS{
			"streams/BUILD.json":     stream("BUILD"),
			"consumers/build/b.json": {Data: []byte(`{"stream":"SOURCE","config":{"durable_name":"b"}}`)},
		}, "reads stream SOURCE, which is not declared"},
		"reader that is no service": {fstest.MapFS{
			"objectstores/a.json": {Data: []byte(`{"owner":"build","readers":["deploy"],"config":{"bucket":"a"}}`)},
		}, `reader "deploy" is not another service`},
		"owner reading its own store": {fstest.MapFS{
			"objectstores/a.json": {Data: []byte(`{"owner":"build","readers":["build"],"config":{"bucket":"a"}}`)},
		}, `reader "build" is not another service`},
		"consumer of no service": {fstest.MapFS{
			"streams/BUILD.json":      stream("BUILD"),
			"consumers/deploy/d.json": {Data: []byte(`{"stream":"BUILD","config":{"durable_name":"d"}}`)},
		}, `"deploy" is not a service`},
		"stream of no service": {fstest.MapFS{"streams/METRICS.json": stream("METRICS")}, "stream METRICS belongs to no service"},
	} {
		if _, err := natsauth.Generate(c.fsys); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: Generate: %v, want %q", name, err, c.want)
		}
	}
}
