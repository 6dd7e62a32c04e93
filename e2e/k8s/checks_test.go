package k8s

import (
	"fmt"
	"maps"
	"net"
	"net/netip"
	"net/url"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/spf13/pflag"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/sluicehq/sluice/platform/egress"
	"github.com/sluicehq/sluice/platform/keyring"
	"github.com/sluicehq/sluice/platform/servicecmd"
	"github.com/sluicehq/sluice/platform/servicekit"
	"github.com/sluicehq/sluice/services/build"
	"github.com/sluicehq/sluice/services/notify"
	"github.com/sluicehq/sluice/services/release"
	"github.com/sluicehq/sluice/services/source"
	"github.com/sluicehq/sluice/services/tests"
)

// namespace is where everything of Sluice runs.
const namespace = "sluice"

// service is one of Sluice's five services as its binary sees it.
type service struct {
	name string
	// port is the one port of its image: API, /healthz, /readyz, /metrics.
	port int32
	// reads are every setting its binary reads (SLUICE_<SERVICE>_<NAME>),
	// taken from the binary's own flags, and needs those the manifests
	// must set beside commonSettings.
	reads, needs []string
}

var services = []service{
	{name: "source", port: 8081, reads: settingsOf(source.Name), needs: []string{"SECRET_KEY"}},
	{name: "build", port: 8082, reads: settingsOf(build.Name), needs: []string{"WORKERS", "SOURCE_URL"}},
	{name: "test", port: 8083, reads: settingsOf(tests.Name), needs: []string{"WORKERS", "SOURCE_URL"}},
	{name: "release", port: 8084, reads: settingsOf(release.Name), needs: []string{"SOURCE_URL"}},
	{name: "notify", port: 8085, reads: settingsOf(notify.Name), needs: []string{"SECRET_KEY"}},
}

// settingsOf are the variables' suffixes (WORKERS, DATA_DIR, ...) of
// every flag of the service's binary but --version.
func settingsOf(service string) []string {
	var fs *pflag.FlagSet
	switch service {
	case source.Name:
		fs = servicecmd.FlagSet(servicecmd.Command[source.Config]{Service: service, Addr: ":0", Config: source.DefaultConfig()})
	case build.Name:
		fs = servicecmd.FlagSet(servicecmd.Command[build.Config]{Service: service, Addr: ":0", Config: build.DefaultConfig()})
	case tests.Name:
		fs = servicecmd.FlagSet(servicecmd.Command[tests.Config]{Service: service, Addr: ":0", Config: tests.DefaultConfig()})
	case release.Name:
		fs = servicecmd.FlagSet(servicecmd.Command[release.Config]{Service: service, Addr: ":0", Config: release.DefaultConfig()})
	case notify.Name:
		fs = servicecmd.FlagSet(servicecmd.Command[notify.Config]{Service: service, Addr: ":0", Config: notify.DefaultConfig()})
	}
	var out []string
	fs.VisitAll(func(f *pflag.Flag) {
		if f.Name != "version" {
			out = append(out, strings.TrimPrefix(servicekit.EnvName(service, f.Name), "SLUICE_"+strings.ToUpper(service)+"_"))
		}
	})
	return out
}

// commonSettings every service reads, and the manifests set.
var commonSettings = []string{"ADDR", "DATA_DIR", "DATABASE_URL", "NATS_URL", "NATS_USER", "NATS_PASSWORD", "NATS_REPLICAS", "ALLOW_EGRESS",
	"NATS_CA_FILE", "TLS_CERT_FILE", "TLS_KEY_FILE", "TLS_CA_FILE"}

// tlsDir is where a service's pod mounts the Secret tlsSecret: ca.crt, and
// its own certificate and key as tls.crt and tls.key.
const tlsDir = "/etc/sluice/tls"

// tlsSecret is the operator's Secret of certificates, in every shape (the
// keys are never committed): ca.crt, and <name>.crt and <name>.key for
// nats and each service.
const tlsSecret = "sluice-tls"

func tlsSecretKeys() []string {
	keys := []string{"ca.crt", "nats.crt", "nats.key"}
	for _, s := range services {
		keys = append(keys, s.name+".crt", s.name+".key")
	}
	return keys
}

// secretSettings come from a Secret, never from a ConfigMap: credentials,
// and the age keys that source and notify encrypt secrets at rest with.
var secretSettings = []string{"DATABASE_URL", "NATS_PASSWORD", "SECRET_KEY"}

// images are the images Sluice builds locally; no other image may run.
var images = []string{"sluice-source", "sluice-build", "sluice-test", "sluice-release", "sluice-notify", "sluice-nats", "sluice-postgres"}

// operatorSecret is the Secret that base refers to and does not make: the
// operator creates it with operatorSecretKeys (docs/operations.md), and
// overlays/dev generates it.
const operatorSecret = "sluice-secrets"

func operatorSecretKeys() []string {
	keys := []string{"nats-admin-password", "nats-route-password"}
	for _, s := range services {
		keys = append(keys, "nats-"+s.name+"-password", s.name+"-database-url")
		if slices.Contains(s.needs, "SECRET_KEY") {
			keys = append(keys, secretKeyKey(s.name))
		}
	}
	return keys
}

// secretKeyKey is the key of sluice-secrets that holds a service's age keys.
func secretKeyKey(service string) string { return service + "-secret-key" }

// serviceStopSeconds bounds a service's own stop after SIGTERM (fx's default
// stop timeout, which servicecmd keeps).
const serviceStopSeconds = 15

// shape is what one kustomization must amount to.
type shape struct {
	natsReplicas int32
	// replicas of each service's Deployment.
	replicas   map[string]int32
	pullPolicy corev1.PullPolicy
	// secretsGenerated: sluice-secrets is part of the render; otherwise the
	// operator makes it.
	secretsGenerated bool
	// persistentNATS: JetStream on a volumeClaimTemplate, not an emptyDir.
	persistentNATS bool
	// postgres: a PostgreSQL StatefulSet of its own that the database URLs
	// point at.
	postgres bool
}

var shapes = map[string]shape{
	"base": {
		natsReplicas: 1,
		replicas:     map[string]int32{"source": 1, "build": 1, "test": 1, "release": 1, "notify": 1},
		pullPolicy:   corev1.PullIfNotPresent,
	},
	"overlays/dev": {
		natsReplicas:     1,
		replicas:         map[string]int32{"source": 1, "build": 1, "test": 1, "release": 1, "notify": 1},
		pullPolicy:       corev1.PullNever,
		secretsGenerated: true,
		postgres:         true,
	},
	"overlays/prod": {
		natsReplicas:   3,
		replicas:       map[string]int32{"source": 2, "build": 3, "test": 3, "release": 2, "notify": 2},
		pullPolicy:     corev1.PullIfNotPresent,
		persistentNATS: true,
	},
}

// report collects the problems of one render.
type report struct{ problems []string }

func (r *report) add(format string, args ...any) {
	r.problems = append(r.problems, fmt.Sprintf(format, args...))
}

// problems checks the render against the properties that matter and against
// its shape. An empty result means it passed.
func (m *manifests) problems(s shape) []string {
	r := &report{}
	m.checkNamespace(r)
	for _, w := range m.workloads() {
		m.checkWorkload(r, s, w)
	}
	m.checkServicesSelect(r)
	for _, svc := range services {
		m.checkService(r, s, svc)
	}
	m.checkNATS(r, s)
	m.checkDefinitions(r)
	m.checkPostgres(r, s)
	m.checkOperatorSecret(r, s)
	m.checkNetworkPolicies(r, s)
	return r.problems
}

func (m *manifests) checkNamespace(r *report) {
	if m.namespaces[namespace] == nil {
		r.add("no Namespace %s", namespace)
	}
	for id, ns := range m.namespaced {
		if ns != namespace {
			r.add("%s: in namespace %q, not %s", id, ns, namespace)
		}
	}
}

// workload is a Deployment or a StatefulSet.
type workload struct {
	id       string
	replicas int32
	selector *metav1.LabelSelector
	template corev1.PodTemplateSpec
	claims   []corev1.PersistentVolumeClaim
	strategy appsv1.DeploymentStrategyType
}

