package slack

import (
	"context"
	"fmt"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/shipteam/ship/internal/authz"
	"github.com/shipteam/ship/internal/engine"
	"github.com/shipteam/ship/internal/eventually"
	"github.com/shipteam/ship/internal/release"
	rt "github.com/shipteam/ship/internal/runtime"
)

// releaseMessages returns the chat.postMessage/chat.update calls about release id.
func releaseMessages(calls []slackCall, id string) []slackCall {
	var out []slackCall
	for _, c := range calls {
		if (c.Method == "chat.postMessage" || c.Method == "chat.update") && c.Status == http.StatusOK &&
			strings.Contains(c.Text(), "release #"+id) {
			out = append(out, c)
		}
	}
	return out
}

func lastReleaseMessage(calls []slackCall, id string) slackCall {
	ms := releaseMessages(calls, id)
	if len(ms) == 0 {
		return slackCall{}
	}
	return ms[len(ms)-1]
}

func TestCanaryFromSlashCommandToPromotedByButton(t *testing.T) {
	h := newHarness(t, nil, nil)

	code, reply, respURL := h.slash(alice, testChannel, "/deploy", "resizer v2 --canary 1%")
	if code != http.StatusOK || reply.ResponseType != "ephemeral" || !strings.Contains(reply.Text, "deploying resizer v2 to production as a 1% canary") {
		t.Fatalf("ack = %d %+v", code, reply)
	}

	// One message in the app's channel, paused at 1% with the three buttons
	// and, once the engine has judged the canary, its analysis.
	h.waitCalls("paused release message", func(cs []slackCall) bool {
		m := lastReleaseMessage(cs, "3")
		return strings.Contains(m.Text(), "paused at 1%") && strings.Contains(m.Blocks(), "errors")
	})
	calls := h.slack.Calls("")
	msgs := releaseMessages(calls, "3")
	if msgs[0].Method != "chat.postMessage" || msgs[0].Form.Get("channel") != testChannel {
		t.Fatalf("first release message = %s to %s, want chat.postMessage to %s", msgs[0].Method, msgs[0].Form.Get("channel"), testChannel)
	}
	blocks := lastReleaseMessage(calls, "3").Blocks()
	for _, want := range []string{ActionPromote, ActionAbort, ActionRollback, `"style":"danger"`, `"confirm"`, `\"release\":3`, "Started by alice via slack", "canary v2: 1/1 ready", "errors"} {
		if !strings.Contains(blocks, want) {
			t.Errorf("paused message lacks %q: %s", want, blocks)
		}
	}
	// The deployer hears the outcome of the command through response_url.
	h.waitCalls("deploy result", func(cs []slackCall) bool {
		return hasText(responsesTo(cs, respURL), "", "Release #3: resizer v2 → production started")
	})

	code, _ = h.press(alice, testChannel, ActionPromote, "resizer", "production", 3)
	if code != http.StatusOK {
		t.Fatalf("press status %d", code)
	}
	h.waitCalls("succeeded message", func(cs []slackCall) bool {
		m := lastReleaseMessage(cs, "3")
		return strings.Contains(m.Text(), "succeeded") && strings.Contains(m.Blocks(), "Promote pressed by alice")
	})
	calls = h.slack.Calls("")
	final := lastReleaseMessage(calls, "3")
	if strings.Contains(final.Blocks(), ActionPromote) || !strings.Contains(final.Blocks(), ActionRollback) {
		t.Errorf("finished message should offer only Rollback: %s", final.Blocks())
	}
	// Updated in place: one post, then updates of that same message.
	msgs = releaseMessages(calls, "3")
	ts := msgs[0].Form.Get("ts")
	if ts == "" {
		ch, t0 := h.bot.notifier.messageOf(3)
		ts = t0
		if ch != testChannel {
			t.Fatalf("message channel = %q", ch)
		}
	}
	for _, m := range msgs[1:] {
		if m.Method != "chat.update" || m.Form.Get("ts") != ts {
			t.Fatalf("later message %s ts=%q, want chat.update of %q", m.Method, m.Form.Get("ts"), ts)
		}
	}
	want := []string{
		"deploy resizer production slack:UALICE (alice)",
		"promote resizer production slack:UALICE (alice)",
	}
	if got := h.te.calls(t); strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("engine calls = %q, want %q", got, want)
	}
	// The deployer was told about the pause and the outcome, within 5 uses.
	h.waitCalls("outcome to deployer", func(cs []slackCall) bool {
		return hasText(responsesTo(cs, respURL), "", "succeeded")
	})
	if n := len(responsesTo(h.slack.Calls(""), respURL)); n > 5 {
		t.Fatalf("response_url used %d times, Slack allows 5", n)
	}
}

