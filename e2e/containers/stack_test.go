package containers

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ory/dockertest/v3"
	"github.com/ory/dockertest/v3/docker"

	"github.com/sluicehq/sluice/e2e/internal/e2ekit"
	"github.com/sluicehq/sluice/platform/auth"
	"github.com/sluicehq/sluice/platform/executor/container/containertest"
	"github.com/sluicehq/sluice/platform/keyring"
)

// Ports of the services inside their containers.
var servicePorts = map[string]string{"source": "8081", "build": "8082", "test": "8083", "release": "8084", "notify": "8085"}

// services in the order they start.
var services = []string{"source", "build", "test", "release", "notify"}

// StackOptions shape a stack.
type StackOptions struct {
	// Replicas per service; 1 when not set.
	Replicas map[string]int
	// GoToolchain mounts the host's Go (/usr/local/go, read-only) into the
	// build and test containers, for pipelines that run `go`.
	GoToolchain bool
	// ContainerSteps gives the build and test containers the host's Docker
	// Engine (its socket, and their data directories at the same path in
	// the container and on the host, as the steps' workspaces are bind
	// mounts), so steps with an image run in containers beside them, with
	// ContainerMemory as their memory limit (the default when empty).
	ContainerSteps  bool
	ContainerMemory string
}

// Stack is a Sluice platform in containers: a three-node NATS cluster,
// PostgreSQL with a database per service, the services and a webhook
// receiver, on a network of its own.
type Stack struct {
	t    *testing.T
	pool *dockertest.Pool
	net  *dockertest.Network
	// name prefixes every container and the network.
	name string
	// dir is a host folder the containers may read (configs, repositories).
	dir string
	// Repos is the host folder mounted at /repos in source, build, test and
	// release; a repository made in Repos/x is registered as /repos/x.
	Repos string
	opts  StackOptions

	PG       *dockertest.Resource
	NATS     []*dockertest.Resource
	Receiver *dockertest.Resource

	mu  sync.Mutex
	svc map[string][]*Container
	// Admin is the admin token's secret the API and the CLI call with.
	Admin string
	// secretKeys are source's and notify's age keys, made once so that
	// every replica, and a newer one in a rolling upgrade, reads what the
	// others encrypted.
	secretKeys map[string]string
}

// Container is one service replica.
type Container struct {
	Service string
	Name    string
	Res     *dockertest.Resource
}

const (
	natsAdminPassword = "e2e-admin-pw"
	pgAdminPassword   = "e2e-postgres-pw"
)

func natsPassword(svc string) string { return "e2e-nats-" + svc + "-pw" }
func pgPassword(svc string) string   { return "e2e-pg-" + svc + "-pw" }

