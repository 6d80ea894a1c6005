package engine

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

// An app without a release costs nothing between looks: once it runs what
// its state says, steps do not ask the runtime about it until LookEvery
// has passed; with LookEvery negative (the local runtime), never.
func TestAnIdleAppIsLookedAtOnlyEveryLookEvery(t *testing.T) {
	for _, c := range []struct {
		name  string
		every time.Duration
		looks bool
	}{{"every 5s", 5 * time.Second, true}, {"never", -1, false}} {
		t.Run(c.name, func(t *testing.T) {
			h := newHarness(t)
			h.mutate = func(cfg *Config) { cfg.LookEvery = c.every }
			h.open()
			h.stableAt("v1")
			h.step(time.Second, 0, 0) // the reconciler sees it settled
			before := h.rt.StatusCount()
			for range 20 {
				h.step(100*time.Millisecond, 0, 0) // 2 s of ticks
			}
			if n := h.rt.StatusCount() - before; n != 0 {
				t.Fatalf("%d runtime Status calls for an idle app in 2 s of ticks, want 0", n)
			}
			h.step(4*time.Second, 0, 0) // past LookEvery
			got := h.rt.StatusCount() - before
			if c.looks && got != 1 || !c.looks && got != 0 {
				t.Fatalf("%d Status calls once LookEvery passed, want looks=%v", got, c.looks)
			}
		})
	}
}

// A runtime that fails for an idle app is retried with a growing wait,
// not at every tick; the first failure and the recovery are logged, not
// every retry.
func TestAFailingAppBacksOffAndLogsTheFirstFailureAndTheRecovery(t *testing.T) {
	h := newHarness(t)
	h.stableAt("v1")
	h.rt.Mu.Lock()
	h.rt.StatusErr = errors.New("api server unreachable")
	h.rt.Mu.Unlock()
	if err := h.e.Scale(context.Background(), alice, ScaleRequest{App: "resizer", Replicas: Replicas(3)}); err != nil {
		t.Fatal(err)
	}
	h.e.markIdle(appKey{"resizer", "production"})
	before := h.rt.StatusCount()
	for range 100 {
		h.step(100*time.Millisecond, 0, 0) // 10 s of ticks
	}
	tries := h.rt.StatusCount() - before
	// 100 ms, 200, 400 … 6.4 s: about 7 tries in 10 s, not 100.
	if tries < 3 || tries > 12 {
		t.Fatalf("%d reconcile tries in 10 s of 100 ms ticks, want a backoff (3..12)", tries)
	}
	logs := h.logs.String()
	if n := strings.Count(logs, "level=ERROR msg=\"reconcile failing; retrying with backoff\""); n != 1 {
		t.Fatalf("failure logged %d times at error level, want once:\n%s", n, logs)
	}
	h.rt.Mu.Lock()
	h.rt.StatusErr = nil
	h.rt.Mu.Unlock()
	for i := 0; i < 20 && !strings.Contains(h.logs.String(), "reconcile recovered"); i++ {
		h.step(time.Second, 0, 0)
	}
	if !strings.Contains(h.logs.String(), "reconcile recovered") {
		t.Fatalf("recovery not logged:\n%s", h.logs.String())
	}
	if s := h.rt.Get("resizer", "production", "stable"); s.Desired != 3 {
		t.Fatalf("stable after recovery %+v, want 3 instances", s)
	}
}
