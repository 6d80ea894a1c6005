package engine

import (
	"context"
	"fmt"
	"math"

	"github.com/shipteam/ship/internal/release"
	"github.com/shipteam/ship/internal/runtime"
	"github.com/shipteam/ship/internal/spec"
)

// This file holds the engine's calls to the runtime and router: each is made
// only when what they report differs from what is wanted, so repeating a
// step is harmless.

func failed(ts runtime.TrackStatus, want runtime.Want) bool {
	return ts.Failed && ts.Version == want.Version
}

func ready(ts runtime.TrackStatus, want runtime.Want) bool {
	return !ts.Failed && ts.Version == want.Version && ts.Ready >= want.Replicas
}

func trackData(ts runtime.TrackStatus) map[string]any {
	d := map[string]any{"track": string(ts.Track), "version": ts.Version, "ready": ts.Ready, "desired": ts.Desired, "restarts": ts.Restarts}
	if ts.Reason != "" {
		d["reason"] = ts.Reason
	}
	return d
}

func (e *Engine) noteApplied(k trackKey, want runtime.Want) {
	e.mu.Lock()
	e.applied[k] = applied{want: want, at: e.now()}
	delete(e.removing, k)
	e.mu.Unlock()
}

// wasApplied reports whether this process asked the runtime for want, or
// saw it already running: readiness is only trusted for what was asked.
func (e *Engine) wasApplied(k trackKey, want runtime.Want) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	a, ok := e.applied[k]
	return ok && a.want == want
}

// ensureApply asks the runtime for want unless it already runs it or the
// same request is under way. Only the version is compared after the first
// Apply, so a runtime that adjusts counts itself (an autoscaler) is not
// fought every tick.
func (e *Engine) ensureApply(ctx context.Context, app spec.App, env string, track runtime.Track, want runtime.Want, actual runtime.TrackStatus) error {
	k := trackKey{appKey{app.Name, env}, track}
	e.mu.Lock()
	last, ok := e.applied[k]
	busy := e.inflight[k]
	e.mu.Unlock()
	if busy {
		return nil // a Remove of this track is still draining; apply after it
	}
	same := ok && last.want == want
	if actual.Version == want.Version && (same || actual.Desired == want.Replicas) {
		if !same {
			e.noteApplied(k, want)
		}
		return nil
	}
	if same && e.now().Sub(last.at) < reapplyAfter {
		return nil
	}
	if err := e.cfg.Runtime.Apply(ctx, app, env, track, want); err != nil {
		return fmt.Errorf("apply %s %s×%d: %w", track, want.Version, want.Replicas, err)
	}
	e.noteApplied(k, want)
	return nil
}

// ensureRemoved removes a track in the background (draining takes the
// instances' grace period, which must not hold up other releases' ticks).
func (e *Engine) ensureRemoved(ctx context.Context, app spec.App, env string, track runtime.Track, actual runtime.TrackStatus) {
	if actual.Version == "" && actual.Desired == 0 {
		return
	}
	k := trackKey{appKey{app.Name, env}, track}
	e.mu.Lock()
	if at, ok := e.removing[k]; ok && e.now().Sub(at) < reapplyAfter {
		e.mu.Unlock()
		return
	}
	e.removing[k] = e.now()
	e.inflight[k] = true
	delete(e.applied, k)
	e.mu.Unlock()
	// The step that asked returns (and cancels its ctx) long before a drain
	// or a Kubernetes DELETE is done: the removal gets its own deadline.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), removeTimeout)
	e.bg.Add(1)
	go func() {
		defer e.bg.Done()
		defer cancel()
		defer func() {
			e.mu.Lock()
			delete(e.inflight, k)
			e.mu.Unlock()
		}()
		if err := e.cfg.Runtime.Remove(ctx, app, env, track); err != nil {
			e.log.Error("remove track", "app", app.Name, "env", env, "track", track, "err", err)
		}
	}()
}

// ensureWeight sets the canary weight unless the router already has it.
// The router is asked at most every reapplyAfter once a weight is confirmed
// (on Kubernetes, Weight reads an HTTPRoute: not something to do 10 times a
// second per app). A router may round a weight (traffic's split resolution,
// replica ratios): what it reported right after our SetWeight counts as in
// sync, so a rounded weight is not set again every tick.
// id is the release the weight belongs to (0 for weight 0 of an idle app).
func (e *Engine) ensureWeight(ctx context.Context, app spec.App, env string, id int64, w float64) error {
	k := appKey{app.Name, env}
	e.mu.Lock()
	m, ok := e.weights[k]
	e.mu.Unlock()
	if ok && m.desired == w && e.now().Sub(m.at) < reapplyAfter {
		return nil
	}
	cur, _, err := e.cfg.Router.Weight(ctx, app, env)
	if err == nil && (math.Abs(cur-w) < 1e-9 || (ok && m.desired == w && math.Abs(cur-m.observed) < 1e-9)) {
		e.mu.Lock()
		e.weights[k] = weightMark{desired: w, observed: cur, at: e.now()}
		e.mu.Unlock()
		return nil
	}
	if err := e.setWeight(ctx, app, env, id, w); err != nil {
		return err
	}
	if got, _, err := e.cfg.Router.Weight(ctx, app, env); err == nil {
		e.mu.Lock()
		e.weights[k] = weightMark{desired: w, observed: got, at: e.now()}
		e.mu.Unlock()
	}
	return nil
}

// noteRestarts records instance.crashed when a track's restart count grows.
func (e *Engine) noteRestarts(ctx context.Context, r release.Release, l *live, status map[runtime.Track]runtime.TrackStatus) {
	for _, t := range runtime.Tracks {
		ts := status[t]
		prev, seen := l.restarts[t]
		sameVersion := l.versions[t] == ts.Version
		l.restarts[t], l.versions[t] = ts.Restarts, ts.Version
		if !seen || !sameVersion || ts.Restarts <= prev {
			continue
		}
		d := trackData(ts)
		d["new"] = ts.Restarts - prev
		evs, err := e.cfg.Store.AddEvents(ctx, nil, e.event(r, "instance.crashed", "ship",
			fmt.Sprintf("%s %s: %d instance restart(s), %d in all", t, ts.Version, ts.Restarts-prev, ts.Restarts), d))
		if err != nil {
			e.log.Error("record crash", "app", r.App, "env", r.Env, "err", err)
			continue
		}
		e.publish(evs)
	}
}
