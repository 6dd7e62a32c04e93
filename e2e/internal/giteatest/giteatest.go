// Package giteatest runs a real Gitea for the forge end-to-end tests: the
// binary `make bin/gitea` builds from Gitea's module (Makefile
// GITEA_VERSION), on loopback, with a SQLite database in the test's
// temporary folder, an admin user and an API token. It is talked to
// through Gitea's own Go SDK, as a user of Sluice would.
package giteatest

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"code.gitea.io/sdk/gitea"

	"github.com/sluicehq/sluice/e2e/internal/e2ekit"
)

// Server is a running Gitea.
type Server struct {
	// URL is its address, http://127.0.0.1:<port>.
	URL string
	// User and Password are its admin's; Token is an API token of the
	// admin's with the repository and user scopes.
	User, Password, Token string
	dir, config           string
	env                   []string
	out                   *e2ekit.Buffer
}

// Binary is the Gitea binary: $SLUICE_GITEA, else bin/gitea of the
// repository (make bin/gitea). Its module source, which Gitea reads its
// templates and locales from, is the folder src beside where it links to.
func Binary(t testing.TB) (binary, staticRoot string) {
	t.Helper()
	binary = os.Getenv("SLUICE_GITEA")
	if binary == "" {
		binary = filepath.Join(e2ekit.RepoRoot(), "bin", "gitea")
	}
	real, err := filepath.EvalSymlinks(binary)
	if err != nil {
		t.Fatalf("no Gitea at %s (%v): run `make bin/gitea` (make test does)", binary, err)
	}
	staticRoot = filepath.Join(filepath.Dir(real), "src")
	if _, err := os.Stat(filepath.Join(staticRoot, "options", "locale")); err != nil {
		t.Fatalf("Gitea's module source is not beside %s (%v): run `make bin/gitea` again", real, err)
	}
	return binary, staticRoot
}

// Start starts a Gitea that lives as long as the test, with an admin and
// a token, and webhooks allowed to loopback.
func Start(t testing.TB) *Server {
	t.Helper()
	binary, staticRoot := Binary(t)
	dir := t.TempDir()
	port := e2ekit.FreePort(t)
	runUser := "root"
	if u, err := user.Current(); err == nil {
		runUser = u.Username
	}
	s := &Server{URL: fmt.Sprintf("http://127.0.0.1:%d", port), User: "sluice-admin", Password: "e2e-gitea-password-1",
		dir: dir, config: filepath.Join(dir, "app.ini"), out: &e2ekit.Buffer{}}
	ini := fmt.Sprintf(`APP_NAME = Sluice e2e
RUN_USER = %s
RUN_MODE = prod
WORK_PATH = %s

[server]
PROTOCOL = http
HTTP_ADDR = 127.0.0.1
HTTP_PORT = %d
ROOT_URL = %s/
STATIC_ROOT_PATH = %s
APP_DATA_PATH = %s
OFFLINE_MODE = true
DISABLE_SSH = true
LFS_START_SERVER = false

[database]
DB_TYPE = sqlite3
PATH = %s

[repository]
ROOT = %s
DEFAULT_BRANCH = main

[security]
INSTALL_LOCK = true

[service]
DISABLE_REGISTRATION = true

[webhook]
ALLOWED_HOST_LIST = loopback
DELIVER_TIMEOUT = 10

[actions]
ENABLED = false

[log]
MODE = console
LEVEL = warn
ROOT_PATH = %s
`, runUser, dir, port, s.URL, staticRoot, filepath.Join(dir, "data"), filepath.Join(dir, "gitea.db"),
		filepath.Join(dir, "repos"), filepath.Join(dir, "log"))
	if err := os.WriteFile(s.config, []byte(ini), 0o600); err != nil {
		t.Fatal(err)
	}
	s.env = append(os.Environ(), "GITEA_WORK_DIR="+dir, "GITEA_CUSTOM="+filepath.Join(dir, "custom"), "HOME="+dir)
	if runUser == "root" {
		s.env = append(s.env, "GITEA_I_AM_BEING_UNSAFE_RUNNING_AS_ROOT=true")
	}
	s.run(t, binary, "migrate")
	s.run(t, binary, "admin", "user", "create", "--admin", "--username", s.User, "--password", s.Password,
		"--email", "admin@sluice.test", "--must-change-password=false")

	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, binary, "web", "--config", s.config)
	cmd.Env, cmd.Dir, cmd.Stdout, cmd.Stderr = s.env, dir, s.out, s.out
	// A test process that is killed takes Gitea with it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatalf("start gitea: %v", err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(done)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
		if t.Failed() {
			t.Logf("gitea's output:\n%s", e2ekit.Tail(s.out.String(), 60))
		}
	})
	deadline := time.Now().Add(60 * time.Second)
	for {
		res, err := http.Get(s.URL + "/api/v1/version") //nolint:noctx // a loopback probe bounded by the deadline
		if err == nil {
			_ = res.Body.Close()
			if res.StatusCode == http.StatusOK {
				break
			}
		}
		select {
		case <-done:
			t.Fatalf("gitea stopped:\n%s", e2ekit.Tail(s.out.String(), 60))
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("gitea did not answer within 60 s:\n%s", e2ekit.Tail(s.out.String(), 60))
		}
		time.Sleep(100 * time.Millisecond)
	}
	basic, err := gitea.NewClient(s.URL, gitea.SetBasicAuth(s.User, s.Password), gitea.SetGiteaVersion(""))
	if err != nil {
		t.Fatal(err)
	}
	tok, _, err := basic.CreateAccessToken(gitea.CreateAccessTokenOption{Name: "sluice",
		Scopes: []gitea.AccessTokenScope{"write:repository", "write:user", "write:issue"}})
	if err != nil {
		t.Fatalf("create a gitea token: %v", err)
	}
	s.Token = tok.Token
	return s
}

func (s *Server) run(t testing.TB, binary string, args ...string) {
	t.Helper()
	cmd := exec.CommandContext(context.Background(), binary, append(args, "--config", s.config)...)
	cmd.Env, cmd.Dir = s.env, s.dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("gitea %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// Client is an SDK client with the admin's token.
func (s *Server) Client(t testing.TB) *gitea.Client {
	t.Helper()
	c, err := gitea.NewClient(s.URL, gitea.SetToken(s.Token), gitea.SetGiteaVersion(""))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// CloneURL is the HTTP clone URL of the admin's repository name.
func (s *Server) CloneURL(name string) string { return s.URL + "/" + s.User + "/" + name + ".git" }

// PushURL is CloneURL with the admin's token in it, for git push.
func (s *Server) PushURL(name string) string {
	return strings.Replace(s.CloneURL(name), "http://", "http://"+s.User+":"+s.Token+"@", 1)
}

// Push pushes branch of the git repository in dir to the admin's
// repository name.
func (s *Server) Push(t testing.TB, dir, name, refspec string) {
	t.Helper()
	cmd := exec.CommandContext(context.Background(), "git", "push", "--force", s.PushURL(name), refspec)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GIT_TERMINAL_PROMPT=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("git push %s: %v\n%s", refspec, err, strings.ReplaceAll(string(out), s.Token, "<token>"))
	}
}

// Log is what Gitea printed so far.
func (s *Server) Log() string { return s.out.String() }
