package slack

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/shipteam/ship/internal/command"
	"github.com/shipteam/ship/internal/engine"
	"github.com/shipteam/ship/internal/release"
	slackapi "github.com/slack-go/slack"
)

// historyLimit is how many releases /ship history shows.
const historyLimit = 10

// handleSlash turns one slash command into a reply, always within the ack
// budget: quick reads answer inline, everything else answers "on it" and
// finishes through response_url.
func (b *Bot) handleSlash(ctx context.Context, sr slashRequest) message {
	b.stats.commands.Add(1)
	c, err := command.ParseSlash(sr.Command, sr.Text)
	if err != nil {
		return usageReply(err)
	}
	// One responder per command: Slack's 5 uses of its response_url are
	// shared by a late answer, the result and the progress notes.
	r := newResponder(sr.ResponseURL, sr.ChannelID, sr.UserID, b.cfg.Now())
	u := userFrom(sr)
	switch c.Verb {
	case command.VerbHelp:
		return helpReply(command.Verb(c.HelpTopic))
	case command.VerbApps:
		return b.withinBudget(ctx, r, func(ctx context.Context) message { return b.listApps(ctx, u) })
	}
	if c.App != "" && !b.channelAllowed(c.App, sr.ChannelID) {
		b.stats.refused.Add(1)
		return ephemeral(authorizerText(b.channelRefusal(c.App)))
	}
	switch c.Verb {
	case command.VerbStatus:
		return b.withinBudget(ctx, r, func(ctx context.Context) message { return b.status(ctx, u, c.App, c.Env) })
	case command.VerbHistory:
		return b.withinBudget(ctx, r, func(ctx context.Context) message { return b.history(ctx, u, c.App, c.Env, c.Lines) })
	case command.VerbLogs:
		return b.withinBudget(ctx, r, func(ctx context.Context) message { return b.logs(ctx, u, c) })
	case command.VerbDeploy, command.VerbPromote, command.VerbAbort, command.VerbRollback, command.VerbScale, command.VerbReclaim, command.VerbLock, command.VerbUnlock:
		return b.withinBudget(ctx, r, func(ctx context.Context) message { return b.mutate(ctx, sr, c, r) })
	}
	return ephemeral(mrkdwnf("ship cannot run %q from chat. `/ship help` lists every command.", c.Verb))
}

// withinBudget runs fn as a task and waits for it up to AckBudget. A late
// answer goes to the user through response_url instead.
func (b *Bot) withinBudget(ctx context.Context, r *responder, fn func(context.Context) message) message {
	var (
		mu   sync.Mutex
		late bool
		done = make(chan message, 1)
	)
	ok := b.goAsync(func(tctx context.Context) {
		m := fn(tctx)
		mu.Lock()
		if !late {
			done <- m
			mu.Unlock()
			return
		}
		mu.Unlock()
		b.respond(tctx, r, m)
	})
	if !ok {
		return b.busyReply()
	}
	t := time.NewTimer(b.cfg.AckBudget)
	defer t.Stop()
	select {
	case m := <-done:
		return m
	case <-t.C:
	case <-ctx.Done():
	}
	mu.Lock()
	defer mu.Unlock()
	select {
	case m := <-done:
		return m
	default:
		late = true
		return ephemeral("Working on it… the answer will follow here.")
	}
}

// mutate asks the engine whether the user may (it resolves the
// environment and decides) and starts the work; the reply says what was
// started, the outcome follows through response_url.
func (b *Bot) mutate(ctx context.Context, sr slashRequest, c command.Command, r *responder) message {
	u := userFrom(sr)
	env, err := b.eng.Allowed(ctx, u.actor(), engine.Action(c.Verb), c.App, c.Env)
	if err != nil {
		if engine.CodeOf(err) == engine.CodeDenied {
			b.stats.refused.Add(1)
			b.log.Info("command refused", "user", u.id, "verb", c.Verb, "app", c.App, "env", c.Env, "why", err.Error())
		}
		return ephemeral(b.errorTextFor(u, err))
	}
	if !b.goAsync(func(ctx context.Context) {
		m := b.execute(ctx, u, sr, c, env, r)
		b.respond(ctx, r, m)
	}) {
		return b.busyReply()
	}
	return ephemeral(mrkdwnf("On it: %s.", describe(c, env)))
}

