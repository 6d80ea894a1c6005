package engine

import (
	"sync"
	"time"

	"github.com/shipteam/ship/internal/release"
	"github.com/shipteam/ship/internal/runtime"
)

// slot is everything the engine keeps in memory about one app in one
// environment between steps: its two locks, what it last asked of the
// runtime and the router, when it is next due, and the live state of its
// active release. None of it is needed after a restart: a fresh slot asks
// again (every runtime and router call is idempotent).
type slot struct {
	key appKey
	// cmd serialises what is done to the app: commands and the driver's
	// steps, except Abort and the judge-only pass, which must not wait for
	// a step stuck in a runtime call (see rec).
	cmd sync.Mutex
	// rec serialises the short critical sections that read and write the
	// app's stored state and set the router's weight. It is never held
	// across a Runtime call, so Abort (which takes only rec) is not held up
	// by a step stuck in one. Order: cmd, then rec.
	rec sync.Mutex

	// The fields below are guarded by Engine.mu.

	stepping bool // a step or reconcile of this app/env is running
	judging  bool // a judge-only pass is running
	// pace is how many ticks the active release's steps skip between two
	// (see Engine.pace); skip counts them down.
	pace, skip int

	// idle asks the reconciler to make an app without a release run what
	// its state says, from due on; it stays set until that is observed.
	idle bool
	due  time.Time
	// looks is set once the app runs a stable version: it is looked at
	// again every lookEvery, for changes made outside ship.
	looks  bool
	lookAt time.Time
	fail   failures

	latest *Analysis // last analysis, for Status
	weight weightMark
	live   *live // of the active release, when there is one
	tracks [2]trackState
}

// trackState is what the engine last did to one track.
type trackState struct {
	applied  *applied  // last Apply in this process
	conflict *conflict // Apply refused for a change made outside ship
	reported string    // last app.conflict recorded while idle
	removing time.Time // when Remove was last started; zero when not
	inflight bool      // Remove still running
}

func trackIndex(t runtime.Track) int {
	if t == runtime.Canary {
		return 1
	}
	return 0
}

// weightMark is what the router reported after the engine's last
// SetWeight, and when that was last confirmed.
type weightMark struct {
	known             bool
	desired, observed release.Weight
	at                time.Time
}

type applied struct {
	want runtime.Want
	at   time.Time
}

// conflict is an Apply the runtime refused with runtime.ErrConflict: a
// field ship manages was changed outside ship, and ship leaves it so.
type conflict struct {
	want runtime.Want
	at   time.Time // of the last refused Apply; retried every reapplyAfter
	msg  string
}

// failures backs off a slot whose steps keep failing (a runtime or store
// that does not answer): the first failure and the recovery are logged,
// not every retry, and retries space out up to a ceiling.
type failures struct {
	n     int
	first time.Time
	last  string
}

const (
	backoffBase = 100 * time.Millisecond
	// idleBackoffMax bounds the wait of an app without a release; an
	// active release retries at least every activeBackoffMax, since its
	// deadlines run.
	idleBackoffMax   = 30 * time.Second
	activeBackoffMax = 2 * time.Second
)

// backoff is the wait before retry n (1-based): 100ms, 200ms, … up to max.
func backoff(n int, max time.Duration) time.Duration {
	d := backoffBase
	for i := 1; i < n && d < max; i++ {
		d *= 2
	}
	return min(d, max)
}

// slot returns k's slot, making it on first use.
func (e *Engine) slot(k appKey) *slot {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.slotLocked(k)
}

func (e *Engine) slotLocked(k appKey) *slot {
	s := e.slots[k]
	if s == nil {
		s = &slot{key: k}
		e.slots[k] = s
	}
	return s
}

// track is k's state of track t; the caller holds e.mu.
func (e *Engine) track(k appKey, t runtime.Track) *trackState {
	return &e.slotLocked(k).tracks[trackIndex(t)]
}

// lockKey takes k's command lock (see slot.cmd) and returns its unlock.
func (e *Engine) lockKey(k appKey) func() {
	s := e.slot(k)
	s.cmd.Lock()
	return s.cmd.Unlock
}

// recordLock takes k's record lock (see slot.rec) and returns its unlock.
func (e *Engine) recordLock(k appKey) func() {
	s := e.slot(k)
	s.rec.Lock()
	return s.rec.Unlock
}

// markIdle asks the idle reconciler to look at k now.
func (e *Engine) markIdle(k appKey) {
	e.mu.Lock()
	s := e.slotLocked(k)
	s.idle, s.due = true, time.Time{}
	e.mu.Unlock()
	e.wake()
}

// failed records a failed step of k and says when to try again; the first
// failure of a run is logged at error level, later ones only at debug.
func (e *Engine) failed(k appKey, what string, err error, max time.Duration) {
	e.mu.Lock()
	s := e.slotLocked(k)
	s.fail.n++
	if s.fail.n == 1 {
		s.fail.first = e.now()
	}
	n, msg := s.fail.n, err.Error()
	changed := msg != s.fail.last
	s.fail.last = msg
	s.due = e.now().Add(backoff(n, max))
	e.mu.Unlock()
	if n == 1 || changed {
		e.log.Error(what+" failing; retrying with backoff", "app", k.app, "env", k.env, "err", err, "failures", n)
	} else {
		e.log.Debug(what+" still failing", "app", k.app, "env", k.env, "err", err, "failures", n)
	}
}

// succeeded ends a run of failures of k, logging the recovery.
func (e *Engine) succeeded(k appKey, what string) {
	e.mu.Lock()
	s := e.slotLocked(k)
	n, since := s.fail.n, s.fail.first
	s.fail = failures{}
	e.mu.Unlock()
	if n > 0 {
		e.log.Info(what+" recovered", "app", k.app, "env", k.env, "failures", n, "after", e.now().Sub(since).Round(time.Millisecond))
	}
}
