package e2e

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sluicehq/sluice/e2e/internal/e2ekit"
	"github.com/sluicehq/sluice/platform/auth"
	"github.com/sluicehq/sluice/platform/devcerts"
	"github.com/sluicehq/sluice/platform/executor/executortest"
	"github.com/sluicehq/sluice/platform/gittest"
	"github.com/sluicehq/sluice/platform/keyring"
	"github.com/sluicehq/sluice/platform/tlsconfig"
)

// platform is a running Sluice in one of its shapes, as the CLI sees it.
type platform struct {
	env     []string // SLUICE_SERVER or the per-service URLs, for the CLI
	dataDir string
	procs   []*proc
	url     string // the all-in-one URL (or source's)
	// client calls the platform (over https, trusting its CA).
	client *http.Client
}

// testCerts is a CA of a test's own and the certificates it issues for
// 127.0.0.1, as files.
type testCerts struct {
	ca     *devcerts.CA
	dir    string
	caFile string
}

func newTestCerts(t *testing.T, dir string) *testCerts {
	t.Helper()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	set, err := devcerts.WriteSet(dir, "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	return &testCerts{ca: set.CA, dir: dir, caFile: set.CAFile}
}

// issue writes <name>.pem and <name>-key.pem for 127.0.0.1.
func (c *testCerts) issue(t *testing.T, name string) (certFile, keyFile string) {
	t.Helper()
	pair, err := c.ca.Issue("127.0.0.1", name)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile, err = pair.WriteFiles(c.dir, name, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

// client trusts the CA; its idle connections close when the test ends.
func (c *testCerts) client(t *testing.T) *http.Client {
	t.Helper()
	trust, err := tlsconfig.NewClient(tlsconfig.ClientOptions{CAFile: c.caFile})
	if err != nil {
		t.Fatal(err)
	}
	tr := trust.Transport()
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

// startAllInOne starts `sluice up` as a process; env are more variables
// for it (and the CLI).
func startAllInOne(t *testing.T, dataDir string, env ...string) (*platform, *proc) {
	t.Helper()
	port := e2ekit.FreePort(t)
	p := &platform{dataDir: dataDir, url: fmt.Sprintf("http://127.0.0.1:%d", port), client: http.DefaultClient}
	// `sluice up` saves its admin token where the CLI finds it: in the
	// test's own config folder, never the user's.
	p.env = []string{"SLUICE_SERVER=" + p.url, "XDG_CONFIG_HOME=" + filepath.Join(dataDir, "config")}
	p.env = append(p.env, stepSandboxEnv(t)...)
	p.env = append(p.env, env...)
	pr := p.restartAllInOne(t, port)
	t.Cleanup(func() { killDeployed(dataDir) })
	return p, pr
}

func (p *platform) restartAllInOne(t *testing.T, port int, flags ...string) *proc {
	t.Helper()
	args := append([]string{"up", "--data-dir", p.dataDir,
		"--addr", fmt.Sprintf("127.0.0.1:%d", port), "--poll-interval", "0", "--log-level", "debug"}, flags...)
	pr := startProc(t, "sluice up", p.env, bin(t, "sluice"), args...)
	p.procs = append(p.procs, pr)
	waitHTTP(t, p.url+"/readyz", 60*time.Second, pr)
	// It prints the API's address once the platform accepts its token.
	waitOutput(t, pr, "  api ")
	return pr
}

// startFiveProcesses starts nats-server with the users and permissions of
// deploy/nats/auth.conf, and the five service binaries, each as its own
// NATS user: a subject a service's code uses but its user may not stops
// the run. Every connection is TLS, with certificates of a CA of the
// test's own: NATS requires TLS and a client certificate, each service
// serves its API with a certificate of its own, and calls source, and the
// CLI calls them, trusting the CA.
func startFiveProcesses(t *testing.T, dataDir string) *platform {
	t.Helper()
	certs := newTestCerts(t, filepath.Join(dataDir, "certs"))
	natsPort := e2ekit.FreePort(t)
	natsURL := fmt.Sprintf("tls://127.0.0.1:%d", natsPort)
	natsConf, natsEnv := natsAuthConfig(t, filepath.Join(dataDir, "nats-config"))
	natsCert, natsKey := certs.issue(t, "nats")
	tlsBlock := fmt.Sprintf("tls {\n  cert_file: %q\n  key_file: %q\n  ca_file: %q\n  verify: true\n}\n", natsCert, natsKey, certs.caFile)
	if err := os.WriteFile(natsConf, []byte("include ./auth.conf\n"+tlsBlock), 0o600); err != nil {
		t.Fatal(err)
	}
	ns := startProc(t, "nats-server", natsEnv, bin(t, "nats-server"), "-c", natsConf, "-js", "-a", "127.0.0.1", "-p", strconv.Itoa(natsPort), "-sd", filepath.Join(dataDir, "nats"))
	p := &platform{dataDir: dataDir, procs: []*proc{ns}, client: certs.client(t)}
	p.env = append(p.env, "SLUICE_CA_FILE="+certs.caFile)
	// The first admin token, as an operator would provision it: a file
	// source registers on start; the CLI gets it in SLUICE_TOKEN.
	_, admin := auth.NewUserToken()
	tokenFile := filepath.Join(dataDir, "admin-token")
	if err := os.WriteFile(tokenFile, []byte(admin+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	p.env = append(p.env, "SLUICE_TOKEN="+admin)
	// Source's and notify's age keys, a file (0600) each, as an operator
	// would give them (`sluice up` gives both one): source keeps the step
	// secrets and the webhook secrets encrypted, notify the subscriptions'.
	keyFiles := map[string]string{}
	for _, s := range []string{"source", "notify"} {
		keyFiles[s] = filepath.Join(dataDir, s+"-secret-key")
		if _, err := keyring.EnsureFile(keyFiles[s]); err != nil {
			t.Fatal(err)
		}
	}
	urls := map[string]string{}
	ports := map[string]int{}
	for _, s := range []string{"source", "build", "test", "release", "notify"} {
		ports[s] = e2ekit.FreePort(t)
		urls[s] = fmt.Sprintf("https://127.0.0.1:%d", ports[s])
		p.env = append(p.env, "SLUICE_"+strings.ToUpper(s)+"_URL="+urls[s])
	}
	for _, s := range []string{"source", "build", "test", "release", "notify"} {
		prefix := "SLUICE_" + strings.ToUpper(s) + "_"
		cert, key := certs.issue(t, s)
		env := []string{
			prefix + "ADDR=" + strings.TrimPrefix(urls[s], "https://"),
			prefix + "TLS_CERT_FILE=" + cert,
			prefix + "TLS_KEY_FILE=" + key,
			prefix + "TLS_CA_FILE=" + certs.caFile,
			// The service's certificate is its NATS client certificate too.
			prefix + "NATS_CA_FILE=" + certs.caFile,
			prefix + "NATS_CERT_FILE=" + cert,
			prefix + "NATS_KEY_FILE=" + key,
			prefix + "NATS_URL=" + natsURL,
			prefix + "NATS_USER=" + s,
			prefix + "NATS_PASSWORD=" + natsPassword(s),
			prefix + "DATA_DIR=" + filepath.Join(dataDir, s),
			// The questions a stage asks another service: release asks
			// source for a changelog's commits, and build, test and release
			// ask it for the values of the secrets their commands ask for.
			"SLUICE_RELEASE_SOURCE_URL=" + urls["source"],
			"SLUICE_BUILD_SOURCE_URL=" + urls["source"],
			"SLUICE_TEST_SOURCE_URL=" + urls["source"],
			// Notify asks it for the forge tokens of commit statuses.
			"SLUICE_NOTIFY_SOURCE_URL=" + urls["source"],
			prefix + "POLL_INTERVAL=0s",
			"SLUICE_SOURCE_ADMIN_TOKEN_FILE=" + tokenFile,
			"SLUICE_SOURCE_SECRET_KEY_FILE=" + keyFiles["source"],
			"SLUICE_NOTIFY_SECRET_KEY_FILE=" + keyFiles["notify"],
			// The repositories are local, and the deploys' verify.http and
			// the webhook receivers are on loopback (`sluice up` allows the
			// same by default; a service binary does not).
			prefix + "ALLOW_EGRESS=loopback,local",
			// The example's deploy starts the service it deploys on this
			// machine (`sluice up` allows it by default).
			"SLUICE_RELEASE_KEEP_PROCESSES=*",
		}
		env = append(env, stepSandboxEnv(t)...)
		pr := startProc(t, "sluice-"+s, env, bin(t, "sluice-"+s))
		p.procs = append(p.procs, pr)
	}
	for i, s := range []string{"source", "build", "test", "release", "notify"} {
		waitHTTPVia(t, p.client, urls[s]+"/readyz", 60*time.Second, p.procs[i+1])
	}
	// Every service learns the token from NATS a moment after source
	// registers it.
	for _, s := range []string{"source", "build", "test", "release", "notify"} {
		waitAuthenticated(t, p.client, urls[s], s, admin)
	}
	p.url = urls["source"]
	t.Cleanup(func() { killDeployed(dataDir) })
	return p
}

// stepSandboxEnv lets the steps of build, test and release use the Go
// toolchain the tests run with and share the tests' Go build cache, as the
// operator settings step-read-paths, step-write-paths and step-env would;
// each run's module cache and home stay its own.
func stepSandboxEnv(t *testing.T) []string {
	t.Helper()
	iso := executortest.GoIsolation(t)
	var env []string
	for _, s := range []string{"BUILD", "TEST", "RELEASE"} {
		prefix := "SLUICE_" + s + "_STEP_"
		env = append(env,
			prefix+"READ_PATHS="+strings.Join(iso.ReadPaths, ","),
			prefix+"WRITE_PATHS="+strings.Join(iso.WritePaths, ","),
			prefix+"ENV="+strings.Join(iso.Env, ","))
	}
	return env
}

// killDeployed stops what deploy scripts started (they are daemons by
// design and outlive the platform).
func killDeployed(dataDir string) {
	// Best effort: a pid file that is gone or unreadable has nothing to stop.
	_ = filepath.WalkDir(dataDir, func(path string, d os.DirEntry, walkErr error) error {
		if walkErr != nil || d.IsDir() || !strings.HasSuffix(d.Name(), ".pid") {
			return nil //nolint:nilerr // keep walking past unreadable entries
		}
		if data, err := os.ReadFile(path); err == nil {
			if pid, err := strconv.Atoi(strings.TrimSpace(string(data))); err == nil && pid > 1 {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
		return nil
	})
}

// helloRepo is the bundled example with its staging port moved to a free
// one, so tests never collide with `make run`.
func helloRepo(t *testing.T) (*gittest.Repo, int) {
	t.Helper()
	files := e2ekit.ExampleFiles(t)
	port := e2ekit.FreePort(t)
	files[".sluice.yaml"] = strings.ReplaceAll(files[".sluice.yaml"], "127.0.0.1:18180", fmt.Sprintf("127.0.0.1:%d", port))
	if !strings.Contains(files[".sluice.yaml"], strconv.Itoa(port)) {
		t.Fatal("examples/hello/.sluice.yaml no longer names 127.0.0.1:18180; update the e2e helper")
	}
	return newGitRepo(t, files), port
}
