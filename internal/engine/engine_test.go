package engine

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/shipteam/ship/internal/release"
	"github.com/shipteam/ship/internal/runtime"
	"github.com/shipteam/ship/internal/spec"
	"github.com/shipteam/ship/internal/store"
)

func TestFirstDeployIsRollingAndRecordsStable(t *testing.T) {
	h := newHarness(t)
	r := h.deploy(DeployRequest{Version: "v1"})
	if r.Strategy != "rolling" || r.State != release.Pending {
		t.Fatalf("first deploy: strategy %s state %s, want rolling pending", r.Strategy, r.State)
	}
	r = h.until(r.ID, release.Succeeded, time.Second, 0, 0, 10)
	if s := h.rt.get("resizer", "production", runtime.Stable); s.Version != "v1" || s.Desired != 2 {
		t.Fatalf("stable track %+v, want v1×2", s)
	}
	st, err := h.store.AppState(context.Background(), "resizer", "production")
	if err != nil || st.Stable != "v1" || st.Replicas != 2 {
		t.Fatalf("app state %+v %v", st, err)
	}
	want := []string{"release.created", "release.promoting", "release.succeeded"}
	if got := h.eventTypes(r.ID); !slices.Equal(got, want) {
		t.Fatalf("events %v, want %v", got, want)
	}
}

