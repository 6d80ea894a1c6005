package authz

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
)

// groupTable is the Groups port over a fixed table; fail makes every
// lookup fail like Slack being down.
type groupTable struct {
	members map[string][]string
	fail    bool
	calls   atomic.Int64
}

func (g *groupTable) InGroup(_ context.Context, group, user string) (bool, error) {
	g.calls.Add(1)
	if g.fail {
		return false, errors.New("slack: 503")
	}
	for _, u := range g.members[group] {
		if u == user {
			return true, nil
		}
	}
	return false, nil
}

func examplePolicy(t *testing.T) (*Policy, *groupTable) {
	t.Helper()
	c, err := Load(filepath.Join("..", "..", "examples", "auth.yaml"))
	if err != nil {
		t.Fatalf("examples/auth.yaml: %v", err)
	}
	p, err := New(c)
	if err != nil {
		t.Fatal(err)
	}
	g := &groupTable{members: map[string][]string{"S0FRONTEND": {"U0FE"}, "S0ONCALL": {"U0PAGER"}}}
	p.SetGroups(KindSlack, g)
	return p, g
}

func TestExampleConfigDecisions(t *testing.T) {
	p, _ := examplePolicy(t)
	cases := []struct {
		who    Identity
		role   string
		act    Action
		app    string
		env    string
		allow  bool
		reason string // substring of the denial
	}{
		{"slack:U0INFRA", "", Reclaim, "resizer", "production", true, ""},
		{"slack:U0INFRA", "", Tokens, "*", "*", true, ""},
		{"token:alice", "", Deploy, "resizer", "staging", true, ""},
		{"token:alice", "", Deploy, "resizer", "production", false, "token:alice may not deploy resizer in production: their roles grant deploy in staging only"},
		{"token:alice", "", Deploy, "thumbs", "staging", false, "their roles grant deploy on resizer only"},
		{"token:alice", "", Read, "thumbs", "production", true, ""}, // default_role viewer
		{"token:bob", "", Scale, "resizer", "staging", false, "no grant gives them scale; roles that may: operator, maintainer, admin"},
		{"token:bob", "operator", Scale, "resizer", "staging", true, ""}, // the token's own role
		{"token:bob", "operator", Tokens, "*", "*", false, "may not manage API tokens"},
		{"token:root", "admin", Tokens, "*", "*", true, ""},
		{"slack:U0FE", "", Deploy, "resizer", "production", true, ""}, // via group
		{"slack:U0PAGER", "", Abort, "thumbs", "production", true, ""},
		{"slack:U0PAGER", "", Abort, "thumbs", "staging", false, "no grant gives them abort"},
		{"slack:U0PAGER", "", Lock, "thumbs", "production", false, "roles that may: operator, maintainer, admin"},
		{"slack:U0NEW", "", Deploy, "resizer", "production", false, "members of slack:S0FRONTEND may (role deployer)"},
		{"slack:U0ANALYST", "", Deploy, "reports-daily", "staging", true, ""}, // scoped role
		{"slack:U0ANALYST", "", Deploy, "resizer", "staging", false, "their roles grant deploy on reports* only"},
		{"slack:U0ANALYST", "", Scale, "reports-daily", "staging", false, "no grant gives them scale"},
		{"mattermost:analyst01", "", Promote, "reports", "production", true, ""},
		// A Mattermost user never gets a Slack user's grants.
		{"mattermost:U0INFRA", "", Deploy, "resizer", "production", false, "no grant gives them deploy"},
		// unlock is lock's.
		{"slack:U0INFRA", "", "unlock", "resizer", "production", true, ""},
		{"token:bob", "", "unlock", "resizer", "staging", false, "token:bob may not unlock resizer in staging: no grant gives them lock"},
		{"", "", Read, "resizer", "production", false, "an unidentified caller may not read resizer in production"},
		{"token:x", "ghost", Deploy, "resizer", "production", false, `their token's role "ghost" is not a role of this server`},
	}
	for _, c := range cases {
		err := p.Check(context.Background(), Request{Who: c.who, Role: c.role, Action: c.act, App: c.app, Env: c.env})
		if (err == nil) != c.allow {
			t.Errorf("%s %s %s %s/%s: allowed=%v, want %v (%v)", c.who, c.role, c.act, c.app, c.env, err == nil, c.allow, err)
			continue
		}
		if err != nil && !strings.Contains(err.Error(), c.reason) {
			t.Errorf("%s %s %s/%s: denial %q does not say %q", c.who, c.act, c.app, c.env, err, c.reason)
		}
	}
}

