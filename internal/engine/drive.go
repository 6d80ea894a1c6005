package engine

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/shipteam/ship/internal/analysis"
	"github.com/shipteam/ship/internal/release"
	"github.com/shipteam/ship/internal/runtime"
	"github.com/shipteam/ship/internal/spec"
)

// live is what the engine remembers about an active release between ticks
// (in its app's slot).
// None of it is needed for correctness after a restart: a new baseline is
// taken (the step's window restarts; its deadline does not).
type live struct {
	// mu guards the analysis fields below: the judge-only pass (judgeAlone)
	// may run while a step of the same release is stuck in a runtime call.
	mu         sync.Mutex
	phase      string // state and step the baseline belongs to
	base       [2]analysis.Sample
	haveBase   bool
	lastJudge  time.Time
	verdict    *analysis.Verdict
	lastResult analysis.Result // of the last recorded release.analysis event
	restarts   map[runtime.Track]int
	versions   map[runtime.Track]string
	conflicts  map[runtime.Track]string // last release.conflict recorded per track
	// metricsErr is the last failure to read metrics (nil once a read
	// works again), so that a step that ends without data says why.
	metricsErr error
	id         int64 // the release
}

// liveOf is the live state of active release r, made on first use (and
// anew for a new release of the app).
func (e *Engine) liveOf(r release.Release) *live {
	e.mu.Lock()
	defer e.mu.Unlock()
	s := e.slotLocked(appKey{r.App, r.Env})
	if s.live == nil || s.live.id != r.ID {
		s.live = &live{id: r.ID, restarts: map[runtime.Track]int{}, versions: map[runtime.Track]string{}, conflicts: map[runtime.Track]string{}}
	}
	return s.live
}

func (e *Engine) event(r release.Release, typ release.EventType, actor, msg string, data *release.EventData) release.Event {
	return release.Event{ReleaseID: r.ID, App: r.App, Env: r.Env, Type: typ, State: r.State, Step: r.Step, Weight: r.Weight,
		Message: msg, Actor: actor, Time: e.now(), Data: data}
}

// transition records r moving to state (at step, with the step's weight for
// progressing/paused) before anything acts on it. The app state follows the
// weight so a restart re-applies it.
func (e *Engine) transition(ctx context.Context, r release.Release, state release.State, step int, reason, actor string, typ release.EventType, data *release.EventData) (release.Release, error) {
	app, ok := e.cfg.Apps.Get(r.App)
	if !ok {
		return r, Errorf(CodeNotFound, "unknown app %q", r.App)
	}
	defer e.recordLock(appKey{r.App, r.Env})()
	st, err := e.appState(ctx, app, r.Env)
	if err != nil {
		return r, internal(err, "read state of %s/%s", r.App, r.Env)
	}
	now := e.now()
	r.State, r.Step, r.Reason, r.Updated, r.StepStarted = state, step, reason, now, now
	if state == release.Progressing || state == release.Paused {
		r.Weight = r.Steps[step]
	}
	if r.Strategy == release.StrategyCanary {
		st.Canary = r.Version
	}
	st.Weight, st.Updated = r.Weight, now
	if actor == "" {
		actor = "ship"
	}
	evs, err := e.cfg.Store.UpdateRelease(ctx, r, &st, e.event(r, typ, actor, reason, data))
	if err != nil {
		return r, recordErr(err, r, state)
	}
	e.publish(evs)
	e.log.Info("release "+string(state), "app", r.App, "env", r.Env, "release", r.ID, "version", r.Version, "step", r.Step, "weight", r.Weight, "actor", actor, "reason", reason)
	return r, nil
}

