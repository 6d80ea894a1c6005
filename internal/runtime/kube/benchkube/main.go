// Command benchkube measures ship on Kubernetes (issue 4 §4): N apps
// deployed at once through ship (store, engine, Kubernetes runtime) on the
// loopback control plane of internal/kubetest, against the same N
// Deployments applied directly with client-go. It reports wall time until
// all are Available, ship's peak memory, and API requests per release.
//
// Run it with scripts/bench-kube (N=200 by default).
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	goruntime "runtime"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/shipteam/ship/internal/engine"
	"github.com/shipteam/ship/internal/kubetest"
	"github.com/shipteam/ship/internal/release"
	"github.com/shipteam/ship/internal/runtime/kube"
	"github.com/shipteam/ship/internal/spec"
	"github.com/shipteam/ship/internal/store"
)

var (
	shipQPS  float64
	useCache bool
)

func main() {
	n := flag.Int("n", 200, "apps")
	replicas := flag.Int("replicas", 1, "replicas per app")
	parallel := flag.Int("parallel", 0, "engine.Config.Parallel (0 = the engine's default)")
	flag.BoolVar(&useCache, "cache", true, "ship's runtime reads Status from informer caches (kube.Config.Cache)")
	flag.Float64Var(&shipQPS, "qps", 200, "ship's client QPS (burst 2x); 0 = client-go's default 5/10")
	flag.Parse()
	if err := run(*n, *replicas, *parallel); err != nil {
		fmt.Fprintln(os.Stderr, "benchkube:", err)
		os.Exit(1)
	}
}

// counter counts the requests a rest.Config's clients send, by verb.
type counter struct {
	mu     sync.Mutex
	byVerb map[string]int
	total  atomic.Int64
}

func (c *counter) wrap(rt http.RoundTripper) http.RoundTripper {
	return rtFunc(func(r *http.Request) (*http.Response, error) {
		c.total.Add(1)
		verb := r.Method
		if r.Method == http.MethodGet && strings.Contains(r.URL.RawQuery, "watch=true") {
			verb = "WATCH"
		}
		c.mu.Lock()
		c.byVerb[verb+" "+resourceOf(r.URL.Path)]++
		c.mu.Unlock()
		return rt.RoundTrip(r)
	})
}

func (c *counter) reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.byVerb = map[string]int{}
	c.total.Store(0)
}

func (c *counter) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var parts []string
	for v, k := range c.byVerb {
		parts = append(parts, fmt.Sprintf("%s %d", v, k))
	}
	sort.Strings(parts)
	return strings.Join(parts, ", ")
}

// resourceOf turns /apis/apps/v1/namespaces/x/deployments/y into
// "deployments" (the resource type, without names).
func resourceOf(path string) string {
	parts := strings.Split(strings.Trim(path, "/"), "/")
	for i := len(parts) - 1; i >= 0; i-- {
		if i > 0 && parts[i-1] == "namespaces" {
			continue // a namespace name
		}
		switch parts[i] {
		case "deployments", "services", "pods", "horizontalpodautoscalers", "poddisruptionbudgets", "httproutes", "gateways", "namespaces", "serviceaccounts", "replicasets":
			return parts[i]
		}
	}
	return path
}

type rtFunc func(*http.Request) (*http.Response, error)

func (f rtFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// peakHeap samples the Go heap until stop is closed.
func peakHeap(stop <-chan struct{}) <-chan uint64 {
	out := make(chan uint64, 1)
	go func() {
		var peak uint64
		var ms goruntime.MemStats
		t := time.NewTicker(50 * time.Millisecond)
		defer t.Stop()
		for {
			goruntime.ReadMemStats(&ms)
			peak = max(peak, ms.HeapInuse+ms.StackInuse)
			select {
			case <-stop:
				out <- peak
				return
			case <-t.C:
			}
		}
	}()
	return out
}

func vmHWM() string {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return "?"
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "VmHWM:") {
			return strings.TrimSpace(strings.TrimPrefix(l, "VmHWM:"))
		}
	}
	return "?"
}

func run(n, replicas, parallel int) error {
	ctx := context.Background()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	start := time.Now()
	cl, err := kubetest.Start(ctx, kubetest.Options{Logger: log})
	if err != nil {
		return err
	}
	defer cl.Stop()
	fmt.Printf("control plane started in %s (pids %v)\n", time.Since(start).Round(time.Millisecond), cl.PIDs())
	fmt.Printf("machine: %d CPUs (GOMAXPROCS %d), %s\n", goruntime.NumCPU(), goruntime.GOMAXPROCS(0), memTotal())

	shipTime, err := benchShip(ctx, cl.RestConfig, n, replicas, parallel, log)
	if err != nil {
		return err
	}
	directTime, err := benchDirect(ctx, cl.RestConfig, n, replicas)
	if err != nil {
		return err
	}
	fmt.Printf("ratio ship/direct wall time: %.2f\n", shipTime.Seconds()/directTime.Seconds())
	return nil
}

