// Package k8s checks the Kubernetes manifests under deploy/k8s offline, with
// no cluster and no registry: it renders base and every overlay with
// kustomize's Go API (what `kubectl apply -k` does), decodes every resource
// strictly against the Kubernetes API types, and checks the properties the
// platform relies on (probes, resources, disruption budgets, Services,
// references to ConfigMaps and Secrets, images, the services' settings, the
// NATS cluster's size and config, the PostgreSQL of the dev overlay, and who
// the NetworkPolicies let reach whom).
package k8s

import (
	"bytes"
	"cmp"
	"context"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/sluicehq/sluice/deploy"
	"github.com/sluicehq/sluice/platform/devcerts"
)

var update = flag.Bool("update", false, "rewrite "+definitionsFile+" from deploy/nats")

const (
	// definitionsName is the ConfigMap that shows operators the NATS
	// declarations the services apply from their embedded copy.
	definitionsName = "sluice-nats-definitions"
	definitionsFile = k8sDir + "/base/nats/definitions.yaml"
)

// TestManifests renders base and every overlay and checks each against its
// shape.
func TestManifests(t *testing.T) {
	dirs := overlays(t)
	for dir := range shapes {
		if !slices.Contains(dirs, dir) {
			t.Errorf("shapes has %s, which is not under %s", dir, k8sDir)
		}
	}
	for _, dir := range dirs {
		t.Run(dir, func(t *testing.T) {
			t.Parallel()
			s, ok := shapes[dir]
			if !ok {
				t.Fatalf("%s/%s has no entry in shapes: say what it must amount to", k8sDir, dir)
			}
			m, err := render(filepath.Join(k8sDir, dir))
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range m.problems(s) {
				t.Error(p)
			}
			checkNATSServerAccepts(t, m)
		})
	}
}

// checkNATSServerAccepts runs `nats-server -t` (test the config and exit) on
// the rendered NATS config, with the environment the pod would have.
func checkNATSServerAccepts(t *testing.T, m *manifests) {
	t.Helper()
	_, c, files := m.natsConfig()
	if c == nil {
		return // checkNATS reports it
	}
	dir := t.TempDir()
	// The certificates of the Secret, made here: the config names their
	// mount, /etc/nats/tls.
	certs, err := devcerts.WriteSet(t.TempDir(), "nats-0.nats")
	if err != nil {
		t.Fatal(err)
	}
	paths := strings.NewReplacer("/etc/nats/tls/tls.crt", certs.CertFile, "/etc/nats/tls/tls.key", certs.KeyFile, "/etc/nats/tls/ca.crt", certs.CAFile)
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(paths.Replace(body)), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	var env []string
	literal := map[string]string{}
	for _, e := range c.Env {
		value := "nats-0" // SERVER_NAME is a pod name; any password will do
		if e.ValueFrom == nil {
			// $(NAME) is an earlier variable, as the kubelet expands it.
			value = envReference.ReplaceAllStringFunc(e.Value, func(ref string) string {
				if v, ok := literal[envReference.FindStringSubmatch(ref)[1]]; ok {
					return v
				}
				return "nats-0"
			})
		}
		literal[e.Name] = value
		env = append(env, e.Name+"="+value)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, natsServer(t), "-c", filepath.Join(dir, "nats.conf"), "-t")
	cmd.Env = env
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("nats-server -t refuses the config of %s: %v\n%s", m.dir, err, out)
	}
}

// natsServer is the nats-server binary the platform pins: $SLUICE_NATS_SERVER
// or bin/nats-server, which `make test` and `make k8s-check` build.
func natsServer(t *testing.T) string {
	t.Helper()
	for _, p := range []string{os.Getenv("SLUICE_NATS_SERVER"), filepath.Join("..", "..", "bin", "nats-server")} {
		if p == "" {
			continue
		}
		if _, err := os.Stat(p); err == nil {
			abs, err := filepath.Abs(p)
			if err != nil {
				t.Fatal(err)
			}
			return abs
		}
	}
	t.Fatal("no nats-server: `make k8s-check` (or `make test`) builds bin/nats-server, or set SLUICE_NATS_SERVER")
	return ""
}

