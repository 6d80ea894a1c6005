package kube

// Scenarios through ship's engine and API on the real control plane: a
// real store file, the real engine driving this package's Runtime and
// Router, the real API server on a loopback listener, driven with
// api.Client, the way `ship deploy` drives a `ship serve` on Kubernetes.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	appsv1ac "k8s.io/client-go/applyconfigurations/apps/v1"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"
	gwclient "sigs.k8s.io/gateway-api/pkg/client/clientset/versioned"

	"github.com/shipteam/ship/internal/analysis"
	"github.com/shipteam/ship/internal/api"
	"github.com/shipteam/ship/internal/engine"
	"github.com/shipteam/ship/internal/kubetest"
	"github.com/shipteam/ship/internal/release"
	"github.com/shipteam/ship/internal/runtime"
	"github.com/shipteam/ship/internal/spec"
	"github.com/shipteam/ship/internal/store"
)

// apiTokens adapts the store to the API's token lookup.
type apiTokens struct{ st *store.Store }

func (a apiTokens) TokenOwner(ctx context.Context, hash []byte) (api.TokenOwner, error) {
	o, err := a.st.TokenOwner(ctx, hash)
	if errors.Is(err, store.ErrNotFound) {
		return api.TokenOwner{}, api.ErrUnknownToken
	}
	return api.TokenOwner{Name: o.Name, Role: o.Role}, err
}

// shipProc is one in-process ship: store, engine, API. stop ends it the
// way `ship serve` shuts down (API, engine, store).
type shipProc struct {
	c    *api.Client
	stop func()
}

func startShip(t *testing.T, db string, catalog engine.Catalog, rt *Runtime, metrics analysis.Source) *shipProc {
	t.Helper()
	if metrics == nil {
		metrics = NoMetrics{}
	}
	ctx := context.Background()
	st, err := store.Open(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	token, hash, err := api.NewToken()
	if err != nil {
		t.Fatal(err)
	}
	if err := st.PutToken(ctx, "admin-"+fmt.Sprint(time.Now().UnixNano()), "admin", hash); err != nil {
		t.Fatal(err)
	}
	eng, err := engine.New(engine.Config{Store: st, Apps: catalog, Runtime: rt, Router: rt.Router(), Metrics: metrics})
	if err != nil {
		t.Fatal(err)
	}
	engCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- eng.Run(engCtx) }()
	srv, err := api.New(api.Config{Engine: eng, Tokens: apiTokens{st}})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv.Handler())
	c, err := api.NewClient(api.ClientConfig{Server: hs.URL, Token: token})
	if err != nil {
		t.Fatal(err)
	}
	stopped := false
	p := &shipProc{c: c}
	p.stop = func() {
		if stopped {
			return
		}
		stopped = true
		hs.CloseClientConnections()
		hs.Close()
		cancel()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("engine run: %v", err)
		}
		if err := st.Close(); err != nil {
			t.Errorf("close store: %v", err)
		}
	}
	t.Cleanup(p.stop)
	return p
}

type shipEnv struct {
	*env
	// metrics is the analysis source ship judges canaries by; nil is
	// NoMetrics, as on a cluster without Prometheus.
	metrics analysis.Source
	app     spec.App
	db      string
	ship    *shipProc
}

func setupShip(t *testing.T, yaml string, parallel bool) *shipEnv {
	t.Helper()
	c := kubetest.Need(t, cluster)
	if parallel {
		t.Parallel()
	}
	rt, err := New(Config{RestConfig: c.RestConfig})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	t.Cleanup(cancel)
	e := &env{t: t, ctx: ctx, rt: rt, rr: rt.Router(), cs: kubernetes.NewForConfigOrDie(c.RestConfig), gw: gwclient.NewForConfigOrDie(c.RestConfig)}
	app := mkApp(t, yaml)
	s := &shipEnv{env: e, app: app, db: filepath.Join(t.TempDir(), "ship.db")}
	s.restartShip()
	return s
}

// restartShip stops the running ship (if any) and starts a new one on the
// same store file and a new Runtime.
func (s *shipEnv) restartShip() {
	s.t.Helper()
	if s.ship != nil {
		s.ship.stop()
	}
	catalog, err := spec.NewCatalog(s.app)
	if err != nil {
		s.t.Fatal(err)
	}
	// ship reads Status from informer caches, as `ship serve` does.
	rt, err := New(Config{RestConfig: cluster.RestConfig, Cache: true})
	if err != nil {
		s.t.Fatal(err)
	}
	s.t.Cleanup(rt.Close)
	s.rt, s.rr = rt, rt.Router()
	s.ship = startShip(s.t, s.db, catalog, rt, s.metrics)
}

// waitRelease waits for release id to reach state; a terminal state other
// than the one wanted fails the test at once.
func (s *shipEnv) waitRelease(id int64, want release.State) release.Release {
	s.t.Helper()
	var r release.Release
	s.eventually(fmt.Sprintf("release #%d %s", id, want), func() string {
		var err error
		r, err = s.ship.c.Release(s.ctx, id)
		if err != nil {
			return err.Error()
		}
		if r.State == want {
			return ""
		}
		if r.State.Terminal() {
			s.t.Fatalf("release #%d ended %s (%s), want %s", id, r.State, r.Reason, want)
		}
		return fmt.Sprintf("%s: %s", r.State, r.Reason)
	})
	return r
}

func (s *shipEnv) deploy(req api.DeployRequest) release.Release {
	s.t.Helper()
	r, err := s.ship.c.Deploy(s.ctx, s.app.Name, req)
	if err != nil {
		s.t.Fatalf("deploy %+v: %v", req, err)
	}
	return r
}

