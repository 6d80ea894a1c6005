package e2e

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/shipteam/ship/internal/api"
	"github.com/shipteam/ship/internal/release"
	"github.com/shipteam/ship/test/procs"
)

// TestScopedTokenIsHeldToItsRoleThroughTheCLI: the admin gives alice a
// deployer role scoped to staging by the auth config; the real `ship`
// binary refuses her production deploy with the denial sentence, the
// refusal is an access.denied event, and her staging deploy works.
func TestScopedTokenIsHeldToItsRoleThroughTheCLI(t *testing.T) {
	dir := t.TempDir()
	auth := filepath.Join(dir, "auth.yaml")
	if err := os.WriteFile(auth, []byte(`roles:
  deployer-staging:
    actions: [deploy, promote, abort, rollback, read]
    envs: [staging]
`), 0o600); err != nil {
		t.Fatal(err)
	}
	s := newShipArgs(t, specOpts{Port: adjacentFreePorts(t), Replicas: 1, Extra: "environments: [staging, production]\n"},
		"--auth-config", auth)

	r := s.mustCLI("token", "create", "alice", "--role", "deployer-staging")
	lines := strings.Split(strings.TrimSpace(r.Stdout), "\n")
	aliceToken := lines[len(lines)-1]
	if !strings.HasPrefix(aliceToken, api.TokenPrefix) || !strings.Contains(r.Stdout, "role deployer-staging") {
		t.Fatalf("token create output:\n%s", r)
	}
	if r := s.cli("token", "create", "bob"); r.Code != 2 || !strings.Contains(r.Stderr, "needs --role ROLE") {
		t.Fatalf("create without --role: %s", r)
	}
	r = s.mustCLI("token", "list")
	if !strings.Contains(r.Stdout, "alice  deployer-staging") || !strings.Contains(r.Stdout, "admin  admin") {
		t.Fatalf("token list:\n%s", r)
	}
	asAlice := []string{"SHIP_SERVER=http://" + s.addr, "SHIP_TOKEN=" + aliceToken}

	r = s.cliEnv(asAlice, "deploy", "web", "v2", "--env", "production")
	if r.Code == 0 || !strings.Contains(r.Stderr, "token:alice may not deploy web in production: their roles grant deploy in staging only") {
		t.Fatalf("alice's production deploy: %s", r)
	}
	// The refusal is an event (the admin reads it back from the store).
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var denied release.Event
	err := s.client.Events(ctx, api.EventsQuery{After: 0, EventFilter: api.EventFilter{App: "web", Env: "production"}}, func(ev release.Event) error {
		if ev.Type == "access.denied" {
			denied = ev
			return api.ErrStop
		}
		return nil
	})
	if err != nil || denied.Actor != "alice" || denied.Data.Identity != "token:alice" || denied.Data.Action != "deploy" ||
		!strings.Contains(denied.Message, "staging only") {
		t.Fatalf("access.denied event %+v (%v)", denied, err)
	}
	// Nothing was released in production.
	if hist := s.mustCLI("history", "web", "--env", "production"); strings.Contains(hist.Stdout, "v2") {
		t.Fatalf("production history after the refusal:\n%s", hist)
	}

	r = s.cliEnv(asAlice, "deploy", "web", "v1", "--env", "staging", "--wait")
	if r.Code != 0 || !strings.Contains(r.Stdout, "succeeded") {
		t.Fatalf("alice's staging deploy: %s", r)
	}
	hist := s.mustCLI("history", "web", "--env", "staging")
	if !strings.Contains(hist.Stdout, "alice") || !strings.Contains(hist.Stdout, "v1") {
		t.Fatalf("staging history:\n%s", hist)
	}
	// Revoked, alice can do nothing; the last admin token stays.
	s.mustCLI("token", "revoke", "alice")
	if r := s.cliEnv(asAlice, "status", "web", "--env", "staging"); r.Code == 0 {
		t.Fatalf("revoked token still reads: %s", r)
	}
	if r := s.cli("token", "revoke", "admin"); r.Code == 0 || !strings.Contains(r.Stderr, "last admin token") {
		t.Fatalf("revoking the last admin: %s", r)
	}
}

// adjacentFreePorts returns p with p and p+1 free (the app's staging and
// production router ports).
func adjacentFreePorts(t *testing.T) int {
	t.Helper()
	for range 50 {
		p := procs.FreePort(t)
		ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p+1))
		if err == nil {
			ln.Close()
			return p
		}
	}
	t.Fatal("no two adjacent free ports")
	return 0
}