func TestCanaryAbortedFromButton(t *testing.T) {
	h := newHarness(t, nil, nil)
	h.slash(alice, testChannel, "/deploy", "resizer v3 --canary 5%")
	h.waitCalls("paused", func(cs []slackCall) bool {
		return strings.Contains(lastReleaseMessage(cs, "3").Text(), "paused at 5%")
	})
	// bob may abort (role responder) though not deploy.
	h.press(bob, testChannel, ActionAbort, "resizer", "production", 3)
	h.waitCalls("aborted message", func(cs []slackCall) bool {
		m := lastReleaseMessage(cs, "3")
		return strings.Contains(m.Text(), "aborted") && strings.Contains(m.Blocks(), "Abort pressed by bob")
	})
	final := lastReleaseMessage(h.slack.Calls(""), "3")
	if strings.Contains(final.Blocks(), `"actions"`) {
		t.Errorf("aborted release still has buttons: %s", final.Blocks())
	}
	r, _ := h.eng.Release(context.Background(), engine.System, 3)
	if r.State != release.Aborted || r.Weight != 0 {
		t.Fatalf("release = %s at %v%%, want aborted at 0", r.State, r.Weight)
	}
	if calls := h.te.calls(t); len(calls) != 2 || calls[1] != "abort resizer production slack:UBOB (bob)" {
		t.Fatalf("engine calls = %q", calls)
	}
}

func TestPromoteWithoutPermissionOnlyExplains(t *testing.T) {
	h := newHarness(t, nil, nil)
	h.slash(alice, testChannel, "/deploy", "resizer v2 --canary 1%")
	h.waitCalls("paused", func(cs []slackCall) bool {
		return strings.Contains(lastReleaseMessage(cs, "3").Text(), "paused at 1%")
	})
	before := len(releaseMessages(h.slack.Calls(""), "3"))

	for _, u := range []user{mallory, bob} { // bob may abort, not promote
		_, respURL := h.press(u, testChannel, ActionPromote, "resizer", "production", 3)
		h.waitCalls("refusal for "+u.name, func(cs []slackCall) bool {
			return hasText(responsesTo(cs, respURL), "", "You may not promote resizer in production")
		})
		got := responsesTo(h.slack.Calls(""), respURL)[0]
		if got.JSON["response_type"] != "ephemeral" {
			t.Errorf("refusal to %s is not ephemeral: %v", u.name, got.JSON)
		}
	}
	if calls := h.te.calls(t); len(calls) != 1 {
		t.Fatalf("engine calls = %q, want only the deploy", calls)
	}
	if r, _ := h.eng.Release(context.Background(), engine.System, 3); r.State != release.Paused {
		t.Fatalf("release state %s, want still paused", r.State)
	}
	// Whatever the notifier still posts (it may redraw), the message says
	// nothing about the refused presses and the release is still paused.
	for _, m := range releaseMessages(h.slack.Calls(""), "3")[before-1:] {
		if !strings.Contains(m.Text(), "paused at 1%") || strings.Contains(m.Blocks(), "mallory") || strings.Contains(m.Blocks(), "pressed") {
			t.Fatalf("channel message changed by refused presses: %s %s", m.Text(), m.Blocks())
		}
	}
	if h.bot.Stats().Refused != 2 {
		t.Fatalf("Refused = %d, want 2", h.bot.Stats().Refused)
	}
	// A slash command is refused the same way, to that user only.
	_, reply, _ := h.slash(mallory, testChannel, "/deploy", "thumbs v9")
	if reply.ResponseType != "ephemeral" || !strings.Contains(reply.Text, "You may not deploy thumbs") {
		t.Fatalf("slash refusal = %+v", reply)
	}
}

