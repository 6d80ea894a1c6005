package slack

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"
)

// Groups answers whether a Slack user is in a Slack user group, through
// the Web API (usergroups.users.list), caching each group's members for
// GroupCacheTTL. It is the Slack side of internal/authz's Groups port: the
// policy decides what a group may do, this only says who is in it.
type Groups struct {
	ttl func() time.Duration
	now func() time.Time
	api *webAPI

	mu     sync.Mutex
	groups map[string]groupEntry
	// fetching serialises lookups of one group so a burst of presses makes one call.
	fetching map[string]*sync.Mutex
}

type groupEntry struct {
	members map[string]bool
	fetched time.Time
}

func newGroups(cfg Config, api *webAPI) *Groups {
	return &Groups{ttl: func() time.Duration { return cfg.GroupCacheTTL }, now: cfg.Now, api: api,
		groups: map[string]groupEntry{}, fetching: map[string]*sync.Mutex{}}
}

// Groups returns the bot's user group lookup, for the permission policy.
func (b *Bot) Groups() *Groups { return b.groups }

// InGroup reports whether user (U…) belongs to group (S…), asking Slack at
// most once per GroupCacheTTL per group. An error means "could not tell".
func (p *Groups) InGroup(ctx context.Context, group, user string) (bool, error) {
	if p.api.client == nil {
		return false, fmt.Errorf("user group %s: no bot_token to read user groups with", group)
	}
	now := p.now()
	ttl := p.ttl()
	p.mu.Lock()
	if e, ok := p.groups[group]; ok && now.Sub(e.fetched) < ttl {
		p.mu.Unlock()
		return e.members[user], nil
	}
	fm := p.fetching[group]
	if fm == nil {
		fm = &sync.Mutex{}
		p.fetching[group] = fm
	}
	p.mu.Unlock()

	fm.Lock()
	defer fm.Unlock()
	p.mu.Lock()
	if e, ok := p.groups[group]; ok && now.Sub(e.fetched) < ttl {
		p.mu.Unlock()
		return e.members[user], nil
	}
	p.mu.Unlock()

	users, err := p.api.groupMembers(ctx, group)
	if err != nil {
		return false, fmt.Errorf("user group %s: %w", group, err)
	}
	e := groupEntry{members: make(map[string]bool, len(users)), fetched: p.now()}
	for _, u := range users {
		e.members[u] = true
	}
	p.mu.Lock()
	p.groups[group] = e
	p.mu.Unlock()
	return e.members[user], nil
}

func uniqSorted(s []string) []string {
	sort.Strings(s)
	return slices.Compact(s)
}

// channelAllowed reports whether commands about app may be run in channel.
func (b *Bot) channelAllowed(app, channel string) bool {
	ac, ok := b.cfg.Apps[app]
	if !ok || len(ac.AllowedChannels) == 0 {
		return true
	}
	return channel == ac.Channel || slices.Contains(ac.AllowedChannels, channel)
}

func (b *Bot) channelRefusal(app string) string {
	ac := b.cfg.Apps[app]
	var chans []string
	for _, c := range append([]string{ac.Channel}, ac.AllowedChannels...) {
		if c != "" {
			chans = append(chans, "<#"+c+">")
		}
	}
	return fmt.Sprintf(":no_entry: Commands about %s are only taken in %s.", app, strings.Join(uniqSorted(chans), ", "))
}

// channelFor is where app's release messages go: its own channel, else the
// default, else the channel the command came from.
func (b *Bot) channelFor(app, origin string) string {
	if ac, ok := b.cfg.Apps[app]; ok && ac.Channel != "" {
		return ac.Channel
	}
	if b.cfg.DefaultChannel != "" {
		return b.cfg.DefaultChannel
	}
	return origin
}
