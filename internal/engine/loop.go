package engine

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/shipteam/ship/internal/release"
)

// Step moves every active release one step toward its recorded state,
// then reconciles apps without a release, and waits for all of it. Tests
// call it directly with a fake clock; Run uses the same two halves without
// waiting.
func (e *Engine) Step(ctx context.Context) error {
	wg, err := e.stepReleases(ctx)
	wg.Wait()
	e.stepIdle(ctx).Wait()
	return err
}

// stepReleases starts one step for every active release whose app/env is
// not still busy with the previous one. A step that hangs (a runtime call
// that does not return) thus delays only its own app, never another app's
// abort; and each step is bounded by stepCallTimeout.
func (e *Engine) stepReleases(ctx context.Context) (*sync.WaitGroup, error) {
	wg := &sync.WaitGroup{}
	rels, err := e.cfg.Store.ActiveReleases(ctx)
	if err != nil {
		return wg, fmt.Errorf("list active releases: %w", err)
	}
	for _, r := range rels {
		k, id := appKey{r.App, r.Env}, r.ID
		started := e.spawn(ctx, wg, k, func(ctx context.Context) {
			if err := e.drive(ctx, id); err != nil && ctx.Err() == nil {
				e.log.Error("drive release", "app", k.app, "env", k.env, "release", id, "err", err)
			}
		})
		if !started && (r.State == release.Progressing || r.State == release.Paused) {
			e.spawnJudge(ctx, wg, k, id)
		}
	}
	return wg, nil
}

// spawnJudge runs judgeAlone for a release whose step is still running,
// at most one per app/env at a time. It takes neither the step lock nor a
// Parallel slot: steps stuck in runtime calls must not delay an abort.
func (e *Engine) spawnJudge(ctx context.Context, wg *sync.WaitGroup, k appKey, id int64) {
	e.mu.Lock()
	if e.judging[k] {
		e.mu.Unlock()
		return
	}
	e.judging[k] = true
	e.mu.Unlock()
	wg.Add(1)
	e.bg.Add(1)
	go func() {
		defer func() {
			e.mu.Lock()
			delete(e.judging, k)
			e.mu.Unlock()
			wg.Done()
			e.bg.Done()
		}()
		ctx, cancel := context.WithTimeout(ctx, judgeCallTimeout)
		defer cancel()
		if err := e.judgeAlone(ctx, id); err != nil && ctx.Err() == nil {
			e.log.Error("judge release", "app", k.app, "env", k.env, "release", id, "err", err)
		}
	}()
}

// lookEvery is how often every app without a release is looked at again
// once reconciled: hand edits (a changed image, a taken-over field) happen
// while nothing else would make ship look, and are reported (app.conflict).
const lookEvery = 5 * time.Second

// stepIdle starts reconciling every app/env marked idle, and every lookEvery
// all that run a stable version.
func (e *Engine) stepIdle(ctx context.Context) *sync.WaitGroup {
	wg := &sync.WaitGroup{}
	e.markAllIdle(ctx)
	e.mu.Lock()
	idle := make([]appKey, 0, len(e.idle))
	for k := range e.idle {
		idle = append(idle, k)
	}
	e.mu.Unlock()
	for _, k := range idle {
		e.spawn(ctx, wg, k, func(ctx context.Context) {
			done, err := e.reconcileIdle(ctx, k)
			if err != nil && ctx.Err() == nil {
				e.log.Error("reconcile", "app", k.app, "env", k.env, "err", err)
			}
			if done {
				e.mu.Lock()
				delete(e.idle, k)
				e.mu.Unlock()
			}
		})
	}
	return wg
}

// spawn runs f for k in its own goroutine under k's lock, at most one per
// k at a time and at most Parallel at once. It reports false when k is
// still busy with the previous one.
func (e *Engine) spawn(ctx context.Context, wg *sync.WaitGroup, k appKey, f func(context.Context)) bool {
	e.mu.Lock()
	if e.busy[k] {
		e.mu.Unlock()
		return false
	}
	e.busy[k] = true
	e.mu.Unlock()
	wg.Add(1)
	e.bg.Add(1)
	go func() {
		defer func() {
			e.mu.Lock()
			delete(e.busy, k)
			e.mu.Unlock()
			wg.Done()
			e.bg.Done()
		}()
		select {
		case e.sem <- struct{}{}:
		case <-ctx.Done():
			return
		}
		defer func() { <-e.sem }()
		unlock := e.lockKey(k)
		defer unlock()
		ctx, cancel := context.WithTimeout(ctx, stepCallTimeout)
		defer cancel()
		f(ctx)
	}()
	return true
}

// markAllIdle marks every app/env with a recorded stable version for the
// idle reconciler, every lookEvery; reconcileIdle leaves those with a
// release to their driver.
func (e *Engine) markAllIdle(ctx context.Context) {
	e.mu.Lock()
	due := e.now().Sub(e.sweptAt) >= lookEvery
	if due {
		e.sweptAt = e.now()
	}
	e.mu.Unlock()
	if !due {
		return
	}
	sts, err := e.cfg.Store.AppStates(ctx)
	if err != nil {
		if ctx.Err() == nil {
			e.log.Error("list app states", "err", err)
		}
		return
	}
	for _, st := range sts {
		if _, ok := e.cfg.Apps.Get(st.App); ok && st.Stable != "" {
			e.markIdle(appKey{st.App, st.Env})
		}
	}
}