func (m *manifests) workloads() []workload {
	var ws []workload
	for _, d := range m.deployments {
		ws = append(ws, workload{id: "Deployment " + d.Name, replicas: replicas(d.Spec.Replicas), selector: d.Spec.Selector,
			template: d.Spec.Template, strategy: d.Spec.Strategy.Type})
	}
	for _, ss := range m.statefulSets {
		ws = append(ws, workload{id: "StatefulSet " + ss.Name, replicas: replicas(ss.Spec.Replicas), selector: ss.Spec.Selector,
			template: ss.Spec.Template, claims: ss.Spec.VolumeClaimTemplates})
	}
	sort.Slice(ws, func(i, j int) bool { return ws[i].id < ws[j].id })
	return ws
}

// replicas is spec.replicas with the API's default.
func replicas(n *int32) int32 {
	if n == nil {
		return 1
	}
	return *n
}

func (w workload) podLabels() labels.Set { return labels.Set(w.template.Labels) }

func (m *manifests) checkWorkload(r *report, s shape, w workload) {
	sel, err := metav1.LabelSelectorAsSelector(w.selector)
	if err != nil || sel.Empty() || !sel.Matches(w.podLabels()) {
		r.add("%s: its selector %v does not select its own pods %v", w.id, w.selector, w.template.Labels)
	}
	pod := w.template.Spec
	for _, c := range append(slices.Clone(pod.InitContainers), pod.Containers...) {
		m.checkContainer(r, s, w, c)
	}
	for _, v := range pod.Volumes {
		switch {
		case v.ConfigMap != nil && m.configMaps[v.ConfigMap.Name] == nil:
			r.add("%s: volume %s: no ConfigMap %s", w.id, v.Name, v.ConfigMap.Name)
		case v.Secret != nil:
			m.checkSecretRef(r, s, w.id, v.Secret.SecretName, "")
			for _, item := range v.Secret.Items {
				m.checkSecretRef(r, s, w.id+" volume "+v.Name, v.Secret.SecretName, item.Key)
			}
		case v.PersistentVolumeClaim != nil:
			pvc := m.pvcs[v.PersistentVolumeClaim.ClaimName]
			if pvc == nil {
				r.add("%s: volume %s: no PersistentVolumeClaim %s", w.id, v.Name, v.PersistentVolumeClaim.ClaimName)
			} else if slices.Contains(pvc.Spec.AccessModes, corev1.ReadWriteOnce) && (w.replicas > 1 || w.strategy != appsv1.RecreateDeploymentStrategyType) {
				r.add("%s: mounts the ReadWriteOnce claim %s, so it needs one replica and the Recreate strategy", w.id, pvc.Name)
			}
		case v.EmptyDir != nil && v.EmptyDir.SizeLimit == nil:
			r.add("%s: emptyDir %s has no sizeLimit", w.id, v.Name)
		}
	}
	m.checkDisruptionBudget(r, w)
	if w.replicas > 1 && !spreadsOverNodes(w) {
		r.add("%s: %d replicas but no pod anti-affinity over kubernetes.io/hostname for its own pods", w.id, w.replicas)
	}
	if pod.SecurityContext == nil || pod.SecurityContext.RunAsNonRoot == nil || !*pod.SecurityContext.RunAsNonRoot {
		r.add("%s: the pod's securityContext lacks runAsNonRoot: true", w.id)
	}
}

func (m *manifests) checkContainer(r *report, s shape, w workload, c corev1.Container) {
	id := w.id + " container " + c.Name
	name, tag, _ := strings.Cut(c.Image, ":")
	if !slices.Contains(images, name) || tag == "" || tag == "latest" || strings.Contains(c.Image, "@") {
		r.add("%s: image %q is not one of %v with a version tag", id, c.Image, images)
	}
	if c.ImagePullPolicy != s.pullPolicy {
		r.add("%s: imagePullPolicy %q, want %q (the images are built locally)", id, c.ImagePullPolicy, s.pullPolicy)
	}
	for _, p := range []struct {
		kind  string
		probe *corev1.Probe
	}{{"liveness", c.LivenessProbe}, {"readiness", c.ReadinessProbe}, {"startup", c.StartupProbe}} {
		if p.probe == nil {
			if p.kind != "startup" {
				r.add("%s: no %s probe", id, p.kind)
			}
			continue
		}
		if port, ok := probePort(p.probe.ProbeHandler); ok {
			if _, found := containerPort(c, port); !found {
				r.add("%s: %s probe port %s is not a port of the container", id, p.kind, port.String())
			}
		}
	}
	for _, res := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		req, hasReq := c.Resources.Requests[res]
		limit, hasLimit := c.Resources.Limits[res]
		switch {
		case !hasReq || req.IsZero():
			r.add("%s: no %s request", id, res)
		case !hasLimit || limit.IsZero():
			r.add("%s: no %s limit", id, res)
		case limit.Cmp(req) < 0:
			r.add("%s: %s limit %s is below its request %s", id, res, limit.String(), req.String())
		}
	}
	sc := c.SecurityContext
	if sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		r.add("%s: no readOnlyRootFilesystem: true", id)
	}
	if sc == nil || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		r.add("%s: no allowPrivilegeEscalation: false", id)
	}
	for _, vm := range c.VolumeMounts {
		if !hasVolume(w, vm.Name) {
			r.add("%s: mounts %s at %s, which is no volume of the pod", id, vm.Name, vm.MountPath)
		}
	}
	for _, ef := range c.EnvFrom {
		if ef.ConfigMapRef != nil && m.configMaps[ef.ConfigMapRef.Name] == nil {
			r.add("%s: envFrom: no ConfigMap %s", id, ef.ConfigMapRef.Name)
		}
		if ef.SecretRef != nil {
			m.checkSecretRef(r, s, id, ef.SecretRef.Name, "")
		}
	}
	for _, e := range c.Env {
		switch {
		case e.ValueFrom == nil:
		case e.ValueFrom.ConfigMapKeyRef != nil:
			ref := e.ValueFrom.ConfigMapKeyRef
			if cm := m.configMaps[ref.Name]; cm == nil {
				r.add("%s: env %s: no ConfigMap %s", id, e.Name, ref.Name)
			} else if _, ok := cm.Data[ref.Key]; !ok {
				r.add("%s: env %s: ConfigMap %s has no key %s", id, e.Name, ref.Name, ref.Key)
			}
		case e.ValueFrom.SecretKeyRef != nil:
			m.checkSecretRef(r, s, id+" env "+e.Name, e.ValueFrom.SecretKeyRef.Name, e.ValueFrom.SecretKeyRef.Key)
		}
	}
}

// checkSecretRef: the Secret (and its key, unless "") is in the render, or is
// the operator's with a documented key where the shape leaves it to them.
func (m *manifests) checkSecretRef(r *report, s shape, id, name, key string) {
	if sec, ok := m.secrets[name]; ok {
		if _, ok := sec.Data[key]; key != "" && !ok {
			r.add("%s: Secret %s has no key %s", id, name, key)
		}
		return
	}
	switch {
	case name == tlsSecret:
		if key != "" && !slices.Contains(tlsSecretKeys(), key) {
			r.add("%s: key %s is not a documented key of %s %v", id, key, tlsSecret, tlsSecretKeys())
		}
	case name != operatorSecret:
		r.add("%s: no Secret %s, and it is not the operator's %s or %s", id, name, operatorSecret, tlsSecret)
	case s.secretsGenerated:
		r.add("%s: Secret %s should be generated here but is not", id, name)
	case key != "" && !slices.Contains(operatorSecretKeys(), key):
		r.add("%s: key %s is not a documented key of %s %v", id, key, operatorSecret, operatorSecretKeys())
	}
}

// checkOperatorSecret: where sluice-secrets is generated, it has every key
// an operator would have to give it.
func (m *manifests) checkOperatorSecret(r *report, s shape) {
	sec, ok := generated(m.secrets, operatorSecret)
	if !s.secretsGenerated {
		if ok {
			r.add("Secret %s is rendered; it should be left to the operator", operatorSecret)
		}
		return
	}
	if !ok {
		r.add("no Secret %s", operatorSecret)
		return
	}
	for _, k := range operatorSecretKeys() {
		if len(sec.Data[k]) == 0 {
			r.add("Secret %s: no key %s", sec.Name, k)
			continue
		}
		// Keys that do not parse would stop source or notify at start.
		if strings.HasSuffix(k, secretKeyKey("")) {
			if _, err := keyring.Load(keyring.Settings{Text: string(sec.Data[k])}); err != nil {
				r.add("Secret %s: %s: %v", sec.Name, k, err)
			}
		}
	}
}

