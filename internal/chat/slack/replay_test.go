package slack

import (
	"context"
	"net/http"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/shipteam/ship/internal/chat/slack/slacktest"
	"github.com/shipteam/ship/internal/store"
)

// A signed /ship lock captured before a restart of ship is refused after it,
// in any casing of its signature: accepted MACs live in the SQLite store.
func TestSignedCommandReplayedAfterRestartIsRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ship.db")
	sl := slacktest.NewServer()
	t.Cleanup(sl.Close)
	eng := newTestEngine(t, false)
	start := func() *harness {
		st, err := store.Open(context.Background(), path)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		return newHarnessOn(t, sl, eng, nil, WithReplayStore(st))
	}

	a := start()
	body := url.Values{
		"command": {"/ship"}, "text": {"lock resizer --reason freeze"},
		"user_id": {olga.id}, "user_name": {olga.name}, "channel_id": {testChannel},
	}.Encode()
	ts := strconv.FormatInt(a.now.Load().Unix(), 10)
	sig := SignatureHeader(testSecret, ts, []byte(body))
	send := func(h *harness, sig string) int {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, h.srv.URL+"/slack/commands", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("X-Slack-Request-Timestamp", ts)
		req.Header.Set("X-Slack-Signature", sig)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := send(a, sig); code != http.StatusOK {
		t.Fatalf("genuine command: %d\n%s", code, a.logs.String())
	}
	a.waitCalls("the lock announced", func(cs []slackCall) bool { return hasText(cs, "chat.postMessage", "locked") })
	if calls := eng.calls(t); len(calls) != 1 {
		t.Fatalf("engine calls %q, want the one lock", calls)
	}
	a.stopRun()
	a.srv.Close()

	b := start() // ship restarted, one minute later: still inside the window
	b.advance(60_000_000_000)
	for _, s := range []string{sig, "v0=" + strings.ToUpper(strings.TrimPrefix(sig, "v0="))} {
		if code := send(b, s); code != http.StatusUnauthorized {
			t.Errorf("replay after restart as %s…: status %d, want 401", s[:10], code)
		}
	}
	if calls := eng.calls(t); len(calls) != 1 {
		t.Fatalf("engine calls %q, want the one lock", calls)
	}
	if got := b.bot.Stats().Unauthorized; got != 2 {
		t.Errorf("Unauthorized = %d, want 2", got)
	}
	if !strings.Contains(b.logs.String(), "replay") {
		t.Errorf("refusal not logged as a replay:\n%s", b.logs.String())
	}
}
