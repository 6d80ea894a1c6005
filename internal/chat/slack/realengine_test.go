package slack

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/shipteam/ship/internal/engine"
	"github.com/shipteam/ship/internal/eventually"
	"github.com/shipteam/ship/internal/release"
)

// Every harness drives the real engine now (see testEngine); these two
// follow a canary end to end and check what the engine itself recorded.

func TestRealEngineCanaryPromotedFromSlackAndRefusedPress(t *testing.T) {
	h := newHarness(t, nil, nil)
	e := h.te

	_, reply, respURL := h.slash(alice, testChannel, "/deploy", "resizer v2 --canary 1%")
	if !strings.Contains(reply.Text, "On it: deploying resizer v2 to production as a 1% canary") {
		t.Fatalf("reply = %q", reply.Text)
	}
	h.waitCalls("deploy result", func(cs []slackCall) bool {
		return hasText(responsesTo(cs, respURL), "", "Release #3: resizer v2 → production started")
	})
	e.WaitState(3, release.Paused)
	h.waitCalls("paused message", func(cs []slackCall) bool {
		m := lastReleaseMessage(cs, "3")
		return strings.Contains(m.Text(), "paused at 1%") && strings.Contains(m.Blocks(), ActionPromote)
	})

	// mallory may not promote: nothing happens but an explanation.
	_, pressURL := h.press(mallory, testChannel, ActionPromote, "resizer", "production", 3)
	h.waitCalls("refusal", func(cs []slackCall) bool {
		return hasText(responsesTo(cs, pressURL), "", "You may not promote resizer in production")
	})
	if r, _ := e.Engine.Release(context.Background(), engine.System, 3); r.State != release.Paused {
		t.Fatalf("after a refused press the release is %s", r.State)
	}

	code, _ := h.press(alice, testChannel, ActionPromote, "resizer", "production", 3)
	if code != http.StatusOK {
		t.Fatalf("press: %d", code)
	}
	r := e.WaitState(3, release.Succeeded)
	h.waitCalls("succeeded message", func(cs []slackCall) bool {
		m := lastReleaseMessage(cs, "3")
		return strings.Contains(m.Text(), "succeeded") && strings.Contains(m.Blocks(), "Promote pressed by alice")
	})
	if r.Actor != "slack:UALICE (alice)" || r.Source != release.SourceSlack {
		t.Fatalf("release actor %q source %q", r.Actor, r.Source)
	}
	// The engine's own history names the Slack user who pressed Promote.
	evs, err := e.Engine.Events(context.Background(), engine.System, engine.EventQuery{ReleaseID: 3})
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
	h := newHarness(t, nil, nil)
	e := h.te
	h.slash(alice, testChannel, "/deploy", "resizer v2 --canary 5%")
	e.WaitState(3, release.Paused)
	h.waitCalls("paused message", func(cs []slackCall) bool {
		return strings.Contains(lastReleaseMessage(cs, "3").Text(), "paused at 5%")
	})
	if w := e.Router.Current("resizer", "production"); w != 500 {
		t.Fatalf("canary weight %v before abort, want 5", w)
	}
	h.press(bob, testChannel, ActionAbort, "resizer", "production", 3)
	r := e.WaitState(3, release.Aborted)
	h.waitCalls("aborted message", func(cs []slackCall) bool {
		m := lastReleaseMessage(cs, "3")
		return strings.Contains(m.Text(), "aborted") && strings.Contains(m.Blocks(), "Abort pressed by bob") &&
			!strings.Contains(m.Blocks(), ActionPromote)
	})
	if !strings.Contains(r.Reason, "bob") {
		t.Fatalf("abort reason %q does not name bob", r.Reason)
	}
	eventually.True(t, 5*time.Second, "canary weight 0 after the abort", func() bool { return e.Router.Current("resizer", "production") == 0 })
}
