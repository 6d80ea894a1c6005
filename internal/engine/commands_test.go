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
)

func TestFirstDeployIsRollingAndRecordsStable(t *testing.T) {
	h := newHarness(t)
	r := h.deploy(DeployRequest{Version: "v1"})
	if r.Strategy != "rolling" || r.State != release.Pending {
		t.Fatalf("first deploy: strategy %s state %s, want rolling pending", r.Strategy, r.State)
	}
	r = h.until(r.ID, release.Succeeded, time.Second, 0, 0, 10)
	if s := h.rt.Get("resizer", "production", runtime.Stable); s.Version != "v1" || s.Desired != 2 {
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
	r := h.deploy(DeployRequest{Version: "v2", Canary: 100})
	h.until(r.ID, release.Paused, time.Second, 0, 0, 5)
	bob := Actor{Name: "bob", Source: release.SourceCLI}
	if err := h.e.Lock(ctx, bob, LockRequest{App: "resizer", Env: "", Reason: "db migration"}); err != nil {
		t.Fatal(err)
	}
	_, err := h.e.Deploy(ctx, alice, DeployRequest{App: "resizer", Version: "v3"})
	if CodeOf(err) != CodeLocked || !strings.Contains(err.Error(), `locked by bob: "db migration"`) {
		t.Fatalf("deploy while locked: %v", err)
	}
	if _, err := h.e.Rollback(ctx, alice, RollbackRequest{App: "resizer", Env: "", To: ""}); CodeOf(err) != CodeLocked {
		t.Fatalf("rollback while locked: %v", err)
	}
	if err := h.e.Scale(ctx, alice, ScaleRequest{App: "resizer", Env: "", Replicas: Replicas(3)}); err != nil {
		t.Fatalf("scale while locked: %v", err)
	}
	if _, err := h.e.Abort(ctx, alice, AbortRequest{App: "resizer", Env: "", Reason: ""}); err != nil {
		t.Fatalf("abort while locked: %v", err)
	}
	st, _ := h.e.Status(ctx, System, "resizer", "")
	if st.Lock == nil || st.Lock.Actor != "bob" || st.Lock.Reason != "db migration" {
		t.Fatalf("status lock %+v", st.Lock)
	}
	if err := h.e.Unlock(ctx, bob, UnlockRequest{App: "resizer", Env: ""}); err != nil {
		t.Fatal(err)
	}
	if err := h.e.Unlock(ctx, bob, UnlockRequest{App: "resizer", Env: ""}); CodeOf(err) != CodeNotFound {
		t.Fatalf("second unlock: %v", err)
	}
	h.deploy(DeployRequest{Version: "v3"})
	evs, _ := h.e.Events(ctx, System, EventQuery{App: "resizer"})
	var types []string
	for _, ev := range evs {
		if ev.Type.IsApp() {
			types = append(types, string(ev.Type)+":"+ev.Actor)
		}
	}
	if want := []string{"app.locked:bob", "app.scaled:alice", "app.unlocked:bob"}; !slices.Equal(types, want) {
		t.Fatalf("app events %v, want %v", types, want)
	}
}

func TestRollbackReturnsToThePreviousSucceededVersion(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	if _, err := h.e.Rollback(ctx, alice, RollbackRequest{App: "resizer", Env: "", To: ""}); CodeOf(err) != CodeNotFound {
		t.Fatalf("rollback with no history: %v", err)
	}
	h.stableAt("v1")
	if _, err := h.e.Rollback(ctx, alice, RollbackRequest{App: "resizer", Env: "", To: ""}); CodeOf(err) != CodeNotFound {
		t.Fatalf("rollback with one release: %v", err)
	}
	r := h.deploy(DeployRequest{Version: "v2", Rolling: true})
	h.until(r.ID, release.Succeeded, time.Second, 0, 0, 10)
	r = h.deploy(DeployRequest{Version: "v3", Rolling: true})
	h.until(r.ID, release.Succeeded, time.Second, 0, 0, 10)

	rb, err := h.e.Rollback(ctx, alice, RollbackRequest{App: "resizer", Env: "", To: ""})
	if err != nil {
		t.Fatal(err)
	}
	if rb.Kind != release.KindRollback || rb.Version != "v2" || rb.FromVersion != "v3" || rb.Strategy != "rolling" {
		t.Fatalf("rollback release %+v", rb)
	}
	h.until(rb.ID, release.Succeeded, time.Second, 0, 0, 10)
	if s := h.rt.Get("resizer", "production", runtime.Stable); s.Version != "v2" {
		t.Fatalf("stable %+v", s)
	}
	// --to an older known-good version; an unknown one is refused.
	if _, err := h.e.Rollback(ctx, alice, RollbackRequest{App: "resizer", Env: "", To: "v9"}); CodeOf(err) != CodeNotFound {
		t.Fatalf("rollback to unknown: %v", err)
	}
	rb, err = h.e.Rollback(ctx, alice, RollbackRequest{App: "resizer", Env: "", To: "v1"})
	if err != nil {
		t.Fatal(err)
	}
	h.until(rb.ID, release.Succeeded, time.Second, 0, 0, 10)
	if s := h.rt.Get("resizer", "production", runtime.Stable); s.Version != "v1" {
		t.Fatalf("stable %+v", s)
	}
	hist, _ := h.e.History(ctx, System, "resizer", "", 0)
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
	r := h.deploy(DeployRequest{Version: "v2", Canary: 2000})
	h.until(r.ID, release.Paused, time.Second, 0, 0, 5)
	rb, err := h.e.Rollback(ctx, alice, RollbackRequest{App: "resizer", Env: "", To: ""})
	if err != nil {
		t.Fatal(err)
	}
	if old := h.release(r.ID); old.State != release.RolledBack || !strings.Contains(old.Reason, "rolled back to v1 by alice") {
		t.Fatalf("canary release %s %q", old.State, old.Reason)
	}
	if w := h.router.Current("resizer", "production"); w != 0 {
		t.Fatalf("weight %v right after rollback", w)
	}
	h.until(rb.ID, release.Succeeded, time.Second, 0, 0, 10)
	if c := h.rt.Get("resizer", "production", runtime.Canary); c.Version != "" {
		t.Fatalf("canary left: %+v", c)
	}
	if s := h.rt.Get("resizer", "production", runtime.Stable); s.Version != "v1" {
		t.Fatalf("stable %+v", s)
	}
}

func TestScaleChangesStableAndCanaryKeepsItsShare(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	h.stableAt("v1")
	r := h.deploy(DeployRequest{Version: "v2", Canary: 5000})
	h.until(r.ID, release.Paused, time.Second, 0, 0, 5)
	if c := h.rt.Get("resizer", "production", runtime.Canary); c.Desired != 1 {
		t.Fatalf("canary %+v, want 1 (50%% of 2)", c)
	}
	if err := h.e.Scale(ctx, alice, ScaleRequest{App: "resizer", Env: "", Replicas: Replicas(6)}); err != nil {
		t.Fatal(err)
	}
	if s := h.rt.Get("resizer", "production", runtime.Stable); s.Version != "v1" || s.Desired != 6 {
		t.Fatalf("stable %+v, want v1×6 at once", s)
	}
	h.step(time.Second, 0, 0)
	if c := h.rt.Get("resizer", "production", runtime.Canary); c.Desired != 3 {
		t.Fatalf("canary %+v, want 3 (50%% of 6)", c)
	}
	if err := h.e.Scale(ctx, alice, ScaleRequest{App: "resizer", Env: "", Replicas: Replicas(0)}); CodeOf(err) != CodeConflict {
		t.Fatalf("scale 0 during a canary: %v", err)
	}
	if err := h.e.Scale(ctx, alice, ScaleRequest{App: "resizer", Env: "", Replicas: Replicas(-1)}); CodeOf(err) != CodeInvalid {
		t.Fatalf("scale -1: %v", err)
	}
	if _, err := h.e.Promote(ctx, alice, PromoteRequest{App: "resizer", Env: ""}); err != nil {
		t.Fatal(err)
	}
	h.until(r.ID, release.Succeeded, time.Second, 0, 0, 10)
	if s := h.rt.Get("resizer", "production", runtime.Stable); s.Version != "v2" || s.Desired != 6 {
		t.Fatalf("stable after promote %+v, want v2×6", s)
	}
	if err := h.e.Scale(ctx, alice, ScaleRequest{App: "resizer", Env: "", Replicas: Replicas(0)}); err != nil {
		t.Fatalf("scale 0 when idle: %v", err)
	}
	if s := h.rt.Get("resizer", "production", runtime.Stable); s.Desired != 0 {
		t.Fatalf("stable %+v, want 0", s)
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
		{"canary 0.0 too big", DeployRequest{App: "resizer", Version: "v2", Canary: 10100}, CodeInvalid},
		{"negative canary", DeployRequest{App: "resizer", Version: "v2", Canary: -1}, CodeInvalid},
		{"canary and steps", DeployRequest{App: "resizer", Version: "v2", Canary: 100, Steps: []release.Weight{100}}, CodeInvalid},
		{"decreasing steps", DeployRequest{App: "resizer", Version: "v2", Steps: []release.Weight{1000, 100}}, CodeInvalid},
		{"rolling with canary", DeployRequest{App: "resizer", Version: "v2", Rolling: true, Canary: 100}, CodeInvalid},
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
	if rs, _ := h.e.History(context.Background(), System, "resizer", "", 0); len(rs) != 1 {
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
		if err := h.e.Lock(context.Background(), alice, LockRequest{App: "resizer", Env: "", Reason: "x"}); err != nil {
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
	r := h.deploy(DeployRequest{Version: "v2", Canary: 100})
	h.until(r.ID, release.Paused, time.Second, 0, 0, 5)
	st, err := h.e.Status(context.Background(), System, "resizer", "")
	if err != nil {
		t.Fatal(err)
	}
	if st.Env != "production" || st.Endpoint != "127.0.0.1:8080" || st.Stable.Version != "v1" || st.Stable.Ready != 2 ||
		st.Canary.Version != "v2" || st.Canary.Ready != 1 || st.Weight != 100 || st.Release == nil || st.Release.ID != r.ID {
		t.Fatalf("status %+v", st)
	}
	all, err := h.e.List(context.Background(), System)
	if err != nil || len(all) != 2 {
		t.Fatalf("list: %d %v", len(all), err)
	}
	h.rt.StatusErr = errors.New("runtime down")
	st, err = h.e.Status(context.Background(), System, "resizer", "")
	if err != nil || !strings.Contains(st.Note, "runtime down") || st.Stable.Version != "v1" {
		t.Fatalf("status with runtime down: %+v %v", st, err)
	}
	if _, err := h.e.Release(context.Background(), System, 999); CodeOf(err) != CodeNotFound {
		t.Fatalf("release 999: %v", err)
	}
	if _, err := h.e.Status(context.Background(), System, "nope", ""); CodeOf(err) != CodeNotFound {
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
	var _ = release.ErrNotFound
}

// A refusal changes nothing; it is recorded only as access.denied events
// (authorize_test.go), with the authorizer's sentence as the message.
func TestAuthorizeRefusesWithForbiddenAndChangesNothing(t *testing.T) {
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
	if CodeOf(err) != CodeDenied || err.Error() != "not in the deployers group" {
		t.Fatalf("deploy by mallory: %v", err)
	}
	if err := h.e.Scale(ctx, mallory, ScaleRequest{App: "resizer", Env: "", Replicas: Replicas(5)}); CodeOf(err) != CodeDenied {
		t.Fatalf("scale by mallory: %v", err)
	}
	r := h.deploy(DeployRequest{Version: "v2", Canary: 100})
	if _, err := h.e.Abort(ctx, mallory, AbortRequest{App: "resizer", Env: "", Reason: ""}); CodeOf(err) != CodeDenied {
		t.Fatalf("abort by mallory: %v", err)
	}
	if got := h.release(r.ID); got.State != release.Pending {
		t.Fatalf("release %s after a refused abort", got.State)
	}
	if hist, _ := h.e.History(ctx, System, "resizer", "", 0); len(hist) != 2 {
		t.Fatalf("%d releases, want 2", len(hist))
	}
	if want := "mallory:deploy:resizer/production"; asked[0] != want {
		t.Fatalf("asked %v", asked)
	}
	evs, _ := h.e.Events(ctx, System, EventQuery{App: "resizer"})
	denied := 0
	for _, ev := range evs {
		if ev.Type == EventDenied {
			denied++
		}
	}
	if denied != 3 {
		t.Fatalf("%d access.denied events, want 3 (deploy, scale, abort)", denied)
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
	if _, err := h.e.Logs(ctx, System, "resizer", "", "", 10); CodeOf(err) != CodeInvalid {
		t.Fatalf("logs without a reader: %v", err)
	}
	logs := &fakeLogs{}
	h.e.cfg.Logs = logs
	lines, err := h.e.Logs(ctx, System, "resizer", "", "v2", 0)
	if err != nil || len(lines) != 1 || lines[0].Text != "hello" || logs.asked != "resizer/production v2 100" {
		t.Fatalf("logs %+v %v (asked %q)", lines, err, logs.asked)
	}
	if _, err := h.e.Logs(ctx, System, "nope", "", "", 1); CodeOf(err) != CodeNotFound {
		t.Fatalf("logs of unknown app: %v", err)
	}
	if _, err := h.e.Events(ctx, System, EventQuery{App: "nope"}); CodeOf(err) != CodeNotFound {
		t.Fatalf("events of unknown app: %v", err)
	}
}

// TestStableIsDoneOnlyWhenEveryInstanceTheRuntimeWantsIsReady: an
// autoscaler raised stable above the spec's replicas; a release replacing
// it is done when all of those run the new version, not when as many as
// the spec asks for do (the rest still run the old one).
func TestStableIsDoneOnlyWhenEveryInstanceTheRuntimeWantsIsReady(t *testing.T) {
	h := newHarness(t)
	h.stableAt("v1")
	h.rt.Mu.Lock()
	h.rt.Raise = map[string]int{"v2": 5}
	h.rt.Mu.Unlock()
	r := h.deploy(DeployRequest{Version: "v2", Rolling: true})
	for i := 0; i < 30 && !h.release(r.ID).State.Terminal(); i++ {
		h.rt.Mu.Lock()
		st := *h.rt.Track("resizer", "production", runtime.Stable)
		h.rt.Mu.Unlock()
		h.step(time.Second, 0, 0)
		if got := h.release(r.ID); got.State == release.Succeeded && st.Ready < 5 {
			t.Fatalf("succeeded with %d of 5 instances of v2 ready: %q", st.Ready, got.Reason)
		}
	}
	if got := h.release(r.ID); got.State != release.Succeeded {
		t.Fatalf("release %s: %q", got.State, got.Reason)
	}
}
