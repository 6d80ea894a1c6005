package api

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/shipteam/ship/internal/engine"
	"github.com/shipteam/ship/internal/release"
	"github.com/shipteam/ship/internal/runtime"
)

// fakeEngine is a small in-memory engine: enough behaviour to prove the
// HTTP layer (codes, actors, bodies, streaming), no rollout logic.
type fakeEngine struct {
	mu       sync.Mutex
	apps     map[string]bool
	releases []release.Release
	events   []release.Event
	subs     map[int]chan release.Event
	nextSub  int
	calls    []string
	lastActr engine.Actor
	replicas int
	lock     *release.Lock
	failWith error // returned by every command when set
}

func newFakeEngine(apps ...string) *fakeEngine {
	f := &fakeEngine{apps: map[string]bool{}, subs: map[int]chan release.Event{}}
	for _, a := range apps {
		f.apps[a] = true
	}
	return f
}

func (f *fakeEngine) check(a engine.Actor, call, app string) error {
	f.calls = append(f.calls, call)
	f.lastActr = a
	if f.failWith != nil {
		return f.failWith
	}
	if !f.apps[app] {
		return engine.Errorf(engine.CodeNotFound, "unknown app %q", app)
	}
	return nil
}

// publish stores an event and fans it out, as the engine does.
func (f *fakeEngine) publish(ev release.Event) release.Event {
	f.mu.Lock()
	defer f.mu.Unlock()
	ev.ID = int64(len(f.events) + 1)
	if ev.Time.IsZero() {
		ev.Time = time.Now()
	}
	f.events = append(f.events, ev)
	for _, ch := range f.subs {
		select {
		case ch <- ev:
		default:
		}
	}
	return ev
}

// dropSubscribers closes every live stream, as an engine shutting down does.
func (f *fakeEngine) dropSubscribers() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for id, ch := range f.subs {
		close(ch)
		delete(f.subs, id)
	}
}

func (f *fakeEngine) subscribers() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.subs)
}

func (f *fakeEngine) Deploy(_ context.Context, a engine.Actor, req engine.DeployRequest) (release.Release, error) {
	f.mu.Lock()
	if err := f.check(a, "deploy", req.App); err != nil {
		f.mu.Unlock()
		return release.Release{}, err
	}
	for _, r := range f.releases {
		if r.App == req.App && r.Active() {
			f.mu.Unlock()
			return release.Release{}, engine.Errorf(engine.CodeConflict, "release %d of %s by %s is in progress", r.ID, r.App, r.Actor)
		}
	}
	r := release.Release{ID: int64(len(f.releases) + 1), App: req.App, Env: "production", Kind: release.KindDeploy,
		Version: req.Version, State: release.Progressing, Steps: req.Steps, HoldAt: req.Canary,
		Actor: a.Name, Source: a.Source, Created: time.Now()}
	f.releases = append(f.releases, r)
	f.mu.Unlock()
	f.publish(release.Event{ReleaseID: r.ID, App: r.App, Env: r.Env, Type: "release.created", State: r.State, Actor: a.Name})
	return r, nil
}

func (f *fakeEngine) transition(a engine.Actor, call, app string, st release.State) (release.Release, error) {
	f.mu.Lock()
	if err := f.check(a, call, app); err != nil {
		f.mu.Unlock()
		return release.Release{}, err
	}
	for i := len(f.releases) - 1; i >= 0; i-- {
		if f.releases[i].App == app && f.releases[i].Active() {
			f.releases[i].State = st
			r := f.releases[i]
			f.mu.Unlock()
			f.publish(release.Event{ReleaseID: r.ID, App: r.App, Env: r.Env, Type: release.Ended(st), State: st, Actor: a.Name})
			return r, nil
		}
	}
	f.mu.Unlock()
	return release.Release{}, engine.Errorf(engine.CodeConflict, "no active release of %s", app)
}

func (f *fakeEngine) Promote(_ context.Context, a engine.Actor, req engine.PromoteRequest) (release.Release, error) {
	app := req.App
	return f.transition(a, "promote", app, release.Succeeded)
}

func (f *fakeEngine) Abort(_ context.Context, a engine.Actor, req engine.AbortRequest) (release.Release, error) {
	app, reason := req.App, req.Reason
	return f.transition(a, "abort:"+reason, app, release.Aborted)
}

func (f *fakeEngine) Rollback(_ context.Context, a engine.Actor, req engine.RollbackRequest) (release.Release, error) {
	app, to := req.App, req.To
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.check(a, "rollback:"+to, app); err != nil {
		return release.Release{}, err
	}
	r := release.Release{ID: int64(len(f.releases) + 1), App: app, Env: "production", Kind: release.KindRollback,
		Version: to, State: release.Succeeded, Actor: a.Name, Source: a.Source}
	f.releases = append(f.releases, r)
	return r, nil
}

