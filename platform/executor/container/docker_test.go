package container_test

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/moby/moby/client"

	"github.com/sluicehq/sluice/platform/executor"
	sluicecontainer "github.com/sluicehq/sluice/platform/executor/container"
	"github.com/sluicehq/sluice/platform/executor/container/containertest"
)

// lines collects a step's output.
type lines struct {
	mu  sync.Mutex
	out []string
}

func (l *lines) add(stream, line string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.out = append(l.out, stream+": "+line)
}

func (l *lines) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.out, "\n")
}

// runID is a run id of the test's own, so parallel tests' stages differ.
func runID(t *testing.T) string {
	return strings.ToLower(strings.NewReplacer("/", "-", "_", "-").Replace(t.Name())) + "-" + strconv.FormatInt(time.Now().UnixNano()%1e9, 36)
}

// stageOf opens a stage of a new run with a workspace and home of its own.
func stageOf(t *testing.T, d *sluicecontainer.Docker, st executor.StageSpec) (executor.Stage, executor.StageSpec) {
	t.Helper()
	if st.RunID == "" {
		st.RunID = runID(t)
	}
	if st.Stage == "" {
		st.Stage = "build"
	}
	if st.Dir == "" {
		st.Dir = t.TempDir()
		st.Home = st.Dir + ".home"
		t.Cleanup(func() { _ = os.RemoveAll(st.Home) })
	}
	s, err := d.Open(t.Context(), st)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(context.Background()); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return s, st
}

// engine is a plain client, to look at what the backend made.
func engine(t *testing.T) *client.Client {
	t.Helper()
	api, err := client.New(client.FromEnv)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = api.Close() })
	return api
}

// left are the containers and networks labelled with run.
func left(t *testing.T, run string) (containers, networks int) {
	t.Helper()
	api := engine(t)
	f := make(client.Filters).Add("label", sluicecontainer.LabelRun+"="+run)
	cs, err := api.ContainerList(context.Background(), client.ContainerListOptions{All: true, Filters: f})
	if err != nil {
		t.Fatal(err)
	}
	ns, err := api.NetworkList(context.Background(), client.NetworkListOptions{Filters: f})
	if err != nil {
		t.Fatal(err)
	}
	return len(cs.Items), len(ns.Items)
}

// running counts run's containers that have started: one listed while
// the engine still creates it may not be removable yet.
func running(t *testing.T, run string) int {
	t.Helper()
	f := make(client.Filters).Add("label", sluicecontainer.LabelRun+"="+run).Add("status", "running")
	cs, err := engine(t).ContainerList(context.Background(), client.ContainerListOptions{Filters: f})
	if err != nil {
		t.Fatal(err)
	}
	return len(cs.Items)
}

