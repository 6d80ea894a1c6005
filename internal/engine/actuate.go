package engine

import (
	"context"
	"errors"
	"fmt"
	"time"

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

// ready says the track runs want: its version, at least want.Replicas
// ready, and every instance the runtime itself wants ready too (an
// autoscaler may have raised a Deployment above want.Replicas; until all of
// its pods are rolled out the track is not done).
func ready(ts runtime.TrackStatus, want runtime.Want) bool {
	return !ts.Failed && ts.Version == want.Version && ts.Ready >= want.Replicas && ts.Ready >= ts.Desired
}

// readyOf counts the ready instances of want's version: a track still
// running its previous version has none of the new one ready.
func readyOf(ts runtime.TrackStatus, want runtime.Want) int {
	if ts.Version != want.Version {
		return 0
	}
	return ts.Ready
}

func trackData(ts runtime.TrackStatus) *release.EventData {
	return &release.EventData{Track: string(ts.Track), Version: ts.Version, Ready: ts.Ready, Desired: ts.Desired, Restarts: ts.Restarts, Reason: ts.Reason}
}

func wantData(w runtime.Want) *release.Want {
	return &release.Want{Version: w.Version, Replicas: w.Replicas}
}

func (e *Engine) noteApplied(k appKey, t runtime.Track, want runtime.Want) {
	e.mu.Lock()
	ts := e.track(k, t)
	ts.applied = &applied{want: want, at: e.now()}
	ts.removing, ts.conflict = time.Time{}, nil
	e.mu.Unlock()
}

// autoscaled reports whether an autoscaler, not ship, sets the track's
// instance count (the runtime leaves it out of what it applies).
func autoscaled(app spec.App, track runtime.Track) bool {
	return track == runtime.Stable && app.Kube.Autoscale != nil
}

// wasApplied reports whether this process asked the runtime for want, or
// saw it already running: readiness is only trusted for what was asked.
func (e *Engine) wasApplied(k appKey, t runtime.Track, want runtime.Want) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	a := e.track(k, t).applied
	return a != nil && a.want == want
}

// ensureApply asks the runtime for want unless it already runs it or the
// same request is under way. After the first Apply the version is
// compared, and the count only where no autoscaler owns it: a count
// changed outside ship (kubectl scale, a hand edit) is applied again every
// reapplyAfter. Where that change took the field over, the runtime refuses
// with runtime.ErrConflict and the change stays; the refusal is kept (see
// conflictOf) and retried every reapplyAfter, not every tick.
func (e *Engine) ensureApply(ctx context.Context, app spec.App, env string, track runtime.Track, want runtime.Want, actual runtime.TrackStatus) error {
	k := appKey{app.Name, env}
	e.mu.Lock()
	ts := e.track(k, track)
	last, c, busy := ts.applied, ts.conflict, ts.inflight
	e.mu.Unlock()
	if busy {
		return nil // a Remove of this track is still draining; apply after it
	}
	refused := c != nil
	same := last != nil && last.want == want
	drift := same && actual.Version == want.Version && actual.Desired != want.Replicas && !autoscaled(app, track)
	if actual.Version == want.Version && (same || actual.Desired == want.Replicas) && !drift {
		if !same || refused {
			e.noteApplied(k, track, want)
		}
		return nil
	}
	if same && e.now().Sub(last.at) < reapplyAfter {
		return nil
	}
	if refused && c.want == want && e.now().Sub(c.at) < reapplyAfter {
		return nil
	}
	if err := e.cfg.Runtime.Apply(ctx, app, env, track, want); err != nil {
		err = fmt.Errorf("apply %s %s×%d: %w", track, want.Version, want.Replicas, err)
		if errors.Is(err, runtime.ErrConflict) {
			e.mu.Lock()
			e.track(k, track).conflict = &conflict{want: want, at: e.now(), msg: err.Error()}
			e.mu.Unlock()
		}
		return err
	}
	e.noteApplied(k, track, want)
	return nil
}

// applyTrack is ensureApply for a track of active release r. A conflict
// with a change made outside ship is not overwritten and does not end the
// release: it is recorded once as a release.conflict event (the release's
// history), shown in status, and named in the reason should the release
// run out of time because of it.
func (e *Engine) applyTrack(ctx context.Context, app spec.App, r release.Release, track runtime.Track, want runtime.Want, actual runtime.TrackStatus) error {
	err := e.ensureApply(ctx, app, r.Env, track, want, actual)
	if !errors.Is(err, runtime.ErrConflict) {
		return err
	}
	l := e.liveOf(r)
	l.mu.Lock()
	seen := l.conflicts[track] == err.Error()
	l.conflicts[track] = err.Error()
	l.mu.Unlock()
	if seen {
		return err
	}
	d := trackData(actual)
	d.Want, d.Error = wantData(want), err.Error()
	evs, aerr := e.cfg.Store.AddEvents(ctx, nil, e.event(r, release.EvConflict, "ship",
		fmt.Sprintf("%s changed outside ship, left as is: %v", track, err), d))
	if aerr != nil {
		return errors.Join(err, aerr)
	}
	e.publish(evs)
	return err
}

