package slacktest

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/shipteam/ship/internal/engine"
	"github.com/shipteam/ship/internal/release"
	"github.com/shipteam/ship/internal/runtime"
)

// Engine is an in-memory engine with the real one's vocabulary: one active
// release per app and environment, locks, canary held at --canary until
// promoted or aborted, events for every transition. It does not run anything.
type Engine struct {
	mu       sync.Mutex
	apps     map[string]*fakeApp
	releases []release.Release
	events   []release.Event
	subs     map[int]chan release.Event
	nextSub  int
	// Calls records each mutating call as "verb app env actor".
	calls   []string
	dropped int
	// Delay makes every call take this long (to test the ack budget).
	Delay time.Duration
	// Authorize, when set, is asked like engine.Config.Authorize before
	// every command and read, after the environment is resolved; its
	// error refuses with engine.CodeDenied.
	Authorize func(ctx context.Context, a engine.Actor, act engine.Action, app, env string) error
}

// authorize applies Authorize like the engine does.
func (e *Engine) authorize(ctx context.Context, a engine.Actor, act engine.Action, app, env string) error {
	if e.Authorize == nil || a.ID == engine.System.ID {
		return nil
	}
	if err := e.Authorize(ctx, a, act, app, env); err != nil {
		return &engine.Error{Code: engine.CodeDenied, Message: err.Error()}
	}
	return nil
}

// Allowed resolves env and authorizes, as the engine's Allowed does.
func (e *Engine) Allowed(ctx context.Context, a engine.Actor, act engine.Action, app, env string) (string, error) {
	e.mu.Lock()
	_, env, err := e.appLocked(app, env)
	e.mu.Unlock()
	if err != nil {
		return "", err
	}
	return env, e.authorize(ctx, a, act, app, env)
}

// Dropped reports events a full subscriber did not get.
func (e *Engine) Dropped() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.dropped
}

type fakeApp struct {
	env      string
	stable   string
	replicas int
	lock     *release.Lock
}

// NewEngine knows the given apps, each with one environment "production",
// 3 replicas and stable version "v1".
func NewEngine(apps ...string) *Engine {
	e := &Engine{apps: map[string]*fakeApp{}, subs: map[int]chan release.Event{}}
	for _, a := range apps {
		e.apps[a] = &fakeApp{env: "production", stable: "v1", replicas: 3}
	}
	return e
}

// Calls returns the mutating calls so far.
func (e *Engine) Calls() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.calls)
}

// Events returns every event emitted so far.
func (e *Engine) Events() []release.Event {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.events)
}