// finish ends r in a terminal state: recorded first, then the canary's
// weight goes to 0 at once; removing the canary's instances and putting
// stable back to its recorded version is left to the idle reconciler.
//
// finish takes only recordLock, not lockKey: Abort and the judge-only pass
// call it while a step of the app may be stuck in a runtime call. The store
// refuses to update a release that already ended, so of two finishes only
// the first counts.
func (e *Engine) finish(ctx context.Context, app spec.App, r release.Release, state release.State, reason, actor string, data *release.EventData) (release.Release, error) {
	k := appKey{r.App, r.Env}
	unlock := e.recordLock(k)
	defer unlock()
	st, err := e.appState(ctx, app, r.Env)
	if err != nil {
		return r, internal(err, "read state of %s/%s", r.App, r.Env)
	}
	now := e.now()
	r.State, r.Reason, r.Weight, r.Updated, r.StepStarted = state, reason, 0, now, now
	if state == release.Succeeded {
		st.Stable = r.Version
	}
	st.Canary, st.Weight, st.Updated = "", 0, now
	if actor == "" {
		actor = "ship"
	}
	l := e.liveOf(r)
	l.mu.Lock()
	if l.verdict != nil {
		if data == nil {
			data = &release.EventData{}
		}
		a := view(*l.verdict)
		data.Analysis = &a
	}
	l.mu.Unlock()
	evs, err := e.cfg.Store.UpdateRelease(ctx, r, &st, e.event(r, release.Ended(state), actor, reason, data))
	if err != nil {
		return r, recordErr(err, r, state)
	}
	e.publish(evs)
	e.log.Info("release "+string(state), "app", r.App, "env", r.Env, "release", r.ID, "version", r.Version, "actor", actor, "reason", reason)
	e.mu.Lock()
	s := e.slotLocked(k)
	if s.live != nil && s.live.id == r.ID {
		s.live = nil
	}
	s.idle, s.due = true, time.Time{}
	delete(e.actives, r.ID)
	e.mu.Unlock()
	e.wake()
	// Recorded: now act, even if the caller has gone away meanwhile, but
	// not forever: a hung router must not hang abort (the idle reconciler
	// sets 0 again later).
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), weightZeroTimeout)
	defer cancel()
	if err := e.cfg.Router.SetWeight(wctx, app, r.Env, 0); err != nil {
		// Recorded as 0 already; the idle reconciler keeps trying.
		e.log.Error("set weight 0", "app", r.App, "env", r.Env, "release", r.ID, "err", err)
	} else {
		e.recordWeight(wctx, r, 0)
	}
	return r, nil
}

// recordWeight records that the router has put inForce in force for r
// (release.weight): front ends settle on it instead of polling the router.
// A record that fails is logged; the weight is in force all the same.
func (e *Engine) recordWeight(ctx context.Context, r release.Release, inForce release.Weight) {
	ev := e.event(r, release.EvWeight, "ship", fmt.Sprintf("%s of traffic to %s in force", inForce, r.Version),
		&release.EventData{Asked: r.Weight, InForce: &inForce})
	evs, err := e.cfg.Store.AddEvents(ctx, nil, ev)
	if err != nil {
		e.log.Error("record weight", "app", r.App, "env", r.Env, "release", r.ID, "err", err)
		return
	}
	e.publish(evs)
}

// weightZeroTimeout bounds the router call that turns an ended release's
// canary off. A variable for tests.
var weightZeroTimeout = 10 * time.Second

// recordErr turns a failed release update into the error a command returns:
// conflict when the release ended meanwhile (an abort won the race).
func recordErr(err error, r release.Release, state release.State) error {
	if errors.Is(err, release.ErrEnded) {
		return &Error{Code: CodeConflict, Message: fmt.Sprintf("release #%d of %s/%s already ended", r.ID, r.App, r.Env), Err: err}
	}
	return internal(err, "record release #%d %s", r.ID, state)
}

// drive makes one step of release id toward what its state asks for.
func (e *Engine) drive(ctx context.Context, id int64) error {
	r, err := e.cfg.Store.GetRelease(ctx, id)
	if err != nil {
		return err
	}
	if !r.Active() { // ended by a command since it was listed
		return nil
	}
	app, ok := e.cfg.Apps.Get(r.App)
	if !ok {
		_, err := e.finish(ctx, spec.App{Name: r.App}, r, release.Failed, fmt.Sprintf("app %s is no longer in the catalog", r.App), "", nil)
		return err
	}
	e.pace(r, app)
	st, err := e.appState(ctx, app, r.Env)
	if err != nil {
		return err
	}
	status, err := e.cfg.Runtime.Status(ctx, app, r.Env)
	if err != nil {
		// The deadline still runs: a runtime that stays unreachable fails
		// the release instead of holding it forever.
		if e.now().After(e.deadline(app, r)) {
			_, ferr := e.finish(ctx, app, r, release.Failed, fmt.Sprintf("runtime unreachable past the %s deadline: %v", r.State, err), "", nil)
			return errors.Join(err, ferr)
		}
		return fmt.Errorf("runtime status: %w", err)
	}
	l := e.liveOf(r)
	e.noteRestarts(ctx, r, l, status)
	if err := e.ensureWeight(ctx, app, r.Env, r.ID, r.Weight); err != nil {
		e.log.Error("set weight", "app", r.App, "env", r.Env, "release", r.ID, "weight", r.Weight, "err", err)
	}
	if !stableMoving(r) && st.Stable != "" {
		// While a canary runs, stable is what the store says (it may still
		// be coming back from a failed release that ended just before).
		want := runtime.Want{Version: st.Stable, Replicas: st.Replicas}
		if err := e.applyTrack(ctx, app, r, runtime.Stable, want, status[runtime.Stable]); err != nil {
			e.log.Error("keep stable", "app", r.App, "env", r.Env, "release", r.ID, "err", err)
		}
	}
	if r.Strategy == release.StrategyRolling {
		e.ensureRemoved(ctx, app, r.Env, runtime.Canary, status[runtime.Canary])
		if r.State == release.Pending {
			r, err = e.transition(ctx, r, release.Promoting, 0, fmt.Sprintf("replacing stable %s with %s", orNone(r.FromVersion), r.Version), "", release.EvPromoting, nil)
			if err != nil {
				return err
			}
		}
	}
	switch r.State {
	case release.Pending:
		return e.drivePending(ctx, app, r, st, status)
	case release.Progressing, release.Paused:
		return e.driveCanary(ctx, app, r, st, status, l)
	case release.Promoting:
		return e.drivePromoting(ctx, app, r, st, status)
	}
	return nil
}

