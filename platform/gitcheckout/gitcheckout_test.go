package gitcheckout_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/skeema/knownhosts"

	"github.com/sluicehq/sluice/platform/egress"
	"github.com/sluicehq/sluice/platform/egress/egresstest"
	"github.com/sluicehq/sluice/platform/gitauth"
	"github.com/sluicehq/sluice/platform/gitcheckout"
	"github.com/sluicehq/sluice/platform/gittest"
)

// fixture is a repository with two commits:
//
//	first:  README = "v1", run.sh (executable)
//	second: README = "v2", NEW added, run.sh removed
type fixture struct {
	*gittest.Repo
	first, second plumbing.Hash
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	f := &fixture{Repo: gittest.Init(t, filepath.Join(t.TempDir(), "src"), "master")}
	f.Write("README", "v1\n")
	f.Write("run.sh", "#!/bin/sh\necho hi\n")
	f.first = plumbing.NewHash(f.Commit("first"))
	f.Write("README", "v2\n")
	f.Write("NEW", "new\n")
	f.Remove("run.sh")
	f.second = plumbing.NewHash(f.Commit("second"))
	return f
}

// assertFirstCommit checks that dir holds the first commit of the fixture.
func assertFirstCommit(t *testing.T, f *fixture, dir string) {
	t.Helper()
	readme, err := os.ReadFile(filepath.Join(dir, "README"))
	if err != nil || string(readme) != "v1\n" {
		t.Errorf("README = %q, %v; want v1", readme, err)
	}
	if fi, err := os.Stat(filepath.Join(dir, "run.sh")); err != nil || fi.Mode().Perm()&0o100 == 0 {
		t.Errorf("run.sh missing or not executable: %v, %v", fi, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "NEW")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("NEW (from the second commit) exists: %v", err)
	}
	repo, err := git.PlainOpen(dir)
	if err != nil {
		t.Fatal(err)
	}
	head, err := repo.Head()
	if err != nil {
		t.Fatal(err)
	}
	if head.Hash() != f.first || head.Name() != plumbing.HEAD {
		t.Errorf("HEAD = %s (%s), want detached at %s", head.Hash(), head.Name(), f.first)
	}
	wt, err := repo.Worktree()
	if err != nil {
		t.Fatal(err)
	}
	status, err := wt.Status()
	if err != nil {
		t.Fatal(err)
	}
	if !status.IsClean() {
		t.Errorf("worktree not clean:\n%s", status)
	}
}

func TestCheckoutLocalPath(t *testing.T) {
	f := newFixture(t)
	dst := filepath.Join(t.TempDir(), "checkout")
	if err := gitcheckout.Checkout(context.Background(), egresstest.Policy(t, egress.Local, egress.Loopback), f.Dir, f.first.String(), dst, gitauth.Credential{}); err != nil {
		t.Fatal(err)
	}
	assertFirstCommit(t, f, dst)
}

func TestCheckoutFileURL(t *testing.T) {
	f := newFixture(t)
	dst := filepath.Join(t.TempDir(), "checkout")
	if err := gitcheckout.Checkout(context.Background(), egresstest.Policy(t, egress.Local, egress.Loopback), "file://"+f.Dir, f.first.String(), dst, gitauth.Credential{}); err != nil {
		t.Fatal(err)
	}
	assertFirstCommit(t, f, dst)
}

func TestCheckoutLocalNeedsNoGitBinary(t *testing.T) {
	f := newFixture(t)
	t.Setenv("PATH", t.TempDir())
	dst := filepath.Join(t.TempDir(), "checkout")
	if err := gitcheckout.Checkout(context.Background(), egresstest.Policy(t, egress.Local, egress.Loopback), "file://"+f.Dir, f.first.String(), dst, gitauth.Credential{}); err != nil {
		t.Fatal(err)
	}
	assertFirstCommit(t, f, dst)
}

func TestCheckoutIntoExistingEmptyDir(t *testing.T) {
	f := newFixture(t)
	dst := t.TempDir()
	// Upper-case hex is accepted too.
	if err := gitcheckout.Checkout(context.Background(), egresstest.Policy(t, egress.Local, egress.Loopback), f.Dir, strings.ToUpper(f.first.String()), dst, gitauth.Credential{}); err != nil {
		t.Fatal(err)
	}
	assertFirstCommit(t, f, dst)
}

