package kube

// Canary analysis on Kubernetes judged on metrics from a real Prometheus:
// ship's engine drives this package's Runtime on the real control plane,
// and reads both tracks through analysis/prometheus. kwok pods run no
// code, so each track's pods are stood in for by an in-process exporter
// labelled as Prometheus' Kubernetes pod relabelling would label them;
// traffic follows the route's weight and the version each track runs.

import (
	"context"
	"fmt"
	"math"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	client "github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"k8s.io/client-go/kubernetes"
	gwclient "sigs.k8s.io/gateway-api/pkg/client/clientset/versioned"

	promsource "github.com/shipteam/ship/internal/analysis/prometheus"
	"github.com/shipteam/ship/internal/api"
	"github.com/shipteam/ship/internal/kubetest"
	"github.com/shipteam/ship/internal/promtest"
	"github.com/shipteam/ship/internal/release"
	"github.com/shipteam/ship/internal/runtime"
	"github.com/shipteam/ship/internal/spec"
)

// trackExporter serves the metrics of one track's pods.
type trackExporter struct {
	addr     string
	requests *client.CounterVec
	latency  client.Observer
	errAcc   float64 // fractional errors carried to the next batch
}

func newTrackExporter(t *testing.T) *trackExporter {
	t.Helper()
	reg := client.NewRegistry()
	req := client.NewCounterVec(client.CounterOpts{Name: "http_requests_total", Help: "Requests by status code."}, []string{"code"})
	lat := client.NewHistogram(client.HistogramOpts{Name: "http_request_duration_seconds", Help: "Request latency.", Buckets: client.DefBuckets})
	reg.MustRegister(req, lat)
	srv := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	t.Cleanup(srv.Close)
	return &trackExporter{addr: strings.TrimPrefix(srv.URL, "http://"), requests: req, latency: lat}
}

// serve counts n requests of which errFrac (carried over batches) fail.
func (x *trackExporter) serve(n int, errFrac float64) {
	x.errAcc += float64(n) * errFrac
	bad := int(math.Floor(x.errAcc))
	bad = min(bad, n)
	x.errAcc -= float64(bad)
	x.requests.WithLabelValues("500").Add(float64(bad))
	x.requests.WithLabelValues("200").Add(float64(n - bad))
	for i := 0; i < n; i++ {
		x.latency.Observe(0.02)
	}
}

// traffic sends perTick requests every 100ms to the app's tracks, split by
// the route's canary weight, to tracks that have ready pods; a track's
// error fraction is errFrac[its version].
type traffic struct {
	rt      *Runtime
	app     spec.App
	perTick float64
	errFrac map[string]float64
	pods    map[runtime.Track]*trackExporter
	acc     map[runtime.Track]float64
}

func (g *traffic) run(ctx context.Context) {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		st, err := g.rt.Status(ctx, g.app, "")
		if err != nil {
			continue
		}
		w, _, err := g.rt.Router().Weight(ctx, g.app, "")
		if err != nil {
			continue
		}
		share := map[runtime.Track]float64{runtime.Stable: 100 - w.Percent(), runtime.Canary: w.Percent()}
		if st[runtime.Canary].Ready == 0 {
			share[runtime.Stable] = 100
		}
		for _, tr := range runtime.Tracks {
			ts := st[tr]
			if ts.Ready == 0 || ts.Version == "" {
				continue
			}
			g.acc[tr] += g.perTick * share[tr] / 100
			n := int(g.acc[tr])
			g.acc[tr] -= float64(n)
			g.pods[tr].serve(n, g.errFrac[ts.Version])
		}
	}
}

// setupPrometheusShip is setupShip with a real Prometheus as ship's
// analysis source, scraping one exporter per track, and traffic flowing
// until the test ends.
func setupPrometheusShip(t *testing.T, yaml string, errFrac map[string]float64) *shipEnv {
	t.Helper()
	c := kubetest.Need(t, cluster)
	promtest.Need(t)
	t.Parallel()
	rt, err := New(Config{RestConfig: c.RestConfig})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	t.Cleanup(cancel)
	e := &env{t: t, ctx: ctx, rt: rt, rr: rt.Router(), cs: kubernetes.NewForConfigOrDie(c.RestConfig), gw: gwclient.NewForConfigOrDie(c.RestConfig)}
	app := mkApp(t, yaml)

	pods := map[runtime.Track]*trackExporter{}
	var targets []promtest.Target
	for _, tr := range runtime.Tracks {
		pods[tr] = newTrackExporter(t)
		// What labelmap(__meta_kubernetes_pod_label_(.+)) plus namespace
		// make of the labels ship puts on the track's pods.
		targets = append(targets, promtest.Target{Addr: pods[tr].addr, Labels: map[string]string{
			"namespace": e.ns(app), "ship_dev_app": app.Name, "ship_dev_env": app.DefaultEnv(), "ship_dev_track": string(tr),
		}})
	}
	prom := promtest.Start(t, promtest.StaticConfig("kubernetes-pods", time.Second, targets...))

	catalog, err := spec.NewCatalog(app)
	if err != nil {
		t.Fatal(err)
	}
	// What `ship serve --prometheus URL` builds.
	src, err := promsource.New(promsource.Config{URL: prom.URL, Apps: catalog, Tracks: rt})
	if err != nil {
		t.Fatal(err)
	}

	g := &traffic{rt: rt, app: app, perTick: 20, errFrac: errFrac, pods: pods, acc: map[runtime.Track]float64{}}
	gctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); g.run(gctx) }()
	t.Cleanup(func() { stop(); wg.Wait() })

	s := &shipEnv{env: e, app: app, db: filepath.Join(t.TempDir(), "ship.db"), metrics: src}
	s.restartShip()
	return s
}

