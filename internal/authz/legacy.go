package authz

import (
	"errors"
	"fmt"
	"slices"
	"sort"
)

// SlackGrant is a grant in the old form: roles:/grants: inside the Slack
// config (docs/slack.md before the auth config existed). Users and Groups
// are bare Slack IDs (U…, S…).
type SlackGrant struct {
	Apps   []string
	Envs   []string
	Role   string
	Users  []string
	Groups []string
}

// oldVerbs are the verbs a role of the old form could carry, and the
// actions each stands for now: scale covered reclaim, lock covered unlock.
var oldVerbs = map[string][]Action{
	"deploy":   {Deploy},
	"promote":  {Promote},
	"abort":    {Abort},
	"rollback": {Rollback},
	"scale":    {Scale, Reclaim},
	"lock":     {Lock},
}

// oldBuiltin are the old form's built-in roles: each maps to today's role
// of the same name, which carries at least what it did.
var oldBuiltin = []string{RoleAdmin, RoleDeployer, RoleOperator, RoleResponder}

// FoldSlack adds the old form's roles and grants to c and returns the
// one-line warning to log. Old users and groups are Slack identities only:
// a Mattermost user never gets them. An old role that has the name of a
// role c (or ship) already defines differently is renamed slack-NAME.
func FoldSlack(c Config, roles map[string][]string, grants []SlackGrant, file string) (Config, string, error) {
	if len(roles) == 0 && len(grants) == 0 {
		return c, "", nil
	}
	where := "the Slack config"
	if file != "" {
		where = "the Slack config " + file
	}
	var errs []error
	taken := map[string]bool{}
	for n := range Builtin() {
		taken[n] = true
	}
	for _, r := range c.Roles {
		taken[r.Name] = true
	}
	rename := map[string]string{}
	names := make([]string, 0, len(roles))
	for n := range roles {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, name := range names {
		var acts []Action
		for _, v := range roles[name] {
			a, ok := oldVerbs[v]
			if !ok {
				errs = append(errs, fmt.Errorf("%s: roles.%s: unknown verb %q (want one of deploy, promote, abort, rollback, scale, lock)", where, name, v))
				continue
			}
			acts = append(acts, a...)
		}
		acts = append(acts, Read)
		slices.Sort(acts)
		acts = slices.Compact(acts)
		newName := name
		if taken[name] {
			newName = "slack-" + name
		}
		rename[name] = newName
		taken[newName] = true
		c.Roles = append(c.Roles, Role{Name: newName, Actions: acts})
	}
	for i, g := range grants {
		f := fmt.Sprintf("%s: grants[%d]", where, i)
		role, ok := rename[g.Role]
		if !ok {
			if !slices.Contains(oldBuiltin, g.Role) {
				errs = append(errs, fmt.Errorf("%s: unknown role %q", f, g.Role))
				continue
			}
			role = g.Role
		}
		if len(g.Apps) == 0 || len(g.Envs) == 0 {
			errs = append(errs, fmt.Errorf(`%s: apps and envs must not be empty (use ["*"] for all)`, f))
			continue
		}
		if len(g.Users) == 0 && len(g.Groups) == 0 {
			errs = append(errs, fmt.Errorf("%s: names no users and no groups", f))
			continue
		}
		ng := Grant{Role: role, Apps: star(g.Apps), Envs: star(g.Envs), Where: fmt.Sprintf("%s grants[%d]", where, i)}
		for _, u := range g.Users {
			ng.Users = append(ng.Users, Identity(KindSlack+":"+u))
		}
		for _, gr := range g.Groups {
			ng.Groups = append(ng.Groups, Identity(KindSlack+":"+gr))
		}
		c.Grants = append(c.Grants, ng)
	}
	if err := errors.Join(errs...); err != nil {
		return Config{}, "", err
	}
	if err := c.Validate(); err != nil {
		return Config{}, "", fmt.Errorf("%s: roles/grants: %w", where, err)
	}
	warn := fmt.Sprintf("%s still carries roles/grants: loaded them as grants for slack: users (%d roles, %d grants); they now belong in the auth config (--auth-config, keys roles and grants with users like slack:U0123, docs/permissions.md)",
		where, len(roles), len(grants))
	return c, warn, nil
}

// star turns the old form's "*" into "every" (nil).
func star(list []string) []string {
	if slices.Contains(list, "*") {
		return nil
	}
	return slices.Clone(list)
}