// TestStrictDecoding: a field the API type lacks and a kind outside the
// scheme fail the render, with the field or kind named.
func TestStrictDecoding(t *testing.T) {
	for _, tc := range []struct {
		name, kustomization string
		files               map[string]string
		want                string
	}{
		{
			name: "misspelt field",
			kustomization: `patches:
  - target: {kind: Deployment, name: build}
    patch: |-
      apiVersion: apps/v1
      kind: Deployment
      metadata: {name: build}
      spec: {replica: 2}
`,
			want: `Deployment build: strict decoding error: unknown field "spec.replica"`,
		},
		{
			name:          "unknown kind",
			kustomization: "  - stream.yaml\n",
			files: map[string]string{"stream.yaml": `apiVersion: jetstream.nats.io/v1beta2
kind: Stream
metadata: {name: source}
spec: {name: SOURCE, subjects: ["sluice.source.>"]}
`},
			want: `Stream source: no kind "Stream" is registered`,
		},
		{
			name: "wrong type",
			kustomization: `patches:
  - target: {kind: Service, name: notify}
    patch: |-
      - op: replace
        path: /spec/ports/0/port
        value: eighty
`,
			want: "Service notify: json: cannot unmarshal string into Go struct field ServicePort.spec.ports.port of type int32",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := render(tempOverlay(t, "base", tc.kustomization, tc.files))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("render: %v, want an error with %q", err, tc.want)
			}
		})
	}
}

