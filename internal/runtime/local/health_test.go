package local

import (
	"context"
	"github.com/shipteam/ship/internal/eventually"
	"io"
	"net/http"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/shipteam/ship/internal/runtime"
	"github.com/shipteam/ship/internal/spec"
	"github.com/shipteam/ship/internal/traffic"
)

// routed is the runtime behind a real router, with passive health wired as
// ship serve wires it (internal/server/local.go).
type routed struct {
	t        *testing.T
	rt       *Runtime
	app      spec.App
	endpoint string
	client   *http.Client
}

func newRouted(t *testing.T, tweak func(*Config)) *routed {
	t.Helper()
	r, err := traffic.New(traffic.Config{})
	if err != nil {
		t.Fatal(err)
	}
	app := testApp("web")
	ep, err := r.Listen(context.Background(), app, "production", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{Dir: t.TempDir(), Backends: r, HealthInterval: 50 * time.Millisecond, SuspectInterval: 100 * time.Millisecond,
		ProbeTimeout: 200 * time.Millisecond}
	tweak(&cfg)
	rt, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	r.ReportHealthTo(rt)
	tr := &http.Transport{}
	t.Cleanup(func() {
		tr.CloseIdleConnections()
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		if err := rt.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		if err := r.Close(ctx); err != nil {
			t.Errorf("router close: %v", err)
		}
	})
	return &routed{t: t, rt: rt, app: app, endpoint: ep, client: &http.Client{Transport: tr, Timeout: 5 * time.Second}}
}

func (f *routed) ready() int {
	st, _ := f.rt.Status(context.Background(), f.app, "production")
	return st[runtime.Stable].Ready
}

// start runs n stable instances of v1 and waits until the router serves them.
func (f *routed) start(n int) {
	f.t.Helper()
	if err := f.rt.Apply(context.Background(), f.app, "production", runtime.Stable, runtime.Want{Version: "v1", Replicas: n}); err != nil {
		f.t.Fatal(err)
	}
	eventually.True(f.t, 10*time.Second, "instances ready and routed", func() bool { return f.ready() == n && f.get("/") == 200 })
}

// get sends one request through the router.
func (f *routed) get(path string) int {
	resp, err := f.client.Get("http://" + f.endpoint + path)
	if err != nil {
		return 0
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// instance returns the port and pid of stable slot idx.
func (f *routed) instance(idx int) (port, pid int) {
	f.rt.mu.Lock()
	t := f.rt.tracks[trackKey{"web", "production", runtime.Stable}]
	f.rt.mu.Unlock()
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, in := range t.insts {
		if in.idx == idx && !in.stopping {
			return in.port, in.pid
		}
	}
	f.t.Fatalf("no stable instance %d", idx)
	return 0, 0
}

// probes asks a testapp instance how many health probes it answered.
func probes(t *testing.T, port int) int {
	t.Helper()
	resp, err := http.Get("http://127.0.0.1:" + strconv.Itoa(port) + "/testapp/probes")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatalf("probe count %q: %v", b, err)
	}
	return n
}

func TestInstanceServingTrafficIsProbedFarLessOftenThanAnIdleOne(t *testing.T) {
	checkNoTestappLeft(t)
	const healthy = 1200 * time.Millisecond // above the router's 1 s between reports
	f := newRouted(t, func(c *Config) { c.HealthyInterval = healthy })
	f.start(1)
	port, _ := f.instance(0)
	window := 4 * healthy

	before := probes(t, port)
	start := time.Now()
	served := 0
	for time.Since(start) < window { // a measurement window, not a wait
		if code := f.get("/"); code != 200 {
			t.Fatalf("request through the router: %d", code)
		}
		served++
	}
	busy := probes(t, port) - before

	before = probes(t, port)
	idleStart := time.Now()
	eventually.True(t, 4*healthy+3*time.Second, "3 probes of the idle instance", func() bool { return probes(t, port)-before >= 3 })
	t.Logf("over %s: %d probes while serving %d requests; idle: 3 probes in %s (every %s)", window, busy, served,
		time.Since(idleStart).Round(time.Millisecond), healthy)
	if busy > 1 {
		t.Errorf("%d probes while serving traffic, want at most 1 (answers defer probes)", busy)
	}
}

func TestIdleInstanceThatStopsAnsweringLeavesTheRouterWithinTheDocumentedTime(t *testing.T) {
	checkNoTestappLeft(t)
	f := newRouted(t, func(c *Config) { c.HealthyInterval = time.Second })
	f.start(1)
	_, pid := f.instance(0)
	cfg := f.rt.cfg
	// docs/runtime-local.md: at most HealthyInterval + ProbeTimeout +
	// (UnhealthyAfter-1) × (SuspectInterval + ProbeTimeout).
	bound := cfg.HealthyInterval + cfg.ProbeTimeout + time.Duration(cfg.UnhealthyAfter-1)*(cfg.SuspectInterval+cfg.ProbeTimeout)
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil { // alive, silent, and no traffic
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Kill(pid, syscall.SIGCONT) })
	stopped := time.Now()
	eventually.True(t, bound+5*time.Second, "the frozen instance out of the router", func() bool { return f.ready() == 0 })
	took := time.Since(stopped)
	t.Logf("out of the router %s after SIGSTOP (documented bound %s)", took.Round(time.Millisecond), bound)
	if took > bound+time.Second { // a second for scheduling on a busy machine
		t.Errorf("took %s, documented bound %s", took, bound)
	}
	eventually.True(t, 2*time.Second, "the router answering 503 without the instance", func() bool { return f.get("/") == http.StatusServiceUnavailable })
}

func TestProxiedConnectionFailureGetsTheInstanceProbedAtOnce(t *testing.T) {
	checkNoTestappLeft(t)
	f := newRouted(t, func(c *Config) { c.HealthyInterval = time.Minute }) // no timed probe during the test
	f.start(2)
	port, _ := f.instance(1)
	for range 4 { // keep-alive connections to both
		f.get("/")
	}
	before := probes(t, port)
	resp, err := http.Post("http://127.0.0.1:"+strconv.Itoa(port)+"/testapp/close", "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	closed := time.Now()
	// The router finds the connection refused, retries on the other
	// instance and reports it: the runtime probes it at once and takes it
	// out after UnhealthyAfter failures a SuspectInterval apart.
	for range 4 {
		if code := f.get("/"); code != 200 {
			t.Fatalf("request through the router: %d, want 200 (retried on the other instance)", code)
		}
	}
	eventually.True(t, 5*time.Second, "the refusing instance out of the router", func() bool { return f.ready() == 1 })
	t.Logf("out of the router %s after its listener closed (timed probes every %s)", time.Since(closed).Round(time.Millisecond), f.rt.cfg.HealthyInterval)
	if before == 0 {
		t.Fatal("the instance was never probed before")
	}
}
