// Package platformbench measures the all-in-one platform's own overhead
// per run: wall time from TriggerRun to the run's end (release verified)
// minus the time spent inside build and test steps, and the throughput with
// several runs in flight. Run it with `make bench`.
package platformbench

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicehq/sluice/platform/events"
	"github.com/sluicehq/sluice/proto/gen/sluice/build/events/v1"
	sourcev1 "github.com/sluicehq/sluice/proto/gen/sluice/source/v1"
	"github.com/sluicehq/sluice/proto/gen/sluice/source/v1/sourcev1connect"
	"github.com/sluicehq/sluice/proto/gen/sluice/test/events/v1"

	"github.com/sluicehq/sluice/cmd/sluice/internal/allinone"
)

const pipeline = `version: 1
build:
  steps:
    - name: compile
      run: "true"
test:
  steps:
    - name: unit
      run: "true"
release:
  branches: [main]
  environments:
    - name: staging
      deploy: "true"
      verify:
        command: "true"
`

type bench struct {
	client  sourcev1connect.SourceServiceClient
	repo    string
	git     *git.Repository
	commits int

	mu        sync.Mutex
	stepTimes map[string]time.Duration // run id -> time inside build and test steps
}

func setup(b *testing.B) (*bench, func()) {
	b.Helper()
	dir := b.TempDir()
	repoDir := filepath.Join(dir, "repo")
	repo, err := git.PlainInitWithOptions(repoDir, &git.PlainInitOptions{InitOptions: git.InitOptions{DefaultBranch: "refs/heads/main"}})
	if err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(repoDir, ".sluice.yaml"), []byte(pipeline), 0o644); err != nil {
		b.Fatal(err)
	}
	wt, _ := repo.Worktree()
	_, _ = wt.Add(".sluice.yaml")
	if _, err := wt.Commit("feat: bench", &git.CommitOptions{Author: &object.Signature{Name: "b", Email: "b@localhost", When: time.Now()}}); err != nil {
		b.Fatal(err)
	}
	ln, err := (&net.ListenConfig{}).Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	ctx := context.Background()
	o := allinone.DefaultOptions()
	o.DataDir, o.Process.Addr = filepath.Join(dir, "data"), addr
	o.Source.PollInterval = 0 // runs are triggered; a poll would start a second run of a commit
	p, err := allinone.Start(ctx, o)
	if err != nil {
		b.Fatal(err)
	}
	bn := &bench{client: sourcev1connect.NewSourceServiceClient(http.DefaultClient, p.URL), git: repo, stepTimes: map[string]time.Duration{}}
	res, err := bn.client.CreateRepository(ctx, &sourcev1.CreateRepositoryRequest{Url: repoDir, Name: "bench"})
	if err != nil {
		b.Fatal(err)
	}
	bn.repo = res.GetRepository().GetName()

	// Collect the time spent inside steps from the build and test events.
	nc, err := nats.Connect(p.NATSURL())
	if err != nil {
		b.Fatal(err)
	}
	js, _ := jetstream.New(nc)
	cctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for _, stream := range []string{"BUILD", "TEST"} {
		var cons jetstream.Consumer
		for i := 0; ; i++ {
			cons, err = js.OrderedConsumer(cctx, stream, jetstream.OrderedConsumerConfig{})
			if err == nil || i > 100 {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if err != nil {
			b.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			it, err := cons.Messages()
			if err != nil {
				return
			}
			go func() { <-cctx.Done(); it.Stop() }()
			for {
				m, err := it.Next()
				if err != nil {
					return
				}
				ev, err := events.Decode(m.Subject(), m.Headers(), m.Data())
				if err != nil {
					continue
				}
				var d time.Duration
				switch pl := ev.Payload.(type) {
				case *buildeventsv1.BuildFinished:
					d = pl.GetStepDuration().AsDuration()
				case *testeventsv1.TestRunFinished:
					d = pl.GetStepDuration().AsDuration()
				default:
					continue
				}
				bn.mu.Lock()
				bn.stepTimes[ev.ChainID] += d
				bn.mu.Unlock()
			}
		}()
	}
	return bn, func() {
		cancel()
		wg.Wait()
		nc.Close()
		sctx, c := context.WithTimeout(context.Background(), 30*time.Second)
		defer c()
		_ = p.Stop(sctx)
	}
}

type result struct {
	wall, steps time.Duration
	run         *sourcev1.Run
}

// commit adds a fix commit, so the next run releases a new patch version.
func (bn *bench) commit() error {
	wt, err := bn.git.Worktree()
	if err != nil {
		return err
	}
	bn.commits++
	_, err = wt.Commit(fmt.Sprintf("fix: change %d", bn.commits), &git.CommitOptions{
		AllowEmptyCommits: true,
		Author:            &object.Signature{Name: "b", Email: "b@localhost", When: time.Now()},
	})
	return err
}

// one triggers a run of the branch head and waits for its end.
func (bn *bench) one(ctx context.Context) (result, error) {
	start := time.Now()
	res, err := bn.client.TriggerRun(ctx, &sourcev1.TriggerRunRequest{Repository: bn.repo})
	if err != nil {
		return result{}, err
	}
	stream, err := bn.client.WatchRun(ctx, &sourcev1.WatchRunRequest{RunId: res.GetRun().GetId()})
	if err != nil {
		return result{}, err
	}
	defer stream.Close()
	var last *sourcev1.Run
	for stream.Receive() {
		last = stream.Msg().GetRun()
	}
	wall := time.Since(start)
	if err := stream.Err(); err != nil {
		return result{}, err
	}
	if last.GetStatus() != sourcev1.RunStatus_RUN_STATUS_SUCCEEDED {
		return result{}, fmt.Errorf("run %s ended %s: %s", last.GetId(), last.GetStatus(), last.GetFailureReason())
	}
	// The step-time events may land a moment after the run's end.
	var steps time.Duration
	for range 50 {
		bn.mu.Lock()
		steps = bn.stepTimes[last.GetId()]
		bn.mu.Unlock()
		if steps > 0 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	return result{wall: wall, steps: steps, run: last}, nil
}

func pct(ds []time.Duration, p float64) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[min(len(s)-1, int(float64(len(s))*p))]
}

// BenchmarkRunOverhead runs at least 50 runs one after the other and
// reports the platform's overhead per run at p50 and p95.
func BenchmarkRunOverhead(b *testing.B) {
	bn, stop := setup(b)
	defer stop()
	ctx := context.Background()
	// One warm-up run: the first run pays for creating consumers' state.
	if _, err := bn.one(ctx); err != nil {
		b.Fatal(err)
	}
	n := max(b.N, 50)
	var overheads, walls []time.Duration
	stage := map[string][]time.Duration{}
	b.ResetTimer()
	for range n {
		// A new commit each time (outside the timing): every run computes a
		// version from the commits since the last release and publishes it.
		b.StopTimer()
		if err := bn.commit(); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		r, err := bn.one(ctx)
		if err != nil {
			b.Fatal(err)
		}
		walls = append(walls, r.wall)
		overheads = append(overheads, r.wall-r.steps)
		prev := r.run.GetCreateTime().AsTime()
		for _, s := range r.run.GetStages() {
			if s.GetStartTime() == nil || s.GetEndTime() == nil {
				continue
			}
			stage["wait before "+s.GetName()] = append(stage["wait before "+s.GetName()], s.GetStartTime().AsTime().Sub(prev))
			stage[s.GetName()] = append(stage[s.GetName()], s.GetEndTime().AsTime().Sub(s.GetStartTime().AsTime()))
			prev = s.GetEndTime().AsTime()
		}
		stage["wait after release"] = append(stage["wait after release"], r.run.GetEndTime().AsTime().Sub(prev))
	}
	b.StopTimer()
	b.ReportMetric(float64(pct(overheads, 0.50).Microseconds())/1000, "overhead-p50-ms")
	b.ReportMetric(float64(pct(overheads, 0.95).Microseconds())/1000, "overhead-p95-ms")
	b.ReportMetric(float64(pct(walls, 0.50).Microseconds())/1000, "wall-p50-ms")
	fmt.Printf("\n%d runs, one at a time, each of a new commit (steps all `true`):\n", n)
	fmt.Printf("  overhead per run  p50 %v  p95 %v  (wall p50 %v, p95 %v)\n",
		pct(overheads, 0.5).Round(time.Microsecond*100), pct(overheads, 0.95).Round(time.Microsecond*100),
		pct(walls, 0.5).Round(time.Microsecond*100), pct(walls, 0.95).Round(time.Microsecond*100))
	fmt.Println("  where the time goes (p50; stage times include checkout, the deploy and verify commands):")
	for _, k := range []string{"wait before build", "build", "wait before test", "test", "wait before release", "release", "wait after release"} {
		if ds := stage[k]; len(ds) > 0 {
			fmt.Printf("    %-20s %v\n", k, pct(ds, 0.5).Round(time.Microsecond*100))
		}
	}
}

// BenchmarkThroughput keeps 10 runs in flight and reports runs/s.
func BenchmarkThroughput(b *testing.B) {
	bn, stop := setup(b)
	defer stop()
	ctx := context.Background()
	if _, err := bn.one(ctx); err != nil {
		b.Fatal(err)
	}
	const inFlight = 10
	total := max(b.N, 50)
	jobs := make(chan struct{}, total)
	for range total {
		jobs <- struct{}{}
	}
	close(jobs)
	var wg sync.WaitGroup
	errs := make(chan error, inFlight)
	b.ResetTimer()
	start := time.Now()
	for range inFlight {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range jobs {
				if _, err := bn.one(ctx); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
	rate := float64(total) / elapsed.Seconds()
	b.ReportMetric(rate, "runs/s")
	fmt.Printf("\n%d runs of one commit with %d in flight: %.1f runs/s (%v)\n", total, inFlight, rate, elapsed.Round(time.Millisecond))
}
