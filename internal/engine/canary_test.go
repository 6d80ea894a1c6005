package engine

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/shipteam/ship/internal/release"
	"github.com/shipteam/ship/internal/runtime"
)

func TestCanaryWalksOneTenFiftyHundredAndSucceeds(t *testing.T) {
	h := newHarness(t)
	h.stableAt("v1")
	r := h.deploy(DeployRequest{Version: "v2"})
	if r.Strategy != "canary" || !slices.Equal(r.Steps, []release.Weight{100, 1000, 5000, 10000}) {
		t.Fatalf("release %+v", r)
	}
	r = h.until(r.ID, release.Succeeded, 5*time.Second, 4000, 0, 200)
	if r.Weight != 0 {
		t.Fatalf("weight after success %v", r.Weight)
	}
	// The router saw every step's weight in order, then 0 once stable ran v2.
	var steps []release.Weight
	for _, w := range h.router.History {
		if len(steps) == 0 || steps[len(steps)-1] != w {
			steps = append(steps, w)
		}
	}
	if want := []release.Weight{0, 100, 1000, 5000, 10000, 0}; !slices.Equal(steps, want) {
		t.Fatalf("weights %v, want %v", steps, want)
	}
	if s := h.rt.Get("resizer", "production", runtime.Stable); s.Version != "v2" || s.Desired != 2 {
		t.Fatalf("stable %+v, want v2×2", s)
	}
	if c := h.rt.Get("resizer", "production", runtime.Canary); c.Version != "" {
		t.Fatalf("canary still runs: %+v", c)
	}
	st, _ := h.store.AppState(context.Background(), "resizer", "production")
	if st.Stable != "v2" || st.Canary != "" || st.Weight != 0 {
		t.Fatalf("app state %+v", st)
	}
	types := h.eventTypes(r.ID)
	if n := strings.Count(strings.Join(types, " "), "release.step"); n != 4 {
		t.Fatalf("%d release.step events in %v, want 4", n, types)
	}
	if types[len(types)-1] != "release.succeeded" || !slices.Contains(types, "release.promoting") || !slices.Contains(types, "release.analysis") {
		t.Fatalf("events %v", types)
	}
}

func TestCanaryReplicasFollowTheStepsShare(t *testing.T) {
	h := newHarness(t)
	if err := h.e.Scale(context.Background(), alice, ScaleRequest{App: "resizer", Env: "", Replicas: Replicas(10)}); err != nil {
		t.Fatal(err)
	}
	h.stableAt("v1")
	r := h.deploy(DeployRequest{Version: "v2", Steps: []release.Weight{100, 5000}})
	h.until(r.ID, release.Progressing, time.Second, 0, 0, 5)
	if c := h.rt.Get("resizer", "production", runtime.Canary); c.Desired != 1 {
		t.Fatalf("canary at 1%% of 10: %d instances, want 1", c.Desired)
	}
	for i := 0; i < 100 && h.release(r.ID).Step == 0; i++ {
		h.step(5*time.Second, 4000, 0)
	}
	r = h.release(r.ID)
	if r.Step != 1 || r.Weight != 5000 {
		t.Fatalf("release %s step %d weight %v", r.State, r.Step, r.Weight)
	}
	if c := h.rt.Get("resizer", "production", runtime.Canary); c.Desired != 5 || c.Ready != 5 {
		t.Fatalf("canary at 50%% of 10: %+v, want 5 ready before the weight moved", c)
	}
}

