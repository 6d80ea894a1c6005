package engine

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/shipteam/ship/internal/release"
	"github.com/shipteam/ship/internal/runtime"
)

func eventsOfType(t *testing.T, h *harness, q EventQuery, typ string) []release.Event {
	t.Helper()
	evs, err := h.e.Events(context.Background(), System, q)
	if err != nil {
		t.Fatal(err)
	}
	var out []release.Event
	for _, ev := range evs {
		if string(ev.Type) == typ {
			out = append(out, ev)
		}
	}
	return out
}

// A held canary taken over by hand is forced back to ship's count by
// Reclaim; the event names who lost the field; the remembered conflict is
// forgotten, so the same hand edit made again is reported again; the
// release then promotes.
func TestReclaimTakesBackAHandEditedCanaryAndReportsTheNextOne(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	h.stableAt("v1")
	r := h.deploy(DeployRequest{Version: "v2", Canary: 100})
	h.until(r.ID, release.Paused, time.Second, 0, 0, 10)

	h.rt.HandScale("resizer", "production", runtime.Canary, 3, "kubectl")
	for i := 0; i < 6; i++ {
		h.step(time.Second, 0, 0)
	}
	if n := len(eventsOfType(t, h, EventQuery{ReleaseID: r.ID}, "release.conflict")); n != 1 {
		t.Fatalf("%d release.conflict events before reclaim, want 1", n)
	}

	bob := Actor{Name: "bob", Source: release.SourceCLI}
	res, err := h.e.Reclaim(ctx, bob, ReclaimRequest{App: "resizer", Env: ""})
	if err != nil {
		t.Fatal(err)
	}
	if res.Release != r.ID || len(res.Tracks) != 2 {
		t.Fatalf("reclaimed %+v, want both tracks of release #%d", res, r.ID)
	}
	s, c := res.Tracks[0], res.Tracks[1]
	if s.Track != "stable" || s.Version != "v1" || s.Replicas != 2 || len(s.Lost) != 0 {
		t.Errorf("stable %+v, want v1×2 with nothing lost", s)
	}
	if c.Track != "canary" || c.Version != "v2" || c.Replicas != 1 || len(c.Lost) != 1 || !strings.Contains(c.Lost[0], `"kubectl"`) {
		t.Errorf("canary %+v, want v2×1 taken from kubectl", c)
	}
	if got := h.rt.Get("resizer", "production", runtime.Canary); got.Desired != 1 || got.Version != "v2" {
		t.Errorf("canary runs %+v after reclaim, want v2×1", got)
	}
	evs := eventsOfType(t, h, EventQuery{ReleaseID: r.ID}, "app.reclaimed")
	if len(evs) != 1 || evs[0].Actor != "bob" || !strings.Contains(evs[0].Message, "bob via cli reclaimed resizer/production") ||
		!strings.Contains(evs[0].Message, `taken back from "kubectl": canary .spec.replicas`) {
		t.Fatalf("app.reclaimed events of the release %+v", evs)
	}
	if st, err := h.e.Status(ctx, System, "resizer", ""); err != nil || strings.Contains(st.Note, "changed outside ship") {
		t.Errorf("status note after reclaim %q (%v)", st.Note, err)
	}

	// The same hand edit again: news again, not swallowed as already seen.
	h.rt.HandScale("resizer", "production", runtime.Canary, 3, "kubectl")
	for i := 0; i < 6; i++ {
		h.step(time.Second, 0, 0)
	}
	if n := len(eventsOfType(t, h, EventQuery{ReleaseID: r.ID}, "release.conflict")); n != 2 {
		t.Fatalf("%d release.conflict events after a second hand edit, want 2", n)
	}
	if _, err := h.e.Reclaim(ctx, bob, ReclaimRequest{App: "resizer", Env: ""}); err != nil {
		t.Fatal(err)
	}
	if _, err := h.e.Promote(ctx, alice, PromoteRequest{App: "resizer", Env: ""}); err != nil {
		t.Fatal(err)
	}
	h.until(r.ID, release.Succeeded, time.Second, 0, 0, 20)
}

