package slack

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/shipteam/ship/internal/chat/slack/slacktest"
	"github.com/shipteam/ship/internal/engine"
)

// Hostile values that other doors (the API, the CLI) let through, as they
// would be sent raw, and the form they must take in Slack's mrkdwn.
const (
	mention      = "<!channel>"
	mentionShown = "&lt;!channel&gt;"
	link         = "<https://evil.example|click>"
	linkShown    = "&lt;https://evil.example|click&gt;"
)

// callStrings is every string a call sent to Slack: its text and each
// string inside its blocks, JSON-decoded (so \u003c counts as <).
func callStrings(c slacktest.Call) []string {
	out := []string{c.Text()}
	var walk func(v any)
	walk = func(v any) {
		switch x := v.(type) {
		case string:
			out = append(out, x)
		case []any:
			for _, e := range x {
				walk(e)
			}
		case map[string]any:
			for _, e := range x {
				walk(e)
			}
		}
	}
	if b := c.Blocks(); b != "" {
		var v any
		if err := json.Unmarshal([]byte(b), &v); err == nil {
			walk(v)
		}
	}
	return out
}

// assertEscaped fails when raw appears in any of texts, and when none shows
// the escaped form.
func assertEscaped(t *testing.T, what string, texts []string, raw, shown string) {
	t.Helper()
	seen := false
	for _, s := range texts {
		if strings.Contains(s, raw) {
			t.Errorf("%s: raw %q reaches Slack: %q", what, raw, s)
		}
		seen = seen || strings.Contains(s, shown)
	}
	if !seen {
		t.Errorf("%s: escaped %q shown nowhere in %q", what, shown, texts)
	}
}

func messagesIn(calls []slacktest.Call, channel string) []string {
	var out []string
	for _, c := range calls {
		if (c.Method == "chat.postMessage" || c.Method == "chat.update") && c.Form.Get("channel") == channel {
			out = append(out, callStrings(c)...)
		}
	}
	return out
}

// A deploy from the API by a token named "token:ci <!channel>", an abort
// reason and a lock reason that disguise a link reach the deploy channel as
// text: escaped, never as a channel ping or a link. (The engine refuses
// "<!channel>" as a version since versions must be label-safe; names and
// reasons are plain text it accepts, so the hostile text travels there.)
func TestUserTextReachesTheDeployChannelEscaped(t *testing.T) {
	h := newHarness(t, nil, nil)
	ctx := context.Background()
	api := engine.Actor{ID: "token:ci", Name: "token:ci " + mention, Source: "api", Role: "admin"}
	h.te.waitSubscribed(t, 1)

	if _, err := h.te.Engine.Deploy(ctx, api, deployReq("resizer", "v2")); err != nil {
		t.Fatal(err)
	}
	calls := h.waitCalls("the release message", func(cs []slackCall) bool {
		return len(messagesIn(cs, testChannel)) > 0 && strings.Contains(strings.Join(messagesIn(cs, testChannel), "\n"), "release #3")
	})
	assertEscaped(t, "release message", messagesIn(calls, testChannel), mention, "token:ci "+mentionShown)
	for _, s := range messagesIn(calls, testChannel) {
		if strings.Contains(s, "token:ci <!") {
			t.Errorf("actor name unescaped: %q", s)
		}
	}

	// The release ends with a reason carrying a link, from the API.
	if _, err := h.te.Engine.Abort(ctx, api, engine.AbortRequest{App: "resizer", Env: "production", Reason: "see " + link}); err != nil {
		t.Fatal(err)
	}
	calls = h.waitCalls("the aborted message", func(cs []slackCall) bool {
		return strings.Contains(strings.Join(messagesIn(cs, testChannel), "\n"), ":no_entry: aborted")
	})
	assertEscaped(t, "aborted release message", messagesIn(calls, testChannel), link, "see "+linkShown)

	// A lock from the API: its announcement in the channel.
	if err := h.te.Engine.Lock(ctx, api, engine.LockRequest{App: "resizer", Env: "production", Reason: link}); err != nil {
		t.Fatal(err)
	}
	calls = h.waitCalls("the lock announced", func(cs []slackCall) bool {
		return strings.Contains(strings.Join(messagesIn(cs, testChannel), "\n"), "locked")
	})
	assertEscaped(t, "lock announcement", messagesIn(calls, testChannel), link, linkShown)

	// Status, history and a refused deploy echo the same values back.
	_, m, _ := h.slash(alice, testChannel, "/ship", "status resizer")
	assertEscaped(t, "/ship status", []string{m.Text}, link, linkShown)
	assertEscaped(t, "/ship status", []string{m.Text}, mention, mentionShown)
	_, m, _ = h.slash(alice, testChannel, "/ship", "history resizer")
	assertEscaped(t, "/ship history", []string{m.Text}, mention, "token:ci "+mentionShown)
	_, m, resp := h.slash(alice, testChannel, "/deploy", "resizer v3")
	calls = h.waitCalls("the refusal", func(cs []slackCall) bool { return len(responsesTo(cs, resp)) > 0 })
	var refusal []string
	for _, c := range responsesTo(calls, resp) {
		refusal = append(refusal, callStrings(c)...)
	}
	assertEscaped(t, "locked deploy refusal", refusal, link, linkShown)
}

// Slack sends a slash command's text with &, < and > as entities. The
// grammar takes the text back to what the user typed (the lock reason is
// stored raw, for the CLI and the API) and chat escapes it once on the way
// out, so the user sees what they typed, neither a link nor "&amp;lt;".
func TestSlashTextIsUnescapedOnceAndEscapedOnce(t *testing.T) {
	h := newHarness(t, nil, nil)
	_, m, resp := h.slash(olga, testChannel, "/ship", `lock resizer --reason "&lt;b&gt; &amp; `+strings.ReplaceAll(strings.ReplaceAll(link, "<", "&lt;"), ">", "&gt;")+`"`)
	if !strings.HasPrefix(m.Text, "On it") {
		t.Fatalf("lock: %q", m.Text)
	}
	calls := h.waitCalls("the lock reply", func(cs []slackCall) bool { return len(responsesTo(cs, resp)) > 0 })
	var reply []string
	for _, c := range responsesTo(calls, resp) {
		reply = append(reply, callStrings(c)...)
	}
	assertEscaped(t, "lock reply", reply, link, "&lt;b&gt; &amp; "+linkShown)
	st, err := h.te.Engine.Status(context.Background(), engine.System, "resizer", "production")
	if err != nil {
		t.Fatal(err)
	}
	if st.Lock == nil || st.Lock.Reason != "<b> & "+link {
		t.Fatalf("stored lock %+v, want the reason as typed", st.Lock)
	}
	// The grammar's refusal quotes the bad version back: escaped too.
	_, m, _ = h.slash(alice, testChannel, "/deploy", "resizer &lt;!channel&gt;")
	assertEscaped(t, "usage error", []string{m.Text}, mention, mentionShown)
}
