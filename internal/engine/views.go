package engine

import (
	"context"
	"errors"
	"sync"

	"github.com/shipteam/ship/internal/release"
	"github.com/shipteam/ship/internal/runtime"
	"github.com/shipteam/ship/internal/spec"
)

// EventQuery selects events. App and Env "" do not filter (unlike the
// commands, where env "" means the first environment).
type EventQuery = release.EventQuery

// Status reports what app runs in env: tracks as the runtime sees them,
// the weight in force, the active (else latest) release, the latest
// analysis and the lock. A runtime or router that cannot answer does not
// fail Status: the stored state is shown with a note.
func (e *Engine) Status(ctx context.Context, a Actor, appName, env string) (AppStatus, error) {
	app, env, err := e.resolve(appName, env)
	if err != nil {
		return AppStatus{}, err
	}
	if err := e.authorize(ctx, a, ActRead, app.Name, env); err != nil {
		return AppStatus{}, err
	}
	return e.status(ctx, app, env)
}

func (e *Engine) status(ctx context.Context, app spec.App, env string) (AppStatus, error) {
	k := appKey{app.Name, env}
	out := AppStatus{App: app.Name, Env: env}
	st, err := e.appState(ctx, app, env)
	if err != nil {
		return out, internal(err, "read state of %s", k)
	}
	out.Stable.Version, out.Stable.Desired = st.Stable, st.Replicas
	out.Canary.Version, out.Weight = st.Canary, st.Weight
	var notes []string
	if ts, err := e.cfg.Runtime.Status(ctx, app, env); err != nil {
		notes = append(notes, "runtime: "+err.Error())
	} else {
		out.Stable, out.Canary = trackView(ts[runtime.Stable]), trackView(ts[runtime.Canary])
		for _, t := range runtime.Tracks {
			if n := ts[t].Note; n != "" {
				notes = append(notes, string(t)+": "+n)
			}
			if d := ts[t].Drift; d != "" {
				notes = append(notes, string(t)+": changed outside ship, left as is: "+d+" (`ship reclaim` puts back what ship records)")
			}
		}
	}
	for _, t := range runtime.Tracks {
		if c := e.conflictOf(app, env, t); c != "" {
			notes = append(notes, string(t)+": changed outside ship, left as is: "+c)
		}
	}
	if w, ep, err := e.cfg.Router.Weight(ctx, app, env); err != nil {
		notes = append(notes, "router: "+err.Error())
	} else {
		out.Weight, out.Endpoint = w, ep
	}
	r, err := e.cfg.Store.ActiveRelease(ctx, app.Name, env)
	if errors.Is(err, release.ErrNotFound) {
		r, err = e.cfg.Store.LatestRelease(ctx, app.Name, env)
	}
	switch {
	case err == nil:
		out.Release = &r
		if (r.State == release.Progressing || r.State == release.Paused) && r.Weight != out.Weight {
			out.WeightAsked = r.Weight
		}
	case !errors.Is(err, release.ErrNotFound):
		return out, internal(err, "read releases of %s", k)
	}
	e.mu.Lock()
	if a := e.slotLocked(k).latest; a != nil {
		c := *a
		out.Analysis = &c
	}
	e.mu.Unlock()
	if out.Analysis == nil && out.Release != nil {
		out.Analysis = e.storedAnalysis(ctx, out.Release.ID)
	}
	l, err := e.cfg.Store.GetLock(ctx, app.Name, env)
	switch {
	case err == nil:
		out.Lock = &l
	case !errors.Is(err, release.ErrNotFound):
		return out, internal(err, "read lock of %s", k)
	}
	for i, n := range notes {
		if i > 0 {
			out.Note += "; "
		}
		out.Note += n
	}
	return out, nil
}

func trackView(ts runtime.TrackStatus) TrackView {
	return TrackView{Version: ts.Version, Ready: ts.Ready, Desired: ts.Desired, Restarts: ts.Restarts, Failed: ts.Failed, Reason: ts.Reason}
}

// List reports the status of every app in every environment a may read;
// the others are left out without a word.
func (e *Engine) List(ctx context.Context, a Actor) ([]AppStatus, error) {
	var out []AppStatus
	for _, app := range e.cfg.Apps.All() {
		for _, env := range environments(app) {
			if e.check(ctx, a, ActRead, app.Name, env) != nil {
				continue
			}
			s, err := e.status(ctx, app, env)
			if err != nil {
				return nil, err
			}
			out = append(out, s)
		}
	}
	return out, nil
}

