package release

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/sluicehq/sluice/platform/artifacts"
	"github.com/sluicehq/sluice/platform/executor"
	"github.com/sluicehq/sluice/platform/gitcheckout"
	"github.com/sluicehq/sluice/platform/lastlines"
	"github.com/sluicehq/sluice/platform/retry"
	"github.com/sluicehq/sluice/services/release/domain"
)

const (
	// logLines is how many of the last output lines a deployment keeps.
	logLines = 200
	// httpVerifyInterval and commandVerifyInterval are the pauses between
	// verification attempts.
	httpVerifyInterval    = 250 * time.Millisecond
	commandVerifyInterval = time.Second
	// httpAttemptTimeout bounds one verification request.
	httpAttemptTimeout = 10 * time.Second
)

// StateDir is where deploy commands of repository to environment keep
// their state between deploys ($SLUICE_STATE_DIR).
func StateDir(dataDir, repository, environment string) string {
	return filepath.Join(dataDir, "state", repository, environment)
}

// deploy runs deployment d of rel to env: check out the release's commit,
// fetch its artifacts, run the deploy command, verify. It sets d's status
// (VERIFIED or FAILED), reason, log, Started and end time. It returns an
// error only when ctx ended (d is then left in progress) or the store
// failed; a failing deploy is an outcome, not an error.
func (s *Service) deploy(ctx context.Context, rel domain.Release, env domain.Environment, d *domain.Deployment) error {
	out := newTailLog()
	defer func() { d.Log = out.String() }()
	fail := func(reason string) error {
		d.Status, d.Reason, d.EndedAt = domain.DeploymentFailed, reason, time.Now().UTC()
		out.Add("sluice: " + reason)
		return nil
	}

	workspace := filepath.Join(s.cfg.DataDir, "workspaces", d.ID)
	defer func() { _ = os.RemoveAll(workspace) }()
	src := filepath.Join(workspace, "src")
	artifactsDir := filepath.Join(workspace, "artifacts")

	out.Add(fmt.Sprintf("sluice: checking out %s at %s", rel.Repository.URL, domain.ShortSHA(rel.Commit)))
	if err := gitcheckout.Checkout(ctx, rel.Repository.URL, rel.Commit, src); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fail(fmt.Sprintf("preparing the deploy failed: check out %s: %v", domain.ShortSHA(rel.Commit), err))
	}
	if err := s.fetchArtifacts(ctx, rel.Artifacts, artifactsDir, out); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fail("preparing the deploy failed: " + err.Error())
	}
	stateDir := StateDir(s.cfg.DataDir, rel.Repository.Name, env.Name)
	if err := os.MkdirAll(stateDir, 0o755); err != nil {
		return fail(fmt.Sprintf("preparing the deploy failed: create the state directory: %v", err))
	}

	vars := make(map[string]string, len(env.Env)+7)
	for k, v := range env.Env {
		vars[k] = v
	}
	vars["SLUICE_RELEASE_VERSION"] = rel.Version.String()
	vars["SLUICE_ENVIRONMENT"] = env.Name
	vars["SLUICE_ARTIFACTS_DIR"] = artifactsDir
	vars["SLUICE_STATE_DIR"] = stateDir
	vars["SLUICE_RUN_ID"] = rel.RunID
	vars["SLUICE_COMMIT"] = rel.Commit
	vars["SLUICE_REPOSITORY"] = rel.Repository.Name

	// From here on the environment may change: record it before running.
	if err := s.store.MarkStarted(ctx, d.ID); err != nil {
		return err
	}
	d.Started = true
	timeout := env.DeployTimeout
	if timeout <= 0 {
		timeout = s.cfg.DefaultDeployTimeout
	}
	out.Add(fmt.Sprintf("sluice: deploying %s to %s", rel.Version, env.Name))
	res, err := s.exec.Run(ctx, executor.Spec{
		Name: "deploy " + env.Name, Command: env.Deploy, Dir: src, Env: vars, Timeout: timeout, Output: out.line,
	})
	switch {
	case err != nil && ctx.Err() != nil, res.Cancelled:
		return ctx.Err()
	case err != nil:
		return fail(fmt.Sprintf("deploy could not start: %v", err))
	case res.TimedOut:
		return fail(fmt.Sprintf("deploy timed out after %s", timeout))
	case res.ExitCode != 0:
		return fail(fmt.Sprintf("deploy exited with code %d", res.ExitCode))
	}

	d.Status = domain.DeploymentVerifying
	if err := s.store.SetDeploymentStatus(ctx, d.ID, domain.DeploymentVerifying); err != nil {
		return err
	}
	reason, err := s.verify(ctx, env, src, vars, out)
	if err != nil {
		return err
	}
	if reason != "" {
		return fail(reason)
	}
	d.Status, d.Reason, d.EndedAt = domain.DeploymentVerified, "", time.Now().UTC()
	out.Add("sluice: verified")
	return nil
}