func TestCanaryWalksOneTenFiftyHundredAndSucceeds(t *testing.T) {
	h := newHarness(t)
	h.stableAt("v1")
	r := h.deploy(DeployRequest{Version: "v2"})
	if r.Strategy != "canary" || !slices.Equal(r.Steps, []float64{1, 10, 50, 100}) {
		t.Fatalf("release %+v", r)
	}
	r = h.until(r.ID, release.Succeeded, 5*time.Second, 4000, 0, 200)
	if r.Weight != 0 {
		t.Fatalf("weight after success %v", r.Weight)
	}
	// The router saw every step's weight in order, then 0 once stable ran v2.
	var steps []float64
	for _, w := range h.router.history {
		if len(steps) == 0 || steps[len(steps)-1] != w {
			steps = append(steps, w)
		}
	}
	if want := []float64{0, 1, 10, 50, 100, 0}; !slices.Equal(steps, want) {
		t.Fatalf("weights %v, want %v", steps, want)
	}
	if s := h.rt.get("resizer", "production", runtime.Stable); s.Version != "v2" || s.Desired != 2 {
		t.Fatalf("stable %+v, want v2×2", s)
	}
	if c := h.rt.get("resizer", "production", runtime.Canary); c.Version != "" {
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
	if err := h.e.Scale(context.Background(), alice, "resizer", "", 10); err != nil {
		t.Fatal(err)
	}
	h.stableAt("v1")
	r := h.deploy(DeployRequest{Version: "v2", Steps: []float64{1, 50}})
	h.until(r.ID, release.Progressing, time.Second, 0, 0, 5)
	if c := h.rt.get("resizer", "production", runtime.Canary); c.Desired != 1 {
		t.Fatalf("canary at 1%% of 10: %d instances, want 1", c.Desired)
	}
	for i := 0; i < 100 && h.release(r.ID).Step == 0; i++ {
		h.step(5*time.Second, 4000, 0)
	}
	r = h.release(r.ID)
	if r.Step != 1 || r.Weight != 50 {
		t.Fatalf("release %s step %d weight %v", r.State, r.Step, r.Weight)
	}
	if c := h.rt.get("resizer", "production", runtime.Canary); c.Desired != 5 || c.Ready != 5 {
		t.Fatalf("canary at 50%% of 10: %+v, want 5 ready before the weight moved", c)
	}
}

func TestCanaryHoldPausesUntilPromote(t *testing.T) {
	h := newHarness(t)
	h.stableAt("v1")
	r := h.deploy(DeployRequest{Version: "v2", Canary: 1})
	r = h.until(r.ID, release.Paused, time.Second, 0, 0, 10)
	if r.Weight != 1 || h.router.weight("resizer", "production") != 1 {
		t.Fatalf("paused at %v (router %v), want 1", r.Weight, h.router.weight("resizer", "production"))
	}
	// Healthy traffic for an hour keeps it paused: only a person promotes.
	for i := 0; i < 60; i++ {
		h.step(time.Minute, 10000, 0)
	}
	if r = h.release(r.ID); r.State != release.Paused {
		t.Fatalf("state %s (%s), want paused", r.State, r.Reason)
	}
	st, err := h.e.Status(context.Background(), "resizer", "")
	if err != nil || st.Analysis == nil || st.Analysis.Verdict != "pass" || st.Analysis.CanaryRequests == 0 {
		t.Fatalf("status analysis %+v %v", st.Analysis, err)
	}
	// A restarted engine shows the recorded analysis before judging again.
	h.open()
	st, err = h.e.Status(context.Background(), "resizer", "")
	if err != nil || st.Analysis == nil || st.Analysis.Verdict != "pass" || st.Analysis.CanaryRequests == 0 {
		t.Fatalf("status analysis after restart %+v %v", st.Analysis, err)
	}
	bob := Actor{Name: "bob", Source: release.SourceCLI}
	p, err := h.e.Promote(context.Background(), bob, "resizer", "production")
	if err != nil || p.State != release.Promoting {
		t.Fatalf("promote: %+v %v", p, err)
	}
	r = h.until(r.ID, release.Succeeded, time.Second, 100, 0, 10)
	evs, _ := h.e.Events(context.Background(), EventQuery{ReleaseID: r.ID})
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
	r := h.deploy(DeployRequest{Version: "v2", Steps: []float64{50, 100}})
	r = h.until(r.ID, release.Progressing, time.Second, 0, 0, 5)
	h.step(100*time.Millisecond, 20, 0) // a little healthy traffic: not enough to judge
	if r = h.release(r.ID); r.State != release.Progressing {
		t.Fatalf("state %s", r.State)
	}
	// The evidence: 50 canary requests, half of them failing. One step later
	// (one tick, 250ms of clock) the release is aborted and the weight is 0.
	h.metrics.add(runtime.Canary, "v2", 50, 25)
	h.step(250*time.Millisecond, 0, 0)
	r = h.release(r.ID)
	if r.State != release.Aborted || !strings.Contains(r.Reason, "error rate") || !strings.Contains(r.Reason, "above 5.0%") {
		t.Fatalf("release %s: %s", r.State, r.Reason)
	}
	if w := h.router.weight("resizer", "production"); w != 0 {
		t.Fatalf("weight %v after abort", w)
	}
	if c := h.rt.get("resizer", "production", runtime.Canary); c.Version != "" {
		t.Fatalf("canary still runs %+v", c)
	}
	if s := h.rt.get("resizer", "production", runtime.Stable); s.Version != "v1" || s.Desired != 2 {
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
	r := h.deploy(DeployRequest{Version: "v2", Canary: 10})
	h.until(r.ID, release.Paused, time.Second, 0, 0, 10)
	if h.router.weight("resizer", "production") != 10 {
		t.Fatal("canary not at 10%")
	}
	a, err := h.e.Abort(context.Background(), Actor{Name: "carol", Source: release.SourceWeb}, "resizer", "", "looks slow")
	if err != nil {
		t.Fatal(err)
	}
	// No Step in between: Abort itself stored the state and moved the weight.
	if a.State != release.Aborted || a.Reason != "aborted by carol via web: looks slow" {
		t.Fatalf("abort returned %s %q", a.State, a.Reason)
	}
	if w := h.router.weight("resizer", "production"); w != 0 {
		t.Fatalf("weight %v right after Abort, want 0", w)
	}
	h.step(time.Second, 0, 0)
	if c := h.rt.get("resizer", "production", runtime.Canary); c.Version != "" {
		t.Fatalf("canary still runs after a step: %+v", c)
	}
	if _, err := h.e.Abort(context.Background(), alice, "resizer", "", ""); CodeOf(err) != CodeNotFound {
		t.Fatalf("second abort: %v, want not_found", err)
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
	if w := h.router.weight("resizer", "production"); w != 0 {
		t.Fatalf("weight %v", w)
	}
}

func TestCanaryThatFailsEndsWithTheRuntimesReasonAndStableUntouched(t *testing.T) {
	h := newHarness(t)
	h.stableAt("v1")
	h.rt.failing["v2"] = "exited at once: exit status 3"
	applies := len(h.rt.applies)
	r := h.deploy(DeployRequest{Version: "v2"})
	for i := 0; i < 5 && !h.release(r.ID).State.Terminal(); i++ {
		h.step(time.Second, 0, 0)
	}
	r = h.release(r.ID)
	if r.State != release.Failed || r.Reason != "canary v2 failed: exited at once: exit status 3" {
		t.Fatalf("release %s: %q", r.State, r.Reason)
	}
	h.step(time.Second, 0, 0)
	for _, a := range h.rt.applies[applies:] {
		if strings.HasPrefix(a, "stable") {
			t.Fatalf("stable was applied during the failed canary: %v", h.rt.applies[applies:])
		}
	}
	if s := h.rt.get("resizer", "production", runtime.Stable); s.Version != "v1" || s.Desired != 2 {
		t.Fatalf("stable %+v", s)
	}
	if c := h.rt.get("resizer", "production", runtime.Canary); c.Version != "" {
		t.Fatalf("failed canary left running: %+v", c)
	}
	if w := h.router.weight("resizer", "production"); w != 0 {
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
			h.rt.neverReady["v2"] = true
			return h.deploy(DeployRequest{Version: "v2"})
		}, 5 * time.Minute, release.Failed, "canary v2 not ready within 5m0s: 0 of 1 instances ready"},
		{"progressing without traffic", func(h *harness) release.Release {
			r := h.deploy(DeployRequest{Version: "v2"})
			h.until(r.ID, release.Progressing, time.Second, 0, 0, 5)
			return r
		}, 5 * time.Minute, release.Failed, "not enough traffic: 0 of 20 canary requests in 5m0s"},
		{"paused hold", func(h *harness) release.Release {
			r := h.deploy(DeployRequest{Version: "v2", Canary: 5})
			h.until(r.ID, release.Paused, time.Second, 0, 0, 5)
			return r
		}, 24 * time.Hour, release.Aborted, "hold expired after 24h0m0s without promote or abort"},
		{"promoting stable never ready", func(h *harness) release.Release {
			r := h.deploy(DeployRequest{Version: "v2", Canary: 5})
			h.until(r.ID, release.Paused, time.Second, 0, 0, 5)
			h.rt.neverReady["v2"] = true
			if _, err := h.e.Promote(context.Background(), alice, "resizer", ""); err != nil {
				h.t.Fatal(err)
			}
			return r
		}, 5 * time.Minute, release.Failed, "stable v2 not ready within 5m0s: 0 of 2 instances ready; keeping v1"},
		{"rolling stable never ready", func(h *harness) release.Release {
			h.rt.neverReady["v2"] = true
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
			if s := h.rt.get("resizer", "production", runtime.Stable); s.Version != "v1" {
				t.Fatalf("stable not back at v1: %+v", s)
			}
			if w := h.router.weight("resizer", "production"); w != 0 {
				t.Fatalf("weight %v", w)
			}
		})
	}
}

func TestSecondDeployIsRefusedNamingTheActiveRelease(t *testing.T) {
	h := newHarness(t)
	h.stableAt("v1")
	r := h.deploy(DeployRequest{Version: "v2"})
	h.until(r.ID, release.Progressing, time.Second, 0, 0, 5)
	h.step(time.Minute, 4000, 0) // passes step 1, now at 10%
	_, err := h.e.Deploy(context.Background(), Actor{Name: "bob", Source: release.SourceCLI}, DeployRequest{App: "resizer", Version: "v3"})
	want := "resizer/production already has release #2 (v2, progressing at 10%) started by alice via slack"
	if CodeOf(err) != CodeConflict || err.Error() != want {
		t.Fatalf("got %v (%s), want conflict %q", err, CodeOf(err), want)
	}
	// Another environment is independent.
	if _, err := h.e.Deploy(context.Background(), alice, DeployRequest{App: "resizer", Env: "staging", Version: "v3"}); err != nil {
		t.Fatalf("staging deploy: %v", err)
	}
}

func TestConcurrentDeploysStartExactlyOneRelease(t *testing.T) {
	h := newHarness(t)
	h.stableAt("v1")
	errs := make(chan error, 10)
	for i := 0; i < 10; i++ {
		go func() {
			_, err := h.e.Deploy(context.Background(), alice, DeployRequest{App: "resizer", Version: "v2"})
			errs <- err
		}()
	}
	ok := 0
	for i := 0; i < 10; i++ {
		err := <-errs
		switch {
		case err == nil:
			ok++
		case CodeOf(err) != CodeConflict:
			t.Fatalf("unexpected %v", err)
		}
	}
	if ok != 1 {
		t.Fatalf("%d deploys succeeded, want 1", ok)
	}
}

func TestLockBlocksDeployAndRollbackButNotAbortOrScale(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	h.stableAt("v1")
	r := h.deploy(DeployRequest{Version: "v2", Canary: 1})
	h.until(r.ID, release.Paused, time.Second, 0, 0, 5)
	bob := Actor{Name: "bob", Source: release.SourceCLI}
	if err := h.e.Lock(ctx, bob, "resizer", "", "db migration"); err != nil {
		t.Fatal(err)
	}
	_, err := h.e.Deploy(ctx, alice, DeployRequest{App: "resizer", Version: "v3"})
	if CodeOf(err) != CodeLocked || !strings.Contains(err.Error(), `locked by bob: "db migration"`) {
		t.Fatalf("deploy while locked: %v", err)
	}
	if _, err := h.e.Rollback(ctx, alice, "resizer", "", ""); CodeOf(err) != CodeLocked {
		t.Fatalf("rollback while locked: %v", err)
	}
	if err := h.e.Scale(ctx, alice, "resizer", "", 3); err != nil {
		t.Fatalf("scale while locked: %v", err)
	}
	if _, err := h.e.Abort(ctx, alice, "resizer", "", ""); err != nil {
		t.Fatalf("abort while locked: %v", err)
	}
	st, _ := h.e.Status(ctx, "resizer", "")
	if st.Lock == nil || st.Lock.Actor != "bob" || st.Lock.Reason != "db migration" {
		t.Fatalf("status lock %+v", st.Lock)
	}
	if err := h.e.Unlock(ctx, bob, "resizer", ""); err != nil {
		t.Fatal(err)
	}
	if err := h.e.Unlock(ctx, bob, "resizer", ""); CodeOf(err) != CodeNotFound {
		t.Fatalf("second unlock: %v", err)
	}
	h.deploy(DeployRequest{Version: "v3"})
	evs, _ := h.e.Events(ctx, EventQuery{App: "resizer"})
	var types []string
	for _, ev := range evs {
		if strings.HasPrefix(ev.Type, "app.") {
			types = append(types, ev.Type+":"+ev.Actor)
		}
	}
	if want := []string{"app.locked:bob", "app.scaled:alice", "app.unlocked:bob"}; !slices.Equal(types, want) {
		t.Fatalf("app events %v, want %v", types, want)
	}
}

func TestRollbackReturnsToThePreviousSucceededVersion(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	if _, err := h.e.Rollback(ctx, alice, "resizer", "", ""); CodeOf(err) != CodeNotFound {
		t.Fatalf("rollback with no history: %v", err)
	}
	h.stableAt("v1")
	if _, err := h.e.Rollback(ctx, alice, "resizer", "", ""); CodeOf(err) != CodeNotFound {
		t.Fatalf("rollback with one release: %v", err)
	}
	r := h.deploy(DeployRequest{Version: "v2", Rolling: true})
	h.until(r.ID, release.Succeeded, time.Second, 0, 0, 10)
	r = h.deploy(DeployRequest{Version: "v3", Rolling: true})
	h.until(r.ID, release.Succeeded, time.Second, 0, 0, 10)

	rb, err := h.e.Rollback(ctx, alice, "resizer", "", "")
	if err != nil {
		t.Fatal(err)
	}
	if rb.Kind != release.KindRollback || rb.Version != "v2" || rb.FromVersion != "v3" || rb.Strategy != "rolling" {
		t.Fatalf("rollback release %+v", rb)
	}
	h.until(rb.ID, release.Succeeded, time.Second, 0, 0, 10)
	if s := h.rt.get("resizer", "production", runtime.Stable); s.Version != "v2" {
		t.Fatalf("stable %+v", s)
	}
	// --to an older known-good version; an unknown one is refused.
	if _, err := h.e.Rollback(ctx, alice, "resizer", "", "v9"); CodeOf(err) != CodeNotFound {
		t.Fatalf("rollback to unknown: %v", err)
	}
	rb, err = h.e.Rollback(ctx, alice, "resizer", "", "v1")
	if err != nil {
		t.Fatal(err)
	}
	h.until(rb.ID, release.Succeeded, time.Second, 0, 0, 10)
	if s := h.rt.get("resizer", "production", runtime.Stable); s.Version != "v1" {
		t.Fatalf("stable %+v", s)
	}
	hist, _ := h.e.History(ctx, "resizer", "", 0)
	var got []string
	for _, r := range hist {
		got = append(got, string(r.Kind)+":"+r.Version+":"+string(r.State))
	}
	want := []string{"rollback:v1:succeeded", "rollback:v2:succeeded", "deploy:v3:succeeded", "deploy:v2:succeeded", "deploy:v1:succeeded"}
	if !slices.Equal(got, want) {
		t.Fatalf("history %v, want %v", got, want)
	}
}

func TestRollbackDuringACanaryRecordsItRolledBackAndKeepsStable(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	h.stableAt("v1")
	r := h.deploy(DeployRequest{Version: "v2", Canary: 20})
	h.until(r.ID, release.Paused, time.Second, 0, 0, 5)
	rb, err := h.e.Rollback(ctx, alice, "resizer", "", "")
	if err != nil {
		t.Fatal(err)
	}
	if old := h.release(r.ID); old.State != release.RolledBack || !strings.Contains(old.Reason, "rolled back to v1 by alice") {
		t.Fatalf("canary release %s %q", old.State, old.Reason)
	}
	if w := h.router.weight("resizer", "production"); w != 0 {
		t.Fatalf("weight %v right after rollback", w)
	}
	h.until(rb.ID, release.Succeeded, time.Second, 0, 0, 10)
	if c := h.rt.get("resizer", "production", runtime.Canary); c.Version != "" {
		t.Fatalf("canary left: %+v", c)
	}
	if s := h.rt.get("resizer", "production", runtime.Stable); s.Version != "v1" {
		t.Fatalf("stable %+v", s)
	}
}

func TestScaleChangesStableAndCanaryKeepsItsShare(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	h.stableAt("v1")
	r := h.deploy(DeployRequest{Version: "v2", Canary: 50})
	h.until(r.ID, release.Paused, time.Second, 0, 0, 5)
	if c := h.rt.get("resizer", "production", runtime.Canary); c.Desired != 1 {
		t.Fatalf("canary %+v, want 1 (50%% of 2)", c)
	}
	if err := h.e.Scale(ctx, alice, "resizer", "", 6); err != nil {
		t.Fatal(err)
	}
	if s := h.rt.get("resizer", "production", runtime.Stable); s.Version != "v1" || s.Desired != 6 {
		t.Fatalf("stable %+v, want v1×6 at once", s)
	}
	h.step(time.Second, 0, 0)
	if c := h.rt.get("resizer", "production", runtime.Canary); c.Desired != 3 {
		t.Fatalf("canary %+v, want 3 (50%% of 6)", c)
	}
	if err := h.e.Scale(ctx, alice, "resizer", "", 0); CodeOf(err) != CodeConflict {
		t.Fatalf("scale 0 during a canary: %v", err)
	}
	if err := h.e.Scale(ctx, alice, "resizer", "", -1); CodeOf(err) != CodeInvalid {
		t.Fatalf("scale -1: %v", err)
	}
	if _, err := h.e.Promote(ctx, alice, "resizer", ""); err != nil {
		t.Fatal(err)
	}
	h.until(r.ID, release.Succeeded, time.Second, 0, 0, 10)
	if s := h.rt.get("resizer", "production", runtime.Stable); s.Version != "v2" || s.Desired != 6 {
		t.Fatalf("stable after promote %+v, want v2×6", s)
	}
	if err := h.e.Scale(ctx, alice, "resizer", "", 0); err != nil {
		t.Fatalf("scale 0 when idle: %v", err)
	}
	if s := h.rt.get("resizer", "production", runtime.Stable); s.Desired != 0 {
		t.Fatalf("stable %+v, want 0", s)
	}
}

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
	before, _ := h.e.Events(context.Background(), EventQuery{})

	// The process dies: the router forgets its weights, the engine its memory.
	h.router = &fakeRouter{}
	h.open()

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.e.Run(ctx) }()
	deadline := time.Now().Add(10 * time.Second)
	for h.router.weight("resizer", "production") != 10 {
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
		w := h.router.weight("resizer", "production")
		h.metrics.add(runtime.Canary, "v2", int64(40*w), 0)
		h.metrics.add(runtime.Stable, "v1", 4000, 0)
		time.Sleep(2 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	after, _ := h.e.Events(context.Background(), EventQuery{})
	if len(after) <= len(before) {
		t.Fatalf("no events after restart")
	}
	for i := range before {
		if after[i].ID != before[i].ID || after[i].Type != before[i].Type || after[i].Message != before[i].Message {
			t.Fatalf("history changed at %d: %+v vs %+v", i, before[i], after[i])
		}
	}
	var steps []float64
	for i, ev := range after {
		if i > 0 && (ev.ID <= after[i-1].ID || ev.Time.Before(after[i-1].Time)) {
			t.Fatalf("events out of order at %d", i)
		}
		if ev.ReleaseID == r.ID && ev.Type == "release.step" {
			steps = append(steps, ev.Weight)
		}
	}
	if want := []float64{1, 10, 50, 100}; !slices.Equal(steps, want) {
		t.Fatalf("step events %v, want %v", steps, want)
	}
	if s := h.rt.get("resizer", "production", runtime.Stable); s.Version != "v2" {
		t.Fatalf("stable %+v", s)
	}
}

func TestRestartAfterAbortRemovesTheLeftoverCanary(t *testing.T) {
	h := newHarness(t)
	h.stableAt("v1")
	r := h.deploy(DeployRequest{Version: "v2", Canary: 10})
	h.until(r.ID, release.Paused, time.Second, 0, 0, 5)
	if _, err := h.e.Abort(context.Background(), alice, "resizer", "", "stop"); err != nil {
		t.Fatal(err)
	}
	// Killed before any step removed the canary.
	if c := h.rt.get("resizer", "production", runtime.Canary); c.Version != "v2" {
		t.Fatalf("precondition: canary %+v", c)
	}
	h.router = &fakeRouter{}
	h.open()
	if err := h.e.Resume(context.Background()); err != nil {
		t.Fatal(err)
	}
	h.step(time.Second, 0, 0)
	if c := h.rt.get("resizer", "production", runtime.Canary); c.Version != "" {
		t.Fatalf("canary left after restart: %+v", c)
	}
	if s := h.rt.get("resizer", "production", runtime.Stable); s.Version != "v1" {
		t.Fatalf("stable %+v", s)
	}
}

func TestCrashedInstancesAreRecorded(t *testing.T) {
	h := newHarness(t)
	h.stableAt("v1")
	r := h.deploy(DeployRequest{Version: "v2", Canary: 10})
	h.until(r.ID, release.Paused, time.Second, 0, 0, 5)
	h.rt.crash("resizer", "production", runtime.Canary, 2)
	h.step(time.Second, 0, 0)
	evs, _ := h.e.Events(context.Background(), EventQuery{ReleaseID: r.ID})
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

func TestDeployRejectsBadRequests(t *testing.T) {
	h := newHarness(t)
	h.apps["nightly"] = spec.App{Name: "nightly", Kind: spec.KindWorker}
	h.stableAt("v1")
	cases := []struct {
		name string
		req  DeployRequest
		code Code
	}{
		{"unknown app", DeployRequest{App: "nope", Version: "v2"}, CodeNotFound},
		{"unknown env", DeployRequest{App: "resizer", Env: "moon", Version: "v2"}, CodeNotFound},
		{"no version", DeployRequest{App: "resizer"}, CodeInvalid},
		{"version with space", DeployRequest{App: "resizer", Version: "v 2"}, CodeInvalid},
		{"version with slash", DeployRequest{App: "resizer", Version: "../v2"}, CodeInvalid},
		{"canary 0.0 too big", DeployRequest{App: "resizer", Version: "v2", Canary: 101}, CodeInvalid},
		{"negative canary", DeployRequest{App: "resizer", Version: "v2", Canary: -1}, CodeInvalid},
		{"canary and steps", DeployRequest{App: "resizer", Version: "v2", Canary: 1, Steps: []float64{1}}, CodeInvalid},
		{"decreasing steps", DeployRequest{App: "resizer", Version: "v2", Steps: []float64{10, 1}}, CodeInvalid},
		{"rolling with canary", DeployRequest{App: "resizer", Version: "v2", Rolling: true, Canary: 1}, CodeInvalid},
		{"same as stable", DeployRequest{App: "resizer", Version: "v1"}, CodeInvalid},
		{"worker kind not rolled out yet", DeployRequest{App: "nightly", Version: "v1"}, CodeInvalid},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := h.e.Deploy(context.Background(), alice, tc.req)
			if CodeOf(err) != tc.code {
				t.Fatalf("got %v (%s), want %s", err, CodeOf(err), tc.code)
			}
		})
	}
	if rs, _ := h.e.History(context.Background(), "resizer", "", 0); len(rs) != 1 {
		t.Fatalf("refused deploys left %d releases", len(rs))
	}
}