// deployments lists the app's Deployments as name=version.
func (s *shipEnv) deployments() string {
	s.t.Helper()
	ds, err := s.cs.AppsV1().Deployments(s.ns(s.app)).List(s.ctx, metav1.ListOptions{LabelSelector: LabelApp + "=" + s.app.Name})
	if err != nil {
		s.t.Fatal(err)
	}
	var out []string
	for _, d := range ds.Items {
		if d.DeletionTimestamp != nil {
			continue
		}
		out = append(out, d.Name+"="+d.Labels[LabelVersion])
	}
	return strings.Join(out, " ")
}

func (s *shipEnv) waitDeployments(want string) {
	s.t.Helper()
	s.eventually("deployments "+want, func() string {
		if got := s.deployments(); got != want {
			return got
		}
		return ""
	})
}

// waitRoute waits for the HTTPRoute's weights: the engine records a
// state before it sets the state's weight.
func (s *shipEnv) waitRoute(want string) {
	s.t.Helper()
	s.eventually("route "+want, func() string {
		if got := s.routeWeights(s.app); got != want {
			return got
		}
		return ""
	})
}

func gatewayApp(name string) string {
	return fmt.Sprintf(`
name: %s
replicas: 2
strategy: {stepTimeout: 60s}
kube:
  image: registry.example/%s:{{.Version}}
  gateway: {name: %s, namespace: %s}
`, name, name, kubetest.GatewayName, kubetest.GatewayNamespace)
}

func TestShipCanaryPromoteAbortRollback(t *testing.T) {
	s := setupShip(t, gatewayApp("eng"), true)
	c := s.ship.c

	// v1: the first release makes stable Available.
	r := s.deploy(api.DeployRequest{Version: "v1"})
	s.waitRelease(r.ID, release.Succeeded)
	s.waitDeployments("eng-stable=v1")
	s.waitReady(s.app, runtime.Stable, "v1", 2)

	// v2 held at 1%: the HTTPRoute carries 99/1.
	r = s.deploy(api.DeployRequest{Version: "v2", Canary: 100})
	s.waitRelease(r.ID, release.Paused)
	s.waitRoute("eng-stable=99 eng-canary=1")
	st, err := c.Status(s.ctx, s.app.Name, "")
	if err != nil {
		t.Fatal(err)
	}
	if st.Weight != 100 || st.Canary.Version != "v2" || st.Stable.Version != "v1" || !strings.Contains(st.Endpoint, kubetest.GatewayName) {
		t.Errorf("status while held: %+v", st)
	}
	// Promote: one Deployment, at v2; the canary gone; all traffic stable.
	if _, err := c.Promote(s.ctx, s.app.Name, ""); err != nil {
		t.Fatal(err)
	}
	s.waitRelease(r.ID, release.Succeeded)
	s.waitDeployments("eng-stable=v2")
	s.waitReady(s.app, runtime.Stable, "v2", 2)
	s.waitRoute("eng-stable=1 eng-canary=0")

	// v3 held, then aborted: weights back, canary gone, stable untouched.
	r = s.deploy(api.DeployRequest{Version: "v3", Canary: 100})
	s.waitRelease(r.ID, release.Paused)
	s.waitRoute("eng-stable=99 eng-canary=1")
	if _, err := c.Abort(s.ctx, s.app.Name, "", "test abort"); err != nil {
		t.Fatal(err)
	}
	s.waitRelease(r.ID, release.Aborted)
	s.waitDeployments("eng-stable=v2")
	s.waitRoute("eng-stable=1 eng-canary=0")
	s.waitReady(s.app, runtime.Stable, "v2", 2)

	// Rollback to v1: a rolling release replaces stable.
	r, err = c.Rollback(s.ctx, s.app.Name, "", "")
	if err != nil {
		t.Fatal(err)
	}
	if r.Version != "v1" {
		t.Errorf("rollback targets %s, want v1", r.Version)
	}
	s.waitRelease(r.ID, release.Succeeded)
	s.waitDeployments("eng-stable=v1")
	s.waitReady(s.app, runtime.Stable, "v1", 2)
	hist, err := c.History(s.ctx, s.app.Name, "", 10)
	if err != nil {
		t.Fatal(err)
	}
	var states []string
	for _, h := range hist {
		states = append(states, h.Version+":"+string(h.State))
	}
	if got := strings.Join(states, " "); got != "v1:succeeded v3:aborted v2:succeeded v1:succeeded" {
		t.Errorf("history %s", got)
	}
}

func TestShipScaleMovesHPABounds(t *testing.T) {
	s := setupShip(t, `
name: engscale
replicas: 3
kube:
  image: registry.example/engscale:{{.Version}}
  autoscale: {min: 3, max: 6, targetCPU: 70}
`, true)
	r := s.deploy(api.DeployRequest{Version: "v1"})
	s.waitRelease(r.ID, release.Succeeded)
	s.waitReady(s.app, runtime.Stable, "v1", 3)
	hpaBounds := func() string {
		h, err := s.cs.AutoscalingV2().HorizontalPodAutoscalers(s.ns(s.app)).Get(s.ctx, "engscale", metav1.GetOptions{})
		if err != nil {
			return err.Error()
		}
		return fmt.Sprintf("%d..%d", *h.Spec.MinReplicas, h.Spec.MaxReplicas)
	}
	if got := hpaBounds(); got != "3..6" {
		t.Errorf("HPA bounds after deploy: %s", got)
	}
	st, err := s.ship.c.Scale(s.ctx, s.app.Name, "", 10)
	if err != nil {
		t.Fatal(err)
	}
	if st.Stable.Desired != 10 && st.Stable.Desired != 3 {
		t.Logf("status right after scale: %+v", st.Stable)
	}
	if got := hpaBounds(); got != "10..10" {
		t.Errorf("HPA bounds after scale 10: %s", got)
	}
	// The cluster's HPA controller raises the Deployment to its new floor.
	s.waitReady(s.app, runtime.Stable, "v1", 10)
	s.eventually("status shows 10 ready", func() string {
		st, err := s.ship.c.Status(s.ctx, s.app.Name, "")
		if err != nil {
			return err.Error()
		}
		if st.Stable.Ready != 10 || st.Stable.Desired != 10 {
			return fmt.Sprintf("%+v", st.Stable)
		}
		return ""
	})
}

