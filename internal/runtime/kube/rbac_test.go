package kube

// RBAC: the objects of deploy/ (read from the files kustomization.yaml
// lists, not copied here) applied to the test cluster; ship's runtime, with
// a token of the manifests' ServiceAccount, does its work in its namespaces
// and is refused outside them.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	gwclient "sigs.k8s.io/gateway-api/pkg/client/clientset/versioned"
	sigsyaml "sigs.k8s.io/yaml"

	"github.com/shipteam/ship/internal/kubetest"
	"github.com/shipteam/ship/internal/runtime"
)

const deployDir = "../../../deploy"

// manifestResources maps the kinds deploy/ uses to their API resources; a
// kind missing here fails the test, so new manifests get applied too.
var manifestResources = map[string]schema.GroupVersionResource{
	"v1/Namespace":                             {Version: "v1", Resource: "namespaces"},
	"v1/ServiceAccount":                        {Version: "v1", Resource: "serviceaccounts"},
	"v1/Service":                               {Version: "v1", Resource: "services"},
	"v1/PersistentVolumeClaim":                 {Version: "v1", Resource: "persistentvolumeclaims"},
	"v1/ConfigMap":                             {Version: "v1", Resource: "configmaps"},
	"apps/v1/Deployment":                       {Group: "apps", Version: "v1", Resource: "deployments"},
	"rbac.authorization.k8s.io/v1/ClusterRole": {Group: "rbac.authorization.k8s.io", Version: "v1", Resource: "clusterroles"},
	"rbac.authorization.k8s.io/v1/ClusterRoleBinding": {Group: "rbac.authorization.k8s.io", Version: "v1", Resource: "clusterrolebindings"},
	"rbac.authorization.k8s.io/v1/Role":               {Group: "rbac.authorization.k8s.io", Version: "v1", Resource: "roles"},
	"rbac.authorization.k8s.io/v1/RoleBinding":        {Group: "rbac.authorization.k8s.io", Version: "v1", Resource: "rolebindings"},
}

// readManifests returns every object of the files deploy/kustomization.yaml
// lists under resources.
func readManifests(t *testing.T) []*unstructured.Unstructured {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(deployDir, "kustomization.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var k struct {
		Resources []string `json:"resources"`
	}
	if err := sigsyaml.Unmarshal(raw, &k); err != nil {
		t.Fatalf("kustomization.yaml: %v", err)
	}
	if len(k.Resources) == 0 {
		t.Fatal("kustomization.yaml lists no resources")
	}
	var objs []*unstructured.Unstructured
	for _, f := range k.Resources {
		data, err := os.ReadFile(filepath.Join(deployDir, f))
		if err != nil {
			t.Fatal(err)
		}
		dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
		for {
			var m map[string]any
			if err := dec.Decode(&m); errors.Is(err, io.EOF) {
				break
			} else if err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			if len(m) == 0 {
				continue
			}
			objs = append(objs, &unstructured.Unstructured{Object: m})
		}
	}
	return objs
}

func applyManifests(ctx context.Context, t *testing.T, cfg *rest.Config, objs []*unstructured.Unstructured) {
	t.Helper()
	dyn := dynamic.NewForConfigOrDie(cfg)
	for _, o := range objs {
		gvr, ok := manifestResources[o.GetAPIVersion()+"/"+o.GetKind()]
		if !ok {
			t.Fatalf("deploy/: kind %s/%s not known to the test", o.GetAPIVersion(), o.GetKind())
		}
		var ri dynamic.ResourceInterface = dyn.Resource(gvr)
		if o.GetNamespace() != "" {
			ri = dyn.Resource(gvr).Namespace(o.GetNamespace())
		}
		if _, err := ri.Apply(ctx, o.GetName(), o, metav1.ApplyOptions{FieldManager: "kubectl", Force: true}); err != nil {
			t.Fatalf("apply %s %s/%s: %v", o.GetKind(), o.GetNamespace(), o.GetName(), err)
		}
	}
}

// serviceAccountConfig returns a rest.Config that authenticates as the
// ServiceAccount with a token from the TokenRequest API.
func serviceAccountConfig(ctx context.Context, t *testing.T, admin *rest.Config, ns, name string) *rest.Config {
	t.Helper()
	cs := kubernetes.NewForConfigOrDie(admin)
	exp := int64(3600)
	var tok *authenticationv1.TokenRequest
	deadline := time.Now().Add(30 * time.Second)
	for {
		var err error
		tok, err = cs.CoreV1().ServiceAccounts(ns).CreateToken(ctx, name, &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &exp}}, metav1.CreateOptions{})
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("token for %s/%s: %v", ns, name, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	cfg := rest.AnonymousClientConfig(admin) // keeps the CA, drops the admin's credentials
	cfg.BearerToken = tok.Status.Token
	return cfg
}