// StartStack starts a whole platform and waits until every part is ready.
func StartStack(t *testing.T, opts StackOptions) *Stack {
	t.Helper()
	pool := need(t)
	var b [4]byte
	_, _ = rand.Read(b[:])
	s := &Stack{t: t, pool: pool, name: "sluice-e2e-" + hex.EncodeToString(b[:]), opts: opts, svc: map[string][]*Container{}}
	dir, err := os.MkdirTemp("", s.name+"-")
	if err != nil {
		t.Fatal(err)
	}
	s.dir = dir
	// The first admin token, provisioned as an operator would: a file that
	// source registers on start (readable by the image's user: a test
	// folder only).
	_, s.Admin = auth.NewUserToken()
	s.writeFile(filepath.Join("secrets", "admin-token"), s.Admin+"\n")
	s.secretKeys = map[string]string{}
	for _, svc := range []string{"source", "notify"} {
		if s.secretKeys[svc], err = keyring.Generate(); err != nil {
			t.Fatal(err)
		}
	}
	s.Repos = filepath.Join(dir, "repos")
	if err := os.MkdirAll(s.Repos, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	start := time.Now()
	s.net, err = pool.CreateNetwork(s.name, func(o *docker.CreateNetworkOptions) { o.Labels = e2ekit.TestLabels() })
	if err != nil {
		t.Fatalf("create network: %v", err)
	}
	t.Cleanup(func() {
		if err := s.net.Close(); err != nil {
			t.Logf("remove network %s: %v", s.name, err)
		}
	})

	if _, err := os.Stat(natsAuthFile()); err != nil {
		t.Fatalf("NATS users: %v", err)
	}
	s.startPostgres()
	for i := 1; i <= 3; i++ {
		s.NATS = append(s.NATS, s.startNATS(i))
	}
	s.waitNATS()
	s.startReceiver()
	for _, svc := range services {
		for i := 1; i <= max(1, opts.Replicas[svc]); i++ {
			s.StartService(svc, i, "sluice-"+svc+":"+Tag)
		}
	}
	for _, svc := range services {
		for _, c := range s.Replicas(svc) {
			s.WaitReady(c)
		}
	}
	t.Logf("stack %s ready in %s", s.name, time.Since(start).Round(time.Millisecond))
	return s
}

// run starts a container on the stack's network, known there by its name
// and by aliases (which several containers may share: the replicas of a
// service answer to one, as they would behind a Kubernetes Service or a
// Compose alias), with docker-init as PID 1 to reap what steps and deploys
// leave behind. The container and its volumes are removed when the test
// ends. (dockertest's RunWithOptions has no aliases, so containers are made
// here, through its client.)
func (s *Stack) run(opts *dockertest.RunOptions, aliases ...string) *dockertest.Resource {
	s.t.Helper()
	return s.runWith(opts, nil, aliases...)
}

// runWith is run, the container's user also in the groups (ids).
func (s *Stack) runWith(opts *dockertest.RunOptions, groups []string, aliases ...string) *dockertest.Resource {
	s.t.Helper()
	if opts.Hostname == "" {
		opts.Hostname = strings.TrimPrefix(opts.Name, s.name+"-")
	}
	exposed := map[docker.Port]struct{}{}
	for _, p := range opts.ExposedPorts {
		exposed[docker.Port(p)] = struct{}{}
	}
	c, err := s.pool.Client.CreateContainer(docker.CreateContainerOptions{
		Name: opts.Name,
		Config: &docker.Config{
			Hostname: opts.Hostname, Image: opts.Repository + ":" + opts.Tag, Env: opts.Env, Cmd: opts.Cmd,
			ExposedPorts: exposed, Labels: e2ekit.TestLabels(),
		},
		HostConfig: &docker.HostConfig{
			Binds: opts.Mounts, PortBindings: opts.PortBindings, Init: true, GroupAdd: groups,
			RestartPolicy: docker.RestartPolicy{Name: "no"},
		},
		NetworkingConfig: &docker.NetworkingConfig{EndpointsConfig: map[string]*docker.EndpointConfig{
			s.net.Network.ID: {Aliases: aliases},
		}},
	})
	if err != nil {
		s.t.Fatalf("create %s: %v", opts.Name, err)
	}
	if err := s.pool.Client.StartContainer(c.ID, nil); err != nil {
		_ = s.pool.Client.RemoveContainer(docker.RemoveContainerOptions{ID: c.ID, Force: true, RemoveVolumes: true})
		s.t.Fatalf("start %s: %v", opts.Name, err)
	}
	res, ok := s.pool.ContainerByName("^/" + opts.Name + "$")
	if !ok {
		_ = s.pool.Client.RemoveContainer(docker.RemoveContainerOptions{ID: c.ID, Force: true, RemoveVolumes: true})
		s.t.Fatalf("inspect %s", opts.Name)
	}
	s.t.Cleanup(func() {
		if s.t.Failed() {
			s.t.Logf("--- last lines of %s ---\n%s", opts.Name, s.Logs(res, 60))
		}
		if err := s.pool.Purge(res); err != nil {
			s.t.Logf("remove %s: %v", opts.Name, err)
		}
	})
	return res
}

// loopback publishes the given container ports on 127.0.0.1 only.
func loopback(ports ...string) map[docker.Port][]docker.PortBinding {
	m := map[docker.Port][]docker.PortBinding{}
	for _, p := range ports {
		m[docker.Port(p+"/tcp")] = []docker.PortBinding{{HostIP: "127.0.0.1", HostPort: ""}}
	}
	return m
}

func (s *Stack) writeFile(name, content string) string {
	s.t.Helper()
	p := filepath.Join(s.dir, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		s.t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		s.t.Fatal(err)
	}
	return p
}

func (s *Stack) startPostgres() {
	var init strings.Builder
	for _, svc := range services {
		fmt.Fprintf(&init, "CREATE ROLE %s LOGIN PASSWORD '%s';\nCREATE DATABASE %s OWNER %s;\n", svc, pgPassword(svc), svc, svc)
	}
	initFile := s.writeFile("postgres/init.sql", init.String())
	s.PG = s.run(&dockertest.RunOptions{
		Name:       s.name + "-postgres",
		Repository: "sluice-postgres", Tag: Tag,
		Env: []string{"POSTGRES_PASSWORD=" + pgAdminPassword},
		// Seven or eight service processes of up to 16 connections each.
		Cmd:          []string{"-c", "max_connections=200"},
		Mounts:       []string{initFile + ":/docker-entrypoint-initdb.d/init.sql:ro"},
		ExposedPorts: []string{"5432/tcp"},
	})
	s.eventually("postgres ready", 90*time.Second, func() error {
		code, err := s.PG.Exec([]string{"psql", "-h", "/tmp", "-U", "postgres", "-d", "notify", "-Atc", "select 1"}, dockertest.ExecOptions{})
		if err != nil {
			return err
		}
		if code != 0 {
			return fmt.Errorf("psql exited %d", code)
		}
		return nil
	})
}

// natsAuthFile is the generated file of NATS users and permissions.
func natsAuthFile() string { return filepath.Join(e2ekit.RepoRoot(), "deploy", "nats", "auth.conf") }

// natsConfig is the cluster's server configuration; the users and their
// permissions come from the repository's generated deploy/nats/auth.conf.
func (s *Stack) natsConfig() string {
	var routes []string
	for i := 1; i <= 3; i++ {
		routes = append(routes, fmt.Sprintf("nats-route://%s-nats-%d:6222", s.name, i))
	}
	return fmt.Sprintf(`server_name: $SERVER_NAME
listen: 0.0.0.0:4222
http: 0.0.0.0:8222
jetstream {
  store_dir: /data
  max_memory_store: 256MB
  max_file_store: 16GB
}
cluster {
  name: sluice
  listen: 0.0.0.0:6222
  routes: [%s]
  no_advertise: true
}
include ./auth.conf
`, strings.Join(routes, ", "))
}

func (s *Stack) startNATS(i int) *dockertest.Resource {
	s.t.Helper()
	conf := s.writeFile("nats/nats.conf", s.natsConfig())
	auth := natsAuthFile()
	env := []string{fmt.Sprintf("SERVER_NAME=nats-%d", i), "NATS_ADMIN_PASSWORD=" + natsAdminPassword}
	for _, svc := range services {
		env = append(env, "NATS_"+strings.ToUpper(svc)+"_PASSWORD="+natsPassword(svc))
	}
	return s.run(&dockertest.RunOptions{
		Name:       fmt.Sprintf("%s-nats-%d", s.name, i),
		Repository: "sluice-nats", Tag: Tag,
		Env:          env,
		Mounts:       []string{conf + ":/etc/nats/nats.conf:ro", auth + ":/etc/nats/auth.conf:ro"},
		ExposedPorts: []string{"4222/tcp", "8222/tcp"},
		PortBindings: loopback("4222", "8222"),
	})
}

// waitNATS waits until every node answers its JetStream health check.
func (s *Stack) waitNATS() {
	s.t.Helper()
	for _, n := range s.NATS {
		url := "http://" + n.GetHostPort("8222/tcp") + "/healthz?js-enabled-only=true"
		s.eventually(n.Container.Name+" healthy", 90*time.Second, func() error { return httpOK(url) })
	}
}

// NATSURL is a host URL of node i (0-based) for the test's own clients.
func (s *Stack) NATSURL(i int) string { return "nats://" + s.NATS[i].GetHostPort("4222/tcp") }

func (s *Stack) natsURLs() string {
	var urls []string
	for i := 1; i <= 3; i++ {
		urls = append(urls, fmt.Sprintf("nats://%s-nats-%d:4222", s.name, i))
	}
	return strings.Join(urls, ",")
}

func (s *Stack) startReceiver() {
	s.Receiver = s.run(&dockertest.RunOptions{
		Name:       s.name + "-receiver",
		Repository: strings.Split(suite.receiverImage, ":")[0], Tag: Tag,
		Env:          []string{"RECEIVER_SECRET=" + receiverSecret},
		ExposedPorts: []string{"8090/tcp"},
		PortBindings: loopback("8090"),
	})
	url := "http://" + s.Receiver.GetHostPort("8090/tcp") + "/healthz"
	s.eventually("receiver ready", 30*time.Second, func() error { return httpOK(url) })
}

// ReceiverURL is the receiver's URL inside the network (for subscriptions).
func (s *Stack) ReceiverURL() string { return "http://" + s.name + "-receiver:8090/" }

const receiverSecret = "e2e-receiver-secret"

// ServiceEnv is the configuration of one service replica: environment only.
func (s *Stack) ServiceEnv(svc string) []string {
	p := "SLUICE_" + strings.ToUpper(svc) + "_"
	env := []string{
		p + "ADDR=0.0.0.0:" + servicePorts[svc],
		p + "DATA_DIR=/data",
		p + "DATABASE_URL=" + fmt.Sprintf("postgres://%s:%s@%s-postgres:5432/%s?sslmode=disable", svc, pgPassword(svc), s.name, svc),
		p + "NATS_URL=" + s.natsURLs(),
		p + "NATS_USER=" + svc,
		p + "NATS_PASSWORD=" + natsPassword(svc),
		p + "NATS_REPLICAS=3",
	}
	// In the variable, as the Compose stack and the Kubernetes manifests
	// give them.
	if key, ok := s.secretKeys[svc]; ok {
		env = append(env, p+"SECRET_KEY="+key)
	}
	// The repositories are local (mounted at /repos); the hello example's
	// deploy runs in the release container and is verified on its
	// loopback; the webhook receiver is another container on the network,
	// at a private address.
	switch svc {
	case "notify":
		env = append(env, p+"ALLOW_EGRESS=private")
	case "release":
		// Its processes stay when the deploy ends (the step sandbox kills
		// what other steps leave).
		env = append(env, p+"ALLOW_EGRESS=local,loopback", p+"KEEP_PROCESSES=*")
	default:
		env = append(env, p+"ALLOW_EGRESS=local")
	}
	switch svc {
	case "source":
		// Runs start only when a test triggers them: a poll would start a
		// second run of a commit the test also triggers, and that run would
		// deploy the same version again.
		env = append(env, p+"POLL_INTERVAL=0", p+"ADMIN_TOKEN_FILE=/secrets/admin-token")
	case "release", "test", "notify":
		env = append(env, p+"SOURCE_URL="+s.internalURL("source"))
	case "build":
		env = append(env, p+"WORKERS=2", p+"SOURCE_URL="+s.internalURL("source"))
	}
	if svc == "build" || svc == "test" || svc == "release" || svc == "notify" {
		// This stack runs without TLS on a network the test made for it
		// (the Compose stack and the Kubernetes manifests use TLS instead).
		env = append(env, p+"ALLOW_PLAIN_HTTP=true")
	}
	if s.opts.GoToolchain && (svc == "build" || svc == "test") {
		env = append(env, "GOFLAGS=-mod=mod", "GOTOOLCHAIN=local", "CGO_ENABLED=0")
	}
	return env
}

// internalURL is a service's URL inside the network: an alias that every
// replica of the service answers to.
func (s *Stack) internalURL(svc string) string {
	return fmt.Sprintf("http://%s-%s:%s", s.name, svc, servicePorts[svc])
}

// containerSteps is what replica i of svc needs to run steps in
// containers on the host's engine: env with its data directory moved to a
// host folder mounted at the same path, the engine's socket, the socket's
// group, and the container settings (the tests' labels, images never
// pulled).
func (s *Stack) containerSteps(svc string, i int, env []string) (out, mounts, groups []string) {
	s.t.Helper()
	p := "SLUICE_" + strings.ToUpper(svc) + "_"
	data := filepath.Join(s.dir, fmt.Sprintf("%s-%d-data", svc, i))
	if err := os.MkdirAll(data, 0o777); err != nil {
		s.t.Fatal(err)
	}
	_ = os.Chmod(data, 0o777) //nolint:gosec // the container's user must write it
	for _, kv := range env {
		if !strings.HasPrefix(kv, p+"DATA_DIR=") {
			out = append(out, kv)
		}
	}
	var labels []string
	for k, v := range containertest.TestLabels() {
		labels = append(labels, k+"="+v)
	}
	out = append(out, p+"DATA_DIR="+data, p+"CONTAINER_ENGINE=docker", p+"CONTAINER_PULL=never",
		p+"CONTAINER_LABELS="+strings.Join(labels, ","))
	if s.opts.ContainerMemory != "" {
		out = append(out, p+"CONTAINER_MEMORY="+s.opts.ContainerMemory)
	}
	const sock = "/var/run/docker.sock"
	fi, err := os.Stat(sock)
	if err != nil {
		s.t.Fatalf("container steps need the engine's socket: %v", err)
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		groups = []string{strconv.FormatUint(uint64(st.Gid), 10)}
	}
	return out, []string{data + ":" + data, sock + ":" + sock}, groups
}

// StartService starts replica i of svc from image (repository:tag).
func (s *Stack) StartService(svc string, i int, image string) *Container {
	s.t.Helper()
	repo, tag, _ := strings.Cut(image, ":")
	name := fmt.Sprintf("%s-%s-%d", s.name, svc, i)
	if len(s.Replicas(svc)) >= i {
		name = fmt.Sprintf("%s-%s-%d-%s", s.name, svc, i, strings.ReplaceAll(tag, ".", "-"))
	}
	mounts := []string{}
	if svc != "notify" {
		mounts = append(mounts, s.Repos+":/repos:ro")
	}
	if svc == "source" {
		mounts = append(mounts, filepath.Join(s.dir, "secrets")+":/secrets:ro")
	}
	if s.opts.GoToolchain && (svc == "build" || svc == "test") {
		mounts = append(mounts, "/usr/local/go:/usr/local/go:ro")
	}
	if svc == "release" {
		// The release data (deploy state) outlives a replica, as a volume
		// would, so a newer replica takes over the environments.
		data := filepath.Join(s.dir, "release-data")
		if err := os.MkdirAll(data, 0o777); err != nil {
			s.t.Fatal(err)
		}
		_ = os.Chmod(data, 0o777) //nolint:gosec // the container's user must write it
		mounts = append(mounts, data+":/data")
	}
	env := s.ServiceEnv(svc)
	var groups []string
	if s.opts.ContainerSteps && (svc == "build" || svc == "test") {
		var more []string
		env, more, groups = s.containerSteps(svc, i, env)
		mounts = append(mounts, more...)
	}
	c := &Container{Service: svc, Name: name}
	c.Res = s.runWith(&dockertest.RunOptions{
		Name:       name,
		Hostname:   fmt.Sprintf("%s-%d", svc, i),
		Repository: repo, Tag: tag,
		Env:          env,
		Mounts:       mounts,
		ExposedPorts: []string{servicePorts[svc] + "/tcp"},
		PortBindings: loopback(servicePorts[svc]),
	}, groups, s.name+"-"+svc)
	s.mu.Lock()
	s.svc[svc] = append(s.svc[svc], c)
	s.mu.Unlock()
	return c
}

// Replicas are the containers of svc started so far.
func (s *Stack) Replicas(svc string) []*Container {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*Container(nil), s.svc[svc]...)
}

