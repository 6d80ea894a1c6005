// Package memory is the one in-memory runtime, router and metrics source
// for tests: plain logic standing in for the real adapters (which are
// proven by their own tests and by e2e), with knobs to make a version fail,
// never get ready, hang, crash or be changed by hand. Lock Mu to touch an
// exported field while an engine runs.
package memory

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/shipteam/ship/internal/analysis"
	"github.com/shipteam/ship/internal/release"
	"github.com/shipteam/ship/internal/runtime"
	"github.com/shipteam/ship/internal/spec"
)

var (
	_ runtime.Runtime = (*Runtime)(nil)
	_ runtime.Router  = (*Router)(nil)
	_ analysis.Source = (*Metrics)(nil)
)

// Runtime runs tracks in memory: instances are ready one Status after they
// are asked for, unless their version is made to fail or never get ready.
type Runtime struct {
	Mu         sync.Mutex
	tracks     map[string]map[runtime.Track]*runtime.TrackStatus // key app/env
	Failing    map[string]string                                 // version -> reason it fails with
	NeverReady map[string]bool                                   // versions that never get ready
	Applies    []string
	Removes    []string
	StatusErr  error
	statuses   int                      // Status calls
	Hang       map[string]bool          // apps whose Status never returns
	HangApply  map[string]chan struct{} // apps whose Apply blocks until the channel closes
	hung       int                      // Apply calls blocked right now
	RemoveGate chan struct{}            // when set, Remove waits for it to close
	heldBy     map[string]string        // app/env/track -> who changed it by hand (see HandScale)
	refused    int                      // Apply calls refused with runtime.ErrConflict
	Reclaims   []string                 // Reclaim calls, as "track version×n"
	drift      map[string]string        // app/env/track -> TrackStatus.Drift (see HandEdit)
	// Raise makes an autoscaler set a version's track to this many
	// instances when it is applied, rolled out one per observation.
	Raise map[string]int
}

// NewRuntime returns an empty runtime.
func NewRuntime() *Runtime {
	return &Runtime{tracks: map[string]map[runtime.Track]*runtime.TrackStatus{}, Failing: map[string]string{}, NeverReady: map[string]bool{}, Hang: map[string]bool{}, HangApply: map[string]chan struct{}{}, heldBy: map[string]string{}, drift: map[string]string{}}
}

// Track is a track's state, to change by hand; the caller holds Mu.
func (f *Runtime) Track(app, env string, t runtime.Track) *runtime.TrackStatus {
	k := app + "/" + env
	if f.tracks[k] == nil {
		f.tracks[k] = map[runtime.Track]*runtime.TrackStatus{
			runtime.Stable: {Track: runtime.Stable}, runtime.Canary: {Track: runtime.Canary},
		}
	}
	return f.tracks[k][t]
}

func (f *Runtime) Apply(ctx context.Context, app spec.App, env string, t runtime.Track, w runtime.Want) error {
	f.Mu.Lock()
	if ch := f.HangApply[app.Name]; ch != nil {
		f.hung++
		f.Mu.Unlock()
		select { // a Kubernetes API that does not answer
		case <-ch:
		case <-ctx.Done():
		}
		f.Mu.Lock()
		f.hung--
		f.Mu.Unlock()
		return fmt.Errorf("apply %s %s: the runtime did not answer", app.Name, t)
	}
	defer f.Mu.Unlock()
	ts := f.Track(app.Name, env, t)
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
	if n := f.Raise[w.Version]; n > ts.Desired {
		ts.Desired = n
	}
	if ts.Ready > ts.Desired {
		ts.Ready = ts.Desired
	}
	f.Applies = append(f.Applies, fmt.Sprintf("%s %s×%d", t, w.Version, w.Replicas))
	return nil
}

