package engine

import (
	"context"
	"fmt"
	"math"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/shipteam/ship/internal/analysis"
	"github.com/shipteam/ship/internal/release"
	"github.com/shipteam/ship/internal/runtime"
	"github.com/shipteam/ship/internal/spec"
	"github.com/shipteam/ship/internal/store"
)

// The fakes below stand in for the runtime, router and metrics with plain
// logic; the real adapters are proven by their own tests and by e2e.

type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// After fires quickly in real time so Run loops; tests move Now themselves.
func (c *fakeClock) After(time.Duration) <-chan time.Time { return time.After(time.Millisecond) }

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

type fakeRuntime struct {
	mu         sync.Mutex
	tracks     map[string]map[runtime.Track]*runtime.TrackStatus // key app/env
	failing    map[string]string                                 // version -> reason it fails with
	neverReady map[string]bool                                   // versions that never get ready
	applies    []string
	removes    []string
	statusErr  error
	hang       map[string]bool          // apps whose Status never returns
	hangApply  map[string]chan struct{} // apps whose Apply blocks until the channel closes
	hung       int                      // Apply calls blocked right now
	removeGate chan struct{}            // when set, Remove waits for it to close
	heldBy     map[string]string        // app/env/track -> who changed it by hand (see handScale)
	refused    int                      // Apply calls refused with runtime.ErrConflict
	reclaims   []string                 // Reclaim calls, as "track version×n"
	drift      map[string]string        // app/env/track -> TrackStatus.Drift (see handEdit)
	// raise makes an autoscaler set a version's track to this many
	// instances when it is applied, rolled out one per observation.
	raise map[string]int
}

func newFakeRuntime() *fakeRuntime {
	return &fakeRuntime{tracks: map[string]map[runtime.Track]*runtime.TrackStatus{}, failing: map[string]string{}, neverReady: map[string]bool{}, hang: map[string]bool{}, hangApply: map[string]chan struct{}{}, heldBy: map[string]string{}, drift: map[string]string{}}
}

func (f *fakeRuntime) track(app, env string, t runtime.Track) *runtime.TrackStatus {
	k := app + "/" + env
	if f.tracks[k] == nil {
		f.tracks[k] = map[runtime.Track]*runtime.TrackStatus{
			runtime.Stable: {Track: runtime.Stable}, runtime.Canary: {Track: runtime.Canary},
		}
	}
	return f.tracks[k][t]
}

func (f *fakeRuntime) Apply(ctx context.Context, app spec.App, env string, t runtime.Track, w runtime.Want) error {
	f.mu.Lock()
	if ch := f.hangApply[app.Name]; ch != nil {
		f.hung++
		f.mu.Unlock()
		select { // a Kubernetes API that does not answer
		case <-ch:
		case <-ctx.Done():
		}
		f.mu.Lock()
		f.hung--
		f.mu.Unlock()
		return fmt.Errorf("apply %s %s: the runtime did not answer", app.Name, t)
	}
	defer f.mu.Unlock()
	ts := f.track(app.Name, env, t)
	// Like server-side apply: a track changed by hand is refused unless
	// the Apply asks for what it already runs.
	if who := f.heldBy[app.Name+"/"+env+"/"+string(t)]; who != "" && (ts.Version != w.Version || ts.Desired != w.Replicas) {
		f.refused++
		return fmt.Errorf("apply %s %s: conflict with %q: .spec.replicas: %w", app.Name, t, who, runtime.ErrConflict)
	}
	if ts.Version != w.Version {
		ts.Ready, ts.Restarts, ts.Failed, ts.Reason = 0, 0, false, ""
	}
	ts.Version, ts.Desired = w.Version, w.Replicas
	if n := f.raise[w.Version]; n > ts.Desired {
		ts.Desired = n
	}
	if ts.Ready > ts.Desired {
		ts.Ready = ts.Desired
	}
	f.applies = append(f.applies, fmt.Sprintf("%s %s×%d", t, w.Version, w.Replicas))
	return nil
}