// deadline is when the release's current state must be left.
func (e *Engine) deadline(app spec.App, r release.Release) time.Time {
	switch r.State {
	case release.Paused:
		return r.StepStarted.Add(e.cfg.HoldTimeout)
	case release.Progressing:
		return stepDeadline(app, r.Step, r.StepStarted)
	}
	return r.StepStarted.Add(stepTimeout(app))
}

// drivePending starts the canary and waits for it to be ready.
func (e *Engine) drivePending(ctx context.Context, app spec.App, r release.Release, st release.AppState, status map[runtime.Track]runtime.TrackStatus) error {
	want := runtime.Want{Version: r.Version, Replicas: canaryReplicas(st.Replicas, r.Steps[0])}
	c := status[runtime.Canary]
	switch {
	case failed(c, want):
		_, err := e.finish(ctx, app, r, release.Failed, fmt.Sprintf("canary %s failed: %s", r.Version, c.Reason), "", trackData(c))
		return err
	case ready(c, want) && e.wasApplied(appKey{r.App, r.Env}, runtime.Canary, want):
		next, typ, msg := release.Progressing, release.EvStep, fmt.Sprintf("step 1 of %d: %s of traffic to %s", len(r.Steps), r.Steps[0], r.Version)
		if r.HoldAt > 0 {
			next, typ, msg = release.Paused, release.EvPaused, fmt.Sprintf("holding %s of traffic on %s until promoted or aborted", r.Steps[0], r.Version)
		}
		r, err := e.transition(ctx, r, next, 0, msg, "", typ, trackData(c))
		if err != nil {
			return err
		}
		return e.startStep(ctx, app, r)
	case e.now().After(e.deadline(app, r)):
		_, err := e.finish(ctx, app, r, release.Failed, fmt.Sprintf("canary %s not ready within %s: %d of %d instances ready%s", r.Version, stepTimeout(app), readyOf(c, want), want.Replicas, e.blockedBy(app, r.Env, runtime.Canary)), "", trackData(c))
		return err
	}
	return e.applyTrack(ctx, app, r, runtime.Canary, want, c)
}

// startStep puts the step's weight in force and takes the analysis
// baseline the step's window counts from.
func (e *Engine) startStep(ctx context.Context, app spec.App, r release.Release) error {
	if err := e.setWeight(ctx, app, r.Env, r.ID, r.Weight); err != nil {
		return fmt.Errorf("set weight %s: %w", r.Weight, err)
	}
	if got, _, err := e.cfg.Router.Weight(ctx, app, r.Env); err == nil {
		e.markWeight(appKey{r.App, r.Env}, r.Weight, got)
		e.recordWeight(ctx, r, got)
		if got != r.Weight {
			// Say so in history: the canary gets another share than asked.
			evs, err := e.cfg.Store.AddEvents(ctx, nil, e.event(r, release.EvWeightRounded, "ship",
				fmt.Sprintf("weight %s is %s in force: the router rounds it", r.Weight, got),
				&release.EventData{Asked: r.Weight, InForce: &got}))
			if err != nil {
				return err
			}
			e.publish(evs)
		}
	}
	l := e.liveOf(r)
	l.mu.Lock()
	defer l.mu.Unlock()
	l.haveBase = false
	l.verdict = nil
	return e.takeBaseline(ctx, r, l)
}

func phaseOf(r release.Release) string { return fmt.Sprintf("%s/%d", r.State, r.Step) }