func TestUserGroupGrantIsResolvedThroughUsergroupsListAndCached(t *testing.T) {
	h := newHarness(t, nil, nil)
	h.slack.SetGroup("SOPS", "UOLGA", "USOMEONE")
	_, reply, _ := h.slash(olga, testChannel, "/ship", "scale resizer 5")
	if !strings.Contains(reply.Text, "On it: scaling resizer in production to 5") {
		t.Fatalf("reply = %+v", reply)
	}
	_, reply, _ = h.slash(olga, testChannel, "/ship", `lock resizer --reason "black friday"`)
	if !strings.Contains(reply.Text, "On it") {
		t.Fatalf("reply = %+v", reply)
	}
	// olga's group role does not include deploy.
	_, reply, _ = h.slash(olga, testChannel, "/deploy", "resizer v2")
	if !strings.Contains(reply.Text, "You may not deploy resizer in production") || !strings.Contains(reply.Text, "roles that may: deployer") {
		t.Fatalf("reply = %+v", reply)
	}
	calls := h.waitCalls("scale and lock announced", func(cs []slackCall) bool {
		return hasText(cs, "chat.postMessage", "olga via slack scaled resizer/production stable to 5 instances") &&
			hasText(cs, "chat.postMessage", "olga via slack locked resizer/production: black friday")
	})
	if n := count(calls, "usergroups.users.list"); n != 1 {
		t.Fatalf("usergroups.users.list called %d times, want 1 (cached)", n)
	}
	want := []string{"scale resizer production slack:UOLGA (olga)", "lock resizer production slack:UOLGA (olga)"}
	if got := h.te.calls(t); strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("engine calls = %q", got)
	}
	// After the TTL the group is read again.
	h.advance(6 * time.Minute)
	h.slash(olga, testChannel, "/ship", "unlock resizer")
	h.waitCalls("group re-read", func(cs []slackCall) bool { return count(cs, "usergroups.users.list") == 2 })
}

func TestButtonOnFinishedReleaseAnswersEphemerally(t *testing.T) {
	h := newHarness(t, nil, nil)
	h.slash(alice, testChannel, "/deploy", "resizer v2 --canary 1%")
	h.waitCalls("paused", func(cs []slackCall) bool {
		return strings.Contains(lastReleaseMessage(cs, "3").Text(), "paused")
	})
	h.press(alice, testChannel, ActionAbort, "resizer", "production", 3)
	h.waitCalls("aborted", func(cs []slackCall) bool {
		return strings.Contains(lastReleaseMessage(cs, "3").Text(), "aborted")
	})
	for _, action := range []string{ActionPromote, ActionAbort, ActionRollback} {
		_, respURL := h.press(alice, testChannel, action, "resizer", "production", 3)
		h.waitCalls("stale press answer", func(cs []slackCall) bool {
			return hasText(responsesTo(cs, respURL), "", "already ended")
		})
	}
	if calls := h.te.calls(t); len(calls) != 2 {
		t.Fatalf("engine calls = %q, want deploy and one abort", calls)
	}
}

func TestRollbackButtonOnSucceededRelease(t *testing.T) {
	h := newHarness(t, nil, nil)
	h.slash(alice, testChannel, "/deploy", "resizer v2 --canary 1%")
	h.waitCalls("paused", func(cs []slackCall) bool { return strings.Contains(lastReleaseMessage(cs, "3").Text(), "paused") })
	h.press(alice, testChannel, ActionPromote, "resizer", "production", 3)
	h.waitCalls("succeeded", func(cs []slackCall) bool { return strings.Contains(lastReleaseMessage(cs, "3").Text(), "succeeded") })
	h.press(bob, testChannel, ActionRollback, "resizer", "production", 3)
	h.waitCalls("rollback release posted", func(cs []slackCall) bool {
		m := lastReleaseMessage(cs, "4")
		return strings.Contains(m.Text(), "resizer v1 → production") && strings.Contains(m.Text(), "succeeded")
	})
	if st, _ := h.eng.Status(context.Background(), engine.System, "resizer", ""); st.Stable.Version != "v1" {
		t.Fatalf("stable = %s after rollback, want v1", st.Stable.Version)
	}
	// Rollback from the now outdated message of release 1 is refused.
	_, respURL := h.press(alice, testChannel, ActionRollback, "resizer", "production", 3)
	h.waitCalls("outdated rollback refused", func(cs []slackCall) bool {
		return hasText(responsesTo(cs, respURL), "", "no longer the latest")
	})
}

func TestSlashErrorsAreEphemeralUsageNever5xx(t *testing.T) {
	h := newHarness(t, nil, nil)
	tests := []struct{ cmd, text, want string }{
		{"/ship", "frobnicate resizer", "/ship help"},
		{"/deploy", "resizer", "usage"},
		{"/deploy", "resizer v2 --canary lots", "usage"},
		{"/ship", "status nosuchapp", "unknown app"},
		{"/ship", "history nosuchapp", "unknown app"},
		{"/deploy", "nosuchapp v2", "unknown app"},
	}
	for _, tt := range tests {
		code, reply, _ := h.slash(alice, testChannel, tt.cmd, tt.text)
		if code != http.StatusOK || reply.ResponseType != "ephemeral" || !strings.Contains(strings.ToLower(reply.Text), strings.ToLower(tt.want)) {
			t.Errorf("%s %s = %d %q, want 200 ephemeral containing %q", tt.cmd, tt.text, code, reply.Text, tt.want)
		}
	}
	if calls := h.te.calls(t); len(calls) != 0 {
		t.Fatalf("engine calls = %q, want none", calls)
	}
}

