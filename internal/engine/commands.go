package engine

import (
	"context"
	"errors"
	"fmt"

	"github.com/shipteam/ship/internal/release"
	"github.com/shipteam/ship/internal/runtime"
	"github.com/shipteam/ship/internal/spec"
)

// Deploy records a new release of req.App at req.Version and returns it in
// state pending; the engine drives it from there. It is refused when the
// app is locked (locked) or already has an active release (conflict).
func (e *Engine) Deploy(ctx context.Context, a Actor, req DeployRequest) (release.Release, error) {
	app, env, err := e.resolve(req.App, req.Env)
	if err != nil {
		return release.Release{}, err
	}
	if err := e.authorize(ctx, a, ActDeploy, app.Name, env); err != nil {
		return release.Release{}, err
	}
	if err := checkVersion(req.Version); err != nil {
		return release.Release{}, err
	}
	if err := checkKind(app); err != nil {
		return release.Release{}, err
	}
	if req.Canary != 0 && len(req.Steps) > 0 {
		return release.Release{}, Errorf(CodeInvalid, "give either --canary or --steps, not both")
	}
	if req.Rolling && (req.Canary != 0 || len(req.Steps) > 0) {
		return release.Release{}, Errorf(CodeInvalid, "a rolling deploy has no canary: drop --canary/--steps or --rolling")
	}
	if req.Canary != 0 {
		if err := checkWeights([]release.Weight{req.Canary}, "--canary"); err != nil {
			return release.Release{}, err
		}
	}
	if err := checkWeights(req.Steps, "--steps"); err != nil {
		return release.Release{}, err
	}
	k := appKey{app.Name, env}
	defer e.lockKey(k)()
	if err := e.checkUnlocked(ctx, k); err != nil {
		return release.Release{}, err
	}
	if err := e.checkNoActive(ctx, k); err != nil {
		return release.Release{}, err
	}
	st, err := e.appState(ctx, app, env)
	if err != nil {
		return release.Release{}, internal(err, "read state of %s", k)
	}
	if req.Version == st.Stable {
		return release.Release{}, Errorf(CodeInvalid, "%s is already the stable version of %s", req.Version, k)
	}
	now := e.now()
	r := release.Release{
		App: app.Name, Env: env, Kind: release.KindDeploy, Version: req.Version, FromVersion: st.Stable,
		State: release.Pending, Actor: a.Name, Source: a.Source, Created: now, Updated: now, StepStarted: now,
	}
	switch {
	case st.Stable == "":
		r.Strategy = release.StrategyRolling
	case req.Rolling || (app.Strategy.Type == spec.StrategyRolling && req.Canary == 0 && len(req.Steps) == 0):
		r.Strategy = release.StrategyRolling
	case req.Canary != 0:
		r.Strategy, r.Steps, r.HoldAt = release.StrategyCanary, []release.Weight{req.Canary}, req.Canary
	default:
		r.Strategy, r.Steps = release.StrategyCanary, req.Steps
		if len(r.Steps) == 0 {
			r.Steps = specWeights(app)
		}
		if err := checkWeights(r.Steps, "spec steps of "+app.Name); err != nil {
			return release.Release{}, err
		}
	}
	plan := r.Plan() + " from " + st.Stable
	if st.Stable == "" {
		plan = "first deploy, rolling (nothing to compare a canary with)"
	}
	r.Reason = plan
	st.Updated = now
	ev := e.event(r, release.EvCreated, a.Name, fmt.Sprintf("%s deploys %s to %s: %s", actorDesc(a.Name, a.Source), r.Version, k, plan), &release.EventData{
		Version: r.Version, From: r.FromVersion, Strategy: r.Strategy, Steps: r.Steps, HoldAt: r.HoldAt, Source: a.Source,
	})
	r, evs, err := e.cfg.Store.CreateRelease(ctx, r, &st, ev)
	if errors.Is(err, release.ErrConflict) {
		return release.Release{}, e.checkNoActive(ctx, k)
	}
	if err != nil {
		return release.Release{}, internal(err, "record release of %s", k)
	}
	e.mu.Lock()
	e.slotLocked(k).latest = nil // the previous release's analysis is not this one's
	e.mu.Unlock()
	e.activate(r)
	e.publish(evs)
	e.log.Info("release created", "app", r.App, "env", r.Env, "release", r.ID, "version", r.Version, "actor", a.Name, "strategy", r.Strategy)
	e.wake()
	return r, nil
}

