package engine

import (
	"bytes"
	"context"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/shipteam/ship/internal/release"
	"github.com/shipteam/ship/internal/runtime"
	"github.com/shipteam/ship/internal/runtime/memory"
	"github.com/shipteam/ship/internal/spec"
	"github.com/shipteam/ship/internal/store"
)

// catalog is the tests' app set: apps built in Go get the spec's defaults,
// as spec.NewCatalog gives them (the engine keeps no copies of those);
// tests may add apps after the engine is built.
type catalog map[string]spec.App

func (c catalog) Get(name string) (spec.App, bool) {
	a, ok := c[name]
	if ok {
		a.SetDefaults()
	}
	return a, ok
}

func (c catalog) All() []spec.App {
	var out []spec.App
	for name := range c {
		a, _ := c.Get(name)
		out = append(out, a)
	}
	return out
}

func testApp() spec.App {
	return spec.App{
		Name: "resizer", Kind: spec.KindWeb, Replicas: 2, Environments: []string{"production", "staging"},
		Strategy: spec.Strategy{Type: spec.StrategyCanary, StepTimeout: spec.Duration(5 * time.Minute), Steps: []spec.Step{
			{Weight: 100, Pause: spec.Duration(30 * time.Second)}, {Weight: 1000, Pause: spec.Duration(30 * time.Second)},
			{Weight: 5000, Pause: spec.Duration(30 * time.Second)}, {Weight: 10000},
		}},
		Analysis: spec.Analysis{MaxErrorRate: 0.05, MinRequests: 20, Interval: spec.Duration(250 * time.Millisecond)},
	}
}

type harness struct {
	t       testing.TB
	logs    lockedBuffer  // the engine's log, debug level
	mutate  func(*Config) // changes the engine's config at open
	path    string
	store   *store.Store
	clock   *memory.Clock
	rt      *memory.Runtime
	router  *memory.Router
	metrics *memory.Metrics
	apps    catalog
	e       *Engine
}

// lockedBuffer is a bytes.Buffer safe for the engine's goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

var alice = Actor{Name: "alice", Source: release.SourceSlack}

func newHarness(t testing.TB) *harness {
	t.Helper()
	h := &harness{
		t: t, path: filepath.Join(t.TempDir(), "ship.db"),
		clock: memory.NewClock(time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)),
		rt:    memory.NewRuntime(), router: &memory.Router{}, metrics: &memory.Metrics{},
		apps: catalog{"resizer": testApp()},
	}
	h.open()
	return h
}

// open (re)opens the store file and builds a fresh engine on it, as a
// restarted `ship serve` would.
func (h *harness) open() {
	h.t.Helper()
	if h.store != nil {
		h.store.Close()
	}
	st, err := store.Open(context.Background(), h.path)
	if err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(func() { st.Close() })
	h.store = st
	cfg := Config{Store: st, Apps: h.apps, Runtime: h.rt, Router: h.router, Metrics: h.metrics, Clock: h.clock,
		Logger: slog.New(slog.NewTextHandler(&h.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))}
	if h.mutate != nil {
		h.mutate(&cfg)
	}
	e, err := New(cfg)
	if err != nil {
		h.t.Fatal(err)
	}
	h.e = e
}

// step advances the clock by d, sends traffic (stable and canary split by
// the weight in force; canaryErrs of every 100 canary requests fail) and
// steps the engine once.
func (h *harness) step(d time.Duration, perStep int64, canaryErrPct int64) {
	h.t.Helper()
	h.clock.Advance(d)
	if perStep > 0 {
		w := h.router.Current("resizer", "production")
		s, c := h.rt.Get("resizer", "production", runtime.Stable), h.rt.Get("resizer", "production", runtime.Canary)
		nc := perStep * int64(w) / int64(release.Full)
		if c.Version != "" && nc > 0 {
			h.metrics.Add(runtime.Canary, c.Version, nc, nc*canaryErrPct/100)
		}
		if s.Version != "" {
			h.metrics.Add(runtime.Stable, s.Version, perStep-nc, 0)
		}
	}
	if err := h.e.Step(context.Background()); err != nil {
		h.t.Fatal(err)
	}
	h.e.bg.Wait()
}

// until steps (advancing d each time, with traffic) until the release is in
// want, failing after max steps.
func (h *harness) until(id int64, want release.State, d time.Duration, perStep, errPct int64, max int) release.Release {
	h.t.Helper()
	for i := 0; i < max; i++ {
		r := h.release(id)
		if r.State == want {
			return r
		}
		if r.State.Terminal() {
			h.t.Fatalf("release #%d ended %s (%s), want %s", id, r.State, r.Reason, want)
		}
		h.step(d, perStep, errPct)
	}
	r := h.release(id)
	if r.State != want {
		h.t.Fatalf("release #%d still %s (%s) after %d steps, want %s", id, r.State, r.Reason, max, want)
	}
	return r
}

func (h *harness) release(id int64) release.Release {
	h.t.Helper()
	r, err := h.e.Release(context.Background(), System, id)
	if err != nil {
		h.t.Fatal(err)
	}
	return r
}

func (h *harness) deploy(req DeployRequest) release.Release {
	h.t.Helper()
	if req.App == "" {
		req.App = "resizer"
	}
	r, err := h.e.Deploy(context.Background(), alice, req)
	if err != nil {
		h.t.Fatalf("deploy %+v: %v", req, err)
	}
	return r
}

// stableAt deploys version as the first (rolling) release and waits for it.
func (h *harness) stableAt(version string) {
	h.t.Helper()
	r := h.deploy(DeployRequest{Version: version, Rolling: true})
	h.until(r.ID, release.Succeeded, time.Second, 0, 0, 10)
}

// eventTypes lists the types of release id's events but release.weight
// (the router's confirmations, checked on their own).
func (h *harness) eventTypes(id int64) []string {
	h.t.Helper()
	evs, err := h.e.Events(context.Background(), System, EventQuery{ReleaseID: id})
	if err != nil {
		h.t.Fatal(err)
	}
	var out []string
	for _, ev := range evs {
		if ev.Type == release.EvWeight {
			continue
		}
		out = append(out, string(ev.Type))
	}
	return out
}