func TestCanaryHoldPausesUntilPromote(t *testing.T) {
	h := newHarness(t)
	h.stableAt("v1")
	r := h.deploy(DeployRequest{Version: "v2", Canary: 100})
	r = h.until(r.ID, release.Paused, time.Second, 0, 0, 10)
	if r.Weight != 100 || h.router.Current("resizer", "production") != 100 {
		t.Fatalf("paused at %v (router %v), want 1", r.Weight, h.router.Current("resizer", "production"))
	}
	// Healthy traffic for an hour keeps it paused: only a person promotes.
	for i := 0; i < 60; i++ {
		h.step(time.Minute, 10000, 0)
	}
	if r = h.release(r.ID); r.State != release.Paused {
		t.Fatalf("state %s (%s), want paused", r.State, r.Reason)
	}
	st, err := h.e.Status(context.Background(), System, "resizer", "")
	if err != nil || st.Analysis == nil || st.Analysis.Verdict != "pass" || st.Analysis.CanaryRequests == 0 {
		t.Fatalf("status analysis %+v %v", st.Analysis, err)
	}
	// A restarted engine shows the recorded analysis before judging again.
	h.open()
	st, err = h.e.Status(context.Background(), System, "resizer", "")
	if err != nil || st.Analysis == nil || st.Analysis.Verdict != "pass" || st.Analysis.CanaryRequests == 0 {
		t.Fatalf("status analysis after restart %+v %v", st.Analysis, err)
	}
	bob := Actor{Name: "bob", Source: release.SourceCLI}
	p, err := h.e.Promote(context.Background(), bob, PromoteRequest{App: "resizer", Env: "production"})
	if err != nil || p.State != release.Promoting {
		t.Fatalf("promote: %+v %v", p, err)
	}
	r = h.until(r.ID, release.Succeeded, time.Second, 100, 0, 10)
	evs, _ := h.e.Events(context.Background(), System, EventQuery{ReleaseID: r.ID})
	var promotedBy string
	for _, ev := range evs {
		if ev.Type == "release.promoting" {
			promotedBy = ev.Actor
		}
	}
	if promotedBy != "bob" {
		t.Fatalf("promoting event actor %q, want bob", promotedBy)
	}
}

func TestBadCanaryIsAbortedAndWeightZeroInTheSameStep(t *testing.T) {
	h := newHarness(t)
	h.stableAt("v1")
	r := h.deploy(DeployRequest{Version: "v2", Steps: []release.Weight{5000, 10000}})
	r = h.until(r.ID, release.Progressing, time.Second, 0, 0, 5)
	h.step(100*time.Millisecond, 20, 0) // a little healthy traffic: not enough to judge
	if r = h.release(r.ID); r.State != release.Progressing {
		t.Fatalf("state %s", r.State)
	}
	// The evidence: 50 canary requests, half of them failing. One step later
	// (one tick, 250ms of clock) the release is aborted and the weight is 0.
	h.metrics.Add(runtime.Canary, "v2", 50, 25)
	h.step(250*time.Millisecond, 0, 0)
	r = h.release(r.ID)
	if r.State != release.Aborted || !strings.Contains(r.Reason, "error rate") || !strings.Contains(r.Reason, "above 5.0%") {
		t.Fatalf("release %s: %s", r.State, r.Reason)
	}
	if w := h.router.Current("resizer", "production"); w != 0 {
		t.Fatalf("weight %v after abort", w)
	}
	if c := h.rt.Get("resizer", "production", runtime.Canary); c.Version != "" {
		t.Fatalf("canary still runs %+v", c)
	}
	if s := h.rt.Get("resizer", "production", runtime.Stable); s.Version != "v1" || s.Desired != 2 {
		t.Fatalf("stable touched: %+v", s)
	}
	types := h.eventTypes(r.ID)
	if types[len(types)-1] != "release.aborted" {
		t.Fatalf("events %v", types)
	}
}

func TestAbortPutsWeightToZeroAtOnce(t *testing.T) {
	h := newHarness(t)
	h.stableAt("v1")
	r := h.deploy(DeployRequest{Version: "v2", Canary: 1000})
	h.until(r.ID, release.Paused, time.Second, 0, 0, 10)
	if h.router.Current("resizer", "production") != 1000 {
		t.Fatal("canary not at 10%")
	}
	a, err := h.e.Abort(context.Background(), Actor{Name: "carol", Source: release.SourceWeb}, AbortRequest{App: "resizer", Env: "", Reason: "looks slow"})
	if err != nil {
		t.Fatal(err)
	}
	// No Step in between: Abort itself stored the state and moved the weight.
	if a.State != release.Aborted || a.Reason != "aborted by carol via web: looks slow" {
		t.Fatalf("abort returned %s %q", a.State, a.Reason)
	}
	if w := h.router.Current("resizer", "production"); w != 0 {
		t.Fatalf("weight %v right after Abort, want 0", w)
	}
	h.step(time.Second, 0, 0)
	if c := h.rt.Get("resizer", "production", runtime.Canary); c.Version != "" {
		t.Fatalf("canary still runs after a step: %+v", c)
	}
	if _, err := h.e.Abort(context.Background(), alice, AbortRequest{App: "resizer", Env: "", Reason: ""}); CodeOf(err) != CodeNotFound {
		t.Fatalf("second abort: %v, want not_found", err)
	}
}