// execute calls the engine and says how it went.
func (b *Bot) execute(ctx context.Context, u chatUser, sr slashRequest, c command.Command, env string, r *responder) message {
	a := u.actor()
	var (
		rel release.Release
		rec engine.Reclaimed
		err error
	)
	log := b.log.With("app", c.App, "env", env, "actor", a.Name, "verb", c.Verb)
	switch c.Verb {
	case command.VerbDeploy:
		rel, err = b.eng.Deploy(ctx, a, engine.DeployRequest{
			App: c.App, Env: env, Version: c.Version, Canary: c.Canary, Steps: c.Steps, Rolling: c.Rolling,
		})
	case command.VerbPromote:
		rel, err = b.eng.Promote(ctx, a, engine.PromoteRequest{App: c.App, Env: env})
	case command.VerbAbort:
		reason := c.Reason
		if reason == "" {
			reason = "aborted from chat by " + u.label()
		}
		rel, err = b.eng.Abort(ctx, a, engine.AbortRequest{App: c.App, Env: env, Reason: reason})
	case command.VerbRollback:
		rel, err = b.eng.Rollback(ctx, a, engine.RollbackRequest{App: c.App, Env: env, To: c.To})
	case command.VerbScale:
		err = b.eng.Scale(ctx, a, engine.ScaleRequest{App: c.App, Env: env, Replicas: engine.Replicas(c.Replicas)})
	case command.VerbReclaim:
		rec, err = b.eng.Reclaim(ctx, a, engine.ReclaimRequest{App: c.App, Env: env})
	case command.VerbLock:
		err = b.eng.Lock(ctx, a, engine.LockRequest{App: c.App, Env: env, Reason: c.Reason})
	case command.VerbUnlock:
		err = b.eng.Unlock(ctx, a, engine.UnlockRequest{App: c.App, Env: env})
	}
	if err != nil {
		log.Info("command failed", "err", err)
		return ephemeral(b.errorTextFor(u, err))
	}
	log.Info("command done", "release", rel.ID)
	if rel.ID != 0 {
		line := "" // the message already says who started a deploy
		if c.Verb != command.VerbDeploy {
			line = fmt.Sprintf("%s by %s (/%s)", pastTense(string(c.Verb)), u.label(), strings.TrimPrefix(sr.Command, "/"))
		}
		b.notifier.follow(rel.ID, sr.ChannelID, r, line)
	}
	var where markup
	if ch := b.channelFor(c.App, ""); ch != "" && b.api.client != nil {
		where = " Follow it in " + channelLink(ch) + "."
	}
	switch c.Verb {
	case command.VerbDeploy:
		return b.reply(sr, mrkdwnf("Release #%d: %s %s → %s started (%s).%s", rel.ID, rel.App, rel.Version, rel.Env, strategyText(rel), where))
	case command.VerbPromote:
		return b.reply(sr, mrkdwnf("Promoting %s %s in %s (release #%d).%s", rel.App, rel.Version, rel.Env, rel.ID, where))
	case command.VerbAbort:
		return b.reply(sr, mrkdwnf("Aborted release #%d of %s %s in %s: canary weight is 0.", rel.ID, rel.App, rel.Version, rel.Env))
	case command.VerbRollback:
		return b.reply(sr, mrkdwnf("Rolling %s in %s back to %s (release #%d).%s", rel.App, rel.Env, rel.Version, rel.ID, where))
	case command.VerbScale:
		return b.reply(sr, mrkdwnf("Scaled %s in %s to %d instances.", c.App, env, c.Replicas))
	case command.VerbReclaim:
		return b.reply(sr, reclaimText(rec))
	case command.VerbLock:
		return b.reply(sr, mrkdwnf("Locked %s in %s: %s", c.App, env, c.Reason))
	case command.VerbUnlock:
		return b.reply(sr, mrkdwnf("Unlocked %s in %s.", c.App, env))
	}
	return ephemeral("Done.")
}

// reply is the result of a command: with a bot token the channel hears it
// from the release message, so the result is for the sender; without one
// (Mattermost, or Slack over HTTP without a bot) the channel is told directly.
func (b *Bot) reply(sr slashRequest, text markup) message {
	if sr.Mattermost || b.api.client == nil {
		return message{ResponseType: slackapi.ResponseTypeInChannel, Text: string(text)}
	}
	return ephemeral(text)
}

func describe(c command.Command, env string) markup {
	switch c.Verb {
	case command.VerbDeploy:
		s := mrkdwnf("deploying %s %s to %s", c.App, c.Version, env)
		switch {
		case c.Canary > 0:
			s += mrkdwnf(" as a %s%% canary", c.Canary.Number())
		case c.Rolling:
			s += " (rolling)"
		case len(c.Steps) > 0:
			s += mrkdwnf(" in steps %s", stepsText(c.Steps))
		}
		return s
	case command.VerbRollback:
		if c.To != "" {
			return mrkdwnf("rolling %s in %s back to %s", c.App, env, c.To)
		}
		return mrkdwnf("rolling %s in %s back to its last good release", c.App, env)
	case command.VerbScale:
		return mrkdwnf("scaling %s in %s to %d", c.App, env, c.Replicas)
	case command.VerbReclaim:
		return mrkdwnf("taking back the fields ship manages of %s in %s", c.App, env)
	}
	return mrkdwnf("%s %s in %s", c.Verb, c.App, env)
}

