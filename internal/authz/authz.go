// Package authz decides who may do what: identities (API tokens, Slack
// users and user groups, Mattermost users, later dashboard sessions) hold
// roles through grants, and roles carry actions on apps (globs) in
// environments. It is the one place such a decision is made; the engine
// asks it before every command and read, so every front end is held to the
// same rules. Front ends only say who is asking.
//
// It must not talk to Slack or the store itself: group membership comes
// through the Groups port, a token's role arrives with the request.
package authz

import (
	"context"
	"fmt"
	"path"
	"slices"
	"sort"
	"strings"
	"sync"
)

// Action is something an identity may be allowed to do.
type Action string

const (
	Deploy   Action = "deploy"
	Promote  Action = "promote"
	Abort    Action = "abort"
	Rollback Action = "rollback"
	Scale    Action = "scale"
	Lock     Action = "lock" // also covers unlock
	Reclaim  Action = "reclaim"
	Read     Action = "read"
	// Tokens is managing API tokens: create, list, rotate, revoke. Only
	// the built-in admin role carries it, and only on every app and
	// environment.
	Tokens Action = "tokens"
)

// ReleaseActions are the actions a role declared in the config may carry.
var ReleaseActions = []Action{Deploy, Promote, Abort, Rollback, Scale, Lock, Reclaim, Read}

// ParseAction maps a command name to the action it needs: unlock is lock's.
func ParseAction(s string) (Action, bool) {
	if s == "unlock" {
		return Lock, true
	}
	a := Action(s)
	return a, slices.Contains(ReleaseActions, a) || a == Tokens
}

// Identity names who asks, as KIND:ID: token:alice, slack:U0123,
// slack:S0FRONT (a Slack user group), mattermost:x8f3…, session:… (later).
type Identity string

// Identity kinds.
const (
	KindToken      = "token"
	KindSlack      = "slack"
	KindMattermost = "mattermost"
	KindSession    = "session"
)

var kinds = []string{KindToken, KindSlack, KindMattermost, KindSession}

// Kind is the part before the colon.
func (i Identity) Kind() string { k, _, _ := strings.Cut(string(i), ":"); return k }

// ID is the part after the colon.
func (i Identity) ID() string { _, id, _ := strings.Cut(string(i), ":"); return id }

// Valid reports whether i is KIND:ID with a known kind and a plain ID.
func (i Identity) Valid() bool {
	k, id, ok := strings.Cut(string(i), ":")
	return ok && slices.Contains(kinds, k) && id != "" && len(id) <= 128 &&
		!strings.ContainsFunc(id, func(r rune) bool { return r <= ' ' || r == 0x7f || r == ':' })
}

// Role is a named set of actions, optionally scoped to some apps and
// environments (nil: all).
type Role struct {
	Name    string
	Actions []Action
	Apps    []string
	Envs    []string
	builtin bool
}

// Built-in role names.
const (
	RoleAdmin      = "admin"
	RoleMaintainer = "maintainer"
	RoleDeployer   = "deployer"
	RoleOperator   = "operator"
	RoleResponder  = "responder"
	RoleViewer     = "viewer"
)

// Builtin returns the built-in roles; a config may not redefine them.
func Builtin() map[string]Role {
	return map[string]Role{
		RoleAdmin:      {Name: RoleAdmin, Actions: append(slices.Clone(ReleaseActions), Tokens), builtin: true},
		RoleMaintainer: {Name: RoleMaintainer, Actions: slices.Clone(ReleaseActions), builtin: true},
		RoleDeployer:   {Name: RoleDeployer, Actions: []Action{Deploy, Promote, Abort, Rollback, Read}, builtin: true},
		RoleOperator:   {Name: RoleOperator, Actions: []Action{Promote, Abort, Rollback, Scale, Lock, Reclaim, Read}, builtin: true},
		RoleResponder:  {Name: RoleResponder, Actions: []Action{Abort, Rollback, Read}, builtin: true},
		RoleViewer:     {Name: RoleViewer, Actions: []Action{Read}, builtin: true},
	}
}

// Grant gives Role to Users and members of Groups on Apps in Envs (nil:
// all). Where says where it was declared, for messages.
type Grant struct {
	Role   string
	Users  []Identity
	Groups []Identity
	Apps   []string
	Envs   []string
	Where  string
}

// Groups is the port a front end implements to say whether a user is in
// a group of its chat system (user and group without the KIND: prefix).
// Answers may be cached by the implementation; an error means "unknown",
// never "no".
type Groups interface {
	InGroup(ctx context.Context, group, user string) (bool, error)
}

// Request is one question: may Who do Action on App in Env? Role is a
// role the credential itself carries (an API token's), granted on every
// app and environment.
type Request struct {
	Who    Identity
	Role   string
	Action Action
	App    string
	Env    string
}

