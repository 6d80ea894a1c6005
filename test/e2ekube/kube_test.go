package e2ekube

import (
	"fmt"
	"github.com/shipteam/ship/internal/eventually"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/shipteam/ship/internal/engine"
	"github.com/shipteam/ship/internal/kubetest"
	"github.com/shipteam/ship/internal/release"
	"github.com/shipteam/ship/internal/runtime/kube"
)

// gatewaySpec is an app whose canary weights go on an HTTPRoute attached
// to the test cluster's Gateway; extra is appended under kube:.
func gatewaySpec(name, stepTimeout, extra string) string {
	return fmt.Sprintf(`name: %s
replicas: 2
strategy: {stepTimeout: %s}
kube:
  image: registry.example/%s:{{.Version}}
  gateway: {name: %s, namespace: %s}
%s`, name, stepTimeout, name, kubetest.GatewayName, kubetest.GatewayNamespace, extra)
}

// TestShipServeKubeCanaryPromoteAbortRollbackScale walks one app through
// the whole life the README promises, every command through the CLI
// against a `ship serve --runtime kube` process, and checks what the
// cluster holds after each.
func TestShipServeKubeCanaryPromoteAbortRollbackScale(t *testing.T) {
	t.Parallel()
	yaml := gatewaySpec("web", "60s", `  expose: true
  resources: {cpu: 100m}
  autoscale: {min: 2, max: 4, targetCPU: 70}
`)
	s := newShip(t, map[string]string{"web": yaml})
	k, ns := s.kube, namespace(t, yaml)

	// v1: nothing to compare with, straight to stable.
	r := s.mustCLI("deploy", "web", "v1", "--wait")
	if !strings.Contains(r.Stdout, "succeeded") {
		t.Errorf("deploy v1 --wait does not say it succeeded:\n%s", r)
	}
	k.mustAvailable(ns, "web-stable", "v1", 2)
	k.waitDeployments(ns, "web", "web-stable=v1")
	d, err := k.cs.AppsV1().Deployments(ns).Get(k.ctx, "web-stable", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if img := d.Spec.Template.Spec.Containers[0].Image; img != "registry.example/web:v1" {
		t.Errorf("web-stable image %q", img)
	}
	k.waitRoute(ns, "web", "web-stable=1 web-canary=0")
	route, err := k.gw.GatewayV1().HTTPRoutes(ns).Get(k.ctx, "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if p := route.Spec.ParentRefs; len(p) != 1 || string(p[0].Name) != kubetest.GatewayName || p[0].Namespace == nil || string(*p[0].Namespace) != kubetest.GatewayNamespace {
		t.Errorf("HTTPRoute parentRefs %+v, want the Gateway %s/%s", p, kubetest.GatewayNamespace, kubetest.GatewayName)
	}
	svc, err := k.cs.CoreV1().Services(ns).Get(k.ctx, "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if svc.Spec.Type != corev1.ServiceTypeLoadBalancer {
		t.Errorf("Service web is %s, want LoadBalancer (kube.expose)", svc.Spec.Type)
	}
	if got := k.hpaBounds(ns, "web"); got != "2..4 -> web-stable" {
		t.Errorf("HPA after deploy: %s", got)
	}

	// v2 held at 1%: 99/1 on the route, and status says so.
	s.mustCLI("deploy", "web", "v2", "--canary", "1%", "--wait")
	k.mustRoute(ns, "web", "web-stable=99 web-canary=1")
	k.waitDeployments(ns, "web", "web-canary=v2 web-stable=v1")
	k.waitAvailable(ns, "web-canary", "v2", 1)
	var st engine.AppStatus
	s.cliJSON(&st, "status", "web")
	if st.Weight != 100 || st.Stable.Version != "v1" || st.Canary.Version != "v2" || st.Release == nil || st.Release.State != release.Paused || st.Release.Version != "v2" {
		t.Errorf("status while held: weight %v stable %+v canary %+v release %+v", st.Weight, st.Stable, st.Canary, st.Release)
	}
	if !strings.Contains(st.Endpoint, kubetest.GatewayName) {
		t.Errorf("endpoint %q does not name the gateway", st.Endpoint)
	}

	// Promote: one Deployment at v2, the canary gone, all traffic stable.
	r = s.mustCLI("promote", "web", "--wait")
	if !strings.Contains(r.Stdout, "succeeded") {
		t.Errorf("promote --wait does not say it succeeded:\n%s", r)
	}
	k.mustAvailable(ns, "web-stable", "v2", 2)
	k.mustRoute(ns, "web", "web-stable=1 web-canary=0")
	// The canary Deployment is removed in the background.
	k.waitDeployments(ns, "web", "web-stable=v2")

	// v3 held at 10% (9/1), then aborted: weights back, canary gone,
	// stable untouched.
	s.mustCLI("deploy", "web", "v3", "--canary", "10", "--wait")
	k.mustRoute(ns, "web", "web-stable=9 web-canary=1")
	k.waitDeployments(ns, "web", "web-canary=v3 web-stable=v2")
	r = s.mustCLI("abort", "web")
	if !strings.Contains(r.Stdout, "aborted") {
		t.Errorf("abort output:\n%s", r)
	}
	k.mustRoute(ns, "web", "web-stable=1 web-canary=0")
	k.mustAvailable(ns, "web-stable", "v2", 2)
	k.waitDeployments(ns, "web", "web-stable=v2")

	// Rollback: to the previous good release, v1.
	r = s.mustCLI("rollback", "web", "--wait")
	if !strings.Contains(r.Stdout, "v1") {
		t.Errorf("rollback output does not name v1:\n%s", r)
	}
	k.mustAvailable(ns, "web-stable", "v1", 2)
	k.mustRoute(ns, "web", "web-stable=1 web-canary=0")
	k.waitDeployments(ns, "web", "web-stable=v1")

	// Scale: the HPA owns replicas, so its bounds move; its controller
	// then raises the Deployment.
	r = s.mustCLI("scale", "web", "10")
	if !strings.Contains(r.Stdout, "scaled to 10") {
		t.Errorf("scale output does not say 10:\n%s", r)
	}
	if got := k.hpaBounds(ns, "web"); got != "10..10 -> web-stable" {
		t.Errorf("HPA after scale 10: %s", got)
	}
	k.waitAvailable(ns, "web-stable", "v1", 10)
	eventually.Reason(t, waitFor, "ship status shows stable 10/10", func() string {
		var st engine.AppStatus
		s.cliJSON(&st, "status", "web")
		if st.Stable.Version != "v1" || st.Stable.Ready != 10 || st.Stable.Desired != 10 {
			return fmt.Sprintf("%+v", st.Stable)
		}
		return ""
	})

	// Every release is in history, newest first, with who and how.
	var hist []release.Release
	s.cliJSON(&hist, "history", "web")
	var got []string
	for _, h := range hist {
		got = append(got, fmt.Sprintf("%s:%s:%s", h.Version, h.Kind, h.State))
		if h.Actor != "admin" || h.Source != release.SourceCLI {
			t.Errorf("release %d %s: actor %q source %q, want admin via cli", h.ID, h.Version, h.Actor, h.Source)
		}
	}
	want := fmt.Sprintf("v1:%s:succeeded v3:%s:aborted v2:%s:succeeded v1:%s:succeeded",
		release.KindRollback, release.KindDeploy, release.KindDeploy, release.KindDeploy)
	if g := strings.Join(got, " "); g != want {
		t.Errorf("history %s, want %s", g, want)
	}
}

// hpaBounds is "min..max -> target" of the app's HPA.
func (k *kubeClient) hpaBounds(ns, name string) string {
	h, err := k.cs.AutoscalingV2().HorizontalPodAutoscalers(ns).Get(k.ctx, name, metav1.GetOptions{})
	if err != nil {
		return err.Error()
	}
	minR := int32(1)
	if h.Spec.MinReplicas != nil {
		minR = *h.Spec.MinReplicas
	}
	return fmt.Sprintf("%d..%d -> %s", minR, h.Spec.MaxReplicas, h.Spec.ScaleTargetRef.Name)
}

// TestShipServeKubeKilledMidRolloutResumes kills ship serve with SIGKILL
// right after a canary deploy is accepted, and again while stable rolls to
// the promoted version; each time a new ship serve on the same --data dir
// carries the release to its end, and the CLI that was following it
// reconnects and reports the outcome.
func TestShipServeKubeKilledMidRolloutResumes(t *testing.T) {
	t.Parallel()
	yaml := gatewaySpec("webkill", "60s", "")
	s := newShip(t, map[string]string{"webkill": yaml})
	k, ns := s.kube, namespace(t, yaml)

	s.mustCLI("deploy", "webkill", "v1", "--wait")
	k.mustAvailable(ns, "webkill-stable", "v1", 2)
	// Each new stable pod must stay ready 4s before the next is surged (a
	// field ship leaves alone), so promoting takes 8s or more: a window to
	// kill ship in.
	if _, err := k.cs.AppsV1().Deployments(ns).Patch(k.ctx, "webkill-stable", types.MergePatchType,
		[]byte(`{"spec":{"minReadySeconds":4}}`), metav1.PatchOptions{FieldManager: "e2ekube"}); err != nil {
		t.Fatal(err)
	}

	// Killed right after the deploy is recorded.
	cli := s.startCLI("deploy", "webkill", "v2", "--canary", "5", "--wait")
	eventually.Reason(t, waitFor, "deploy v2 accepted", func() string {
		if out := cli.Result(); !strings.Contains(out.Stdout, "release ") {
			if cli.Exited() {
				t.Fatalf("CLI ended before the release was accepted:\n%s", out)
			}
			return "no release yet"
		}
		return ""
	})
	s.kill()
	// Usually still pending (the canary not yet ready); the kill below,
	// during promotion, is the one checked to be mid-rollout.
	t.Logf("CLI output when ship was killed:\n%s", cli.Result().Stdout)
	s.start()
	r := s.waitCLI(cli, 2*waitFor)
	if r.Code != 0 || !strings.Contains(r.Stdout, "paused") {
		t.Fatalf("deploy --wait across a ship restart:\n%s", r)
	}
	t.Logf("%s", r)
	k.mustRoute(ns, "webkill", "webkill-stable=19 webkill-canary=1")
	k.mustAvailable(ns, "webkill-canary", "v2", 1)
	k.waitDeployments(ns, "webkill", "webkill-canary=v2 webkill-stable=v1")
	k.waitAvailable(ns, "webkill-stable", "v1", 2)

	// Killed while stable rolls to v2: the rollout is verifiably mid-way.
	cli = s.startCLI("promote", "webkill", "--wait")
	eventually.Reason(t, waitFor, "stable rolling to v2", func() string {
		d, err := k.cs.AppsV1().Deployments(ns).Get(k.ctx, "webkill-stable", metav1.GetOptions{})
		if err != nil {
			return err.Error()
		}
		if d.Spec.Template.Labels[kube.LabelVersion] != "v2" {
			return "stable template still " + d.Spec.Template.Labels[kube.LabelVersion]
		}
		if d.Status.UpdatedReplicas < 1 {
			return "no v2 pod yet"
		}
		return ""
	})
	d, err := k.cs.AppsV1().Deployments(ns).Get(k.ctx, "webkill-stable", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	mid := available(d, "v2", 2)
	s.kill()
	if mid == "" {
		t.Fatalf("stable finished rolling before ship was killed: no mid-rollout to resume")
	}
	if out := cli.Result().Stdout; strings.Contains(out, "succeeded") {
		t.Fatalf("the promotion had ended before ship was killed:\n%s", out)
	}
	t.Logf("killed mid-rollout: %s", mid)
	s.start()
	r = s.waitCLI(cli, 2*waitFor)
	if r.Code != 0 || !strings.Contains(r.Stdout, "succeeded") {
		t.Fatalf("promote --wait across a ship restart:\n%s", r)
	}
	t.Logf("%s", r)
	k.mustAvailable(ns, "webkill-stable", "v2", 2)
	k.mustRoute(ns, "webkill", "webkill-stable=1 webkill-canary=0")
	k.waitDeployments(ns, "webkill", "webkill-stable=v2")

	var hist []release.Release
	s.cliJSON(&hist, "history", "webkill")
	var got []string
	for _, h := range hist {
		got = append(got, h.Version+":"+string(h.State))
	}
	if g := strings.Join(got, " "); g != "v2:succeeded v1:succeeded" {
		t.Errorf("history %s", g)
	}
}

// TestShipServeKubeNeverReadyFailsWithClusterReason deploys a version
// whose pods never become ready: `deploy --wait` exits 1 and prints the
// cluster's own reason, and stable keeps serving throughout.
func TestShipServeKubeNeverReadyFailsWithClusterReason(t *testing.T) {
	t.Parallel()
	// Progress deadline = 4/5 of the step timeout: 12s.
	yaml := gatewaySpec("webstuck", "15s", "")
	s := newShip(t, map[string]string{"webstuck": yaml})
	k, ns := s.kube, namespace(t, yaml)

	s.mustCLI("deploy", "webstuck", "v1", "--wait")
	k.mustAvailable(ns, "webstuck-stable", "v1", 2)

	start := time.Now()
	cli := s.startCLI("deploy", "webstuck", kubetest.NeverReadyVersion, "--wait")
	// Stable serves the whole time the canary is stuck.
	for !cli.Exited() {
		d, err := k.cs.AppsV1().Deployments(ns).Get(k.ctx, "webstuck-stable", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if why := available(d, "v1", 2); why != "" {
			t.Fatalf("stable stopped serving while the canary was stuck: %s", why)
		}
		if w, err := k.routeWeights(ns, "webstuck"); err != nil || strings.HasPrefix(w, "webstuck-stable=0") {
			t.Fatalf("route while the canary was stuck: %q %v", w, err)
		}
		if time.Since(start) > 2*waitFor {
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	r := s.waitCLI(cli, time.Second)
	t.Logf("deploy %s --wait after %s:\n%s", kubetest.NeverReadyVersion, time.Since(start).Round(time.Millisecond), r)
	if r.Code != 1 {
		t.Errorf("exit %d, want 1 (release failed)", r.Code)
	}
	if out := r.Stdout + r.Stderr; !strings.Contains(out, "ProgressDeadlineExceeded") {
		t.Errorf("the cluster's reason (ProgressDeadlineExceeded) is not printed")
	}

	k.mustAvailable(ns, "webstuck-stable", "v1", 2)
	k.mustRoute(ns, "webstuck", "webstuck-stable=1 webstuck-canary=0")
	k.waitDeployments(ns, "webstuck", "webstuck-stable=v1")
	var st engine.AppStatus
	s.cliJSON(&st, "status", "webstuck")
	if st.Stable.Version != "v1" || st.Stable.Ready != 2 || st.Stable.Failed || st.Weight != 0 {
		t.Errorf("status after the failed release: weight %v stable %+v", st.Weight, st.Stable)
	}
	if st.Release == nil || st.Release.State != release.Failed || !strings.Contains(st.Release.Reason, "ProgressDeadlineExceeded") {
		t.Errorf("status release %+v", st.Release)
	}
}