// A step runs in its image with the workspace and home mounted, its
// environment, as the service's user; its output arrives line by line
// with the secrets masked, and its exit code is the command's.
func TestStepRunsInItsImageInTheWorkspace(t *testing.T) {
	t.Parallel()
	img := containertest.Busybox(t)
	d := containertest.Docker(t, containertest.Config())
	s, st := stageOf(t, d, executor.StageSpec{Images: map[string]string{"compile": img}})
	if err := os.WriteFile(filepath.Join(st.Dir, "input.txt"), []byte("from the checkout\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var out lines
	res, err := s.Run(t.Context(), executor.Spec{
		Name: "compile", Image: img, Dir: st.Dir, Home: st.Home,
		Command: `cat input.txt; echo "$GREETING" > made.txt; echo "home=$HOME pwd=$(pwd) id=$(id -u)"; echo token=$TOKEN; echo oops >&2; exit 3`,
		Env:     map[string]string{"GREETING": "hello", "TOKEN": "s3cr3t-value"},
		Secrets: []string{"s3cr3t-value"},
		Output:  out.add,
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.ExitCode != 3 || res.TimedOut || res.Cancelled {
		t.Fatalf("result %+v, want exit code 3\n%s", res, &out)
	}
	got := out.String()
	for _, want := range []string{
		"stdout: from the checkout",
		"stdout: home=/sluice/home pwd=/workspace id=" + strconv.Itoa(os.Getuid()),
		"stdout: token=***",
		"stderr: oops",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("output lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "s3cr3t-value") {
		t.Errorf("the secret is in the output:\n%s", got)
	}
	made, err := os.ReadFile(filepath.Join(st.Dir, "made.txt"))
	if err != nil || string(made) != "hello\n" {
		t.Fatalf("made.txt = %q, %v", made, err)
	}
	fi, err := os.Stat(filepath.Join(st.Dir, "made.txt"))
	if err != nil {
		t.Fatal(err)
	}
	if owner, ok := fi.Sys().(*syscall.Stat_t); !ok || int(owner.Uid) != os.Getuid() || int(owner.Gid) != os.Getgid() {
		t.Fatalf("made.txt is owned by %+v, not by the service's user %d:%d", fi.Sys(), os.Getuid(), os.Getgid())
	}
	if c, _ := left(t, st.RunID); c != 0 {
		t.Fatalf("%d containers left after the step ended", c)
	}
}

// A stage's service is reachable by its name from the steps, and is
// removed with the stage's network when the stage closes.
func TestServiceIsReachableByNameAndRemovedWithTheStage(t *testing.T) {
	t.Parallel()
	img := containertest.Busybox(t)
	d := containertest.Docker(t, containertest.Config())
	st := executor.StageSpec{
		RunID: runID(t), Stage: "test", Dir: t.TempDir(),
		Images: map[string]string{"probe": img},
		Services: []executor.Service{{
			Name: "web", Image: img,
			Command: []string{"sh", "-c", "mkdir -p /tmp/www && echo pong-$ANSWER > /tmp/www/index.html && exec httpd -f -p 8080 -h /tmp/www"},
			Env:     map[string]string{"ANSWER": "42"},
		}},
	}
	s, err := d.Open(t.Context(), st)
	if err != nil {
		t.Fatal(err)
	}
	var out lines
	res, err := s.Run(t.Context(), executor.Spec{
		Name: "probe", Image: img, Dir: st.Dir,
		Command: `for i in $(seq 50); do wget -q -O - http://web:8080/ && exit 0; sleep 0.1; done; exit 1`,
		Output:  out.add,
	})
	if err != nil || res.ExitCode != 0 || !strings.Contains(out.String(), "pong-42") {
		t.Fatalf("probe: %+v %v\n%s", res, err, &out)
	}
	if c, n := left(t, st.RunID); c != 1 || n != 1 {
		t.Fatalf("while the stage is open: %d containers, %d networks; want the service and the network", c, n)
	}
	if err := s.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	if c, n := left(t, st.RunID); c != 0 || n != 0 {
		t.Fatalf("after close: %d containers, %d networks left", c, n)
	}
}

// A service that exits before the steps start fails the stage with its
// last lines, and leaves nothing behind.
func TestServiceThatExitsFailsTheStage(t *testing.T) {
	t.Parallel()
	img := containertest.Busybox(t)
	d := containertest.Docker(t, containertest.Config())
	st := executor.StageSpec{
		RunID: runID(t), Stage: "test", Dir: t.TempDir(),
		Services: []executor.Service{{Name: "db", Image: img, Command: []string{"sh", "-c", "echo cannot start: no config; exit 2"}}},
	}
	_, err := d.Open(t.Context(), st)
	if err == nil {
		t.Fatal("a service that exits opened")
	}
	if !strings.Contains(err.Error(), `service "db"`) || !strings.Contains(err.Error(), "cannot start: no config") {
		t.Fatalf("error %q does not name the service and its output", err)
	}
	if c, n := left(t, st.RunID); c != 0 || n != 0 {
		t.Fatalf("%d containers, %d networks left", c, n)
	}
}

// hostAddresses are this host's non-loopback IPv4 addresses (the Docker
// bridges' gateways among them).
func hostAddresses(t *testing.T) []string {
	t.Helper()
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, a := range addrs {
		if ip, ok := a.(*net.IPNet); ok && ip.IP.To4() != nil && !ip.IP.IsLoopback() {
			out = append(out, ip.IP.String())
		}
	}
	if len(out) == 0 {
		t.Fatal("no address but loopback")
	}
	return out
}

// A step cannot reach anything outside its stage's network (a server on
// the host, as the platform's NATS or API would be) unless the operator
// lets it (container-egress).
func TestStepReachesNothingOutsideItsNetwork(t *testing.T) {
	t.Parallel()
	img := containertest.Busybox(t)
	ln, err := new(net.ListenConfig).Listen(t.Context(), "tcp4", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_, _ = c.Write([]byte("platform\n"))
			_ = c.Close()
		}
	}()
	addr, ok := ln.Addr().(*net.TCPAddr)
	if !ok {
		t.Fatalf("listener address %v", ln.Addr())
	}
	port := strconv.Itoa(addr.Port)
	var probe strings.Builder
	for _, a := range hostAddresses(t) {
		probe.WriteString("if nc -w 2 " + a + " " + port + " </dev/null | grep -q platform; then echo reached " + a + "; exit 0; fi; ")
	}
	probe.WriteString("exit 1")

	for _, egress := range []bool{false, true} {
		cfg := containertest.Config()
		cfg.Egress = egress
		d := containertest.Docker(t, cfg)
		s, st := stageOf(t, d, executor.StageSpec{Images: map[string]string{"probe": img}})
		var out lines
		res, err := s.Run(t.Context(), executor.Spec{Name: "probe", Image: img, Dir: st.Dir, Command: probe.String(), Output: out.add})
		if err != nil {
			t.Fatal(err)
		}
		if reached := res.ExitCode == 0; reached != egress {
			t.Fatalf("egress %v: the step reached the host's server: %v\n%s", egress, reached, &out)
		}
	}
}

// The container's memory and processes are bounded: a step over either
// fails, and a step killed for its memory says so.
func TestLimitsAreEnforced(t *testing.T) {
	t.Parallel()
	img := containertest.Busybox(t)
	cfg := containertest.Config()
	cfg.Memory, cfg.Pids, cfg.CPUs = "64MiB", 32, "0.5"
	d := containertest.Docker(t, cfg)
	s, st := stageOf(t, d, executor.StageSpec{Images: map[string]string{"x": img}})

	var mem lines
	res, err := s.Run(t.Context(), executor.Spec{Name: "hog", Image: img, Dir: st.Dir, Output: mem.add,
		// The shell keeps the whole output in memory.
		Command: `x=$(head -c 400000000 /dev/zero | tr '\0' a); echo survived ${#x}`})
	if err != nil {
		t.Fatal(err)
	}
	if res.ExitCode == 0 || !strings.Contains(mem.String(), "out of memory") {
		t.Fatalf("memory hog: %+v\n%s", res, &mem)
	}

	var pids lines
	res, err = s.Run(t.Context(), executor.Spec{Name: "forks", Image: img, Dir: st.Dir, Output: pids.add,
		Command: `for i in $(seq 64); do sleep 5 & done 2>&1; wait; echo done`})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(strings.ToLower(pids.String()), "fork") {
		t.Fatalf("64 processes under a limit of 32 all started: %+v\n%s", res, &pids)
	}

	var cpu lines
	res, err = s.Run(t.Context(), executor.Spec{Name: "cpu", Image: img, Dir: st.Dir, Output: cpu.add,
		Command: `cat /sys/fs/cgroup/cpu.max 2>/dev/null || echo "$(cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us) $(cat /sys/fs/cgroup/cpu/cpu.cfs_period_us)"`})
	if err != nil || res.ExitCode != 0 {
		t.Fatalf("cpu: %+v %v\n%s", res, err, &cpu)
	}
	if !strings.Contains(cpu.String(), "50000 100000") {
		t.Fatalf("the step's CPU quota is not half a CPU:\n%s", &cpu)
	}
}

// A step over its timeout is stopped and reported timed out; a step whose
// context ends is stopped at once and reported cancelled; neither leaves
// its container.
func TestTimeoutAndCancelStopTheContainer(t *testing.T) {
	t.Parallel()
	img := containertest.Busybox(t)
	d := containertest.Docker(t, containertest.Config())
	s, st := stageOf(t, d, executor.StageSpec{Images: map[string]string{"x": img}})

	res, err := s.Run(t.Context(), executor.Spec{Name: "slow", Image: img, Dir: st.Dir, Command: "sleep 600", Timeout: time.Second})
	if err != nil || !res.TimedOut || res.ExitCode != -1 {
		t.Fatalf("timeout: %+v %v", res, err)
	}

	ctx, cancel := context.WithCancel(t.Context())
	started := make(chan struct{})
	var once sync.Once
	go func() {
		<-started
		cancel()
	}()
	res, err = s.Run(ctx, executor.Spec{Name: "cancelled", Image: img, Dir: st.Dir, Command: "echo up; sleep 600",
		Output: func(string, string) { once.Do(func() { close(started) }) }})
	if err != nil || !res.Cancelled || res.ExitCode != -1 {
		t.Fatalf("cancel: %+v %v", res, err)
	}
	// sleep ignores nothing: SIGTERM ends it well inside the kill grace.
	if res.Duration > 10*time.Second {
		t.Fatalf("cancel took %s", res.Duration)
	}
	if c, _ := left(t, st.RunID); c != 0 {
		t.Fatalf("%d containers left", c)
	}
}

// A new attempt at a stage removes what an earlier attempt left running
// (its worker died mid-step): its step and service containers and its
// network.
func TestNewAttemptRemovesWhatTheEarlierOneLeft(t *testing.T) {
	t.Parallel()
	img := containertest.Busybox(t)
	d := containertest.Docker(t, containertest.Config())
	run := runID(t)
	dir := t.TempDir()
	first := executor.StageSpec{RunID: run, Stage: "build", Attempt: 1, Dir: dir,
		Images:   map[string]string{"forever": img},
		Services: []executor.Service{{Name: "db", Image: img, Command: []string{"sleep", "600"}}}}
	s1, err := d.Open(t.Context(), first)
	if err != nil {
		t.Fatal(err)
	}
	// The worker "dies" mid-step: its step's context never ends, and
	// nothing closes the stage.
	go func() {
		_, _ = s1.Run(context.Background(), executor.Spec{Name: "forever", Image: img, Dir: dir, Command: "sleep 600"})
	}()
	deadline := time.Now().Add(time.Minute)
	// Both its service and its step have started: the worker is mid-step.
	for running(t, run) < 2 {
		if time.Now().After(deadline) {
			t.Fatal("the first attempt's step did not start")
		}
		time.Sleep(100 * time.Millisecond)
	}

	second := first
	second.Attempt = 2
	second.Services = nil
	s2, err := d.Open(t.Context(), second)
	if err != nil {
		t.Fatal(err)
	}
	if c, n := left(t, run); c != 0 || n != 1 {
		t.Fatalf("after the takeover: %d containers, %d networks; want only the new attempt's network", c, n)
	}
	if err := s2.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
}

// An image that is not on the host, with a pull policy of never, fails the
// stage naming the image and the setting.
func TestMissingImageWithPullNeverSaysSo(t *testing.T) {
	t.Parallel()
	d := containertest.Docker(t, containertest.Config())
	_, err := d.Open(t.Context(), executor.StageSpec{RunID: runID(t), Stage: "build", Dir: t.TempDir(),
		Images: map[string]string{"compile": "sluice-test-no-such-image:0"}})
	if err == nil || !strings.Contains(err.Error(), "sluice-test-no-such-image:0") || !strings.Contains(err.Error(), "container-pull is never") {
		t.Fatalf("error %v", err)
	}
}

// On a host without a container engine, a stage with an image step fails
// at once, naming the step, its image and why; steps without an image run
// as processes.
func TestNoEngineFailsImageStepsAtOnce(t *testing.T) {
	t.Parallel()
	cfg := containertest.Config()
	cfg.Engine = sluicecontainer.EngineAuto
	cfg.Host = "unix://" + filepath.Join(t.TempDir(), "no-docker.sock")
	steps, err := sluicecontainer.NewSteps(t.Context(), cfg, &executor.Local{Isolation: executor.Isolation{Mode: executor.IsolationOff}}, time.Minute, slogDiscard())
	if err != nil {
		t.Fatal(err)
	}
	_, err = steps.Open(t.Context(), executor.StageSpec{RunID: "r", Stage: "build", Images: map[string]string{"compile": "golang:1.25"}})
	if !errors.Is(err, executor.ErrNoContainers) || !strings.Contains(err.Error(), `step "compile" runs in image golang:1.25`) || !strings.Contains(err.Error(), "no-docker.sock") {
		t.Fatalf("error %v", err)
	}
	dir := t.TempDir()
	s, err := steps.Open(t.Context(), executor.StageSpec{RunID: "r", Stage: "build", Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	res, err := s.Run(t.Context(), executor.Spec{Name: "plain", Dir: dir, Command: "exit 0"})
	if err != nil || res.ExitCode != 0 {
		t.Fatalf("process step: %+v %v", res, err)
	}

	cfg.Engine = sluicecontainer.EngineDocker
	if _, err := sluicecontainer.NewSteps(t.Context(), cfg, &executor.Local{}, time.Minute, slogDiscard()); err == nil {
		t.Fatal("container-engine docker started without an engine")
	}
}

func slogDiscard() *slog.Logger { return slog.New(slog.DiscardHandler) }

// The sweep removes what a stage of an ended run left (a worker died and
// nobody took the stage over), and leaves alone a stage still running,
// another stage, and what another backend's labels mark.
func TestSweepRemovesWhatEndedStagesLeft(t *testing.T) {
	t.Parallel()
	img := containertest.Busybox(t)
	d := containertest.Docker(t, containertest.Config())
	open := func(run, stage string) {
		t.Helper()
		_, err := d.Open(t.Context(), executor.StageSpec{RunID: run, Stage: stage, Dir: t.TempDir(),
			Services: []executor.Service{{Name: "svc", Image: img, Command: []string{"sleep", "600"}}}})
		if err != nil {
			t.Fatal(err)
		}
		// Never closed: its worker "died".
	}
	endedRun, runningRun := runID(t)+"-ended", runID(t)+"-running"
	open(endedRun, "build")
	open(endedRun, "test")
	open(runningRun, "build")
	t.Cleanup(func() {
		for _, r := range []string{endedRun, runningRun} {
			for _, st := range []string{"build", "test"} {
				_ = d.RemoveStage(context.Background(), r, st)
			}
		}
	})
	other := containertest.Config()
	other.Labels = append(other.Labels, "installation=another")
	od := containertest.Docker(t, other)
	otherRun := runID(t) + "-other"
	if _, err := od.Open(t.Context(), executor.StageSpec{RunID: otherRun, Stage: "build", Dir: t.TempDir(),
		Services: []executor.Service{{Name: "svc", Image: img, Command: []string{"sleep", "600"}}}}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = od.RemoveStage(context.Background(), otherRun, "build") })

	var asked []string
	var mu sync.Mutex
	n, err := d.Sweep(t.Context(), "build", 0, func(_ context.Context, run string) (bool, error) {
		mu.Lock()
		defer mu.Unlock()
		asked = append(asked, run)
		return run == endedRun || run == otherRun, nil
	})
	if err != nil || n != 1 {
		t.Fatalf("sweep: %d runs, %v (asked about %v); want the ended run's build", n, err, asked)
	}
	for _, c := range []struct {
		run        string
		containers int
	}{{endedRun, 1}, {runningRun, 1}, {otherRun, 1}} {
		// endedRun keeps its test stage only.
		if got, _ := left(t, c.run); got != c.containers {
			t.Errorf("run %s: %d containers left, want %d", c.run, got, c.containers)
		}
	}
	if n, err := d.Sweep(t.Context(), "build", time.Hour, func(context.Context, string) (bool, error) { return true, nil }); err != nil || n != 0 {
		t.Fatalf("a sweep with an hour's grace swept %d runs (%v): every container is younger", n, err)
	}
}

// An image on a registry at a loopback or private address is not pulled
// (the engine would call it from its host's network) unless the operator
// names the registry.
func TestImagesFromPrivateRegistriesAreRefused(t *testing.T) {
	t.Parallel()
	cfg := containertest.Config()
	cfg.Pull = sluicecontainer.PullIfNotPresent
	d := containertest.Docker(t, cfg)
	open := func(d *sluicecontainer.Docker, img string) error {
		_, err := d.Open(t.Context(), executor.StageSpec{RunID: runID(t), Stage: "build", Dir: t.TempDir(), Images: map[string]string{"x": img}})
		return err
	}
	for _, img := range []string{"127.0.0.1:8081/sluice/api:1", "localhost:4222/nats:1", "10.0.0.7/mirror/tool:1"} {
		err := open(d, img)
		if err == nil || !strings.Contains(err.Error(), "container-registries") {
			t.Errorf("%s: %v; want it refused, naming container-registries", img, err)
		}
	}
	cfg.Registries = []string{"127.0.0.1:1"}
	allowed := containertest.Docker(t, cfg)
	if err := open(allowed, "127.0.0.1:1/mirror/tool:1"); err == nil || strings.Contains(err.Error(), "container-registries") {
		t.Errorf("a listed registry was refused, or an image pulled from nowhere: %v", err)
	}
}
