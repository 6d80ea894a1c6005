package engine

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/shipteam/ship/internal/release"
	"github.com/shipteam/ship/internal/runtime"
	"github.com/shipteam/ship/internal/runtime/memory"
)

func TestRestartMidStepContinuesTheReleaseWithHistoryIntact(t *testing.T) {
	h := newHarness(t)
	h.stableAt("v1")
	r := h.deploy(DeployRequest{Version: "v2"})
	h.until(r.ID, release.Progressing, time.Second, 0, 0, 5)
	for i := 0; i < 8; i++ {
		h.step(5*time.Second, 4000, 0)
	}
	mid := h.release(r.ID)
	if mid.State != release.Progressing || mid.Step != 1 {
		t.Fatalf("mid-release %s step %d", mid.State, mid.Step)
	}
	before, _ := h.e.Events(context.Background(), System, EventQuery{})

	// The process dies: the router forgets its weights, the engine its memory.
	h.router = &memory.Router{}
	h.open()

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.e.Run(ctx) }()
	deadline := time.Now().Add(10 * time.Second)
	for h.router.Current("resizer", "production") != 1000 {
		if time.Now().After(deadline) {
			t.Fatal("Run did not re-apply the 10% weight")
		}
		time.Sleep(time.Millisecond)
	}
	for h.release(r.ID).State != release.Succeeded {
		if time.Now().After(deadline) {
			t.Fatalf("release did not finish after restart: %+v", h.release(r.ID))
		}
		h.clock.Advance(time.Second)
		w := h.router.Current("resizer", "production")
		h.metrics.Add(runtime.Canary, "v2", int64(40*w), 0)
		h.metrics.Add(runtime.Stable, "v1", 4000, 0)
		time.Sleep(2 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	after, _ := h.e.Events(context.Background(), System, EventQuery{})
	if len(after) <= len(before) {
		t.Fatalf("no events after restart")
	}
	for i := range before {
		if after[i].ID != before[i].ID || after[i].Type != before[i].Type || after[i].Message != before[i].Message {
			t.Fatalf("history changed at %d: %+v vs %+v", i, before[i], after[i])
		}
	}
	var steps []release.Weight
	for i, ev := range after {
		if i > 0 && (ev.ID <= after[i-1].ID || ev.Time.Before(after[i-1].Time)) {
			t.Fatalf("events out of order at %d", i)
		}
		if ev.ReleaseID == r.ID && ev.Type == "release.step" {
			steps = append(steps, ev.Weight)
		}
	}
	if want := []release.Weight{100, 1000, 5000, 10000}; !slices.Equal(steps, want) {
		t.Fatalf("step events %v, want %v", steps, want)
	}
	if s := h.rt.Get("resizer", "production", runtime.Stable); s.Version != "v2" {
		t.Fatalf("stable %+v", s)
	}
}

func TestRestartAfterAbortRemovesTheLeftoverCanary(t *testing.T) {
	h := newHarness(t)
	h.stableAt("v1")
	r := h.deploy(DeployRequest{Version: "v2", Canary: 1000})
	h.until(r.ID, release.Paused, time.Second, 0, 0, 5)
	if _, err := h.e.Abort(context.Background(), alice, AbortRequest{App: "resizer", Env: "", Reason: "stop"}); err != nil {
		t.Fatal(err)
	}
	// Killed before any step removed the canary.
	if c := h.rt.Get("resizer", "production", runtime.Canary); c.Version != "v2" {
		t.Fatalf("precondition: canary %+v", c)
	}
	h.router = &memory.Router{}
	h.open()
	if err := h.e.Resume(context.Background()); err != nil {
		t.Fatal(err)
	}
	h.step(time.Second, 0, 0)
	if c := h.rt.Get("resizer", "production", runtime.Canary); c.Version != "" {
		t.Fatalf("canary left after restart: %+v", c)
	}
	if s := h.rt.Get("resizer", "production", runtime.Stable); s.Version != "v1" {
		t.Fatalf("stable %+v", s)
	}
}

// The engine is killed (its context cancelled, its memory and the router's
// weights dropped) at arbitrary moments, over and over, while a canary
// walks its steps; every new engine on the same file continues it, and the
// history records each step exactly once, in order.
func TestRepeatedRestartsStillFinishTheReleaseWithEachStepRecordedOnce(t *testing.T) {
	h := newHarness(t)
	h.stableAt("v1")
	r := h.deploy(DeployRequest{Version: "v2"})
	deadline := time.Now().Add(20 * time.Second)
	restarts := 0
	for h.release(r.ID).State != release.Succeeded {
		if time.Now().After(deadline) {
			t.Fatalf("not finished after %d restarts: %+v", restarts, h.release(r.ID))
		}
		if s := h.release(r.ID).State; s.Terminal() {
			t.Fatalf("release ended %s: %s", s, h.release(r.ID).Reason)
		}
		h.router = &memory.Router{}
		h.open()
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- h.e.Run(ctx) }()
		// Traffic flows once the new engine has put the weight back (the
		// fake clock must not run ahead of an engine that has not resumed,
		// or a slow machine fails the step for want of traffic).
		for cur := h.release(r.ID); !cur.State.Terminal() && h.router.Current("resizer", "production") != cur.Weight; cur = h.release(r.ID) {
			if time.Now().After(deadline) {
				t.Fatal("engine did not resume the weight")
			}
			time.Sleep(time.Millisecond)
		}
		for i := 0; i < 2+restarts%5; i++ {
			h.clock.Advance(2 * time.Second)
			w := h.router.Current("resizer", "production")
			h.metrics.Add(runtime.Canary, "v2", int64(40*w), 0)
			h.metrics.Add(runtime.Stable, "v1", 4000, 0)
			time.Sleep(time.Duration(2+restarts%7) * time.Millisecond)
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		restarts++
	}
	evs, _ := h.e.Events(context.Background(), System, EventQuery{ReleaseID: r.ID})
	var steps []release.Weight
	var kinds []string
	for _, ev := range evs {
		switch ev.Type {
		case "release.step":
			steps = append(steps, ev.Weight)
		case "release.created", "release.promoting", "release.succeeded":
			kinds = append(kinds, string(ev.Type))
		}
	}
	if want := []release.Weight{100, 1000, 5000, 10000}; !slices.Equal(steps, want) {
		t.Fatalf("after %d restarts, step events %v, want %v", restarts, steps, want)
	}
	if want := []string{"release.created", "release.promoting", "release.succeeded"}; !slices.Equal(kinds, want) {
		t.Fatalf("events %v", kinds)
	}
	if s := h.rt.Get("resizer", "production", runtime.Stable); s.Version != "v2" {
		t.Fatalf("stable %+v", s)
	}
	t.Logf("finished after %d restarts", restarts)
}

// One app whose runtime never answers must not hold up another app's abort.
func TestAHungAppDoesNotDelayAnotherAppsAbort(t *testing.T) {
	h := newHarness(t)
	slow := testApp()
	slow.Name = "slow"
	h.apps["slow"] = slow
	h.stableAt("v1")
	ctx := context.Background()
	rs, err := h.e.Deploy(ctx, alice, DeployRequest{App: "slow", Version: "v1"})
	if err != nil {
		t.Fatal(err)
	}
	h.rt.Mu.Lock()
	h.rt.Hang["slow"] = true
	h.rt.Mu.Unlock()

	e, err := New(Config{Store: h.store, Apps: h.apps, Runtime: h.rt, Router: h.router, Metrics: h.metrics})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- e.Run(runCtx) }()
	defer func() { cancel(); <-done }()
	r, err := e.Deploy(ctx, alice, DeployRequest{App: "resizer", Version: "v2", Canary: 1000})
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for h.router.Current("resizer", "production") != 1000 {
		if time.Now().After(deadline) {
			t.Fatalf("canary never reached 10%% while another app hangs: %+v", h.release(r.ID))
		}
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond)
	evidence := time.Now()
	h.metrics.Add(runtime.Canary, "v2", 40, 20)
	for h.router.Current("resizer", "production") != 0 {
		if time.Since(evidence) > 2*time.Second {
			t.Fatal("weight still up 2s after the evidence while another app hangs")
		}
		time.Sleep(time.Millisecond)
	}
	if got, _ := e.Release(ctx, System, rs.ID); got.State.Terminal() {
		t.Fatalf("the hung app's release ended: %s", got.State)
	}
}