func TestShipNeverReadyVersionFails(t *testing.T) {
	s := setupShip(t, `
name: engstuck
replicas: 2
strategy: {stepTimeout: 15s}
kube:
  image: registry.example/engstuck:{{.Version}}
`, true)
	r := s.deploy(api.DeployRequest{Version: "v1"})
	s.waitRelease(r.ID, release.Succeeded)
	r = s.deploy(api.DeployRequest{Version: kubetest.NeverReadyVersion})
	s.waitRelease(r.ID, release.Failed)
	r, err := s.ship.c.Release(s.ctx, r.ID)
	if err != nil {
		t.Fatal(err)
	}
	// The cluster's own words: the Deployment's progress deadline (12s, 4/5
	// of the step timeout) passes before the engine's step deadline.
	if !strings.Contains(r.Reason, "ProgressDeadlineExceeded") {
		t.Errorf("reason %q", r.Reason)
	}
	t.Logf("failed: %s", r.Reason)
	s.waitDeployments("engstuck-stable=v1")
	s.waitReady(s.app, runtime.Stable, "v1", 2)
}

// TestShipRestartsMidRollout is not parallel: it restarts the shared
// kube-apiserver. ship is stopped while a canary is held and a new ship on
// the same store file takes the release on; then kube-apiserver restarts
// while stable rolls to the new version, and the release still ends.
func TestShipRestartsMidRollout(t *testing.T) {
	s := setupShip(t, gatewayApp("engrestart"), false)
	r := s.deploy(api.DeployRequest{Version: "v1"})
	s.waitRelease(r.ID, release.Succeeded)
	s.waitReady(s.app, runtime.Stable, "v1", 2)
	// Each new pod must stay ready 4s before the next is surged (a field
	// ship leaves alone), so stable's rollout takes ~8s+.
	if _, err := s.cs.AppsV1().Deployments(s.ns(s.app)).Patch(s.ctx, "engrestart-stable", types.MergePatchType, []byte(`{"spec":{"minReadySeconds":4}}`), metav1.PatchOptions{FieldManager: "test"}); err != nil {
		t.Fatal(err)
	}

	r = s.deploy(api.DeployRequest{Version: "v2", Canary: 100})
	s.restartShip() // ship stopped before the canary is even held
	s.waitRelease(r.ID, release.Paused)
	s.waitRoute("engrestart-stable=99 engrestart-canary=1")
	if _, err := s.ship.c.Promote(s.ctx, s.app.Name, ""); err != nil {
		t.Fatal(err)
	}
	s.waitRelease(r.ID, release.Promoting)
	if err := cluster.RestartAPIServer(s.ctx); err != nil {
		t.Fatalf("restart apiserver: %v", err)
	}
	got := s.waitRelease(r.ID, release.Succeeded)
	t.Logf("release ended: %s", got.Reason)
	s.waitDeployments("engrestart-stable=v2")
	s.waitReady(s.app, runtime.Stable, "v2", 2)

	// ship stopped mid-promotion (stable rolling), a new one finishes it.
	r = s.deploy(api.DeployRequest{Version: "v3", Rolling: true})
	s.waitRelease(r.ID, release.Promoting)
	s.restartShip()
	s.waitRelease(r.ID, release.Succeeded)
	s.waitDeployments("engrestart-stable=v3")
	s.waitReady(s.app, runtime.Stable, "v3", 2)
}

// waitEvent streams release id's events as `ship watch` does (stored ones
// first, then live) until one matches, and returns it; none within the
// deadline fails the test with the events seen.
func (s *shipEnv) waitEvent(id int64, what string, match func(release.Event) bool) release.Event {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(s.ctx, 60*time.Second)
	defer cancel()
	var seen []string
	var got release.Event
	err := s.ship.c.Events(ctx, api.EventsQuery{EventFilter: api.EventFilter{ReleaseID: id}}, func(ev release.Event) error {
		seen = append(seen, string(ev.Type)+": "+ev.Message)
		if match(ev) {
			got = ev
			return api.ErrStop
		}
		return nil
	})
	if err != nil {
		s.t.Fatalf("release #%d: no event %s: %v; seen:\n%s", id, what, err, strings.Join(seen, "\n"))
	}
	return got
}

