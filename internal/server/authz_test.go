package server

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/shipteam/ship/internal/api"
	"github.com/shipteam/ship/internal/chat/slack"
	"github.com/shipteam/ship/internal/engine"
	"github.com/shipteam/ship/internal/release"
)

// authConf scopes a deployer role to staging; alice's token will carry it.
const authConf = `default_role: viewer
roles:
  deployer-staging:
    actions: [deploy, promote, abort, rollback, read]
    envs: [staging]
grants:
  - role: operator
    users: [token:carol]
    apps: [web]
    envs: [production]
`

// authServer runs ship serve with two environments and the auth config,
// and returns its address, the admin client and the log.
func authServer(t *testing.T, mut func(*Config)) (string, *api.Client, *syncBuffer) {
	t.Helper()
	data, apps := t.TempDir(), t.TempDir()
	writeSpec(t, apps, "web.yaml", fmt.Sprintf("name: web\nport: %d\nenvironments: [staging, production]\nrun:\n  command: /bin/true\n", freePortPair(t)))
	conf := filepath.Join(t.TempDir(), "auth.yaml")
	if err := os.WriteFile(conf, []byte(authConf), 0o600); err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	cfg := Config{Addr: "127.0.0.1:0", DataDir: data, AppsDir: apps, AuthConfig: conf,
		Logger: slog.New(slog.NewTextHandler(logs, nil))}
	if mut != nil {
		mut(&cfg)
	}
	addr, _ := start(t, cfg)
	b, err := os.ReadFile(filepath.Join(data, AdminTokenFile))
	if err != nil {
		t.Fatal(err)
	}
	admin, _ := api.NewClient(api.ClientConfig{Server: addr, Token: strings.TrimSpace(string(b))})
	return addr, admin, logs
}

// freePortPair finds a port p with p+1 free too (staging on p, production
// on p+1).
func freePortPair(t *testing.T) int {
	t.Helper()
	for range 50 {
		p := freePort(t)
		ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p+1))
		if err == nil {
			ln.Close()
			return p
		}
	}
	t.Fatal("no two adjacent free ports")
	return 0
}

func newUser(t *testing.T, addr string, admin *api.Client, name, role string) (*api.Client, string) {
	t.Helper()
	nt, err := admin.CreateToken(context.Background(), name, role)
	if err != nil {
		t.Fatalf("create %s --role %s: %v", name, role, err)
	}
	c, _ := api.NewClient(api.ClientConfig{Server: addr, Token: nt.Token, Source: release.SourceCLI})
	return c, nt.Token
}

// readEvents reads the stored events as one replay of /v1/events?after=0,
// up to the first event for which stop says true (or the deadline).
func readEvents(t *testing.T, c *api.Client, stop func(release.Event) bool) []release.Event {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var out []release.Event
	err := c.Events(ctx, api.EventsQuery{After: 0}, func(ev release.Event) error {
		out = append(out, ev)
		if stop(ev) {
			return api.ErrStop
		}
		return nil
	})
	if err != nil {
		t.Fatalf("events: %v (got %d)", err, len(out))
	}
	return out
}

