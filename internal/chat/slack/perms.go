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

// authorizer decides who may run which verb on which app and environment,
// from the grants in Config; user groups are resolved through the Web API
// and cached for GroupCacheTTL.
type authorizer struct {
	cfg Config
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

func newAuthorizer(cfg Config, api *webAPI) *authorizer {
	return &authorizer{cfg: cfg, api: api, groups: map[string]groupEntry{}, fetching: map[string]*sync.Mutex{}}
}

func matches(list []string, v string) bool {
	return slices.Contains(list, "*") || slices.Contains(list, v)
}

// allowed reports whether user may run verb on app in env, and if not, a
// sentence for that user explaining why and who could.
func (p *authorizer) allowed(ctx context.Context, user, verb, app, env string) (bool, string) {
	var candidates []Grant
	var lookupErr error
	for _, g := range p.cfg.Grants {
		verbs, _ := p.cfg.roleVerbs(g.Role)
		if !matches(g.Apps, app) || !matches(g.Envs, env) || !slices.Contains(verbs, verb) {
			continue
		}
		if slices.Contains(g.Users, user) {
			return true, ""
		}
		candidates = append(candidates, g)
	}
	for _, g := range candidates {
		for _, group := range g.Groups {
			in, err := p.inGroup(ctx, group, user)
			if err != nil {
				lookupErr = err
				continue
			}
			if in {
				return true, ""
			}
		}
	}
	if lookupErr != nil {
		return false, fmt.Sprintf(":no_entry: ship could not check your user groups with Slack just now (%v), so it will not %s %s in %s. Try again in a minute.", lookupErr, verb, app, env)
	}
	return false, refusalText(verb, app, env, candidates)
}

func refusalText(verb, app, env string, candidates []Grant) string {
	var b strings.Builder
	fmt.Fprintf(&b, ":no_entry: You may not *%s* %s in %s: no grant in ship's Slack config gives you that.", verb, app, env)
	var roles, groups []string
	for _, g := range candidates {
		roles = append(roles, g.Role)
		for _, gr := range g.Groups {
			groups = append(groups, "<!subteam^"+gr+">")
		}
	}
	roles = uniqSorted(roles)
	groups = uniqSorted(groups)
	switch {
	case len(groups) > 0:
		fmt.Fprintf(&b, " Members of %s may (role %s); ask one of them, or ask an admin to add you.", strings.Join(groups, ", "), strings.Join(roles, ", "))
	case len(roles) > 0:
		fmt.Fprintf(&b, " Users with role %s may; ask one of them, or ask an admin to add you.", strings.Join(roles, ", "))
	default:
		b.WriteString(" Nobody may do that from chat yet; an admin can add a grant (see docs/slack.md).")
	}
	return b.String()
}

func uniqSorted(s []string) []string {
	sort.Strings(s)
	return slices.Compact(s)
}

// inGroup reports whether user belongs to group, asking Slack at most once
// per GroupCacheTTL per group.
func (p *authorizer) inGroup(ctx context.Context, group, user string) (bool, error) {
	now := p.cfg.Now()
	p.mu.Lock()
	if e, ok := p.groups[group]; ok && now.Sub(e.fetched) < p.cfg.GroupCacheTTL {
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
	if e, ok := p.groups[group]; ok && now.Sub(e.fetched) < p.cfg.GroupCacheTTL {
		p.mu.Unlock()
		return e.members[user], nil
	}
	p.mu.Unlock()

	users, err := p.api.groupMembers(ctx, group)
	if err != nil {
		return false, fmt.Errorf("user group %s: %w", group, err)
	}
	e := groupEntry{members: make(map[string]bool, len(users)), fetched: p.cfg.Now()}
	for _, u := range users {
		e.members[u] = true
	}
	p.mu.Lock()
	p.groups[group] = e
	p.mu.Unlock()
	return e.members[user], nil
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