// Status makes instances ready one observation after they were asked for,
// unless their version fails or never gets ready.
func (f *Runtime) Status(ctx context.Context, app spec.App, env string) (map[runtime.Track]runtime.TrackStatus, error) {
	f.Mu.Lock()
	if f.Hang[app.Name] {
		f.Mu.Unlock()
		<-ctx.Done() // a runtime call that never returns on its own
		return nil, ctx.Err()
	}
	defer f.Mu.Unlock()
	f.statuses++
	if f.StatusErr != nil {
		return nil, f.StatusErr
	}
	out := map[runtime.Track]runtime.TrackStatus{}
	for _, t := range runtime.Tracks {
		ts := f.Track(app.Name, env, t)
		snapshot := *ts
		snapshot.Drift = f.drift[app.Name+"/"+env+"/"+string(t)]
		if reason, bad := f.Failing[ts.Version]; bad && ts.Version != "" {
			ts.Failed, ts.Reason, ts.Ready = true, reason, 0
		} else if f.Raise[ts.Version] > 0 && ts.Ready < ts.Desired {
			ts.Ready++
		} else if !f.NeverReady[ts.Version] {
			ts.Ready = ts.Desired
		}
		out[t] = snapshot
	}
	return out, nil
}

func (f *Runtime) Remove(ctx context.Context, app spec.App, env string, t runtime.Track) error {
	f.Mu.Lock()
	gate := f.RemoveGate
	f.Mu.Unlock()
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
		}
	}
	// Like a real runtime, a cancelled call Removes nothing.
	if err := ctx.Err(); err != nil {
		return err
	}
	f.Mu.Lock()
	defer f.Mu.Unlock()
	*f.Track(app.Name, env, t) = runtime.TrackStatus{Track: t}
	f.Removes = append(f.Removes, string(t))
	return nil
}

// Get is the test's own look at a track.
func (f *Runtime) Get(app, env string, t runtime.Track) runtime.TrackStatus {
	f.Mu.Lock()
	defer f.Mu.Unlock()
	return *f.Track(app, env, t)
}

// HandScale sets a track's count as a person would, behind ship's back;
// who "" gives the track back to ship.
func (f *Runtime) HandScale(app, env string, t runtime.Track, n int, who string) {
	f.Mu.Lock()
	defer f.Mu.Unlock()
	ts := f.Track(app, env, t)
	ts.Desired = n
	f.heldBy[app+"/"+env+"/"+string(t)] = who
}

// HandEdit makes a track run something other than what ship applied, as
// `kubectl set image` does, keeping its version label: Status reports it
// as drift; "" undoes it. Only Reclaim (force) puts it back.
func (f *Runtime) HandEdit(app, env string, t runtime.Track, drift string) {
	f.Mu.Lock()
	defer f.Mu.Unlock()
	if drift == "" {
		delete(f.drift, app+"/"+env+"/"+string(t))
		return
	}
	f.drift[app+"/"+env+"/"+string(t)] = drift
}

// Reclaim is Apply with force: a track held by a hand edit is given back
// to ship, and who held it is reported as having lost the count.
func (f *Runtime) Reclaim(ctx context.Context, app spec.App, env string, t runtime.Track, w runtime.Want) ([]string, error) {
	f.Mu.Lock()
	k := app.Name + "/" + env + "/" + string(t)
	var lost []string
	if who := f.heldBy[k]; who != "" {
		lost = []string{fmt.Sprintf("%q: %s .spec.replicas", who, t)}
		delete(f.heldBy, k)
	}
	delete(f.drift, k)
	f.Reclaims = append(f.Reclaims, fmt.Sprintf("%s %s×%d", t, w.Version, w.Replicas))
	f.Mu.Unlock()
	if err := f.Apply(ctx, app, env, t, w); err != nil {
		return nil, err
	}
	return lost, nil
}

// StatusCount is how many Status calls were made.
func (f *Runtime) StatusCount() int {
	f.Mu.Lock()
	defer f.Mu.Unlock()
	return f.statuses
}

// ApplyCount is how many Apply calls went through.
func (f *Runtime) ApplyCount() int {
	f.Mu.Lock()
	defer f.Mu.Unlock()
	return len(f.Applies)
}

// RefusedApplies is how many Apply calls were refused with runtime.ErrConflict.
func (f *Runtime) RefusedApplies() int {
	f.Mu.Lock()
	defer f.Mu.Unlock()
	return f.refused
}

// HangingApplies is how many Apply calls are blocked now.
func (f *Runtime) HangingApplies() int {
	f.Mu.Lock()
	defer f.Mu.Unlock()
	return f.hung
}

