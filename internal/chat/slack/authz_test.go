package slack

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/shipteam/ship/internal/engine"
	"github.com/shipteam/ship/internal/release"
)

// deniedEvents are the access.denied events a real engine recorded.
func deniedEvents(t *testing.T, e *engine.Engine) []release.Event {
	t.Helper()
	evs, err := e.Events(context.Background(), engine.System, engine.EventQuery{})
	if err != nil {
		t.Fatal(err)
	}
	var out []release.Event
	for _, ev := range evs {
		if ev.Type == engine.EventDenied {
			out = append(out, ev)
		}
	}
	return out
}

// A signed slash command from a user without a grant is refused by the
// engine (the bot holds no grants), told at once, and recorded as an
// access.denied event naming the Slack identity.
func TestSlackRefusalIsTheEnginesAndIsRecorded(t *testing.T) {
	h := newHarness(t, nil, nil)
	_, reply, _ := h.slash(mallory, testChannel, "/ship", "scale resizer 5")
	if reply.ResponseType != "ephemeral" || !strings.Contains(reply.Text, "You may not scale resizer in production: no grant gives you scale; roles that may: operator, maintainer, admin") ||
		!strings.Contains(reply.Text, "<!subteam^SOPS>") {
		t.Fatalf("reply %+v", reply)
	}
	den := deniedEvents(t, h.te.Engine)
	if len(den) != 1 || den[0].App != "resizer" || den[0].Env != "production" || den[0].Data.Identity != "slack:UMALLORY" ||
		den[0].Data.Action != "scale" || den[0].Actor != "slack:UMALLORY (mallory)" ||
		!strings.HasPrefix(den[0].Message, "slack:UMALLORY may not scale resizer in production") {
		t.Fatalf("access.denied events %+v", den)
	}
	if h.bot.Stats().Refused != 1 {
		t.Fatalf("Refused = %d", h.bot.Stats().Refused)
	}
	// A member of SOPS (operator on resizer) may.
	_, reply, _ = h.slash(olga, testChannel, "/ship", "scale resizer 5")
	if !strings.Contains(reply.Text, "On it: scaling resizer in production to 5") {
		t.Fatalf("olga: %+v", reply)
	}
}

// When Slack cannot say who is in a group, the answer is no, with a
// sentence saying to try again: never yes.
func TestGroupLookupFailureDeniesAndSaysTryAgain(t *testing.T) {
	h := newHarness(t, nil, func(c *Config) { c.MaxAttempts = 1 })
	h.slack.SetDown(true)
	_, reply, _ := h.slash(olga, testChannel, "/ship", "scale resizer 5")
	h.slack.SetDown(false)
	if !strings.Contains(reply.Text, "You may not scale resizer in production: could not check your user groups, try again") {
		t.Fatalf("reply %+v", reply)
	}
	st, err := h.te.Engine.Status(context.Background(), engine.System, "resizer", "production")
	if err != nil || st.Stable.Desired == 5 {
		t.Fatalf("scaled anyway: %+v %v", st, err)
	}
}

// A Mattermost request proves only "some Mattermost user": it is a
// Mattermost identity, never gets the grants of the Slack user whose ID it
// claims, and may not press Slack's buttons.
func TestMattermostNeverGetsSlackGrantsNorPressesButtons(t *testing.T) {
	h := newHarness(t, nil, func(c *Config) { c.MattermostToken = "mm-secret-token" })
	// UALICE is a Slack deployer; the same ID from Mattermost is nobody.
	form := url.Values{"token": {"mm-secret-token"}, "channel_id": {testChannel}, "user_id": {"UALICE"}, "user_name": {"alice"},
		"command": {"/deploy"}, "text": {"resizer v2"}, "response_url": {h.slack.ResponseURL("mm")}}
	resp, err := http.PostForm(h.srv.URL+"/slack/commands", form)
	if err != nil {
		t.Fatal(err)
	}
	b := new(strings.Builder)
	_, _ = copyN(b, resp)
	resp.Body.Close()
	if !strings.Contains(b.String(), "You may not deploy resizer in production") {
		t.Fatalf("mattermost UALICE: %s", b)
	}
	den := deniedEvents(t, h.te.Engine)
	if len(den) != 1 || den[0].Data.Identity != "mattermost:UALICE" || den[0].Actor != "mattermost:UALICE (alice)" {
		t.Fatalf("recorded as %+v", den)
	}
	// A button press with the Mattermost token instead of Slack's signature.
	press := url.Values{"token": {"mm-secret-token"}, "payload": {pressPayload(alice, testChannel, ActionAbort,
		buttonValue{App: "resizer", Env: "production", Release: 1}.encode(), h.slack.ResponseURL("p"))}}
	resp, err = http.PostForm(h.srv.URL+"/slack/interactions", press)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("press with the Mattermost token: %d, want 401", resp.StatusCode)
	}
	if !strings.Contains(h.logs.String(), "button presses are Slack-only") {
		t.Fatal("refusal not logged")
	}
}
