package k8s

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
)

// k8sDir is deploy/k8s, from this package's folder.
const k8sDir = "../../deploy/k8s"

// decoder decodes strictly against the API types of the kinds Sluice uses:
// a field the type does not have, a duplicate field, or a kind outside this
// scheme is an error. Adding a kind to the manifests means adding it here
// and to manifests.add, where the checks can see it.
var decoder = func() runtime.Decoder {
	scheme := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{appsv1.AddToScheme, corev1.AddToScheme, networkingv1.AddToScheme, policyv1.AddToScheme} {
		if err := add(scheme); err != nil {
			panic(err)
		}
	}
	return serializer.NewCodecFactory(scheme, serializer.EnableStrict).UniversalDeserializer()
}()

// manifests is one kustomization, rendered and decoded, by kind and name.
type manifests struct {
	dir          string
	namespaces   map[string]*corev1.Namespace
	deployments  map[string]*appsv1.Deployment
	statefulSets map[string]*appsv1.StatefulSet
	services     map[string]*corev1.Service
	pdbs         map[string]*policyv1.PodDisruptionBudget
	configMaps   map[string]*corev1.ConfigMap
	secrets      map[string]*corev1.Secret
	pvcs         map[string]*corev1.PersistentVolumeClaim
	policies     map[string]*networkingv1.NetworkPolicy
	// namespaced holds every object but the Namespaces, as "Kind name" and
	// its namespace.
	namespaced map[string]string
}

// render builds the kustomization in dir with kustomize's Go API, as
// `kustomize build` and `kubectl apply -k` do, and decodes every resource
// strictly. The error names each resource that does not decode.
func render(dir string) (*manifests, error) {
	rm, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		return nil, fmt.Errorf("kustomize build %s: %w", dir, err)
	}
	m := &manifests{
		dir:          dir,
		namespaces:   map[string]*corev1.Namespace{},
		deployments:  map[string]*appsv1.Deployment{},
		statefulSets: map[string]*appsv1.StatefulSet{},
		services:     map[string]*corev1.Service{},
		pdbs:         map[string]*policyv1.PodDisruptionBudget{},
		configMaps:   map[string]*corev1.ConfigMap{},
		secrets:      map[string]*corev1.Secret{},
		pvcs:         map[string]*corev1.PersistentVolumeClaim{},
		policies:     map[string]*networkingv1.NetworkPolicy{},
		namespaced:   map[string]string{},
	}
	var errs []error
	for _, r := range rm.Resources() {
		id := r.GetKind() + " " + r.GetName()
		y, err := r.AsYAML()
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", id, err))
			continue
		}
		obj, _, err := decoder.Decode(y, nil, nil)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", id, err))
			continue
		}
		if err := m.add(id, obj); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("%s: %w", dir, err)
	}
	return m, nil
}

func (m *manifests) add(id string, obj runtime.Object) error {
	switch o := obj.(type) {
	case *corev1.Namespace:
		m.namespaces[o.Name] = o
		return nil
	case *appsv1.Deployment:
		m.deployments[o.Name] = o
	case *appsv1.StatefulSet:
		m.statefulSets[o.Name] = o
	case *corev1.Service:
		m.services[o.Name] = o
	case *policyv1.PodDisruptionBudget:
		m.pdbs[o.Name] = o
	case *corev1.ConfigMap:
		m.configMaps[o.Name] = o
	case *corev1.Secret:
		m.secrets[o.Name] = o
	case *corev1.PersistentVolumeClaim:
		m.pvcs[o.Name] = o
	case *networkingv1.NetworkPolicy:
		m.policies[o.Name] = o
	default:
		return fmt.Errorf("%s: %T decodes but the checker does not look at it; add it to manifests", id, obj)
	}
	if _, dup := m.namespaced[id]; dup {
		return fmt.Errorf("%s: twice", id)
	}
	meta, ok := obj.(metav1.Object)
	if !ok {
		return fmt.Errorf("%s: %T has no object metadata", id, obj)
	}
	m.namespaced[id] = meta.GetNamespace()
	return nil
}

// overlays lists the folders under deploy/k8s that hold a kustomization:
// base and every overlay.
func overlays(t *testing.T) []string {
	t.Helper()
	dirs := []string{"base"}
	entries, err := os.ReadDir(filepath.Join(k8sDir, "overlays"))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.IsDir() {
			dirs = append(dirs, "overlays/"+e.Name())
		}
	}
	sort.Strings(dirs)
	return dirs
}

// tempOverlay writes a kustomization on top of from (base or an overlay,
// under deploy/k8s) into a new folder and returns it. files holds more files
// for it, by name.
func tempOverlay(t *testing.T, from, kustomization string, files map[string]string) string {
	t.Helper()
	base, err := filepath.Abs(filepath.Join(k8sDir, from))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	// kustomize takes no absolute paths to other kustomizations.
	rel, err := filepath.Rel(dir, base)
	if err != nil {
		t.Fatal(err)
	}
	head := "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n  - " + rel + "\n"
	if err := os.WriteFile(filepath.Join(dir, "kustomization.yaml"), []byte(head+kustomization), 0o600); err != nil {
		t.Fatal(err)
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}