// Promote moves a progressing or paused release to promoting at once.
func (e *Engine) Promote(ctx context.Context, a Actor, req PromoteRequest) (release.Release, error) {
	app, env, err := e.resolve(req.App, req.Env)
	if err != nil {
		return release.Release{}, err
	}
	if err := e.authorize(ctx, a, ActPromote, app.Name, env); err != nil {
		return release.Release{}, err
	}
	k := appKey{app.Name, env}
	defer e.lockKey(k)()
	r, err := e.active(ctx, k, "promote")
	if err != nil {
		return r, err
	}
	switch r.State {
	case release.Promoting:
		return r, nil
	case release.Pending:
		if r.Strategy == release.StrategyRolling {
			return r, nil // it goes to promoting by itself
		}
		return r, Errorf(CodeConflict, "release #%d of %s is still pending: its canary %s is not ready yet", r.ID, k, r.Version)
	}
	r, err = e.transition(ctx, r, release.Promoting, 0, fmt.Sprintf("promoted by %s", actorDesc(a.Name, a.Source)), a.Name, release.EvPromoting, nil)
	if err != nil {
		return r, err
	}
	e.wake()
	return r, nil
}

// Abort ends the active release: it is recorded as aborted and the canary's
// weight is set to 0 before Abort returns; the canary's instances are
// removed in the background. It does not wait for a step of the app that
// is in progress (a runtime call may hang up to stepCallTimeout): finish
// needs only recordLock, and the stuck step cannot undo the abort (see
// setWeight).
func (e *Engine) Abort(ctx context.Context, a Actor, req AbortRequest) (release.Release, error) {
	reason := req.Reason
	app, env, err := e.resolve(req.App, req.Env)
	if err != nil {
		return release.Release{}, err
	}
	if err := e.authorize(ctx, a, ActAbort, app.Name, env); err != nil {
		return release.Release{}, err
	}
	if reason != "" {
		if reason, err = checkReason(reason); err != nil {
			return release.Release{}, err
		}
	}
	k := appKey{app.Name, env}
	r, err := e.active(ctx, k, "abort")
	if err != nil {
		return r, err
	}
	msg := "aborted by " + actorDesc(a.Name, a.Source)
	if reason != "" {
		msg += ": " + reason
	}
	r, err = e.finish(ctx, app, r, release.Aborted, msg, a.Name, nil)
	e.wake()
	return r, err
}

// Rollback starts a rolling release back to a known-good version: `to` when
// given (it must have succeeded before), else the stable version when a
// release is active (that release is recorded as rolled back), else the
// newest succeeded version before the stable one.
func (e *Engine) Rollback(ctx context.Context, a Actor, req RollbackRequest) (release.Release, error) {
	to := req.To
	app, env, err := e.resolve(req.App, req.Env)
	if err != nil {
		return release.Release{}, err
	}
	if err := e.authorize(ctx, a, ActRollback, app.Name, env); err != nil {
		return release.Release{}, err
	}
	if err := checkKind(app); err != nil {
		return release.Release{}, err
	}
	k := appKey{app.Name, env}
	defer e.lockKey(k)()
	if err := e.checkUnlocked(ctx, k); err != nil {
		return release.Release{}, err
	}
	st, err := e.appState(ctx, app, env)
	if err != nil {
		return release.Release{}, internal(err, "read state of %s", k)
	}
	act, err := e.cfg.Store.ActiveRelease(ctx, app.Name, env)
	hasActive := err == nil
	if err != nil && !errors.Is(err, release.ErrNotFound) {
		return release.Release{}, internal(err, "read active release of %s", k)
	}
	target := to
	switch {
	case to != "":
		if err := checkVersion(to); err != nil {
			return release.Release{}, err
		}
		if to != st.Stable {
			if _, err := e.cfg.Store.LastSucceeded(ctx, app.Name, env, to, ""); errors.Is(err, release.ErrNotFound) {
				return release.Release{}, Errorf(CodeNotFound, "%s never succeeded in %s: roll back only to a known-good version, or deploy it", to, k)
			} else if err != nil {
				return release.Release{}, internal(err, "look up %s", to)
			}
		}
	case hasActive && st.Stable != "":
		target = st.Stable
	default:
		prev, err := e.cfg.Store.LastSucceeded(ctx, app.Name, env, "", st.Stable)
		if errors.Is(err, release.ErrNotFound) {
			return release.Release{}, Errorf(CodeNotFound, "%s has no earlier successful release to roll back to", k)
		}
		if err != nil {
			return release.Release{}, internal(err, "look up the previous release of %s", k)
		}
		target = prev.Version
	}
	if !hasActive && target == st.Stable {
		return release.Release{}, Errorf(CodeInvalid, "%s already runs %s", k, target)
	}
	if hasActive {
		msg := fmt.Sprintf("rolled back to %s by %s", target, actorDesc(a.Name, a.Source))
		if _, err := e.finish(ctx, app, act, release.RolledBack, msg, a.Name, nil); err != nil {
			return release.Release{}, err
		}
	}
	now := e.now()
	r := release.Release{
		App: app.Name, Env: env, Kind: release.KindRollback, Version: target, FromVersion: st.Stable,
		Strategy: release.StrategyRolling, State: release.Pending, Reason: "rollback from " + orNone(st.Stable),
		Actor: a.Name, Source: a.Source, Created: now, Updated: now, StepStarted: now,
	}
	ev := e.event(r, release.EvCreated, a.Name, fmt.Sprintf("%s rolls %s back to %s (from %s)", actorDesc(a.Name, a.Source), k, target, orNone(st.Stable)),
		&release.EventData{Version: target, From: st.Stable, Strategy: r.Strategy, Kind: r.Kind, Source: a.Source})
	r, evs, err := e.cfg.Store.CreateRelease(ctx, r, nil, ev)
	if errors.Is(err, release.ErrConflict) {
		return release.Release{}, e.checkNoActive(ctx, k)
	}
	if err != nil {
		return release.Release{}, internal(err, "record rollback of %s", k)
	}
	e.publish(evs)
	e.activate(r)
	return r, nil
}

