package release

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicehq/sluice/platform/executor"
	"github.com/sluicehq/sluice/platform/gitcheckout"
	"github.com/sluicehq/sluice/services/release/domain"
)

// ArtifactBucket is the JetStream object store build keeps artifacts in.
const ArtifactBucket = "sluice-artifacts"

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
	out := &tailLog{max: logLines}
	defer func() { d.Log = out.String() }()
	fail := func(reason string) error {
		d.Status, d.Reason, d.EndedAt = domain.DeploymentFailed, reason, time.Now().UTC()
		out.add("sluice: " + reason)
		return nil
	}

	workspace := filepath.Join(s.cfg.DataDir, "workspaces", d.ID)
	defer func() { _ = os.RemoveAll(workspace) }()
	src := filepath.Join(workspace, "src")
	artifactsDir := filepath.Join(workspace, "artifacts")

	out.add(fmt.Sprintf("sluice: checking out %s at %s", rel.Repository.URL, domain.ShortSHA(rel.Commit)))
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
	out.add(fmt.Sprintf("sluice: deploying %s to %s", rel.Version, env.Name))
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
	out.add("sluice: verified")
	return nil
}

// fetchArtifacts downloads the artifacts into dir as executable files named
// by artifact name, checking each one's sha256 against the recorded one.
func (s *Service) fetchArtifacts(ctx context.Context, artifacts []domain.Artifact, dir string, out *tailLog) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create the artifacts directory: %w", err)
	}
	if len(artifacts) == 0 {
		return nil
	}
	store, err := s.js.ObjectStore(ctx, ArtifactBucket)
	if err != nil {
		return fmt.Errorf("open the artifact store %s: %w", ArtifactBucket, err)
	}
	for _, a := range artifacts {
		if a.Name == "" || a.Name != filepath.Base(a.Name) || a.Name == "." || a.Name == ".." {
			return fmt.Errorf("artifact name %q cannot name a file", a.Name)
		}
		if err := fetchArtifact(ctx, store, a, filepath.Join(dir, a.Name)); err != nil {
			return err
		}
		out.add(fmt.Sprintf("sluice: artifact %s (%d bytes, sha256 %s)", a.Name, a.Size, a.SHA256))
	}
	return nil
}

func fetchArtifact(ctx context.Context, store jetstream.ObjectStore, a domain.Artifact, path string) (err error) {
	obj, err := store.Get(ctx, a.Object)
	if err != nil {
		return fmt.Errorf("artifact %s: get %s from %s: %w", a.Name, a.Object, ArtifactBucket, err)
	}
	defer obj.Close()
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o755)
	if err != nil {
		return fmt.Errorf("artifact %s: %w", a.Name, err)
	}
	defer func() {
		if cerr := f.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("artifact %s: %w", a.Name, cerr)
		}
	}()
	h := sha256.New()
	if _, err := io.Copy(io.MultiWriter(f, h), obj); err != nil {
		return fmt.Errorf("artifact %s: download %s: %w", a.Name, a.Object, err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); !strings.EqualFold(got, a.SHA256) {
		return fmt.Errorf("artifact %s: sha256 of %s is %s, but build recorded %s", a.Name, a.Object, got, a.SHA256)
	}
	return os.Chmod(path, 0o755) // whatever the umask did
}

// verify runs env's verification and returns why it failed ("" when it
// passed or there is none). The error is ctx's when it ended.
func (s *Service) verify(ctx context.Context, env domain.Environment, dir string, vars map[string]string, out *tailLog) (string, error) {
	timeout := env.Verify.Timeout
	if timeout <= 0 {
		timeout = s.cfg.DefaultVerifyTimeout
	}
	switch {
	case env.Verify.HTTP != "":
		out.add(fmt.Sprintf("sluice: verifying: GET %s (up to %s)", env.Verify.HTTP, timeout))
		return verifyHTTP(ctx, env.Verify.HTTP, timeout)
	case env.Verify.Command != "":
		out.add(fmt.Sprintf("sluice: verifying: %s (up to %s)", env.Verify.Command, timeout))
		return s.verifyCommand(ctx, env, dir, vars, timeout, out)
	}
	return "", nil
}

// verifyHTTP GETs url every httpVerifyInterval until it answers 2xx or
// timeout has passed.
func verifyHTTP(ctx context.Context, target string, timeout time.Duration) (string, error) {
	transport := &http.Transport{Proxy: nil, DisableKeepAlives: true}
	defer transport.CloseIdleConnections()
	client := &http.Client{Transport: transport}
	deadline := time.Now().Add(timeout)
	var last string
	for {
		attempt, cancel := context.WithDeadline(ctx, minTime(deadline, time.Now().Add(httpAttemptTimeout)))
		status, err := getStatus(attempt, client, target)
		cancel()
		switch {
		case ctx.Err() != nil:
			return "", ctx.Err()
		case err != nil:
			last = err.Error()
		case status >= 200 && status < 300:
			return "", nil
		default:
			last = fmt.Sprintf("%d %s", status, http.StatusText(status))
		}
		if time.Until(deadline) < httpVerifyInterval {
			return fmt.Sprintf("verification failed: GET %s: %s after %s", target, last, timeout), nil
		}
		if !sleep(ctx, httpVerifyInterval) {
			return "", ctx.Err()
		}
	}
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

// verifyCommand runs the verify command every commandVerifyInterval until
// it exits 0 or timeout has passed.
func (s *Service) verifyCommand(ctx context.Context, env domain.Environment, dir string, vars map[string]string, timeout time.Duration, out *tailLog) (string, error) {
	deadline := time.Now().Add(timeout)
	for {
		res, err := s.exec.Run(ctx, executor.Spec{
			Name: "verify " + env.Name, Command: env.Verify.Command, Dir: dir, Env: vars,
			Timeout: time.Until(deadline), Output: out.line,
		})
		var last string
		switch {
		case err != nil && ctx.Err() != nil, res.Cancelled:
			return "", ctx.Err()
		case err != nil:
			return fmt.Sprintf("verification failed: %q could not start: %v", env.Verify.Command, err), nil
		case res.TimedOut:
			last = "did not finish"
		case res.ExitCode == 0:
			return "", nil
		default:
			last = fmt.Sprintf("exited with code %d", res.ExitCode)
		}
		if time.Until(deadline) < commandVerifyInterval {
			return fmt.Sprintf("verification failed: %q %s after %s", env.Verify.Command, last, timeout), nil
		}
		if !sleep(ctx, commandVerifyInterval) {
			return "", ctx.Err()
		}
	}
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// tailLog keeps the last max lines of a deployment's output.
type tailLog struct {
	mu      sync.Mutex
	max     int
	lines   []string
	dropped int
}

func (t *tailLog) add(line string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.lines = append(t.lines, line)
	if len(t.lines) > t.max {
		n := len(t.lines) - t.max
		t.dropped += n
		t.lines = append(t.lines[:0], t.lines[n:]...)
	}
}

// line is an executor.Spec.Output.
func (t *tailLog) line(stream, line string) {
	if stream == executor.Stderr {
		line = "stderr: " + line
	}
	t.add(line)
}

func (t *tailLog) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	var b strings.Builder
	if t.dropped > 0 {
		fmt.Fprintf(&b, "sluice: %d earlier lines not kept\n", t.dropped)
	}
	for _, l := range t.lines {
		b.WriteString(l)
		b.WriteString("\n")
	}
	return b.String()
}