// A canary is removed in the background; the removal must outlive the step
// that started it (a drain or a Kubernetes DELETE takes longer than a step).
func TestCanaryRemovalOutlivesTheStepThatStartedIt(t *testing.T) {
	h := newHarness(t)
	h.stableAt("v1")
	r := h.deploy(DeployRequest{Version: "v2", Canary: 1000})
	h.until(r.ID, release.Paused, time.Second, 0, 0, 10)
	gate := make(chan struct{})
	h.rt.Mu.Lock()
	h.rt.RemoveGate = gate
	h.rt.Mu.Unlock()
	if _, err := h.e.Abort(context.Background(), alice, AbortRequest{App: "resizer", Env: "", Reason: "test"}); err != nil {
		t.Fatal(err)
	}
	// One step starts the removal and returns (h.step would wait for it).
	h.clock.Advance(time.Second)
	if err := h.e.Step(context.Background()); err != nil {
		t.Fatal(err)
	}
	close(gate)
	deadline := time.Now().Add(5 * time.Second)
	for h.rt.Get("resizer", "production", runtime.Canary).Version != "" {
		if time.Now().After(deadline) {
			t.Fatal("canary never removed: the removal died with its step")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestNotEnoughTrafficFailsAtTheStepDeadline(t *testing.T) {
	h := newHarness(t)
	h.stableAt("v1")
	r := h.deploy(DeployRequest{Version: "v2"})
	h.until(r.ID, release.Progressing, time.Second, 0, 0, 5)
	// 100 requests every 20s at 1% gives the canary 15 in 5 minutes: never
	// the 20 it needs.
	for i := 0; i < 14; i++ {
		h.step(20*time.Second, 100, 0)
	}
	if r = h.release(r.ID); r.State != release.Progressing {
		t.Fatalf("before the deadline: %s (%s)", r.State, r.Reason)
	}
	for i := 0; i < 3 && !h.release(r.ID).State.Terminal(); i++ {
		h.step(20*time.Second, 100, 0)
	}
	r = h.release(r.ID)
	if r.State != release.Failed || !strings.HasPrefix(r.Reason, "not enough traffic:") || !strings.HasSuffix(r.Reason, " of 20 canary requests in 5m0s") {
		t.Fatalf("release %s: %q", r.State, r.Reason)
	}
	if w := h.router.Current("resizer", "production"); w != 0 {
		t.Fatalf("weight %v", w)
	}
}

// TestUnreadableMetricsFailTheStepWithTheirError: a metrics source that
// cannot be read (Prometheus down, a broken query) never passes a step, and
// the step's failure names the error rather than blaming the traffic.
func TestUnreadableMetricsFailTheStepWithTheirError(t *testing.T) {
	h := newHarness(t)
	h.stableAt("v1")
	h.metrics.Mu.Lock()
	h.metrics.Err = errors.New(`prometheus http://127.0.0.1:9/: connection refused`)
	h.metrics.Mu.Unlock()
	r := h.deploy(DeployRequest{Version: "v2"})
	h.until(r.ID, release.Progressing, time.Second, 0, 0, 5)
	for i := 0; i < 20 && !h.release(r.ID).State.Terminal(); i++ {
		h.step(20*time.Second, 1000, 0)
	}
	r = h.release(r.ID)
	want := "step 1 (1%) could not be judged within 5m0s: metrics: prometheus http://127.0.0.1:9/: connection refused"
	if r.State != release.Failed || r.Reason != want {
		t.Fatalf("release %s: %q, want failed: %q", r.State, r.Reason, want)
	}
	if w := h.router.Current("resizer", "production"); w != 0 {
		t.Fatalf("weight %v", w)
	}
}

func TestCanaryThatFailsEndsWithTheRuntimesReasonAndStableUntouched(t *testing.T) {
	h := newHarness(t)
	h.stableAt("v1")
	h.rt.Failing["v2"] = "exited at once: exit status 3"
	applies := len(h.rt.Applies)
	r := h.deploy(DeployRequest{Version: "v2"})
	for i := 0; i < 5 && !h.release(r.ID).State.Terminal(); i++ {
		h.step(time.Second, 0, 0)
	}
	r = h.release(r.ID)
	if r.State != release.Failed || r.Reason != "canary v2 failed: exited at once: exit status 3" {
		t.Fatalf("release %s: %q", r.State, r.Reason)
	}
	h.step(time.Second, 0, 0)
	for _, a := range h.rt.Applies[applies:] {
		if strings.HasPrefix(a, "stable") {
			t.Fatalf("stable was applied during the failed canary: %v", h.rt.Applies[applies:])
		}
	}
	if s := h.rt.Get("resizer", "production", runtime.Stable); s.Version != "v1" || s.Desired != 2 {
		t.Fatalf("stable %+v", s)
	}
	if c := h.rt.Get("resizer", "production", runtime.Canary); c.Version != "" {
		t.Fatalf("failed canary left running: %+v", c)
	}
	if w := h.router.Current("resizer", "production"); w != 0 {
		t.Fatalf("weight %v", w)
	}
}

func TestEveryStateHasADeadline(t *testing.T) {
	cases := []struct {
		name   string
		setup  func(h *harness) release.Release
		after  time.Duration
		state  release.State
		reason string
	}{
		{"pending canary never ready", func(h *harness) release.Release {
			h.rt.NeverReady["v2"] = true
			return h.deploy(DeployRequest{Version: "v2"})
		}, 5 * time.Minute, release.Failed, "canary v2 not ready within 5m0s: 0 of 1 instances ready"},
		{"progressing without traffic", func(h *harness) release.Release {
			r := h.deploy(DeployRequest{Version: "v2"})
			h.until(r.ID, release.Progressing, time.Second, 0, 0, 5)
			return r
		}, 5 * time.Minute, release.Failed, "not enough traffic: 0 of 20 canary requests in 5m0s"},
		{"paused hold", func(h *harness) release.Release {
			r := h.deploy(DeployRequest{Version: "v2", Canary: 500})
			h.until(r.ID, release.Paused, time.Second, 0, 0, 5)
			return r
		}, 24 * time.Hour, release.Aborted, "hold expired after 24h0m0s without promote or abort"},
		{"promoting stable never ready", func(h *harness) release.Release {
			r := h.deploy(DeployRequest{Version: "v2", Canary: 500})
			h.until(r.ID, release.Paused, time.Second, 0, 0, 5)
			h.rt.NeverReady["v2"] = true
			if _, err := h.e.Promote(context.Background(), alice, PromoteRequest{App: "resizer", Env: ""}); err != nil {
				h.t.Fatal(err)
			}
			return r
		}, 5 * time.Minute, release.Failed, "stable v2 not ready within 5m0s: 0 of 2 instances ready; keeping v1"},
		{"rolling stable never ready", func(h *harness) release.Release {
			h.rt.NeverReady["v2"] = true
			return h.deploy(DeployRequest{Version: "v2", Rolling: true})
		}, 5 * time.Minute, release.Failed, "stable v2 not ready within 5m0s: 0 of 2 instances ready; keeping v1"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			h.stableAt("v1")
			r := tc.setup(h)
			h.step(time.Second, 0, 0)
			start := h.release(r.ID).StepStarted
			// Just before the deadline nothing has ended.
			h.clock.Advance(start.Add(tc.after).Sub(h.clock.Now()) - time.Second)
			h.step(0, 0, 0)
			if got := h.release(r.ID); got.State.Terminal() {
				t.Fatalf("ended before its deadline: %s %q", got.State, got.Reason)
			}
			h.step(2*time.Second, 0, 0)
			got := h.release(r.ID)
			if got.State != tc.state || got.Reason != tc.reason {
				t.Fatalf("got %s %q, want %s %q", got.State, got.Reason, tc.state, tc.reason)
			}
			h.step(time.Second, 0, 0)
			if s := h.rt.Get("resizer", "production", runtime.Stable); s.Version != "v1" {
				t.Fatalf("stable not back at v1: %+v", s)
			}
			if w := h.router.Current("resizer", "production"); w != 0 {
				t.Fatalf("weight %v", w)
			}
		})
	}
}

func TestCrashedInstancesAreRecorded(t *testing.T) {
	h := newHarness(t)
	h.stableAt("v1")
	r := h.deploy(DeployRequest{Version: "v2", Canary: 1000})
	h.until(r.ID, release.Paused, time.Second, 0, 0, 5)
	h.rt.Crash("resizer", "production", runtime.Canary, 2)
	h.step(time.Second, 0, 0)
	evs, _ := h.e.Events(context.Background(), System, EventQuery{ReleaseID: r.ID})
	var found bool
	for _, ev := range evs {
		if ev.Type == "instance.crashed" && strings.Contains(ev.Message, "canary v2: 2 instance restart(s)") {
			found = true
		}
	}
	if !found {
		t.Fatalf("no instance.crashed event in %v", h.eventTypes(r.ID))
	}
}

// Under Run with the real clock: from the moment failing canary traffic is
// visible to the metrics source until the router's canary weight is 0.
func TestBadCanaryIsOffWithinTwoSecondsUnderRun(t *testing.T) {
	h := newHarness(t)
	h.stableAt("v1")
	e, err := New(Config{Store: h.store, Apps: h.apps, Runtime: h.rt, Router: h.router, Metrics: h.metrics})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx) }()
	defer func() { cancel(); <-done }()
	r, err := e.Deploy(ctx, alice, DeployRequest{App: "resizer", Version: "v2", Canary: 1000})
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for h.router.Current("resizer", "production") != 1000 {
		if time.Now().After(deadline) {
			t.Fatalf("canary never reached 10%%: %+v", h.release(r.ID))
		}
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond) // let the step's baseline be taken
	evidence := time.Now()
	h.metrics.Add(runtime.Canary, "v2", 40, 20)
	for h.router.Current("resizer", "production") != 0 {
		if time.Since(evidence) > 2*time.Second {
			t.Fatalf("weight still %v 2s after the evidence", h.router.Current("resizer", "production"))
		}
		time.Sleep(time.Millisecond)
	}
	took := time.Since(evidence)
	t.Logf("evidence to weight 0: %s", took)
	if got, _ := e.Release(ctx, System, r.ID); got.State != release.Aborted {
		t.Fatalf("release %s %q", got.State, got.Reason)
	}
}