// TestShipReplicaRatioRoundsAndSaysSo: without a Gateway the canary's
// pods join the app's Service and the share is what the replica counts
// give. `deploy v2 --canary 1%` with 4 stable replicas holds 1 canary pod,
// i.e. 20%: status reports 20% in force, 1% asked and why, and the
// release's history has the rounding event with both weights.
func TestShipReplicaRatioRoundsAndSaysSo(t *testing.T) {
	s := setupShip(t, `
name: engratio
replicas: 4
strategy: {stepTimeout: 60s}
kube:
  image: registry.example/engratio:{{.Version}}
`, true)
	c := s.ship.c
	svcSelector := func() string {
		svc, err := s.cs.CoreV1().Services(s.ns(s.app)).Get(s.ctx, "engratio", metav1.GetOptions{})
		if err != nil {
			return err.Error()
		}
		return fmt.Sprint(svc.Spec.Selector)
	}

	r := s.deploy(api.DeployRequest{Version: "v1"})
	s.waitRelease(r.ID, release.Succeeded)
	s.waitReady(s.app, runtime.Stable, "v1", 4)

	r = s.deploy(api.DeployRequest{Version: "v2", Canary: 100})
	s.waitRelease(r.ID, release.Paused)
	s.waitReady(s.app, runtime.Canary, "v2", 1)
	// Both tracks behind the app's Service.
	if got, want := svcSelector(), "map["+LabelApp+":engratio]"; got != want {
		t.Errorf("app service selector while held: %s, want %s", got, want)
	}
	var st engine.AppStatus
	s.eventually("status with the rounded weight", func() string {
		var err error
		st, err = c.Status(s.ctx, s.app.Name, "")
		if err != nil {
			return err.Error()
		}
		if st.Weight != 2000 || st.WeightAsked != 100 || st.Canary.Version != "v2" || st.Canary.Desired != 1 || st.Stable.Desired != 4 {
			return fmt.Sprintf("weight %v asked %v canary %+v stable %+v", st.Weight, st.WeightAsked, st.Canary, st.Stable)
		}
		return ""
	})
	if st.Release == nil || st.Release.ID != r.ID || st.Release.Weight != 100 {
		t.Errorf("status release %+v, want #%d at 1%%", st.Release, r.ID)
	}
	for _, w := range []string{"1% asked", "20% given by replica counts", "1 canary of 5", "no gateway"} {
		if !strings.Contains(st.Note, w) {
			t.Errorf("status note %q does not say %q", st.Note, w)
		}
	}
	if !strings.HasSuffix(st.Endpoint, ".svc:80") {
		t.Errorf("endpoint %q, want the app's Service", st.Endpoint)
	}
	ev := s.waitEvent(r.ID, "release.weight_rounded", func(ev release.Event) bool { return ev.Type == "release.weight_rounded" })
	if ev.Data == nil || ev.Data.Asked != 100 || ev.Data.InForce == nil || *ev.Data.InForce != 2000 || !strings.Contains(ev.Message, "1% is 20% in force") {
		t.Errorf("rounding event: %q %v", ev.Message, ev.Data)
	}
	t.Logf("status note: %s; event: %s", st.Note, ev.Message)

	// Promote: one Deployment at v2, the canary gone, the Service back on
	// the stable track only, nothing rounded any more.
	if _, err := c.Promote(s.ctx, s.app.Name, ""); err != nil {
		t.Fatal(err)
	}
	s.waitRelease(r.ID, release.Succeeded)
	s.waitDeployments("engratio-stable=v2")
	s.waitReady(s.app, runtime.Stable, "v2", 4)
	s.eventually("service on stable only", func() string {
		if got, want := svcSelector(), "map["+LabelApp+":engratio "+LabelTrack+":stable]"; got != want {
			return got
		}
		return ""
	})
	s.eventually("status after promote", func() string {
		st, err := c.Status(s.ctx, s.app.Name, "")
		if err != nil {
			return err.Error()
		}
		if st.Weight != 0 || st.WeightAsked != 0 || st.Note != "" || st.Canary.Version != "" || st.Stable.Version != "v2" {
			return fmt.Sprintf("%+v", st)
		}
		return ""
	})
}

// deployment reads a Deployment of the app's namespace.
func (s *shipEnv) deployment(name string) *appsv1.Deployment {
	s.t.Helper()
	d, err := s.cs.AppsV1().Deployments(s.ns(s.app)).Get(s.ctx, name, metav1.GetOptions{})
	if err != nil {
		s.t.Fatal(err)
	}
	return d
}

// editDeployment is a plain read-modify-write by field manager, as
// `kubectl edit`/`kubectl set image` or a client-go script does, retried
// when a controller wrote in between.
func (s *shipEnv) editDeployment(name, manager string, edit func(*appsv1.Deployment)) {
	s.t.Helper()
	deps := s.cs.AppsV1().Deployments(s.ns(s.app))
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		d, err := deps.Get(s.ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		edit(d)
		_, err = deps.Update(s.ctx, d, metav1.UpdateOptions{FieldManager: manager})
		return err
	})
	if err != nil {
		s.t.Fatalf("update %s as %s: %v", name, manager, err)
	}
}

// waitConflict waits for release id's release.conflict event on track
// naming manager and field.
func (s *shipEnv) waitConflict(id int64, track, manager, field string) release.Event {
	s.t.Helper()
	return s.waitEvent(id, "release.conflict "+track+" "+manager, func(ev release.Event) bool {
		return ev.Type == "release.conflict" && ev.Data != nil && ev.Data.Track == track &&
			strings.Contains(ev.Message, `conflict with "`+manager+`"`) && strings.Contains(ev.Message, field)
	})
}