func TestGroupLookupFailureDeniesAndSaysTryAgain(t *testing.T) {
	p, g := examplePolicy(t)
	g.fail = true
	err := p.Check(context.Background(), Request{Who: "slack:U0FE", Action: Deploy, App: "resizer", Env: "production"})
	var d *Denial
	if !errors.As(err, &d) || !strings.Contains(err.Error(), "could not check your user groups, try again") || d.LookupErr == nil {
		t.Fatalf("want a lookup denial, got %v", err)
	}
	// A direct grant still works without asking Slack.
	before := g.calls.Load()
	if err := p.Check(context.Background(), Request{Who: "slack:U0INFRA", Action: Deploy, App: "resizer", Env: "production"}); err != nil {
		t.Fatal(err)
	}
	if g.calls.Load() != before {
		t.Fatal("a direct grant asked for group members")
	}
	// A Mattermost user is never looked up in Slack groups.
	before = g.calls.Load()
	err = p.Check(context.Background(), Request{Who: "mattermost:U0FE", Action: Deploy, App: "resizer", Env: "production"})
	if err == nil || strings.Contains(err.Error(), "could not check") || g.calls.Load() != before {
		t.Fatalf("mattermost user: %v (lookups %d)", err, g.calls.Load()-before)
	}
}

func TestDefaultRole(t *testing.T) {
	for _, c := range []struct {
		def   string
		allow bool
	}{{"", true}, {"viewer", true}, {"none", false}, {"responder", true}} {
		p, err := New(Config{DefaultRole: c.def})
		if err != nil {
			t.Fatal(err)
		}
		if got := p.Allowed(context.Background(), Request{Who: "slack:U1", Action: Read, App: "a", Env: "e"}); got != c.allow {
			t.Errorf("default_role %q: read allowed=%v, want %v", c.def, got, c.allow)
		}
	}
	if _, err := New(Config{DefaultRole: "ghost"}); err == nil || !strings.Contains(err.Error(), `default_role: unknown role "ghost"`) {
		t.Fatalf("unknown default role: %v", err)
	}
}