// TestCheckerFindsProblems: overlays of base that decode but break one
// property each are reported, with what is wrong.
func TestCheckerFindsProblems(t *testing.T) {
	for _, tc := range []struct {
		name, kustomization string
		// on is what the overlay builds on: base unless said.
		on    string
		files map[string]string
		want  string
	}{
		{
			name: "readiness probe on a port the container lacks",
			kustomization: `patches:
  - target: {kind: Deployment, name: build}
    patch: |-
      - op: replace
        path: /spec/template/spec/containers/0/readinessProbe/httpGet/port
        value: 9999
`,
			want: "Deployment build container build: readiness probe port 9999 is not a port of the container",
		},
		{
			name: "undocumented key of the operator's Secret",
			kustomization: `patches:
  - target: {kind: Deployment, name: test}
    patch: |-
      - op: replace
        path: /spec/template/spec/containers/0/env/1/valueFrom/secretKeyRef/key
        value: nats-password
`,
			want: "env SLUICE_TEST_NATS_PASSWORD: key nats-password is not a documented key of sluice-secrets",
		},
		{
			name: "source without its age keys",
			kustomization: `patches:
  - target: {kind: Deployment, name: source}
    patch: |-
      - op: remove
        path: /spec/template/spec/containers/0/env/2
`,
			want: "SLUICE_SOURCE_SECRET_KEY is not set",
		},
		{
			name: "reference to a ConfigMap that is not rendered",
			kustomization: `patches:
  - target: {kind: Deployment, name: source}
    patch: |-
      - op: replace
        path: /spec/template/spec/containers/0/envFrom/0/configMapRef/name
        value: source-settings
`,
			want: "Deployment source container source: envFrom: no ConfigMap source-settings",
		},
		{
			name: "image from elsewhere",
			kustomization: `images:
  - name: sluice-notify
    newName: docker.io/library/nginx
    newTag: latest
`,
			want: `Deployment notify container notify: image "docker.io/library/nginx:latest" is not one of`,
		},
		{
			name: "disruption budget that selects nothing",
			kustomization: `patches:
  - target: {kind: PodDisruptionBudget, name: notify}
    patch: |-
      - op: replace
        path: /spec/selector/matchLabels/app.kubernetes.io~1name
        value: notifier
`,
			want: "Deployment notify: 0 PodDisruptionBudgets select its pods",
		},
		{
			name: "several replicas, not spread, budget of one",
			kustomization: `replicas:
  - name: build
    count: 2
`,
			want: "Deployment build: 2 replicas but no pod anti-affinity",
		},
		{
			// Release scales like the others now (its locks are leases in
			// the database, its deploy state in NATS), spread over nodes.
			name: "release scaled out without anti-affinity",
			kustomization: `replicas:
  - name: release
    count: 2
`,
			want: "Deployment release: 2 replicas but no pod anti-affinity",
		},
		{
			name: "three NATS servers without routes",
			kustomization: `replicas:
  - name: nats
    count: 3
`,
			want: "StatefulSet nats: 3 servers, but the cluster routes go to []",
		},
		{
			name: "stream replicas that do not match the servers",
			kustomization: `configMapGenerator:
  - name: build-config
    behavior: merge
    literals:
      - SLUICE_BUILD_NATS_REPLICAS=3
`,
			want: `Deployment build: SLUICE_BUILD_NATS_REPLICAS="3", want "1"`,
		},
		{
			name: "misspelt setting",
			kustomization: `configMapGenerator:
  - name: build-config
    behavior: merge
    literals:
      - SLUICE_BUILD_WORKER=8
`,
			want: "Deployment build: sets SLUICE_BUILD_WORKER, which sluice-build does not read",
		},
		{
			name: "allow-list the service would refuse",
			kustomization: `configMapGenerator:
  - name: notify-config
    behavior: merge
    literals:
      - SLUICE_NOTIFY_ALLOW_EGRESS=private,intranet
`,
			want: `Deployment notify: SLUICE_NOTIFY_ALLOW_EGRESS="private,intranet": "intranet" is neither`,
		},
		{
			name: "JetStream store larger than its volume",
			kustomization: `patches:
  - target: {kind: StatefulSet, name: nats}
    patch: |-
      - op: replace
        path: /spec/template/spec/volumes/1/emptyDir/sizeLimit
        value: 1Gi
`,
			want: "StatefulSet nats: the volume data (1Gi) must be larger than max_file_store",
		},
		{
			name:          "build let through to notify",
			kustomization: "  - policy.yaml\n",
			files:         egressPolicy("build", "{to: [{podSelector: {matchLabels: {app.kubernetes.io/name: notify}}}], ports: [{port: 8085}]}"),
			want:          "Deployment build: may reach Deployment notify on TCP 8085",
		},
		{
			name:          "test let through to its whole namespace",
			kustomization: "  - policy.yaml\n",
			files:         egressPolicy("test", "{to: [{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: sluice}}}]}"),
			want:          "Deployment test: may reach Deployment release on every port",
		},
		{
			name:          "build let through to every port of NATS",
			kustomization: policyPatch("build-test-egress", "{op: remove, path: /spec/egress/1/ports}"),
			want:          "Deployment build: may reach StatefulSet nats on every port",
		},
		{
			name:          "internet rule that keeps a private range",
			kustomization: policyPatch("build-test-internet", "{op: remove, path: /spec/egress/0/to/0/ipBlock/except/1}"),
			want:          "NetworkPolicy build-test-internet: ipBlock 0.0.0.0/0 lets build and test reach 172.16.0.0/12",
		},
		{
			name:          "internet rule that keeps link-local",
			kustomization: policyPatch("build-test-internet", "{op: remove, path: /spec/egress/0/to/0/ipBlock/except/4}"),
			want:          "Deployment test: may reach the cloud metadata address 169.254.169.254 on every port",
		},
		{
			name:          "NATS monitoring open to every pod",
			kustomization: policyPatch("nats", "{op: add, path: /spec/ingress/-, value: {ports: [{port: 8222}]}}"),
			want:          "StatefulSet nats: admits Deployment build on TCP 8222",
		},
		{
			name:          "NATS clients from other namespaces",
			kustomization: policyPatch("nats", "{op: add, path: /spec/ingress/0/from/0/namespaceSelector, value: {}}"),
			want:          "StatefulSet nats: admits a pod of another namespace labelled like Deployment source on TCP 4222",
		},
		{
			name:          "NATS routes open to test",
			kustomization: policyPatch("nats", "{op: replace, path: /spec/ingress/1/from/0/podSelector, value: {matchExpressions: [{key: app.kubernetes.io/name, operator: In, values: [nats, test]}]}}"),
			want:          "StatefulSet nats: admits Deployment test on TCP 6222",
		},
		{
			name: "NATS without a policy",
			kustomization: `patches:
  - patch: |-
      $patch: delete
      apiVersion: networking.k8s.io/v1
      kind: NetworkPolicy
      metadata: {name: nats}
`,
			want: "StatefulSet nats: no NetworkPolicy limits who connects to its pods",
		},
		{
			name:          "NATS policy that leaves a service out",
			kustomization: policyPatch("nats", "{op: replace, path: /spec/ingress/0/from/0/podSelector/matchExpressions/0/values, value: [source, build, test, notify]}"),
			want:          "Deployment release cannot reach StatefulSet nats on TCP 4222",
		},
		{
			name:          "PostgreSQL open to every pod",
			on:            "overlays/dev",
			kustomization: policyPatch("postgres", "{op: remove, path: /spec/ingress/0/from}"),
			want:          "StatefulSet postgres: admits a pod of another namespace on TCP 5432",
		},
		{
			name:          "build let through to every port of PostgreSQL",
			on:            "overlays/dev",
			kustomization: "  - policy.yaml\n",
			files:         egressPolicy("build", "{to: [{podSelector: {matchLabels: {app.kubernetes.io/name: postgres}}}]}"),
			want:          "Deployment build: may reach StatefulSet postgres on every port",
		},
		{
			name:          "NATS routes without verify",
			on:            "overlays/prod",
			kustomization: clusterConfMerge,
			files:         map[string]string{"cluster.conf": prodClusterConf(t, func(c string) string { return strings.Replace(c, "verify: true", "verify: false", 1) })},
			want:          "StatefulSet nats: the routes are not TLS with verify: true",
		},
		{
			name:          "NATS routes without TLS",
			on:            "overlays/prod",
			kustomization: clusterConfMerge,
			files: map[string]string{"cluster.conf": prodClusterConf(t, func(c string) string {
				return regexp.MustCompile(`(?s)tls \{[^}]*\}`).ReplaceAllString(c, "")
			})},
			want: "StatefulSet nats: the routes are not TLS with verify: true",
		},
		{
			name:          "NATS routes without a route user",
			on:            "overlays/prod",
			kustomization: clusterConfMerge,
			files: map[string]string{"cluster.conf": prodClusterConf(t, func(c string) string {
				return regexp.MustCompile(`(?s)authorization \{[^}]*\}`).ReplaceAllString(c, "")
			})},
			want: "StatefulSet nats: the routes need no route user",
		},
		{
			name:          "NATS routes that do not log in",
			on:            "overlays/prod",
			kustomization: clusterConfMerge,
			files: map[string]string{"cluster.conf": prodClusterConf(t, func(c string) string {
				return strings.Replace(c, "routes: $NATS_ROUTES", "routes: [nats-route://nats-0.nats:6222, nats-route://nats-1.nats:6222, nats-route://nats-2.nats:6222]", 1)
			})},
			want: `StatefulSet nats: a route logs in as ":", want "route:$(NATS_ROUTE_PASSWORD)"`,
		},
		{
			name: "NATS clients without TLS",
			kustomization: `configMapGenerator:
  - name: nats-config
    behavior: merge
    files: [nats.conf]
`,
			files: map[string]string{"nats.conf": baseNATSConf(t, func(c string) string {
				return regexp.MustCompile(`(?s)\ntls \{[^}]*\}`).ReplaceAllString(c, "")
			})},
			want: "StatefulSet nats: clients are not required to use TLS",
		},
		{
			name: "a service probed over plain HTTP",
			kustomization: `patches:
  - target: {kind: Deployment, name: notify}
    patch: |-
      - op: remove
        path: /spec/template/spec/containers/0/readinessProbe/httpGet/scheme
`,
			want: `Deployment notify: readiness probe scheme "", want HTTPS`,
		},
		{
			name: "a service with another's certificate",
			kustomization: `patches:
  - target: {kind: Deployment, name: build}
    patch: |-
      - op: replace
        path: /spec/template/spec/volumes/0/secret/items/1/key
        value: test.crt
`,
			want: "Deployment build: /etc/sluice/tls is not the Secret sluice-tls",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			on := cmp.Or(tc.on, "base")
			m, err := render(tempOverlay(t, on, tc.kustomization, tc.files))
			if err != nil {
				t.Fatal(err)
			}
			problems := m.problems(shapes[on])
			for _, p := range problems {
				if strings.Contains(p, tc.want) {
					return
				}
			}
			t.Errorf("no problem with %q among:\n%s", tc.want, strings.Join(problems, "\n"))
		})
	}
}