// generated finds an object by the name it had before kustomize appended
// the content hash of a generated ConfigMap or Secret.
func generated[T any](objs map[string]T, name string) (T, bool) {
	if o, ok := objs[name]; ok {
		return o, true
	}
	for n, o := range objs {
		if i := strings.LastIndexByte(n, '-'); i > 0 && n[:i] == name {
			return o, true
		}
	}
	var zero T
	return zero, false
}

func probePort(h corev1.ProbeHandler) (intstr.IntOrString, bool) {
	switch {
	case h.HTTPGet != nil:
		return h.HTTPGet.Port, true
	case h.TCPSocket != nil:
		return h.TCPSocket.Port, true
	case h.GRPC != nil:
		return intstr.FromInt32(h.GRPC.Port), true
	}
	return intstr.IntOrString{}, false
}

// containerPort resolves a port by name or number among the container's.
func containerPort(c corev1.Container, p intstr.IntOrString) (int32, bool) {
	for _, cp := range c.Ports {
		if (p.Type == intstr.String && cp.Name == p.StrVal) || (p.Type == intstr.Int && cp.ContainerPort == p.IntVal) {
			return cp.ContainerPort, true
		}
	}
	return 0, false
}

func hasVolume(w workload, name string) bool {
	for _, v := range w.template.Spec.Volumes {
		if v.Name == name {
			return true
		}
	}
	for _, c := range w.claims {
		if c.Name == name {
			return true
		}
	}
	return false
}

// checkDisruptionBudget: exactly one PDB selects the workload's pods, and it
// lets a node drain go on: a single replica may be evicted (maxUnavailable),
// several keep some up (minAvailable below replicas); NATS keeps a quorum.
func (m *manifests) checkDisruptionBudget(r *report, w workload) {
	var matched []string
	for name, pdb := range m.pdbs {
		sel, err := metav1.LabelSelectorAsSelector(pdb.Spec.Selector)
		if err == nil && !sel.Empty() && sel.Matches(w.podLabels()) {
			matched = append(matched, name)
		}
	}
	if len(matched) != 1 {
		r.add("%s: %d PodDisruptionBudgets select its pods %v, want 1: %v", w.id, len(matched), w.template.Labels, matched)
		return
	}
	pdb := m.pdbs[matched[0]]
	minA, maxU := pdb.Spec.MinAvailable, pdb.Spec.MaxUnavailable
	id := "PodDisruptionBudget " + pdb.Name
	switch {
	case (minA == nil) == (maxU == nil):
		r.add("%s: needs exactly one of minAvailable and maxUnavailable", id)
	case (minA != nil && minA.Type != intstr.Int) || (maxU != nil && maxU.Type != intstr.Int):
		r.add("%s: use a number of pods, not a percentage", id)
	case w.replicas == 1 && (maxU == nil || maxU.IntVal != 1):
		r.add("%s: one replica: want maxUnavailable 1 so that a drain can evict it", id)
	case w.replicas > 1 && minA == nil:
		r.add("%s: %d replicas: want minAvailable, to keep some up", id, w.replicas)
	case w.replicas > 1 && (minA.IntVal < 1 || minA.IntVal >= w.replicas):
		r.add("%s: minAvailable %d of %d replicas: it must keep some up and let one go", id, minA.IntVal, w.replicas)
	case w.id == "StatefulSet nats" && w.replicas > 1 && minA.IntVal < w.replicas/2+1:
		r.add("%s: minAvailable %d of %d NATS servers loses the JetStream quorum", id, minA.IntVal, w.replicas)
	}
}

// spreadsOverNodes: an anti-affinity term keeps the workload's pods apart by
// node, required or preferred.
func spreadsOverNodes(w workload) bool {
	aff := w.template.Spec.Affinity
	if aff == nil || aff.PodAntiAffinity == nil {
		return false
	}
	terms := slices.Clone(aff.PodAntiAffinity.RequiredDuringSchedulingIgnoredDuringExecution)
	for _, p := range aff.PodAntiAffinity.PreferredDuringSchedulingIgnoredDuringExecution {
		terms = append(terms, p.PodAffinityTerm)
	}
	for _, t := range terms {
		sel, err := metav1.LabelSelectorAsSelector(t.LabelSelector)
		if err == nil && !sel.Empty() && sel.Matches(w.podLabels()) && t.TopologyKey == corev1.LabelHostname {
			return true
		}
	}
	return false
}

// checkServicesSelect: every Service selects a workload and its target ports
// are ports of that workload's containers; every workload that serves has a
// Service.
func (m *manifests) checkServicesSelect(r *report) {
	selected := map[string]bool{}
	for _, svc := range m.services {
		id := "Service " + svc.Name
		if len(svc.Spec.Selector) == 0 {
			r.add("%s: no selector", id)
			continue
		}
		sel := labels.SelectorFromSet(svc.Spec.Selector)
		n := 0
		for _, w := range m.workloads() {
			if !sel.Matches(w.podLabels()) {
				continue
			}
			n++
			selected[w.id] = true
			for _, p := range svc.Spec.Ports {
				target := p.TargetPort
				if target.Type == intstr.Int && target.IntVal == 0 {
					target = intstr.FromInt32(p.Port)
				}
				found := false
				for _, c := range w.template.Spec.Containers {
					if _, ok := containerPort(c, target); ok {
						found = true
					}
				}
				if !found {
					r.add("%s: port %s targets %s, which %s does not expose", id, p.Name, target.String(), w.id)
				}
			}
		}
		if n == 0 {
			r.add("%s: selects no pods (%v)", id, svc.Spec.Selector)
		}
	}
	for _, w := range m.workloads() {
		if !selected[w.id] {
			r.add("%s: no Service selects its pods %v", w.id, w.template.Labels)
		}
	}
}

// checkService checks one of the five services: its Deployment, probes,
// settings, replicas and shutdown against the contract of its image.
func (m *manifests) checkService(r *report, s shape, svc service) {
	d := m.deployments[svc.name]
	if d == nil {
		r.add("no Deployment %s", svc.name)
		return
	}
	id := "Deployment " + svc.name
	if got, want := replicas(d.Spec.Replicas), s.replicas[svc.name]; got != want {
		r.add("%s: %d replicas, want %d", id, got, want)
	}
	if k8sSvc := m.services[svc.name]; k8sSvc == nil || len(k8sSvc.Spec.Ports) != 1 || k8sSvc.Spec.Ports[0].Port != svc.port {
		r.add("Service %s: want one port, %d", svc.name, svc.port)
	}
	var c *corev1.Container
	for i := range d.Spec.Template.Spec.Containers {
		if d.Spec.Template.Spec.Containers[i].Name == svc.name {
			c = &d.Spec.Template.Spec.Containers[i]
		}
	}
	if c == nil {
		r.add("%s: no container %s", id, svc.name)
		return
	}
	if want := "sluice-" + svc.name; !strings.HasPrefix(c.Image, want+":") {
		r.add("%s: image %s, want %s", id, c.Image, want)
	}
	if _, ok := containerPort(*c, intstr.FromInt32(svc.port)); !ok {
		r.add("%s: does not expose port %d", id, svc.port)
	}
	for _, p := range []struct {
		kind, path string
		probe      *corev1.Probe
	}{{"liveness", "/healthz", c.LivenessProbe}, {"readiness", "/readyz", c.ReadinessProbe}} {
		if p.probe == nil || p.probe.HTTPGet == nil {
			r.add("%s: want an HTTP %s probe on %s", id, p.kind, p.path)
			continue
		}
		if port, _ := containerPort(*c, p.probe.HTTPGet.Port); p.probe.HTTPGet.Path != p.path || port != svc.port {
			r.add("%s: %s probe on %s port %s, want %s on %d", id, p.kind, p.probe.HTTPGet.Path, p.probe.HTTPGet.Port.String(), p.path, svc.port)
		}
		// The API serves TLS only.
		if p.probe.HTTPGet.Scheme != corev1.URISchemeHTTPS {
			r.add("%s: %s probe scheme %q, want HTTPS (the API serves TLS only)", id, p.kind, p.probe.HTTPGet.Scheme)
		}
	}
	pod := d.Spec.Template.Spec
	preStop := int64(0)
	if c.Lifecycle != nil && c.Lifecycle.PreStop != nil && c.Lifecycle.PreStop.Sleep != nil {
		preStop = c.Lifecycle.PreStop.Sleep.Seconds
	}
	if g := pod.TerminationGracePeriodSeconds; g == nil || *g < preStop+serviceStopSeconds {
		r.add("%s: terminationGracePeriodSeconds must cover the preStop (%d s) and the drain (%d s)", id, preStop, serviceStopSeconds)
	}
	m.checkSettings(r, s, svc, id, c)
}

