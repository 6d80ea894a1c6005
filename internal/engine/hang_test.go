package engine

import (
	"context"
	"github.com/shipteam/ship/internal/eventually"
	"strings"
	"testing"
	"time"

	"github.com/shipteam/ship/internal/release"
	"github.com/shipteam/ship/internal/runtime"
)

// runWithHungApply starts an engine under Run (fake clock) with resizer v1
// stable and v2 held as a 10% canary, then makes the next step of resizer
// block in Runtime.Apply (stable drifted away from its version, so the
// step re-applies it) until the returned function is called.
func runWithHungApply(t *testing.T) (*harness, *Engine, release.Release, func()) {
	t.Helper()
	h := newHarness(t)
	h.stableAt("v1")
	e, err := New(Config{Store: h.store, Apps: h.apps, Runtime: h.rt, Router: h.router, Metrics: h.metrics, Clock: h.clock})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	r, err := e.Deploy(ctx, alice, DeployRequest{App: "resizer", Version: "v2", Canary: 1000})
	if err != nil {
		t.Fatal(err)
	}
	eventually.True(t, 10*time.Second, "canary held at 10%", func() bool {
		got, _ := e.Release(ctx, System, r.ID)
		return got.State == release.Paused && h.router.Current("resizer", "production") == 1000
	})
	release := make(chan struct{})
	h.rt.Mu.Lock()
	h.rt.HangApply["resizer"] = release
	h.rt.Track("resizer", "production", runtime.Stable).Version = "v0" // drift: the step re-applies v1
	h.rt.Mu.Unlock()
	h.clock.Advance(reapplyAfter + time.Second)
	eventually.True(t, 5*time.Second, "a step blocked in Apply", func() bool { return h.rt.HangingApplies() > 0 })
	var once bool
	return h, e, r, func() {
		if !once {
			once = true
			close(release)
		}
	}
}

func TestAbortIsInstantWhileAnApplyOfTheAppHangs(t *testing.T) {
	h, e, r, unblock := runWithHungApply(t)
	defer unblock()
	start := time.Now()
	a, err := e.Abort(context.Background(), alice, AbortRequest{App: "resizer", Env: "", Reason: "hung cluster"})
	took := time.Since(start)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("Abort returned in %s with an Apply of the app hanging", took)
	if took > time.Second {
		t.Fatalf("Abort took %s while a step hung in Apply", took)
	}
	if a.State != release.Aborted {
		t.Fatalf("abort returned %s", a.State)
	}
	if w := h.router.Current("resizer", "production"); w != 0 {
		t.Fatalf("weight %v right after Abort", w)
	}
	if h.rt.HangingApplies() == 0 {
		t.Fatal("the Apply stopped hanging before Abort returned: the test proves nothing")
	}
	// The stuck step then returns: it must not undo the abort.
	unblock()
	eventually.True(t, 5*time.Second, "the stuck step to return", func() bool { return h.rt.HangingApplies() == 0 })
	h.clock.Advance(time.Second)
	time.Sleep(50 * time.Millisecond) // Run ticks every ms on the fake clock
	if w := h.router.Current("resizer", "production"); w != 0 {
		t.Fatalf("weight %v after the stuck step returned", w)
	}
	if got := h.release(r.ID); got.State != release.Aborted {
		t.Fatalf("release %s after the stuck step returned", got.State)
	}
	h.router.Mu.Lock()
	hist := append([]release.Weight(nil), h.router.History...)
	h.router.Mu.Unlock()
	if last := hist[len(hist)-1]; last != 0 {
		t.Fatalf("last SetWeight %v, want 0: %v", last, hist)
	}
}

func TestJudgeAbortsWithinTwoSecondsWhileAnApplyOfTheAppHangs(t *testing.T) {
	h, e, r, unblock := runWithHungApply(t)
	defer unblock()
	h.metrics.Add(runtime.Canary, "v2", 40, 20)
	evidence := time.Now()
	h.clock.Advance(time.Second) // past the analysis interval
	eventually.True(t, 2*time.Second, "weight 0 after the evidence", func() bool { return h.router.Current("resizer", "production") == 0 })
	t.Logf("evidence to weight 0 with an Apply hanging: %s", time.Since(evidence))
	if h.rt.HangingApplies() == 0 {
		t.Fatal("the Apply stopped hanging: the test proves nothing")
	}
	got, err := e.Release(context.Background(), System, r.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.State != release.Aborted || !strings.Contains(got.Reason, "analysis failed") {
		t.Fatalf("release %s %q", got.State, got.Reason)
	}
}

// TestAbortReturnsWhenTheRouterHangs: the abort is recorded first; a router
// that never answers (an API server gone quiet) delays it by at most
// weightZeroTimeout, and the idle reconciler sets 0 once it answers again.
func TestAbortReturnsWhenTheRouterHangs(t *testing.T) {
	defer func(d time.Duration) { weightZeroTimeout = d }(weightZeroTimeout)
	weightZeroTimeout = 200 * time.Millisecond
	h := newHarness(t)
	h.stableAt("v1")
	r := h.deploy(DeployRequest{Version: "v2", Canary: 1000})
	h.until(r.ID, release.Paused, time.Second, 0, 0, 10)
	h.router.Mu.Lock()
	h.router.Hang = true
	h.router.Mu.Unlock()
	type result struct {
		r   release.Release
		err error
	}
	done := make(chan result, 1)
	go func() {
		a, err := h.e.Abort(context.Background(), alice, AbortRequest{App: "resizer", Env: "", Reason: "router hung"})
		done <- result{a, err}
	}()
	select {
	case res := <-done:
		if res.err != nil || res.r.State != release.Aborted {
			t.Fatalf("abort: %s %v", res.r.State, res.err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Abort still waits on a hung router after 10s")
	}
	if got := h.release(r.ID); got.State != release.Aborted {
		t.Fatalf("stored state %s", got.State)
	}
	// The router answers again: the idle app is brought to weight 0.
	h.router.Mu.Lock()
	h.router.Hang = false
	h.router.Mu.Unlock()
	for i := 0; i < 20 && h.router.Current("resizer", "production") != 0; i++ {
		h.step(time.Second, 0, 0)
	}
	if w := h.router.Current("resizer", "production"); w != 0 {
		t.Fatalf("weight %v after the router came back", w)
	}
}