func TestCheckoutHasHistory(t *testing.T) {
	f := newFixture(t)
	dst := t.TempDir()
	if err := gitcheckout.Checkout(context.Background(), egresstest.Policy(t, egress.Local, egress.Loopback), f.Dir, f.second.String(), dst, gitauth.Credential{}); err != nil {
		t.Fatal(err)
	}
	repo, err := git.PlainOpen(dst)
	if err != nil {
		t.Fatal(err)
	}
	c, err := repo.CommitObject(f.second)
	if err != nil {
		t.Fatal(err)
	}
	if c.NumParents() != 1 || c.ParentHashes[0] != f.first {
		t.Fatalf("parents = %v, want [%s]", c.ParentHashes, f.first)
	}
	if _, err := repo.CommitObject(f.first); err != nil {
		t.Errorf("parent commit missing from the clone: %v", err)
	}
	if b, err := os.ReadFile(filepath.Join(dst, "NEW")); err != nil || string(b) != "new\n" {
		t.Errorf("NEW = %q, %v", b, err)
	}
}

func TestCommitNotFound(t *testing.T) {
	f := newFixture(t)
	const missing = "0123456789abcdef0123456789abcdef01234567"
	for _, url := range []string{f.Dir, "file://" + f.Dir} {
		t.Run(url, func(t *testing.T) {
			dst := filepath.Join(t.TempDir(), "checkout")
			err := gitcheckout.Checkout(context.Background(), egresstest.Policy(t, egress.Local, egress.Loopback), url, missing, dst, gitauth.Credential{})
			if !errors.Is(err, gitcheckout.ErrCommitNotFound) {
				t.Fatalf("err = %v, want ErrCommitNotFound", err)
			}
			if !strings.Contains(err.Error(), missing) {
				t.Errorf("error %q does not name the commit", err)
			}
			if _, err := os.Stat(dst); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("failed checkout left %s behind: %v", dst, err)
			}
		})
	}
}

func TestFailedCheckoutEmptiesExistingDir(t *testing.T) {
	f := newFixture(t)
	dst := t.TempDir()
	err := gitcheckout.Checkout(context.Background(), egresstest.Policy(t, egress.Local, egress.Loopback), f.Dir, strings.Repeat("ab", 20), dst, gitauth.Credential{})
	if !errors.Is(err, gitcheckout.ErrCommitNotFound) {
		t.Fatalf("err = %v, want ErrCommitNotFound", err)
	}
	entries, err := os.ReadDir(dst)
	if err != nil || len(entries) != 0 {
		t.Errorf("destination after failure: %v, %v; want it to exist and be empty", entries, err)
	}
}

func TestInvalidArguments(t *testing.T) {
	f := newFixture(t)
	nonEmpty := t.TempDir()
	keep := filepath.Join(nonEmpty, "keep")
	if err := os.WriteFile(keep, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, url, commit, dir string }{
		{"short sha", f.Dir, f.first.String()[:12], filepath.Join(t.TempDir(), "d")},
		{"branch name", f.Dir, "master", filepath.Join(t.TempDir(), "d")},
		{"non-hex", f.Dir, strings.Repeat("z", 40), filepath.Join(t.TempDir(), "d")},
		{"dir not empty", f.Dir, f.first.String(), nonEmpty},
		{"dir is a file", f.Dir, f.first.String(), file},
		{"not a repository", t.TempDir(), f.first.String(), filepath.Join(t.TempDir(), "d")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := gitcheckout.Checkout(context.Background(), egresstest.Policy(t, egress.Local, egress.Loopback), tc.url, tc.commit, tc.dir, gitauth.Credential{}); err == nil {
				t.Fatal("Checkout succeeded, want error")
			}
		})
	}
	if _, err := os.Stat(keep); err != nil {
		t.Errorf("a failed checkout removed a file it did not create: %v", err)
	}
}

