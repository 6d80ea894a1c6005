package cli

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/shipteam/ship/internal/api"
	"github.com/shipteam/ship/internal/engine"
	"github.com/shipteam/ship/internal/release"
)

// reconnectFor is how long watching keeps trying to reach a server that
// went away (a restart of ship serve resumes the release).
const reconnectFor = 60 * time.Second

// watch follows a release over the event stream until it settles, and
// returns its final state. Settled means terminal, or — for a deploy with
// --canary — paused at the hold weight, which is what the user asked for.
//
// The decision is made on the release as the server has it now, not on
// the event's state, so a replayed "paused" from before a promote does not
// end the wait early.
func (r *runner) watch(ctx context.Context, rel release.Release, holdIsDone bool) (release.Release, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// Events from before the command (a promote's release has a past)
	// are not news; both times are the server's clock.
	p := &progress{r: r, rel: rel, since: rel.Updated.Add(-time.Millisecond)}

	settled := func(cur release.Release) bool {
		return cur.State.Terminal() || (holdIsDone && cur.State == release.Paused)
	}
	// The release may have settled before the stream opens; the replay
	// (after=0 for this release) then brings its last event at once.
	final := rel
	if cur, err := r.c.Release(ctx, rel.ID); err == nil {
		final = cur
		if settled(cur) {
			p.event(release.Event{ReleaseID: cur.ID, App: cur.App, Env: cur.Env, Type: release.Ended(cur.State),
				State: cur.State, Step: cur.Step, Weight: cur.Weight, Message: cur.Reason, Time: cur.Updated})
			p.done()
			return cur, nil
		}
	}

	if r.env.TTY {
		// Redraw the status line while nothing happens too, so ready
		// counts and error rates stay live.
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			t := time.NewTicker(500 * time.Millisecond)
			defer t.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-t.C:
					p.refresh(ctx)
				}
			}
		}()
		defer wg.Wait()
		defer cancel()
	}

	q := api.EventsQuery{EventFilter: api.EventFilter{ReleaseID: rel.ID}, After: 0}
	onRetry := func(err error) { p.note("connection to ship lost (%v); reconnecting", err) }
	err := r.c.Follow(ctx, q, reconnectFor, onRetry, func(ev release.Event) error {
		p.event(ev)
		if ev.State == "" && !ev.Type.IsRelease() {
			return nil
		}
		cur, err := r.releaseAcrossRestart(ctx, rel.ID, onRetry)
		if err != nil {
			return err
		}
		final = cur
		if settled(cur) {
			return api.ErrStop
		}
		return nil
	})
	if err == nil && final.State != p.lastState {
		// Settled on the release's own state (fetched) before its event
		// arrived: say how it ended in the same form.
		p.event(release.Event{ReleaseID: final.ID, App: final.App, Env: final.Env, Type: release.Ended(final.State),
			State: final.State, Step: final.Step, Weight: final.Weight, Message: final.Reason, Time: final.Updated})
	}
	p.done()
	return final, err
}

// releaseAcrossRestart reads release id, trying again while ship cannot
// be reached (a restart between an event and this read) for up to
// reconnectFor, as the event stream itself does; an answer from ship (an
// *api.Error) is final.
func (r *runner) releaseAcrossRestart(ctx context.Context, id int64, onRetry func(error)) (release.Release, error) {
	deadline := time.Now().Add(reconnectFor)
	pause := 100 * time.Millisecond
	for {
		cur, err := r.c.Release(ctx, id)
		var ae *api.Error
		if err == nil || errors.As(err, &ae) || ctx.Err() != nil || time.Now().After(deadline) {
			return cur, err
		}
		onRetry(err)
		select {
		case <-ctx.Done():
			return cur, ctx.Err()
		case <-time.After(pause):
		}
		pause = min(2*pause, time.Second)
	}
}

// weightWait bounds how long a followed release waits, once settled, for
// the router to show the weight its state implies.
const weightWait = 15 * time.Second