func TestSubscribersGetEventsAndASlowOneNeverBlocks(t *testing.T) {
	h := newHarness(t)
	ch, stop := h.e.Subscribe()
	defer stop()
	slow, stopSlow := h.e.Subscribe() // never read
	defer stopSlow()
	_ = slow
	h.stableAt("v1")
	for i := 0; i < 400; i++ { // more events than a subscriber's buffer
		if err := h.e.Lock(context.Background(), alice, "resizer", "", "x"); err != nil {
			t.Fatal(err)
		}
	}
	ev := <-ch
	if ev.Type != "release.created" || ev.ID == 0 {
		t.Fatalf("first event %+v", ev)
	}
}

func TestStatusShowsTracksWeightReleaseAndEndpoint(t *testing.T) {
	h := newHarness(t)
	h.stableAt("v1")
	r := h.deploy(DeployRequest{Version: "v2", Canary: 1})
	h.until(r.ID, release.Paused, time.Second, 0, 0, 5)
	st, err := h.e.Status(context.Background(), "resizer", "")
	if err != nil {
		t.Fatal(err)
	}
	if st.Env != "production" || st.Endpoint != "127.0.0.1:8080" || st.Stable.Version != "v1" || st.Stable.Ready != 2 ||
		st.Canary.Version != "v2" || st.Canary.Ready != 1 || st.Weight != 1 || st.Release == nil || st.Release.ID != r.ID {
		t.Fatalf("status %+v", st)
	}
	all, err := h.e.List(context.Background())
	if err != nil || len(all) != 2 {
		t.Fatalf("list: %d %v", len(all), err)
	}
	h.rt.statusErr = errors.New("runtime down")
	st, err = h.e.Status(context.Background(), "resizer", "")
	if err != nil || !strings.Contains(st.Note, "runtime down") || st.Stable.Version != "v1" {
		t.Fatalf("status with runtime down: %+v %v", st, err)
	}
	if _, err := h.e.Release(context.Background(), 999); CodeOf(err) != CodeNotFound {
		t.Fatalf("release 999: %v", err)
	}
	if _, err := h.e.Status(context.Background(), "nope", ""); CodeOf(err) != CodeNotFound {
		t.Fatalf("status nope: %v", err)
	}
}