// Policy answers Requests. Build it with New; it is safe for concurrent use.
type Policy struct {
	roles       map[string]Role
	grants      []Grant
	defaultRole string

	mu     sync.RWMutex
	groups map[string]Groups // by identity kind
}

// New checks cfg and builds a Policy.
func New(cfg Config) (*Policy, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	roles := Builtin()
	for _, r := range cfg.Roles {
		roles[r.Name] = r
	}
	def := cfg.DefaultRole
	if def == "" {
		def = RoleViewer
	}
	if def == NoRole {
		def = ""
	}
	return &Policy{roles: roles, grants: slices.Clone(cfg.Grants), defaultRole: def, groups: map[string]Groups{}}, nil
}

// SetGroups registers how members of groups of one kind (KindSlack) are
// resolved. Without one, a group grant never matches and a member of that
// kind who needs it is told the groups could not be checked.
func (p *Policy) SetGroups(kind string, g Groups) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.groups[kind] = g
}

// Roles lists every role name, built-in first (admin … viewer), then the
// config's alphabetically.
func (p *Policy) Roles() []string {
	var out, extra []string
	for _, n := range []string{RoleAdmin, RoleMaintainer, RoleDeployer, RoleOperator, RoleResponder, RoleViewer} {
		out = append(out, n)
	}
	for n, r := range p.roles {
		if !r.builtin {
			extra = append(extra, n)
		}
	}
	sort.Strings(extra)
	return append(out, extra...)
}

// HasRole reports whether name is a role of this policy.
func (p *Policy) HasRole(name string) bool { _, ok := p.roles[name]; return ok }

// DefaultRole is the role every authenticated identity holds ("" for none).
func (p *Policy) DefaultRole() string { return p.defaultRole }

// Allowed is Check as a bool, for filtering lists (nothing is explained).
func (p *Policy) Allowed(ctx context.Context, req Request) bool { return p.Check(ctx, req) == nil }

// Check answers nil when req is allowed, else a *Denial whose Error() is a
// sentence fit for the person asking.
func (p *Policy) Check(ctx context.Context, req Request) error {
	d := &Denial{Who: req.Who, Action: req.Action, App: req.App, Env: req.Env} // says what was asked: unlock
	if req.Action == "unlock" {
		req.Action = Lock
	}
	if !req.Who.Valid() {
		d.Reason = "ship does not know who is asking"
		return d
	}
	own := p.ownGrants(req)
	var withAction []Grant
	for _, g := range own {
		if p.covers(g, req.Action, req.App, req.Env) {
			return nil
		}
		if r, ok := p.roles[g.Role]; ok && slices.Contains(r.Actions, req.Action) {
			withAction = append(withAction, g)
		}
	}
	// Group grants that would allow it: is the user a member of one?
	var candidates []Grant
	var lookupErr error
	gr := p.groupsFor(req.Who.Kind())
	for _, g := range p.grants {
		if !p.covers(g, req.Action, req.App, req.Env) {
			continue
		}
		candidates = append(candidates, g)
		for _, group := range g.Groups {
			if group.Kind() != req.Who.Kind() {
				continue
			}
			if gr == nil {
				lookupErr = fmt.Errorf("no way to resolve %s groups", group.Kind())
				continue
			}
			in, err := gr.InGroup(ctx, group.ID(), req.Who.ID())
			if err != nil {
				lookupErr = err
				continue
			}
			if in {
				return nil
			}
		}
	}
	switch {
	case lookupErr != nil:
		d.Reason = "could not check your user groups, try again"
		d.LookupErr = lookupErr
	case req.Role != "" && req.Who.Kind() == KindToken && !p.HasRole(req.Role):
		d.Reason = fmt.Sprintf("their token's role %q is not a role of this server; an admin can rotate it or declare the role", req.Role)
	case len(withAction) > 0:
		d.Reason = "their roles grant " + string(req.Action) + " " + scopeText(p, withAction, req.App, req.Env) + " only"
	default:
		d.Reason = "no grant gives them " + string(req.Action)
		if may := p.rolesThatMay(req.Action, req.App, req.Env); len(may) > 0 {
			d.Reason += "; roles that may: " + strings.Join(may, ", ")
		}
		d.Hint = p.whoCould(candidates)
	}
	return d
}

// ownGrants are the grants naming req.Who directly, plus the credential's
// role and the default role on every app and environment.
func (p *Policy) ownGrants(req Request) []Grant {
	var out []Grant
	if req.Role != "" && req.Who.Kind() == KindToken {
		out = append(out, Grant{Role: req.Role, Users: []Identity{req.Who}, Where: "the token's role"})
	}
	for _, g := range p.grants {
		if slices.Contains(g.Users, req.Who) {
			out = append(out, g)
		}
	}
	if p.defaultRole != "" {
		out = append(out, Grant{Role: p.defaultRole, Where: "default_role"})
	}
	return out
}