func TestQuickReadsAnswerInline(t *testing.T) {
	h := newHarness(t, nil, nil)
	h.slash(alice, testChannel, "/deploy", "resizer v2 --canary 1%")
	h.waitCalls("paused", func(cs []slackCall) bool { return strings.Contains(lastReleaseMessage(cs, "3").Text(), "paused") })
	// The state is recorded before the router gets its weight: wait for it.
	eventually.True(t, 10*time.Second, "1% in force", func() bool { return h.te.Router.Current("resizer", "production") == 100 })
	for i := range 3 {
		h.te.Logs.Add("resizer", "production", rt.LogLine{Time: time.Unix(1764072000+int64(i), 0), Instance: "stable-0", Version: "v1", Stream: "stdout", Text: fmt.Sprintf("GET /resize 200 line %d", i)})
	}
	tests := []struct{ text, want string }{
		{"status resizer", "stable v1: 3/3 ready · canary v2: 1/1 ready · canary weight 1%"},
		{"status resizer", "release #3 v2 (canary held at 1% until promoted) by alice"},
		{"status", "*resizer* (production): stable v1, canary v2 at 1%"},
		{"apps", "*thumbs* (production): stable v1"},
		{"history resizer", "#3 v2 → production (deploy) by alice via slack"},
		{"help", "deploy APP VERSION"},
		{"help", "reclaim APP"},
		{"help reclaim", "usage: /ship reclaim APP [--env ENV]"},
		{"logs resizer -n 3", "Last 3 lines of resizer (only you see this):\n```"},
		{"logs resizer -n 3", "stable-0 v1 GET /resize 200 line 2```"},
	}
	for _, tt := range tests {
		start := time.Now()
		_, reply, _ := h.slash(alice, testChannel, "/ship", tt.text)
		if !strings.Contains(reply.Text, tt.want) {
			t.Errorf("/ship %s = %q, want it to contain %q", tt.text, reply.Text, tt.want)
		}
		if d := time.Since(start); d > 2500*time.Millisecond {
			t.Errorf("/ship %s took %s", tt.text, d)
		}
	}
}

func TestSlowEngineIsAckedWithinBudgetAndAnsweredThroughResponseURL(t *testing.T) {
	h := newHarness(t, nil, func(c *Config) { c.AckBudget = 100 * time.Millisecond })
	h.te.delay.Store(int64(400 * time.Millisecond))
	start := time.Now()
	_, reply, respURL := h.slash(alice, testChannel, "/ship", "status resizer")
	// "Working on it" proves the budget fired before the 400ms engine
	// answered; the bound is Slack's own (3s), with room for a busy machine.
	if d := time.Since(start); d > 2500*time.Millisecond {
		t.Fatalf("ack took %s with a 100ms budget", d)
	}
	if !strings.Contains(reply.Text, "Working on it") {
		t.Fatalf("reply = %q", reply.Text)
	}
	h.waitCalls("late status", func(cs []slackCall) bool {
		return hasText(responsesTo(cs, respURL), "", "stable v1: 3/3 ready")
	})
}

func TestChannelsAllowedPerApp(t *testing.T) {
	h := newHarness(t, nil, func(c *Config) {
		c.Apps["resizer"] = AppConfig{Channel: testChannel, AllowedChannels: []string{"CRELEASE"}}
	})
	_, reply, _ := h.slash(alice, "CRANDOM", "/deploy", "resizer v2")
	if !strings.Contains(reply.Text, "only taken in") || !strings.Contains(reply.Text, "<#CRELEASE>") {
		t.Fatalf("reply = %q", reply.Text)
	}
	_, reply, _ = h.slash(alice, "CRELEASE", "/ship", "status resizer")
	if !strings.Contains(reply.Text, "stable v1") {
		t.Fatalf("allowed channel refused: %q", reply.Text)
	}
	if calls := h.te.calls(t); len(calls) != 0 {
		t.Fatalf("engine calls = %q", calls)
	}
}

