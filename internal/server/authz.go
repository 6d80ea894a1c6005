package server

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/shipteam/ship/internal/authz"
	"github.com/shipteam/ship/internal/chat/slack"
	"github.com/shipteam/ship/internal/engine"
)

// loadPolicy reads the auth config and folds in the roles/grants an older
// Slack config still carries, with a one-line warning saying where they
// now belong.
func loadPolicy(authFile, slackFile string, sc slack.Config, log *slog.Logger) (*authz.Policy, error) {
	c, err := authz.Load(authFile)
	if err != nil {
		return nil, err
	}
	var old []authz.SlackGrant
	for _, g := range sc.Grants {
		old = append(old, authz.SlackGrant{Apps: g.Apps, Envs: g.Envs, Role: g.Role, Users: g.Users, Groups: g.Groups})
	}
	c, warn, err := authz.FoldSlack(c, sc.Roles, old, slackFile)
	if err != nil {
		return nil, err
	}
	if warn != "" {
		log.Warn(warn)
	}
	p, err := authz.New(c)
	if err != nil {
		return nil, fmt.Errorf("auth config %s: %w", authFile, err)
	}
	log.Info("permissions loaded", "auth_config", authFile, "roles", len(p.Roles()), "grants", len(c.Grants), "default_role", p.DefaultRole())
	return p, nil
}

// Authorizer is the engine's Authorize backed by a policy: the engine
// resolves the app and environment, the policy decides on the actor's
// identity (and the role its credential carries).
func Authorizer(p *authz.Policy) func(ctx context.Context, a engine.Actor, act engine.Action, app, env string) error {
	return func(ctx context.Context, a engine.Actor, act engine.Action, app, env string) error {
		action, ok := authz.ParseAction(string(act))
		if !ok {
			return fmt.Errorf("%s may not %s %s in %s: ship knows no such action", a.ID, act, app, env)
		}
		return p.Check(ctx, authz.Request{Who: authz.Identity(a.ID), Role: a.Role, Action: action, App: app, Env: env})
	}
}
