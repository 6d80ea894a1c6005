package engine

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/shipteam/ship/internal/release"
	"github.com/shipteam/ship/internal/runtime"
)

// A count changed by hand while a canary is held is applied again, the
// runtime refuses (the change took the field over): ship records one
// release.conflict event, leaves the change, says so in status, retries
// only every reapplyAfter, and the release stays held. Given back, the
// note goes.
func TestHandEditConflictIsReportedOnceAndNotOverwritten(t *testing.T) {
	h := newHarness(t)
	h.stableAt("v1")
	r := h.deploy(DeployRequest{Version: "v2", Canary: 100})
	h.until(r.ID, release.Paused, time.Second, 0, 0, 10)

	h.rt.HandScale("resizer", "production", runtime.Canary, 3, "kubectl")
	for i := 0; i < 12; i++ {
		h.step(time.Second, 0, 0)
	}
	if n := h.rt.RefusedApplies(); n < 1 || n > 3 {
		t.Errorf("%d refused applies in 12s, want 1..3 (one per %s)", n, reapplyAfter)
	}
	if c := h.rt.Get("resizer", "production", runtime.Canary); c.Desired != 3 || c.Version != "v2" {
		t.Errorf("canary %+v, want the hand edit v2×3", c)
	}
	if got := h.release(r.ID); got.State != release.Paused {
		t.Fatalf("release %s (%s), want still paused", got.State, got.Reason)
	}
	evs, err := h.e.Events(context.Background(), System, EventQuery{ReleaseID: r.ID})
	if err != nil {
		t.Fatal(err)
	}
	var conflicts []release.Event
	for _, ev := range evs {
		if ev.Type == "release.conflict" {
			conflicts = append(conflicts, ev)
		}
	}
	if len(conflicts) != 1 || conflicts[0].Data.Track != "canary" || !strings.Contains(conflicts[0].Message, `conflict with "kubectl"`) {
		t.Fatalf("conflict events %+v, want one naming kubectl on the canary", conflicts)
	}
	st, err := h.e.Status(context.Background(), System, "resizer", "")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(st.Note, "canary: changed outside ship, left as is") || !strings.Contains(st.Note, "kubectl") {
		t.Errorf("status note %q", st.Note)
	}

	// Given back to what ship asks: no conflict left to report.
	h.rt.HandScale("resizer", "production", runtime.Canary, 1, "")
	h.step(time.Second, 0, 0)
	if st, _ := h.e.Status(context.Background(), System, "resizer", ""); strings.Contains(st.Note, "changed outside ship") {
		t.Errorf("status note after the revert %q", st.Note)
	}
}

// A promotion that needs a field changed by hand is refused; the release
// fails at its deadline and its reason names the conflict.
func TestPromotionBlockedByAHandEditFailsWithTheConflict(t *testing.T) {
	h := newHarness(t)
	h.stableAt("v1")
	r := h.deploy(DeployRequest{Version: "v2", Canary: 100})
	h.until(r.ID, release.Paused, time.Second, 0, 0, 10)
	h.rt.HandScale("resizer", "production", runtime.Stable, 2, "kubectl-edit")
	if _, err := h.e.Promote(context.Background(), alice, PromoteRequest{App: "resizer", Env: ""}); err != nil {
		t.Fatal(err)
	}
	got := h.until(r.ID, release.Failed, 5*time.Second, 0, 0, 100)
	for _, w := range []string{"stable v2 not ready", "0 of 2 instances ready", "keeping v1", "blocked by a change made outside ship", `conflict with "kubectl-edit"`} {
		if !strings.Contains(got.Reason, w) {
			t.Errorf("reason %q does not say %q", got.Reason, w)
		}
	}
	if s := h.rt.Get("resizer", "production", runtime.Stable); s.Version != "v1" {
		t.Errorf("stable %+v, want v1 kept", s)
	}
}