// Status makes instances ready one observation after they were asked for,
// unless their version fails or never gets ready.
func (f *fakeRuntime) Status(ctx context.Context, app spec.App, env string) (map[runtime.Track]runtime.TrackStatus, error) {
	f.mu.Lock()
	if f.hang[app.Name] {
		f.mu.Unlock()
		<-ctx.Done() // a runtime call that never returns on its own
		return nil, ctx.Err()
	}
	defer f.mu.Unlock()
	if f.statusErr != nil {
		return nil, f.statusErr
	}
	out := map[runtime.Track]runtime.TrackStatus{}
	for _, t := range runtime.Tracks {
		ts := f.track(app.Name, env, t)
		snapshot := *ts
		snapshot.Drift = f.drift[app.Name+"/"+env+"/"+string(t)]
		if reason, bad := f.failing[ts.Version]; bad && ts.Version != "" {
			ts.Failed, ts.Reason, ts.Ready = true, reason, 0
		} else if f.raise[ts.Version] > 0 && ts.Ready < ts.Desired {
			ts.Ready++
		} else if !f.neverReady[ts.Version] {
			ts.Ready = ts.Desired
		}
		out[t] = snapshot
	}
	return out, nil
}

func (f *fakeRuntime) Remove(ctx context.Context, app spec.App, env string, t runtime.Track) error {
	f.mu.Lock()
	gate := f.removeGate
	f.mu.Unlock()
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
		}
	}
	// Like a real runtime, a cancelled call removes nothing.
	if err := ctx.Err(); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	*f.track(app.Name, env, t) = runtime.TrackStatus{Track: t}
	f.removes = append(f.removes, string(t))
	return nil
}

func (f *fakeRuntime) get(app, env string, t runtime.Track) runtime.TrackStatus {
	f.mu.Lock()
	defer f.mu.Unlock()
	return *f.track(app, env, t)
}

// hangingApplies is how many Apply calls are blocked now.
// handScale sets a track's count as a person would, behind ship's back;
// who "" gives the track back to ship.
func (f *fakeRuntime) handScale(app, env string, t runtime.Track, n int, who string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	ts := f.track(app, env, t)
	ts.Desired = n
	f.heldBy[app+"/"+env+"/"+string(t)] = who
}

// handEdit makes a track run something other than what ship applied, as
// `kubectl set image` does, keeping its version label: Status reports it
// as drift; "" undoes it. Only Reclaim (force) puts it back.
func (f *fakeRuntime) handEdit(app, env string, t runtime.Track, drift string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if drift == "" {
		delete(f.drift, app+"/"+env+"/"+string(t))
		return
	}
	f.drift[app+"/"+env+"/"+string(t)] = drift
}

// Reclaim is Apply with force: a track held by a hand edit is given back
// to ship, and who held it is reported as having lost the count.
func (f *fakeRuntime) Reclaim(ctx context.Context, app spec.App, env string, t runtime.Track, w runtime.Want) ([]string, error) {
	f.mu.Lock()
	k := app.Name + "/" + env + "/" + string(t)
	var lost []string
	if who := f.heldBy[k]; who != "" {
		lost = []string{fmt.Sprintf("%q: %s .spec.replicas", who, t)}
		delete(f.heldBy, k)
	}
	delete(f.drift, k)
	f.reclaims = append(f.reclaims, fmt.Sprintf("%s %s×%d", t, w.Version, w.Replicas))
	f.mu.Unlock()
	if err := f.Apply(ctx, app, env, t, w); err != nil {
		return nil, err
	}
	return lost, nil
}

func (f *fakeRuntime) refusedApplies() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.refused
}

func (f *fakeRuntime) hangingApplies() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.hung
}

func (f *fakeRuntime) crash(app, env string, t runtime.Track, n int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.track(app, env, t).Restarts += n
}

type fakeRouter struct {
	mu      sync.Mutex
	weights map[string]float64
	history []float64 // every SetWeight, in order
	round   float64   // when set, weights are kept as multiples of it
	reads   int       // Weight calls by the engine
	hang    bool      // SetWeight blocks until its context ends (a hung API server)
}

func (r *fakeRouter) SetWeight(ctx context.Context, app spec.App, env string, w float64) error {
	r.mu.Lock()
	if r.hang {
		r.mu.Unlock()
		<-ctx.Done()
		return ctx.Err()
	}
	defer r.mu.Unlock()
	if r.weights == nil {
		r.weights = map[string]float64{}
	}
	r.history = append(r.history, w)
	if r.round > 0 {
		w = math.Round(w/r.round) * r.round
	}
	r.weights[app.Name+"/"+env] = w
	return nil
}