func pastTense(verb string) string {
	switch verb {
	case "promote":
		return "Promoted"
	case "abort":
		return "Aborted"
	case "rollback":
		return "Rollback started"
	}
	return verb
}

// reclaimText says what was forced back and who lost which field.
func reclaimText(r engine.Reclaimed) markup {
	s := r.Summary()
	return esc(strings.ToUpper(s[:1]) + s[1:] + ".")
}

// usageReply explains a command that did not parse. The grammar's
// UsageError already carries the verb's usage (or the list of verbs).
func usageReply(err error) message {
	text := err.Error()
	var ue *command.UsageError
	if !errors.As(err, &ue) {
		text += "\n\n" + helpText("")
	}
	return ephemeral(":warning: " + codeBlocks(text) + "\n`/ship help` lists every command.")
}

// codeBlocks shows the first line as text and the rest (usage) verbatim;
// all of it is escaped, since the first line may quote what the user typed
// and Slack parses <…> inside code blocks too.
func codeBlocks(text string) markup {
	first, rest, ok := strings.Cut(strings.TrimSpace(text), "\n")
	if !ok || strings.TrimSpace(rest) == "" {
		return esc(first)
	}
	return esc(first) + "\n```" + esc(strings.Trim(strings.ReplaceAll(rest, "```", "'''"), "\n")) + "```"
}

func helpReply(topic command.Verb) message {
	return ephemeral("```" + esc(strings.TrimSpace(helpText(topic))) + "```")
}

// engineErrorText turns an engine error into words for the user; detail
// beyond the engine's public message stays in the logs.
func engineErrorText(b *Bot, err error) markup {
	var e *engine.Error
	if errors.As(err, &e) && e.Code != engine.CodeInternal {
		prefix := map[engine.Code]markup{
			engine.CodeInvalid: ":warning: ", engine.CodeNotFound: ":mag: ",
			engine.CodeConflict: ":construction: ", engine.CodeLocked: ":lock: ", engine.CodeDenied: ":no_entry: ",
		}[e.Code]
		// The engine's message echoes input (versions, lock reasons).
		return prefix + esc(e.Message)
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return ":hourglass: ship did not answer in time; check `/ship status` before trying again."
	}
	b.log.Error("engine error", "err", err)
	return ":x: ship hit an internal error; the details are in ship's log."
}

// errorTextFor is engineErrorText for the user who asked: a refusal that
// names them says "You", and Slack user groups it names become mentions.
func (b *Bot) errorTextFor(u chatUser, err error) markup {
	// engineErrorText escaped the policy's sentence; the rewrites below
	// only add ship's own markup (group mentions) to it.
	text := string(engineErrorText(b, err))
	if engine.CodeOf(err) != engine.CodeDenied {
		return markup(text)
	}
	if rest, ok := strings.CutPrefix(text, ":no_entry: "+u.actor().ID+" may not "); ok {
		text = ":no_entry: You may not " + youReplacer.Replace(rest)
	}
	if u.mattermost {
		return markup(text) // Mattermost has no Slack group mentions
	}
	return markup(slackGroupRef.ReplaceAllString(text, "<!subteam^$1>"))
}

// youReplacer speaks to the user the policy's sentence is about.
var youReplacer = strings.NewReplacer("gives them ", "gives you ", "their roles ", "your roles ")

// slackGroupRef is a Slack user group as the policy names it.
var slackGroupRef = regexp.MustCompile(`\bslack:(S[A-Z0-9]+)\b`)

// chatUser is who sent a command or pressed a button. A Mattermost user
// is a Mattermost identity, never a Slack one: IDs are per chat system.
type chatUser struct {
	id, name   string
	mattermost bool
}

func userFrom(sr slashRequest) chatUser {
	return chatUser{id: sr.UserID, name: sr.UserName, mattermost: sr.Mattermost}
}

// actor is the user as the engine knows them: ID slack:U123 (or
// mattermost:…) for the permission policy, and "slack:U123 (alice)" for
// ship's history.
func (u chatUser) actor() engine.Actor {
	prefix := "slack"
	if u.mattermost {
		prefix = "mattermost"
	}
	id := prefix + ":" + u.id
	name := id
	if u.name != "" {
		name += " (" + u.name + ")"
	}
	return engine.Actor{ID: id, Name: name, Source: release.SourceSlack}
}

func (u chatUser) label() string {
	if u.name != "" {
		return u.name
	}
	return u.id
}

func (b *Bot) busyReply() message {
	if b.baseCtx.Err() != nil {
		return ephemeral("ship is restarting; try again in a moment.")
	}
	return ephemeral("ship is busy right now; try again in a moment.")
}