// clusterConfMerge replaces the prod overlay's cluster.conf with the
// test's.
const clusterConfMerge = `configMapGenerator:
  - name: nats-config
    behavior: merge
    files: [cluster.conf]
`

// prodClusterConf is the prod overlay's cluster.conf, changed by edit.
func prodClusterConf(t *testing.T, edit func(string) string) string {
	t.Helper()
	return editedFile(t, filepath.Join("..", "..", "deploy", "k8s", "overlays", "prod", "nats", "cluster.conf"), edit)
}

// baseNATSConf is the base's nats.conf, changed by edit.
func baseNATSConf(t *testing.T, edit func(string) string) string {
	t.Helper()
	return editedFile(t, filepath.Join("..", "..", "deploy", "k8s", "base", "nats", "nats.conf"), edit)
}

func editedFile(t *testing.T, path string, edit func(string) string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	out := edit(string(b))
	if out == string(b) {
		t.Fatalf("the edit changed nothing in %s", path)
	}
	return out
}

// egressPolicy is policy.yaml: one more NetworkPolicy, which gives the pods
// of the workload app one egress rule (YAML's flow style).
func egressPolicy(app, rule string) map[string]string {
	return map[string]string{"policy.yaml": `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: extra, namespace: sluice}
spec:
  podSelector: {matchLabels: {app.kubernetes.io/name: ` + app + `}}
  policyTypes: [Egress]
  egress: [` + rule + `]
`}
}

