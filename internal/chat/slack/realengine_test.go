package slack

import (
	"context"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shipteam/ship/internal/analysis"
	"github.com/shipteam/ship/internal/authz"
	"github.com/shipteam/ship/internal/engine"
	"github.com/shipteam/ship/internal/release"
	"github.com/shipteam/ship/internal/runtime"
	"github.com/shipteam/ship/internal/spec"
	"github.com/shipteam/ship/internal/store"
)

// Tiny stand-ins for where instances run and who gets traffic; the real
// adapters have their own tests. Instances are ready as soon as applied.
type readyRuntime struct {
	mu     sync.Mutex
	tracks map[runtime.Track]runtime.TrackStatus
}

func (r *readyRuntime) Apply(_ context.Context, _ spec.App, _ string, t runtime.Track, w runtime.Want) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.tracks[t] = runtime.TrackStatus{Track: t, Version: w.Version, Desired: w.Replicas, Ready: w.Replicas}
	return nil
}

func (r *readyRuntime) Status(context.Context, spec.App, string) (map[runtime.Track]runtime.TrackStatus, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[runtime.Track]runtime.TrackStatus{}
	for _, t := range runtime.Tracks {
		ts := r.tracks[t]
		ts.Track = t
		out[t] = ts
	}
	return out, nil
}

func (r *readyRuntime) Remove(_ context.Context, _ spec.App, _ string, t runtime.Track) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.tracks[t] = runtime.TrackStatus{Track: t}
	return nil
}

type weightRouter struct {
	mu sync.Mutex
	w  release.Weight
}

func (r *weightRouter) SetWeight(_ context.Context, _ spec.App, _ string, w release.Weight) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.w = w
	return nil
}

func (r *weightRouter) Weight(context.Context, spec.App, string) (release.Weight, string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.w, "127.0.0.1:18080", nil
}

// healthyTraffic reports ever-growing error-free traffic on both tracks.
type healthyTraffic struct {
	mu sync.Mutex
	n  int64
}

func (m *healthyTraffic) Sample(context.Context, string, string) (analysis.Sample, analysis.Sample, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.n += 1000
	b := []time.Duration{10 * time.Millisecond, 100 * time.Millisecond}
	return analysis.Sample{Requests: m.n * 99, Bounds: b, Counts: []int64{m.n * 99, m.n * 99}},
		analysis.Sample{Requests: m.n, Bounds: b, Counts: []int64{m.n, m.n}}, nil
}

type oneApp map[string]spec.App

func (c oneApp) Get(name string) (spec.App, bool) { a, ok := c[name]; return a, ok }
func (c oneApp) All() []spec.App {
	var out []spec.App
	for _, a := range c {
		out = append(out, a)
	}
	return out
}

// realPolicies holds the policy of each real engine a test made, so the
// harness can let its bot resolve the policy's Slack groups.
var realPolicies sync.Map // *engine.Engine -> *authz.Policy

func newRealEngine(t *testing.T) *engine.Engine {
	e, _ := newRealEngineWithRouter(t)
	return e
}