func TestARouterThatRoundsTheWeightIsNotSetAgainEveryTick(t *testing.T) {
	h := newHarness(t)
	h.router.Round = 1000 // replica ratios: only multiples of 10% exist
	h.stableAt("v1")
	r := h.deploy(DeployRequest{Version: "v2", Canary: 1400}) // in force: 10%
	h.until(r.ID, release.Paused, time.Second, 0, 0, 5)
	h.step(time.Second, 0, 0)
	n, reads := len(h.router.History), h.router.ReadCount()
	for i := 0; i < 20; i++ {
		h.step(time.Second, 0, 0)
	}
	if got := h.router.ReadCount() - reads; got > 5 {
		t.Fatalf("router asked %d times in 20 one-second ticks, want at most one per 5s", got)
	}
	if types := h.eventTypes(r.ID); !slices.Contains(types, "release.weight_rounded") {
		t.Fatalf("no release.weight_rounded event in %v", types)
	}
	if extra := len(h.router.History) - n; extra != 0 {
		t.Fatalf("%d more SetWeight calls for an unchanged weight: %v", extra, h.router.History)
	}
	// A router that lost its weights (restart) is set again.
	h.router.Forget()
	h.step(6*time.Second, 0, 0) // the router is re-checked every 5s
	if len(h.router.History) != n+1 {
		t.Fatalf("lost weight not re-set: %v", h.router.History)
	}
}