// setting is one environment variable of a container: a value, or a
// reference to a Secret's key.
type setting struct {
	value  string
	secret string
}

func (m *manifests) checkSettings(r *report, s shape, svc service, id string, c *corev1.Container) {
	env := map[string]setting{}
	for _, ef := range c.EnvFrom {
		if ef.ConfigMapRef != nil && m.configMaps[ef.ConfigMapRef.Name] != nil {
			for k, v := range m.configMaps[ef.ConfigMapRef.Name].Data {
				env[k] = setting{value: v}
			}
		}
	}
	for _, e := range c.Env {
		switch {
		case e.ValueFrom == nil:
			env[e.Name] = setting{value: e.Value}
		case e.ValueFrom.SecretKeyRef != nil:
			env[e.Name] = setting{secret: e.ValueFrom.SecretKeyRef.Name + "/" + e.ValueFrom.SecretKeyRef.Key}
		default:
			env[e.Name] = setting{}
		}
	}
	prefix := "SLUICE_" + strings.ToUpper(svc.name) + "_"
	known := svc.reads
	for name := range env {
		if !strings.HasPrefix(name, prefix) || !slices.Contains(known, strings.TrimPrefix(name, prefix)) {
			r.add("%s: sets %s, which sluice-%s does not read (it reads %s%v)", id, name, svc.name, prefix, known)
		}
	}
	get := func(name string) (setting, bool) {
		v, ok := env[prefix+name]
		if !ok {
			r.add("%s: %s%s is not set", id, prefix, name)
		}
		return v, ok
	}
	for _, name := range append(slices.Clone(commonSettings), svc.needs...) {
		v, ok := get(name)
		if !ok {
			continue
		}
		secret := slices.Contains(secretSettings, name)
		if secret != (v.secret != "") {
			r.add("%s: %s%s: secrets come from a Secret, the rest from the ConfigMap", id, prefix, name)
			continue
		}
		if secret {
			continue
		}
		var want string
		switch name {
		case "ADDR":
			host, port, err := net.SplitHostPort(v.value)
			if err != nil || host != "0.0.0.0" || port != strconv.Itoa(int(svc.port)) {
				r.add("%s: %sADDR=%s, want 0.0.0.0:%d (all interfaces, the image's port)", id, prefix, v.value, svc.port)
			}
			continue
		case "DATA_DIR":
			want = "/data"
			for _, dir := range []string{"/data", "/tmp"} {
				if !mounts(c, dir) {
					r.add("%s: nothing is mounted at %s, and the root file system is read-only", id, dir)
				}
			}
		case "NATS_URL":
			want = natsURLs(s.natsReplicas)
		case "NATS_CA_FILE", "TLS_CA_FILE":
			want = tlsDir + "/ca.crt"
		case "TLS_CERT_FILE", "TLS_KEY_FILE":
			want = tlsDir + "/tls." + map[string]string{"TLS_CERT_FILE": "crt", "TLS_KEY_FILE": "key"}[name]
			if !m.mountsTLS(m.deployments[svc.name].Spec.Template.Spec, c, svc.name) {
				r.add("%s: %s is not the Secret %s with ca.crt, %s.crt as tls.crt and %s.key as tls.key", id, tlsDir, tlsSecret, svc.name, svc.name)
			}
		case "NATS_USER":
			want = svc.name
		case "NATS_REPLICAS":
			want = strconv.Itoa(int(s.natsReplicas))
		case "SOURCE_URL":
			target := strings.ToLower(strings.TrimSuffix(name, "_URL"))
			for _, t := range services {
				if t.name == target {
					want = fmt.Sprintf("https://%s:%d", t.name, t.port)
				}
			}
		case "ALLOW_EGRESS":
			// Set on purpose, even when empty (public addresses only).
			if _, err := egress.New("", strings.Split(v.value, ",")); err != nil {
				r.add("%s: %sALLOW_EGRESS=%q: %v", id, prefix, v.value, err)
			}
			continue
		case "WORKERS":
			if n, err := strconv.Atoi(v.value); err != nil || n < 1 {
				r.add("%s: %sWORKERS=%q, want a number of at least 1", id, prefix, v.value)
			}
			continue
		}
		if v.value != want {
			r.add("%s: %s%s=%q, want %q", id, prefix, name, v.value, want)
		}
	}
}

// mountsTLS: the container mounts the Secret tlsSecret at tlsDir with the
// CA and name's certificate and key.
func (m *manifests) mountsTLS(pod corev1.PodSpec, c *corev1.Container, name string) bool {
	return mountsSecretItems(pod, c, tlsDir, tlsSecret, map[string]string{"ca.crt": "ca.crt", name + ".crt": "tls.crt", name + ".key": "tls.key"})
}

// mountsSecretItems: c mounts, at path, a volume of the Secret secret that
// has exactly items (key: path).
func mountsSecretItems(pod corev1.PodSpec, c *corev1.Container, path, secret string, items map[string]string) bool {
	for _, vm := range c.VolumeMounts {
		if vm.MountPath != path {
			continue
		}
		for _, v := range pod.Volumes {
			if v.Name != vm.Name || v.Secret == nil || v.Secret.SecretName != secret || len(v.Secret.Items) != len(items) {
				continue
			}
			ok := true
			for _, it := range v.Secret.Items {
				ok = ok && items[it.Key] == it.Path
			}
			return ok
		}
	}
	return false
}

func mounts(c *corev1.Container, path string) bool {
	for _, vm := range c.VolumeMounts {
		if vm.MountPath == path {
			return true
		}
	}
	return false
}

// natsURLs lists every server of the NATS StatefulSet by its stable name.
func natsURLs(n int32) string {
	urls := make([]string, n)
	for i := range urls {
		urls[i] = fmt.Sprintf("tls://nats-%d.nats:4222", i)
	}
	return strings.Join(urls, ",")
}

var (
	confInclude  = regexp.MustCompile(`(?m)^\s*include\s+"?(?:\./)?([^"\s]+)"?`)
	confVariable = regexp.MustCompile(`\$([A-Za-z_][A-Za-z0-9_]*)`)
	confCluster  = regexp.MustCompile(`(?m)^\s*cluster\s*[:{]`)
	confRoute    = regexp.MustCompile(`nats-route://(?:([^:@\s]+):([^@\s]+)@)?([a-z0-9-]+)\.([a-z0-9-]+):(\d+)`)
	// A block's body (no nested blocks in the ones checked).
	confTLS         = regexp.MustCompile(`(?s)\btls\s*[:=]?\s*\{([^}]*)\}`)
	confAuth        = regexp.MustCompile(`(?s)\bauthorization\s*[:=]?\s*\{([^}]*)\}`)
	confClusterBody = regexp.MustCompile(`(?s)\bcluster\s*[:=]?\s*\{(.*)\}`)
	confVerify      = regexp.MustCompile(`(?m)^\s*verify\s*[:=]\s*true\b`)
	confCertFile    = regexp.MustCompile(`(?m)^\s*cert_file\s*[:=]`)
	confUser        = regexp.MustCompile(`(?m)^\s*user\s*[:=]\s*"?([^"\s]+)"?`)
	confPassword    = regexp.MustCompile(`(?m)^\s*password\s*[:=]\s*\$([A-Za-z_][A-Za-z0-9_]*)`)
	// A Kubernetes dependent variable in an env value: $(NAME).
	envReference = regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_]*)\)`)
	confStoreDir = regexp.MustCompile(`(?m)^\s*store_dir\s*[:=]\s*"?([^"\s]+)"?`)
	confMaxFile  = regexp.MustCompile(`(?m)^\s*max_file_store\s*[:=]\s*(\d+)\s*([A-Za-z]*)`)
	confComment  = regexp.MustCompile(`(?m)(^|\s)(#|//).*$`)
	confQuoted   = regexp.MustCompile(`"[^"\n]*"|'[^'\n]*'`)
)

// natsSizeUnits are nats-server's size suffixes (conf/parse.go).
var natsSizeUnits = map[string]int64{"": 1, "k": 1e3, "kb": 1 << 10, "m": 1e6, "mb": 1 << 20, "g": 1e9, "gb": 1 << 30, "t": 1e12, "tb": 1 << 40}