// Scale sets the stable track's instance count (stored, then applied). A
// running canary keeps its share: its instances follow at the next tick. 0
// stops the app and is refused while a release is active, because abort
// relies on stable taking all traffic back at once.
func (e *Engine) Scale(ctx context.Context, a Actor, req ScaleRequest) error {
	app, env, err := e.resolve(req.App, req.Env)
	if err != nil {
		return err
	}
	if err := e.authorize(ctx, a, ActScale, app.Name, env); err != nil {
		return err
	}
	if req.Replicas == nil {
		return Errorf(CodeInvalid, "replicas is required (0 stops the app)")
	}
	replicas := *req.Replicas
	if replicas < 0 || replicas > maxReplicas {
		return Errorf(CodeInvalid, "replicas must be between 0 and %d, not %d", maxReplicas, replicas)
	}
	k := appKey{app.Name, env}
	defer e.lockKey(k)()
	act, err := e.cfg.Store.ActiveRelease(ctx, app.Name, env)
	hasActive := err == nil
	if err != nil && !errors.Is(err, release.ErrNotFound) {
		return internal(err, "read active release of %s", k)
	}
	if replicas == 0 && hasActive {
		return Errorf(CodeConflict, "%s has release #%d (%s) active: stable cannot be scaled to 0 while it runs", k, act.ID, describe(act))
	}
	st, err := e.appState(ctx, app, env)
	if err != nil {
		return internal(err, "read state of %s", k)
	}
	was := st.Replicas
	st.Replicas, st.Updated = replicas, e.now()
	ev := release.Event{App: app.Name, Env: env, Type: release.EvScaled, Actor: a.Name, Time: e.now(),
		Message: fmt.Sprintf("%s scaled %s stable to %d instances (was %d)", actorDesc(a.Name, a.Source), k, replicas, was),
		Data:    &release.EventData{Replicas: replicas, Was: was, Source: a.Source}}
	if hasActive {
		ev.ReleaseID = act.ID
	}
	evs, err := e.cfg.Store.AddEvents(ctx, &st, ev)
	if err != nil {
		return internal(err, "record scale of %s", k)
	}
	e.publish(evs)
	version := st.Stable
	if hasActive && stableMoving(act) {
		version = act.Version
	}
	if version == "" {
		return nil // nothing runs yet: the first deploy uses the new count
	}
	want := runtime.Want{Version: version, Replicas: replicas}
	if err := e.cfg.Runtime.Apply(ctx, app, env, runtime.Stable, want); err != nil {
		e.markIdle(k)
		return internal(err, "scale %s: the new count is recorded and will be retried", k)
	}
	e.noteApplied(k, runtime.Stable, want)
	e.wake()
	return nil
}

