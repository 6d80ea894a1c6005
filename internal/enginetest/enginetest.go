// Package enginetest is the one way tests outside the engine get an engine:
// the real *engine.Engine on a temporary SQLite file, driving the in-memory
// runtime, router and metrics source of internal/runtime/memory. Front ends
// (API, chat, CLI) prove their own behaviour against it instead of against
// hand-written fake engines that drift from the real one.
//
// It is for tests only: nothing outside _test.go files may import it. It
// must not grow engine behaviour of its own; a test that needs a condition
// makes it with the parts (Runtime.Failing, Router, Metrics, Clock) or with
// real commands.
package enginetest

import (
	"context"
	"log/slog"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/shipteam/ship/internal/engine"
	"github.com/shipteam/ship/internal/eventually"
	"github.com/shipteam/ship/internal/release"
	"github.com/shipteam/ship/internal/runtime"
	"github.com/shipteam/ship/internal/runtime/memory"
	"github.com/shipteam/ship/internal/spec"
	"github.com/shipteam/ship/internal/store"
)

// Admin is the actor helpers such as StableAt deploy as: a token user with
// the admin role, so any Authorize given lets it through.
var Admin = engine.Actor{ID: "token:admin", Name: "admin", Source: release.SourceCLI, Role: "admin"}

// Options says how to build the engine; the zero value is a running
// engine (real clock, 10ms tick) with one app, WebApp("resizer").
type Options struct {
	// Apps are the apps the catalog holds (spec.NewCatalog defaults and
	// validates them). Default: WebApp("resizer").
	Apps []spec.App
	// Authorize is engine.Config.Authorize; nil allows everything.
	Authorize func(ctx context.Context, a engine.Actor, act engine.Action, app, env string) error
	// Stepped gives the engine a memory.Clock and does not run it: the
	// test calls Step (or Engine.Step) and moves Clock itself.
	Stepped bool
	// Tick is the running engine's tick. Default 10ms.
	Tick time.Duration
	// Traffic sends this many error-free requests per Tick (per Step when
	// stepped) to every app and environment where a canary runs, split
	// between the tracks by the router's weight, so canaries pass analysis
	// on their own. 0: none. memory.Metrics keeps one pair of samples for
	// all apps, so keep to one canary at a time.
	Traffic int64
	// Router, when set, wraps the memory router the engine is given (a
	// router that is slow to apply a weight, say); Env.Router stays the
	// memory router underneath.
	Router func(runtime.Router) runtime.Router
	// Logs is engine.Config.Logs. Default: Env.Logs, lines the test adds.
	Logs runtime.LogReader
	// Logger is engine.Config.Logger. Default: discard.
	Logger *slog.Logger
}

// Env is a real engine and the parts it drives; tests reach into the parts
// to make things happen (a failing version, a hand edit, traffic).
type Env struct {
	T       testing.TB
	Engine  *engine.Engine
	Store   *store.Store
	Apps    *spec.Catalog
	Runtime *memory.Runtime
	Router  *memory.Router
	Metrics *memory.Metrics
	Clock   *memory.Clock // nil for a running engine (it uses the real clock)
	Logs    *Logs         // the engine's log reader unless Options.Logs is set
	Path    string        // the SQLite file
	traffic int64

	mu     sync.Mutex
	errPct map[string]int64 // version -> percent of its canary requests that fail
}

// WebApp is a typical web app: two stable instances in production and
// staging, a 1% → 10% → 50% → 100% canary with short pauses, judged on
// at least 20 canary requests every 50ms.
func WebApp(name string) spec.App {
	pause := spec.Duration(50 * time.Millisecond)
	return spec.App{
		Name: name, Kind: spec.KindWeb, Replicas: 2, Environments: []string{"production", "staging"},
		Run: spec.Run{Command: "./" + name},
		Strategy: spec.Strategy{Type: spec.StrategyCanary, StepTimeout: spec.Duration(time.Minute), Steps: []spec.Step{
			{Weight: 100, Pause: pause}, {Weight: 1000, Pause: pause}, {Weight: 5000, Pause: pause}, {Weight: 10000},
		}},
		Analysis: spec.Analysis{MaxErrorRate: 0.05, MinRequests: 20, Interval: spec.Duration(50 * time.Millisecond)},
	}
}