// policyPatch is a kustomization that applies one JSON patch operation, in
// YAML's flow style, to the NetworkPolicy name.
func policyPatch(name, op string) string {
	return "patches:\n  - target: {kind: NetworkPolicy, name: " + name + "}\n    patch: |-\n      - " + op + "\n"
}

// TestDefinitionsDrift: a ConfigMap sluice-nats-definitions that differs
// from deploy.NATS() in any way is reported.
func TestDefinitionsDrift(t *testing.T) {
	m, err := render(filepath.Join(k8sDir, "base"))
	if err != nil {
		t.Fatal(err)
	}
	cm := m.configMaps[definitionsName]
	if cm == nil {
		t.Fatalf("no ConfigMap %s in base", definitionsName)
	}
	cm.Data["streams.BUILD.json"] += " "
	delete(cm.Data, "streams.TEST.json")
	cm.Data["streams.EXTRA.json"] = "{}"
	r := &report{}
	m.checkDefinitions(r)
	got := strings.Join(r.problems, "\n")
	for _, want := range []string{"streams.BUILD.json differs", "no streams.TEST.json", "streams.EXTRA.json is not in deploy/nats"} {
		if !strings.Contains(got, want) {
			t.Errorf("no problem with %q among:\n%s", want, got)
		}
	}
}

// TestNATSDefinitionsFile: the committed ConfigMap is what deploy/nats makes.
// `make k8s-generate` (-update) rewrites it.
func TestNATSDefinitionsFile(t *testing.T) {
	want, err := definitionsYAML()
	if err != nil {
		t.Fatal(err)
	}
	if *update {
		if err := os.WriteFile(definitionsFile, want, 0o644); err != nil { //nolint:gosec // a file of the repository, read by everyone
			t.Fatal(err)
		}
		return
	}
	got, err := os.ReadFile(definitionsFile)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from what deploy/nats makes; run `make k8s-generate`", definitionsFile)
	}
}

// TestSecretKeysDocumented: docs/operations.md names every key an operator
// must put into sluice-secrets.
func TestSecretKeysDocumented(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join("..", "..", "docs", "operations.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range operatorSecretKeys() {
		if !strings.Contains(string(doc), "`"+k+"`") {
			t.Errorf("docs/operations.md does not name the key `%s` of %s", k, operatorSecret)
		}
	}
}

// natsDefinitions reads the JSON declarations of deploy.NATS() into
// ConfigMap keys: each file's path with "/" turned into "." (keys may not
// hold "/"). The users (auth.conf) are the NATS server's own ConfigMap.
func natsDefinitions() (map[string]string, error) {
	defs := map[string]string{}
	err := fs.WalkDir(deploy.NATS(), ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".json") {
			return err
		}
		body, err := fs.ReadFile(deploy.NATS(), path)
		if err != nil {
			return err
		}
		key := strings.ReplaceAll(path, "/", ".")
		if _, dup := defs[key]; dup {
			return fmt.Errorf("%s and another file both make the key %s", path, key)
		}
		defs[key] = string(body)
		return nil
	})
	return defs, err
}

const definitionsHeader = `# Code generated by "make k8s-generate" from deploy/nats; DO NOT EDIT.
#
# The NATS streams, consumers and object stores of Sluice, for operators to
# read: kubectl -n sluice get configmap sluice-nats-definitions -o yaml.
# Nothing applies them from here: each service applies its own at start,
# from the copy embedded in its binary. The keys are the files' paths under
# deploy/nats with "/" turned into ".".
`

func definitionsYAML() ([]byte, error) {
	defs, err := natsDefinitions()
	if err != nil {
		return nil, err
	}
	body, err := yaml.Marshal(map[string]any{
		"apiVersion": "v1",
		"kind":       "ConfigMap",
		"metadata": map[string]any{
			"name":   definitionsName,
			"labels": map[string]string{"app.kubernetes.io/name": "nats"},
		},
		"data": defs,
	})
	if err != nil {
		return nil, err
	}
	return append([]byte(definitionsHeader), body...), nil
}