// Lock blocks deploys and rollbacks of app in env until Unlock.
func (e *Engine) Lock(ctx context.Context, a Actor, req LockRequest) error {
	reason := req.Reason
	app, env, err := e.resolve(req.App, req.Env)
	if err != nil {
		return err
	}
	if err := e.authorize(ctx, a, ActLock, app.Name, env); err != nil {
		return err
	}
	if reason == "" {
		return Errorf(CodeInvalid, "a lock needs a reason, so others know why they cannot deploy")
	}
	if reason, err = checkReason(reason); err != nil {
		return err
	}
	k := appKey{app.Name, env}
	defer e.lockKey(k)()
	now := e.now()
	l := release.Lock{App: app.Name, Env: env, Reason: reason, Actor: a.Name, Since: now}
	ev, err := e.cfg.Store.PutLock(ctx, l, release.Event{App: app.Name, Env: env, Type: release.EvLocked, Actor: a.Name, Time: now,
		Message: fmt.Sprintf("%s locked %s: %s", actorDesc(a.Name, a.Source), k, reason), Data: &release.EventData{Reason: reason, Source: a.Source}})
	if err != nil {
		return internal(err, "lock %s", k)
	}
	e.publish([]release.Event{ev})
	return nil
}

// Unlock removes the lock of app in env; not_found when it is not locked.
func (e *Engine) Unlock(ctx context.Context, a Actor, req UnlockRequest) error {
	app, env, err := e.resolve(req.App, req.Env)
	if err != nil {
		return err
	}
	if err := e.authorize(ctx, a, ActUnlock, app.Name, env); err != nil {
		return err
	}
	k := appKey{app.Name, env}
	defer e.lockKey(k)()
	ev, err := e.cfg.Store.DeleteLock(ctx, app.Name, env, release.Event{App: app.Name, Env: env, Type: release.EvUnlocked, Actor: a.Name, Time: e.now(),
		Message: fmt.Sprintf("%s unlocked %s", actorDesc(a.Name, a.Source), k), Data: &release.EventData{Source: a.Source}})
	if errors.Is(err, release.ErrNotFound) {
		return Errorf(CodeNotFound, "%s is not locked", k)
	}
	if err != nil {
		return internal(err, "unlock %s", k)
	}
	e.publish([]release.Event{ev})
	return nil
}

func (e *Engine) checkUnlocked(ctx context.Context, k appKey) error {
	l, err := e.cfg.Store.GetLock(ctx, k.app, k.env)
	if errors.Is(err, release.ErrNotFound) {
		return nil
	}
	if err != nil {
		return internal(err, "read lock of %s", k)
	}
	return Errorf(CodeLocked, "%s is locked by %s: %q (since %s)", k, l.Actor, l.Reason, l.Since.UTC().Format("2006-01-02 15:04 MST"))
}

func (e *Engine) checkNoActive(ctx context.Context, k appKey) error {
	r, err := e.cfg.Store.ActiveRelease(ctx, k.app, k.env)
	if errors.Is(err, release.ErrNotFound) {
		return nil
	}
	if err != nil {
		return internal(err, "read active release of %s", k)
	}
	return Errorf(CodeConflict, "%s already has release #%d (%s) started by %s", k, r.ID, describe(r), actorDesc(r.Actor, r.Source))
}

func (e *Engine) active(ctx context.Context, k appKey, verb string) (release.Release, error) {
	r, err := e.cfg.Store.ActiveRelease(ctx, k.app, k.env)
	if errors.Is(err, release.ErrNotFound) {
		return r, Errorf(CodeNotFound, "%s has no active release to %s", k, verb)
	}
	if err != nil {
		return r, internal(err, "read active release of %s", k)
	}
	return r, nil
}

// stableMoving reports whether r is replacing the stable track's version.
func stableMoving(r release.Release) bool {
	return r.State == release.Promoting || (r.Strategy == release.StrategyRolling && r.Active())
}

// checkKind refuses app kinds the engine cannot roll out yet; the kind is
// in the spec and here from the start so worker and cron slot in later.
func checkKind(app spec.App) error {
	switch app.Kind {
	case "", spec.KindWeb:
		return nil
	}
	return Errorf(CodeInvalid, "%s is a %s app: ship rolls out web apps only so far", app.Name, app.Kind)
}

func orNone(v string) string {
	if v == "" {
		return "nothing"
	}
	return v
}