func (r *fakeRouter) Weight(_ context.Context, app spec.App, env string) (float64, string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.reads++
	return r.weights[app.Name+"/"+env], "127.0.0.1:8080", nil
}

// weight is the test's own look at the router (not counted in reads).
func (r *fakeRouter) weight(app, env string) float64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.weights[app+"/"+env]
}

func (r *fakeRouter) readCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.reads
}

// fakeMetrics keeps cumulative samples per track, as the router does.
type fakeMetrics struct {
	mu             sync.Mutex
	stable, canary analysis.Sample
	err            error // when set, Sample fails with it
}

var bounds = []time.Duration{10 * time.Millisecond, 100 * time.Millisecond, time.Second}

func (m *fakeMetrics) Sample(context.Context, string, string) (analysis.Sample, analysis.Sample, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.err != nil {
		return analysis.Sample{}, analysis.Sample{}, m.err
	}
	return m.stable.Sub(analysis.Sample{Version: "\x00"}), m.canary.Sub(analysis.Sample{Version: "\x00"}), nil // copies
}

// add counts n requests (errs of them failed, all fast) on a track at version.
func (m *fakeMetrics) add(track runtime.Track, version string, n, errs int64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := &m.stable
	if track == runtime.Canary {
		s = &m.canary
	}
	if s.Version != version {
		*s = analysis.Sample{Version: version, Bounds: bounds, Counts: make([]int64, len(bounds))}
	}
	s.Requests += n
	s.Errors += errs
	for i := range s.Counts {
		s.Counts[i] += n
	}
}

type catalog map[string]spec.App

func (c catalog) Get(name string) (spec.App, bool) { a, ok := c[name]; return a, ok }
func (c catalog) All() []spec.App {
	var out []spec.App
	for _, a := range c {
		out = append(out, a)
	}
	return out
}

func testApp() spec.App {
	return spec.App{
		Name: "resizer", Kind: spec.KindWeb, Replicas: 2, Environments: []string{"production", "staging"},
		Strategy: spec.Strategy{Type: spec.StrategyCanary, StepTimeout: spec.Duration(5 * time.Minute), Steps: []spec.Step{
			{Weight: 1, Pause: spec.Duration(30 * time.Second)}, {Weight: 10, Pause: spec.Duration(30 * time.Second)},
			{Weight: 50, Pause: spec.Duration(30 * time.Second)}, {Weight: 100},
		}},
		Analysis: spec.Analysis{MaxErrorRate: 0.05, MinRequests: 20, Interval: spec.Duration(250 * time.Millisecond)},
	}
}

type harness struct {
	t       testing.TB
	path    string
	store   *store.Store
	clock   *fakeClock
	rt      *fakeRuntime
	router  *fakeRouter
	metrics *fakeMetrics
	apps    catalog
	e       *Engine
}

var alice = Actor{Name: "alice", Source: release.SourceSlack}

func newHarness(t testing.TB) *harness {
	t.Helper()
	h := &harness{
		t: t, path: filepath.Join(t.TempDir(), "ship.db"),
		clock: &fakeClock{now: time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)},
		rt:    newFakeRuntime(), router: &fakeRouter{}, metrics: &fakeMetrics{},
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
	e, err := New(Config{Store: st, Apps: h.apps, Runtime: h.rt, Router: h.router, Metrics: h.metrics, Clock: h.clock})
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
		w := h.router.weight("resizer", "production")
		s, c := h.rt.get("resizer", "production", runtime.Stable), h.rt.get("resizer", "production", runtime.Canary)
		nc := int64(float64(perStep) * w / 100)
		if c.Version != "" && nc > 0 {
			h.metrics.add(runtime.Canary, c.Version, nc, nc*canaryErrPct/100)
		}
		if s.Version != "" {
			h.metrics.add(runtime.Stable, s.Version, perStep-nc, 0)
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

func (h *harness) eventTypes(id int64) []string {
	h.t.Helper()
	evs, err := h.e.Events(context.Background(), System, EventQuery{ReleaseID: id})
	if err != nil {
		h.t.Fatal(err)
	}
	var out []string
	for _, ev := range evs {
		out = append(out, ev.Type)
	}
	return out
}
