package containers

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/ory/dockertest/v3/docker"

	"github.com/sluicehq/sluice/platform/executor/container"
	"github.com/sluicehq/sluice/platform/executor/container/containertest"
	buildv1 "github.com/sluicehq/sluice/proto/gen/sluice/build/v1"
	sourcev1 "github.com/sluicehq/sluice/proto/gen/sluice/source/v1"
)

// stepContainers are the step and service containers of run (any stage),
// with attempt when it is not 0.
func (s *Stack) stepContainers(run string, attempt int) []docker.APIContainers {
	s.t.Helper()
	labels := []string{container.LabelRun + "=" + run}
	if attempt > 0 {
		labels = append(labels, fmt.Sprintf("%s=%d", container.LabelAttempt, attempt))
	}
	cs, err := s.pool.Client.ListContainers(docker.ListContainersOptions{All: true, Filters: map[string][]string{"label": labels}})
	if err != nil {
		s.t.Fatal(err)
	}
	return cs
}

// runOf registers a repository with a pipeline and triggers its run.
func (s *Stack) runOf(name, pipeline string, files map[string]string) string {
	s.t.Helper()
	if files == nil {
		files = map[string]string{}
	}
	files[".sluice.yaml"] = pipeline
	repo := s.NewRepo(name, files)
	api := s.API()
	if _, err := api.Source.CreateRepository(context.Background(), &sourcev1.CreateRepositoryRequest{Url: repo.InContainer(), Name: name}); err != nil {
		s.t.Fatalf("register %s: %v", name, err)
	}
	res, err := api.Source.TriggerRun(context.Background(), &sourcev1.TriggerRunRequest{Repository: name, Ref: "main"})
	if err != nil {
		s.t.Fatalf("trigger %s: %v", name, err)
	}
	return res.GetRun().GetId()
}

// finished waits for run to end and returns it.
func (s *Stack) finished(runID string, within time.Duration) *sourcev1.Run {
	s.t.Helper()
	var run *sourcev1.Run
	s.eventually("run "+runID+" finished", within, func() error {
		res, err := s.API().Source.GetRun(context.Background(), &sourcev1.GetRunRequest{RunId: runID})
		if err != nil {
			return err
		}
		run = res.GetRun()
		switch run.GetStatus() {
		case sourcev1.RunStatus_RUN_STATUS_SUCCEEDED, sourcev1.RunStatus_RUN_STATUS_FAILED, sourcev1.RunStatus_RUN_STATUS_CANCELLED:
			return nil
		}
		return fmt.Errorf("run %s is %s", runID, run.GetStatus())
	})
	return run
}

// Steps with an image run in containers beside the build and test
// replicas (themselves containers, on the host's Docker Engine through
// its socket): a build step in an image, a test step that reaches the
// stage's service by its name and cannot reach NATS or a Sluice API, a
// memory hog killed at its limit, and a build replica killed in the
// middle of a container step, whose container the replica taking the
// build over removes.
func TestStepsInContainersBesideTheServices(t *testing.T) {
	img := containertest.Busybox(t)
	s := StartStack(t, StackOptions{Replicas: map[string]int{"build": 2}, ContainerSteps: true, ContainerMemory: "64MiB"})

	// What a step must not reach: NATS and source, by name and by address
	// on the stack's network.
	var targets []string
	for i, n := range s.NATS {
		targets = append(targets, fmt.Sprintf("%s-nats-%d:4222", s.name, i+1), n.GetIPInNetwork(s.net)+":4222")
	}
	src := s.Replicas("source")[0].Res
	targets = append(targets, s.name+"-source:8081", src.GetIPInNetwork(s.net)+":8081")
	var probe strings.Builder
	for _, tg := range targets {
		host, port, _ := strings.Cut(tg, ":")
		fmt.Fprintf(&probe, "if nc -z -w 2 %s %s; then echo reached %s; exit 1; fi; ", host, port, tg)
	}
	probe.WriteString("echo reached nothing")

	pipeline := `version: 1
build:
  steps:
    - name: compile
      image: ` + img + `
      run: mkdir -p out && echo "built in $SLUICE_WORKSPACE" > out/app && cat out/app && sleep "$(cat pause)"
  artifacts:
    - {name: app, path: out/app}
test:
  services:
    - name: db
      image: ` + img + `
      command: [sh, -c, "mkdir -p /tmp/w && echo db-is-up > /tmp/w/index.html && exec httpd -f -p 5432 -h /tmp/w"]
  steps:
    - name: reaches-db
      image: ` + img + `
      run: for i in $(seq 100); do wget -q -O - http://db:5432/ && exit 0; sleep 0.2; done; exit 1
    - name: isolated
      image: ` + img + `
      run: '` + probe.String() + `'
`
	// The first run's build pauses 25 s in its container, to be caught
	// there.
	runID := s.runOf("boxed", pipeline, map[string]string{"pause": "25\n"})
	var step []docker.APIContainers
	s.eventually("the compile step's container", 2*time.Minute, func() error {
		if step = s.stepContainers(runID, 1); len(step) == 0 {
			return fmt.Errorf("no container of run %s yet", runID)
		}
		return nil
	})
	b := s.RunningBuild(time.Minute)
	victim := s.ReplicaOf("build", b.GetWorkerId())
	t.Logf("killing %s in the middle of step container %s", victim.Name, step[0].Names)
	s.Kill(victim.Res)
	// The other replica takes the build over once the lease lapses, and
	// removes the first attempt's container before its own step starts.
	s.eventually("the first attempt's container removed", 3*time.Minute, func() error {
		if left := s.stepContainers(runID, 1); len(left) > 0 {
			return fmt.Errorf("%d containers of the first attempt are left", len(left))
		}
		return nil
	})
	run := s.finished(runID, 4*time.Minute)
	logs := cli(t, s, "logs", runID)
	if run.GetStatus() != sourcev1.RunStatus_RUN_STATUS_SUCCEEDED {
		t.Fatalf("run %s: %s\n%s", run.GetStatus(), run.GetFailureReason(), logs)
	}
	for _, want := range []string{"built in /workspace", "db-is-up", "reached nothing", "took over (attempt 2)"} {
		if !strings.Contains(logs, want) {
			t.Errorf("the run's logs lack %q:\n%s", want, logs)
		}
	}
	res, err := s.API().Build.GetBuild(context.Background(), &buildv1.GetBuildRequest{RunId: runID})
	if err != nil || res.GetBuild().GetAttempt() != 2 {
		t.Errorf("build attempt %d (%v), want 2: the killed replica's build taken over", res.GetBuild().GetAttempt(), err)
	}
	if left := s.stepContainers(runID, 0); len(left) > 0 {
		t.Errorf("the run left %d containers", len(left))
	}

	// A step over the memory limit is killed, and says so.
	hog := `version: 1
build:
  steps:
    - name: hog
      image: ` + img + `
      run: x=$(head -c 400000000 /dev/zero | tr '\0' a); echo survived
`
	hogID := s.runOf("hog", hog, nil)
	run = s.finished(hogID, 2*time.Minute)
	if run.GetStatus() != sourcev1.RunStatus_RUN_STATUS_FAILED || !strings.Contains(cli(t, s, "logs", hogID), "out of memory") {
		t.Fatalf("memory hog: run %s (%s)\n%s", run.GetStatus(), run.GetFailureReason(), cli(t, s, "logs", hogID))
	}
}
