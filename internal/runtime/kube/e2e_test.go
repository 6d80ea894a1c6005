package kube

// Scenarios on a real control plane (internal/kubetest): etcd,
// kube-apiserver, kube-controller-manager, kube-scheduler and kwok on
// loopback. Skipped only with SHIP_KUBE_TESTS=0.

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	gwclient "sigs.k8s.io/gateway-api/pkg/client/clientset/versioned"

	"github.com/shipteam/ship/internal/kubetest"
	"github.com/shipteam/ship/internal/release"
	"github.com/shipteam/ship/internal/runtime"
	"github.com/shipteam/ship/internal/spec"
)

var cluster *kubetest.Cluster

func TestMain(m *testing.M) { kubetest.Main(m, &cluster) }

type env struct {
	t   *testing.T
	ctx context.Context
	rt  *Runtime
	rr  runtime.Router
	cs  kubernetes.Interface
	gw  gwclient.Interface
}

func setup(t *testing.T) *env {
	t.Helper()
	c := kubetest.Need(t, cluster)
	t.Parallel()
	rt, err := New(Config{RestConfig: c.RestConfig})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	t.Cleanup(cancel)
	return &env{t: t, ctx: ctx, rt: rt, rr: rt.Router(), cs: kubernetes.NewForConfigOrDie(c.RestConfig), gw: gwclient.NewForConfigOrDie(c.RestConfig)}
}

func mkApp(t *testing.T, yaml string) spec.App {
	t.Helper()
	apps, err := spec.Parse(t.Name()+".yaml", []byte(yaml))
	if err != nil {
		t.Fatalf("spec: %v", err)
	}
	return apps[0]
}

func (e *env) ns(app spec.App) string {
	ns, err := app.NamespaceFor("")
	if err != nil {
		e.t.Fatal(err)
	}
	return ns
}

func (e *env) apply(app spec.App, tr runtime.Track, version string, replicas int) {
	e.t.Helper()
	if err := e.rt.Apply(e.ctx, app, "", tr, runtime.Want{Version: version, Replicas: replicas}); err != nil {
		e.t.Fatalf("apply %s %s x%d: %v", tr, version, replicas, err)
	}
}