// natsConfig returns the NATS container and its config files (the
// ConfigMap mounted at /etc/nats), without comments.
func (m *manifests) natsConfig() (*appsv1.StatefulSet, *corev1.Container, map[string]string) {
	ss := m.statefulSets["nats"]
	if ss == nil || len(ss.Spec.Template.Spec.Containers) != 1 {
		return ss, nil, nil
	}
	c := &ss.Spec.Template.Spec.Containers[0]
	files := map[string]string{}
	for _, vm := range c.VolumeMounts {
		if vm.MountPath != "/etc/nats" {
			continue
		}
		for _, v := range ss.Spec.Template.Spec.Volumes {
			if v.Name == vm.Name && v.ConfigMap != nil && m.configMaps[v.ConfigMap.Name] != nil {
				for k, body := range m.configMaps[v.ConfigMap.Name].Data {
					files[k] = body
				}
			}
		}
	}
	return ss, c, files
}

// checkNATS: the StatefulSet's size matches the shape, the cluster routes
// match the size, every variable the config uses is in the environment, and
// the JetStream store fits its volume.
func (m *manifests) checkNATS(r *report, s shape) {
	ss, c, files := m.natsConfig()
	if c == nil {
		r.add("no StatefulSet nats with one container")
		return
	}
	id := "StatefulSet nats"
	n := replicas(ss.Spec.Replicas)
	if n != s.natsReplicas {
		r.add("%s: %d servers, want %d", id, n, s.natsReplicas)
	}
	if hs := m.services[ss.Spec.ServiceName]; ss.Spec.ServiceName != "nats" || hs == nil || hs.Spec.ClusterIP != corev1.ClusterIPNone || !hs.Spec.PublishNotReadyAddresses {
		r.add("%s: want the headless Service nats (clusterIP None, publishNotReadyAddresses) for nats-<N>.nats", id)
	}
	conf, ok := files["nats.conf"]
	if !ok {
		r.add("%s: no nats.conf mounted at /etc/nats", id)
		return
	}
	all := confComment.ReplaceAllString(conf, "")
	for _, inc := range confInclude.FindAllStringSubmatch(all, -1) {
		body, ok := files[inc[1]]
		if !ok {
			r.add("%s: nats.conf includes %s, which is not in its ConfigMap", id, inc[1])
		}
		all += "\n" + confComment.ReplaceAllString(body, "")
	}
	env := map[string]bool{}
	for _, e := range c.Env {
		env[e.Name] = true
	}
	// Quoted strings are not expanded ("$JS.API.>" is a subject).
	for _, v := range confVariable.FindAllStringSubmatch(confQuoted.ReplaceAllString(all, `""`), -1) {
		if !env[v[1]] {
			r.add("%s: the config uses $%s, which the container's environment lacks", id, v[1])
		}
	}
	// A variable whose value is a literal of the container's environment
	// stands for that value ($NATS_ROUTES, the routes with the route
	// user's password).
	expanded := all
	for name, value := range literalEnv(c) {
		expanded = strings.ReplaceAll(expanded, "$"+name+"\n", value+"\n")
	}
	routes := map[string]bool{}
	var routeUsers []string
	for _, rt := range confRoute.FindAllStringSubmatch(expanded, -1) {
		if rt[4] != ss.Spec.ServiceName || rt[5] != "6222" {
			r.add("%s: route %s is not <pod>.%s:6222", id, rt[0], ss.Spec.ServiceName)
		}
		routes[rt[3]] = true
		routeUsers = append(routeUsers, rt[1]+":"+rt[2])
	}
	clustered := confCluster.MatchString(all)
	m.checkNATSTLS(r, id, c, all, clustered, routeUsers)
	if n == 1 && (clustered || len(routes) > 0) {
		r.add("%s: one server, but the config has a cluster block or routes", id)
	}
	if n > 1 {
		want := map[string]bool{}
		for i := range n {
			want[fmt.Sprintf("nats-%d", i)] = true
		}
		if !clustered || !mapsEqual(routes, want) {
			r.add("%s: %d servers, but the cluster routes go to %v", id, n, sortedKeys(routes))
		}
	}
	m.checkNATSStore(r, s, ss, c, all)
}

// literalEnv is the container's variables that have a value of their own,
// with the Kubernetes references $(NAME) to earlier variables kept as they
// are.
func literalEnv(c *corev1.Container) map[string]string {
	env := map[string]string{}
	for _, e := range c.Env {
		if e.ValueFrom == nil {
			env[e.Name] = e.Value
		}
	}
	return env
}

// checkNATSTLS: clients must use TLS (a tls block with a certificate
// outside the cluster block), and where there are routes, the cluster
// requires TLS with verify and a route user whose password is a variable
// from a Secret, and every route logs in as that user with that password.
func (m *manifests) checkNATSTLS(r *report, id string, c *corev1.Container, all string, clustered bool, routeUsers []string) {
	cluster := confClusterBody.FindStringSubmatch(all)
	outside := all
	if cluster != nil {
		outside = strings.Replace(all, cluster[0], "", 1)
	}
	if t := confTLS.FindStringSubmatch(outside); t == nil || !confCertFile.MatchString(t[1]) {
		r.add("%s: clients are not required to use TLS (no tls block with a cert_file)", id)
	}
	if !mountsSecretItems(m.statefulSets["nats"].Spec.Template.Spec, c, "/etc/nats/tls", tlsSecret, map[string]string{"ca.crt": "ca.crt", "nats.crt": "tls.crt", "nats.key": "tls.key"}) {
		r.add("%s: /etc/nats/tls is not the Secret %s with ca.crt, nats.crt as tls.crt and nats.key as tls.key", id, tlsSecret)
	}
	if !clustered {
		return
	}
	if cluster == nil {
		r.add("%s: a cluster block that the checker cannot read", id)
		return
	}
	if t := confTLS.FindStringSubmatch(cluster[1]); t == nil || !confVerify.MatchString(t[1]) || !confCertFile.MatchString(t[1]) {
		r.add("%s: the routes are not TLS with verify: true", id)
	}
	auth := confAuth.FindStringSubmatch(cluster[1])
	if auth == nil {
		r.add("%s: the routes need no route user (no authorization block in the cluster)", id)
		return
	}
	user, password := confUser.FindStringSubmatch(auth[1]), confPassword.FindStringSubmatch(auth[1])
	if user == nil || password == nil {
		r.add("%s: the cluster's authorization needs a user and a password from a variable", id)
		return
	}
	secretEnv := false
	for _, e := range c.Env {
		secretEnv = secretEnv || (e.Name == password[1] && e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil)
	}
	if !secretEnv {
		r.add("%s: the route password $%s does not come from a Secret", id, password[1])
	}
	want := user[1] + ":$(" + password[1] + ")"
	for _, got := range routeUsers {
		if got != want {
			r.add("%s: a route logs in as %q, want %q", id, got, want)
		}
	}
}

func (m *manifests) checkNATSStore(r *report, s shape, ss *appsv1.StatefulSet, c *corev1.Container, conf string) {
	id := "StatefulSet nats"
	dir := confStoreDir.FindStringSubmatch(conf)
	size := confMaxFile.FindStringSubmatch(conf)
	if dir == nil || size == nil {
		r.add("%s: the config needs jetstream store_dir and max_file_store", id)
		return
	}
	unit, ok := natsSizeUnits[strings.ToLower(size[2])]
	n, err := strconv.ParseInt(size[1], 10, 64)
	if !ok || err != nil {
		r.add("%s: max_file_store %s%s does not parse", id, size[1], size[2])
		return
	}
	maxFile := n * unit
	volume := ""
	for _, vm := range c.VolumeMounts {
		if vm.MountPath == dir[1] {
			volume = vm.Name
		}
	}
	var capacity *resource.Quantity
	persistent := false
	for _, claim := range ss.Spec.VolumeClaimTemplates {
		if claim.Name == volume {
			q := claim.Spec.Resources.Requests[corev1.ResourceStorage]
			capacity, persistent = &q, true
		}
	}
	for _, v := range ss.Spec.Template.Spec.Volumes {
		if v.Name == volume && v.EmptyDir != nil {
			capacity = v.EmptyDir.SizeLimit
		}
	}
	switch {
	case volume == "":
		r.add("%s: nothing is mounted at the store_dir %s", id, dir[1])
	case persistent != s.persistentNATS:
		r.add("%s: JetStream on a volumeClaimTemplate: %t, want %t", id, persistent, s.persistentNATS)
	case capacity == nil || capacity.Value() <= maxFile:
		r.add("%s: the volume %s (%v) must be larger than max_file_store (%d bytes)", id, volume, capacity, maxFile)
	}
}

