package allinone

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"connectrpc.com/connect"
	"github.com/spf13/pflag"
	"go.uber.org/fx"

	"github.com/sluicehq/sluice/cmd/sluice/internal/credentials"
	"github.com/sluicehq/sluice/platform/natsconn"
	"github.com/sluicehq/sluice/platform/retry"
	sourcev1 "github.com/sluicehq/sluice/proto/gen/sluice/source/v1"
	"github.com/sluicehq/sluice/proto/gen/sluice/source/v1/sourcev1connect"
)

// Follower streams a run's progress to w (the CLI's `trigger --follow`).
type Follower func(ctx context.Context, client sourcev1connect.SourceServiceClient, runID string, w io.Writer) error

// Command is `sluice up` for the CLI: its flags, which the CLI parses, and
// what runs once they are.
type Command struct {
	options Options
	flags   *UpFlags
	version string
	follow  Follower
}

// NewCommand makes `sluice up` for a binary of version; follow shows the
// example's run.
func NewCommand(version string, follow Follower) *Command {
	c := &Command{options: DefaultOptions(), version: version, follow: follow}
	c.flags = NewUpFlags(&c.options)
	return c
}

// Flags are the command's flags, for the CLI to parse.
func (c *Command) Flags() *pflag.FlagSet { return c.flags.FlagSet }

// Run runs the platform with the parsed flags (and the SLUICE_* variables
// for what they did not set).
func (c *Command) Run(ctx context.Context, stdout, stderr io.Writer) error {
	example, err := c.flags.Complete(os.LookupEnv)
	if err != nil {
		return err
	}
	return up(ctx, c.options, example, c.version, stdout, stderr, c.follow)
}

// up starts, registers and runs the example when asked, then serves until
// ctx ends (Ctrl-C) or a component fails.
func up(ctx context.Context, o Options, example, version string, stdout, stderr io.Writer, follow Follower) error {
	o.Version = version
	if err := os.MkdirAll(o.DataDir, 0o750); err != nil {
		return fmt.Errorf("data directory: %w", err)
	}
	logPath := filepath.Join(o.DataDir, "sluice.log")
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o640)
	if err != nil {
		return fmt.Errorf("log file: %w", err)
	}
	defer logFile.Close()
	o.LogWriter = logFile

	fmt.Fprintf(stdout, "sluice %s: starting %v in one process\n", version, o.Services)
	fmt.Fprintf(stdout, "  data     %s\n  logs     %s\n", o.DataDir, logPath)
	p, err := Start(ctx, o)
	if err != nil {
		return fmt.Errorf("start: %w (the log %s may say more)", err, logPath)
	}
	natsWhere := "embedded"
	if o.Process.NATSURL != "" {
		natsWhere = natsconn.Redact(o.Process.NATSURL)
	}
	if p.AdminToken != "" {
		saveAdminToken(p, stdout, stderr)
	}
	fmt.Fprintf(stdout, "  api      %s (Connect, gRPC and gRPC-Web; /healthz /readyz /metrics)\n  nats     %s\n", p.URL, natsWhere)

	stopped := make(chan error, 1)
	if example != "" {
		go func() { stopped <- runExample(ctx, p, example, o.DataDir, stdout, follow) }()
	}
	var runErr error
	select {
	case <-ctx.Done():
	case sig := <-p.Done():
		runErr = failure(sig, logPath)
	case err := <-stopped:
		// A run that failed has said so already (its error has no text).
		if err != nil && err.Error() != "" {
			fmt.Fprintf(stderr, "example: %v\n", err)
		}
		if ctx.Err() == nil {
			fmt.Fprintln(stdout, "\nserving; Ctrl-C stops. Try: sluice runs | sluice show <run> | sluice logs <run> | sluice releases hello | sluice events")
		}
		select {
		case <-ctx.Done():
		case sig := <-p.Done():
			runErr = failure(sig, logPath)
		}
	}
	fmt.Fprintln(stdout, "stopping...")
	stopCtx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := p.Stop(stopCtx); err != nil && runErr == nil {
		runErr = err
	}
	p.Log.Info("stopped")
	return runErr
}

func runExample(ctx context.Context, p *Platform, src, dataDir string, stdout io.Writer, follow Follower) error {
	dst := filepath.Join(dataDir, "examples", filepath.Base(src))
	if err := PrepareExample(src, dst); err != nil {
		return err
	}
	client := sourcev1connect.NewSourceServiceClient(p.Client(), p.URL)
	// The services may still be provisioning; retry while unavailable.
	var res *sourcev1.CreateRepositoryResponse
	err := retry.Do(ctx, retry.Backoff{Initial: 200 * time.Millisecond, Max: time.Second}, func(ctx context.Context) error {
		var err error
		res, err = client.CreateRepository(ctx, &sourcev1.CreateRepositoryRequest{Url: dst, Name: filepath.Base(src)})
		if err != nil && connect.CodeOf(err) != connect.CodeUnavailable {
			return retry.Permanent(err)
		}
		return err
	}, retry.GiveUpAfter(time.Minute))
	if err != nil {
		return fmt.Errorf("register example: %w", err)
	}
	repo := res.GetRepository()
	if res.GetCreated() {
		fmt.Fprintf(stdout, "\nregistered example repository %s (%s, branch %s)\n", repo.GetName(), dst, repo.GetBranch())
	} else {
		fmt.Fprintf(stdout, "\nexample repository %s already registered\n", repo.GetName())
	}
	run, err := client.TriggerRun(ctx, &sourcev1.TriggerRunRequest{Repository: repo.GetName()})
	if err != nil {
		return fmt.Errorf("trigger example: %w", err)
	}
	fmt.Fprintf(stdout, "triggered run %s; following it:\n\n", run.GetRun().GetId())
	p.Log.Info("example run triggered", slog.String("run_id", run.GetRun().GetId()))
	return follow(ctx, client, run.GetRun().GetId(), stdout)
}

// saveAdminToken shows the admin token the first time (it is in the data
// directory's admin-token file) and saves it where the CLI finds it for
// this server, unless the CLI has that token already.
func saveAdminToken(p *Platform, stdout, stderr io.Writer) {
	if p.AdminTokenCreated {
		fmt.Fprintf(stdout, "  admin    %s (made now and shown once; the data directory's admin-token file keeps it)\n", p.AdminToken)
	}
	path, err := credentials.Path(os.Getenv)
	if err != nil {
		fmt.Fprintf(stderr, "cannot save the admin token for the CLI: %v\n", err)
		return
	}
	if saved, err := credentials.Token(path, p.URL); err == nil && saved == p.AdminToken {
		return
	}
	if err := credentials.Save(path, p.URL, p.AdminToken); err != nil {
		fmt.Fprintf(stderr, "cannot save the admin token for the CLI: %v\n", err)
		return
	}
	fmt.Fprintf(stdout, "  cli      the admin token is saved for %s in %s\n", p.URL, path)
}

// failure reads why fx asked to stop: a signal (exit code 0) is a normal
// stop, a non-zero code is a component that failed.
func failure(sig fx.ShutdownSignal, logPath string) error {
	if sig.ExitCode == 0 {
		return nil
	}
	return fmt.Errorf("a component failed (exit %d); see %s", sig.ExitCode, logPath)
}