// TestShipHandEditsMidRelease: while a canary is held, people edit ship's
// Deployments as `kubectl` would — server-side apply under their own field
// manager, and a plain update. Fields ship does not set survive the
// promotion. A field ship sets, taken over by hand, is not overwritten:
// ship's apply is refused, the release's history gets a release.conflict
// event naming the field and the manager that holds it, status says so,
// and the held release goes on. When the release needs that field (a new
// image on a stable whose image was changed by hand), it fails at its
// deadline with the conflict in its reason; stable keeps the hand edit.
func TestShipHandEditsMidRelease(t *testing.T) {
	s := setupShip(t, fmt.Sprintf(`
name: enghand
replicas: 2
strategy: {stepTimeout: 20s}
kube:
  image: registry.example/enghand:{{.Version}}
  gateway: {name: %s, namespace: %s}
`, kubetest.GatewayName, kubetest.GatewayNamespace), true)
	c, ns := s.ship.c, s.ns(s.app)
	deps := s.cs.AppsV1().Deployments(ns)
	// ssa applies as `kubectl apply --server-side [--force-conflicts]`
	// under the field manager hand-ssa.
	ssa := func(d *appsv1ac.DeploymentApplyConfiguration, force bool) {
		t.Helper()
		if _, err := deps.Apply(s.ctx, d, metav1.ApplyOptions{FieldManager: "hand-ssa", Force: force}); err != nil {
			t.Fatalf("apply as hand-ssa: %v", err)
		}
	}
	r := s.deploy(api.DeployRequest{Version: "v1"})
	s.waitRelease(r.ID, release.Succeeded)
	s.waitReady(s.app, runtime.Stable, "v1", 2)
	r = s.deploy(api.DeployRequest{Version: "v2", Canary: 1000})
	s.waitRelease(r.ID, release.Paused)
	s.waitReady(s.app, runtime.Canary, "v2", 1)

	// (a) Fields ship does not set, on stable: an annotation and an
	// environment variable by server-side apply, a label by update.
	ssa(appsv1ac.Deployment("enghand-stable", ns).
		WithAnnotations(map[string]string{"team.example/owner": "payments"}).
		WithSpec(appsv1ac.DeploymentSpec().WithTemplate(corev1ac.PodTemplateSpec().WithSpec(corev1ac.PodSpec().
			WithContainers(corev1ac.Container().WithName("app").WithEnv(corev1ac.EnvVar().WithName("HAND_FLAG").WithValue("1")))))), false)
	s.editDeployment("enghand-stable", "hand-update", func(d *appsv1.Deployment) { d.Labels["team.example/tier"] = "gold" })

	// (b) A field ship sets: the canary's replicas, taken over by a forced
	// server-side apply, then by an update.
	ssa(appsv1ac.Deployment("enghand-canary", ns).WithSpec(appsv1ac.DeploymentSpec().WithReplicas(2)), true)
	ev := s.waitConflict(r.ID, "canary", "hand-ssa", ".spec.replicas")
	t.Logf("event: %s", ev.Message)
	if n := *s.deployment("enghand-canary").Spec.Replicas; n != 2 {
		t.Errorf("canary replicas %d after ship's refused apply, want the hand edit 2", n)
	}
	s.editDeployment("enghand-canary", "hand-update", func(d *appsv1.Deployment) { d.Spec.Replicas = ptr(int32(3)) })
	s.waitConflict(r.ID, "canary", "hand-update", ".spec.replicas")
	if n := *s.deployment("enghand-canary").Spec.Replicas; n != 3 {
		t.Errorf("canary replicas %d after ship's refused apply, want the hand edit 3", n)
	}
	st, err := c.Status(s.ctx, s.app.Name, "")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(st.Note, "canary: changed outside ship") || !strings.Contains(st.Note, `"hand-update"`) {
		t.Errorf("status note %q does not report the conflict", st.Note)
	}
	if got, err := c.Release(s.ctx, r.ID); err != nil || got.State != release.Paused {
		t.Fatalf("release after the hand edits: %+v %v, want still paused", got, err)
	}
	s.waitRoute("enghand-stable=9 enghand-canary=1") // the Gateway's split is ship's alone

	// Promote: the canary goes; stable is replaced by v2 and keeps every
	// hand edit to fields ship does not set.
	if _, err := c.Promote(s.ctx, s.app.Name, ""); err != nil {
		t.Fatal(err)
	}
	s.waitRelease(r.ID, release.Succeeded)
	s.waitDeployments("enghand-stable=v2")
	s.waitReady(s.app, runtime.Stable, "v2", 2)
	d := s.deployment("enghand-stable")
	envs := map[string]string{}
	for _, e := range d.Spec.Template.Spec.Containers[0].Env {
		envs[e.Name] = e.Value
	}
	if d.Annotations["team.example/owner"] != "payments" || d.Labels["team.example/tier"] != "gold" || envs["HAND_FLAG"] != "1" {
		t.Errorf("hand edits lost by the promotion: annotations %v labels %v env %v", d.Annotations, d.Labels, envs)
	}
	if img := d.Spec.Template.Spec.Containers[0].Image; img != "registry.example/enghand:v2" || envs["SHIP_VERSION"] != "v2" {
		t.Errorf("stable after promote: image %s env %v", img, envs)
	}
	s.eventually("status without a conflict", func() string {
		st, err := c.Status(s.ctx, s.app.Name, "")
		if err != nil {
			return err.Error()
		}
		if strings.Contains(st.Note, "changed outside ship") {
			return st.Note
		}
		return ""
	})

	// Stable's image changed by hand (a hotfix): the next release needs
	// that field, is refused, says why, and fails at its deadline; the
	// hotfix keeps running.
	s.editDeployment("enghand-stable", "hand-update", func(d *appsv1.Deployment) {
		d.Spec.Template.Spec.Containers[0].Image = "registry.example/enghand:v2-hotfix"
	})
	r = s.deploy(api.DeployRequest{Version: "v3", Rolling: true})
	s.waitConflict(r.ID, "stable", "hand-update", ".image")
	got := s.waitRelease(r.ID, release.Failed)
	t.Logf("failed: %s", got.Reason)
	for _, w := range []string{"not ready within 20s: 0 of 2 instances ready", "blocked by a change made outside ship", `conflict with "hand-update"`, ".image"} {
		if !strings.Contains(got.Reason, w) {
			t.Errorf("reason %q does not say %q", got.Reason, w)
		}
	}
	s.waitDeployments("enghand-stable=v2")
	if img := s.deployment("enghand-stable").Spec.Template.Spec.Containers[0].Image; img != "registry.example/enghand:v2-hotfix" {
		t.Errorf("stable image %s, want the hand edit kept", img)
	}

	// Reverting the value by hand would not help (the field stays
	// hand-update's); the way out the error names: `ship reclaim`. It puts
	// the recorded v2 image back and takes only that field: the hand edits
	// to fields ship does not set stay, and the next release goes through.
	res, err := c.Reclaim(s.ctx, s.app.Name, "")
	if err != nil {
		t.Fatalf("reclaim: %v", err)
	}
	t.Logf("reclaimed: %+v", res)
	if len(res.Tracks) != 1 || res.Tracks[0].Track != "stable" || res.Tracks[0].Version != "v2" ||
		!slices.Contains(res.Tracks[0].Lost, `"hand-update": deployment enghand-stable .spec.template.spec.containers[name="app"].image`) {
		t.Fatalf("reclaimed %+v, want stable v2 taken from hand-update's image", res)
	}
	d = s.deployment("enghand-stable")
	if img := d.Spec.Template.Spec.Containers[0].Image; img != "registry.example/enghand:v2" {
		t.Errorf("stable image %s after reclaim, want v2", img)
	}
	if d.Annotations["team.example/owner"] != "payments" || d.Labels["team.example/tier"] != "gold" {
		t.Errorf("reclaim took hand edits of fields ship does not set: annotations %v labels %v", d.Annotations, d.Labels)
	}
	r = s.deploy(api.DeployRequest{Version: "v3", Rolling: true})
	s.waitRelease(r.ID, release.Succeeded)
	s.waitDeployments("enghand-stable=v3")
	d = s.deployment("enghand-stable")
	if img := d.Spec.Template.Spec.Containers[0].Image; img != "registry.example/enghand:v3" {
		t.Errorf("stable image %s after the field was given back, want v3", img)
	}
	if d.Annotations["team.example/owner"] != "payments" || d.Labels["team.example/tier"] != "gold" {
		t.Errorf("hand edits lost: annotations %v labels %v", d.Annotations, d.Labels)
	}
}