func (p *Policy) groupsFor(kind string) Groups {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return p.groups[kind]
}

// covers reports whether g's role carries act on app in env, within the
// grant's and the role's scopes.
func (p *Policy) covers(g Grant, act Action, app, env string) bool {
	r, ok := p.roles[g.Role]
	if !ok || !slices.Contains(r.Actions, act) {
		return false
	}
	return matchAny(g.Apps, app) && matchAny(r.Apps, app) && matchAny(g.Envs, env) && matchAny(r.Envs, env)
}

// matchAny reports whether name matches one of the globs (path.Match);
// nil matches everything.
func matchAny(globs []string, name string) bool {
	if globs == nil {
		return true
	}
	for _, g := range globs {
		if ok, _ := path.Match(g, name); ok {
			return true
		}
	}
	return false
}

// rolesThatMay lists roles that carry act on app/env, fewest actions first.
func (p *Policy) rolesThatMay(act Action, app, env string) []string {
	var rs []Role
	for _, r := range p.roles {
		if slices.Contains(r.Actions, act) && matchAny(r.Apps, app) && matchAny(r.Envs, env) {
			rs = append(rs, r)
		}
	}
	sort.Slice(rs, func(i, j int) bool {
		if len(rs[i].Actions) != len(rs[j].Actions) {
			return len(rs[i].Actions) < len(rs[j].Actions)
		}
		return rs[i].Name < rs[j].Name
	})
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = r.Name
	}
	return out
}

// whoCould names the groups (and how many users) whose grants would allow
// it, so the person asking knows whom to ask.
func (p *Policy) whoCould(candidates []Grant) string {
	var groups, groupRoles, userRoles []string
	for _, g := range candidates {
		if len(g.Groups) > 0 {
			groupRoles = append(groupRoles, g.Role)
		}
		if len(g.Users) > 0 {
			userRoles = append(userRoles, g.Role)
		}
		for _, gr := range g.Groups {
			groups = append(groups, string(gr))
		}
	}
	groups, groupRoles, userRoles = uniqSorted(groups), uniqSorted(groupRoles), uniqSorted(userRoles)
	switch {
	case len(groups) > 0:
		return fmt.Sprintf("members of %s may (role %s); ask one of them, or ask an admin for a grant", strings.Join(groups, ", "), strings.Join(groupRoles, ", "))
	case len(userRoles) > 0:
		return fmt.Sprintf("users with role %s here may; ask one of them, or ask an admin for a grant", strings.Join(userRoles, ", "))
	}
	return "an admin can add a grant in the auth config (docs/permissions.md)"
}

// scopeText says where grants apply: "in staging", "on reports-*",
// "on reports in staging"; several scopes are joined with "or".
func scopeText(p *Policy, gs []Grant, app, env string) string {
	var parts []string
	for _, g := range gs {
		r := p.roles[g.Role]
		apps, envs := intersectText(g.Apps, r.Apps, "every app"), intersectText(g.Envs, r.Envs, "every environment")
		appOK := matchAny(g.Apps, app) && matchAny(r.Apps, app)
		envOK := matchAny(g.Envs, env) && matchAny(r.Envs, env)
		var s string
		switch {
		case appOK:
			s = "in " + envs
		case envOK:
			s = "on " + apps
		default:
			s = "on " + apps + " in " + envs
		}
		parts = append(parts, s)
	}
	return strings.Join(uniqSorted(parts), " or ")
}

func intersectText(a, b []string, all string) string {
	list := a
	switch {
	case a == nil && b == nil:
		return all
	case a == nil:
		list = b
	case b != nil:
		list = append(slices.Clone(a), b...) // both apply; name both
	}
	return strings.Join(uniqSorted(slices.Clone(list)), ", ")
}

func uniqSorted(s []string) []string {
	sort.Strings(s)
	return slices.Compact(s)
}

// Denial is a refused Request. Error() is one sentence: who may not do
// what, and why.
type Denial struct {
	Who       Identity
	Action    Action
	App, Env  string
	Reason    string
	Hint      string // who could, when known
	LookupErr error  // a group lookup failed: detail for logs
}

// Unwrap is the group lookup failure behind a denial, if any (for logs).
func (d *Denial) Unwrap() error { return d.LookupErr }

func (d *Denial) Error() string {
	what := string(d.Action) + " " + d.App + " in " + d.Env
	switch {
	case d.Action == Tokens:
		what = "manage API tokens"
	case d.App == "" && d.Env == "":
		what = string(d.Action)
	}
	who := string(d.Who)
	if who == "" {
		who = "an unidentified caller"
	}
	s := who + " may not " + what + ": " + d.Reason
	if d.Hint != "" {
		s += "; " + d.Hint
	}
	return s
}