// New builds the engine on a file in t.TempDir(); a running engine is
// stopped and waited for in t.Cleanup, before the store is closed.
func New(t testing.TB, o Options) *Env {
	t.Helper()
	if len(o.Apps) == 0 {
		o.Apps = []spec.App{WebApp("resizer")}
	}
	if o.Tick == 0 {
		o.Tick = 10 * time.Millisecond
	}
	apps, err := spec.NewCatalog(o.Apps...)
	if err != nil {
		t.Fatalf("enginetest: catalog: %v", err)
	}
	env := &Env{
		T: t, Apps: apps, Path: filepath.Join(t.TempDir(), "ship.db"),
		Runtime: memory.NewRuntime(), Router: &memory.Router{}, Metrics: &memory.Metrics{}, Logs: &Logs{},
		traffic: o.Traffic,
	}
	if o.Logs == nil {
		o.Logs = env.Logs
	}
	st, err := store.Open(context.Background(), env.Path)
	if err != nil {
		t.Fatalf("enginetest: store: %v", err)
	}
	t.Cleanup(func() { st.Close() })
	env.Store = st
	cfg := engine.Config{
		Store: st, Apps: apps, Runtime: env.Runtime, Router: env.Router, Metrics: env.Metrics,
		Logs: o.Logs, Logger: o.Logger, Authorize: o.Authorize, Tick: o.Tick,
	}
	if o.Router != nil {
		cfg.Router = o.Router(env.Router)
	}
	if o.Stepped {
		env.Clock = memory.NewClock(time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC))
		cfg.Clock = env.Clock
	}
	e, err := engine.New(cfg)
	if err != nil {
		t.Fatalf("enginetest: engine: %v", err)
	}
	env.Engine = e
	if !o.Stepped {
		env.run(o.Tick, o.Traffic)
	}
	return env
}

// run starts the engine (and the traffic, if any) until the test ends.
func (env *Env) run(tick time.Duration, traffic int64) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := env.Engine.Run(ctx); err != nil {
			env.T.Errorf("enginetest: Run: %v", err)
		}
	}()
	if traffic > 0 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-ctx.Done():
					return
				case <-time.After(tick):
				}
				env.serveAll()
			}
		}()
	}
	// Registered after the store's: cleanups run last-in first-out, so the
	// engine has stopped before its store closes.
	env.T.Cleanup(func() { cancel(); wg.Wait() })
}

func (env *Env) serveAll() {
	for _, a := range env.Apps.All() {
		for _, e := range a.Environments {
			c := env.Runtime.Get(a.Name, e, runtime.Canary)
			if c.Version == "" {
				continue
			}
			env.mu.Lock()
			pct := env.errPct[c.Version]
			env.mu.Unlock()
			share := env.traffic * int64(env.Router.Current(a.Name, e)) / int64(release.Full)
			env.Serve(a.Name, e, env.traffic, share*pct/100)
		}
	}
}

// FailRequests makes pct percent of the Options.Traffic requests a canary
// of version gets fail (analysis then aborts its release).
func (env *Env) FailRequests(version string, pct int64) {
	env.mu.Lock()
	defer env.mu.Unlock()
	if env.errPct == nil {
		env.errPct = map[string]int64{}
	}
	env.errPct[version] = pct
}

// Serve counts n requests to app in env (errs of the canary's share
// failed), split between stable and canary by the router's weight, as
// ship's router would see them.
func (env *Env) Serve(app, envName string, n, errs int64) {
	w := env.Router.Current(app, envName)
	s, c := env.Runtime.Get(app, envName, runtime.Stable), env.Runtime.Get(app, envName, runtime.Canary)
	nc := n * int64(w) / int64(release.Full)
	if c.Version != "" && nc > 0 {
		env.Metrics.Add(runtime.Canary, c.Version, nc, min(errs, nc))
	}
	if s.Version != "" {
		env.Metrics.Add(runtime.Stable, s.Version, n-nc, 0)
	}
}

// Step moves the stepped engine's clock on by d, sends Options.Traffic
// and steps the engine once.
func (env *Env) Step(d time.Duration) {
	env.T.Helper()
	if env.Clock == nil {
		env.T.Fatal("enginetest: Step on a running engine (build it with Options.Stepped)")
	}
	env.Clock.Advance(d)
	if env.traffic > 0 {
		env.serveAll()
	}
	if err := env.Engine.Step(context.Background()); err != nil {
		env.T.Fatalf("enginetest: Step: %v", err)
	}
}

// Release reads release id as the system, failing the test on error.
func (env *Env) Release(id int64) release.Release {
	env.T.Helper()
	r, err := env.Engine.Release(context.Background(), engine.System, id)
	if err != nil {
		env.T.Fatalf("enginetest: release #%d: %v", id, err)
	}
	return r
}