func (f *fakeEngine) Scale(_ context.Context, a engine.Actor, req engine.ScaleRequest) error {
	app, n := req.App, 0
	if req.Replicas != nil {
		n = *req.Replicas
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.check(a, "scale", app); err != nil {
		return err
	}
	f.replicas = n
	return nil
}

func (f *fakeEngine) Reclaim(_ context.Context, a engine.Actor, req engine.ReclaimRequest) (engine.Reclaimed, error) {
	app, env := req.App, req.Env
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.check(a, "reclaim:"+env, app); err != nil {
		return engine.Reclaimed{}, err
	}
	if env == "" {
		env = "production"
	}
	return engine.Reclaimed{App: app, Env: env, Tracks: []engine.ReclaimedTrack{
		{Track: "stable", Version: "v1", Replicas: f.replicas, Lost: []string{`"kubectl": deployment resizer-stable .spec.replicas`}},
	}}, nil
}

func (f *fakeEngine) Lock(_ context.Context, a engine.Actor, req engine.LockRequest) error {
	app, reason := req.App, req.Reason
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.check(a, "lock", app); err != nil {
		return err
	}
	f.lock = &release.Lock{App: app, Env: "production", Reason: reason, Actor: a.Name}
	return nil
}

func (f *fakeEngine) Unlock(_ context.Context, a engine.Actor, req engine.UnlockRequest) error {
	app := req.App
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.check(a, "unlock", app); err != nil {
		return err
	}
	f.lock = nil
	return nil
}

func (f *fakeEngine) Status(_ context.Context, _ engine.Actor, app, env string) (engine.AppStatus, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.apps[app] {
		return engine.AppStatus{}, engine.Errorf(engine.CodeNotFound, "unknown app %q", app)
	}
	if env == "" {
		env = "production"
	}
	st := engine.AppStatus{App: app, Env: env, Endpoint: "127.0.0.1:9000",
		Stable: engine.TrackView{Version: "v1", Ready: f.replicas, Desired: f.replicas}, Lock: f.lock}
	for i := len(f.releases) - 1; i >= 0; i-- {
		if f.releases[i].App == app {
			r := f.releases[i]
			st.Release = &r
			break
		}
	}
	return st, nil
}

func (f *fakeEngine) List(ctx context.Context, a engine.Actor) ([]engine.AppStatus, error) {
	var names []string
	f.mu.Lock()
	for a := range f.apps {
		names = append(names, a)
	}
	f.mu.Unlock()
	sort.Strings(names)
	var out []engine.AppStatus
	for _, a := range names {
		st, err := f.Status(ctx, engine.Actor{}, a, "")
		if err != nil {
			return nil, err
		}
		out = append(out, st)
	}
	return out, nil
}

func (f *fakeEngine) History(_ context.Context, _ engine.Actor, app, env string, limit int) ([]release.Release, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.apps[app] {
		return nil, engine.Errorf(engine.CodeNotFound, "unknown app %q", app)
	}
	var out []release.Release
	for i := len(f.releases) - 1; i >= 0 && len(out) < limit; i-- {
		if f.releases[i].App == app {
			out = append(out, f.releases[i])
		}
	}
	return out, nil
}

func (f *fakeEngine) Events(_ context.Context, _ engine.Actor, q engine.EventQuery) ([]release.Event, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []release.Event
	for _, ev := range f.events {
		if ev.ID <= q.AfterID || (q.App != "" && ev.App != q.App) || (q.ReleaseID != 0 && ev.ReleaseID != q.ReleaseID) {
			continue
		}
		out = append(out, ev)
		if q.Limit > 0 && len(out) == q.Limit {
			break
		}
	}
	return out, nil
}

func (f *fakeEngine) Release(_ context.Context, _ engine.Actor, id int64) (release.Release, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if id < 1 || int(id) > len(f.releases) {
		return release.Release{}, engine.Errorf(engine.CodeNotFound, "no release %d", id)
	}
	return f.releases[id-1], nil
}

func (f *fakeEngine) Logs(_ context.Context, _ engine.Actor, app, env, version string, n int) ([]runtime.LogLine, error) {
	if !f.apps[app] {
		return nil, engine.Errorf(engine.CodeNotFound, "unknown app %q", app)
	}
	var out []runtime.LogLine
	for i := range n {
		out = append(out, runtime.LogLine{Instance: "stable-0", Version: version, Stream: "stdout", Text: fmt.Sprintf("line %d", i)})
	}
	return out, nil
}

func (f *fakeEngine) ReadFilter(engine.Actor) func(context.Context, release.Event) bool {
	return func(context.Context, release.Event) bool { return true }
}

func (f *fakeEngine) Subscribe() (<-chan release.Event, func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	id := f.nextSub
	f.nextSub++
	ch := make(chan release.Event, 64)
	f.subs[id] = ch
	return ch, func() {
		f.mu.Lock()
		defer f.mu.Unlock()
		if c, ok := f.subs[id]; ok {
			close(c)
			delete(f.subs, id)
		}
	}
}

// fakeTokens maps token hashes to users (role maintainer, as tokens made
// before roles).
type fakeTokens map[string]string

func (t fakeTokens) TokenOwner(_ context.Context, hash []byte) (TokenOwner, error) {
	if u, ok := t[string(hash)]; ok {
		return TokenOwner{Name: u, Role: "maintainer"}, nil
	}
	return TokenOwner{}, fmt.Errorf("lookup: %w", ErrUnknownToken)
}

var errBoom = errors.New("disk on fire at /secret/path")