// A deploy right after a failed promotion (before any idle step put v1
// back) still gets stable v1 under its canary.
func TestADeployRightAfterAFailedPromotionRestoresStable(t *testing.T) {
	h := newHarness(t)
	h.stableAt("v1")
	h.rt.Failing["v2"] = "crash loop"
	r := h.deploy(DeployRequest{Version: "v2", Canary: 500})
	h.rt.Mu.Lock()
	delete(h.rt.Failing, "v2") // the canary runs; only the full stable set will fail
	h.rt.Mu.Unlock()
	h.until(r.ID, release.Paused, time.Second, 0, 0, 5)
	if _, err := h.e.Promote(context.Background(), alice, PromoteRequest{App: "resizer", Env: ""}); err != nil {
		t.Fatal(err)
	}
	h.rt.Mu.Lock()
	h.rt.Failing["v2"] = "crash loop"
	h.rt.Mu.Unlock()
	// Step the release alone (no idle step) until it fails.
	for i := 0; i < 5 && !h.release(r.ID).State.Terminal(); i++ {
		h.clock.Advance(time.Second)
		wg, err := h.e.stepReleases(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		wg.Wait()
	}
	if got := h.release(r.ID); got.State != release.Failed {
		t.Fatalf("promotion %s %q", got.State, got.Reason)
	}
	if s := h.rt.Get("resizer", "production", runtime.Stable); s.Version != "v2" {
		t.Fatalf("precondition: stable %+v", s)
	}
	r3 := h.deploy(DeployRequest{Version: "v3", Canary: 500})
	h.until(r3.ID, release.Paused, time.Second, 0, 0, 5)
	if s := h.rt.Get("resizer", "production", runtime.Stable); s.Version != "v1" || s.Desired != 2 {
		t.Fatalf("stable under the new canary %+v, want v1×2", s)
	}
}
