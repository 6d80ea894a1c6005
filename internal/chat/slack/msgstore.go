package slack

import (
	"context"
	"errors"
	"slices"
	"strings"
	"time"

	"github.com/shipteam/ship/internal/release"
)

// MessageStore keeps each release's channel message (where it is, and the
// lines such as "Promote pressed by alice" that the engine does not know)
// across restarts of ship, so a running release keeps one message. It is
// satisfied by *store.Store. Without one the bot remembers in memory only.
type MessageStore interface {
	ChatMessage(ctx context.Context, releaseID int64) (release.ChatMessage, error)
	PutChatMessage(ctx context.Context, m release.ChatMessage) error
}

// Option changes how New builds a Bot.
type Option func(*Bot)

// WithReplayStore makes the bot remember accepted request signatures in rs
// (see ReplayStore), so a restart does not reopen them to a replay.
func WithReplayStore(rs ReplayStore) Option {
	return func(b *Bot) { b.replays = rs }
}

// WithMessageStore makes the bot keep release messages in ms (see MessageStore).
func WithMessageStore(ms MessageStore) Option {
	return func(b *Bot) { b.messages = ms }
}

// load merges what the store remembers about release id into its entry,
// once per entry: the message's place (unless one is known already) and the
// older lines before those added since. A failing store costs at worst a
// second message, never a rollout: it is logged and the entry goes on.
func (n *notifier) load(ctx context.Context, id int64) {
	ms := n.b.messages
	if ms == nil {
		return
	}
	n.mu.Lock()
	t, ok := n.items[id]
	if !ok || t.loaded {
		n.mu.Unlock()
		return
	}
	n.mu.Unlock()
	m, err := ms.ChatMessage(ctx, id)
	n.mu.Lock()
	defer n.mu.Unlock()
	if t, ok = n.items[id]; !ok || t.loaded {
		return
	}
	t.loaded = true
	if errors.Is(err, release.ErrNotFound) {
		return
	}
	if err != nil {
		n.b.log.Warn("release message state not loaded; it may be posted again", "release", id, "err", err)
		return
	}
	if t.ts == "" && m.TS != "" {
		t.channel, t.ts = m.Channel, m.TS
	}
	if t.origin == "" {
		t.origin = m.Origin
	}
	if t.follower == nil && m.FollowerUser != "" {
		// The response_url is not kept (it is a capability); after a
		// restart the follower hears through chat.postEphemeral.
		t.follower = newResponder("", m.FollowerChannel, m.FollowerUser, n.b.cfg.Now())
	}
	lines := append(slices.Clone(m.Lines), t.timeline...)
	if len(lines) > maxTimeline {
		lines = lines[len(lines)-maxTimeline:]
	}
	t.timeline = lines
	// t.saved stays "": lines added before this load are not in the store
	// yet, so the next save writes the merged whole.
}

// save writes release id's entry to the store when it changed since.
func (n *notifier) save(ctx context.Context, id int64) {
	ms := n.b.messages
	if ms == nil {
		return
	}
	n.mu.Lock()
	t, ok := n.items[id]
	if !ok {
		n.mu.Unlock()
		return
	}
	key := savedKey(t)
	if key == t.saved {
		n.mu.Unlock()
		return
	}
	m := release.ChatMessage{ReleaseID: id, Channel: t.channel, TS: t.ts, Origin: t.origin, Lines: slices.Clone(t.timeline)}
	if t.follower != nil {
		m.FollowerChannel, m.FollowerUser = t.follower.channel, t.follower.user
	}
	n.mu.Unlock()
	// A message just posted must be remembered even when ship is stopping
	// (Run's context ends): otherwise the next start posts it again.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := ms.PutChatMessage(ctx, m); err != nil {
		n.b.log.Warn("release message state not saved; a restart may post it again", "release", id, "err", err)
		return
	}
	n.mu.Lock()
	if t, ok := n.items[id]; ok {
		t.saved = key
	}
	n.mu.Unlock()
}

// savedKey sums up what save writes, to skip unchanged writes.
func savedKey(t *tracked) string {
	var b strings.Builder
	b.WriteString(t.channel + "\x00" + t.ts + "\x00" + t.origin + "\x00")
	if t.follower != nil {
		b.WriteString(t.follower.channel + "\x00" + t.follower.user)
	}
	for _, l := range t.timeline {
		b.WriteString("\x00" + l)
	}
	return b.String()
}
