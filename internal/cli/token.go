package cli

import (
	"context"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"
)

// builtinRoles are the roles every server knows (internal/authz); a
// server's auth config may declare more.
const builtinRoles = "admin, maintainer, deployer, operator, responder, viewer"

const tokenUsage = `usage: ship token create NAME --role ROLE [--output json]
       ship token list [--output json]
       ship token rotate NAME [--output json]
       ship token revoke NAME [--output json]
Only identities with the admin role may do this (the token ship serve printed
on its first start is one).
create  a new token for user NAME carrying ROLE on every app and environment:
        ` + builtinRoles + `,
        or a role of the server's auth config (docs/permissions.md).
rotate  replaces every token of NAME by one new token with the same role,
        printed once; the old ones stop working at once.
revoke  deletes every token of NAME: their next request is refused and their
        open event streams end. The last admin token cannot be revoked.`

// runToken is `ship token create NAME --role ROLE`, `ship token list`,
// `ship token rotate NAME` and `ship token revoke NAME`. They are CLI-only
// (like serve), not part of internal/command's grammar, so Slack and the
// dashboard cannot issue tokens.
func runToken(ctx context.Context, g globals, args []string, env Env) int {
	var pos []string
	asJSON := false
	role := ""
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--output" || a == "-o" || a == "--role":
			if i+1 >= len(args) {
				fmt.Fprintf(env.Stderr, "ship: %s needs a value\n\n%s\n", a, tokenUsage)
				return ExitUsage
			}
			i++
			if a == "--role" {
				role = args[i]
				continue
			}
			a = "--output=" + args[i]
			fallthrough
		case strings.HasPrefix(a, "--output="):
			switch v := strings.TrimPrefix(a, "--output="); v {
			case "json":
				asJSON = true
			case "text", "":
			default:
				fmt.Fprintf(env.Stderr, "ship: --output %q: use json or text\n", v)
				return ExitUsage
			}
		case strings.HasPrefix(a, "--role="):
			role = strings.TrimPrefix(a, "--role=")
		case a == "-h" || a == "--help":
			fmt.Fprintln(env.Stdout, tokenUsage)
			return ExitOK
		case strings.HasPrefix(a, "-"):
			fmt.Fprintf(env.Stderr, "ship: unknown flag %s\n\n%s\n", a, tokenUsage)
			return ExitUsage
		default:
			pos = append(pos, a)
		}
	}
	if g.help {
		fmt.Fprintln(env.Stdout, tokenUsage)
		return ExitOK
	}
	if !tokenArgsOK(pos) {
		fmt.Fprintf(env.Stderr, "ship: token: expected `create NAME --role ROLE`, `list`, `rotate NAME` or `revoke NAME`\n\n%s\n", tokenUsage)
		return ExitUsage
	}
	switch {
	case pos[0] == "create" && role == "":
		fmt.Fprintf(env.Stderr, "ship: token create %s needs --role ROLE: one of %s, or a role of the server's auth config\n\n%s\n", pos[1], builtinRoles, tokenUsage)
		return ExitUsage
	case pos[0] != "create" && role != "":
		fmt.Fprintf(env.Stderr, "ship: --role is for token create only (rotate keeps the role)\n\n%s\n", tokenUsage)
		return ExitUsage
	}
	client, err := connect(g, env)
	if err != nil {
		fmt.Fprintf(env.Stderr, "ship: %v\n", err)
		return ExitUsage
	}
	r := &runner{c: client, env: env, json: asJSON}
	return r.exitCode(r.token(ctx, pos, role))
}

// tokenArgsOK says whether pos is a known token verb with its arguments.
func tokenArgsOK(pos []string) bool {
	if len(pos) == 0 {
		return false
	}
	switch pos[0] {
	case "create", "revoke", "rotate":
		return len(pos) == 2
	case "list":
		return len(pos) == 1
	}
	return false
}

func (r *runner) token(ctx context.Context, pos []string, role string) error {
	switch pos[0] {
	case "revoke":
		rv, err := r.c.RevokeTokens(ctx, pos[1])
		if err != nil {
			return err
		}
		if r.json {
			return r.printJSON(rv)
		}
		fmt.Fprintf(r.env.Stdout, "revoked %d token(s) of user %s\n", rv.Revoked, rv.Name)
		return nil
	case "create":
		nt, err := r.c.CreateToken(ctx, pos[1], role)
		if err != nil {
			return err
		}
		if r.json {
			return r.printJSON(nt)
		}
		fmt.Fprintf(r.env.Stdout, "API token for user %s, role %s (shown only this once; %s sets it as SHIP_TOKEN):\n%s\n", nt.Name, nt.Role, nt.Name, nt.Token)
		return nil
	case "rotate":
		nt, err := r.c.RotateTokens(ctx, pos[1])
		if err != nil {
			return err
		}
		if r.json {
			return r.printJSON(nt)
		}
		fmt.Fprintf(r.env.Stdout, "new API token for user %s, role %s (%d old token(s) revoked; shown only this once):\n%s\n", nt.Name, nt.Role, nt.Revoked, nt.Token)
		return nil
	}
	ts, err := r.c.Tokens(ctx)
	if err != nil {
		return err
	}
	if r.json {
		return r.printJSON(ts)
	}
	tw := tabwriter.NewWriter(r.env.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "USER\tROLE\tCREATED")
	for _, t := range ts {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", t.Name, t.Role, t.Created.UTC().Format(time.RFC3339))
	}
	return tw.Flush()
}