func TestCancelledContext(t *testing.T) {
	f := newFixture(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := gitcheckout.Checkout(ctx, egresstest.Policy(t, egress.Local, egress.Loopback), f.Dir, f.first.String(), filepath.Join(t.TempDir(), "d"), gitauth.Credential{})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
}

// serveHTTP serves the fixture over git's smart HTTP protocol (the git
// binary's http-backend), with no credential needed.
func serveHTTP(t *testing.T, f *fixture) string {
	t.Helper()
	return gittest.ServeHTTP(t, filepath.Dir(f.Dir), "", "").URL + "/" + filepath.Base(f.Dir)
}

// A repository served only with a token is checked out with it; without
// it, or with another, the checkout fails saying why, and no error shows
// the token.
func TestCheckoutOverHTTPWithToken(t *testing.T) {
	f := newFixture(t)
	const token = "tok-0123456789-canary"
	srv := gittest.ServeHTTP(t, filepath.Dir(f.Dir), gitauth.DefaultUsername, token)
	url := srv.URL + "/" + filepath.Base(f.Dir)
	policy := egresstest.Policy(t, egress.Loopback)
	for _, tc := range []struct {
		name string
		cred gitauth.Credential
	}{
		{"no credential", gitauth.Credential{}},
		{"wrong token", gitauth.Credential{Token: "tok-wrong-" + token}},
		{"wrong username", gitauth.Credential{Token: token, Username: "someone"}},
	} {
		dst := filepath.Join(t.TempDir(), "checkout")
		err := gitcheckout.Checkout(context.Background(), policy, url, f.first.String(), dst, tc.cred)
		if err == nil || !strings.Contains(err.Error(), "authentication required") {
			t.Errorf("%s: err = %v, want authentication required", tc.name, err)
		} else if strings.Contains(err.Error(), token) {
			t.Errorf("%s: the error shows the token: %v", tc.name, err)
		}
	}
	refused := srv.Refused()
	if refused == 0 {
		t.Fatal("the server refused no request")
	}
	dst := filepath.Join(t.TempDir(), "checkout")
	if err := gitcheckout.Checkout(context.Background(), policy, url, f.first.String(), dst, gitauth.Credential{Token: token}); err != nil {
		t.Fatal(err)
	}
	assertFirstCommit(t, f, dst)
	if srv.Accepted() == 0 {
		t.Error("the server served nothing")
	}
	if _, err := os.Stat(filepath.Join(dst, ".git", "config")); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(dst, ".git", "config")); strings.Contains(string(b), token) {
		t.Error("the checkout's .git/config holds the token")
	}
	err := gitcheckout.Checkout(context.Background(), policy, "ssh://git@127.0.0.1/src.git", f.first.String(), filepath.Join(t.TempDir(), "ssh"), gitauth.Credential{Token: token})
	if err == nil || strings.Contains(err.Error(), token) {
		t.Errorf("a token for an ssh URL: %v, want a refusal without the token", err)
	}
}

func TestCheckoutOverHTTP(t *testing.T) {
	f := newFixture(t)
	url := serveHTTP(t, f)
	dst := filepath.Join(t.TempDir(), "checkout")
	if err := gitcheckout.Checkout(context.Background(), egresstest.Policy(t, egress.Local, egress.Loopback), url, f.first.String(), dst, gitauth.Credential{}); err != nil {
		t.Fatal(err)
	}
	assertFirstCommit(t, f, dst)

	missing := filepath.Join(t.TempDir(), "missing")
	err := gitcheckout.Checkout(context.Background(), egresstest.Policy(t, egress.Local, egress.Loopback), url, strings.Repeat("ab", 20), missing, gitauth.Credential{})
	if !errors.Is(err, gitcheckout.ErrCommitNotFound) {
		t.Fatalf("err = %v, want ErrCommitNotFound", err)
	}
}

func TestCheckoutOverHTTPCommitOnlyOnPullRef(t *testing.T) {
	f := newFixture(t)
	// Third commit only reachable from refs/pull/1/head, like a GitHub PR.
	pr := plumbing.NewHash(f.CommitFile("README", "pr\n", "pull request"))
	for _, ref := range []*plumbing.Reference{
		plumbing.NewHashReference("refs/pull/1/head", pr),
		plumbing.NewHashReference(plumbing.Master, f.second),
	} {
		if err := f.Git().Storer.SetReference(ref); err != nil {
			t.Fatal(err)
		}
	}
	cfg, err := f.Git().Config()
	if err != nil {
		t.Fatal(err)
	}
	cfg.Raw.Section("uploadpack").SetOption("allowReachableSHA1InWant", "true")
	if err := f.Git().SetConfig(cfg); err != nil {
		t.Fatal(err)
	}
	url := serveHTTP(t, f)

	dst := filepath.Join(t.TempDir(), "checkout")
	if err := gitcheckout.Checkout(context.Background(), egresstest.Policy(t, egress.Local, egress.Loopback), url, pr.String(), dst, gitauth.Credential{}); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(dst, "README")); err != nil || string(b) != "pr\n" {
		t.Errorf("README = %q, %v; want pr", b, err)
	}
}