func TestRateLimitedCallIsRetriedAfterRetryAfter(t *testing.T) {
	h := newHarness(t, nil, nil)
	h.slack.Throttle("chat.postMessage", 1, 1)
	h.slash(alice, testChannel, "/deploy", "resizer v2 --canary 1%")
	calls := h.waitCalls("message after 429", func(cs []slackCall) bool {
		return len(releaseMessages(cs, "3")) > 0
	})
	var posts []slackCall
	for _, c := range calls {
		if c.Method == "chat.postMessage" {
			posts = append(posts, c)
		}
	}
	if len(posts) < 2 || posts[0].Status != http.StatusTooManyRequests || posts[1].Status != http.StatusOK {
		t.Fatalf("postMessage calls: %s", dumpCalls(posts))
	}
	if gap := posts[1].At.Sub(posts[0].At); gap < 900*time.Millisecond {
		t.Fatalf("retried after %s, Retry-After said 1s", gap)
	}
	if s := h.bot.Stats(); s.SlackRetries < 1 || s.SlackFailures != 0 {
		t.Fatalf("stats = %+v", s)
	}
}

func TestSlackDownNeverBlocksTheEngine(t *testing.T) {
	h := newHarness(t, nil, func(c *Config) { c.MaxAttempts = 2 })
	h.slack.SetDown(true)
	ctx := context.Background()
	h.te.waitSubscribed(t, 1)
	// The notifier must take every event the engine stores from here on.
	observed := h.bot.notifier.observed.Load
	base := observed()
	seen, err := h.te.Engine.Events(ctx, engine.System, engine.EventQuery{Limit: 100000})
	if err != nil {
		t.Fatal(err)
	}
	last := seen[len(seen)-1].ID
	stored := func() int64 {
		evs, err := h.te.Engine.Events(ctx, engine.System, engine.EventQuery{AfterID: last, Limit: 100000})
		if err != nil {
			t.Fatal(err)
		}
		return int64(len(evs))
	}
	start := time.Now()
	const rounds = 300
	for i := range rounds {
		a := alice.actorForTest()
		if _, err := h.te.Engine.Deploy(ctx, a, deployReq("resizer", "v2")); err != nil {
			t.Fatalf("deploy %d: %v", i, err)
		}
		if _, err := h.te.Engine.Abort(ctx, a, engine.AbortRequest{App: "resizer", Env: "", Reason: "test"}); err != nil {
			t.Fatalf("abort %d: %v", i, err)
		}
		// The notifier takes every event off the subscription at once,
		// although each Slack call fails only after retries (>=200ms): a
		// notifier that waited on Slack would need a minute here.
		want := base + stored()
		for observed() < want {
			if time.Since(start) > 15*time.Second {
				t.Fatalf("round %d: notifier observed %d of %d events after %s", i, observed()-base, want-base, time.Since(start))
			}
			runtime.Gosched()
		}
	}
	// None was dropped on the way: the notifier saw exactly what was stored.
	eventually.True(t, 10*time.Second, "the notifier observing every stored event", func() bool { return observed() == base+stored() })
	eventually.True(t, 10*time.Second, "a Slack failure counted", func() bool { return h.bot.Stats().SlackFailures > 0 })
	// The failure is counted before it is logged: wait for the log line.
	eventually.True(t, 10*time.Second, "the Slack failure logged", func() bool {
		return strings.Contains(h.logs.String(), "slack call failed")
	})
	// Slack comes back: the next release is posted.
	h.slack.SetDown(false)
	h.slash(alice, testChannel, "/deploy", "resizer v9 --canary 1%")
	next := fmt.Sprint(firstID + rounds)
	h.waitCalls("recovered", func(cs []slackCall) bool {
		return len(releaseMessages(cs, next)) > 0
	})
}

func TestResponseURLUsedFiveTimesWithin30MinutesThenBotToken(t *testing.T) {
	h := newHarness(t, nil, nil)
	ctx := context.Background()
	u := h.slack.ResponseURL("limits")
	r := newResponder(u, testChannel, "UALICE", h.bot.cfg.Now())
	for i := range 7 {
		h.bot.respond(ctx, r, ephemeral(esc("note "+string(rune('a'+i)))))
	}
	calls := h.slack.Calls("")
	if n := len(responsesTo(calls, u)); n != 5 {
		t.Fatalf("response_url used %d times, want 5", n)
	}
	eph := h.slack.Calls("chat.postEphemeral")
	if len(eph) != 2 || eph[0].Form.Get("user") != "UALICE" || eph[0].Form.Get("channel") != testChannel {
		t.Fatalf("postEphemeral calls: %s", dumpCalls(eph))
	}
	u2 := h.slack.ResponseURL("expired")
	r2 := newResponder(u2, testChannel, "UALICE", h.bot.cfg.Now())
	h.advance(31 * time.Minute)
	h.bot.respond(ctx, r2, ephemeral("late"))
	if n := len(responsesTo(h.slack.Calls(""), u2)); n != 0 {
		t.Fatalf("expired response_url used %d times", n)
	}
	if n := len(h.slack.Calls("chat.postEphemeral")); n != 3 {
		t.Fatalf("postEphemeral calls = %d, want 3", n)
	}
}