func newRealEngineWithRouter(t *testing.T) (*engine.Engine, *weightRouter) {
	t.Helper()
	ctx := context.Background()
	st, err := store.Open(ctx, filepath.Join(t.TempDir(), "ship.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	app := spec.App{
		Name: "resizer", Kind: spec.KindWeb, Replicas: 2, Environments: []string{"production"},
		Strategy: spec.Strategy{Type: spec.StrategyCanary, StepTimeout: spec.Duration(time.Minute), Steps: []spec.Step{
			{Weight: 100, Pause: spec.Duration(time.Second)}, {Weight: 10000},
		}},
		Analysis: spec.Analysis{MaxErrorRate: 0.05, MinRequests: 20, Interval: spec.Duration(100 * time.Millisecond)},
	}
	router := &weightRouter{}
	// The engine decides permissions, as in ship serve: the harness's
	// default grants, groups resolved by the bot (see realPolicies).
	pol := testPolicy(t, Config{Grants: defaultGrants()}, authz.Grant{Role: authz.RoleAdmin, Users: []authz.Identity{"token:admin"}})
	e, err := engine.New(engine.Config{
		Authorize: authorizer(pol),
		Store:     st, Apps: oneApp{"resizer": app},
		Runtime: &readyRuntime{tracks: map[runtime.Track]runtime.TrackStatus{}}, Router: router,
		Metrics: &healthyTraffic{}, Tick: 20 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	realPolicies.Store(e, pol)
	t.Cleanup(func() { realPolicies.Delete(e) })
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); _ = e.Run(runCtx) }()
	t.Cleanup(func() { cancel(); <-done })
	// A first stable version, as `ship deploy resizer v1 --rolling` would.
	r, err := e.Deploy(ctx, engine.Actor{ID: "token:admin", Name: "admin", Source: release.SourceCLI}, engine.DeployRequest{App: "resizer", Version: "v1", Rolling: true})
	if err != nil {
		t.Fatal(err)
	}
	waitState(t, e, r.ID, release.Succeeded)
	return e, router
}

func waitState(t *testing.T, e Engine, id int64, want release.State) release.Release {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		r, err := e.Release(context.Background(), engine.System, id)
		if err == nil && r.State == want {
			return r
		}
		if time.Now().After(deadline) {
			t.Fatalf("release #%d is %s (%s, err %v), want %s", id, r.State, r.Reason, err, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestRealEngineCanaryPromotedFromSlackAndRefusedPress(t *testing.T) {
	e := newRealEngine(t)
	h := newHarness(t, e, nil)

	_, reply, respURL := h.slash(alice, testChannel, "/deploy", "resizer v2 --canary 1%")
	if !strings.Contains(reply.Text, "On it: deploying resizer v2 to production as a 1% canary") {
		t.Fatalf("reply = %q", reply.Text)
	}
	h.waitCalls("deploy result", func(cs []slackCall) bool {
		return hasText(responsesTo(cs, respURL), "", "Release #2: resizer v2 → production started")
	})
	waitState(t, e, 2, release.Paused)
	h.waitCalls("paused message", func(cs []slackCall) bool {
		m := lastReleaseMessage(cs, "2")
		return strings.Contains(m.Text(), "paused at 1%") && strings.Contains(m.Blocks(), ActionPromote)
	})

	// mallory may not promote: nothing happens but an explanation.
	_, pressURL := h.press(mallory, testChannel, ActionPromote, "resizer", "production", 2)
	h.waitCalls("refusal", func(cs []slackCall) bool {
		return hasText(responsesTo(cs, pressURL), "", "You may not promote resizer in production")
	})
	if r, _ := e.Release(context.Background(), engine.System, 2); r.State != release.Paused {
		t.Fatalf("after a refused press the release is %s", r.State)
	}

	code, _ := h.press(alice, testChannel, ActionPromote, "resizer", "production", 2)
	if code != http.StatusOK {
		t.Fatalf("press: %d", code)
	}
	r := waitState(t, e, 2, release.Succeeded)
	h.waitCalls("succeeded message", func(cs []slackCall) bool {
		m := lastReleaseMessage(cs, "2")
		return strings.Contains(m.Text(), "succeeded") && strings.Contains(m.Blocks(), "Promote pressed by alice")
	})
	if r.Actor != "slack:UALICE (alice)" || r.Source != release.SourceSlack {
		t.Fatalf("release actor %q source %q", r.Actor, r.Source)
	}
	// The engine's own history names the Slack user who pressed Promote.
	evs, err := e.Events(context.Background(), engine.System, engine.EventQuery{ReleaseID: 2})
	if err != nil {
		t.Fatal(err)
	}
	var promotedBy string
	for _, ev := range evs {
		if strings.Contains(string(ev.Type), "promot") && ev.Actor != "" {
			promotedBy = ev.Actor
		}
	}
	if promotedBy != "slack:UALICE (alice)" {
		t.Fatalf("promote recorded as by %q; events: %+v", promotedBy, evs)
	}

	// Scaling is announced in the app's channel with the Slack user's name.
	_, reply, _ = h.slash(olga, testChannel, "/ship", "scale resizer 3")
	if !strings.Contains(reply.Text, "On it: scaling resizer in production to 3") {
		t.Fatalf("scale reply = %q", reply.Text)
	}
	h.waitCalls("scale announced", func(cs []slackCall) bool {
		return hasText(cs, "chat.postMessage", "olga via slack scaled resizer/production stable to 3 instances")
	})
}

func TestRealEngineCanaryAbortedFromButton(t *testing.T) {
	e, router := newRealEngineWithRouter(t)
	h := newHarness(t, e, nil)
	h.slash(alice, testChannel, "/deploy", "resizer v2 --canary 5%")
	waitState(t, e, 2, release.Paused)
	h.waitCalls("paused message", func(cs []slackCall) bool {
		return strings.Contains(lastReleaseMessage(cs, "2").Text(), "paused at 5%")
	})
	router.mu.Lock()
	w := router.w
	router.mu.Unlock()
	if w != 500 {
		t.Fatalf("canary weight %v before abort, want 5", w)
	}
	h.press(bob, testChannel, ActionAbort, "resizer", "production", 2)
	r := waitState(t, e, 2, release.Aborted)
	h.waitCalls("aborted message", func(cs []slackCall) bool {
		m := lastReleaseMessage(cs, "2")
		return strings.Contains(m.Text(), "aborted") && strings.Contains(m.Blocks(), "Abort pressed by bob") &&
			!strings.Contains(m.Blocks(), ActionPromote)
	})
	if !strings.Contains(r.Reason, "bob") {
		t.Fatalf("abort reason %q does not name bob", r.Reason)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		router.mu.Lock()
		w = router.w
		router.mu.Unlock()
		if w == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("canary weight still %v after abort", w)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