func TestConfigValidateReportsEveryProblem(t *testing.T) {
	_, err := New(Config{Tick: time.Second})
	if err == nil {
		t.Fatal("empty config accepted")
	}
	for _, want := range []string{"Store", "Apps", "Runtime", "Router", "Metrics", "Tick"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %s", err, want)
		}
	}
	var _ = store.ErrNotFound
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
	r, err := e.Deploy(ctx, alice, DeployRequest{App: "resizer", Version: "v2", Canary: 10})
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for h.router.weight("resizer", "production") != 10 {
		if time.Now().After(deadline) {
			t.Fatalf("canary never reached 10%%: %+v", h.release(r.ID))
		}
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond) // let the step's baseline be taken
	evidence := time.Now()
	h.metrics.add(runtime.Canary, "v2", 40, 20)
	for h.router.weight("resizer", "production") != 0 {
		if time.Since(evidence) > 2*time.Second {
			t.Fatalf("weight still %v 2s after the evidence", h.router.weight("resizer", "production"))
		}
		time.Sleep(time.Millisecond)
	}
	took := time.Since(evidence)
	t.Logf("evidence to weight 0: %s", took)
	if got, _ := e.Release(ctx, r.ID); got.State != release.Aborted {
		t.Fatalf("release %s %q", got.State, got.Reason)
	}
}

