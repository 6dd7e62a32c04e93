package containers

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/sluicehq/sluice/e2e/internal/e2ekit"
	"github.com/sluicehq/sluice/platform/devcerts"
	"github.com/sluicehq/sluice/platform/natstest"
)

// composeFile is the committed Compose stack, parsed as far as these checks
// need.
type composeFile struct {
	Services map[string]struct {
		Image       string            `json:"image"`
		Environment map[string]string `json:"environment"`
		Volumes     []string          `json:"volumes"`
	} `json:"services"`
}

// The Compose stack, read without Docker: every service reaches NATS over
// TLS with the CA, serves its API with TLS and calls source over https;
// every NATS server requires TLS of its clients, and its routes require
// TLS both ways and the route user.
func TestComposeConfigIsTLSEverywhere(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(e2ekit.RepoRoot(), "deploy", "compose")
	raw, err := os.ReadFile(filepath.Join(dir, "docker-compose.yml"))
	if err != nil {
		t.Fatal(err)
	}
	// The x- anchors are YAML merges; sigs.k8s.io/yaml resolves them.
	var cf composeFile
	if err := yaml.Unmarshal(raw, &cf); err != nil {
		t.Fatal(err)
	}
	replicas := 0
	for name, s := range cf.Services {
		svc := strings.TrimSuffix(strings.TrimSuffix(name, "-1"), "-2")
		if !containsString(services, svc) {
			continue
		}
		replicas++
		p := "SLUICE_" + strings.ToUpper(svc) + "_"
		env := s.Environment
		for _, u := range strings.Split(env[p+"NATS_URL"], ",") {
			if !strings.HasPrefix(u, "tls://") {
				t.Errorf("%s: NATS URL %q is not tls://", name, u)
			}
		}
		want := map[string]string{
			p + "NATS_CA_FILE": "/certs/ca.pem", p + "TLS_CA_FILE": "/certs/ca.pem",
			p + "TLS_CERT_FILE": "/certs/" + svc + ".pem", p + "TLS_KEY_FILE": "/certs/" + svc + "-key.pem",
		}
		for k, v := range want {
			if env[k] != v {
				t.Errorf("%s: %s = %q, want %q", name, k, env[k], v)
			}
		}
		if u, ok := env[p+"SOURCE_URL"]; ok && !strings.HasPrefix(u, "https://") {
			t.Errorf("%s: source-url %q is not https://", name, u)
		}
		if !containsString(s.Volumes, "${SLUICE_CERTS_DIR:-./certs}:/certs:ro") {
			t.Errorf("%s: the certificates are not mounted at /certs: %v", name, s.Volumes)
		}
	}
	if replicas < len(services) {
		t.Fatalf("found %d service containers in the compose file", replicas)
	}
	for i := 1; i <= 3; i++ {
		n := cf.Services[fmt.Sprintf("nats-%d", i)]
		if !containsString(n.Volumes, "${SLUICE_CERTS_DIR:-./certs}:/etc/nats/certs:ro") {
			t.Errorf("nats-%d: the certificates are not mounted: %v", i, n.Volumes)
		}
		routes := n.Environment["NATS_ROUTES"]
		for j := 1; j <= 3; j++ {
			if !strings.Contains(routes, fmt.Sprintf("nats-route://route:${NATS_ROUTE_PASSWORD}@nats-%d:6222", j)) {
				t.Errorf("nats-%d: NATS_ROUTES %q lacks the route to nats-%d with the route user", i, routes, j)
			}
		}
	}
	conf, err := os.ReadFile(filepath.Join(dir, "nats.conf"))
	if err != nil {
		t.Fatal(err)
	}
	checkNATSConfTLS(t, string(conf))
	runComposeNATSPair(t, string(conf))
}