// reportIdleConflict is applyTrack's release.conflict for an app without
// a release: a track that does not run what ship applied (the runtime's
// Drift: a hand-changed image) or whose Apply was refused (conflictOf) is
// recorded once as an app.conflict event, which chat announces on its own;
// the same finding on later ticks is not news. Nothing is overwritten:
// `ship reclaim` is the way back, and forgets the finding, as does a look
// that finds the track clean again, so the same edit made again is
// reported again.
func (e *Engine) reportIdleConflict(ctx context.Context, app spec.App, env string, track runtime.Track, want runtime.Want, actual runtime.TrackStatus) error {
	k := appKey{app.Name, env}
	what := actual.Drift
	if what == "" {
		what = e.conflictOf(app, env, track)
	}
	e.mu.Lock()
	ts := e.track(k, track)
	seen := ts.reported == what
	ts.reported = what
	e.mu.Unlock()
	if seen || what == "" {
		return nil
	}
	d := trackData(actual)
	d.Conflict, d.Want = what, wantData(want)
	ev := release.Event{App: app.Name, Env: env, Type: release.EvAppClash, Actor: "ship", Time: e.now(), Data: d,
		Message: fmt.Sprintf("%s/%s %s changed outside ship, left as is: %s; `ship reclaim %s --env %s` puts back %s×%d",
			app.Name, env, track, what, app.Name, env, want.Version, want.Replicas)}
	evs, err := e.cfg.Store.AddEvents(ctx, nil, ev)
	if err != nil {
		e.forgetReported(k, track) // not recorded: try again next time
		return fmt.Errorf("record conflict of %s %s: %w", k, track, err)
	}
	e.publish(evs)
	e.log.Warn("changed outside ship", "app", app.Name, "env", env, "track", track, "conflict", what)
	return nil
}

// forgetReported forgets the app.conflict recorded for a track (see
// reportIdleConflict), so the same finding is news again.
func (e *Engine) forgetReported(k appKey, t runtime.Track) {
	e.mu.Lock()
	e.track(k, t).reported = ""
	e.mu.Unlock()
}

// conflictOf is the last refusal of an Apply to the track because of a
// change made outside ship, "" when there is none.
func (e *Engine) conflictOf(app spec.App, env string, track runtime.Track) string {
	e.mu.Lock()
	defer e.mu.Unlock()
	if c := e.track(appKey{app.Name, env}, track).conflict; c != nil {
		return c.msg
	}
	return ""
}

// blockedBy is conflictOf as a suffix for a release's failure reason.
func (e *Engine) blockedBy(app spec.App, env string, track runtime.Track) string {
	if c := e.conflictOf(app, env, track); c != "" {
		return "; blocked by a change made outside ship: " + c
	}
	return ""
}

// ensureRemoved removes a track in the background (draining takes the
// instances' grace period, which must not hold up other releases' ticks).
func (e *Engine) ensureRemoved(ctx context.Context, app spec.App, env string, track runtime.Track, actual runtime.TrackStatus) {
	if actual.Version == "" && actual.Desired == 0 {
		return
	}
	k := appKey{app.Name, env}
	e.mu.Lock()
	ts := e.track(k, track)
	if !ts.removing.IsZero() && e.now().Sub(ts.removing) < reapplyAfter {
		e.mu.Unlock()
		return
	}
	ts.removing, ts.inflight = e.now(), true
	ts.applied, ts.conflict = nil, nil
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
			ts.inflight = false
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
func (e *Engine) ensureWeight(ctx context.Context, app spec.App, env string, id int64, w release.Weight) error {
	k := appKey{app.Name, env}
	e.mu.Lock()
	m := e.slotLocked(k).weight
	e.mu.Unlock()
	if m.known && m.desired == w && e.now().Sub(m.at) < reapplyAfter {
		return nil
	}
	cur, _, err := e.cfg.Router.Weight(ctx, app, env)
	if err == nil && (cur == w || (m.known && m.desired == w && cur == m.observed)) {
		e.markWeight(k, w, cur)
		return nil
	}
	if err := e.setWeight(ctx, app, env, id, w); err != nil {
		return err
	}
	if got, _, err := e.cfg.Router.Weight(ctx, app, env); err == nil {
		e.markWeight(k, w, got)
	}
	return nil
}

// markWeight remembers what the router reported after a SetWeight of w.
func (e *Engine) markWeight(k appKey, w, observed release.Weight) {
	e.mu.Lock()
	e.slotLocked(k).weight = weightMark{known: true, desired: w, observed: observed, at: e.now()}
	e.mu.Unlock()
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
		d.New = ts.Restarts - prev
		evs, err := e.cfg.Store.AddEvents(ctx, nil, e.event(r, release.EvCrashed, "ship",
			fmt.Sprintf("%s %s: %d instance restart(s), %d in all", t, ts.Version, ts.Restarts-prev, ts.Restarts), d))
		if err != nil {
			e.log.Error("record crash", "app", r.App, "env", r.Env, "err", err)
			continue
		}
		e.publish(evs)
	}
}
