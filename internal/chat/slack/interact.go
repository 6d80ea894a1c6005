package slack

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/shipteam/ship/internal/engine"
	"github.com/shipteam/ship/internal/release"
	"github.com/shipteam/ship/internal/spec"
	slackapi "github.com/slack-go/slack"
)

// errNotOurs marks an interaction that is valid but not for ship (another
// app's button, a modal): it is acknowledged and ignored.
var errNotOurs = errors.New("not a ship button")

// press is a decoded, validated button press.
type press struct {
	Action      string // ActionPromote, ActionAbort or ActionRollback
	Value       buttonValue
	UserID      string
	UserName    string
	ChannelID   string
	ResponseURL string
}

// maxNameLen bounds names carried in button values.
const maxNameLen = 128

// decodeInteraction decodes the payload form field of an interaction.
func decodeInteraction(payload string) (press, error) {
	if payload == "" {
		return press{}, errors.New("empty payload")
	}
	var cb slackapi.InteractionCallback
	if err := json.Unmarshal([]byte(payload), &cb); err != nil {
		return press{}, fmt.Errorf("payload is not an interaction: %w", err)
	}
	return pressFrom(cb)
}

// pressFrom validates an interaction callback (HTTP or Socket Mode).
func pressFrom(cb slackapi.InteractionCallback) (press, error) {
	if cb.Type != slackapi.InteractionTypeBlockActions {
		return press{}, fmt.Errorf("%w: type %q", errNotOurs, cb.Type)
	}
	acts := cb.ActionCallback.BlockActions
	if len(acts) == 0 || acts[0] == nil {
		return press{}, errors.New("block_actions without an action")
	}
	a := acts[0]
	switch a.ActionID {
	case ActionPromote, ActionAbort, ActionRollback:
	default:
		return press{}, fmt.Errorf("%w: action %q", errNotOurs, a.ActionID)
	}
	var v buttonValue
	if err := json.Unmarshal([]byte(a.Value), &v); err != nil {
		return press{}, fmt.Errorf("button value: %w", err)
	}
	switch {
	case v.App == "" || len(v.App) > maxNameLen || !spec.ValidName(v.App):
		return press{}, errors.New("button value: bad app")
	case v.Env == "" || len(v.Env) > maxNameLen || !spec.ValidName(v.Env):
		return press{}, errors.New("button value: bad env")
	case v.Release <= 0:
		return press{}, errors.New("button value: bad release id")
	case cb.User.ID == "":
		return press{}, errors.New("interaction without a user")
	}
	name := cb.User.Name
	if name == "" {
		name = cb.User.Username
	}
	return press{
		Action: a.ActionID, Value: v,
		UserID: cb.User.ID, UserName: name,
		ChannelID: cb.Channel.ID, ResponseURL: cb.ResponseURL,
	}, nil
}

func pressVerb(action string) string {
	switch action {
	case ActionPromote:
		return VerbPromote
	case ActionAbort:
		return VerbAbort
	}
	return VerbRollback
}

// handlePress starts the work of a button press; its answer, if any, goes
// to the presser alone. A press that is refused changes nothing.
func (b *Bot) handlePress(p press) {
	b.stats.interactions.Add(1)
	r := newResponder(p.ResponseURL, p.ChannelID, p.UserID, b.cfg.Now())
	if !b.goAsync(func(ctx context.Context) {
		if m, ok := b.doPress(ctx, p); ok {
			b.respond(ctx, r, m)
		}
	}) {
		// Counted in Stats.Busy. No reply: that would need the very
		// goroutine the bot has no room for.
		b.log.Warn("button press dropped: too much work in flight", "user", p.UserID, "action", p.Action,
			"app", p.Value.App, "release", p.Value.Release)
	}
}

// doPress checks and runs a press; it returns a message for the presser
// when there is something to tell them privately.
func (b *Bot) doPress(ctx context.Context, p press) (message, bool) {
	v := p.Value
	verb := pressVerb(p.Action)
	u := chatUser{id: p.UserID, name: p.UserName} // buttons are Slack-only (see serveInteraction)
	a := u.actor()
	log := b.log.With("app", v.App, "env", v.Env, "release", v.Release, "actor", a.Name, "verb", verb)

	if p.ChannelID != "" && p.ChannelID != b.channelFor(v.App, "") && !b.channelAllowed(v.App, p.ChannelID) {
		b.stats.refused.Add(1)
		return ephemeral(authorizerText(b.channelRefusal(v.App))), true
	}
	if _, err := b.eng.Allowed(ctx, a, engine.Action(verb), v.App, v.Env); err != nil {
		if engine.CodeOf(err) == engine.CodeDenied {
			b.stats.refused.Add(1)
			log.Info("button press refused", "why", err.Error())
		}
		return ephemeral(b.errorTextFor(u, err)), true
	}
	rel, err := b.eng.Release(ctx, a, v.Release)
	if err != nil {
		return ephemeral(b.errorTextFor(u, err)), true
	}
	if rel.App != v.App || rel.Env != v.Env {
		log.Warn("button value does not match its release", "releaseApp", rel.App, "releaseEnv", rel.Env)
		return ephemeral(mrkdwnf(":warning: This button does not match release #%d; nothing was done.", rel.ID)), true
	}
	if stale := staleness(rel, verb); stale != "" {
		return ephemeral(stale), true
	}
	if verb == VerbRollback && !rel.Active() {
		// Rolling back from an old message must not undo a newer release.
		st, err := b.eng.Status(ctx, a, v.App, v.Env)
		if err != nil {
			return ephemeral(b.errorTextFor(u, err)), true
		}
		if st.Release != nil && st.Release.ID != rel.ID {
			return ephemeral(mrkdwnf("Release #%d is no longer the latest of %s in %s (#%d is); nothing was done. Use `/ship rollback %s --env %s` if you mean it.",
				rel.ID, v.App, v.Env, st.Release.ID, v.App, v.Env)), true
		}
	}
	switch verb {
	case VerbPromote:
		_, err = b.eng.Promote(ctx, a, engine.PromoteRequest{App: v.App, Env: v.Env})
	case VerbAbort:
		_, err = b.eng.Abort(ctx, a, engine.AbortRequest{App: v.App, Env: v.Env, Reason: "aborted from Slack by " + u.label()})
	case VerbRollback:
		var rb release.Release
		rb, err = b.eng.Rollback(ctx, a, engine.RollbackRequest{App: v.App, Env: v.Env, To: ""})
		if err == nil && rb.ID != 0 && rb.ID != rel.ID {
			b.notifier.follow(rb.ID, p.ChannelID, nil, fmt.Sprintf("Rollback pressed by %s on release #%d", u.label(), rel.ID))
		}
	}
	if err != nil {
		log.Info("button press failed", "err", err)
		return ephemeral(b.errorTextFor(u, err)), true
	}
	log.Info("button press done")
	b.notifier.note(rel.ID, fmt.Sprintf("%s pressed by %s", pressLabel(verb), u.label()))
	return message{}, false
}

func pressLabel(verb string) string {
	switch verb {
	case VerbPromote:
		return "Promote"
	case VerbAbort:
		return "Abort"
	}
	return "Rollback"
}

// staleness explains why a press on a finished release does nothing.
func staleness(r release.Release, verb string) markup {
	if r.Active() {
		return ""
	}
	if verb == VerbRollback && r.State == release.Succeeded {
		return ""
	}
	return mrkdwnf("Release #%d of %s %s already ended (%s); %s does nothing now.", r.ID, r.App, r.Version,
		stateText(r), pressLabel(verb))
}