func containsString(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

var (
	natsComment      = regexp.MustCompile(`(?m)#.*$`)
	natsClusterBlock = regexp.MustCompile(`(?s)cluster\s*\{(.*)\}`)
	natsTLSBlock     = regexp.MustCompile(`(?s)tls\s*\{([^}]*)\}`)
	natsAuthBlock    = regexp.MustCompile(`(?s)authorization\s*\{([^}]*)\}`)
)

// checkNATSConfTLS: clients need TLS (a tls block outside cluster), and
// the cluster's routes need TLS with verify and a route user.
func checkNATSConfTLS(t *testing.T, conf string) {
	t.Helper()
	conf = natsComment.ReplaceAllString(conf, "")
	cluster := natsClusterBlock.FindStringSubmatch(conf)
	if cluster == nil {
		t.Fatal("nats.conf has no cluster block")
	}
	outside := strings.Replace(conf, cluster[0], "", 1)
	if m := natsTLSBlock.FindStringSubmatch(outside); m == nil || !strings.Contains(m[1], "cert_file") {
		t.Error("nats.conf: clients are not required to use TLS (no tls block with a certificate)")
	}
	tlsRoutes := natsTLSBlock.FindStringSubmatch(cluster[1])
	if tlsRoutes == nil || !regexp.MustCompile(`verify:\s*true`).MatchString(tlsRoutes[1]) {
		t.Error("nats.conf: the routes are not TLS with verify: true")
	}
	auth := natsAuthBlock.FindStringSubmatch(cluster[1])
	if auth == nil || !strings.Contains(auth[1], "user:") || !strings.Contains(auth[1], "password: $NATS_ROUTE_PASSWORD") {
		t.Error("nats.conf: the routes need no route user (cluster authorization)")
	}
}

// runComposeNATSPair runs two servers of the Compose config (on free ports
// of this machine, with certificates of a CA of the test's own): the route
// with the route user's password forms, over TLS; a server with another
// password is refused.
func runComposeNATSPair(t *testing.T, conf string) {
	t.Helper()
	bin, err := natstest.Binary()
	if err != nil {
		t.Skip(err)
	}
	certs := t.TempDir()
	ca, err := devcerts.NewCA("compose test CA")
	if err != nil {
		t.Fatal(err)
	}
	pair, err := ca.Issue("localhost", "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := pair.WriteFiles(certs, "nats", 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(certs, "ca.pem"), ca.PEM, 0o600); err != nil {
		t.Fatal(err)
	}
	authConf, err := os.ReadFile(filepath.Join(e2ekit.RepoRoot(), "deploy", "nats", "auth.conf"))
	if err != nil {
		t.Fatal(err)
	}
	type server struct{ client, cluster, monitor int }
	servers := []server{}
	for range 3 {
		servers = append(servers, server{e2ekit.FreePort(t), e2ekit.FreePort(t), e2ekit.FreePort(t)})
	}
	routes := func(password string) string {
		var rs []string
		for _, s := range servers[:2] {
			rs = append(rs, fmt.Sprintf("nats-route://route:%s@127.0.0.1:%d", password, s.cluster))
		}
		return "[" + strings.Join(rs, ", ") + "]"
	}
	start := func(i int, password string) {
		s := servers[i]
		d := t.TempDir()
		c := strings.NewReplacer(
			"/etc/nats/certs", certs,
			"0.0.0.0:4222", fmt.Sprintf("127.0.0.1:%d", s.client),
			"0.0.0.0:6222", fmt.Sprintf("127.0.0.1:%d", s.cluster),
			"0.0.0.0:8222", fmt.Sprintf("127.0.0.1:%d", s.monitor),
			"store_dir: /data", "store_dir: "+filepath.Join(d, "js"),
		).Replace(conf)
		if err := os.WriteFile(filepath.Join(d, "nats.conf"), []byte(c), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(d, "auth.conf"), authConf, 0o600); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		cmd := exec.CommandContext(ctx, bin, "-c", filepath.Join(d, "nats.conf"))
		cmd.Env = append(os.Environ(), fmt.Sprintf("SERVER_NAME=nats-%d", i+1), "NATS_ROUTE_PASSWORD="+password, "NATS_ROUTES="+routes(password),
			"NATS_ADMIN_PASSWORD=a", "NATS_SOURCE_PASSWORD=a", "NATS_BUILD_PASSWORD=a", "NATS_TEST_PASSWORD=a", "NATS_RELEASE_PASSWORD=a", "NATS_NOTIFY_PASSWORD=a")
		out := &strings.Builder{}
		cmd.Stdout, cmd.Stderr = out, out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			cancel()
			_ = cmd.Wait()
			if t.Failed() {
				t.Logf("nats-%d:\n%s", i+1, out.String())
			}
		})
	}
	monitor := func(i int, path string, v any) error {
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, fmt.Sprintf("http://127.0.0.1:%d/%s", servers[i].monitor, path), nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		defer func() { _ = resp.Body.Close() }()
		return json.NewDecoder(resp.Body).Decode(v)
	}
	numRoutes := func(i int) int {
		var rz struct {
			NumRoutes int `json:"num_routes"`
		}
		if monitor(i, "routez", &rz) != nil {
			return -1
		}
		return rz.NumRoutes
	}
	start(0, "good-route-pw")
	start(1, "good-route-pw")
	// The third server has another password: the others refuse its routes,
	// and it refuses theirs.
	start(2, "wrong-route-pw")
	deadline := time.Now().Add(20 * time.Second)
	for numRoutes(0) < 1 || numRoutes(1) < 1 {
		if time.Now().After(deadline) {
			t.Fatalf("no route between nats-1 and nats-2: %d, %d routes", numRoutes(0), numRoutes(1))
		}
		time.Sleep(200 * time.Millisecond)
	}
	var vz struct {
		TLSRequired bool `json:"tls_required"`
		Cluster     struct {
			TLSRequired bool `json:"tls_required"`
			TLSVerify   bool `json:"tls_verify"`
		} `json:"cluster"`
	}
	if err := monitor(0, "varz", &vz); err != nil || !vz.TLSRequired || !vz.Cluster.TLSRequired || !vz.Cluster.TLSVerify {
		t.Fatalf("nats-1 varz: %+v, %v; want TLS required of clients and routes, routes verified", vz, err)
	}
	// The third server's routes are refused: a route it dials is counted
	// for the moment between its creation and the refusal (seen in one
	// CI run as "1 route" sampled once), so it is sampled for 3 s: a
	// refused server is without a route most of that time and never has
	// both; one that joined would have both all the time.
	samples, without := 0, 0
	for end := time.Now().Add(3 * time.Second); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		n := numRoutes(2)
		samples++
		if n == 0 {
			without++
		}
		if n >= 2 {
			t.Fatalf("nats-3, with another route password, has %d routes", n)
		}
	}
	if without*2 < samples {
		t.Fatalf("nats-3, with another route password, had a route in %d of %d samples over 3 s", samples-without, samples)
	}
}