// The engine says when the router has a release's weight in force
// (release.weight), after the router has it: a front end waiting for a
// held canary to get traffic, or for an ended one to get none, settles on
// the event instead of polling the router.
func TestWeightInForceIsRecordedOnceTheRouterHasIt(t *testing.T) {
	h := newHarness(t)
	h.stableAt("v1")
	h.router.Round = 200 // replica ratios: 1% is 2% in force
	r := h.deploy(DeployRequest{Version: "v2", Canary: 100})
	h.until(r.ID, release.Paused, time.Second, 0, 0, 10)
	weights := func() []release.Event {
		evs, err := h.e.Events(context.Background(), System, EventQuery{ReleaseID: r.ID})
		if err != nil {
			t.Fatal(err)
		}
		var out []release.Event
		for _, ev := range evs {
			if ev.Type == release.EvWeight {
				out = append(out, ev)
			}
		}
		return out
	}
	ws := weights()
	if len(ws) != 1 || ws[0].Data == nil || ws[0].Data.InForce == nil || *ws[0].Data.InForce != 200 || ws[0].Data.Asked != 100 || ws[0].State != release.Paused {
		t.Fatalf("weight events while held: %+v", ws)
	}
	if _, err := h.e.Abort(context.Background(), alice, AbortRequest{App: "resizer", Env: "", Reason: ""}); err != nil {
		t.Fatal(err)
	}
	ws = weights()
	if len(ws) != 2 || *ws[1].Data.InForce != 0 || ws[1].State != release.Aborted || h.router.Current("resizer", "production") != 0 {
		t.Fatalf("weight events after abort: %+v (router %s)", ws, h.router.Current("resizer", "production"))
	}
}