func ptr[T any](v T) *T { return &v }

// The kube Runtime is the engine's Reclaimer: `ship reclaim` works on it.
var _ engine.Reclaimer = (*Runtime)(nil)

// owns reports whether manager's managedFields entry of d (the main
// resource, any operation) holds the field at path, e.g. "f:spec",
// "f:replicas".
func owns(t *testing.T, d *appsv1.Deployment, manager string, path ...string) bool {
	t.Helper()
	for _, m := range d.ManagedFields {
		if m.Manager != manager || m.Subresource != "" || m.FieldsV1 == nil {
			continue
		}
		var node map[string]any
		if err := json.Unmarshal(m.FieldsV1.Raw, &node); err != nil {
			t.Fatalf("managedFields of %s: %v", manager, err)
		}
		found := true
		for _, p := range path {
			next, ok := node[p].(map[string]any)
			if !ok {
				found = false
				break
			}
			node = next
		}
		if found {
			return true
		}
	}
	return false
}

// TestShipReclaimTakesBackHandEdits: hand edits of fields ship manages
// block a release — the canary's replicas taken by a forced server-side
// apply of another manager, stable's image changed by a plain update —
// and `ship reclaim` (through api.Client) is the one-command way out: the
// fields get ship's values back, ship's managedFields entry holds them
// again, the event names the managers that lost, and the release goes
// through, as does the next one.
func TestShipReclaimTakesBackHandEdits(t *testing.T) {
	s := setupShip(t, fmt.Sprintf(`
name: engreclaim
replicas: 2
strategy: {stepTimeout: 60s}
kube:
  image: registry.example/engreclaim:{{.Version}}
  gateway: {name: %s, namespace: %s}
`, kubetest.GatewayName, kubetest.GatewayNamespace), true)
	c, ns := s.ship.c, s.ns(s.app)
	deps := s.cs.AppsV1().Deployments(ns)
	imagePath := []string{"f:spec", "f:template", "f:spec", "f:containers", `k:{"name":"app"}`, "f:image"}
	replicasPath := []string{"f:spec", "f:replicas"}
	conflictEvent := func(id int64, track, manager, field string) {
		t.Helper()
		t.Logf("blocked: %s", s.waitConflict(id, track, manager, field).Message)
	}
	reclaimedEvent := func(id int64, lost string) {
		t.Helper()
		ev := s.waitEvent(id, "app.reclaimed "+lost, func(ev release.Event) bool {
			return ev.Type == "app.reclaimed" && strings.Contains(ev.Message, lost)
		})
		t.Logf("event: %s", ev.Message)
	}

	r := s.deploy(api.DeployRequest{Version: "v1"})
	s.waitRelease(r.ID, release.Succeeded)
	r = s.deploy(api.DeployRequest{Version: "v2", Canary: 1000})
	s.waitRelease(r.ID, release.Paused)
	s.waitReady(s.app, runtime.Canary, "v2", 1)

	// (1) The held canary's replicas, taken over by another manager with
	// a forced server-side apply (`kubectl apply --server-side
	// --force-conflicts`). ship's reapply is refused.
	hand := appsv1ac.Deployment("engreclaim-canary", ns).WithSpec(appsv1ac.DeploymentSpec().WithReplicas(3))
	if _, err := deps.Apply(s.ctx, hand, metav1.ApplyOptions{FieldManager: "hand-ssa", Force: true}); err != nil {
		t.Fatal(err)
	}
	conflictEvent(r.ID, "canary", "hand-ssa", ".spec.replicas")
	if d := s.deployment("engreclaim-canary"); *d.Spec.Replicas != 3 || owns(t, d, "ship", replicasPath...) {
		t.Fatalf("canary replicas %d, ship owns them: %v; want the hand edit 3 held by hand-ssa", *d.Spec.Replicas, owns(t, d, "ship", replicasPath...))
	}
	res, err := c.Reclaim(s.ctx, s.app.Name, "")
	if err != nil {
		t.Fatalf("reclaim: %v", err)
	}
	t.Logf("reclaimed: %+v", res)
	if res.Release != r.ID || len(res.Tracks) != 2 || len(res.Tracks[0].Lost) != 0 ||
		!slices.Equal(res.Tracks[1].Lost, []string{`"hand-ssa": deployment engreclaim-canary .spec.replicas`}) {
		t.Fatalf("reclaimed %+v, want stable untouched and the canary's replicas taken from hand-ssa", res)
	}
	d := s.deployment("engreclaim-canary")
	if *d.Spec.Replicas != 1 || !owns(t, d, "ship", replicasPath...) || owns(t, d, "hand-ssa", replicasPath...) {
		t.Errorf("canary after reclaim: replicas %d, ship owns them %v, hand-ssa %v; want 1 and ship's alone",
			*d.Spec.Replicas, owns(t, d, "ship", replicasPath...), owns(t, d, "hand-ssa", replicasPath...))
	}
	reclaimedEvent(r.ID, `taken back from "hand-ssa": deployment engreclaim-canary .spec.replicas`)

	// (2) Stable's image, changed by a plain update (`kubectl set image`):
	// the promotion needs that field and is refused.
	s.editDeployment("engreclaim-stable", "hand-update", func(d *appsv1.Deployment) {
		d.Spec.Template.Spec.Containers[0].Image = "registry.example/engreclaim:v1-hotfix"
	})
	if _, err := c.Promote(s.ctx, s.app.Name, ""); err != nil {
		t.Fatal(err)
	}
	conflictEvent(r.ID, "stable", "hand-update", ".image")
	if d := s.deployment("engreclaim-stable"); d.Spec.Template.Spec.Containers[0].Image != "registry.example/engreclaim:v1-hotfix" || owns(t, d, "ship", imagePath...) {
		t.Fatalf("stable image %s while blocked, want the hotfix held by hand-update", d.Spec.Template.Spec.Containers[0].Image)
	}
	res, err = c.Reclaim(s.ctx, s.app.Name, "")
	if err != nil {
		t.Fatalf("reclaim: %v", err)
	}
	t.Logf("reclaimed: %+v", res)
	lost := `"hand-update": deployment engreclaim-stable .spec.template.spec.containers[name="app"].image`
	if res.Tracks[0].Track != "stable" || res.Tracks[0].Version != "v2" || !slices.Contains(res.Tracks[0].Lost, lost) {
		t.Fatalf("reclaimed %+v, want stable at the promoted v2, taken from hand-update", res)
	}
	reclaimedEvent(r.ID, lost)
	s.waitRelease(r.ID, release.Succeeded)
	d = s.deployment("engreclaim-stable")
	if img := d.Spec.Template.Spec.Containers[0].Image; img != "registry.example/engreclaim:v2" || !owns(t, d, "ship", imagePath...) || owns(t, d, "hand-update", imagePath...) {
		t.Errorf("stable after reclaim: image %s, ship owns it %v, hand-update %v; want v2 and ship's alone",
			img, owns(t, d, "ship", imagePath...), owns(t, d, "hand-update", imagePath...))
	}

	// The next release changes both fields again, unrefused.
	r = s.deploy(api.DeployRequest{Version: "v3", Rolling: true})
	s.waitRelease(r.ID, release.Succeeded)
	s.waitDeployments("engreclaim-stable=v3")
	if img := s.deployment("engreclaim-stable").Spec.Template.Spec.Containers[0].Image; img != "registry.example/engreclaim:v3" {
		t.Errorf("stable image %s, want v3", img)
	}
}