// checkDefinitions: the ConfigMap sluice-nats-definitions holds exactly the
// declarations the binaries embed (deploy.NATS()).
func (m *manifests) checkDefinitions(r *report) {
	cm := m.configMaps[definitionsName]
	if cm == nil {
		r.add("no ConfigMap %s", definitionsName)
		return
	}
	want, err := natsDefinitions()
	if err != nil {
		r.add("reading deploy.NATS(): %v", err)
		return
	}
	for k, body := range want {
		got, ok := cm.Data[k]
		switch {
		case !ok:
			r.add("ConfigMap %s: no %s; run `make k8s-generate`", definitionsName, k)
		case got != body:
			r.add("ConfigMap %s: %s differs from deploy/nats; run `make k8s-generate`", definitionsName, k)
		}
	}
	for k := range cm.Data {
		if _, ok := want[k]; !ok {
			r.add("ConfigMap %s: %s is not in deploy/nats; run `make k8s-generate`", definitionsName, k)
		}
	}
}

// checkPostgres: where the shape has its own PostgreSQL, each service's
// database URL reaches it as the service's own role and database, with the
// password that init.sql gives that role.
func (m *manifests) checkPostgres(r *report, s shape) {
	ss := m.statefulSets["postgres"]
	if !s.postgres {
		if ss != nil {
			r.add("StatefulSet postgres: this shape uses an external PostgreSQL")
		}
		return
	}
	pgSvc := m.services["postgres"]
	urls, _ := generated(m.secrets, operatorSecret)
	if ss == nil || len(ss.Spec.Template.Spec.Containers) != 1 || pgSvc == nil || len(pgSvc.Spec.Ports) != 1 || urls == nil {
		r.add("want a StatefulSet postgres with one container, its Service and the Secret %s", operatorSecret)
		return
	}
	c := ss.Spec.Template.Spec.Containers[0]
	passwords := map[string]string{}
	for _, e := range c.Env {
		if ref := e.ValueFrom; ref != nil && ref.SecretKeyRef != nil && m.secrets[ref.SecretKeyRef.Name] != nil {
			passwords[e.Name] = string(m.secrets[ref.SecretKeyRef.Name].Data[ref.SecretKeyRef.Key])
		}
	}
	initSQL := ""
	for _, vm := range c.VolumeMounts {
		for _, v := range ss.Spec.Template.Spec.Volumes {
			if vm.MountPath == "/docker-entrypoint-initdb.d" && v.Name == vm.Name && v.ConfigMap != nil && m.configMaps[v.ConfigMap.Name] != nil {
				for _, body := range m.configMaps[v.ConfigMap.Name].Data {
					initSQL += body
				}
			}
		}
	}
	host := net.JoinHostPort(pgSvc.Name, strconv.Itoa(int(pgSvc.Spec.Ports[0].Port)))
	for _, svc := range services {
		key := svc.name + "-database-url"
		u, err := url.Parse(string(urls.Data[key]))
		if err != nil || u.User == nil {
			r.add("Secret %s: %s is not a URL with a user: %v", urls.Name, key, err)
			continue
		}
		pw, _ := u.User.Password()
		if u.Scheme != "postgres" || u.Host != host || u.User.Username() != svc.name || u.Path != "/"+svc.name {
			r.add("Secret %s: %s goes to %s://%s@%s%s, want postgres://%s@%s/%s", urls.Name, key, u.Scheme, u.User.Username(), u.Host, u.Path, svc.name, host, svc.name)
		}
		envName := strings.ToUpper(svc.name) + "_DB_PASSWORD"
		if got, ok := passwords[envName]; !ok || got != pw {
			r.add("StatefulSet postgres: %s (from its Secret) differs from the password in %s", envName, key)
		}
		variable := svc.name + "_password"
		for _, stmt := range []string{
			`\getenv ` + variable + " " + envName,
			"CREATE ROLE " + svc.name + " LOGIN PASSWORD :'" + variable + "';",
			"CREATE DATABASE " + svc.name + " OWNER " + svc.name + ";",
		} {
			if !strings.Contains(initSQL, stmt) {
				r.add("StatefulSet postgres: its init SQL lacks %q", stmt)
			}
		}
	}
}