// WaitState waits until release id is in state want and returns it: a
// running engine within 10s; a stepped one for up to 100 steps of a
// second each. The release may not exist yet (a front end that answers
// before it calls the engine makes it soon). It fails at once if the
// release ends in another state.
func (env *Env) WaitState(id int64, want release.State) release.Release {
	env.T.Helper()
	var r release.Release
	reached := func() string {
		var err error
		r, err = env.Engine.Release(context.Background(), engine.System, id)
		switch {
		case engine.CodeOf(err) == engine.CodeNotFound:
			return "not made yet"
		case err != nil:
			env.T.Fatalf("enginetest: release #%d: %v", id, err)
		case r.State == want:
			return ""
		case r.State.Terminal():
			env.T.Fatalf("enginetest: release #%d ended %s (%s), want %s", id, r.State, r.Reason, want)
		}
		return string(r.State) + ": " + r.Reason
	}
	if env.Clock == nil {
		eventually.Reason(env.T, 10*time.Second, "release #"+strconv.FormatInt(id, 10)+" "+string(want), reached)
		return r
	}
	for range 100 {
		if reached() == "" {
			return r
		}
		env.Step(time.Second)
	}
	if why := reached(); why != "" {
		env.T.Fatalf("enginetest: release #%d still %s after 100 steps, want %s", id, why, want)
	}
	return r
}

// StableAt deploys version of app as a rolling first release by Admin
// (in the app's first environment) and waits until it succeeded and its
// last event, the router's weight 0 (release.weight), is recorded: nothing
// of it is still to come for a subscriber that starts afterwards.
func (env *Env) StableAt(app, version string) release.Release {
	env.T.Helper()
	r, err := env.Engine.Deploy(context.Background(), Admin, engine.DeployRequest{App: app, Version: version, Rolling: true})
	if err != nil {
		env.T.Fatalf("enginetest: deploy %s %s: %v", app, version, err)
	}
	r = env.WaitState(r.ID, release.Succeeded)
	eventually.True(env.T, 10*time.Second, "release #"+strconv.FormatInt(r.ID, 10)+"'s weight 0 recorded", func() bool {
		evs, err := env.Engine.Events(context.Background(), engine.System, engine.EventQuery{ReleaseID: r.ID})
		return err == nil && len(evs) > 0 && evs[len(evs)-1].Type == release.EvWeight
	})
	return r
}

// Watched is an engine whose event subscriptions are counted, so a test
// knows when a front end follows the engine, and can end them all.
type Watched struct {
	*engine.Engine
	mu   sync.Mutex
	ends map[int]func()
	next int
}

// Watch wraps e; give the front end the Watched instead of e.
func Watch(e *engine.Engine) *Watched { return &Watched{Engine: e, ends: map[int]func(){}} }

// Subscribe is the engine's, counted until it ends.
func (w *Watched) Subscribe() (<-chan release.Event, func()) {
	ch, end := w.Engine.Subscribe()
	w.mu.Lock()
	id := w.next
	w.next++
	w.ends[id] = end
	w.mu.Unlock()
	return ch, func() {
		w.mu.Lock()
		delete(w.ends, id)
		w.mu.Unlock()
		end()
	}
}

// Subscribers is how many subscriptions are open.
func (w *Watched) Subscribers() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.ends)
}

// DropSubscribers ends every open subscription with the engine's own end
// function: its channel closes, as when the engine shuts down.
func (w *Watched) DropSubscribers() {
	w.mu.Lock()
	ends := w.ends
	w.ends = map[int]func(){}
	w.mu.Unlock()
	for _, end := range ends {
		end()
	}
}

// Logs is an in-memory runtime.LogReader: the lines tests Add, per app
// and environment. (memory.Runtime keeps no output; the local runtime's
// log ring has its own tests.)
type Logs struct {
	mu    sync.Mutex
	lines map[string][]runtime.LogLine // app/env -> lines, oldest first
}

// Add appends lines of app in env.
func (l *Logs) Add(app, env string, lines ...runtime.LogLine) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.lines == nil {
		l.lines = map[string][]runtime.LogLine{}
	}
	l.lines[app+"/"+env] = append(l.lines[app+"/"+env], lines...)
}

// Logs returns the last n lines of version ("" any) of app in env.
func (l *Logs) Logs(_ context.Context, app spec.App, env, version string, n int) ([]runtime.LogLine, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []runtime.LogLine
	for _, ln := range l.lines[app.Name+"/"+env] {
		if version == "" || ln.Version == version {
			out = append(out, ln)
		}
	}
	return out[max(0, len(out)-n):], nil
}
