package containers

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ory/dockertest/v3"

	buildv1 "github.com/sluicehq/sluice/proto/gen/sluice/build/v1"
	sourcev1 "github.com/sluicehq/sluice/proto/gen/sluice/source/v1"
)

// EnvLoad runs the load test (make load): it takes minutes, so make test
// leaves it out.
const EnvLoad = "SLUICE_E2E_LOAD"

// loadPipeline is a pipeline whose stages cost little, so that what the
// load test measures is the platform: a build with an artifact, a test
// step with a report, no release (the stage is skipped).
const loadPipeline = `version: 1
build:
  steps:
    - name: compile
      run: mkdir -p out && cat VERSION > out/app
  artifacts:
    - name: app
      path: out/app
test:
  steps:
    - name: unit
      run: >-
        mkdir -p reports && printf '<testsuite name="unit" tests="1"><testcase classname="unit" name="reads-version"/></testsuite>' > reports/junit.xml && test -s VERSION
  reports:
    - path: reports/junit.xml
      format: junit
`

// Load: 1,000 runs queued at once across 20 repositories, on a stack with
// two build and two test replicas. Every run finishes once; the first run
// of every repository starts within a bound (no repository starves behind
// another's queue); the API answers meanwhile. It prints the time to each
// repository's first start, GetRun's and GetLogs' latency under load and
// idle against /healthz on the same replica, and each service's peak RSS.
func TestLoad(t *testing.T) {
	if os.Getenv(EnvLoad) == "" {
		t.Skipf("the load test runs with %s=1 (make load)", EnvLoad)
	}
	const repos, perRepo = 20, 50
	// The bound on a repository's first start: runs are queued in the order
	// they were triggered, so the last repository's first run waits for at
	// most the runs triggered before it, about one in each repository (20 s
	// measured on 2 cores).
	const firstStartBound = 90 * time.Second
	s := StartStack(t, StackOptions{Replicas: map[string]int{"build": 2, "test": 2}})
	api := s.API()
	ctx := context.Background()

	names := make([]string, repos)
	for i := range names {
		names[i] = fmt.Sprintf("load%02d", i)
		repo := s.NewRepo(names[i], map[string]string{".sluice.yaml": loadPipeline, "VERSION": "1\n"})
		if _, err := api.Source.CreateRepository(ctx, &sourcev1.CreateRepositoryRequest{Url: repo.InContainer(), Name: names[i]}); err != nil {
			t.Fatalf("register %s: %v", names[i], err)
		}
	}
	// A run to read while the load runs: GetRun and GetLogs of a finished
	// run, as a user watching the page of an earlier run would.
	probe := s.trigger(names[0])
	s.waitRun(t, probe, time.Minute)

	// The probe: GetRun (source), GetLogs (build) and /healthz of the
	// same replicas, one after the other, until stop; bounded in count.
	type sample struct{ getRun, getLogs, healthz, healthzBuild time.Duration }
	probeLoop := func(stop <-chan struct{}, max int) []sample {
		var out []sample
		hc := &http.Client{Timeout: 30 * time.Second}
		sourceHealth := s.URL("source") + "/healthz"
		buildHealth := s.URL("build") + "/healthz"
		timed := func(f func() error) time.Duration {
			start := time.Now()
			if err := f(); err != nil {
				t.Errorf("probe: %v", err)
			}
			return time.Since(start)
		}
		get := func(url string) func() error {
			return func() error { return httpGet(hc, url) }
		}
		for len(out) < max {
			select {
			case <-stop:
				return out
			default:
			}
			out = append(out, sample{
				getRun: timed(func() error {
					_, err := api.Source.GetRun(ctx, &sourcev1.GetRunRequest{RunId: probe})
					return err
				}),
				getLogs: timed(func() error {
					_, err := api.Build.GetLogs(ctx, &buildv1.GetLogsRequest{RunId: probe})
					return err
				}),
				healthz:      timed(get(sourceHealth)),
				healthzBuild: timed(get(buildHealth)),
			})
			time.Sleep(20 * time.Millisecond)
		}
		return out
	}
	report := func(phase string, samples []sample) {
		pick := func(f func(sample) time.Duration) []time.Duration {
			var d []time.Duration
			for _, s := range samples {
				d = append(d, f(s))
			}
			slices.Sort(d)
			return d
		}
		run, logs := pick(func(s sample) time.Duration { return s.getRun }), pick(func(s sample) time.Duration { return s.getLogs })
		hz, hzb := pick(func(s sample) time.Duration { return s.healthz }), pick(func(s sample) time.Duration { return s.healthzBuild })
		t.Logf("LOAD %s (%d samples): GetRun p50 %s p99 %s (%.1fx /healthz p50 %s); GetLogs p50 %s p99 %s (%.1fx build's /healthz p50 %s)",
			phase, len(samples), pct(run, 50), pct(run, 99), ratio(pct(run, 50), pct(hz, 50)), pct(hz, 50),
			pct(logs, 50), pct(logs, 99), ratio(pct(logs, 50), pct(hzb, 50)), pct(hzb, 50))
	}

	// Idle first.
	report("idle", probeLoop(make(chan struct{}), 300))

	// The burst: every repository's runs at once, 20 triggers in flight.
	stop := make(chan struct{})
	var underLoad []sample
	var probing sync.WaitGroup
	probing.Go(func() { underLoad = probeLoop(stop, 20000) })
	queued := time.Now()
	runs := make([][]string, repos)
	var triggering sync.WaitGroup
	for i, name := range names {
		triggering.Go(func() {
			for range perRepo {
				runs[i] = append(runs[i], s.trigger(name))
			}
		})
	}
	triggering.Wait()
	t.Logf("LOAD %d runs triggered in %s", repos*perRepo, time.Since(queued).Round(time.Millisecond))

	// Every run ends (bounded), and each repository's first start.
	var all []string
	for _, r := range runs {
		all = append(all, r...)
	}
	status := s.waitRuns(all, 15*time.Minute)
	close(stop)
	probing.Wait()
	t.Logf("LOAD all %d runs ended %s after the first trigger", len(all), time.Since(queued).Round(time.Millisecond))
	report("under load", underLoad)

	// None lost, none doubled: every run succeeded, with one build in one
	// attempt.
	succeeded := 0
	for _, id := range all {
		if status[id] == sourcev1.RunStatus_RUN_STATUS_SUCCEEDED {
			succeeded++
		}
	}
	builds := map[string]int{}
	// When a build worker started each run (the run's start).
	started := map[string]time.Time{}
	var retried int
	token := ""
	for {
		res, err := api.Build.ListBuilds(ctx, &buildv1.ListBuildsRequest{PageSize: 1000, PageToken: token})
		if err != nil {
			t.Fatalf("list builds: %v", err)
		}
		for _, b := range res.GetBuilds() {
			builds[b.GetRunId()]++
			if b.GetStartTime() != nil {
				started[b.GetRunId()] = b.GetStartTime().AsTime()
			}
			if b.GetAttempt() > 1 {
				retried++
			}
		}
		if token = res.GetNextPageToken(); token == "" {
			break
		}
	}
	var firsts []time.Duration
	for i, r := range runs {
		first := time.Duration(-1)
		for _, id := range r {
			if st, ok := started[id]; ok && (first < 0 || st.Sub(queued) < first) {
				first = st.Sub(queued)
			}
		}
		if first < 0 || first > firstStartBound {
			t.Errorf("%s: its first run started %s after the burst was queued; want within %s", names[i], first, firstStartBound)
		}
		firsts = append(firsts, first)
	}
	slices.Sort(firsts)
	t.Logf("LOAD first run of each repository started after: p50 %s, p95 %s, max %s", pct(firsts, 50), pct(firsts, 95), firsts[len(firsts)-1])

	twice := 0
	for _, id := range all {
		if builds[id] != 1 {
			twice++
		}
	}
	if distinct := len(builds); distinct < len(all) {
		t.Logf("LOAD %d builds for %d runs", distinct, len(all))
	}
	t.Logf("TALLY %s: runs started %d / succeeded %d / lost %d / built other than once %d / builds retried %d / dead letters %d",
		t.Name(), len(all), succeeded, len(all)-len(status), twice, retried, s.DeadLetters())
	if succeeded != len(all) || twice != 0 || retried != 0 {
		t.Errorf("not clean: %d of %d runs succeeded, %d built other than once, %d builds retried", succeeded, len(all), twice, retried)
	}

	// Memory stays bounded: a service that kept every run, line or event
	// in memory would grow with the burst.
	const rssBound = 256 // MiB
	for _, svc := range services {
		for _, c := range s.Replicas(svc) {
			mib, err := s.peakRSS(c.Res, "sluice-"+svc)
			if err != nil {
				t.Errorf("peak RSS of %s: %v", c.Name, err)
				continue
			}
			t.Logf("LOAD peak RSS %s: %.1f MiB", c.Name, mib)
			if mib > rssBound {
				t.Errorf("%s: peak RSS %.1f MiB; want at most %d MiB", c.Name, mib, rssBound)
			}
		}
	}
}