// Network policies. The checker asks them, as a network plugin would, who
// may connect to whom: the pods of the render, pods it does not know (of
// its namespace and of others, some labelled like Sluice's), the cluster
// DNS, addresses on the internet and on the operator's network, and the
// cloud metadata endpoint. Pod addresses are unknown, so a pod may be
// anywhere in clusterRanges, which an ipBlock must leave out (except) not
// to reach pods.
var (
	// clusterRanges are where pods, Services and nodes may have their
	// addresses: the defaults of base/networkpolicies.yaml's except lists
	// but link-local.
	clusterRanges = prefixes("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "fc00::/7")
	// linkLocal holds the cloud metadata endpoint (169.254.169.254).
	linkLocal = prefixes("169.254.0.0/16", "fe80::/10")
	// privateRanges are where the operator's own hosts (an external
	// PostgreSQL) may be.
	privateRanges = prefixes("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7")
	everywhere    = prefixes("0.0.0.0/0", "::/0")
)

func prefixes(cidrs ...string) []netip.Prefix {
	ps := make([]netip.Prefix, len(cidrs))
	for i, c := range cidrs {
		ps[i] = netip.MustParsePrefix(c)
	}
	return ps
}

// endpointKind tells the ends of a connection apart.
type endpointKind int

const (
	rendered endpointKind = iota // a pod of a workload of the render
	stranger                     // a pod the render does not make
	clusterDNS
	internet
	operatorNetwork // an address of the operator's network, outside the cluster
	metadataService
)

// endpoint is one end of a connection the checker asks the policies about.
type endpoint struct {
	name string
	kind endpointKind
	// Pods only: where they run, their labels and their containers' ports
	// (for named ports).
	namespace string
	labels    labels.Set
	ports     []corev1.ContainerPort
	// Where its address may be: in addrs but none of notAddrs.
	addrs, notAddrs []netip.Prefix
}

func (e endpoint) pod() bool { return e.kind == rendered || e.kind == stranger || e.kind == clusterDNS }

// otherNamespace is a namespace that is not Sluice's.
const otherNamespace = "elsewhere"

// endpoints are the pods of the render's workloads and everything else the
// checker asks about.
func (m *manifests) endpoints() (pods, others []endpoint) {
	for _, w := range m.workloads() {
		e := endpoint{name: w.id, kind: rendered, namespace: m.namespaced[w.id], labels: w.podLabels(), addrs: clusterRanges}
		for _, c := range w.template.Spec.Containers {
			e.ports = append(e.ports, c.Ports...)
		}
		pods = append(pods, e)
		twin := e
		twin.name, twin.kind, twin.namespace = "a pod of another namespace labelled like "+w.id, stranger, otherNamespace
		others = append(others, twin)
	}
	unknown := labels.Set{"app.kubernetes.io/name": "someone-else"}
	others = append(others,
		endpoint{name: "another pod of the namespace " + namespace, kind: stranger, namespace: namespace, labels: unknown, addrs: clusterRanges},
		endpoint{name: "a pod of another namespace", kind: stranger, namespace: otherNamespace, labels: unknown, addrs: clusterRanges},
		endpoint{name: "the cluster DNS", kind: clusterDNS, namespace: "kube-system", labels: labels.Set{"k8s-app": "kube-dns"}, addrs: clusterRanges,
			ports: []corev1.ContainerPort{{Name: "dns", ContainerPort: 53, Protocol: corev1.ProtocolUDP}, {Name: "dns-tcp", ContainerPort: 53, Protocol: corev1.ProtocolTCP}}},
		endpoint{name: "an address on the internet", kind: internet, addrs: everywhere, notAddrs: append(slices.Clone(clusterRanges), linkLocal...)},
		endpoint{name: "an address of the operator's network", kind: operatorNetwork, addrs: privateRanges},
		endpoint{name: "the cloud metadata address 169.254.169.254", kind: metadataService, addrs: prefixes("169.254.169.254/32")},
	)
	return pods, others
}

// portRange is ports first to last of a protocol ("" for every protocol).
type portRange struct {
	protocol    corev1.Protocol
	first, last int32
}

var everyPort = portRange{first: 1, last: 65535}

func (p portRange) String() string {
	proto := string(p.protocol)
	switch {
	case proto == "" && p.first <= 1 && p.last >= 65535:
		return "every port"
	case p.first <= 1 && p.last >= 65535:
		return "every " + proto + " port"
	case proto == "":
		proto = "every protocol,"
	}
	if p.first == p.last {
		return fmt.Sprintf("%s %d", proto, p.first)
	}
	return fmt.Sprintf("%s ports %d-%d", proto, p.first, p.last)
}

func (p portRange) has(proto corev1.Protocol, port int32) bool {
	return (p.protocol == "" || p.protocol == proto) && p.first <= port && port <= p.last
}

func (p portRange) single() bool { return p.protocol != "" && p.first == p.last }

func anyHas(ps []portRange, proto corev1.Protocol, port int32) bool {
	return slices.ContainsFunc(ps, func(p portRange) bool { return p.has(proto, port) })
}

func protocolOf(cp corev1.ContainerPort) corev1.Protocol {
	if cp.Protocol == "" {
		return corev1.ProtocolTCP
	}
	return cp.Protocol
}

// rulePorts are the ports a rule opens on target, whose container ports
// resolve named ports.
func rulePorts(ports []networkingv1.NetworkPolicyPort, target endpoint) []portRange {
	if len(ports) == 0 {
		return []portRange{everyPort}
	}
	var out []portRange
	for _, p := range ports {
		proto := corev1.ProtocolTCP
		if p.Protocol != nil {
			proto = *p.Protocol
		}
		switch {
		case p.Port == nil:
			out = append(out, portRange{protocol: proto, first: 1, last: 65535})
		case p.Port.Type == intstr.String:
			for _, cp := range target.ports {
				if cp.Name == p.Port.StrVal && protocolOf(cp) == proto {
					out = append(out, portRange{protocol: proto, first: cp.ContainerPort, last: cp.ContainerPort})
				}
			}
		default:
			last := p.Port.IntVal
			if p.EndPort != nil {
				last = *p.EndPort
			}
			out = append(out, portRange{protocol: proto, first: p.Port.IntVal, last: last})
		}
	}
	return out
}

// policyTypes with the API's default: Ingress always, Egress when the
// policy has egress rules.
func policyTypes(np *networkingv1.NetworkPolicy) (in, out bool) {
	if len(np.Spec.PolicyTypes) == 0 {
		return true, len(np.Spec.Egress) > 0
	}
	return slices.Contains(np.Spec.PolicyTypes, networkingv1.PolicyTypeIngress), slices.Contains(np.Spec.PolicyTypes, networkingv1.PolicyTypeEgress)
}

func selectorMatches(s *metav1.LabelSelector, set labels.Set) bool {
	sel, err := metav1.LabelSelectorAsSelector(s)
	return err == nil && sel.Matches(set)
}

// namespaceLabels are a namespace's labels, with the one the API server
// gives every namespace.
func (m *manifests) namespaceLabels(ns string) labels.Set {
	set := labels.Set{}
	if n := m.namespaces[ns]; n != nil {
		maps.Copy(set, n.Labels)
	}
	set[corev1.LabelMetadataName] = ns
	return set
}

// peerMatches: a peer of a rule of a policy in policyNS is e.
func (m *manifests) peerMatches(p networkingv1.NetworkPolicyPeer, policyNS string, e endpoint) bool {
	if p.IPBlock != nil {
		return ipBlockReaches(p.IPBlock, e.addrs, e.notAddrs)
	}
	if !e.pod() {
		return false
	}
	if p.NamespaceSelector == nil && e.namespace != policyNS {
		return false
	}
	if p.NamespaceSelector != nil && !selectorMatches(p.NamespaceSelector, m.namespaceLabels(e.namespace)) {
		return false
	}
	return p.PodSelector == nil || selectorMatches(p.PodSelector, e.labels)
}

// ipBlockReaches: some address of the block but its excepts is in addrs
// and in none of notAddrs.
func ipBlockReaches(b *networkingv1.IPBlock, addrs, notAddrs []netip.Prefix) bool {
	cidr, err := netip.ParsePrefix(b.CIDR)
	if err != nil {
		return false
	}
	minus := slices.Clone(notAddrs)
	for _, e := range b.Except {
		if p, err := netip.ParsePrefix(e); err == nil {
			minus = append(minus, p)
		}
	}
	for _, a := range addrs {
		if a.Addr().Is4() != cidr.Addr().Is4() || !a.Overlaps(cidr) {
			continue
		}
		both := a // the narrower of two overlapping prefixes is their intersection
		if cidr.Bits() > a.Bits() {
			both = cidr
		}
		if remains(both.Masked(), minus) {
			return true
		}
	}
	return false
}

// remains: some address of p is in none of minus.
func remains(p netip.Prefix, minus []netip.Prefix) bool {
	split := false
	for _, m := range minus {
		if m.Addr().Is4() != p.Addr().Is4() || !m.Overlaps(p) {
			continue
		}
		if m.Bits() <= p.Bits() {
			return false
		}
		split = true
	}
	if !split {
		return true
	}
	// Some of minus cover part of p: ask about each half.
	b := p.Bits()
	lo := netip.PrefixFrom(p.Addr(), b+1)
	hiAddr := p.Addr().AsSlice()
	hiAddr[b/8] |= 0x80 >> (b % 8)
	hi, _ := netip.AddrFromSlice(hiAddr)
	return remains(lo, minus) || remains(netip.PrefixFrom(hi, b+1), minus)
}

type direction string

const (
	inbound  direction = "ingress"
	outbound direction = "egress"
)

// opened are the ports on which the policies let from connect to to: the
// egress policies of from, or the ingress policies of to. Named ports are
// to's. limited is false when no policy of the direction selects the pod,
// which is then open.
func (m *manifests) opened(dir direction, from, to endpoint) (ports []portRange, limited bool) {
	self, peer := from, to
	if dir == inbound {
		self, peer = to, from
	}
	if !self.pod() {
		return []portRange{everyPort}, false
	}
	for _, name := range slices.Sorted(maps.Keys(m.policies)) {
		np := m.policies[name]
		in, out := policyTypes(np)
		if np.Namespace != self.namespace || !selectorMatches(&np.Spec.PodSelector, self.labels) || (dir == inbound && !in) || (dir == outbound && !out) {
			continue
		}
		limited = true
		type rule struct {
			peers []networkingv1.NetworkPolicyPeer
			ports []networkingv1.NetworkPolicyPort
		}
		var rules []rule
		if dir == inbound {
			for _, r := range np.Spec.Ingress {
				rules = append(rules, rule{r.From, r.Ports})
			}
		} else {
			for _, r := range np.Spec.Egress {
				rules = append(rules, rule{r.To, r.Ports})
			}
		}
		for _, r := range rules {
			if len(r.peers) == 0 || slices.ContainsFunc(r.peers, func(p networkingv1.NetworkPolicyPeer) bool { return m.peerMatches(p, np.Namespace, peer) }) {
				ports = append(ports, rulePorts(r.ports, to)...)
			}
		}
	}
	if !limited {
		return []portRange{everyPort}, false
	}
	return ports, true
}

// allows: both from's egress and to's ingress let from connect to port.
func (m *manifests) allows(from, to endpoint, proto corev1.Protocol, port int32) bool {
	out, _ := m.opened(outbound, from, to)
	in, _ := m.opened(inbound, from, to)
	return anyHas(out, proto, port) && anyHas(in, proto, port)
}

// checkNetworkPolicies: the services can reach what they need; NATS admits
// clients from the services only and routes and monitoring from its own
// servers only; build and test, which run users' code, reach nothing of the
// cluster but DNS, NATS's client port, source and their database, and the
// internet without the private ranges; PostgreSQL admits the services only.
func (m *manifests) checkNetworkPolicies(r *report, s shape) {
	for _, name := range slices.Sorted(maps.Keys(m.policies)) {
		m.checkPolicySyntax(r, m.policies[name])
	}
	pods, others := m.endpoints()
	byName := map[string]endpoint{}
	for _, e := range slices.Concat(pods, others) {
		byName[e.name] = e
	}
	isService := func(e endpoint) bool {
		return e.kind == rendered && slices.ContainsFunc(services, func(svc service) bool { return e.name == "Deployment "+svc.name })
	}
	isNATS := func(e endpoint) bool { return e.kind == rendered && e.name == "StatefulSet nats" }
	m.checkIngress(r, byName["StatefulSet nats"], slices.Concat(pods, others), func(port int32, from endpoint) bool {
		switch port {
		case 4222:
			return isService(from)
		case 6222, 8222:
			return isNATS(from)
		}
		return false
	})
	if s.postgres {
		m.checkIngress(r, byName["StatefulSet postgres"], slices.Concat(pods, others), func(port int32, from endpoint) bool {
			return port == 5432 && isService(from)
		})
	}
	for _, name := range []string{"build", "test"} {
		m.checkUntrustedEgress(r, byName["Deployment "+name], pods, others)
	}
	m.checkBuildTestIPBlocks(r)
	m.checkNeeds(r, s, byName)
}

// checkPolicySyntax: what the API server would refuse, and the checker
// could not evaluate.
func (m *manifests) checkPolicySyntax(r *report, np *networkingv1.NetworkPolicy) {
	id := "NetworkPolicy " + np.Name
	var peers []networkingv1.NetworkPolicyPeer
	for _, rule := range np.Spec.Ingress {
		peers = append(peers, rule.From...)
	}
	for _, rule := range np.Spec.Egress {
		peers = append(peers, rule.To...)
	}
	selectors := []*metav1.LabelSelector{&np.Spec.PodSelector}
	for _, p := range peers {
		selectors = append(selectors, p.PodSelector, p.NamespaceSelector)
		if p.IPBlock == nil {
			continue
		}
		cidr, err := netip.ParsePrefix(p.IPBlock.CIDR)
		if err != nil || cidr != cidr.Masked() {
			r.add("%s: ipBlock cidr %q is not a network address with a prefix length", id, p.IPBlock.CIDR)
			continue
		}
		for _, e := range p.IPBlock.Except {
			ex, err := netip.ParsePrefix(e)
			if err != nil || ex != ex.Masked() || ex.Addr().Is4() != cidr.Addr().Is4() || ex.Bits() <= cidr.Bits() || !cidr.Overlaps(ex) {
				r.add("%s: ipBlock %s: except %q is not a network strictly inside it", id, cidr, e)
			}
		}
	}
	for _, sel := range selectors {
		if _, err := metav1.LabelSelectorAsSelector(sel); sel != nil && err != nil {
			r.add("%s: %v", id, err)
		}
	}
}

// checkIngress: some policy limits who connects to target's pods, and on
// each port of its containers it admits only the origins may allows.
func (m *manifests) checkIngress(r *report, target endpoint, origins []endpoint, may func(port int32, from endpoint) bool) {
	if target.name == "" {
		return // checkNATS and checkPostgres report a missing workload
	}
	if _, limited := m.opened(inbound, endpoint{kind: internet}, target); !limited {
		r.add("%s: no NetworkPolicy limits who connects to its pods", target.name)
		return
	}
	for _, from := range origins {
		if from.kind == metadataService {
			continue // nothing connects from there
		}
		in, _ := m.opened(inbound, from, target)
		for _, cp := range target.ports {
			if anyHas(in, protocolOf(cp), cp.ContainerPort) && !may(cp.ContainerPort, from) {
				r.add("%s: admits %s on %s %d", target.name, from.name, protocolOf(cp), cp.ContainerPort)
			}
		}
	}
}

// checkUntrustedEgress: build's or test's pods, which run users' pipeline
// commands, are held to DNS, NATS's client port, source's API, their
// database and the internet.
func (m *manifests) checkUntrustedEgress(r *report, from endpoint, pods, others []endpoint) {
	if from.name == "" {
		return // checkService reports a missing Deployment
	}
	if _, limited := m.opened(outbound, from, endpoint{kind: internet}); !limited {
		r.add("%s: no NetworkPolicy limits where its pods connect: they run users' pipeline commands", from.name)
		return
	}
	// The one port each may reach, where it may reach one.
	allowed := map[string]portRange{
		"StatefulSet nats":     {corev1.ProtocolTCP, 4222, 4222},
		"Deployment source":    {corev1.ProtocolTCP, 8081, 8081},
		"StatefulSet postgres": {corev1.ProtocolTCP, 5432, 5432},
	}
	for _, to := range slices.Concat(pods, others) {
		if to.kind == internet {
			continue
		}
		out, _ := m.opened(outbound, from, to)
		for _, p := range out {
			var ok bool
			switch to.kind {
			case rendered:
				// A single port the pod does not listen on reaches nothing.
				ok = p.single() && (p == allowed[to.name] || !slices.ContainsFunc(to.ports, func(cp corev1.ContainerPort) bool { return p.has(protocolOf(cp), cp.ContainerPort) }))
			case clusterDNS:
				ok = (p.single() && p.first == 53) || p == allowed["StatefulSet postgres"]
			case stranger, operatorNetwork:
				// The external database's port (base/networkpolicies.yaml,
				// build-test-database).
				ok = p == allowed["StatefulSet postgres"]
			}
			if !ok {
				r.add("%s: may reach %s on %s", from.name, to.name, p)
			}
		}
	}
}

// checkBuildTestIPBlocks: every ipBlock that lets build and test reach more
// than their database's port excepts the cluster's and private ranges and
// link-local.
func (m *manifests) checkBuildTestIPBlocks(r *report) {
	var untrusted []labels.Set
	for _, name := range []string{"build", "test"} {
		if d := m.deployments[name]; d != nil {
			untrusted = append(untrusted, d.Spec.Template.Labels)
		}
	}
	dbPort := []portRange{{corev1.ProtocolTCP, 5432, 5432}}
	for _, name := range slices.Sorted(maps.Keys(m.policies)) {
		np := m.policies[name]
		if _, out := policyTypes(np); !out || !slices.ContainsFunc(untrusted, func(l labels.Set) bool { return selectorMatches(&np.Spec.PodSelector, l) }) {
			continue
		}
		for _, rule := range np.Spec.Egress {
			if slices.Equal(rulePorts(rule.Ports, endpoint{}), dbPort) {
				continue
			}
			for _, p := range rule.To {
				if p.IPBlock == nil {
					continue
				}
				for _, private := range slices.Concat(clusterRanges, linkLocal) {
					if ipBlockReaches(p.IPBlock, []netip.Prefix{private}, nil) {
						r.add("NetworkPolicy %s: ipBlock %s lets build and test reach %s, which it must except", np.Name, p.IPBlock.CIDR, private)
					}
				}
			}
		}
	}
}

// checkNeeds: the policies let through what the platform needs.
func (m *manifests) checkNeeds(r *report, s shape, byName map[string]endpoint) {
	type need struct {
		from, to string
		proto    corev1.Protocol
		port     int32
	}
	var needs []need
	tcp := corev1.ProtocolTCP
	for _, svc := range services {
		id := "Deployment " + svc.name
		needs = append(needs, need{id, "StatefulSet nats", tcp, 4222}, need{"an address on the internet", id, tcp, svc.port})
		if slices.Contains(svc.needs, "SOURCE_URL") {
			needs = append(needs, need{id, "Deployment source", tcp, 8081})
		}
		if s.postgres {
			needs = append(needs, need{id, "StatefulSet postgres", tcp, 5432})
		} else {
			needs = append(needs, need{id, "an address of the operator's network", tcp, 5432}, need{id, "an address on the internet", tcp, 5432})
		}
		needs = append(needs, need{id, "the cluster DNS", corev1.ProtocolUDP, 53}, need{id, "the cluster DNS", tcp, 53}, need{id, "an address on the internet", tcp, 443})
	}
	if s.natsReplicas > 1 {
		// The routes between the servers (one endpoint stands for them all).
		needs = append(needs, need{"StatefulSet nats", "StatefulSet nats", tcp, 6222})
	}
	for _, n := range needs {
		from, okFrom := byName[n.from]
		to, okTo := byName[n.to]
		if okFrom && okTo && !m.allows(from, to, n.proto, n.port) {
			r.add("%s cannot reach %s on %s %d", n.from, n.to, n.proto, n.port)
		}
	}
}

func mapsEqual(a, b map[string]bool) bool {
	if len(a) != len(b) {
		return false
	}
	for k := range a {
		if !b[k] {
			return false
		}
	}
	return true
}

func sortedKeys(m map[string]bool) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