// waitWeight returns once the engine says (release.weight) that the router
// has the weight rel settled at in force: none for the canary once it
// ended, a share for a canary held as asked. The engine records a state
// before it sets the state's weight, so without this `deploy --canary 1
// --wait` could return while the canary still gets nothing, and `promote
// --wait` while it still gets its share (tens to hundreds of ms on
// Kubernetes). The router may round a share (replica ratios), so any share
// counts for a held canary.
func (r *runner) waitWeight(ctx context.Context, rel release.Release) error {
	inForce := func(ev release.Event) bool {
		if ev.Type != release.EvWeight || ev.Data == nil || ev.Data.InForce == nil {
			return false
		}
		if rel.State.Terminal() {
			return *ev.Data.InForce == 0
		}
		return *ev.Data.InForce > 0
	}
	wctx, cancel := context.WithTimeout(ctx, weightWait)
	defer cancel()
	settled := false
	q := api.EventsQuery{EventFilter: api.EventFilter{ReleaseID: rel.ID}, After: 0}
	err := r.c.Follow(wctx, q, weightWait, func(error) {}, func(ev release.Event) error {
		switch {
		case inForce(ev) && (settled || rel.State.Terminal()):
			return api.ErrStop
		case ev.State == rel.State:
			settled = true
		case settled && ev.State != "":
			return api.ErrStop // moved on meanwhile (promoted, aborted)
		}
		return nil
	})
	if err == nil {
		return nil
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	fmt.Fprintf(r.env.Stderr, "ship: release %d is %s but the router did not show its weight within %s; see ship status %s\n",
		rel.ID, rel.State, weightWait, rel.App)
	return nil
}

// progress renders a release's progress: on a terminal, events scroll
// above one status line that is redrawn in place; otherwise one plain
// line per event.
type progress struct {
	r    *runner
	rel  release.Release
	mu   sync.Mutex
	line string // the status line currently drawn (TTY only)
	// lastState is the state of the last event shown.
	lastState release.State
	since     time.Time // events before this are not shown
	finished  bool      // no more redraws
}

func (p *progress) event(ev release.Event) {
	if p.r.json || (!ev.Time.IsZero() && ev.Time.Before(p.since)) {
		return
	}
	ts := ev.Time
	if ts.IsZero() {
		ts = time.Now()
	}
	text := fmt.Sprintf("%s  %-18s %s", ts.Local().Format("15:04:05"), ev.Type, eventSummary(ev))
	p.mu.Lock()
	defer p.mu.Unlock()
	if ev.State != "" {
		p.lastState = ev.State
	}
	if !p.r.env.TTY {
		fmt.Fprintln(p.r.env.Stdout, text)
		return
	}
	p.clearLocked()
	fmt.Fprintln(p.r.env.Stdout, text)
	p.drawLocked()
}

func (p *progress) note(format string, args ...any) {
	if p.r.json {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.clearLocked()
	fmt.Fprintf(p.r.env.Stdout, format+"\n", args...)
	p.drawLocked()
}

// refresh fetches the app's status and redraws the status line.
func (p *progress) refresh(ctx context.Context) {
	st, err := p.r.c.Status(ctx, p.rel.App, p.rel.Env)
	if err != nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.finished {
		return
	}
	p.line = statusLine(st)
	p.clearLocked()
	p.drawLocked()
}

func (p *progress) clearLocked() {
	if p.r.env.TTY && p.line != "" {
		fmt.Fprint(p.r.env.Stdout, "\r\033[K")
	}
}

func (p *progress) drawLocked() {
	if p.r.env.TTY && p.line != "" && !p.finished {
		line := p.line
		// A wrapped line cannot be redrawn in place: cut it to the width.
		if w := p.r.env.Width; w > 1 && utf8.RuneCountInString(line) > w-1 {
			line = string([]rune(line)[:w-2]) + "…"
		}
		fmt.Fprint(p.r.env.Stdout, line)
	}
}

func (p *progress) done() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.clearLocked()
	p.line = ""
	p.finished = true
}

// statusLine is the one-line live view: step, weight, ready instances,
// canary vs stable error rate.
func statusLine(st engine.AppStatus) string {
	var b strings.Builder
	if rel := st.Release; rel != nil {
		fmt.Fprintf(&b, "#%d %s %s", rel.ID, rel.Version, rel.State)
		if len(rel.Steps) > 0 && !rel.State.Terminal() {
			fmt.Fprintf(&b, " step %d/%d", rel.Step+1, len(rel.Steps))
		}
	}
	fmt.Fprintf(&b, " | weight %s%%%s | canary %s %d/%d | stable %s %d/%d", pct(st.Weight), askedNote(st),
		orNone(st.Canary.Version), st.Canary.Ready, st.Canary.Desired,
		orNone(st.Stable.Version), st.Stable.Ready, st.Stable.Desired)
	if a := st.Analysis; a != nil {
		fmt.Fprintf(&b, " | errors canary %s (%d req) stable %s (%d req)",
			rate(a.CanaryErrorRate), a.CanaryRequests, rate(a.StableErrorRate), a.StableRequests)
	}
	return b.String()
}

// eventSummary is an event as one plain line.
func eventSummary(ev release.Event) string {
	var parts []string
	if ev.State != "" {
		parts = append(parts, string(ev.State))
	}
	switch ev.State {
	case release.Progressing, release.Paused, release.Promoting:
		parts = append(parts, fmt.Sprintf("step %d weight %s%%", ev.Step+1, pct(ev.Weight)))
	}
	if d := ev.Data; d != nil && d.Analysis != nil {
		parts = append(parts, "canary errors "+rate(d.Analysis.CanaryErrorRate), "stable errors "+rate(d.Analysis.StableErrorRate))
	}
	if ev.Message != "" {
		parts = append(parts, "— "+ev.Message)
	}
	if ev.Actor != "" && ev.Actor != "ship" {
		parts = append(parts, "("+ev.Actor+")")
	}
	return strings.Join(parts, " ")
}