// History returns the releases of app in env, newest first (limit <= 0:
// 100).
func (e *Engine) History(ctx context.Context, a Actor, appName, env string, limit int) ([]release.Release, error) {
	app, env, err := e.resolve(appName, env)
	if err != nil {
		return nil, err
	}
	if err := e.authorize(ctx, a, ActRead, app.Name, env); err != nil {
		return nil, err
	}
	rs, err := e.cfg.Store.Releases(ctx, app.Name, env, limit)
	if err != nil {
		return nil, internal(err, "read history of %s/%s", app.Name, env)
	}
	return rs, nil
}

// Events returns stored events, oldest first. A query naming one app in
// one environment is authorized (and a refusal recorded); otherwise the
// events of app/envs a may not read are left out.
func (e *Engine) Events(ctx context.Context, a Actor, q EventQuery) ([]release.Event, error) {
	if q.App != "" {
		app, ok := e.cfg.Apps.Get(q.App)
		if !ok {
			return nil, Errorf(CodeNotFound, "unknown app %q", q.App)
		}
		if q.Env != "" {
			if _, _, err := e.resolve(q.App, q.Env); err != nil {
				return nil, err
			}
			if err := e.authorize(ctx, a, ActRead, app.Name, q.Env); err != nil {
				return nil, err
			}
		}
	}
	evs, err := e.cfg.Store.Events(ctx, q)
	if err != nil {
		return nil, internal(err, "read events")
	}
	return e.readable(ctx, a, evs), nil
}

// readable keeps the events a may read.
func (e *Engine) readable(ctx context.Context, a Actor, evs []release.Event) []release.Event {
	ok := map[appKey]bool{}
	out := evs[:0]
	for _, ev := range evs {
		if e.canRead(ctx, a, ev.App, ev.Env, ok) {
			out = append(out, ev)
		}
	}
	return out
}

// canRead reports whether a may read app in env, without recording a
// refusal: for filtering streams and lists. seen, when not nil, caches
// answers for one caller's loop.
func (e *Engine) canRead(ctx context.Context, a Actor, app, env string, seen map[appKey]bool) bool {
	k := appKey{app, env}
	if v, ok := seen[k]; ok {
		return v
	}
	v := e.check(ctx, a, ActRead, app, env) == nil
	if seen != nil {
		seen[k] = v
	}
	return v
}

// ReadFilter returns a function answering whether a may read an event for one caller, with
// its answers cached (an SSE stream asks it for every event).
func (e *Engine) ReadFilter(a Actor) func(ctx context.Context, ev release.Event) bool {
	var mu sync.Mutex
	seen := map[appKey]bool{}
	return func(ctx context.Context, ev release.Event) bool {
		mu.Lock()
		defer mu.Unlock()
		return e.canRead(ctx, a, ev.App, ev.Env, seen)
	}
}

// Release returns one release by id, when a may read its app and
// environment.
func (e *Engine) Release(ctx context.Context, a Actor, id int64) (release.Release, error) {
	r, err := e.cfg.Store.GetRelease(ctx, id)
	if errors.Is(err, release.ErrNotFound) {
		return r, Errorf(CodeNotFound, "no release #%d", id)
	}
	if err != nil {
		return r, internal(err, "read release #%d", id)
	}
	if err := e.authorize(ctx, a, ActRead, r.App, r.Env); err != nil {
		return release.Release{}, err
	}
	return r, nil
}

// Logs returns up to n recent log lines of app's instances in env, of
// version when given.
func (e *Engine) Logs(ctx context.Context, a Actor, appName, env, version string, n int) ([]runtime.LogLine, error) {
	app, env, err := e.resolve(appName, env)
	if err != nil {
		return nil, err
	}
	if err := e.authorize(ctx, a, ActRead, app.Name, env); err != nil {
		return nil, err
	}
	if e.cfg.Logs == nil {
		return nil, Errorf(CodeInvalid, "this runtime keeps no logs")
	}
	if n <= 0 {
		n = 100
	}
	lines, err := e.cfg.Logs.Logs(ctx, app, env, version, n)
	if err != nil {
		return nil, internal(err, "read logs of %s/%s", app.Name, env)
	}
	return lines, nil
}

// storedAnalysis is the last recorded analysis of a release, for a Status
// asked before this process has judged it (after a restart).
func (e *Engine) storedAnalysis(ctx context.Context, id int64) *Analysis {
	ev, err := e.cfg.Store.LastEvent(ctx, id, release.EvAnalysis)
	if err != nil || ev.Data == nil || ev.Data.Analysis == nil || ev.Data.Analysis.Verdict == "" {
		return nil
	}
	return ev.Data.Analysis
}