// Without the allowance, a local repository is not read, a repository
// served on loopback is not connected to (the server sees no request), and
// ssh:// and git:// URLs are refused; nothing is left behind.
func TestCheckoutRefusedByPolicy(t *testing.T) {
	f := newFixture(t)
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		hits.Add(1)
		w.WriteHeader(http.StatusNotFound)
	}))
	t.Cleanup(srv.Close)
	only := func(entries ...string) *egress.Policy { return egresstest.Policy(t, entries...) }
	for _, tc := range []struct {
		name, url string
		policy    *egress.Policy
	}{
		{"local path", f.Dir, only(egress.Loopback)},
		{"file URL", "file://" + f.Dir, only(egress.Loopback)},
		{"loopback over http", srv.URL + "/src", only(egress.Local)},
		{"localhost over http", strings.Replace(srv.URL, "127.0.0.1", "localhost", 1) + "/src", only(egress.Local)},
		{"ssh", "ssh://git@127.0.0.1/src.git", only(egress.Local, egress.Loopback)},
		{"scp-like ssh", "git@127.0.0.1:src.git", only(egress.Local, egress.Loopback)},
		{"git protocol", "git://127.0.0.1/src.git", only(egress.Local, egress.Loopback)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dst := filepath.Join(t.TempDir(), "checkout")
			err := gitcheckout.Checkout(context.Background(), tc.policy, tc.url, f.first.String(), dst, gitauth.Credential{})
			var refused *egress.RefusedError
			if !errors.As(err, &refused) || !strings.Contains(err.Error(), "allow-egress") {
				t.Fatalf("err = %v, want a refusal naming allow-egress", err)
			}
			if _, err := os.Stat(dst); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("refused checkout left %s behind: %v", dst, err)
			}
		})
	}
	if n := hits.Load(); n != 0 {
		t.Errorf("the loopback server got %d requests", n)
	}
}

// A repository served over SSH is checked out with its deploy key when the
// server shows the host key known_hosts lists; another host key, or
// another deploy key, is refused, and no error quotes the key.
func TestCheckoutOverSSH(t *testing.T) {
	f := newFixture(t)
	key, pub := gittest.NewSSHKey(t)
	srv := gittest.ServeSSH(t, filepath.Dir(f.Dir), pub)
	url := srv.URL(filepath.Base(f.Dir))
	policy := egresstest.Policy(t, egress.SSH)
	cred := gitauth.Credential{SSHKey: key, KnownHosts: srv.KnownHosts()}

	dst := filepath.Join(t.TempDir(), "checkout")
	if err := gitcheckout.Checkout(context.Background(), policy, url, f.first.String(), dst, cred); err != nil {
		t.Fatal(err)
	}
	assertFirstCommit(t, f, dst)

	_, otherHostKey := gittest.NewSSHKey(t)
	otherKey, _ := gittest.NewSSHKey(t)
	for _, tc := range []struct {
		name string
		cred gitauth.Credential
		want string
	}{
		{"changed host key", gitauth.Credential{SSHKey: key, KnownHosts: knownhosts.Line([]string{srv.Addr}, otherHostKey)}, "host key differs"},
		{"unknown host", gitauth.Credential{SSHKey: key, KnownHosts: knownhosts.Line([]string{"git.example"}, srv.HostKey)}, "host key is not in SLUICE_GIT_KNOWN_HOSTS"},
		{"another deploy key", gitauth.Credential{SSHKey: otherKey, KnownHosts: srv.KnownHosts()}, "unable to authenticate"},
	} {
		dst := filepath.Join(t.TempDir(), "checkout")
		err := gitcheckout.Checkout(context.Background(), policy, url, f.first.String(), dst, tc.cred)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
			continue
		}
		if strings.Contains(err.Error(), "PRIVATE KEY") {
			t.Errorf("%s: the error quotes the key: %v", tc.name, err)
		}
		if _, err := os.Stat(dst); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s: the failed checkout left %s", tc.name, dst)
		}
	}
	if srv.Refused() == 0 {
		t.Error("the server refused no login")
	}
}
