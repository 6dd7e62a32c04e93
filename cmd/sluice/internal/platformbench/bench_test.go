package platformbench

import (
	"context"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicehq/sluice/platform/events"
	"github.com/sluicehq/sluice/platform/gittest"
	buildeventsv1 "github.com/sluicehq/sluice/proto/gen/sluice/build/events/v1"
	sourcev1 "github.com/sluicehq/sluice/proto/gen/sluice/source/v1"
	"github.com/sluicehq/sluice/proto/gen/sluice/source/v1/sourcev1connect"
	testeventsv1 "github.com/sluicehq/sluice/proto/gen/sluice/test/events/v1"

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
	git     *gittest.Repo
	commits int
	nc      *nats.Conn
	js      jetstream.JetStream
	// hops are real messages of the run path's hop subjects, seen in the
	// warm-up run: the floor publishes copies of them.
	hops map[string]*nats.Msg

	mu        sync.Mutex
	stepTimes map[string]time.Duration // run id -> time inside build and test steps
}

// setup starts the platform and makes its warm-up run.
func setup(b *testing.B) (*bench, result, func()) {
	b.Helper()
	dir := b.TempDir()
	repo := gittest.Init(b, filepath.Join(dir, "repo"), "main")
	repo.CommitFile(".sluice.yaml", pipeline, "feat: bench")
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
	bn := &bench{client: sourcev1connect.NewSourceServiceClient(p.Client(), p.URL), git: repo, stepTimes: map[string]time.Duration{}}
	res, err := bn.client.CreateRepository(ctx, &sourcev1.CreateRepositoryRequest{Url: repo.Dir, Name: "bench"})
	if err != nil {
		b.Fatal(err)
	}
	bn.repo = res.GetRepository().GetName()

	// Collect the time spent inside steps from the build and test events.
	nc, err := nats.Connect(p.NATSURL())
	if err != nil {
		b.Fatal(err)
	}
	bn.nc = nc
	js, _ := jetstream.New(nc)
	bn.js = js
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
	stop := func() {
		cancel()
		wg.Wait()
		nc.Close()
		sctx, c := context.WithTimeout(context.Background(), 30*time.Second)
		defer c()
		_ = p.Stop(sctx)
	}
	warm, err := bn.warmUp(ctx)
	if err != nil {
		stop()
		b.Fatal(err)
	}
	return bn, warm, stop
}

type result struct {
	wall, steps time.Duration
	start, end  time.Time // TriggerRun called, WatchRun ended
	run         *sourcev1.Run
}

// commit adds a fix commit, so the next run releases a new patch version.
func (bn *bench) commit() {
	bn.commits++
	bn.git.Commit(fmt.Sprintf("fix: change %d", bn.commits))
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
	end := time.Now()
	wall := end.Sub(start)
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
	return result{wall: wall, steps: steps, start: start, end: end, run: last}, nil
}

func pct(ds []time.Duration, p float64) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[min(len(s)-1, int(float64(len(s))*p))]
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func round(d time.Duration) time.Duration { return d.Round(100 * time.Microsecond) }

// warmUp makes one run, which pays for creating consumers' state, and keeps
// a message of each hop subject it published for the floor.
func (bn *bench) warmUp(ctx context.Context) (result, error) {
	c, err := captureHops(bn.nc, runPath)
	if err != nil {
		return result{}, err
	}
	r, err := bn.one(ctx)
	if err != nil {
		c.unsubscribe()
		return result{}, err
	}
	bn.hops, err = c.stop(runPath)
	return r, err
}

// waitQuiet waits until every consumer of the platform has handled and
// acknowledged every event: the work the last run left beside its path
// (its RunFinished, notify's and source's folds of the stage events) is
// not the floor's to pay for.
func (bn *bench) waitQuiet(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for {
		busy, err := bn.busy(ctx)
		if err != nil {
			return fmt.Errorf("wait for the platform to be quiet: %w", err)
		}
		if !busy {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for the platform to be quiet: %w", ctx.Err())
		case <-time.After(5 * time.Millisecond):
		}
	}
}

func (bn *bench) busy(ctx context.Context) (bool, error) {
	streams := bn.js.ListStreams(ctx)
	for si := range streams.Info() {
		s, err := bn.js.Stream(ctx, si.Config.Name)
		if err != nil {
			return false, err
		}
		consumers := s.ListConsumers(ctx)
		for ci := range consumers.Info() {
			if ci.NumPending > 0 || ci.NumAckPending > 0 {
				return true, nil
			}
		}
		if err := consumers.Err(); err != nil {
			return false, err
		}
	}
	return false, streams.Err()
}