func (e *Engine) takeBaseline(ctx context.Context, r release.Release, l *live) error {
	s, c, err := e.cfg.Metrics.Sample(ctx, r.App, r.Env)
	if err != nil {
		return fmt.Errorf("metrics: %w", err)
	}
	l.base = [2]analysis.Sample{s, c}
	l.haveBase, l.phase, l.lastJudge = true, phaseOf(r), e.now()
	return nil
}

// driveCanary runs analysis on a progressing or paused canary and moves it
// on: abort on a failing verdict, fail when the step's deadline passes
// without enough traffic, next step when analysis passed for the pause.
func (e *Engine) driveCanary(ctx context.Context, app spec.App, r release.Release, st release.AppState, status map[runtime.Track]runtime.TrackStatus, l *live) error {
	c := status[runtime.Canary]
	want := runtime.Want{Version: r.Version, Replicas: canaryReplicas(st.Replicas, r.Weight)}
	if failed(c, want) {
		_, err := e.finish(ctx, app, r, release.Failed, fmt.Sprintf("canary %s failed: %s", r.Version, c.Reason), "", trackData(c))
		return err
	}
	if abort, err := e.analyse(ctx, app, r, l); abort {
		return err
	}
	now := e.now()
	l.mu.Lock()
	verdict, metricsErr := l.verdict, l.metricsErr
	l.mu.Unlock()
	if r.State == release.Paused {
		if now.After(e.deadline(app, r)) {
			_, err := e.finish(ctx, app, r, release.Aborted, fmt.Sprintf("hold expired after %s without promote or abort", e.cfg.HoldTimeout), "", nil)
			return err
		}
		return e.applyTrack(ctx, app, r, runtime.Canary, want, c)
	}
	passed := verdict != nil && verdict.Result == analysis.Pass && !now.Before(r.StepStarted.Add(pause(app, r.Step)))
	last := r.Step+1 >= len(r.Steps)
	if passed && !last {
		// Grow the canary to the next step's share before giving it that
		// share of traffic.
		want.Replicas = max(want.Replicas, canaryReplicas(st.Replicas, r.Steps[r.Step+1]))
	}
	data := &release.EventData{}
	if verdict != nil {
		a := view(*verdict)
		data.Analysis = &a
	}
	switch {
	case passed && last:
		_, err := e.transition(ctx, r, release.Promoting, r.Step, fmt.Sprintf("all %d steps passed; replacing stable %s with %s", len(r.Steps), r.FromVersion, r.Version), "", release.EvPromoting, data)
		return err
	case passed && ready(c, want):
		r, err := e.transition(ctx, r, release.Progressing, r.Step+1, fmt.Sprintf("step %d of %d: %s of traffic to %s", r.Step+2, len(r.Steps), r.Steps[r.Step+1], r.Version), "", release.EvStep, data)
		if err != nil {
			return err
		}
		return e.startStep(ctx, app, r)
	case now.After(e.deadline(app, r)):
		limit := stepDeadline(app, r.Step, r.StepStarted).Sub(r.StepStarted)
		reason := fmt.Sprintf("step %d (%s) did not pass analysis within %s", r.Step+1, r.Weight, limit)
		switch {
		case passed:
			reason = fmt.Sprintf("canary not ready for step %d: %d of %d instances ready%s", r.Step+2, c.Ready, want.Replicas, e.blockedBy(app, r.Env, runtime.Canary))
		case verdict == nil || verdict.Result == analysis.Wait:
			n := int64(0)
			if verdict != nil {
				n = verdict.Canary.Requests
			}
			reason = fmt.Sprintf("not enough traffic: %d of %d canary requests in %s", n, thresholds(app).MinRequests, limit)
			if metricsErr != nil {
				// Not the traffic's fault: the numbers could not be read.
				reason = fmt.Sprintf("step %d (%s) could not be judged within %s: %v", r.Step+1, r.Weight, limit, metricsErr)
			}
		}
		_, err := e.finish(ctx, app, r, release.Failed, reason, "", data)
		return err
	}
	return e.applyTrack(ctx, app, r, runtime.Canary, want, c)
}