func TestTokenRolesAndTheAuthConfigHoldThroughTheAPI(t *testing.T) {
	addr, admin, logs := authServer(t, nil)
	ctx := context.Background()
	alice, _ := newUser(t, addr, admin, "alice", "deployer-staging")

	// Production is refused with a sentence built from alice's grants.
	_, err := alice.Deploy(ctx, "web", api.DeployRequest{Version: "v2", Env: "production"})
	var ae *api.Error
	if !errors.As(err, &ae) || ae.Status != http.StatusForbidden || ae.Code != "forbidden" ||
		ae.Message != "token:alice may not deploy web in production: their roles grant deploy in staging only" {
		t.Fatalf("alice deploying to production: %#v", err)
	}
	// The refusal is an event any reader of web/production sees.
	evs := readEvents(t, admin, func(ev release.Event) bool { return ev.Type == "access.denied" })
	den := evs[len(evs)-1]
	if den.Type != "access.denied" || den.App != "web" || den.Env != "production" || den.Actor != "alice" ||
		den.Data.Identity != "token:alice" || den.Data.Action != "deploy" || !strings.Contains(den.Message, "staging only") {
		t.Fatalf("access.denied event %+v", den)
	}
	if !strings.Contains(logs.String(), "access denied") {
		t.Fatal("the denial is not logged")
	}
	// Staging works; reads of production work (default_role viewer).
	r, err := alice.Deploy(ctx, "web", api.DeployRequest{Version: "v2", Env: "staging"})
	if err != nil || r.Actor != "alice" || r.Env != "staging" {
		t.Fatalf("alice deploying to staging: %+v %v", r, err)
	}
	if _, err := alice.Status(ctx, "web", "production"); err != nil {
		t.Fatalf("alice reading production: %v", err)
	}
	// alice may not scale anything, nor manage tokens.
	if _, err := alice.Scale(ctx, "web", "staging", 3); !errors.As(err, &ae) || ae.Status != http.StatusForbidden ||
		!strings.Contains(ae.Message, "no grant gives them scale; roles that may: operator, maintainer, admin") {
		t.Fatalf("alice scaling: %v", err)
	}
	if _, err := alice.Tokens(ctx); !errors.As(err, &ae) || ae.Status != http.StatusForbidden || !strings.Contains(ae.Message, "token:alice may not manage API tokens") {
		t.Fatalf("alice listing tokens: %v", err)
	}

	// carol's token is a viewer; the auth config makes her operator of
	// web in production.
	carol, _ := newUser(t, addr, admin, "carol", "viewer")
	if _, err := carol.Scale(ctx, "web", "production", 2); err != nil {
		t.Fatalf("carol scaling production: %v", err)
	}
	if _, err := carol.Scale(ctx, "web", "staging", 2); !errors.As(err, &ae) || !strings.Contains(ae.Message, "their roles grant scale in production only") {
		t.Fatalf("carol scaling staging: %v", err)
	}
	// A role the server does not know is refused, naming the ones it does.
	if _, err := admin.CreateToken(ctx, "dave", "boss"); !errors.As(err, &ae) || ae.Status != http.StatusBadRequest ||
		!strings.Contains(ae.Message, "use one of admin, maintainer, deployer, operator, responder, viewer, deployer-staging") {
		t.Fatalf("unknown role: %v", err)
	}
	list, err := admin.Tokens(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, ti := range list {
		got = append(got, ti.Name+"/"+ti.Role)
	}
	if strings.Join(got, ",") != "admin/admin,alice/deployer-staging,carol/viewer" {
		t.Fatalf("tokens %v", got)
	}
}

func TestAdminTokensRotateAndAreRevocableButNotTheLast(t *testing.T) {
	addr, admin, _ := authServer(t, nil)
	ctx := context.Background()
	var ae *api.Error
	if _, err := admin.RevokeTokens(ctx, "admin"); !errors.As(err, &ae) || ae.Status != http.StatusConflict ||
		!strings.Contains(ae.Message, "admin holds the last admin token") {
		t.Fatalf("revoking the last admin: %v", err)
	}
	// A second admin may revoke the first one (a leaked admin token).
	root, _ := newUser(t, addr, admin, "root", "admin")
	if rv, err := root.RevokeTokens(ctx, "admin"); err != nil || rv.Revoked != 1 {
		t.Fatalf("root revoking admin: %+v %v", rv, err)
	}
	if _, err := admin.Whoami(ctx); !errors.As(err, &ae) || ae.Status != http.StatusUnauthorized {
		t.Fatalf("revoked admin token: %v", err)
	}
	// Rotating root: the new token works, the old one not, the role stays.
	nt, err := root.RotateTokens(ctx, "root")
	if err != nil || nt.Role != "admin" || nt.Revoked != 1 {
		t.Fatalf("rotate: %+v %v", nt, err)
	}
	if _, err := root.Whoami(ctx); !errors.As(err, &ae) || ae.Status != http.StatusUnauthorized {
		t.Fatalf("rotated-away token: %v", err)
	}
	root2, _ := api.NewClient(api.ClientConfig{Server: addr, Token: nt.Token})
	if id, err := root2.Whoami(ctx); err != nil || id.Role != "admin" || id.ID != "token:root" {
		t.Fatalf("new token: %+v %v", id, err)
	}
	if _, err := root2.RevokeTokens(ctx, "root"); !errors.As(err, &ae) || ae.Status != http.StatusConflict {
		t.Fatalf("revoking the last admin again: %v", err)
	}
}

func TestRevokedTokensStreamEndsAndStreamsAreCapped(t *testing.T) {
	addr, admin, _ := authServer(t, func(c *Config) { c.MaxStreamsPerUser, c.MaxStreams = 2, 10 })
	bob, bobToken := newUser(t, addr, admin, "bob", "viewer")
	// Two raw streams of bob, registered once their first line arrived.
	open := func() (*http.Response, error) {
		req, _ := http.NewRequest("GET", "http://"+addr+"/v1/events", nil)
		req.Header.Set("Authorization", "Bearer "+bobToken)
		return http.DefaultClient.Do(req)
	}
	var bodies []*bufio.Reader
	for range 2 {
		resp, err := open()
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("stream: %v %v", resp, err)
		}
		defer resp.Body.Close()
		br := bufio.NewReader(resp.Body)
		if _, err := br.ReadString('\n'); err != nil {
			t.Fatal(err)
		}
		bodies = append(bodies, br)
	}
	resp, err := open()
	if err != nil {
		t.Fatal(err)
	}
	b := new(strings.Builder)
	_, _ = bufio.NewReader(resp.Body).WriteTo(b)
	resp.Body.Close()
	if resp.StatusCode != http.StatusTooManyRequests || !strings.Contains(b.String(), "bob already has 2 event streams open") {
		t.Fatalf("third stream: %d %s", resp.StatusCode, b)
	}
	// Revoking bob ends both streams within a second or two.
	start := time.Now()
	if _, err := admin.RevokeTokens(context.Background(), "bob"); err != nil {
		t.Fatal(err)
	}
	for i, br := range bodies {
		done := make(chan string, 1)
		go func() {
			var rest strings.Builder
			_, _ = br.WriteTo(&rest)
			done <- rest.String()
		}()
		select {
		case rest := <-done:
			if !strings.Contains(rest, "token revoked") {
				t.Fatalf("stream %d ended without saying why: %q", i, rest)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("stream %d still open 5s after the revocation", i)
		}
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("streams ended %s after the revocation", d)
	}
	_ = bob
}

func TestOldSlackPermissionsLoadWithOneWarningLine(t *testing.T) {
	data, apps := t.TempDir(), t.TempDir()
	writeSpec(t, apps, "web.yaml", appSpec(freePort(t)))
	conf := filepath.Join(t.TempDir(), "slack.yaml")
	if err := os.WriteFile(conf, []byte("signing_secret: s\nroles:\n  releaser: [deploy, scale]\ngrants:\n  - apps: [\"*\"]\n    envs: [\"*\"]\n    role: releaser\n    users: [U1]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	start(t, Config{Addr: "127.0.0.1:0", DataDir: data, AppsDir: apps, SlackConfig: conf, Logger: slog.New(slog.NewTextHandler(logs, nil))})
	var warn string
	for _, l := range strings.Split(logs.String(), "\n") {
		if strings.Contains(l, "still carries roles/grants") {
			warn = l
		}
	}
	if !strings.Contains(warn, "level=WARN") || !strings.Contains(warn, conf) || !strings.Contains(warn, "--auth-config") {
		t.Fatalf("warning %q in\n%s", warn, logs)
	}
}

func TestMalformedAuthConfigStopsServeNamingFileLineAndField(t *testing.T) {
	data, apps := t.TempDir(), t.TempDir()
	writeSpec(t, apps, "web.yaml", appSpec(freePort(t)))
	conf := filepath.Join(t.TempDir(), "auth.yaml")
	if err := os.WriteFile(conf, []byte("grants:\n  - role: boss\n    users: [token:a]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	err := Run(context.Background(), Config{Addr: "127.0.0.1:0", DataDir: data, AppsDir: apps, AuthConfig: conf})
	if err == nil || !strings.Contains(err.Error(), conf+`:2:11: grants[0].role: unknown role "boss"`) {
		t.Fatalf("Run = %v", err)
	}
}

// The documented old-form file folds into a policy with the same meaning:
// U0ANALYST's custom role, the admin, and Mattermost users getting none.
func TestOldSlackFormFileFoldsIntoThePolicy(t *testing.T) {
	file := filepath.Join("..", "chat", "slack", "testdata", "old-permissions.yaml")
	sc, err := slack.LoadConfig(file)
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	p, err := loadPolicy("", file, sc, slog.New(slog.NewTextHandler(logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	auth := Authorizer(p)
	ctx := context.Background()
	for _, c := range []struct {
		id, app, env string
		act          engine.Action
		allow        bool
	}{
		{"slack:U0INFRA", "resizer", "production", engine.ActReclaim, true},
		{"slack:U0ANALYST", "reports", "staging", engine.ActAbort, true},
		{"slack:U0ANALYST", "reports", "staging", engine.ActScale, false},
		{"slack:U0ANALYST", "resizer", "staging", engine.ActRead, true}, // default_role viewer
		{"mattermost:U0INFRA", "resizer", "production", engine.ActDeploy, false},
		{"token:ci", "resizer", "production", engine.ActUnlock, false},
	} {
		err := auth(ctx, engine.Actor{ID: c.id}, c.act, c.app, c.env)
		if (err == nil) != c.allow {
			t.Errorf("%s %s %s/%s: %v, want allowed=%v", c.id, c.act, c.app, c.env, err, c.allow)
		}
	}
	if n := strings.Count(logs.String(), "still carries roles/grants"); n != 1 {
		t.Fatalf("%d warnings:\n%s", n, logs)
	}
}
