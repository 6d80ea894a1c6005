package engine

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"sync"
	"time"

	"github.com/shipteam/ship/internal/release"
	"github.com/shipteam/ship/internal/spec"
)

// This file is the engine's one scheduler. Active releases are stepped
// every Tick (their deadlines and judges run); an app without a release
// costs nothing until something happens to it (a release ends, a command
// or a failure marks it) or its next look is due (see Config.LookEvery).
// Run sleeps until the earliest of those, or until a command wakes it.

// Run resumes what the store says should be running — stable tracks,
// weights, canaries of unfinished releases — and then steps what is due
// until ctx is done. Background calls are waited for before it returns.
func (e *Engine) Run(ctx context.Context) error {
	e.mu.Lock()
	if e.running {
		e.mu.Unlock()
		return errors.New("engine: Run called twice")
	}
	e.running = true
	e.mu.Unlock()
	defer e.bg.Wait()
	if err := e.Resume(ctx); err != nil {
		e.log.Error("resume", "err", err)
	}
	for {
		next := e.schedule(ctx)
		// Nothing due: sleep until the active releases are read again
		// (a command wakes Run sooner).
		wait := resyncEvery
		if !next.IsZero() {
			wait = min(max(next.Sub(e.now()), time.Millisecond), resyncEvery)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-e.cfg.Clock.After(wait):
		case <-e.kick:
		}
	}
}

// Step moves every active release one step toward its recorded state,
// then reconciles the apps without a release that are due, and waits for
// all of it. Tests call it directly with a fake clock; Run does the same
// without waiting.
func (e *Engine) Step(ctx context.Context) error {
	wg, err := e.stepReleases(ctx)
	wg.Wait()
	wg = &sync.WaitGroup{}
	e.scheduleInto(ctx, wg, false, false)
	wg.Wait()
	return err
}

// resyncEvery is how often the set of active releases is read again from
// the store (the engine keeps it itself between reads).
const resyncEvery = 5 * time.Second

func (e *Engine) schedule(ctx context.Context) time.Time {
	return e.scheduleInto(ctx, &sync.WaitGroup{}, true, false)
}

// scheduleInto starts what is due (releases only when releases is set)
// and returns when Run should look again: the next Tick while a release is
// active, else the earliest idle due time (zero: nothing is due, wait for
// a wake). all re-reads the active releases from the store first.
func (e *Engine) scheduleInto(ctx context.Context, wg *sync.WaitGroup, releases, all bool) time.Time {
	now := e.now()
	e.mu.Lock()
	resync := releases && (all || now.Sub(e.synced) >= resyncEvery)
	e.mu.Unlock()
	if resync {
		if err := e.syncActive(ctx); err != nil && ctx.Err() == nil {
			e.log.Error("list active releases", "err", err)
		}
	}
	type job struct {
		k  appKey
		id int64
	}
	var drives []job
	var idle []appKey
	var next time.Time
	soonest := func(t time.Time) {
		if next.IsZero() || t.Before(next) {
			next = t
		}
	}
	e.mu.Lock()
	if releases {
		for id, k := range e.actives {
			drives = append(drives, job{k, id})
		}
	}
	if len(e.actives) > 0 {
		soonest(now.Add(e.cfg.Tick))
	}
	for k, s := range e.slots {
		if !s.idle && s.looks && e.cfg.LookEvery > 0 && !now.Before(s.lookAt) {
			s.idle, s.due = true, time.Time{}
		}
		switch {
		case s.idle && !now.Before(s.due):
			idle = append(idle, k)
			// Look again at the next tick: the app may still be busy
			// with the step that marked it (a release that just ended).
			soonest(now.Add(e.cfg.Tick))
		case s.idle:
			soonest(s.due)
		case s.looks && e.cfg.LookEvery > 0:
			soonest(s.lookAt)
		}
	}
	e.mu.Unlock()
	for _, j := range drives {
		if all || e.dueNow(j.k, now) && e.paced(j.k) {
			e.startDrive(ctx, wg, j.k, j.id)
		}
	}
	for _, k := range idle {
		e.spawn(ctx, wg, k, func(ctx context.Context) {
			done, err := e.reconcileIdle(ctx, k)
			if err != nil && ctx.Err() == nil {
				e.failed(k, "reconcile", err, idleBackoffMax)
				return
			}
			e.succeeded(k, "reconcile")
			e.mu.Lock()
			s := e.slotLocked(k)
			if done {
				s.idle = false
				s.lookAt = e.now().Add(e.cfg.LookEvery)
			} else {
				// Not there yet (instances starting, a drain running):
				// look again at the next tick.
				s.due = e.now().Add(e.cfg.Tick)
			}
			e.mu.Unlock()
		})
	}
	return next
}