func TestARouterThatRoundsTheWeightIsNotSetAgainEveryTick(t *testing.T) {
	h := newHarness(t)
	h.router.round = 10 // replica ratios: only multiples of 10% exist
	h.stableAt("v1")
	r := h.deploy(DeployRequest{Version: "v2", Canary: 14}) // in force: 10%
	h.until(r.ID, release.Paused, time.Second, 0, 0, 5)
	h.step(time.Second, 0, 0)
	n := len(h.router.history)
	for i := 0; i < 20; i++ {
		h.step(time.Second, 0, 0)
	}
	if types := h.eventTypes(r.ID); !slices.Contains(types, "release.weight_rounded") {
		t.Fatalf("no release.weight_rounded event in %v", types)
	}
	if extra := len(h.router.history) - n; extra != 0 {
		t.Fatalf("%d more SetWeight calls for an unchanged weight: %v", extra, h.router.history)
	}
	// A router that lost its weights (restart) is set again.
	h.router.mu.Lock()
	h.router.weights = nil
	h.router.mu.Unlock()
	h.step(time.Second, 0, 0)
	if len(h.router.history) != n+1 {
		t.Fatalf("lost weight not re-set: %v", h.router.history)
	}
}

func TestAuthorizeRefusesWithForbiddenAndRecordsNothing(t *testing.T) {
	h := newHarness(t)
	h.stableAt("v1")
	var asked []string
	h.e.cfg.Authorize = func(_ context.Context, a Actor, act Action, app, env string) error {
		asked = append(asked, a.Name+":"+string(act)+":"+app+"/"+env)
		if a.Name == "mallory" {
			return errors.New("not in the deployers group")
		}
		return nil
	}
	mallory := Actor{Name: "mallory", Source: release.SourceSlack}
	ctx := context.Background()
	_, err := h.e.Deploy(ctx, mallory, DeployRequest{App: "resizer", Version: "v2"})
	if CodeOf(err) != CodeDenied || !strings.Contains(err.Error(), "mallory may not deploy resizer/production") {
		t.Fatalf("deploy by mallory: %v", err)
	}
	if err := h.e.Scale(ctx, mallory, "resizer", "", 5); CodeOf(err) != CodeDenied {
		t.Fatalf("scale by mallory: %v", err)
	}
	r := h.deploy(DeployRequest{Version: "v2", Canary: 1})
	if _, err := h.e.Abort(ctx, mallory, "resizer", "", ""); CodeOf(err) != CodeDenied {
		t.Fatalf("abort by mallory: %v", err)
	}
	if got := h.release(r.ID); got.State != release.Pending {
		t.Fatalf("release %s after a refused abort", got.State)
	}
	if hist, _ := h.e.History(ctx, "resizer", "", 0); len(hist) != 2 {
		t.Fatalf("%d releases, want 2", len(hist))
	}
	if want := "mallory:deploy:resizer/production"; asked[0] != want {
		t.Fatalf("asked %v", asked)
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
		h.router = &fakeRouter{}
		h.open()
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- h.e.Run(ctx) }()
		// Traffic flows once the new engine has put the weight back (the
		// fake clock must not run ahead of an engine that has not resumed,
		// or a slow machine fails the step for want of traffic).
		for cur := h.release(r.ID); !cur.State.Terminal() && h.router.weight("resizer", "production") != cur.Weight; cur = h.release(r.ID) {
			if time.Now().After(deadline) {
				t.Fatal("engine did not resume the weight")
			}
			time.Sleep(time.Millisecond)
		}
		for i := 0; i < 2+restarts%5; i++ {
			h.clock.Advance(2 * time.Second)
			w := h.router.weight("resizer", "production")
			h.metrics.add(runtime.Canary, "v2", int64(40*w), 0)
			h.metrics.add(runtime.Stable, "v1", 4000, 0)
			time.Sleep(time.Duration(2+restarts%7) * time.Millisecond)
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		restarts++
	}
	evs, _ := h.e.Events(context.Background(), EventQuery{ReleaseID: r.ID})
	var steps []float64
	var kinds []string
	for _, ev := range evs {
		switch ev.Type {
		case "release.step":
			steps = append(steps, ev.Weight)
		case "release.created", "release.promoting", "release.succeeded":
			kinds = append(kinds, ev.Type)
		}
	}
	if want := []float64{1, 10, 50, 100}; !slices.Equal(steps, want) {
		t.Fatalf("after %d restarts, step events %v, want %v", restarts, steps, want)
	}
	if want := []string{"release.created", "release.promoting", "release.succeeded"}; !slices.Equal(kinds, want) {
		t.Fatalf("events %v", kinds)
	}
	if s := h.rt.get("resizer", "production", runtime.Stable); s.Version != "v2" {
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
	h.rt.mu.Lock()
	h.rt.hang["slow"] = true
	h.rt.mu.Unlock()

	e, err := New(Config{Store: h.store, Apps: h.apps, Runtime: h.rt, Router: h.router, Metrics: h.metrics})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- e.Run(runCtx) }()
	defer func() { cancel(); <-done }()
	r, err := e.Deploy(ctx, alice, DeployRequest{App: "resizer", Version: "v2", Canary: 10})
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for h.router.weight("resizer", "production") != 10 {
		if time.Now().After(deadline) {
			t.Fatalf("canary never reached 10%% while another app hangs: %+v", h.release(r.ID))
		}
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond)
	evidence := time.Now()
	h.metrics.add(runtime.Canary, "v2", 40, 20)
	for h.router.weight("resizer", "production") != 0 {
		if time.Since(evidence) > 2*time.Second {
			t.Fatal("weight still up 2s after the evidence while another app hangs")
		}
		time.Sleep(time.Millisecond)
	}
	if got, _ := e.Release(ctx, rs.ID); got.State.Terminal() {
		t.Fatalf("the hung app's release ended: %s", got.State)
	}
}