func benchShip(ctx context.Context, admin *rest.Config, n, replicas, parallel int, log *slog.Logger) (time.Duration, error) {
	cnt := &counter{byVerb: map[string]int{}}
	rc := rest.CopyConfig(admin)
	rc.WrapTransport = cnt.wrap
	// ship's kube runtime uses the rest.Config's rate limit; with
	// client-go's default (QPS 5, burst 10) the limiter is what is measured.
	if shipQPS > 0 {
		rc.QPS, rc.Burst = float32(shipQPS), int(2*shipQPS)
	}
	fmt.Printf("ship: client QPS %v burst %d (0 = client-go default 5/10)\n", rc.QPS, rc.Burst)
	rt, err := kube.New(kube.Config{RestConfig: rc, Logger: log, Cache: useCache})
	if err != nil {
		return 0, err
	}
	defer rt.Close()
	fmt.Printf("ship: Status from informer caches: %v\n", useCache)
	var apps []spec.App
	for i := range n {
		y := fmt.Sprintf("name: b%03d\nreplicas: %d\nstrategy: {stepTimeout: 5m}\nkube:\n  image: registry.example/b:{{.Version}}\n  namespace: ship-bench\n", i, replicas)
		a, err := spec.Parse(fmt.Sprintf("b%03d.yaml", i), []byte(y))
		if err != nil {
			return 0, err
		}
		apps = append(apps, a...)
	}
	catalog, err := spec.NewCatalog(apps...)
	if err != nil {
		return 0, err
	}
	dir, err := os.MkdirTemp("", "benchkube-")
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(dir)
	st, err := store.Open(ctx, filepath.Join(dir, "ship.db"))
	if err != nil {
		return 0, err
	}
	defer st.Close()
	eng, err := engine.New(engine.Config{Store: st, Apps: catalog, Runtime: rt, Router: rt.Router(), Metrics: kube.NoMetrics{}, Parallel: parallel, Logger: log})
	if err != nil {
		return 0, err
	}
	engCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- eng.Run(engCtx) }()
	defer func() { stop(); <-done }()

	goruntime.GC()
	stopMem := make(chan struct{})
	peak := peakHeap(stopMem)
	cnt.reset()
	before := int64(0)
	t0 := time.Now()
	actor := engine.Actor{ID: "token:bench", Name: "bench", Source: release.SourceAPI}
	ids := make([]int64, 0, n)
	for _, a := range apps {
		r, err := eng.Deploy(ctx, actor, engine.DeployRequest{App: a.Name, Version: "v1"})
		if err != nil {
			return 0, fmt.Errorf("deploy %s: %w", a.Name, err)
		}
		ids = append(ids, r.ID)
	}
	accepted := time.Since(t0)
	// Done when every release succeeded (the engine saw each Deployment
	// Available the way kubectl rollout status does).
	deadline := time.Now().Add(10 * time.Minute)
	for {
		left := 0
		for _, id := range ids {
			r, err := st.GetRelease(ctx, id)
			if err != nil {
				return 0, err
			}
			if r.State == release.Failed || r.State == release.Aborted {
				return 0, fmt.Errorf("release %d of %s: %s: %s", id, r.App, r.State, r.Reason)
			}
			if r.State != release.Succeeded {
				left++
			}
		}
		if left == 0 {
			break
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("%d of %d releases not done after 10m", left, n)
		}
		time.Sleep(100 * time.Millisecond)
	}
	wall := time.Since(t0)
	calls := cnt.total.Load() - before
	close(stopMem)
	fmt.Printf("ship: %d apps x%d deployed: all releases succeeded (Available) after %s (deploy calls accepted in %s)\n", n, replicas, wall.Round(time.Millisecond), accepted.Round(time.Millisecond))
	fmt.Printf("ship: API requests %d = %.1f per release (%s)\n", calls, float64(calls)/float64(n), cnt)
	fmt.Printf("ship: peak Go heap+stacks %.1f MiB during the run; process VmHWM %s\n", float64(<-peak)/(1<<20), vmHWM())
	// Idle cost: requests per second once everything is done.
	cnt.reset()
	time.Sleep(5 * time.Second)
	fmt.Printf("ship: idle afterwards: %.1f API requests/s (%s in 5s)\n", float64(cnt.total.Load())/5, cnt)
	return wall, nil
}

func benchDirect(ctx context.Context, admin *rest.Config, n, replicas int) (time.Duration, error) {
	rc := rest.CopyConfig(admin)
	rc.QPS, rc.Burst = 200, 400
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return 0, err
	}
	const ns = "bench-direct"
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		return 0, err
	}
	for { // pods are refused until the namespace's default ServiceAccount exists
		if _, err := cs.CoreV1().ServiceAccounts(ns).Get(ctx, "default", metav1.GetOptions{}); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	r := int32(replicas)
	t0 := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	sem := make(chan struct{}, 16)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			name := fmt.Sprintf("d%03d", i)
			lbl := map[string]string{"app": name}
			d := &appsv1.Deployment{
				ObjectMeta: metav1.ObjectMeta{Name: name, Labels: lbl},
				Spec: appsv1.DeploymentSpec{
					Replicas: &r,
					Selector: &metav1.LabelSelector{MatchLabels: lbl},
					Template: corev1.PodTemplateSpec{
						ObjectMeta: metav1.ObjectMeta{Labels: lbl},
						Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "registry.example/b:v1"}}},
					},
				},
			}
			if _, err := cs.AppsV1().Deployments(ns).Create(ctx, d, metav1.CreateOptions{}); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return 0, err
	}
	created := time.Since(t0)
	deadline := time.Now().Add(10 * time.Minute)
	for {
		l, err := cs.AppsV1().Deployments(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return 0, err
		}
		avail := 0
		for _, d := range l.Items {
			if d.Status.ObservedGeneration >= d.Generation && d.Status.AvailableReplicas == r && d.Status.UpdatedReplicas == r {
				avail++
			}
		}
		if avail == n {
			break
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("direct: %d of %d available after 10m", avail, n)
		}
		time.Sleep(100 * time.Millisecond)
	}
	wall := time.Since(t0)
	fmt.Printf("direct: %d Deployments x%d created with client-go in %s, all Available after %s\n", n, replicas, created.Round(time.Millisecond), wall.Round(time.Millisecond))
	return wall, nil
}

func memTotal() string {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return "? RAM"
	}
	return strings.Fields(strings.SplitN(string(b), "\n", 2)[0])[1] + " kB RAM"
}