// waitAppEvent streams app's events (stored ones first, then live) until
// one matches, and returns it with all the events of typ seen up to then.
func (s *shipEnv) waitAppEvent(typ, what string, match func(release.Event) bool) (release.Event, []release.Event) {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(s.ctx, 60*time.Second)
	defer cancel()
	var seen []string
	var got release.Event
	var ofType []release.Event
	err := s.ship.c.Events(ctx, api.EventsQuery{EventFilter: api.EventFilter{App: s.app.Name}}, func(ev release.Event) error {
		seen = append(seen, string(ev.Type)+": "+ev.Message)
		if string(ev.Type) == typ {
			ofType = append(ofType, ev)
		}
		if match(ev) {
			got = ev
			return api.ErrStop
		}
		return nil
	})
	if err != nil {
		s.t.Fatalf("%s: no event %s: %v; seen:\n%s", s.app.Name, what, err, strings.Join(seen, "\n"))
	}
	return got, ofType
}

// TestShipReportsAHandChangedImageOfAnIdleApp: with no release running,
// stable's image changed by a plain update of another manager (`kubectl
// set image`; the version label stays) is noticed: one app.conflict event
// naming the image and the manager, a note in status, the image left as
// is; `ship reclaim` (through api.Client) puts ship's image back and the
// note goes.
func TestShipReportsAHandChangedImageOfAnIdleApp(t *testing.T) {
	s := setupShip(t, gatewayApp("engdrift"), true)
	c := s.ship.c
	image := func() string {
		t.Helper()
		return s.deployment("engdrift-stable").Spec.Template.Spec.Containers[0].Image
	}
	r := s.deploy(api.DeployRequest{Version: "v1"})
	s.waitRelease(r.ID, release.Succeeded)

	hotfix := "registry.example/engdrift:v1-hotfix"
	s.editDeployment("engdrift-stable", "hand-set-image", func(d *appsv1.Deployment) {
		d.Spec.Template.Spec.Containers[0].Image = hotfix
	})
	ev, _ := s.waitAppEvent("app.conflict", "app.conflict naming the hotfix image and hand-set-image", func(ev release.Event) bool {
		return ev.Type == "app.conflict" && ev.Data != nil && ev.Data.Track == "stable" &&
			strings.Contains(ev.Message, "image "+hotfix) && strings.Contains(ev.Message, `"hand-set-image"`)
	})
	t.Logf("event: %s", ev.Message)
	if ev.ReleaseID != 0 || ev.Env != s.app.DefaultEnv() {
		t.Errorf("event %+v, want no release and env %s", ev, s.app.DefaultEnv())
	}
	s.eventually("status note naming the hand edit", func() string {
		st, err := c.Status(s.ctx, s.app.Name, "")
		if err != nil {
			return err.Error()
		}
		if !strings.Contains(st.Note, "stable: changed outside ship") || !strings.Contains(st.Note, hotfix) || !strings.Contains(st.Note, `"hand-set-image"`) {
			return "note: " + st.Note
		}
		return ""
	})
	if img := image(); img != hotfix {
		t.Fatalf("stable image %s, want the hand edit left as is", img)
	}
	// One event so far, however many ticks saw the edit (how many looks
	// record it is the engine unit test's job, with a fake clock:
	// TestIdleHandEditIsReportedOncePerDistinctDrift).
	if _, all := s.waitAppEvent("app.conflict", "the same event again", func(e release.Event) bool { return e.ID == ev.ID }); len(all) != 1 {
		t.Errorf("%d app.conflict events, want 1: %+v", len(all), all)
	}

	res, err := c.Reclaim(s.ctx, s.app.Name, "")
	if err != nil {
		t.Fatalf("reclaim: %v", err)
	}
	t.Logf("reclaimed: %+v", res)
	lost := `"hand-set-image": deployment engdrift-stable .spec.template.spec.containers[name="app"].image`
	if len(res.Tracks) != 1 || res.Tracks[0].Version != "v1" || !slices.Contains(res.Tracks[0].Lost, lost) {
		t.Fatalf("reclaimed %+v, want stable v1 taken from hand-set-image", res)
	}
	if img := image(); img != "registry.example/engdrift:v1" {
		t.Errorf("stable image %s after reclaim, want v1", img)
	}
	s.eventually("status without the note", func() string {
		st, err := c.Status(s.ctx, s.app.Name, "")
		if err != nil {
			return err.Error()
		}
		if strings.Contains(st.Note, "changed outside ship") {
			return "note: " + st.Note
		}
		return ""
	})
}

