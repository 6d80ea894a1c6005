package engine

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/shipteam/ship/internal/release"
	"github.com/shipteam/ship/internal/runtime"
)

// An idle app's stable changed by hand (its image, version label kept) is
// recorded once as an app.conflict event per distinct change, however many
// ticks see it, shown in status and left as is; a different change is news,
// and after `ship reclaim` the same change made again is news again.
func TestIdleHandEditIsReportedOncePerDistinctDrift(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	h.stableAt("v1")
	q := EventQuery{App: "resizer", Env: "production"}
	steps := func(n int) {
		t.Helper()
		for i := 0; i < n; i++ {
			h.step(time.Second, 0, 0)
		}
	}
	conflicts := func(want int) []release.Event {
		t.Helper()
		evs := eventsOfType(t, h, q, "app.conflict")
		if len(evs) != want {
			var msgs []string
			for _, ev := range evs {
				msgs = append(msgs, ev.Message)
			}
			t.Fatalf("%d app.conflict events, want %d:\n%s", len(evs), want, strings.Join(msgs, "\n"))
		}
		return evs
	}
	note := func() string {
		t.Helper()
		st, err := h.e.Status(ctx, System, "resizer", "")
		if err != nil {
			t.Fatal(err)
		}
		return st.Note
	}
	steps(12)
	conflicts(0)
	applies := h.rt.ApplyCount()

	hotfix := `image r/resizer:hotfix instead of r/resizer:v1 set by "kubectl-set"`
	h.rt.HandEdit("resizer", "production", runtime.Stable, hotfix)
	steps(30) // six looks at the idle app
	ev := conflicts(1)[0]
	if ev.ReleaseID != 0 || ev.Actor != "ship" || ev.Data.Track != "stable" || ev.Data.Conflict != hotfix ||
		!strings.Contains(ev.Message, "resizer/production stable changed outside ship") || !strings.Contains(ev.Message, hotfix) {
		t.Fatalf("app.conflict event %+v", ev)
	}
	if n := note(); !strings.Contains(n, "stable: changed outside ship, left as is: "+hotfix) {
		t.Errorf("status note %q, want the hand edit", n)
	}
	if n := h.rt.ApplyCount(); n != applies {
		t.Errorf("%d Apply calls after the hand edit, want none: ship does not overwrite it", n-applies)
	}

	// Another change is another finding.
	hotfix2 := strings.ReplaceAll(hotfix, ":hotfix", ":hotfix2")
	h.rt.HandEdit("resizer", "production", runtime.Stable, hotfix2)
	steps(30)
	if ev := conflicts(2)[1]; ev.Data.Conflict != hotfix2 {
		t.Fatalf("second app.conflict %+v, want %q", ev, hotfix2)
	}

	// Reclaim puts it back; the same change made again at once (before
	// any look saw the track clean) is reported again.
	if _, err := h.e.Reclaim(ctx, alice, ReclaimRequest{App: "resizer", Env: ""}); err != nil {
		t.Fatal(err)
	}
	h.rt.HandEdit("resizer", "production", runtime.Stable, hotfix2)
	steps(12)
	if ev := conflicts(3)[2]; ev.Data.Conflict != hotfix2 {
		t.Fatalf("third app.conflict %+v, want %q", ev, hotfix2)
	}
	// Reclaimed for good: the note goes, nothing new is reported.
	if _, err := h.e.Reclaim(ctx, alice, ReclaimRequest{App: "resizer", Env: ""}); err != nil {
		t.Fatal(err)
	}
	steps(12)
	conflicts(3)
	if n := note(); strings.Contains(n, "changed outside ship") {
		t.Errorf("status note %q after reclaim", n)
	}
}

// A field of an idle app taken over by hand makes ship's Apply refused:
// recorded once as app.conflict (it used to be only logged), though the
// refused Apply is retried every reapplyAfter.
func TestIdleRefusedApplyIsRecordedOnceAsAnAppEvent(t *testing.T) {
	h := newHarness(t)
	h.stableAt("v1")
	h.rt.HandScale("resizer", "production", runtime.Stable, 5, "kubectl-edit")
	for i := 0; i < 30; i++ {
		h.step(time.Second, 0, 0)
	}
	if n := h.rt.RefusedApplies(); n < 3 {
		t.Fatalf("%d refused Apply calls in 30 s, want one every %s", n, reapplyAfter)
	}
	evs := eventsOfType(t, h, EventQuery{App: "resizer", Env: "production"}, "app.conflict")
	if len(evs) != 1 || !strings.Contains(evs[0].Message, `conflict with "kubectl-edit"`) || evs[0].Data.Track != "stable" {
		t.Fatalf("app.conflict events %+v, want one naming kubectl-edit", evs)
	}
	if got := h.rt.Get("resizer", "production", runtime.Stable); got.Desired != 5 {
		t.Errorf("stable %+v, want the hand edit ×5 left as is", got)
	}
}