// trigger starts a run of the repository's head, retrying briefly.
func (s *Stack) trigger(repo string) string {
	var id string
	s.eventually("trigger a run of "+repo, time.Minute, func() error {
		res, err := s.API().Source.TriggerRun(context.Background(), &sourcev1.TriggerRunRequest{Repository: repo})
		if err != nil {
			return err
		}
		id = res.GetRun().GetId()
		return nil
	})
	return id
}

// waitRun waits for one run to end.
func (s *Stack) waitRun(t *testing.T, id string, within time.Duration) {
	status := s.waitRuns([]string{id}, within)
	if status[id] != sourcev1.RunStatus_RUN_STATUS_SUCCEEDED {
		t.Fatalf("run %s: %s", id, status[id])
	}
}

// waitRuns waits until every run ended or within passed, and returns the
// ended runs' status.
func (s *Stack) waitRuns(ids []string, within time.Duration) map[string]sourcev1.RunStatus {
	status := map[string]sourcev1.RunStatus{}
	deadline := time.Now().Add(within)
	api := s.API()
	for len(status) < len(ids) && time.Now().Before(deadline) {
		for _, id := range ids {
			if _, done := status[id]; done {
				continue
			}
			res, err := api.Source.GetRun(context.Background(), &sourcev1.GetRunRequest{RunId: id})
			if err != nil {
				continue
			}
			switch run := res.GetRun(); run.GetStatus() {
			case sourcev1.RunStatus_RUN_STATUS_SUCCEEDED, sourcev1.RunStatus_RUN_STATUS_FAILED, sourcev1.RunStatus_RUN_STATUS_CANCELLED:
				status[id] = run.GetStatus()
			}
		}
		time.Sleep(time.Second)
	}
	return status
}