// startFloor starts a floor that checks out the platform's repository and
// publishes copies of the warm-up run's events, and makes a warm-up run of
// commit.
func (bn *bench) startFloor(b *testing.B, commit string) *floor {
	b.Helper()
	ctx := context.Background()
	f, err := startFloor(ctx, floorConfig{Dir: b.TempDir(), RepoURL: bn.git.Dir, Messages: bn.hops}, runPath)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := f.stop(sctx); err != nil {
			b.Error(err)
		}
	})
	if _, err := f.run(ctx, commit); err != nil {
		b.Fatal(err)
	}
	return f
}

// runTimeout bounds one run, the platform's or the floor's.
const runTimeout = time.Minute

// BenchmarkRunOverhead runs at least 50 runs one after the other and
// reports the platform's overhead per run at p50 and p95. After each, once
// the platform is quiet, the floor does the same commit; the overhead is
// also reported as a ratio of the floor's time per run.
func BenchmarkRunOverhead(b *testing.B) {
	bn, warm, stop := setup(b)
	defer stop()
	ctx := context.Background()
	n := max(b.N, 50)
	var overheads, walls []time.Duration
	var floors []floorTimes
	stage := map[string][]time.Duration{}
	f := bn.startFloor(b, warm.run.GetCommit())
	b.ResetTimer()
	for range n {
		// A new commit each time (outside the timing): every run computes a
		// version from the commits since the last release and publishes it.
		b.StopTimer()
		bn.commit()
		b.StartTimer()
		rctx, cancel := context.WithTimeout(ctx, runTimeout)
		r, err := bn.one(rctx)
		cancel()
		if err != nil {
			b.Fatal(err)
		}
		walls = append(walls, r.wall)
		overheads = append(overheads, r.wall-r.steps)
		prev := r.run.GetCreateTime().AsTime()
		stage["trigger to run record"] = append(stage["trigger to run record"], prev.Sub(r.start))
		for _, s := range r.run.GetStages() {
			if s.GetStartTime() == nil || s.GetEndTime() == nil {
				continue
			}
			stage["wait before "+s.GetName()] = append(stage["wait before "+s.GetName()], s.GetStartTime().AsTime().Sub(prev))
			stage[s.GetName()] = append(stage[s.GetName()], s.GetEndTime().AsTime().Sub(s.GetStartTime().AsTime()))
			prev = s.GetEndTime().AsTime()
		}
		stage["wait after release"] = append(stage["wait after release"], r.run.GetEndTime().AsTime().Sub(prev))
		stage["run end to watcher"] = append(stage["run end to watcher"], r.end.Sub(r.run.GetEndTime().AsTime()))

		// Then, once the platform is quiet, the floor does the same commit,
		// so that the two see the same load on a shared machine.
		b.StopTimer()
		if err := bn.waitQuiet(ctx); err != nil {
			b.Fatal(err)
		}
		writeBack()
		rctx, cancel = context.WithTimeout(ctx, runTimeout)
		t, err := f.run(rctx, r.run.GetCommit())
		cancel()
		if err != nil {
			b.Fatal(err)
		}
		floors = append(floors, t)
		writeBack()
		b.StartTimer()
	}
	b.StopTimer()
	part := func(of func(floorTimes) time.Duration) []time.Duration {
		out := make([]time.Duration, len(floors))
		for i, t := range floors {
			out[i] = of(t)
		}
		return out
	}
	floorWalls := part(func(t floorTimes) time.Duration { return t.Wall })
	ratio50 := float64(pct(overheads, 0.5)) / float64(pct(floorWalls, 0.5))
	ratio95 := float64(pct(overheads, 0.95)) / float64(pct(floorWalls, 0.95))

	b.ReportMetric(ms(pct(overheads, 0.50)), "overhead-p50-ms")
	b.ReportMetric(ms(pct(overheads, 0.95)), "overhead-p95-ms")
	b.ReportMetric(ms(pct(walls, 0.50)), "wall-p50-ms")
	b.ReportMetric(ms(pct(floorWalls, 0.50)), "floor-p50-ms")
	b.ReportMetric(ms(pct(floorWalls, 0.95)), "floor-p95-ms")
	b.ReportMetric(ratio50, "overhead/floor-p50")
	b.ReportMetric(ratio95, "overhead/floor-p95")
	fmt.Printf("\n%d runs, one at a time, each of a new commit (steps all `true`):\n", n)
	fmt.Printf("  overhead per run  p50 %v  p95 %v  (wall p50 %v, p95 %v)\n",
		round(pct(overheads, 0.5)), round(pct(overheads, 0.95)), round(pct(walls, 0.5)), round(pct(walls, 0.95)))
	fmt.Printf("  floor per run     p50 %v  p95 %v; overhead/floor p50 %.1f×  p95 %.1f×\n",
		round(pct(floorWalls, 0.5)), round(pct(floorWalls, 0.95)), ratio50, ratio95)
	fmt.Println("  where the time goes (p50; stage times include checkout, the deploy and verify commands):")
	for _, k := range []string{"trigger to run record", "wait before build", "build", "wait before test", "test", "wait before release", "release", "wait after release", "run end to watcher"} {
		if ds := stage[k]; len(ds) > 0 {
			fmt.Printf("    %-22s %v\n", k, round(pct(ds, 0.5)))
		}
	}
	c := countPath(runPath)
	fmt.Printf("  the floor: the same commits, each after its run, with no Sluice logic: %d hops, %d transactions, %d checkouts, %d commands\n",
		c.hops, c.transactions, c.checkouts, c.commands)
	fmt.Printf("    (p50: hops %v, transactions %v, checkouts %v, commands %v)\n",
		round(pct(part(floorTimes.Hops), 0.5)), round(pct(part(func(t floorTimes) time.Duration { return t.Transactions }), 0.5)),
		round(pct(part(func(t floorTimes) time.Duration { return t.Checkouts }), 0.5)),
		round(pct(part(func(t floorTimes) time.Duration { return t.Commands }), 0.5)))
}

