package e2e

import (
	"context"
	"strings"
	"testing"

	"github.com/moby/moby/client"

	sluicecontainer "github.com/sluicehq/sluice/platform/executor/container"
	"github.com/sluicehq/sluice/platform/executor/container/containertest"
)

// containerEnv makes `sluice up`'s build and test services run image
// steps on this host's Docker Engine, with the tests' labels (so `make
// test-clean` finds what a killed run left) and no pulls.
func containerEnv() []string {
	var labels []string
	for k, v := range containertest.TestLabels() {
		labels = append(labels, k+"="+v)
	}
	var env []string
	for _, svc := range []string{"BUILD", "TEST"} {
		env = append(env,
			"SLUICE_"+svc+"_CONTAINER_ENGINE=docker",
			"SLUICE_"+svc+"_CONTAINER_PULL=never",
			"SLUICE_"+svc+"_CONTAINER_LABELS="+strings.Join(labels, ","))
	}
	return env
}

// A pipeline whose build step runs in an image and whose test step
// reaches a service container by its name runs to its end on `sluice
// up`, and leaves no container or network behind.
func TestStepsInContainersOnTheAllInOne(t *testing.T) {
	img := containertest.Busybox(t)
	p, _ := startAllInOne(t, t.TempDir(), containerEnv()...)
	pipeline := `version: 1
build:
  steps:
    - name: compile
      image: ` + img + `
      run: mkdir -p out && echo "app built in $SLUICE_WORKSPACE" > out/app && cat out/app
  artifacts:
    - {name: app, path: out/app}
test:
  services:
    - name: db
      image: ` + img + `
      command: [sh, -c, "mkdir -p /tmp/w && echo db-is-up > /tmp/w/index.html && exec httpd -f -p 8080 -h /tmp/w"]
  steps:
    - name: integration
      image: ` + img + `
      run: for i in $(seq 50); do wget -q -O - http://db:8080/ && exit 0; sleep 0.2; done; exit 1
`
	repo := newGitRepo(t, map[string]string{".sluice.yaml": pipeline})
	mustCLI(t, p.env, "repo", "add", repo.Dir, "--name", "boxed")
	out, code := cli(t, p.env, "trigger", "boxed", "--follow")
	if code != 0 {
		t.Fatalf("trigger --follow exit %d:\n%s", code, out)
	}
	runID := lastRunID(t, p, "boxed")
	logs := mustCLI(t, p.env, "logs", runID)
	for _, want := range []string{"app built in /workspace", "db-is-up"} {
		if !strings.Contains(logs, want) {
			t.Errorf("the run's logs lack %q:\n%s", want, logs)
		}
	}
	checkNothingLeft(t, runID)
}

// checkNothingLeft checks that the run left no container or network.
func checkNothingLeft(t *testing.T, runID string) {
	t.Helper()
	api, err := client.New(client.FromEnv)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = api.Close() }()
	f := make(client.Filters).Add("label", sluicecontainer.LabelRun+"="+runID)
	left, err := api.ContainerList(context.Background(), client.ContainerListOptions{All: true, Filters: f})
	if err != nil || len(left.Items) != 0 {
		t.Fatalf("the run left %d containers (%v)", len(left.Items), err)
	}
	nets, err := api.NetworkList(context.Background(), client.NetworkListOptions{Filters: f})
	if err != nil || len(nets.Items) != 0 {
		t.Fatalf("the run left %d networks (%v)", len(nets.Items), err)
	}
}