type fakeLogs struct{ asked string }

func (f *fakeLogs) Logs(_ context.Context, app spec.App, env, version string, n int) ([]runtime.LogLine, error) {
	f.asked = fmt.Sprintf("%s/%s %s %d", app.Name, env, version, n)
	return []runtime.LogLine{{Instance: "canary-0", Version: version, Stream: "stdout", Text: "hello"}}, nil
}

func TestLogsComeFromTheRuntimeWhenItKeepsThem(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	if _, err := h.e.Logs(ctx, "resizer", "", "", 10); CodeOf(err) != CodeInvalid {
		t.Fatalf("logs without a reader: %v", err)
	}
	logs := &fakeLogs{}
	h.e.cfg.Logs = logs
	lines, err := h.e.Logs(ctx, "resizer", "", "v2", 0)
	if err != nil || len(lines) != 1 || lines[0].Text != "hello" || logs.asked != "resizer/production v2 100" {
		t.Fatalf("logs %+v %v (asked %q)", lines, err, logs.asked)
	}
	if _, err := h.e.Logs(ctx, "nope", "", "", 1); CodeOf(err) != CodeNotFound {
		t.Fatalf("logs of unknown app: %v", err)
	}
	if _, err := h.e.Events(ctx, EventQuery{App: "nope"}); CodeOf(err) != CodeNotFound {
		t.Fatalf("events of unknown app: %v", err)
	}
}