func TestKubeRBACFromDeployManifests(t *testing.T) {
	c := kubetest.Need(t, cluster)
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	objs := readManifests(t)
	applyManifests(ctx, t, c.RestConfig, objs)
	saCfg := serviceAccountConfig(ctx, t, c.RestConfig, "ship-system", "ship")

	// Informer caches on, as `ship serve` runs: their list and watch need
	// the manifests' permissions too.
	rt, err := New(Config{RestConfig: saCfg, Cache: true})
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close()
	saCS := kubernetes.NewForConfigOrDie(saCfg)
	// Checks read with the admin's clients, work done with the SA's.
	e := &env{t: t, ctx: ctx, rt: rt, rr: rt.Router(), cs: kubernetes.NewForConfigOrDie(c.RestConfig), gw: gwclient.NewForConfigOrDie(c.RestConfig)}
	if who, err := saCS.AuthenticationV1().SelfSubjectReviews().Create(ctx, &authenticationv1.SelfSubjectReview{}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	} else if u := who.Status.UserInfo.Username; u != "system:serviceaccount:ship-system:ship" {
		t.Fatalf("authenticated as %q", u)
	}

	for _, envName := range []string{"production", "staging"} {
		app := mkApp(t, fmt.Sprintf(`
name: rbac
environments: [%s]
kube:
  image: registry.example/rbac:{{.Version}}
  gateway: {name: %s, namespace: %s}
  autoscale: {min: 2, max: 4, targetCPU: 70}
  expose: true
`, envName, kubetest.GatewayName, kubetest.GatewayNamespace))
		t.Logf("env %s, namespace %s", envName, e.ns(app))
		e.apply(app, runtime.Stable, "v1", 2)
		e.waitReady(app, runtime.Stable, "v1", 2)
		e.apply(app, runtime.Canary, "v2", 1)
		e.waitReady(app, runtime.Canary, "v2", 1)
		if err := e.rr.SetWeight(ctx, app, "", 100); err != nil {
			t.Fatalf("set weight as ship's ServiceAccount: %v", err)
		}
		if got := e.routeWeights(app); got != "rbac-stable=99 rbac-canary=1" {
			t.Errorf("route at 1%%: %s", got)
		}
		e.weight(app, 100)
		if _, endpoint, err := e.rr.Weight(ctx, app, ""); err != nil || !strings.Contains(endpoint, kubetest.GatewayName) {
			t.Errorf("endpoint %q, %v", endpoint, err)
		}
		// Scale moves the HPA's bounds.
		e.apply(app, runtime.Stable, "v1", 3)
		h, err := e.cs.AutoscalingV2().HorizontalPodAutoscalers(e.ns(app)).Get(ctx, "rbac", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if *h.Spec.MinReplicas != 3 || h.Spec.MaxReplicas != 4 {
			t.Errorf("HPA %d..%d after scale 3", *h.Spec.MinReplicas, h.Spec.MaxReplicas)
		}
		// The LoadBalancer Service of an exposed app.
		if svc, err := e.cs.CoreV1().Services(e.ns(app)).Get(ctx, "rbac", metav1.GetOptions{}); err != nil || svc.Spec.Type != corev1.ServiceTypeLoadBalancer {
			if err == nil {
				err = fmt.Errorf("type %s", svc.Spec.Type)
			}
			t.Errorf("load balancer Service made as ship's ServiceAccount: %v", err)
		}
		// Reclaim: a forced apply is still a PATCH.
		if _, err := rt.Reclaim(ctx, app, "", runtime.Canary, runtime.Want{Version: "v2", Replicas: 1}); err != nil {
			t.Errorf("reclaim as ship's ServiceAccount: %v", err)
		}
		if err := e.rr.SetWeight(ctx, app, "", 0); err != nil {
			t.Fatal(err)
		}
		if err := rt.Remove(ctx, app, "", runtime.Canary); err != nil {
			t.Fatalf("remove canary as ship's ServiceAccount: %v", err)
		}
		e.waitReady(app, runtime.Stable, "v1", 3)
		if err := rt.Purge(ctx, app, ""); err != nil {
			t.Fatalf("purge as ship's ServiceAccount: %v", err)
		}
	}

	// Outside its namespaces, and beyond its kinds, ship is refused.
	outside := mkApp(t, `
name: rbac
kube:
  image: registry.example/rbac:{{.Version}}
  namespace: elsewhere
`)
	if err := rt.Apply(ctx, outside, "", runtime.Stable, runtime.Want{Version: "v1", Replicas: 1}); !apierrors.IsForbidden(err) {
		t.Errorf("apply in namespace elsewhere: %v, want forbidden", err)
	}
	dep := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "intruder"}}
	for _, ns := range []string{"kube-system", "default", kubetest.GatewayNamespace} {
		if _, err := saCS.AppsV1().Deployments(ns).Create(ctx, dep, metav1.CreateOptions{}); !apierrors.IsForbidden(err) {
			t.Errorf("create deployment in %s: %v, want forbidden", ns, err)
		}
	}
	if _, err := saCS.CoreV1().Secrets("ship-production").List(ctx, metav1.ListOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("list secrets in ship-production: %v, want forbidden", err)
	}
	if _, err := saCS.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "ship-new"}}, metav1.CreateOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("create namespace: %v, want forbidden", err)
	}
	if _, err := saCS.CoreV1().Namespaces().Get(ctx, "kube-system", metav1.GetOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("get namespace kube-system: %v, want forbidden", err)
	}
	if _, err := saCS.RbacV1().ClusterRoles().Get(ctx, "ship-apps", metav1.GetOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("read its own ClusterRole: %v, want forbidden", err)
	}
}