// An idle app whose stable count was taken over by hand: without reclaim
// a rolling release would be refused until its deadline (see
// TestPromotionBlockedByAHandEditFailsWithTheConflict); after it, it goes
// through. The event is not tied to a release.
func TestReclaimOfAnIdleAppLetsTheNextReleaseThrough(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	h.stableAt("v1")
	h.rt.HandScale("resizer", "production", runtime.Stable, 5, "kubectl-edit")
	h.step(time.Second, 0, 0)
	if got := h.rt.Get("resizer", "production", runtime.Stable); got.Desired != 5 {
		t.Fatalf("stable %+v, want the hand edit ×5 left as is", got)
	}
	res, err := h.e.Reclaim(ctx, alice, ReclaimRequest{App: "resizer", Env: "production"})
	if err != nil {
		t.Fatal(err)
	}
	if res.Release != 0 || len(res.Tracks) != 1 || res.Tracks[0].Track != "stable" || !strings.Contains(strings.Join(res.Tracks[0].Lost, " "), `"kubectl-edit"`) {
		t.Fatalf("reclaimed %+v, want stable taken from kubectl-edit", res)
	}
	if got := h.rt.Get("resizer", "production", runtime.Stable); got.Desired != 2 {
		t.Errorf("stable runs %+v after reclaim, want v1×2", got)
	}
	evs := eventsOfType(t, h, EventQuery{App: "resizer", Env: "production"}, "app.reclaimed")
	if len(evs) != 1 || evs[0].ReleaseID != 0 || !strings.Contains(evs[0].Message, "kubectl-edit") {
		t.Fatalf("app.reclaimed events %+v", evs)
	}
	r := h.deploy(DeployRequest{Version: "v2", Rolling: true})
	h.until(r.ID, release.Succeeded, time.Second, 0, 0, 20)
	if got := h.rt.Get("resizer", "production", runtime.Stable); got.Version != "v2" {
		t.Errorf("stable %+v, want v2", got)
	}
}

func TestReclaimRefusals(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	if _, err := h.e.Reclaim(ctx, alice, ReclaimRequest{App: "nope", Env: ""}); CodeOf(err) != CodeNotFound {
		t.Errorf("unknown app: %v", err)
	}
	if _, err := h.e.Reclaim(ctx, alice, ReclaimRequest{App: "resizer", Env: "moon"}); CodeOf(err) != CodeNotFound {
		t.Errorf("unknown env: %v", err)
	}
	if _, err := h.e.Reclaim(ctx, alice, ReclaimRequest{App: "resizer", Env: ""}); CodeOf(err) != CodeNotFound || !strings.Contains(err.Error(), "runs nothing yet") {
		t.Errorf("nothing deployed: %v", err)
	}
	h.stableAt("v1")
	// Like scale, a lock does not block it: no version changes.
	if err := h.e.Lock(ctx, alice, LockRequest{App: "resizer", Env: "", Reason: "freeze"}); err != nil {
		t.Fatal(err)
	}
	if _, err := h.e.Reclaim(ctx, alice, ReclaimRequest{App: "resizer", Env: ""}); err != nil {
		t.Errorf("reclaim while locked: %v", err)
	}

	// A runtime without server-side apply (the local one) cannot do it.
	local := struct{ runtime.Runtime }{h.rt}
	e, err := New(Config{Store: h.store, Apps: h.apps, Runtime: local, Router: h.router, Metrics: h.metrics, Clock: h.clock})
	if err != nil {
		t.Fatal(err)
	}
	_, err = e.Reclaim(ctx, alice, ReclaimRequest{App: "resizer", Env: ""})
	if CodeOf(err) != CodeInvalid || err.Error() != "reclaim is for runtimes with server-side apply; the local runtime has no hand edits" {
		t.Errorf("local runtime: %v (%s)", err, CodeOf(err))
	}

	denied := Config{Store: h.store, Apps: h.apps, Runtime: h.rt, Router: h.router, Metrics: h.metrics, Clock: h.clock,
		Authorize: func(ctx context.Context, a Actor, act Action, app, env string) error {
			if act == ActReclaim {
				return context.Canceled // any plain error: forbidden
			}
			return nil
		}}
	e, err = New(denied)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.Reclaim(ctx, alice, ReclaimRequest{App: "resizer", Env: ""}); CodeOf(err) != CodeDenied {
		t.Errorf("not authorized: %v", err)
	}
}