// URL is svc's API on the host (its first running replica).
func (s *Stack) URL(svc string) string {
	for _, c := range s.Replicas(svc) {
		if c.Running(s) {
			return "http://" + c.Res.GetHostPort(servicePorts[svc]+"/tcp")
		}
	}
	s.t.Fatalf("no %s replica is running", svc)
	return ""
}

// Running reports whether the container is up.
func (c *Container) Running(s *Stack) bool {
	ct, err := s.pool.Client.InspectContainer(c.Res.Container.ID)
	return err == nil && ct.State.Running
}

// WaitReady waits until the replica answers /readyz.
func (s *Stack) WaitReady(c *Container) {
	s.t.Helper()
	url := "http://" + c.Res.GetHostPort(servicePorts[c.Service]+"/tcp") + "/readyz"
	s.eventually(c.Name+" ready", 2*time.Minute, func() error {
		if !c.Running(s) {
			return fmt.Errorf("%w: container exited:\n%s", errStopped, s.Logs(c.Res, 40))
		}
		if err := httpOK(url); err != nil {
			return err
		}
		// Every service learns the admin token from NATS a moment after
		// source registers it.
		return s.authenticated(c)
	})
}

// authenticated is nil once the replica accepts the admin token.
func (s *Stack) authenticated(c *Container) error {
	err := e2ekit.AcceptsToken("http://"+c.Res.GetHostPort(servicePorts[c.Service]+"/tcp"), c.Service, s.Admin)
	if errors.Is(err, e2ekit.ErrTokenNotAccepted) {
		return fmt.Errorf("%w: %w", errNotReady, err)
	}
	return err
}