func TestMattermostCommandWithToken(t *testing.T) {
	h := newHarness(t, nil, func(c *Config) { c.MattermostToken = "mm-secret-token" })
	// Identities are per chat system: Mattermost's UALICE is not Slack's
	// alice and gets only what is granted to mattermost:UALICE.
	h.grant(authz.Grant{Role: authz.RoleDeployer, Users: []authz.Identity{"mattermost:UALICE"}})
	post := func(token string) (int, string) {
		body := "token=" + token + "&channel_id=" + testChannel + "&user_id=UALICE&user_name=alice&command=%2Fdeploy&text=resizer+v2+--canary+1%25&response_url=" + h.slack.ResponseURL("mm")
		resp, err := http.Post(h.srv.URL+"/slack/commands", "application/x-www-form-urlencoded", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b := new(strings.Builder)
		_, _ = copyN(b, resp)
		return resp.StatusCode, b.String()
	}
	if code, _ := post("wrong"); code != http.StatusUnauthorized {
		t.Fatalf("wrong token: %d", code)
	}
	if code, _ := post(""); code != http.StatusUnauthorized {
		t.Fatalf("no token: %d", code)
	}
	code, body := post("mm-secret-token")
	if code != http.StatusOK || !strings.Contains(body, `"text":"On it: deploying resizer v2`) {
		t.Fatalf("mattermost: %d %s", code, body)
	}
	h.waitCalls("mattermost result", func(cs []slackCall) bool {
		return hasText(cs, "response_url", "Release #3")
	})
	if calls := h.te.calls(t); len(calls) != 1 || calls[0] != "deploy resizer production mattermost:UALICE (alice)" {
		t.Fatalf("engine calls = %q", calls)
	}
	// Mattermost also sends the token as "Authorization: Token …".
	req, _ := http.NewRequest(http.MethodPost, h.srv.URL+"/slack/commands",
		strings.NewReader("channel_id=C1&user_id=UALICE&user_name=alice&command=%2Fship&text=status+resizer"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Authorization", "Token mm-secret-token")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b := new(strings.Builder)
	_, _ = copyN(b, resp)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(b.String(), "stable v1") {
		t.Fatalf("header token: %d %s", resp.StatusCode, b)
	}
}

func TestSocketModeHandlesCommandsAndButtons(t *testing.T) {
	h := newHarness(t, nil, func(c *Config) { c.AppToken = "xapp-1-test" })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := h.slack.WaitSocket(ctx); err != nil {
		t.Fatal(err)
	}
	if n := len(h.slack.Calls("apps.connections.open")); n != 1 {
		t.Fatalf("apps.connections.open called %d times", n)
	}
	err := h.slack.SendEnvelope("env-1", "slash_commands", map[string]any{
		"command": "/deploy", "text": "resizer v2 --canary 1%", "user_id": "UALICE", "user_name": "alice",
		"channel_id": testChannel, "response_url": h.slack.ResponseURL("sock-1"), "team_id": "T1",
	})
	if err != nil {
		t.Fatal(err)
	}
	ack, err := h.slack.Ack(ctx, "env-1")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(ack), "On it: deploying resizer v2") {
		t.Fatalf("ack payload = %s", ack)
	}
	h.waitCalls("paused", func(cs []slackCall) bool { return strings.Contains(lastReleaseMessage(cs, "3").Text(), "paused") })

	var payload map[string]any
	if err := jsonUnmarshal(pressPayload(alice, testChannel, ActionPromote, buttonValue{"resizer", "production", 3}.encode(), h.slack.ResponseURL("sock-2")), &payload); err != nil {
		t.Fatal(err)
	}
	if err := h.slack.SendEnvelope("env-2", "interactive", payload); err != nil {
		t.Fatal(err)
	}
	if _, err := h.slack.Ack(ctx, "env-2"); err != nil {
		t.Fatal(err)
	}
	h.waitCalls("promoted over the socket", func(cs []slackCall) bool {
		m := lastReleaseMessage(cs, "3")
		return strings.Contains(m.Text(), "succeeded") && strings.Contains(m.Blocks(), "Promote pressed by alice")
	})
}

func TestSlashPromoteAndRollbackCommands(t *testing.T) {
	h := newHarness(t, nil, nil)
	h.slash(alice, testChannel, "/deploy", "resizer v2 --canary 10%")
	h.waitCalls("paused", func(cs []slackCall) bool {
		return strings.Contains(lastReleaseMessage(cs, "3").Text(), "paused at 10%")
	})
	_, reply, respURL := h.slash(alice, testChannel, "/ship", "promote resizer")
	if !strings.Contains(reply.Text, "On it: promote resizer in production") {
		t.Fatalf("reply = %q", reply.Text)
	}
	h.waitCalls("promoted", func(cs []slackCall) bool {
		m := lastReleaseMessage(cs, "3")
		return strings.Contains(m.Text(), "succeeded") && strings.Contains(m.Blocks(), "Promoted by alice (/ship)") &&
			hasText(responsesTo(cs, respURL), "", "Promoting resizer v2 in production (release #3)")
	})
	_, reply, _ = h.slash(bob, testChannel, "/ship", "rollback resizer")
	if !strings.Contains(reply.Text, "rolling resizer in production back to its last good release") {
		t.Fatalf("reply = %q", reply.Text)
	}
	h.waitCalls("rollback message", func(cs []slackCall) bool {
		m := lastReleaseMessage(cs, "4")
		return strings.Contains(m.Text(), "resizer v1 → production") && strings.Contains(m.Blocks(), "Rollback started by bob (/ship)")
	})
	h.te.WaitState(firstID+1, release.Succeeded)
	// Another deploy while none is active works; a second one is refused with the engine's reason.
	h.slash(alice, testChannel, "/deploy", "resizer v3 --canary 1%")
	h.waitCalls("v3 paused", func(cs []slackCall) bool { return strings.Contains(lastReleaseMessage(cs, "5").Text(), "paused") })
	_, _, respURL = h.slash(alice, testChannel, "/deploy", "resizer v4")
	h.waitCalls("conflict explained", func(cs []slackCall) bool {
		return hasText(responsesTo(cs, respURL), "", "resizer/production already has release #5")
	})
}

func TestTooMuchWorkInFlightIsRefusedPolitely(t *testing.T) {
	h := newHarness(t, nil, func(c *Config) { c.MaxInFlight = 1; c.AckBudget = 50 * time.Millisecond })
	h.te.delay.Store(int64(500 * time.Millisecond))
	_, first, _ := h.slash(alice, testChannel, "/ship", "status resizer")
	_, second, _ := h.slash(alice, testChannel, "/ship", "status resizer")
	if !strings.Contains(first.Text, "Working on it") || !strings.Contains(second.Text, "busy") {
		t.Fatalf("replies = %q, %q", first.Text, second.Text)
	}
	if h.bot.Stats().Busy != 1 {
		t.Fatalf("Busy = %d", h.bot.Stats().Busy)
	}
}

func TestAppWithoutChannelPostsWhereTheCommandCameFrom(t *testing.T) {
	h := newHarness(t, nil, nil) // only resizer has a channel
	h.slash(alice, "CTHUMBS", "/deploy", "thumbs v2 --canary 1%")
	calls := h.waitCalls("thumbs message", func(cs []slackCall) bool {
		return strings.Contains(lastReleaseMessage(cs, "3").Text(), "paused")
	})
	for _, m := range releaseMessages(calls, "3") {
		if m.Form.Get("channel") != "CTHUMBS" {
			t.Fatalf("thumbs message went to %q", m.Form.Get("channel"))
		}
	}
	// A release started elsewhere (CLI) for an app without channel or
	// default is not posted anywhere; with a default channel it is.
	h2 := newHarness(t, nil, func(c *Config) { c.DefaultChannel = "CDEFAULT" })
	h2.te.waitSubscribed(t, 1)
	if _, err := h2.te.Engine.Deploy(context.Background(), engineActor("bob", "cli"), deployReq("thumbs", "v3")); err != nil {
		t.Fatal(err)
	}
	calls = h2.waitCalls("default channel", func(cs []slackCall) bool { return len(releaseMessages(cs, "3")) > 0 })
	if m := releaseMessages(calls, "3")[0]; m.Form.Get("channel") != "CDEFAULT" || !strings.Contains(m.Blocks(), "Started by bob via cli") {
		t.Fatalf("message to %q: %s", m.Form.Get("channel"), m.Blocks())
	}
	// Actions from the CLI show in the message's timeline too.
	h2.te.WaitState(firstID, release.Paused)
	if _, err := h2.te.Engine.Promote(context.Background(), engineActor("carol", "cli"), engine.PromoteRequest{App: "thumbs", Env: ""}); err != nil {
		t.Fatal(err)
	}
	h2.waitCalls("cli promote in timeline", func(cs []slackCall) bool {
		m := lastReleaseMessage(cs, "3")
		return strings.Contains(m.Text(), "succeeded") && strings.Contains(m.Blocks(), "Promoted by carol")
	})
}

func TestSocketModeReconnectsAfterSlackDropsTheConnection(t *testing.T) {
	h := newHarness(t, nil, func(c *Config) { c.AppToken = "xapp-1-test" })
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := h.slack.WaitSocket(ctx); err != nil {
		t.Fatal(err)
	}
	h.slack.DropSocket()
	h.waitCalls("reconnect", func(cs []slackCall) bool {
		return count(cs, "apps.connections.open") == 2 && count(cs, "socket.connect") == 2
	})
	err := h.slack.SendEnvelope("env-after", "slash_commands", map[string]any{
		"command": "/ship", "text": "status resizer", "user_id": "UALICE", "user_name": "alice",
		"channel_id": testChannel, "response_url": h.slack.ResponseURL("sock-3"),
	})
	if err != nil {
		t.Fatal(err)
	}
	ack, err := h.slack.Ack(ctx, "env-after")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(ack), "stable v1: 3/3 ready") {
		t.Fatalf("ack after reconnect = %s", ack)
	}
}

func TestWalkingCanaryUpdatesTheMessageAndTellsTheDeployer(t *testing.T) {
	h := newHarness(t, newTestEngine(t, true), nil) // the test steps the engine
	_, _, respURL := h.slash(alice, testChannel, "/deploy", "resizer v2 --steps 1,10,50,100")
	h.stepTo(firstID, 0)
	h.waitCalls("step 1", func(cs []slackCall) bool {
		return strings.Contains(lastReleaseMessage(cs, "3").Text(), "canary at 1%, step 1 of 4")
	})
	h.stepTo(firstID, 2)
	calls := h.waitCalls("step 3", func(cs []slackCall) bool {
		return strings.Contains(lastReleaseMessage(cs, "3").Text(), "canary at 50%, step 3 of 4") &&
			hasText(responsesTo(cs, respURL), "", "canary at 50%")
	})
	if n := count(calls, "chat.postMessage"); n != 1 {
		t.Fatalf("%d chat.postMessage calls, want 1 (then updates)", n)
	}
}

// /ship reclaim goes through the same mutate path as scale; the old form's
// scale grant covers it: an operator may, a responder may not. The result names who
// lost which field; the app event is announced in the channel.
func TestReclaimNeedsTheScaleGrantAndSaysWhatWasTakenBack(t *testing.T) {
	h := newHarness(t, nil, nil)
	_, reply, _ := h.slash(bob, testChannel, "/ship", "reclaim resizer")
	if reply.ResponseType != "ephemeral" || !strings.Contains(reply.Text, "You may not reclaim resizer in production") ||
		!strings.Contains(reply.Text, "members of <!subteam^SOPS> may (role operator)") {
		t.Fatalf("responder's reclaim = %+v", reply)
	}
	h.slack.SetGroup("SOPS", "UOLGA")
	h.te.Runtime.HandScale("resizer", "production", rt.Stable, 5, "kubectl") // someone scaled by hand
	_, reply, respURL := h.slash(olga, testChannel, "/ship", "reclaim resizer")
	if !strings.Contains(reply.Text, "On it: taking back the fields ship manages of resizer in production") {
		t.Fatalf("operator's reclaim = %+v", reply)
	}
	h.waitCalls("reclaim answered and announced", func(cs []slackCall) bool {
		return hasText(responsesTo(cs, respURL), "", "Reclaimed resizer/production (stable v1×3): taken back from \"kubectl\": stable .spec.replicas.") &&
			hasText(cs, "chat.postMessage", "olga via slack reclaimed resizer/production (stable v1×3): taken back from \"kubectl\"")
	})
	want := []string{"reclaim resizer production slack:UOLGA (olga)"}
	if got := h.te.calls(t); strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("engine calls = %q", got)
	}
}