// fetchArtifacts downloads the artifacts into dir as executable files named
// by artifact name, checking each one's size and sha256 against the
// recorded ones.
func (s *Service) fetchArtifacts(ctx context.Context, arts []domain.Artifact, dir string, out tailLog) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create the artifacts directory: %w", err)
	}
	if len(arts) == 0 {
		return nil
	}
	store, err := artifacts.Open(ctx, s.js)
	if err != nil {
		return err
	}
	for _, a := range arts {
		if a.Name != path.Base(a.Name) {
			return fmt.Errorf("artifact name %q cannot name a file", a.Name)
		}
		if err := store.Fetch(ctx, artifacts.Artifact(a), dir, a.Name); err != nil {
			return err
		}
		out.Add(fmt.Sprintf("sluice: artifact %s (%d bytes, sha256 %s)", a.Name, a.Size, a.SHA256))
	}
	return nil
}

// verify runs env's verification and returns why it failed ("" when it
// passed or there is none). The error is ctx's when it ended.
func (s *Service) verify(ctx context.Context, env domain.Environment, dir string, vars map[string]string, out tailLog) (string, error) {
	timeout := env.Verify.Timeout
	if timeout <= 0 {
		timeout = s.cfg.DefaultVerifyTimeout
	}
	var what string
	var err error
	switch {
	case env.Verify.HTTP != "":
		out.Add(fmt.Sprintf("sluice: verifying: GET %s (up to %s)", env.Verify.HTTP, timeout))
		what = "GET " + env.Verify.HTTP + ":"
		err = verifyHTTP(ctx, env.Verify.HTTP, timeout)
	case env.Verify.Command != "":
		out.Add(fmt.Sprintf("sluice: verifying: %s (up to %s)", env.Verify.Command, timeout))
		what = strconv.Quote(env.Verify.Command)
		err = s.verifyCommand(ctx, env, dir, vars, timeout, out)
	default:
		return "", nil
	}
	switch {
	case err == nil:
		return "", nil
	case ctx.Err() != nil:
		return "", ctx.Err()
	case errors.Is(err, errNotStarted):
		return fmt.Sprintf("verification failed: %s %v", what, err), nil
	}
	return fmt.Sprintf("verification failed: %s %v after %s", what, err, timeout), nil
}

// verifyHTTP GETs url every httpVerifyInterval until it answers 2xx or
// timeout has passed; the error is the last answer's.
func verifyHTTP(ctx context.Context, target string, timeout time.Duration) error {
	transport := &http.Transport{Proxy: nil, DisableKeepAlives: true}
	defer transport.CloseIdleConnections()
	client := &http.Client{Transport: transport}
	deadline := time.Now().Add(timeout)
	return retry.Do(ctx, retry.Backoff{Initial: httpVerifyInterval}, func(ctx context.Context) error {
		attempt, cancel := context.WithDeadline(ctx, minTime(deadline, time.Now().Add(httpAttemptTimeout)))
		defer cancel()
		status, err := getStatus(attempt, client, target)
		switch {
		case err != nil:
			return err
		case status < 200 || status >= 300:
			return fmt.Errorf("%d %s", status, http.StatusText(status))
		}
		return nil
	}, retry.GiveUpAfter(timeout))
}

func getStatus(ctx context.Context, client *http.Client, target string) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		return 0, err
	}
	res, err := client.Do(req)
	if err != nil {
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err
		}
		if errors.Is(err, context.DeadlineExceeded) {
			return 0, errors.New("no answer")
		}
		return 0, err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(res.Body, 64<<10))
	_ = res.Body.Close()
	return res.StatusCode, nil
}

// errNotStarted marks a verify command that could not start: no retry
// helps.
var errNotStarted = errors.New("could not start")

// verifyCommand runs the verify command every commandVerifyInterval until
// it exits 0 or timeout has passed; the error is the last run's.
func (s *Service) verifyCommand(ctx context.Context, env domain.Environment, dir string, vars map[string]string, timeout time.Duration, out tailLog) error {
	deadline := time.Now().Add(timeout)
	return retry.Do(ctx, retry.Backoff{Initial: commandVerifyInterval}, func(ctx context.Context) error {
		res, err := s.exec.Run(ctx, executor.Spec{
			Name: "verify " + env.Name, Command: env.Verify.Command, Dir: dir, Env: vars,
			Timeout: time.Until(deadline), Output: out.line,
		})
		switch {
		case err != nil && ctx.Err() != nil, res.Cancelled:
			return fmt.Errorf("verification stopped: %w", context.Cause(ctx))
		case err != nil:
			return retry.Permanent(fmt.Errorf("%w: %w", errNotStarted, err))
		case res.TimedOut:
			return errors.New("did not finish")
		case res.ExitCode != 0:
			return fmt.Errorf("exited with code %d", res.ExitCode)
		}
		return nil
	}, retry.GiveUpAfter(timeout))
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// tailLog keeps the last logLines lines of a deployment's output.
type tailLog struct{ *lastlines.Buffer }

func newTailLog() tailLog { return tailLog{lastlines.New(logLines, 0)} }

// line is an executor.Spec.Output.
func (t tailLog) line(stream, line string) {
	if stream == executor.Stderr {
		line = "stderr: " + line
	}
	t.Add(line)
}

// String is the log as a deployment keeps it: a line per kept line, after
// one that says how many earlier lines were not kept.
func (t tailLog) String() string {
	var b strings.Builder
	if n := t.Dropped(); n > 0 {
		fmt.Fprintf(&b, "sluice: %d earlier lines not kept\n", n)
	}
	for _, l := range t.Lines() {
		b.WriteString(l)
		b.WriteString("\n")
	}
	return b.String()
}
