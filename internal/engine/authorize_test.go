package engine

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/shipteam/ship/internal/release"
)

// stagingOnly lets token:alice deploy and read resizer in staging only,
// and everyone read production; it refuses with a sentence as a policy
// does. Calls records every question asked.
type stagingOnly struct{ calls []string }

func (s *stagingOnly) authorize(_ context.Context, a Actor, act Action, app, env string) error {
	s.calls = append(s.calls, a.ID+" "+string(act)+" "+app+"/"+env)
	if a.ID == "token:alice" && env == "staging" {
		return nil
	}
	if act == ActRead && env == "production" {
		return nil
	}
	return errors.New(a.ID + " may not " + string(act) + " " + app + " in " + env + ": their roles grant staging only")
}

func authorizedEngine(t *testing.T) (*harness, *Engine, *stagingOnly) {
	t.Helper()
	h := newHarness(t)
	pol := &stagingOnly{}
	e, err := New(Config{Store: h.store, Apps: h.apps, Runtime: h.rt, Router: h.router, Metrics: h.metrics, Clock: h.clock,
		Authorize: pol.authorize})
	if err != nil {
		t.Fatal(err)
	}
	return h, e, pol
}

var tokenAlice = Actor{ID: "token:alice", Name: "alice", Source: release.SourceCLI}

func TestARefusalIsADeniedErrorAndAStoredPublishedEvent(t *testing.T) {
	_, e, _ := authorizedEngine(t)
	ctx := context.Background()
	live, stop := e.Subscribe()
	defer stop()
	_, err := e.Deploy(ctx, tokenAlice, DeployRequest{App: "resizer", Env: "production", Version: "v2"})
	var ee *Error
	if !errors.As(err, &ee) || ee.Code != CodeDenied || ee.Message != "token:alice may not deploy resizer in production: their roles grant staging only" {
		t.Fatalf("deploy to production: %#v", err)
	}
	ev := <-live
	if ev.Type != EventDenied || ev.App != "resizer" || ev.Env != "production" || ev.Actor != "alice" || ev.Message != ee.Message ||
		ev.Data.Action != "deploy" || ev.Data.Identity != "token:alice" || ev.Data.Source != "cli" || ev.ID == 0 {
		t.Fatalf("published %+v", ev)
	}
	evs, err := e.Events(ctx, System, EventQuery{App: "resizer"})
	if err != nil || len(evs) != 1 || evs[0].ID != ev.ID {
		t.Fatalf("stored %+v %v", evs, err)
	}
	if rs, _ := e.History(ctx, System, "resizer", "production", 0); len(rs) != 0 {
		t.Fatalf("a refused deploy made a release: %+v", rs)
	}
}

func TestTheEnvironmentIsResolvedBeforeTheQuestionIsAsked(t *testing.T) {
	_, e, pol := authorizedEngine(t)
	// resizer's first environment is production.
	env, err := e.Allowed(context.Background(), tokenAlice, ActScale, "resizer", "")
	if env != "production" || CodeOf(err) != CodeDenied {
		t.Fatalf("Allowed = %q, %v", env, err)
	}
	if env, err := e.Allowed(context.Background(), tokenAlice, ActDeploy, "resizer", "staging"); env != "staging" || err != nil {
		t.Fatalf("Allowed staging = %q, %v", env, err)
	}
	if _, err := e.Allowed(context.Background(), tokenAlice, ActDeploy, "nope", ""); CodeOf(err) != CodeNotFound {
		t.Fatalf("unknown app: %v", err)
	}
	if got := strings.Join(pol.calls, "|"); got != "token:alice scale resizer/production|token:alice deploy resizer/staging" {
		t.Fatalf("asked %s", got)
	}
}

func TestReadsAreAuthorizedAndListsLeaveOutWhatMayNotBeRead(t *testing.T) {
	_, e, _ := authorizedEngine(t)
	ctx := context.Background()
	bob := Actor{ID: "token:bob", Name: "bob"}
	// bob may read production only; alice both.
	if _, err := e.Status(ctx, bob, "resizer", "staging"); CodeOf(err) != CodeDenied {
		t.Fatalf("bob's status of staging: %v", err)
	}
	if _, err := e.Status(ctx, bob, "resizer", ""); err != nil {
		t.Fatalf("bob's status of production: %v", err)
	}
	all, err := e.List(ctx, bob)
	if err != nil || len(all) != 1 || all[0].Env != "production" {
		t.Fatalf("bob's list %+v %v", all, err)
	}
	if _, err := e.History(ctx, bob, "resizer", "staging", 0); CodeOf(err) != CodeDenied {
		t.Fatalf("bob's history of staging: %v", err)
	}
	if _, err := e.Logs(ctx, bob, "resizer", "staging", "", 1); CodeOf(err) != CodeDenied {
		t.Fatalf("bob's logs of staging: %v", err)
	}
	r, err := e.Deploy(ctx, tokenAlice, DeployRequest{App: "resizer", Env: "staging", Version: "v1", Rolling: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.Release(ctx, bob, r.ID); CodeOf(err) != CodeDenied {
		t.Fatalf("bob reading a staging release: %v", err)
	}
	if got, err := e.Release(ctx, tokenAlice, r.ID); err != nil || got.ID != r.ID {
		t.Fatalf("alice reading her release: %+v %v", got, err)
	}
	// All events: bob sees production's (his own refusals), not staging's.
	evs, err := e.Events(ctx, bob, EventQuery{})
	if err != nil {
		t.Fatal(err)
	}
	for _, ev := range evs {
		if ev.Env == "staging" {
			t.Fatalf("bob sees a staging event: %+v", ev)
		}
	}
	if _, err := e.Events(ctx, bob, EventQuery{App: "resizer", Env: "staging"}); CodeOf(err) != CodeDenied {
		t.Fatalf("bob's events of staging: %v", err)
	}
	keep := e.ReadFilter(bob)
	if keep(ctx, release.Event{App: "resizer", Env: "staging"}) || !keep(ctx, release.Event{App: "resizer", Env: "production"}) {
		t.Fatal("ReadFilter disagrees with the policy")
	}
}

func TestSystemMayReadButNotChange(t *testing.T) {
	_, e, pol := authorizedEngine(t)
	ctx := context.Background()
	if _, err := e.Status(ctx, System, "resizer", "staging"); err != nil {
		t.Fatalf("System status: %v", err)
	}
	if err := e.Scale(ctx, System, ScaleRequest{App: "resizer", Env: "staging", Replicas: Replicas(3)}); CodeOf(err) != CodeDenied {
		t.Fatalf("System scale: %v", err)
	}
	if len(pol.calls) != 0 {
		t.Fatalf("System was put to the policy: %v", pol.calls)
	}
}
