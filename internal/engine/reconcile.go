package engine

import (
	"context"
	"errors"
	"fmt"

	"github.com/shipteam/ship/internal/release"
	"github.com/shipteam/ship/internal/runtime"
)

// reconcileIdle makes an app/env without an active release run what its
// state says: stable at its recorded version and count, no canary, weight 0.
// It reports done once all of that is observed.
func (e *Engine) reconcileIdle(ctx context.Context, k appKey) (bool, error) {
	if _, err := e.cfg.Store.ActiveRelease(ctx, k.app, k.env); err == nil {
		return true, nil // the release's driver owns the app now
	} else if !errors.Is(err, release.ErrNotFound) {
		return false, err
	}
	app, ok := e.cfg.Apps.Get(k.app)
	if !ok {
		return true, nil
	}
	st, err := e.appState(ctx, app, k.env)
	if err != nil {
		return false, err
	}
	status, err := e.cfg.Runtime.Status(ctx, app, k.env)
	if err != nil {
		return false, fmt.Errorf("runtime status: %w", err)
	}
	e.mu.Lock()
	e.slotLocked(k).looks = st.Stable != ""
	e.mu.Unlock()
	var errs []error
	if err := e.ensureWeight(ctx, app, k.env, 0, 0); err != nil {
		errs = append(errs, err)
	}
	done := true
	s, c := status[runtime.Stable], status[runtime.Canary]
	if st.Stable != "" {
		want := runtime.Want{Version: st.Stable, Replicas: st.Replicas}
		if err := e.ensureApply(ctx, app, k.env, runtime.Stable, want, s); err != nil {
			errs = append(errs, err)
		}
		if err := e.reportIdleConflict(ctx, app, k.env, runtime.Stable, want, s); err != nil {
			errs = append(errs, err)
		}
		done = done && s.Version == want.Version && e.wasApplied(k, runtime.Stable, want)
	} else if s.Version != "" || s.Desired > 0 {
		e.ensureRemoved(ctx, app, k.env, runtime.Stable, s) // a first deploy that failed
		done = false
	}
	if c.Version != "" || c.Desired > 0 {
		e.ensureRemoved(ctx, app, k.env, runtime.Canary, c)
		done = false
	}
	return done && len(errs) == 0, errors.Join(errs...)
}

// Resume re-applies what the store says should run: stable tracks at their
// versions and counts, canaries of unfinished releases, then the weights in
// force. The router keeps weights in memory, so this comes first after a
// restart. Run calls it; errors are retried by the next steps.
func (e *Engine) Resume(ctx context.Context) error {
	sts, err := e.cfg.Store.AppStates(ctx)
	if err != nil {
		return fmt.Errorf("resume: %w", err)
	}
	var errs []error
	for _, st := range sts {
		app, ok := e.cfg.Apps.Get(st.App)
		if !ok {
			e.log.Warn("resume: app in the store is not in the catalog", "app", st.App, "env", st.Env)
			continue
		}
		k := appKey{st.App, st.Env}
		unlock := e.lockKey(k)
		act, aerr := e.cfg.Store.ActiveRelease(ctx, st.App, st.Env)
		hasActive := aerr == nil
		stable := st.Stable
		if hasActive && stableMoving(act) {
			stable = act.Version
		}
		if stable != "" {
			want := runtime.Want{Version: stable, Replicas: st.Replicas}
			if err := e.cfg.Runtime.Apply(ctx, app, st.Env, runtime.Stable, want); err != nil {
				errs = append(errs, fmt.Errorf("resume %s stable: %w", k, err))
			} else {
				e.noteApplied(k, runtime.Stable, want)
			}
		}
		var weight release.Weight
		if hasActive && act.Strategy == release.StrategyCanary && act.State != release.Pending {
			want := runtime.Want{Version: act.Version, Replicas: canaryReplicas(st.Replicas, act.Weight)}
			if err := e.cfg.Runtime.Apply(ctx, app, st.Env, runtime.Canary, want); err != nil {
				errs = append(errs, fmt.Errorf("resume %s canary: %w", k, err))
			} else {
				e.noteApplied(k, runtime.Canary, want)
			}
			weight = act.Weight
		}
		var id int64
		if hasActive {
			id = act.ID
		}
		if err := e.setWeight(ctx, app, st.Env, id, weight); err != nil && !errors.Is(err, errEnded) {
			errs = append(errs, fmt.Errorf("resume %s weight: %w", k, err))
		}
		if !hasActive {
			e.markIdle(k)
		}
		e.log.Info("resumed", "app", st.App, "env", st.Env, "stable", stable, "weight", weight, "active", hasActive)
		unlock()
	}
	return errors.Join(errs...)
}