// waitScraped waits until ship's source reads stable's traffic from
// Prometheus (its first scrape comes about 5s after it starts), so the
// release that follows is judged on windows, not on a first reading.
func (s *shipEnv) waitScraped() {
	s.t.Helper()
	s.eventually("stable traffic in Prometheus", func() string {
		st, _, err := s.metrics.Sample(s.ctx, s.app.Name, "")
		if err != nil {
			return err.Error()
		}
		if st.Requests == 0 || len(st.Bounds) == 0 {
			return fmt.Sprintf("stable %+v", st)
		}
		return ""
	})
}

// promApp walks 10% and 50% with 2s pauses, then 100%, judged every
// second on at least 10 canary requests.
func promApp(name string) string {
	return fmt.Sprintf(`
name: %s
replicas: 2
strategy:
  steps: [{weight: 10, pause: 2s}, {weight: 50, pause: 2s}, 100]
  stepTimeout: 60s
analysis: {interval: 1s, minRequests: 10, maxErrorRate: 0.05}
kube:
  image: registry.example/%s:{{.Version}}
  gateway: {name: %s, namespace: %s}
`, name, name, kubetest.GatewayName, kubetest.GatewayNamespace)
}

// TestPrometheusAnalysisAbortsAFailingCanary: a canary whose pods answer
// 40% 5xx is aborted by analysis at its first step: weight back to 0, the
// canary gone, stable untouched, and the reason names the error rate.
func TestPrometheusAnalysisAbortsAFailingCanary(t *testing.T) {
	s := setupPrometheusShip(t, promApp("promfail"), map[string]float64{"v1": 0, "v2": 0.4})
	r := s.deploy(api.DeployRequest{Version: "v1"})
	s.waitRelease(r.ID, release.Succeeded)
	s.waitReady(s.app, runtime.Stable, "v1", 2)
	s.waitScraped()

	start := time.Now()
	r = s.deploy(api.DeployRequest{Version: "v2"})
	r = s.waitRelease(r.ID, release.Aborted)
	t.Logf("aborted after %s: %s", time.Since(start).Round(time.Millisecond), r.Reason)
	if !strings.HasPrefix(r.Reason, "analysis failed: canary error rate") || !strings.Contains(r.Reason, "is above 5") {
		t.Errorf("abort reason %q, want the canary error rate above 5%%", r.Reason)
	}
	if r.Step != 0 {
		t.Errorf("aborted at step %d, want the first (10%%)", r.Step+1)
	}
	s.waitDeployments("promfail-stable=v1")
	s.waitRoute("promfail-stable=1 promfail-canary=0")
	s.weight(s.app, 0)
	s.waitReady(s.app, runtime.Stable, "v1", 2)
}

// TestPrometheusAnalysisPromotesAHealthyCanary: a canary without errors
// passes every step (10%, 50%, 100%) on Prometheus' numbers and replaces
// stable.
func TestPrometheusAnalysisPromotesAHealthyCanary(t *testing.T) {
	s := setupPrometheusShip(t, promApp("prompass"), map[string]float64{"v1": 0, "v2": 0})
	r := s.deploy(api.DeployRequest{Version: "v1"})
	s.waitRelease(r.ID, release.Succeeded)
	s.waitReady(s.app, runtime.Stable, "v1", 2)
	s.waitScraped()

	start := time.Now()
	r = s.deploy(api.DeployRequest{Version: "v2"})
	s.waitRelease(r.ID, release.Succeeded)
	t.Logf("promoted after %s", time.Since(start).Round(time.Millisecond))
	s.waitDeployments("prompass-stable=v2")
	s.weight(s.app, 0)

	// Both steps passed on traffic read from Prometheus: the step and
	// promoting events carry the verdict and its numbers.
	ctx, cancel := context.WithTimeout(s.ctx, 30*time.Second)
	defer cancel()
	var passed []string
	err := s.ship.c.Events(ctx, api.EventsQuery{EventFilter: api.EventFilter{ReleaseID: r.ID}}, func(ev release.Event) error {
		// Entering the first step has no verdict yet; every later step
		// and promoting carry the previous step's.
		if (ev.Type == "release.step" && ev.Step > 0) || ev.Type == "release.promoting" {
			var a release.Analysis
			if ev.Data != nil && ev.Data.Analysis != nil {
				a = *ev.Data.Analysis
			}
			if a.Verdict != "pass" || a.CanaryRequests < 10 {
				t.Errorf("%s at step %d: analysis %v, want pass on >= 10 canary requests", ev.Type, ev.Step+1, a)
			}
			passed = append(passed, fmt.Sprintf("step %d passed: %v", len(passed)+1, a.Reason))
		}
		if ev.Type == "release.succeeded" || ev.State == release.Succeeded {
			return api.ErrStop
		}
		return nil
	})
	if err != nil {
		t.Fatalf("events: %v", err)
	}
	if len(passed) != len(r.Steps) {
		t.Errorf("passed steps %q, want all %d (10%%, 50%%, 100%%)", passed, len(r.Steps))
	}
	t.Logf("steps: %s", strings.Join(passed, "; "))
}