func (e *Engine) wait(ctx context.Context) error {
	if e.Delay == 0 {
		return nil
	}
	t := time.NewTimer(e.Delay)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (e *Engine) appLocked(name, env string) (*fakeApp, string, error) {
	a, ok := e.apps[name]
	if !ok {
		return nil, "", engine.Errorf(engine.CodeNotFound, "unknown app %q", name)
	}
	if env == "" {
		env = a.env
	}
	if env != a.env {
		return nil, "", engine.Errorf(engine.CodeNotFound, "app %s has no environment %q", name, env)
	}
	return a, env, nil
}

func (e *Engine) activeLocked(app, env string) *release.Release {
	for i := len(e.releases) - 1; i >= 0; i-- {
		if r := &e.releases[i]; r.App == app && r.Env == env && r.Active() {
			return r
		}
	}
	return nil
}

// emitLocked records and fans out an event; a full subscriber loses it, as
// with the real engine, which never waits for a subscriber.
func (e *Engine) emitLocked(ev release.Event) {
	ev.ID = int64(len(e.events) + 1)
	ev.Time = time.Now()
	e.events = append(e.events, ev)
	for _, ch := range e.subs {
		select {
		case ch <- ev:
		default:
			e.dropped++
		}
	}
}

func (e *Engine) transitionLocked(r *release.Release, s release.State, weight release.Weight, reason, actor string, typ release.EventType) {
	r.State, r.Weight, r.Reason, r.Updated = s, weight, reason, time.Now()
	e.emitLocked(release.Event{ReleaseID: r.ID, App: r.App, Env: r.Env, Type: typ, State: s, Step: r.Step, Weight: weight, Message: reason, Actor: actor})
}

// Deploy starts a release; with Canary it holds at that weight.
func (e *Engine) Deploy(ctx context.Context, a engine.Actor, req engine.DeployRequest) (release.Release, error) {
	if err := e.wait(ctx); err != nil {
		return release.Release{}, err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	app, env, err := e.appLocked(req.App, req.Env)
	if err != nil {
		return release.Release{}, err
	}
	if err := e.authorize(ctx, a, engine.ActDeploy, req.App, env); err != nil {
		return release.Release{}, err
	}
	if req.Version == "" {
		return release.Release{}, engine.Errorf(engine.CodeInvalid, "no version")
	}
	if app.lock != nil {
		return release.Release{}, engine.Errorf(engine.CodeLocked, "%s is locked by %s: %s", req.App, app.lock.Actor, app.lock.Reason)
	}
	if cur := e.activeLocked(req.App, env); cur != nil {
		return release.Release{}, engine.Errorf(engine.CodeConflict, "release #%d of %s (%s) by %s is still %s", cur.ID, cur.App, cur.Version, cur.Actor, cur.State)
	}
	e.calls = append(e.calls, fmt.Sprintf("deploy %s %s %s", req.App, env, a.Name))
	steps := req.Steps
	if len(steps) == 0 {
		steps = []release.Weight{100, 1000, 5000, 10000}
	}
	r := release.Release{
		ID: int64(len(e.releases) + 1), App: req.App, Env: env, Kind: release.KindDeploy,
		Version: req.Version, FromVersion: app.stable, Strategy: "canary", Steps: steps, HoldAt: req.Canary,
		State: release.Pending, Actor: a.Name, Source: a.Source, Created: time.Now(), Updated: time.Now(),
	}
	if req.Rolling {
		r.Strategy, r.Steps = "rolling", nil
	}
	e.releases = append(e.releases, r)
	p := &e.releases[len(e.releases)-1]
	e.transitionLocked(p, release.Pending, 0, "", a.Name, "release.created")
	if req.Rolling {
		app.stable = r.Version
		e.transitionLocked(p, release.Succeeded, 0, "rolled out", a.Name, "release.succeeded")
		return *p, nil
	}
	first := steps[0]
	if req.Canary > 0 {
		first = req.Canary
	}
	e.transitionLocked(p, release.Progressing, first, "", a.Name, "release.step")
	if req.Canary > 0 {
		e.transitionLocked(p, release.Paused, req.Canary, "held at --canary", a.Name, "release.paused")
	}
	return *p, nil
}

// Advance moves a stepping release to its next step (tests drive it).
func (e *Engine) Advance(id int64) {
	e.mu.Lock()
	defer e.mu.Unlock()
	r := &e.releases[id-1]
	if r.State != release.Progressing || r.Step+1 >= len(r.Steps) {
		return
	}
	r.Step++
	e.transitionLocked(r, release.Progressing, r.Steps[r.Step], "", "", "release.step")
}

// Promote finishes the active release.
func (e *Engine) Promote(ctx context.Context, a engine.Actor, req engine.PromoteRequest) (release.Release, error) {
	app, env := req.App, req.Env
	if err := e.wait(ctx); err != nil {
		return release.Release{}, err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	fa, env, err := e.appLocked(app, env)
	if err != nil {
		return release.Release{}, err
	}
	if err := e.authorize(ctx, a, engine.ActPromote, app, env); err != nil {
		return release.Release{}, err
	}
	r := e.activeLocked(app, env)
	if r == nil {
		return release.Release{}, engine.Errorf(engine.CodeNotFound, "%s has no active release in %s", app, env)
	}
	e.calls = append(e.calls, fmt.Sprintf("promote %s %s %s", app, env, a.Name))
	e.transitionLocked(r, release.Promoting, r.Weight, "", a.Name, "release.promoting")
	fa.stable = r.Version
	e.transitionLocked(r, release.Succeeded, 0, "promoted by "+a.Name, a.Name, "release.succeeded")
	return *r, nil
}

// Abort puts the active release's canary weight to 0.
func (e *Engine) Abort(ctx context.Context, a engine.Actor, req engine.AbortRequest) (release.Release, error) {
	app, env, reason := req.App, req.Env, req.Reason
	if err := e.wait(ctx); err != nil {
		return release.Release{}, err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	_, env, err := e.appLocked(app, env)
	if err != nil {
		return release.Release{}, err
	}
	if err := e.authorize(ctx, a, engine.ActAbort, app, env); err != nil {
		return release.Release{}, err
	}
	r := e.activeLocked(app, env)
	if r == nil {
		return release.Release{}, engine.Errorf(engine.CodeNotFound, "%s has no active release in %s", app, env)
	}
	e.calls = append(e.calls, fmt.Sprintf("abort %s %s %s", app, env, a.Name))
	e.transitionLocked(r, release.Aborted, 0, reason, a.Name, "release.aborted")
	return *r, nil
}

// Rollback returns to the previous successful version (or to).
func (e *Engine) Rollback(ctx context.Context, a engine.Actor, req engine.RollbackRequest) (release.Release, error) {
	app, env, to := req.App, req.Env, req.To
	if err := e.wait(ctx); err != nil {
		return release.Release{}, err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	fa, env, err := e.appLocked(app, env)
	if err != nil {
		return release.Release{}, err
	}
	if err := e.authorize(ctx, a, engine.ActRollback, app, env); err != nil {
		return release.Release{}, err
	}
	if cur := e.activeLocked(app, env); cur != nil {
		e.transitionLocked(cur, release.Aborted, 0, "rollback requested", a.Name, "release.aborted")
	}
	if to == "" {
		// The version before the current stable one.
		prev := ""
		for i := len(e.releases) - 1; i >= 0; i-- {
			r := e.releases[i]
			if r.App == app && r.Env == env && r.State == release.Succeeded && r.Version == fa.stable {
				prev = r.FromVersion
				break
			}
		}
		if prev == "" {
			return release.Release{}, engine.Errorf(engine.CodeNotFound, "%s has no earlier good release in %s", app, env)
		}
		to = prev
	}
	e.calls = append(e.calls, fmt.Sprintf("rollback %s %s %s", app, env, a.Name))
	r := release.Release{
		ID: int64(len(e.releases) + 1), App: app, Env: env, Kind: release.KindRollback,
		Version: to, FromVersion: fa.stable, Strategy: "rolling", State: release.Pending,
		Actor: a.Name, Source: a.Source, Created: time.Now(), Updated: time.Now(),
	}
	e.releases = append(e.releases, r)
	p := &e.releases[len(e.releases)-1]
	e.transitionLocked(p, release.Pending, 0, "", a.Name, "release.created")
	fa.stable = to
	e.transitionLocked(p, release.Succeeded, 0, "rolled back", a.Name, "release.succeeded")
	return *p, nil
}

// Scale sets the stable replica count.
func (e *Engine) Scale(ctx context.Context, a engine.Actor, req engine.ScaleRequest) error {
	app, env, n := req.App, req.Env, 0
	if req.Replicas != nil {
		n = *req.Replicas
	}
	if err := e.wait(ctx); err != nil {
		return err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	fa, env, err := e.appLocked(app, env)
	if err != nil {
		return err
	}
	if err := e.authorize(ctx, a, engine.ActScale, app, env); err != nil {
		return err
	}
	e.calls = append(e.calls, fmt.Sprintf("scale %s %s %s", app, env, a.Name))
	fa.replicas = n
	e.emitLocked(release.Event{App: app, Env: env, Type: "app.scaled", Message: fmt.Sprintf("scaled to %d", n), Actor: a.Name})
	return nil
}

// Reclaim pretends a hand edit held the stable count ("kubectl") and takes
// it back.
func (e *Engine) Reclaim(ctx context.Context, a engine.Actor, req engine.ReclaimRequest) (engine.Reclaimed, error) {
	app, env := req.App, req.Env
	if err := e.wait(ctx); err != nil {
		return engine.Reclaimed{}, err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	fa, env, err := e.appLocked(app, env)
	if err != nil {
		return engine.Reclaimed{}, err
	}
	if err := e.authorize(ctx, a, engine.ActReclaim, app, env); err != nil {
		return engine.Reclaimed{}, err
	}
	e.calls = append(e.calls, fmt.Sprintf("reclaim %s %s %s", app, env, a.Name))
	lost := fmt.Sprintf(`"kubectl": deployment %s-stable .spec.replicas`, app)
	e.emitLocked(release.Event{App: app, Env: env, Type: "app.reclaimed", Message: "reclaimed, taken back from " + lost, Actor: a.Name})
	return engine.Reclaimed{App: app, Env: env, Tracks: []engine.ReclaimedTrack{
		{Track: "stable", Version: fa.stable, Replicas: fa.replicas, Lost: []string{lost}},
	}}, nil
}

// Lock blocks deploys.
func (e *Engine) Lock(ctx context.Context, a engine.Actor, req engine.LockRequest) error {
	app, env, reason := req.App, req.Env, req.Reason
	e.mu.Lock()
	defer e.mu.Unlock()
	fa, env, err := e.appLocked(app, env)
	if err != nil {
		return err
	}
	if err := e.authorize(ctx, a, engine.ActLock, app, env); err != nil {
		return err
	}
	e.calls = append(e.calls, fmt.Sprintf("lock %s %s %s", app, env, a.Name))
	fa.lock = &release.Lock{App: app, Env: env, Reason: reason, Actor: a.Name, Since: time.Now()}
	e.emitLocked(release.Event{App: app, Env: env, Type: "app.locked", Message: "locked: " + reason, Actor: a.Name})
	return nil
}

// Unlock lifts a lock.
func (e *Engine) Unlock(ctx context.Context, a engine.Actor, req engine.UnlockRequest) error {
	app, env := req.App, req.Env
	e.mu.Lock()
	defer e.mu.Unlock()
	fa, env, err := e.appLocked(app, env)
	if err != nil {
		return err
	}
	if err := e.authorize(ctx, a, engine.ActUnlock, app, env); err != nil {
		return err
	}
	e.calls = append(e.calls, fmt.Sprintf("unlock %s %s %s", app, env, a.Name))
	fa.lock = nil
	e.emitLocked(release.Event{App: app, Env: env, Type: "app.unlocked", Message: "unlocked", Actor: a.Name})
	return nil
}

// Status reports an app as `ship status` would.
func (e *Engine) Status(ctx context.Context, a engine.Actor, app, env string) (engine.AppStatus, error) {
	if err := e.wait(ctx); err != nil {
		return engine.AppStatus{}, err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	st, err := e.statusLocked(app, env)
	if err == nil {
		err = e.authorize(ctx, a, engine.ActRead, app, st.Env)
	}
	return st, err
}

func (e *Engine) statusLocked(app, env string) (engine.AppStatus, error) {
	fa, env, err := e.appLocked(app, env)
	if err != nil {
		return engine.AppStatus{}, err
	}
	st := engine.AppStatus{
		App: app, Env: env, Endpoint: "http://127.0.0.1:8080",
		Stable: engine.TrackView{Version: fa.stable, Ready: fa.replicas, Desired: fa.replicas},
		Lock:   fa.lock,
	}
	if r := e.activeLocked(app, env); r != nil {
		cp := *r
		st.Release = &cp
		st.Weight = r.Weight
		st.Canary = engine.TrackView{Version: r.Version, Ready: 1, Desired: 1}
		st.Analysis = &engine.Analysis{StableRequests: 9900, StableErrorRate: 0.001, CanaryRequests: 100,
			CanaryErrorRate: 0, StableP99Ms: 41, CanaryP99Ms: 39, Verdict: "pass"}
	} else {
		for i := len(e.releases) - 1; i >= 0; i-- {
			if r := e.releases[i]; r.App == app && r.Env == env {
				st.Release = &r
				break
			}
		}
	}
	return st, nil
}

// List reports every app.
func (e *Engine) List(ctx context.Context, a engine.Actor) ([]engine.AppStatus, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	names := make([]string, 0, len(e.apps))
	for n := range e.apps {
		names = append(names, n)
	}
	slices.Sort(names)
	var out []engine.AppStatus
	for _, n := range names {
		st, _ := e.statusLocked(n, "")
		out = append(out, st)
	}
	return out, nil
}

// History lists releases, newest first.
func (e *Engine) History(ctx context.Context, a engine.Actor, app, env string, limit int) ([]release.Release, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	_, env, err := e.appLocked(app, env)
	if err != nil {
		return nil, err
	}
	if err := e.authorize(ctx, a, engine.ActRead, app, env); err != nil {
		return nil, err
	}
	var out []release.Release
	for i := len(e.releases) - 1; i >= 0 && len(out) < limit; i-- {
		if r := e.releases[i]; r.App == app && (env == "" || r.Env == env) {
			out = append(out, r)
		}
	}
	return out, nil
}

// Release returns one release.
func (e *Engine) Release(ctx context.Context, a engine.Actor, id int64) (release.Release, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if id < 1 || int(id) > len(e.releases) {
		return release.Release{}, engine.Errorf(engine.CodeNotFound, "no release #%d", id)
	}
	r := e.releases[id-1]
	if err := e.authorize(ctx, a, engine.ActRead, r.App, r.Env); err != nil {
		return release.Release{}, err
	}
	return r, nil
}

// Subscribe streams events from now on.
func (e *Engine) Subscribe() (<-chan release.Event, func()) {
	e.mu.Lock()
	defer e.mu.Unlock()
	id := e.nextSub
	e.nextSub++
	ch := make(chan release.Event, 256)
	e.subs[id] = ch
	return ch, func() {
		e.mu.Lock()
		defer e.mu.Unlock()
		delete(e.subs, id)
	}
}

// Subscribers reports how many subscriptions are open.
func (e *Engine) Subscribers() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.subs)
}

// Logs returns n made-up lines per call, newest last.
func (e *Engine) Logs(ctx context.Context, a engine.Actor, app, env, version string, n int) ([]runtime.LogLine, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	fa, env, err := e.appLocked(app, env)
	if err != nil {
		return nil, err
	}
	if err := e.authorize(ctx, a, engine.ActRead, app, env); err != nil {
		return nil, err
	}
	if version == "" {
		version = fa.stable
	}
	var out []runtime.LogLine
	for i := range n {
		out = append(out, runtime.LogLine{Time: time.Unix(1764072000+int64(i), 0), Instance: "stable-0", Version: version, Stream: "stdout", Text: fmt.Sprintf("GET /resize 200 line %d", i)})
	}
	return out, nil
}