// Crash adds n restarts to a track, as a crash-looping instance would.
func (f *Runtime) Crash(app, env string, t runtime.Track, n int) {
	f.Mu.Lock()
	defer f.Mu.Unlock()
	f.Track(app, env, t).Restarts += n
}

// Router keeps each app's weight in memory, like ship's own router.
type Router struct {
	Mu      sync.Mutex
	weights map[string]release.Weight
	History []release.Weight // every SetWeight, in order
	Round   release.Weight   // when set, weights are kept as multiples of it (replica ratios)
	reads   int              // Weight calls by the engine
	Hang    bool             // SetWeight blocks until its context ends (a hung API server)
}

// SetWeight records w (rounded to Round when set).
func (r *Router) SetWeight(ctx context.Context, app spec.App, env string, w release.Weight) error {
	r.Mu.Lock()
	if r.Hang {
		r.Mu.Unlock()
		<-ctx.Done()
		return ctx.Err()
	}
	defer r.Mu.Unlock()
	if !w.Valid() {
		return fmt.Errorf("memory router: weight %s out of 0..100%%", w)
	}
	if r.weights == nil {
		r.weights = map[string]release.Weight{}
	}
	r.History = append(r.History, w)
	if r.Round > 0 {
		w = (w + r.Round/2) / r.Round * r.Round
	}
	r.weights[app.Name+"/"+env] = w
	return nil
}

// Weight reports the weight in force.
func (r *Router) Weight(_ context.Context, app spec.App, env string) (release.Weight, string, error) {
	r.Mu.Lock()
	defer r.Mu.Unlock()
	r.reads++
	return r.weights[app.Name+"/"+env], "127.0.0.1:8080", nil
}

// Current is the test's own look at the router (not counted in ReadCount).
func (r *Router) Current(app, env string) release.Weight {
	r.Mu.Lock()
	defer r.Mu.Unlock()
	return r.weights[app+"/"+env]
}

// Forget drops every weight, as a restarted router would.
func (r *Router) Forget() {
	r.Mu.Lock()
	defer r.Mu.Unlock()
	r.weights = nil
}

// ReadCount is how many times Weight was called.
func (r *Router) ReadCount() int {
	r.Mu.Lock()
	defer r.Mu.Unlock()
	return r.reads
}

type Metrics struct {
	Mu             sync.Mutex
	Stable, Canary analysis.Sample
	Err            error // when set, Sample fails with it
}

// Bounds are the latency buckets Add counts into.
var Bounds = []time.Duration{10 * time.Millisecond, 100 * time.Millisecond, time.Second}

// Sample returns copies of both tracks' cumulative samples.
func (m *Metrics) Sample(context.Context, string, string) (analysis.Sample, analysis.Sample, error) {
	m.Mu.Lock()
	defer m.Mu.Unlock()
	if m.Err != nil {
		return analysis.Sample{}, analysis.Sample{}, m.Err
	}
	return m.Stable.Sub(analysis.Sample{Version: "\x00"}), m.Canary.Sub(analysis.Sample{Version: "\x00"}), nil // copies
}

// Add counts n requests (errs of them failed, all fast) on a track at version.
func (m *Metrics) Add(track runtime.Track, version string, n, errs int64) {
	m.Mu.Lock()
	defer m.Mu.Unlock()
	s := &m.Stable
	if track == runtime.Canary {
		s = &m.Canary
	}
	if s.Version != version {
		*s = analysis.Sample{Version: version, Bounds: Bounds, Counts: make([]int64, len(Bounds))}
	}
	s.Requests += n
	s.Errors += errs
	for i := range s.Counts {
		s.Counts[i] += n
	}
}

// Clock is a clock tests move by hand. After fires after a real
// millisecond whatever d is, so a loop waiting on it keeps turning while
// the test decides what time it is.
type Clock struct {
	mu  sync.Mutex
	now time.Time
}

// NewClock returns a clock at t.
func NewClock(t time.Time) *Clock { return &Clock{now: t} }

// Now is the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// After fires quickly in real time; see Clock.
func (c *Clock) After(time.Duration) <-chan time.Time { return time.After(time.Millisecond) }

// Advance moves the clock on by d.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}