// startDrive steps release id of k, or judges it alone when k's previous
// step is still running (a runtime call may hang up to stepCallTimeout; a
// failing canary must still be turned off within 2 s of the evidence).
func (e *Engine) startDrive(ctx context.Context, wg *sync.WaitGroup, k appKey, id int64) {
	started := e.spawn(ctx, wg, k, func(ctx context.Context) {
		if err := e.drive(ctx, id); err != nil && ctx.Err() == nil {
			e.failed(k, fmt.Sprintf("drive release #%d", id), err, activeBackoffMax)
			return
		}
		e.succeeded(k, fmt.Sprintf("drive release #%d", id))
	})
	if !started {
		e.spawnJudge(ctx, wg, k, id)
	}
}

// stepReleases steps every active release once (and nothing else).
func (e *Engine) stepReleases(ctx context.Context) (*sync.WaitGroup, error) {
	wg := &sync.WaitGroup{}
	if err := e.syncActive(ctx); err != nil {
		return wg, fmt.Errorf("list active releases: %w", err)
	}
	e.mu.Lock()
	actives := maps.Clone(e.actives)
	e.mu.Unlock()
	for id, k := range actives {
		e.startDrive(ctx, wg, k, id)
	}
	return wg, nil
}

// pace sets how many ticks a release's steps may skip: a canary that
// waits for analysis (progressing or held) needs a look once per judge
// interval, not every tick; one that waits for instances (pending,
// promoting) every tick. A held canary thus costs a third of what it did
// with the defaults (100 ms tick, 250 ms interval).
func (e *Engine) pace(r release.Release, app spec.App) {
	skip := 0
	if r.State == release.Progressing || r.State == release.Paused {
		skip = int((interval(app)+e.cfg.Tick-1)/e.cfg.Tick) - 1
	}
	e.mu.Lock()
	s := e.slotLocked(appKey{r.App, r.Env})
	s.pace, s.skip = skip, min(s.skip, skip)
	e.mu.Unlock()
}

// paced reports whether k's release is due at this tick (see pace).
func (e *Engine) paced(k appKey) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	s := e.slotLocked(k)
	if s.skip > 0 {
		s.skip--
		return false
	}
	s.skip = s.pace
	return true
}

// dueNow reports whether k is not backing off at now.
func (e *Engine) dueNow(k appKey, now time.Time) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	s := e.slotLocked(k)
	return s.fail.n == 0 || !now.Before(s.due)
}

// syncActive reads the active releases from the store.
func (e *Engine) syncActive(ctx context.Context) error {
	rels, err := e.cfg.Store.ActiveReleases(ctx)
	if err != nil {
		return err
	}
	active := make(map[int64]appKey, len(rels))
	for _, r := range rels {
		active[r.ID] = appKey{r.App, r.Env}
	}
	e.mu.Lock()
	e.actives, e.synced = active, e.now()
	e.mu.Unlock()
	return nil
}

// activate and deactivate keep the set of active releases between reads.
func (e *Engine) activate(r release.Release) {
	e.mu.Lock()
	e.actives[r.ID] = appKey{r.App, r.Env}
	s := e.slotLocked(appKey{r.App, r.Env})
	s.pace, s.skip = 0, 0 // a new release is stepped at once
	e.mu.Unlock()
	e.wake()
}

func (e *Engine) deactivate(id int64) {
	e.mu.Lock()
	delete(e.actives, id)
	e.mu.Unlock()
}

// spawnJudge runs judgeAlone for a release whose step is still running,
// at most one per app/env at a time. It takes neither the step lock nor a
// Parallel slot: steps stuck in runtime calls must not delay an abort.
func (e *Engine) spawnJudge(ctx context.Context, wg *sync.WaitGroup, k appKey, id int64) {
	e.mu.Lock()
	s := e.slotLocked(k)
	if s.judging {
		e.mu.Unlock()
		return
	}
	s.judging = true
	e.mu.Unlock()
	wg.Add(1)
	e.bg.Add(1)
	go func() {
		defer func() {
			e.mu.Lock()
			s.judging = false
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

// spawn runs f for k in its own goroutine under k's command lock, at most
// one per k at a time and at most Parallel at once. It reports false when
// k is still busy with the previous one.
func (e *Engine) spawn(ctx context.Context, wg *sync.WaitGroup, k appKey, f func(context.Context)) bool {
	e.mu.Lock()
	s := e.slotLocked(k)
	if s.stepping {
		e.mu.Unlock()
		return false
	}
	s.stepping = true
	e.mu.Unlock()
	wg.Add(1)
	e.bg.Add(1)
	go func() {
		defer func() {
			e.mu.Lock()
			s.stepping = false
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
		s.cmd.Lock()
		defer s.cmd.Unlock()
		ctx, cancel := context.WithTimeout(ctx, stepCallTimeout)
		defer cancel()
		f(ctx)
	}()
	return true
}
