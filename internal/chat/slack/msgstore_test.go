package slack

import (
	"context"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/shipteam/ship/internal/chat/slack/slacktest"
	"github.com/shipteam/ship/internal/eventually"
	"github.com/shipteam/ship/internal/release"
	"github.com/shipteam/ship/internal/store"
)

// Three ship processes in turn (bots A, B, C on one store file, one Slack,
// one engine, stepped by the test) keep a single message for release #3: B and C edit the
// message A posted, and C's message still says who pressed what under B.
func TestReleaseMessageSurvivesRestarts(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ship.db")
	sl := slacktest.NewServer()
	t.Cleanup(sl.Close)
	sl.SetGroup("SOPS", "UOLGA")
	eng := newTestEngine(t, true)

	// start runs one "ship process": a bot on its own store handle.
	start := func() *harness {
		st, err := store.Open(context.Background(), path)
		if err != nil {
			t.Fatal(err)
		}
		h := newHarnessOn(t, sl, eng, nil, WithMessageStore(st))
		t.Cleanup(func() { st.Close() })
		return h
	}
	stop := func(h *harness) { h.stopRun(); h.srv.Close() }
	// subscribed waits until n bots follow the engine's events.
	subscribed := func(n int) { t.Helper(); eng.waitSubscribed(t, n) }

	// A posts the message of a walking canary.
	a := start()
	a.slash(alice, testChannel, "/deploy", "resizer v2 --steps 1,10,50,100")
	a.stepTo(firstID, 0)
	a.waitCalls("step 1 posted", func(cs []slackCall) bool {
		return strings.Contains(lastReleaseMessage(cs, "3").Text(), "step 1 of 4")
	})
	// Stop only once A has Slack's answer: a post cut off by the stop may
	// have reached Slack unseen, and then a second message is unavoidable.
	eventually.True(t, 10*time.Second, "A learning its message's ts", func() bool {
		_, ts := a.bot.notifier.messageOf(3)
		return ts != ""
	})
	stop(a)
	first := releaseMessages(sl.Calls(""), "3")[0]
	_, ts := a.bot.notifier.messageOf(3)
	if first.Method != "chat.postMessage" || ts == "" {
		t.Fatalf("first message %s, ts %q\n%s", first.Method, ts, a.logs.String())
	}
	subscribed(0)

	// B: the release moves on; its message is edited, not posted again.
	b := start()
	subscribed(1)
	b.stepTo(firstID, 1)
	b.waitCalls("step 2 by B", func(cs []slackCall) bool {
		return strings.Contains(lastReleaseMessage(cs, "3").Text(), "step 2 of 4")
	})
	if _, bts := b.bot.notifier.messageOf(3); bts != ts {
		t.Fatalf("B's message ts %q, want A's %q", bts, ts)
	}
	if code, _ := b.press(alice, testChannel, ActionPromote, "resizer", "production", 3); code != http.StatusOK {
		t.Fatalf("press: %d", code)
	}
	// The bot promotes after its ack; step only once it has.
	eventually.True(t, 10*time.Second, "the promote recorded", func() bool { return eng.Release(firstID).State == release.Promoting })
	b.stepUntil(firstID, "succeeded", func(r release.Release) bool { return r.State == release.Succeeded })
	b.waitCalls("promote noted by B", func(cs []slackCall) bool {
		m := lastReleaseMessage(cs, "3")
		return strings.Contains(m.Text(), "succeeded") && strings.Contains(m.Blocks(), "Promote pressed by alice")
	})
	stop(b)
	subscribed(0)

	// C: a Rollback press on the finished release; its message keeps B's line.
	c := start()
	if code, _ := c.press(olga, testChannel, ActionRollback, "resizer", "production", 3); code != http.StatusOK {
		t.Fatalf("press: %d", code)
	}
	c.waitCalls("rollback noted by C", func(cs []slackCall) bool {
		return strings.Contains(lastReleaseMessage(cs, "3").Blocks(), "Rollback pressed by olga")
	})
	final := lastReleaseMessage(sl.Calls(""), "3")
	if !strings.Contains(final.Blocks(), "Promote pressed by alice") {
		t.Errorf("after restarts the message forgot who pressed Promote: %s", final.Blocks())
	}
	msgs := releaseMessages(sl.Calls(""), "3")
	for _, m := range msgs[1:] {
		if m.Method != "chat.update" || m.Form.Get("ts") != ts {
			t.Fatalf("later message of release #3: %s ts=%q, want chat.update of %q\n%s", m.Method, m.Form.Get("ts"), ts, dumpCalls(msgs))
		}
	}
	if len(msgs) < 4 {
		t.Fatalf("%d messages of release #3, want post + updates by B and C", len(msgs))
	}
	// C's own press is stored too, next to B's, for the next restart.
	stop(c)
	st, err := store.Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	m, err := st.ChatMessage(context.Background(), 3)
	if err != nil {
		t.Fatal(err)
	}
	joined := strings.Join(m.Lines, "\n")
	if m.TS != ts || !strings.Contains(joined, "Promote pressed by alice") || !strings.Contains(joined, "Rollback pressed by olga") {
		t.Fatalf("stored message of release #3 = %+v, want ts %q and both presses", m, ts)
	}
}

// Without a MessageStore a new bot knows nothing of the old message (the
// in-memory behaviour the test above guards against).
func TestWithoutMessageStoreARestartPostsAgain(t *testing.T) {
	sl := slacktest.NewServer()
	t.Cleanup(sl.Close)
	eng := newTestEngine(t, true)
	a := newHarnessOn(t, sl, eng, nil)
	a.slash(alice, testChannel, "/deploy", "resizer v2 --steps 1,10,50,100")
	a.stepTo(firstID, 0)
	a.waitCalls("posted", func(cs []slackCall) bool { return count(cs, "chat.postMessage") == 1 })
	a.stopRun()
	b := newHarnessOn(t, sl, eng, nil)
	eng.waitSubscribed(t, 1)
	b.stepTo(firstID, 1)
	b.waitCalls("posted again", func(cs []slackCall) bool { return count(cs, "chat.postMessage") == 2 })
}