// CLIEnv points the sluice CLI at the stack's services.
func (s *Stack) CLIEnv() []string {
	env := []string{"SLUICE_TOKEN=" + s.Admin}
	for _, svc := range services {
		env = append(env, "SLUICE_"+strings.ToUpper(svc)+"_URL="+s.URL(svc))
	}
	return env
}

// Kill sends SIGKILL to a container.
func (s *Stack) Kill(res *dockertest.Resource) {
	s.t.Helper()
	if err := s.pool.Client.KillContainer(docker.KillContainerOptions{ID: res.Container.ID, Signal: docker.SIGKILL}); err != nil {
		s.t.Fatalf("kill %s: %v", res.Container.Name, err)
	}
}

// Stop stops a container gracefully: SIGTERM, then wait (at most a minute)
// for it to exit; it returns the exit code.
func (s *Stack) Stop(res *dockertest.Resource) int {
	s.t.Helper()
	if err := s.pool.Client.KillContainer(docker.KillContainerOptions{ID: res.Container.ID, Signal: docker.SIGTERM}); err != nil {
		s.t.Fatalf("stop %s: %v", res.Container.Name, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	code, err := s.pool.Client.WaitContainerWithContext(res.Container.ID, ctx)
	if err != nil {
		s.t.Fatalf("wait for %s to stop: %v", res.Container.Name, err)
	}
	return code
}

// Start starts a stopped container again and refreshes its published ports.
func (s *Stack) Start(res *dockertest.Resource) {
	s.t.Helper()
	if err := s.pool.Client.StartContainer(res.Container.ID, nil); err != nil {
		s.t.Fatalf("start %s: %v", res.Container.Name, err)
	}
	ct, err := s.pool.Client.InspectContainer(res.Container.ID)
	if err != nil {
		s.t.Fatal(err)
	}
	res.Container = ct
}

// Disconnect cuts a container off the stack's network.
func (s *Stack) Disconnect(res *dockertest.Resource) {
	s.t.Helper()
	if err := s.pool.Client.DisconnectNetwork(s.net.Network.ID, docker.NetworkConnectionOptions{Container: res.Container.ID, Force: true}); err != nil {
		s.t.Fatalf("disconnect %s: %v", res.Container.Name, err)
	}
}

// Logs is the last n lines a container wrote.
func (s *Stack) Logs(res *dockertest.Resource, n int) string {
	var buf bytes.Buffer
	err := s.pool.Client.Logs(docker.LogsOptions{
		Context: context.Background(), Container: res.Container.ID,
		OutputStream: &buf, ErrorStream: &buf, Stdout: true, Stderr: true, Tail: fmt.Sprint(n),
	})
	if err != nil {
		return fmt.Sprintf("(logs of %s: %v)", res.Container.Name, err)
	}
	return buf.String()
}

var errStopped = errors.New("stopped")

// eventually is eventually for the stack's test.
func (s *Stack) eventually(what string, within time.Duration, check func() error) {
	s.t.Helper()
	eventually(s.t, what, within, check)
}

// eventually retries check until it succeeds or within passes (or it says
// errStopped), and fails t then.
func eventually(t *testing.T, what string, within time.Duration, check func() error) {
	t.Helper()
	deadline := time.Now().Add(within)
	var err error
	for {
		if err = check(); err == nil {
			return
		}
		if time.Now().After(deadline) || errors.Is(err, errStopped) {
			t.Fatalf("%s: not within %s: %v", what, within, err)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

func httpOK(url string) error { return clientOK(http.DefaultClient, url) }

// clientOK is httpOK through client (one that trusts a stack's CA).
func clientOK(client *http.Client, url string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%w: %s answered %s", errNotReady, url, resp.Status)
	}
	return nil
}

// makeReadable opens a folder made by the test to the containers' user:
// everyone may read every file and enter every folder.
func makeReadable(dir string) error {
	return filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		add := os.FileMode(0o044)
		if d.IsDir() {
			add = 0o055
		}
		return os.Chmod(p, info.Mode().Perm()|add)
	})
}
