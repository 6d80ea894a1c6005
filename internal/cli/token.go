package cli

import (
	"context"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"
)

const tokenUsage = `usage: ship token create NAME [--output json]
       ship token list [--output json]
       ship token revoke NAME [--output json]
Only the admin user (the token ship serve printed on its first start) may do this.
revoke deletes every token of user NAME: their next request is refused.`

// runToken is `ship token create NAME`, `ship token list` and `ship token
// revoke NAME`. They are
// CLI-only (like serve), not part of internal/command's grammar, so Slack
// and the dashboard cannot issue tokens.
func runToken(ctx context.Context, g globals, args []string, env Env) int {
	var pos []string
	asJSON := false
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--output" || a == "-o":
			if i+1 >= len(args) {
				fmt.Fprintf(env.Stderr, "ship: --output needs a value\n\n%s\n", tokenUsage)
				return ExitUsage
			}
			i++
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
		fmt.Fprintf(env.Stderr, "ship: token: expected `create NAME`, `list` or `revoke NAME`\n\n%s\n", tokenUsage)
		return ExitUsage
	}
	client, err := connect(g, env)
	if err != nil {
		fmt.Fprintf(env.Stderr, "ship: %v\n", err)
		return ExitUsage
	}
	r := &runner{c: client, env: env, json: asJSON}
	return r.exitCode(r.token(ctx, pos))
}

// tokenArgsOK says whether pos is a known token verb with its arguments.
func tokenArgsOK(pos []string) bool {
	if len(pos) == 0 {
		return false
	}
	switch pos[0] {
	case "create", "revoke":
		return len(pos) == 2
	case "list":
		return len(pos) == 1
	}
	return false
}

func (r *runner) token(ctx context.Context, pos []string) error {
	if pos[0] == "revoke" {
		rv, err := r.c.RevokeTokens(ctx, pos[1])
		if err != nil {
			return err
		}
		if r.json {
			return r.printJSON(rv)
		}
		fmt.Fprintf(r.env.Stdout, "revoked %d token(s) of user %s\n", rv.Revoked, rv.Name)
		return nil
	}
	if pos[0] == "create" {
		nt, err := r.c.CreateToken(ctx, pos[1])
		if err != nil {
			return err
		}
		if r.json {
			return r.printJSON(nt)
		}
		fmt.Fprintf(r.env.Stdout, "API token for user %s (shown only this once; %s sets it as SHIP_TOKEN):\n%s\n", nt.Name, nt.Name, nt.Token)
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
	fmt.Fprintln(tw, "USER\tCREATED")
	for _, t := range ts {
		fmt.Fprintf(tw, "%s\t%s\n", t.Name, t.Created.UTC().Format(time.RFC3339))
	}
	return tw.Flush()
}