// eventually polls f until it returns "" (done) or the deadline passes,
// then fails with f's last complaint.
func (e *env) eventually(what string, f func() string) {
	e.t.Helper()
	deadline := time.Now().Add(150 * time.Second) // the machine may be loaded
	last, start := "", time.Now()
	for time.Now().Before(deadline) {
		if last = f(); last == "" {
			e.t.Logf("%s: after %s", what, time.Since(start).Round(time.Millisecond))
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	e.t.Fatalf("%s: not reached: %s", what, last)
}

func (e *env) waitReady(app spec.App, tr runtime.Track, version string, replicas int) runtime.TrackStatus {
	e.t.Helper()
	var got runtime.TrackStatus
	e.eventually(fmt.Sprintf("%s %s %s ready x%d", app.Name, tr, version, replicas), func() string {
		st, err := e.rt.Status(e.ctx, app, "")
		if err != nil {
			return err.Error()
		}
		got = st[tr]
		if got.Failed {
			e.t.Fatalf("%s failed: %s", tr, got.Reason)
		}
		if got.Version != version || got.Desired != replicas || got.Ready != replicas {
			return fmt.Sprintf("%+v", got)
		}
		return ""
	})
	return got
}

func (e *env) routeWeights(app spec.App) string {
	route, err := e.gw.GatewayV1().HTTPRoutes(e.ns(app)).Get(e.ctx, app.Name, metav1.GetOptions{})
	if err != nil {
		e.t.Fatalf("get httproute: %v", err)
	}
	var parts []string
	for _, r := range route.Spec.Rules {
		for _, b := range r.BackendRefs {
			parts = append(parts, fmt.Sprintf("%s=%d", b.Name, *b.Weight))
		}
	}
	return strings.Join(parts, " ")
}

func (e *env) weight(app spec.App, want release.Weight) {
	e.t.Helper()
	got, _, err := e.rr.Weight(e.ctx, app, "")
	if err != nil {
		e.t.Fatal(err)
	}
	if got != want {
		e.t.Fatalf("Weight = %v, want %v", got, want)
	}
}

func TestKubeStableAvailable(t *testing.T) {
	e := setup(t)
	app := mkApp(t, `
name: plain
healthPath: /ready
environments: [staging]
strategy: {stepTimeout: 2m}
kube:
  image: registry.example/plain:{{.Version}}
  resources: {cpu: 100m, memory: 64Mi}
  env: {GREETING: "hello {{.Env}}"}
`)
	e.apply(app, runtime.Stable, "v1", 3)
	st := e.waitReady(app, runtime.Stable, "v1", 3)
	if st.Track != runtime.Stable || st.Restarts != 0 {
		t.Errorf("status %+v", st)
	}
	ns := e.ns(app)
	if ns != "ship-staging" {
		t.Errorf("namespace %q, want ship-staging (the default template)", ns)
	}
	d, err := e.cs.AppsV1().Deployments(ns).Get(e.ctx, "plain-stable", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	c := d.Spec.Template.Spec.Containers[0]
	if c.Image != "registry.example/plain:v1" {
		t.Errorf("image %q", c.Image)
	}
	if c.ReadinessProbe == nil || c.ReadinessProbe.HTTPGet.Path != "/ready" || c.LivenessProbe == nil || c.LivenessProbe.HTTPGet.Path != "/ready" {
		t.Errorf("probes %+v %+v", c.ReadinessProbe, c.LivenessProbe)
	}
	if *d.Spec.ProgressDeadlineSeconds != 96 {
		t.Errorf("progressDeadlineSeconds %d, want 96 (4/5 of the step timeout)", *d.Spec.ProgressDeadlineSeconds)
	}
	if q := c.Resources.Requests[corev1.ResourceCPU]; q.String() != "100m" {
		t.Errorf("cpu request %s", q.String())
	}
	if q := c.Resources.Limits[corev1.ResourceMemory]; q.String() != "64Mi" {
		t.Errorf("memory limit %s", q.String())
	}
	envs := map[string]string{}
	for _, ev := range c.Env {
		envs[ev.Name] = ev.Value
	}
	if envs["GREETING"] != "hello staging" || envs["PORT"] != "8080" || envs["SHIP_VERSION"] != "v1" || envs["SHIP_ENV"] != "staging" {
		t.Errorf("env %v", envs)
	}
	for k, v := range map[string]string{LabelManagedBy: "ship", LabelApp: "plain", LabelEnv: "staging", LabelTrack: "stable", LabelVersion: "v1"} {
		if d.Labels[k] != v {
			t.Errorf("label %s = %q, want %q", k, d.Labels[k], v)
		}
	}
	for _, name := range []string{"plain", "plain-stable"} {
		svc, err := e.cs.CoreV1().Services(ns).Get(e.ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatalf("service %s: %v", name, err)
		}
		if svc.Spec.Type != corev1.ServiceTypeClusterIP {
			t.Errorf("service %s type %s", name, svc.Spec.Type)
		}
	}
	if _, err := e.cs.PolicyV1().PodDisruptionBudgets(ns).Get(e.ctx, "plain", metav1.GetOptions{}); err != nil {
		t.Errorf("pdb: %v", err)
	}
	pods, err := e.cs.CoreV1().Pods(ns).List(e.ctx, metav1.ListOptions{LabelSelector: LabelApp + "=plain"})
	if err != nil || len(pods.Items) != 3 {
		t.Fatalf("pods: %v, %d", err, len(pods.Items))
	}
	// Same again: Apply is idempotent and the release stays where it is.
	e.apply(app, runtime.Stable, "v1", 3)
	e.waitReady(app, runtime.Stable, "v1", 3)
}

func TestKubeGatewayCanary(t *testing.T) {
	e := setup(t)
	app := mkApp(t, fmt.Sprintf(`
name: gw
kube:
  image: registry.example/gw:{{.Version}}
  gateway: {name: %s, namespace: %s}
`, kubetest.GatewayName, kubetest.GatewayNamespace))
	e.apply(app, runtime.Stable, "v1", 2)
	e.waitReady(app, runtime.Stable, "v1", 2)
	if got := e.routeWeights(app); got != "gw-stable=1 gw-canary=0" {
		t.Errorf("route before canary: %s", got)
	}
	route, _ := e.gw.GatewayV1().HTTPRoutes(e.ns(app)).Get(e.ctx, "gw", metav1.GetOptions{})
	if p := route.Spec.ParentRefs[0]; string(p.Name) != kubetest.GatewayName || string(*p.Namespace) != kubetest.GatewayNamespace {
		t.Errorf("parentRef %+v", p)
	}

	e.apply(app, runtime.Canary, "v2", 1)
	e.waitReady(app, runtime.Canary, "v2", 1)
	if err := e.rr.SetWeight(e.ctx, app, "", 100); err != nil {
		t.Fatal(err)
	}
	if got := e.routeWeights(app); got != "gw-stable=99 gw-canary=1" {
		t.Errorf("route at 1%%: %s", got)
	}
	e.weight(app, 100)
	if err := e.rr.SetWeight(e.ctx, app, "", 10); err != nil {
		t.Fatal(err)
	}
	if got := e.routeWeights(app); got != "gw-stable=999 gw-canary=1" {
		t.Errorf("route at 0.1%%: %s", got)
	}
	e.weight(app, 10)
	_, endpoint, _ := e.rr.Weight(e.ctx, app, "")
	if !strings.Contains(endpoint, kubetest.GatewayName) {
		t.Errorf("endpoint %q does not name the gateway", endpoint)
	}
	// An Apply in between keeps the weight in force.
	e.apply(app, runtime.Canary, "v2", 1)
	e.weight(app, 10)

	// Promote: stable to v2, weight back, canary removed.
	e.apply(app, runtime.Stable, "v2", 2)
	e.waitReady(app, runtime.Stable, "v2", 2)
	if err := e.rr.SetWeight(e.ctx, app, "", 0); err != nil {
		t.Fatal(err)
	}
	if err := e.rt.Remove(e.ctx, app, "", runtime.Canary); err != nil {
		t.Fatal(err)
	}
	if err := e.rt.Remove(e.ctx, app, "", runtime.Canary); err != nil {
		t.Fatalf("second Remove: %v", err)
	}
	e.eventually("canary gone", func() string {
		st, err := e.rt.Status(e.ctx, app, "")
		if err != nil {
			return err.Error()
		}
		if st[runtime.Canary].Version != "" {
			return fmt.Sprintf("canary %+v", st[runtime.Canary])
		}
		pods, err := e.cs.CoreV1().Pods(e.ns(app)).List(e.ctx, metav1.ListOptions{LabelSelector: LabelApp + "=gw," + LabelTrack + "=canary"})
		if err != nil {
			return err.Error()
		}
		if len(pods.Items) > 0 {
			return fmt.Sprintf("%d canary pods left", len(pods.Items))
		}
		return ""
	})
	if got := e.routeWeights(app); got != "gw-stable=1 gw-canary=0" {
		t.Errorf("route after promote: %s", got)
	}
	if st, _ := e.rt.Status(e.ctx, app, ""); st[runtime.Stable].Version != "v2" || st[runtime.Stable].Ready != 2 {
		t.Errorf("stable after promote %+v", st[runtime.Stable])
	}
}

func TestKubeReplicaRatio(t *testing.T) {
	e := setup(t)
	app := mkApp(t, `
name: ratio
kube:
  image: registry.example/ratio:{{.Version}}
`)
	e.apply(app, runtime.Stable, "v1", 3)
	e.apply(app, runtime.Canary, "v2", 1)
	e.waitReady(app, runtime.Stable, "v1", 3)
	e.waitReady(app, runtime.Canary, "v2", 1)
	svc := func() *corev1.Service {
		s, err := e.cs.CoreV1().Services(e.ns(app)).Get(e.ctx, "ratio", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	if sel := svc().Spec.Selector[LabelTrack]; sel != "stable" {
		t.Errorf("app service selects track %q before any weight, want stable", sel)
	}
	if err := e.rr.SetWeight(e.ctx, app, "", 1000); err != nil {
		t.Fatal(err)
	}
	if _, ok := svc().Spec.Selector[LabelTrack]; ok {
		t.Errorf("app service still selects one track at 10%%: %v", svc().Spec.Selector)
	}
	e.weight(app, 2500) // 1 canary of 4 pods
	st, err := e.rt.Status(e.ctx, app, "")
	if err != nil {
		t.Fatal(err)
	}
	if n := st[runtime.Canary].Note; !strings.Contains(n, "10% asked") || !strings.Contains(n, "25% given") || !strings.Contains(n, "1 canary of 4") {
		t.Errorf("canary note %q", n)
	}
	if st[runtime.Stable].Note != "" {
		t.Errorf("stable note %q", st[runtime.Stable].Note)
	}
	// 25% asked with 3+1 is what the replicas give: no note.
	if err := e.rr.SetWeight(e.ctx, app, "", 2500); err != nil {
		t.Fatal(err)
	}
	if st, _ := e.rt.Status(e.ctx, app, ""); st[runtime.Canary].Note != "" {
		t.Errorf("note at an exact ratio: %q", st[runtime.Canary].Note)
	}
	if err := e.rr.SetWeight(e.ctx, app, "", 0); err != nil {
		t.Fatal(err)
	}
	e.weight(app, 0)
	if sel := svc().Spec.Selector[LabelTrack]; sel != "stable" {
		t.Errorf("app service selects track %q at 0, want stable", sel)
	}
}

func TestKubeScaleAndHPA(t *testing.T) {
	e := setup(t)
	plain := mkApp(t, `
name: scale
kube:
  image: registry.example/scale:{{.Version}}
`)
	e.apply(plain, runtime.Stable, "v1", 3)
	e.waitReady(plain, runtime.Stable, "v1", 3)
	e.apply(plain, runtime.Stable, "v1", 10)
	e.waitReady(plain, runtime.Stable, "v1", 10)
	if _, err := e.cs.AutoscalingV2().HorizontalPodAutoscalers(e.ns(plain)).Get(e.ctx, "scale", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("hpa without kube.autoscale: %v", err)
	}

	auto := mkApp(t, `
name: auto
kube:
  image: registry.example/auto:{{.Version}}
  resources: {cpu: 100m}
  autoscale: {min: 2, max: 5, targetCPU: 70}
`)
	ns := e.ns(auto)
	hpa := func() *autoscalingv2.HorizontalPodAutoscaler {
		h, err := e.cs.AutoscalingV2().HorizontalPodAutoscalers(ns).Get(e.ctx, "auto", metav1.GetOptions{})
		if err != nil {
			t.Fatalf("hpa: %v", err)
		}
		return h
	}
	e.apply(auto, runtime.Stable, "v1", 3)
	h := hpa()
	if *h.Spec.MinReplicas != 3 || h.Spec.MaxReplicas != 5 || h.Spec.ScaleTargetRef.Name != "auto-stable" {
		t.Errorf("hpa %d..%d -> %s", *h.Spec.MinReplicas, h.Spec.MaxReplicas, h.Spec.ScaleTargetRef.Name)
	}
	if m := h.Spec.Metrics[0]; m.Resource.Name != corev1.ResourceCPU || *m.Resource.Target.AverageUtilization != 70 {
		t.Errorf("hpa metric %+v", m)
	}
	// The HPA, not ship, brings the Deployment up to its floor.
	e.waitReady(auto, runtime.Stable, "v1", 3)
	e.apply(auto, runtime.Stable, "v1", 10)
	if h := hpa(); *h.Spec.MinReplicas != 10 || h.Spec.MaxReplicas != 10 {
		t.Errorf("hpa after scale 10: %d..%d", *h.Spec.MinReplicas, h.Spec.MaxReplicas)
	}
	e.waitReady(auto, runtime.Stable, "v1", 10)
	// A canary never comes under the HPA.
	e.apply(auto, runtime.Canary, "v2", 1)
	e.waitReady(auto, runtime.Canary, "v2", 1)
	if h := hpa(); h.Spec.ScaleTargetRef.Name != "auto-stable" {
		t.Errorf("hpa targets %s", h.Spec.ScaleTargetRef.Name)
	}
	if err := e.rt.Remove(e.ctx, auto, "", runtime.Stable); err != nil {
		t.Fatal(err)
	}
	if _, err := e.cs.AutoscalingV2().HorizontalPodAutoscalers(ns).Get(e.ctx, "auto", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("hpa after removing stable: %v", err)
	}
}

func TestKubeExposeLoadBalancer(t *testing.T) {
	e := setup(t)
	app := mkApp(t, `
name: public
kube:
  image: registry.example/public:{{.Version}}
  expose: true
`)
	e.apply(app, runtime.Stable, "v1", 1)
	svc, err := e.cs.CoreV1().Services(e.ns(app)).Get(e.ctx, "public", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if svc.Spec.Type != corev1.ServiceTypeLoadBalancer || svc.Spec.Ports[0].Port != ServicePort || svc.Spec.Ports[0].NodePort == 0 {
		t.Errorf("service %s type %s ports %+v", svc.Name, svc.Spec.Type, svc.Spec.Ports)
	}
	if _, endpoint, err := e.rr.Weight(e.ctx, app, ""); err != nil || !strings.HasPrefix(endpoint, "public.") {
		t.Errorf("endpoint %q, %v (no load balancer address on this cluster)", endpoint, err)
	}
	tr, err := e.cs.CoreV1().Services(e.ns(app)).Get(e.ctx, "public-stable", metav1.GetOptions{})
	if err != nil || tr.Spec.Type != corev1.ServiceTypeClusterIP {
		t.Errorf("track service: %v %v", err, tr.Spec.Type)
	}
}

func TestKubeHandEdits(t *testing.T) {
	e := setup(t)
	app := mkApp(t, `
name: edited
kube:
  image: registry.example/edited:{{.Version}}
`)
	ns := e.ns(app)
	e.apply(app, runtime.Stable, "v1", 2)
	e.waitReady(app, runtime.Stable, "v1", 2)

	// Fields ship does not manage, changed by hand, survive an Apply.
	patch := `{"metadata":{"annotations":{"team.example/owner":"payments"}},"spec":{"revisionHistoryLimit":3,"minReadySeconds":1}}`
	if _, err := e.cs.AppsV1().Deployments(ns).Patch(e.ctx, "edited-stable", types.MergePatchType, []byte(patch), metav1.PatchOptions{FieldManager: "kubectl-edit"}); err != nil {
		t.Fatal(err)
	}
	e.apply(app, runtime.Stable, "v2", 2)
	e.waitReady(app, runtime.Stable, "v2", 2)
	d, err := e.cs.AppsV1().Deployments(ns).Get(e.ctx, "edited-stable", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if d.Annotations["team.example/owner"] != "payments" || *d.Spec.RevisionHistoryLimit != 3 || d.Spec.MinReadySeconds != 1 {
		t.Errorf("hand edits lost: annotations %v revisionHistoryLimit %d minReadySeconds %d", d.Annotations, *d.Spec.RevisionHistoryLimit, d.Spec.MinReadySeconds)
	}

	// A field ship manages, changed by hand: the next Apply reports the
	// conflict and leaves the hand edit in place.
	patch = `{"spec":{"replicas":5}}`
	if _, err := e.cs.AppsV1().Deployments(ns).Patch(e.ctx, "edited-stable", types.MergePatchType, []byte(patch), metav1.PatchOptions{FieldManager: "kubectl-edit"}); err != nil {
		t.Fatal(err)
	}
	err = e.rt.Apply(e.ctx, app, "", runtime.Stable, runtime.Want{Version: "v2", Replicas: 2})
	if err == nil || !IsConflict(err) {
		t.Fatalf("Apply after a hand edit of replicas: err %v, want a conflict", err)
	}
	if !strings.Contains(err.Error(), "spec.replicas") || !strings.Contains(err.Error(), "kubectl-edit") {
		t.Errorf("conflict error does not name the field and manager: %v", err)
	}
	d, err = e.cs.AppsV1().Deployments(ns).Get(e.ctx, "edited-stable", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if *d.Spec.Replicas != 5 {
		t.Errorf("replicas %d after the refused Apply, want the hand edit 5", *d.Spec.Replicas)
	}
}

func TestKubeUnschedulableFails(t *testing.T) {
	e := setup(t)
	good := mkApp(t, `
name: steady
kube:
  image: registry.example/steady:{{.Version}}
  resources: {cpu: 100m}
`)
	bad := mkApp(t, `
name: huge
strategy: {stepTimeout: 10s}
kube:
  image: registry.example/huge:{{.Version}}
  resources: {cpu: "1000"}
`)
	e.apply(good, runtime.Stable, "v1", 2)
	e.apply(bad, runtime.Stable, "v1", 1)
	var reason string
	e.eventually("unschedulable reported", func() string {
		st, err := e.rt.Status(e.ctx, bad, "")
		if err != nil {
			return err.Error()
		}
		s := st[runtime.Stable]
		if !s.Failed || s.Ready != 0 {
			return fmt.Sprintf("%+v", s)
		}
		reason = s.Reason
		return ""
	})
	if !strings.Contains(reason, "Unschedulable") && !strings.Contains(reason, "ProgressDeadlineExceeded") {
		t.Errorf("reason %q", reason)
	}
	e.eventually("progress deadline exceeded", func() string {
		st, err := e.rt.Status(e.ctx, bad, "")
		if err != nil {
			return err.Error()
		}
		if s := st[runtime.Stable]; !strings.HasPrefix(s.Reason, "ProgressDeadlineExceeded") {
			return s.Reason
		}
		return ""
	})
	// The other app is untouched.
	e.waitReady(good, runtime.Stable, "v1", 2)
}

func TestKubeNeverReadyCanaryFailsStableServes(t *testing.T) {
	e := setup(t)
	app := mkApp(t, `
name: stuck
strategy: {stepTimeout: 10s}
kube:
  image: registry.example/stuck:{{.Version}}
`)
	e.apply(app, runtime.Stable, "v1", 2)
	e.waitReady(app, runtime.Stable, "v1", 2)
	e.apply(app, runtime.Canary, kubetest.NeverReadyVersion, 1)
	e.eventually("canary failed with the cluster's reason", func() string {
		st, err := e.rt.Status(e.ctx, app, "")
		if err != nil {
			return err.Error()
		}
		c := st[runtime.Canary]
		if !c.Failed || !strings.HasPrefix(c.Reason, "ProgressDeadlineExceeded") || c.Ready != 0 || c.Version != kubetest.NeverReadyVersion {
			return fmt.Sprintf("canary %+v", c)
		}
		if s := st[runtime.Stable]; s.Failed || s.Ready != 2 || s.Version != "v1" {
			return fmt.Sprintf("stable %+v", s)
		}
		return ""
	})
	if err := e.rt.Remove(e.ctx, app, "", runtime.Canary); err != nil {
		t.Fatal(err)
	}
	st := e.waitReady(app, runtime.Stable, "v1", 2)
	if st.Failed {
		t.Errorf("stable %+v", st)
	}
}

func TestKubeGatewayAbort(t *testing.T) {
	e := setup(t)
	app := mkApp(t, fmt.Sprintf(`
name: aborted
kube:
  image: registry.example/aborted:{{.Version}}
  gateway: {name: %s, namespace: %s}
`, kubetest.GatewayName, kubetest.GatewayNamespace))
	e.apply(app, runtime.Stable, "v1", 2)
	e.apply(app, runtime.Canary, "v2", 1)
	e.waitReady(app, runtime.Canary, "v2", 1)
	if err := e.rr.SetWeight(e.ctx, app, "", 100); err != nil {
		t.Fatal(err)
	}
	if got := e.routeWeights(app); got != "aborted-stable=99 aborted-canary=1" {
		t.Fatalf("route at 1%%: %s", got)
	}
	// Abort: weight back first, then the canary goes; stable is untouched.
	if err := e.rr.SetWeight(e.ctx, app, "", 0); err != nil {
		t.Fatal(err)
	}
	if got := e.routeWeights(app); got != "aborted-stable=1 aborted-canary=0" {
		t.Errorf("route after abort: %s", got)
	}
	if err := e.rt.Remove(e.ctx, app, "", runtime.Canary); err != nil {
		t.Fatal(err)
	}
	e.eventually("canary gone", func() string {
		if _, err := e.cs.AppsV1().Deployments(e.ns(app)).Get(e.ctx, "aborted-canary", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			return fmt.Sprintf("canary deployment: %v", err)
		}
		return ""
	})
	e.waitReady(app, runtime.Stable, "v1", 2)
	e.weight(app, 0)
}

// TestKubeAPIServerRestartMidRollout is not parallel: it takes the shared
// apiserver away, which the other tests must not see.
func TestKubeAPIServerRestartMidRollout(t *testing.T) {
	c := kubetest.Need(t, cluster)
	rt, err := New(Config{RestConfig: c.RestConfig})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	e := &env{t: t, ctx: ctx, rt: rt, rr: rt.Router(), cs: kubernetes.NewForConfigOrDie(c.RestConfig), gw: gwclient.NewForConfigOrDie(c.RestConfig)}
	app := mkApp(t, `
name: restart
kube:
  image: registry.example/restart:{{.Version}}
`)
	e.apply(app, runtime.Stable, "v1", 4)
	e.waitReady(app, runtime.Stable, "v1", 4)
	// Each new pod must stay ready 3s before the next is surged (a field
	// ship leaves alone), so the rollout of v2 takes about 12s.
	if _, err := e.cs.AppsV1().Deployments(e.ns(app)).Patch(ctx, "restart-stable", types.MergePatchType, []byte(`{"spec":{"minReadySeconds":3}}`), metav1.PatchOptions{FieldManager: "test"}); err != nil {
		t.Fatal(err)
	}
	e.apply(app, runtime.Stable, "v2", 4)
	st, err := rt.Status(ctx, app, "")
	if err != nil {
		t.Fatal(err)
	}
	if s := st[runtime.Stable]; s.Version != "v2" || s.Ready == 4 {
		t.Fatalf("rollout not under way before the restart: %+v", s)
	}
	if err := c.RestartAPIServer(ctx); err != nil {
		t.Fatalf("restart apiserver: %v", err)
	}
	// Applying again after the restart is harmless (the engine may repeat
	// any call), and the rollout reaches its end.
	e.apply(app, runtime.Stable, "v2", 4)
	e.waitReady(app, runtime.Stable, "v2", 4)
}

func TestKubePurgeByLabels(t *testing.T) {
	e := setup(t)
	app := mkApp(t, fmt.Sprintf(`
name: purged
kube:
  image: registry.example/purged:{{.Version}}
  resources: {cpu: 100m}
  autoscale: {min: 1, max: 3, targetCPU: 80}
  gateway: {name: %s, namespace: %s}
`, kubetest.GatewayName, kubetest.GatewayNamespace))
	other := mkApp(t, `
name: neighbour
kube:
  image: registry.example/neighbour:{{.Version}}
`)
	e.apply(app, runtime.Stable, "v1", 1)
	e.apply(app, runtime.Canary, "v2", 1)
	e.apply(other, runtime.Stable, "v1", 1)
	if _, err := e.cs.AutoscalingV2().HorizontalPodAutoscalers(e.ns(app)).Get(e.ctx, "purged", metav1.GetOptions{}); err != nil {
		t.Fatalf("hpa before purge: %v", err)
	}
	if _, err := e.gw.GatewayV1().HTTPRoutes(e.ns(app)).Get(e.ctx, "purged", metav1.GetOptions{}); err != nil {
		t.Fatalf("httproute before purge: %v", err)
	}
	if err := e.rt.Purge(e.ctx, app, ""); err != nil {
		t.Fatal(err)
	}
	ns := e.ns(app)
	sel := metav1.ListOptions{LabelSelector: LabelApp + "=purged"}
	e.eventually("everything of purged gone", func() string {
		var left []string
		if l, _ := e.cs.AppsV1().Deployments(ns).List(e.ctx, sel); len(l.Items) > 0 {
			left = append(left, fmt.Sprintf("%d deployments", len(l.Items)))
		}
		if l, _ := e.cs.CoreV1().Services(ns).List(e.ctx, sel); len(l.Items) > 0 {
			left = append(left, fmt.Sprintf("%d services", len(l.Items)))
		}
		if l, _ := e.cs.AutoscalingV2().HorizontalPodAutoscalers(ns).List(e.ctx, sel); len(l.Items) > 0 {
			left = append(left, "hpa")
		}
		if l, _ := e.cs.PolicyV1().PodDisruptionBudgets(ns).List(e.ctx, sel); len(l.Items) > 0 {
			left = append(left, "pdb")
		}
		if l, _ := e.gw.GatewayV1().HTTPRoutes(ns).List(e.ctx, sel); len(l.Items) > 0 {
			left = append(left, "httproute")
		}
		return strings.Join(left, ", ")
	})
	if _, err := e.cs.AppsV1().Deployments(ns).Get(e.ctx, "neighbour-stable", metav1.GetOptions{}); err != nil {
		t.Errorf("the other app's deployment: %v", err)
	}
}

// TestKubeImagePerEnvironment: kube.image with {{.Env}} gives each
// environment its own image, on the Deployment ship applies and in the
// image the drift check compares it with. Before, both rendered the default
// environment: staging ran production's image, and the drift check did not
// see it.
func TestKubeImagePerEnvironment(t *testing.T) {
	e := setup(t)
	app := mkApp(t, `
name: envimg
environments: [production, staging]
kube:
  image: registry.example/{{.App}}-{{.Env}}:{{.Version}}
`)
	image := func(env string) string {
		t.Helper()
		ns, err := app.NamespaceFor(env)
		if err != nil {
			t.Fatal(err)
		}
		d, err := e.cs.AppsV1().Deployments(ns).Get(e.ctx, "envimg-stable", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return d.Spec.Template.Spec.Containers[0].Image
	}
	status := func(env string) runtime.TrackStatus {
		t.Helper()
		st, err := e.rt.Status(e.ctx, app, env)
		if err != nil {
			t.Fatal(err)
		}
		return st[runtime.Stable]
	}
	for _, env := range app.Environments {
		if err := e.rt.Apply(e.ctx, app, env, runtime.Stable, runtime.Want{Version: "v1", Replicas: 1}); err != nil {
			t.Fatalf("apply %s: %v", env, err)
		}
	}
	for _, env := range app.Environments {
		e.eventually(env+" stable v1 ready", func() string {
			if st := status(env); st.Version != "v1" || st.Ready != 1 {
				return fmt.Sprintf("%+v", st)
			}
			return ""
		})
		if got, want := image(env), "registry.example/envimg-"+env+":v1"; got != want {
			t.Errorf("%s runs image %s, want %s", env, got, want)
		}
		// What the idle drift check reads: nothing changed by hand.
		if d := status(env).Drift; d != "" {
			t.Errorf("%s: drift %q reported for the image ship applied", env, d)
		}
	}

	// Staging's image set by hand to production's: a drift for staging
	// (comparing with the default environment's image would not see it).
	ns, _ := app.NamespaceFor("staging")
	d, err := e.cs.AppsV1().Deployments(ns).Get(e.ctx, "envimg-stable", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	d.Spec.Template.Spec.Containers[0].Image = "registry.example/envimg-production:v1"
	if _, err := e.cs.AppsV1().Deployments(ns).Update(e.ctx, d, metav1.UpdateOptions{FieldManager: "hand-set-image"}); err != nil {
		t.Fatal(err)
	}
	want := `image registry.example/envimg-production:v1 instead of registry.example/envimg-staging:v1 set by "hand-set-image"`
	if got := status("staging").Drift; got != want {
		t.Errorf("staging drift %q, want %q", got, want)
	}
	if got := status("production").Drift; got != "" {
		t.Errorf("production drift %q, want none", got)
	}
}
