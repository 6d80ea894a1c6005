package slack

import (
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// FuzzSlashText: any command text gets a reply with text, and never a panic.
func FuzzSlashText(f *testing.F) {
	for _, s := range []string{
		"resizer v2 --canary 1%", "status resizer", "help", "help deploy", "", "scale resizer 10",
		"lock resizer --reason \"black friday\"", "rollback resizer --to v1", "deploy resizer v2 --steps 1,10,50,100",
		"history resizer --env staging", "deploy \x00 \xff", "--canary", "abort resizer --reason",
	} {
		f.Add("/ship", s)
		f.Add("/deploy", s)
	}
	eng := newTestEngine(f, true).watched
	bot, err := New(Config{
		SigningSecret: "fuzz", Grants: defaultGrants()[:1], AckBudget: 50 * time.Millisecond, MaxInFlight: 1024,
	}, eng, slog.New(slog.DiscardHandler))
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(bot.Close)
	f.Fuzz(func(t *testing.T, cmd, text string) {
		m := bot.handleSlash(context.Background(), slashRequest{
			Command: cmd, Text: text, UserID: "UALICE", UserName: "alice", ChannelID: "C1",
		})
		if strings.TrimSpace(m.Text) == "" {
			t.Fatalf("%s %q: empty reply", cmd, text)
		}
		if _, err := json.Marshal(m); err != nil {
			t.Fatalf("%s %q: reply does not encode: %v", cmd, text, err)
		}
	})
}

// FuzzInteractionPayload: the payload decoder never panics, and what it
// accepts is a well-formed press of one of ship's buttons.
func FuzzInteractionPayload(f *testing.F) {
	f.Add(pressPayload(alice, "C1", ActionPromote, `{"app":"resizer","env":"production","release":1}`, "https://hooks.slack.com/actions/1"))
	f.Add(pressPayload(alice, "C1", ActionAbort, `{"app":"resizer","env":"production","release":-1}`, ""))
	f.Add(pressPayload(alice, "C1", "other_action", `x`, ""))
	f.Add(`{"type":"block_actions","actions":[]}`)
	f.Add(`{"type":"view_submission"}`)
	f.Add(`{"type":"block_actions","user":{"id":"U1"},"actions":[{"action_id":"ship_rollback","value":"{\"app\":\"a\",\"env\":\"e\",\"release\":9}"}]}`)
	f.Add(`[]`)
	f.Add(``)
	f.Fuzz(func(t *testing.T, payload string) {
		p, err := decodeInteraction(payload)
		if err != nil {
			return
		}
		switch p.Action {
		case ActionPromote, ActionAbort, ActionRollback:
		default:
			t.Fatalf("accepted unknown action %q", p.Action)
		}
		if p.Value.App == "" || p.Value.Env == "" || p.Value.Release <= 0 || p.UserID == "" ||
			len(p.Value.App) > maxNameLen || len(p.Value.Env) > maxNameLen {
			t.Fatalf("accepted invalid press %+v", p)
		}
	})
}