// analyse takes the step's baseline or, once per interval, judges the
// canary; a failing verdict aborts the release (abort reports that the
// caller must stop, with finish's error).
func (e *Engine) analyse(ctx context.Context, app spec.App, r release.Release, l *live) (abort bool, err error) {
	l.mu.Lock()
	if !l.haveBase || l.phase != phaseOf(r) {
		err := e.takeBaseline(ctx, r, l)
		l.metricsErr = err
		l.mu.Unlock()
		if err != nil {
			e.log.Error("analysis baseline", "app", r.App, "env", r.Env, "release", r.ID, "err", err)
		}
		return false, nil
	}
	if e.now().Sub(l.lastJudge) < interval(app) {
		l.mu.Unlock()
		return false, nil
	}
	v, err := e.judge(ctx, app, r, l)
	l.metricsErr = err
	l.mu.Unlock()
	if err != nil {
		e.log.Error("analysis", "app", r.App, "env", r.Env, "release", r.ID, "err", err)
		return false, nil
	}
	if v.Result != analysis.Fail {
		return false, nil
	}
	_, err = e.finish(ctx, app, r, release.Aborted, "analysis failed: "+v.Reason, "", nil)
	return true, err
}

// judgeAlone runs the canary analysis of release id without the app's step
// lock. stepReleases calls it when the app's step is still running (a
// runtime call can take up to stepCallTimeout), so a failing canary is
// still turned off within 2 s of the evidence.
func (e *Engine) judgeAlone(ctx context.Context, id int64) error {
	r, err := e.cfg.Store.GetRelease(ctx, id)
	if err != nil {
		return err
	}
	if r.State != release.Progressing && r.State != release.Paused {
		return nil
	}
	app, ok := e.cfg.Apps.Get(r.App)
	if !ok {
		return nil
	}
	_, err = e.analyse(ctx, app, r, e.liveOf(r))
	return err
}

// judge compares the step's windows; a changed verdict is recorded.
func (e *Engine) judge(ctx context.Context, app spec.App, r release.Release, l *live) (analysis.Verdict, error) {
	s, c, err := e.cfg.Metrics.Sample(ctx, r.App, r.Env)
	if err != nil {
		return analysis.Verdict{}, fmt.Errorf("metrics: %w", err)
	}
	l.lastJudge = e.now()
	v := analysis.Judge(s.Sub(l.base[0]), c.Sub(l.base[1]), thresholds(app))
	l.verdict = &v
	a := view(v)
	e.mu.Lock()
	e.slotLocked(appKey{r.App, r.Env}).latest = &a
	e.mu.Unlock()
	if v.Result != l.lastResult {
		l.lastResult = v.Result
		evs, err := e.cfg.Store.AddEvents(ctx, nil, e.event(r, release.EvAnalysis, "ship", string(v.Result)+": "+v.Reason, &release.EventData{Analysis: &a}))
		if err != nil {
			return v, err
		}
		e.publish(evs)
	}
	return v, nil
}

func view(v analysis.Verdict) Analysis {
	return Analysis{
		StableRequests: v.Stable.Requests, StableErrorRate: v.Stable.ErrorRate,
		CanaryRequests: v.Canary.Requests, CanaryErrorRate: v.Canary.ErrorRate,
		StableP99Ms: ms(v.Stable.P99), CanaryP99Ms: ms(v.Canary.P99),
		Verdict: string(v.Result), Reason: v.Reason,
	}
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// drivePromoting replaces stable with the release's version, then takes the
// canary's weight away: traffic never goes to a track that is not ready.
func (e *Engine) drivePromoting(ctx context.Context, app spec.App, r release.Release, st release.AppState, status map[runtime.Track]runtime.TrackStatus) error {
	want := runtime.Want{Version: r.Version, Replicas: st.Replicas}
	s := status[runtime.Stable]
	switch {
	case failed(s, want):
		_, err := e.finish(ctx, app, r, release.Failed, fmt.Sprintf("stable %s failed: %s; keeping %s", r.Version, s.Reason, orNone(r.FromVersion)), "", trackData(s))
		return err
	case ready(s, want) && e.wasApplied(appKey{r.App, r.Env}, runtime.Stable, want):
		msg := fmt.Sprintf("%s is stable with %d instances", r.Version, s.Ready)
		if r.Kind == release.KindRollback {
			msg = fmt.Sprintf("rolled back to %s (%d instances)", r.Version, s.Ready)
		}
		_, err := e.finish(ctx, app, r, release.Succeeded, msg, "", trackData(s))
		return err
	case e.now().After(e.deadline(app, r)):
		_, err := e.finish(ctx, app, r, release.Failed, fmt.Sprintf("stable %s not ready within %s: %d of %d instances ready; keeping %s%s", r.Version, stepTimeout(app), readyOf(s, want), want.Replicas, orNone(r.FromVersion), e.blockedBy(app, r.Env, runtime.Stable)), "", trackData(s))
		return err
	}
	return e.applyTrack(ctx, app, r, runtime.Stable, want, s)
}