// TestShipStagingRunsItsOwnImageAndIsNotCalledADrift: an app whose image
// names its environment, deployed through ship to staging (not the default
// environment) and production. Each Deployment runs its own environment's
// image, and the idle drift check finds nothing to report for staging: the
// first app.conflict event is the one a hand edit of production's image
// causes, long after staging went idle.
func TestShipStagingRunsItsOwnImageAndIsNotCalledADrift(t *testing.T) {
	s := setupShip(t, `
name: engenvimg
environments: [production, staging]
strategy: {stepTimeout: 60s}
kube:
  image: registry.example/{{.App}}-{{.Env}}:{{.Version}}
`, true)
	c := s.ship.c
	nsOf := func(env string) string {
		t.Helper()
		ns, err := s.app.NamespaceFor(env)
		if err != nil {
			t.Fatal(err)
		}
		return ns
	}
	image := func(env string) string {
		t.Helper()
		d, err := s.cs.AppsV1().Deployments(nsOf(env)).Get(s.ctx, "engenvimg-stable", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return d.Spec.Template.Spec.Containers[0].Image
	}
	for _, env := range []string{"staging", "production"} {
		r := s.deploy(api.DeployRequest{Env: env, Version: "v1"})
		s.waitRelease(r.ID, release.Succeeded)
		if got, want := image(env), "registry.example/engenvimg-"+env+":v1"; got != want {
			t.Errorf("%s runs %s, want %s", env, got, want)
		}
		st, err := c.Status(s.ctx, s.app.Name, env)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(st.Note, "changed outside ship") {
			t.Errorf("%s status note %q: a drift for the image ship applied", env, st.Note)
		}
	}

	hotfix := "registry.example/engenvimg-production:v1-hotfix"
	s.editDeployment("engenvimg-stable", "hand-set-image", func(d *appsv1.Deployment) { // s.ns is the default env's
		d.Spec.Template.Spec.Containers[0].Image = hotfix
	})
	ev, all := s.waitAppEvent("app.conflict", "app.conflict for production's hotfix", func(ev release.Event) bool {
		return ev.Type == "app.conflict" && ev.Env == "production" && strings.Contains(ev.Message, hotfix)
	})
	t.Logf("event: %s", ev.Message)
	for _, e := range all {
		if e.Env == "staging" {
			t.Errorf("false drift reported for staging: %s", e.Message)
		}
	}
	st, err := c.Status(s.ctx, s.app.Name, "staging")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(st.Note, "changed outside ship") {
		t.Errorf("staging status note %q", st.Note)
	}
}