func TestGlobsMatchLikePathMatch(t *testing.T) {
	p, err := New(Config{DefaultRole: NoRole, Grants: []Grant{
		{Role: RoleDeployer, Users: []Identity{"token:a"}, Apps: []string{"img-*", "re?izer"}, Envs: []string{"stag[ei]ng"}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	for app, want := range map[string]bool{"img-thumbs": true, "img-": true, "img": false, "resizer": true, "reesizer": false, "x/img-a": false} {
		if got := p.Allowed(context.Background(), Request{Who: "token:a", Action: Deploy, App: app, Env: "staging"}); got != want {
			t.Errorf("app %q: %v, want %v", app, got, want)
		}
	}
	if p.Allowed(context.Background(), Request{Who: "token:a", Action: Deploy, App: "img-a", Env: "production"}) {
		t.Error("production allowed")
	}
}

func TestMalformedConfigsNameFileLineAndField(t *testing.T) {
	cases := map[string]struct{ yaml, want string }{
		"unknown key":       {"default_role: viewer\ngrant:\n  - role: admin\n", "bad.yaml:2:1: grant: unknown field"},
		"unknown grant key": {"grants:\n  - role: admin\n    user: [token:a]\n", "bad.yaml:3:5: grants[0].user: unknown field"},
		"unknown role":      {"grants:\n  - role: boss\n    users: [token:a]\n", `bad.yaml:2:11: grants[0].role: unknown role "boss"`},
		"bad identity":      {"grants:\n  - role: admin\n    users: [alice]\n", `bad.yaml:3:13: grants[0].users[0]: "alice" is not an identity`},
		"token user case":   {"grants:\n  - role: admin\n    users: [token:Alice]\n", "grants[0].users[0]: token:Alice: token user names are"},
		"group as user":     {"grants:\n  - role: admin\n    users: [slack:S0OPS]\n", "grants[0].users[0]: slack:S0OPS looks like a Slack user group"},
		"bad action":        {"roles:\n  r:\n    actions: [deploy, launch]\n", `bad.yaml:3:23: roles.r.actions[1]: unknown action "launch"`},
		"tokens in config":  {"roles:\n  r:\n    actions: [tokens]\n", "roles.r.actions[0]: tokens is for the built-in admin role only"},
		"builtin redefined": {"roles:\n  admin:\n    actions: [read]\n", "bad.yaml:2:3: roles.admin: admin is a built-in role"},
		"bad glob":          {"grants:\n  - role: admin\n    users: [token:a]\n    apps: [\"[\"]\n", `bad.yaml:4:12: grants[0].apps[0]: "[" is not a name or glob`},
		"empty apps":        {"grants:\n  - role: admin\n    users: [token:a]\n    apps: []\n", "grants[0].apps: empty list"},
		"no one":            {"grants:\n  - role: admin\n", "bad.yaml:2:5: grants[0]: names no users and no groups"},
		"wrong type":        {"grants: {role: admin}\n", "bad.yaml:1:9: grants: must be a list"},
		"not yaml":          {"grants: [\n", "bad.yaml"},
		"twice":             {"default_role: viewer\ndefault_role: none\n", "bad.yaml:2:1: default_role: given twice"},
	}
	for name, c := range cases {
		_, err := Parse("bad.yaml", []byte(c.yaml))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: got %v, want it to contain %q", name, err, c.want)
		}
	}
	// Every problem at once.
	_, err := Parse("bad.yaml", []byte("grants:\n  - role: boss\n    users: [alice]\n"))
	if err == nil || !strings.Contains(err.Error(), "unknown role") || !strings.Contains(err.Error(), "not an identity") {
		t.Fatalf("want both problems: %v", err)
	}
	if _, err := Load(filepath.Join(t.TempDir(), "missing.yaml")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing file: %v", err)
	}
}

func TestOldSlackFormFoldsInWithItsMeaning(t *testing.T) {
	c, warn, err := FoldSlack(Config{}, map[string][]string{"releaser": {"deploy", "scale"}, "deployer": {"deploy"}},
		[]SlackGrant{
			{Apps: []string{"*"}, Envs: []string{"*"}, Role: "admin", Users: []string{"U0INFRA"}},
			{Apps: []string{"reports"}, Envs: []string{"*"}, Role: "releaser", Users: []string{"U0ANALYST"}},
			{Apps: []string{"resizer"}, Envs: []string{"production"}, Role: "deployer", Groups: []string{"S0FE"}},
		}, "slack.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(warn, "slack.yaml") || !strings.Contains(warn, "--auth-config") || strings.Contains(warn, "\n") {
		t.Fatalf("warning %q", warn)
	}
	p, err := New(c)
	if err != nil {
		t.Fatal(err)
	}
	g := &groupTable{members: map[string][]string{"S0FE": {"U0FE"}}}
	p.SetGroups(KindSlack, g)
	ctx := context.Background()
	for _, x := range []struct {
		who   Identity
		act   Action
		app   string
		allow bool
	}{
		{"slack:U0INFRA", Lock, "resizer", true},
		{"slack:U0ANALYST", Reclaim, "reports", true}, // old scale covered reclaim
		{"slack:U0ANALYST", Scale, "reports", true},
		{"slack:U0ANALYST", Promote, "reports", false},
		{"slack:U0FE", Deploy, "resizer", true}, // the old deployer redefinition, renamed slack-deployer
		{"slack:U0FE", Promote, "resizer", false},
		{"mattermost:U0INFRA", Deploy, "resizer", false},
	} {
		if got := p.Allowed(ctx, Request{Who: x.who, Action: x.act, App: x.app, Env: "production"}); got != x.allow {
			t.Errorf("%s %s %s: %v, want %v", x.who, x.act, x.app, got, x.allow)
		}
	}
	if !p.HasRole("slack-deployer") {
		t.Fatalf("roles %v", p.Roles())
	}
	_, _, err = FoldSlack(Config{}, map[string][]string{"odd": {"launch"}}, []SlackGrant{{Role: "boss", Apps: []string{"*"}, Envs: []string{"*"}, Users: []string{"U1"}}}, "slack.yaml")
	if err == nil || !strings.Contains(err.Error(), `unknown verb "launch"`) || !strings.Contains(err.Error(), `grants[0]: unknown role "boss"`) {
		t.Fatalf("bad old form: %v", err)
	}
}

func TestRolesListsBuiltinsFirst(t *testing.T) {
	p, _ := examplePolicy(t)
	got := strings.Join(p.Roles(), ",")
	if got != "admin,maintainer,deployer,operator,responder,viewer,releaser" {
		t.Fatal(got)
	}
}