// inFlight makes total runs with fn, keeping n in flight, and returns how
// long they took.
func inFlight(ctx context.Context, total, n int, fn func(context.Context) error) (time.Duration, error) {
	jobs := make(chan struct{}, total)
	for range total {
		jobs <- struct{}{}
	}
	close(jobs)
	var wg sync.WaitGroup
	errs := make(chan error, n)
	start := time.Now()
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range jobs {
				rctx, cancel := context.WithTimeout(ctx, runTimeout)
				err := fn(rctx)
				cancel()
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	close(errs)
	var all []error
	for err := range errs {
		all = append(all, err)
	}
	return elapsed, errors.Join(all...)
}

// writeBack has the kernel write what the last measured part left in the
// page cache, so that its writes are not paid for inside the next part's
// time (on this machine they weighed several milliseconds on the next run).
func writeBack() { syscall.Sync() }

// BenchmarkThroughput keeps 10 runs in flight and reports runs/s, and the
// floor's, measured the same way before and after.
func BenchmarkThroughput(b *testing.B) {
	bn, warm, stop := setup(b)
	defer stop()
	ctx := context.Background()
	const n = 10
	total := max(b.N, 50)
	commit := warm.run.GetCommit()
	f := bn.startFloor(b, commit)
	floor := func() time.Duration {
		elapsed, err := inFlight(ctx, total, n, func(ctx context.Context) error {
			_, err := f.run(ctx, commit)
			return err
		})
		if err != nil {
			b.Fatal(err)
		}
		return elapsed
	}
	// The floor before and after the platform, so that a load that grows
	// or shrinks meanwhile weighs on both alike.
	floorElapsed := floor()
	writeBack()
	b.ResetTimer()
	elapsed, err := inFlight(ctx, total, n, func(ctx context.Context) error {
		_, err := bn.one(ctx)
		return err
	})
	b.StopTimer()
	if err != nil {
		b.Fatal(err)
	}
	if err := bn.waitQuiet(ctx); err != nil {
		b.Fatal(err)
	}
	writeBack()
	floorElapsed += floor()
	rate := float64(total) / elapsed.Seconds()
	floorRate := float64(2*total) / floorElapsed.Seconds()
	b.ReportMetric(rate, "runs/s")
	b.ReportMetric(floorRate, "floor-runs/s")
	b.ReportMetric(floorRate/rate, "time-per-run/floor")
	fmt.Printf("\n%d runs of one commit with %d in flight: %.1f runs/s (%v)\n", total, n, rate, elapsed.Round(time.Millisecond))
	fmt.Printf("  floor: %.1f runs/s (%d before and %d after); Sluice takes %.1f× the floor's time per run\n",
		floorRate, total, total, floorRate/rate)
}
