package slack

import (
	"context"
	"strings"

	"github.com/shipteam/ship/internal/command"
	"github.com/shipteam/ship/internal/engine"
	"github.com/shipteam/ship/internal/runtime"
)

// LogSource is implemented by engines that keep recent instance output
// (*engine.Engine does); without it /ship logs points to the CLI.
type LogSource interface {
	Logs(ctx context.Context, a engine.Actor, app, env, version string, n int) ([]runtime.LogLine, error)
}

const (
	defaultLogLines = 20
	maxLogLines     = 50
	// maxLogChars keeps the reply inside one Slack message section.
	maxLogChars = 2800
)

// logs answers /ship logs APP, to the requester only: output may hold user data.
func (b *Bot) logs(ctx context.Context, u chatUser, c command.Command) message {
	src, ok := b.eng.(LogSource)
	if !ok {
		return ephemeral(mrkdwnf("Logs are not available from chat here. In a terminal: `ship logs %s`", c.App))
	}
	n := c.Lines
	if n <= 0 {
		n = defaultLogLines
	}
	n = min(n, maxLogLines)
	lines, err := src.Logs(ctx, u.actor(), c.App, c.Env, c.LogVersion, n)
	if err != nil {
		return ephemeral(b.errorTextFor(u, err))
	}
	if len(lines) == 0 {
		return ephemeral(mrkdwnf("No recent output from %s.", c.App))
	}
	var out []markup
	size := 0
	// Keep the newest lines that fit.
	for i := len(lines) - 1; i >= 0; i-- {
		l := lines[i]
		// Slack parses <…> even inside a code block: program output is escaped too.
		s := mrkdwnf("%s %s %s %s", l.Time.UTC().Format("15:04:05"), l.Instance, l.Version, strings.ReplaceAll(l.Text, "```", "'''"))
		if size+len(s) > maxLogChars {
			break
		}
		size += len(s) + 1
		out = append(out, s)
	}
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	head := mrkdwnf("Last %d lines of %s (only you see this)", len(out), c.App)
	if c.Follow {
		head += "; chat cannot follow, use `ship logs -f` in a terminal"
	}
	return ephemeral(head + ":\n```" + joinMarkup(out, "\n") + "```")
}