// peakRSS is the high-water mark of the resident memory (VmHWM) of the
// process named comm in the container, read from the host's /proc (not
// every image has a shell).
func (s *Stack) peakRSS(res *dockertest.Resource, comm string) (float64, error) {
	top, err := s.pool.Client.TopContainer(res.Container.ID, "")
	if err != nil {
		return 0, err
	}
	pidCol, cmdCol := slices.Index(top.Titles, "PID"), slices.Index(top.Titles, "CMD")
	if pidCol < 0 || cmdCol < 0 {
		return 0, fmt.Errorf("docker top gave %q", top.Titles)
	}
	for _, p := range top.Processes {
		if !strings.Contains(p[cmdCol], comm) || strings.Contains(p[cmdCol], "docker-init") {
			continue
		}
		status, err := os.ReadFile("/proc/" + p[pidCol] + "/status")
		if err != nil {
			return 0, err
		}
		for line := range strings.Lines(string(status)) {
			if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmHWM:" {
				kb, err := strconv.Atoi(f[1])
				if err != nil {
					return 0, fmt.Errorf("VmHWM %q: %w", f[1], err)
				}
				return float64(kb) / 1024, nil
			}
		}
		return 0, fmt.Errorf("no VmHWM for process %s", p[pidCol])
	}
	return 0, fmt.Errorf("no process %s", comm)
}

// httpGet fails unless url answers 200.
func httpGet(hc *http.Client, url string) error {
	resp, err := hc.Get(url) //nolint:noctx // bounded by the client's timeout
	if err != nil {
		return err
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", url, resp.Status)
	}
	return nil
}

// pct is the p-th percentile of sorted d.
func pct(d []time.Duration, p int) time.Duration {
	if len(d) == 0 {
		return 0
	}
	return d[min(len(d)-1, len(d)*p/100)].Round(10 * time.Microsecond)
}

func ratio(a, b time.Duration) float64 {
	if b <= 0 {
		return 0
	}
	return float64(a) / float64(b)
}
