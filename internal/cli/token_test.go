package cli

import (
	"context"
	"encoding/json"
	"net/http/httptest"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shipteam/ship/internal/api"
	"github.com/shipteam/ship/internal/enginetest"
)

// issuer is an in-memory token table with the store's rules (the last
// admin token stays; rotate keeps the role).
type issuer struct {
	mu    sync.Mutex
	users map[string]api.TokenOwner // hash -> owner
}

func (s *issuer) TokenOwner(_ context.Context, h []byte) (api.TokenOwner, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if u, ok := s.users[string(h)]; ok {
		return u, nil
	}
	return api.TokenOwner{}, api.ErrUnknownToken
}

func (s *issuer) PutToken(_ context.Context, name, role string, h []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.users[string(h)] = api.TokenOwner{Name: name, Role: role}
	return nil
}

func (s *issuer) RevokeTokens(_ context.Context, name string) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	kept := map[string]api.TokenOwner{}
	admins := 0
	for h, u := range s.users {
		if u.Name != name {
			kept[h] = u
			if u.Role == "admin" {
				admins++
			}
		}
	}
	n := len(s.users) - len(kept)
	if n > 0 && admins == 0 {
		return 0, api.ErrLastAdmin
	}
	s.users = kept
	return n, nil
}

func (s *issuer) RotateTokens(ctx context.Context, name string, h []byte) (string, int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	role, n := "", 0
	for hh, u := range s.users {
		if u.Name == name {
			role = u.Role
			delete(s.users, hh)
			n++
		}
	}
	if n == 0 {
		return "", 0, api.ErrNoTokens
	}
	s.users[string(h)] = api.TokenOwner{Name: name, Role: role}
	return role, n, nil
}

func (s *issuer) Tokens(context.Context) ([]api.TokenInfo, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []api.TokenInfo
	for _, u := range s.users {
		out = append(out, api.TokenInfo{Name: u.Name, Role: u.Role, Created: time.Date(2026, 11, 25, 14, 0, 0, 0, time.UTC)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

func TestTokenCreateGivesAWorkingTokenOnlyToTheAdmin(t *testing.T) {
	const adminToken = "ship_admin-token"
	iss := &issuer{users: map[string]api.TokenOwner{string(api.HashToken(adminToken)): {Name: "admin", Role: "admin"}}}
	s, err := api.New(api.Config{Engine: newEngine(t, enginetest.Options{Stepped: true}).Engine, Tokens: iss, Issuer: iss})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close)

	code, out, errs := runCLI(t, map[string]string{"SHIP_SERVER": srv.URL, "SHIP_TOKEN": adminToken}, "token", "create", "alice", "--role", "deployer", "--output", "json")
	if code != ExitOK {
		t.Fatalf("exit %d\n%s\n%s", code, out, errs)
	}
	var nt api.NewTokenResponse
	if err := json.Unmarshal([]byte(out), &nt); err != nil || nt.Name != "alice" || nt.Role != "deployer" || !strings.HasPrefix(nt.Token, api.TokenPrefix) {
		t.Fatalf("output %q: %+v %v", out, nt, err)
	}
	c, _ := api.NewClient(api.ClientConfig{Server: srv.URL, Token: nt.Token})
	if id, err := c.Whoami(context.Background()); err != nil || id.Name != "alice" {
		t.Fatalf("alice's token: whoami %+v %v", id, err)
	}
	// alice may not create tokens.
	code, out, errs = runCLI(t, map[string]string{"SHIP_SERVER": srv.URL, "SHIP_TOKEN": nt.Token}, "token", "create", "mallory", "--role", "admin")
	if code != ExitFailed || !strings.Contains(errs, "token:alice may not manage API tokens") {
		t.Fatalf("alice creating a token: exit %d\n%s\n%s", code, out, errs)
	}
	code, out, errs = runCLI(t, map[string]string{"SHIP_SERVER": srv.URL, "SHIP_TOKEN": adminToken}, "token", "list")
	if code != ExitOK || !strings.Contains(out, "USER   ROLE") || !strings.Contains(out, "alice  deployer") || strings.Contains(out, "mallory") {
		t.Fatalf("list: exit %d\n%s\n%s", code, out, errs)
	}
	// Revoking alice: her token stops working at once.
	code, out, errs = runCLI(t, map[string]string{"SHIP_SERVER": srv.URL, "SHIP_TOKEN": adminToken}, "token", "revoke", "alice")
	if code != ExitOK || !strings.Contains(out, "revoked 1 token(s) of user alice") {
		t.Fatalf("revoke: exit %d\n%s\n%s", code, out, errs)
	}
	if _, err := c.Whoami(context.Background()); err == nil {
		t.Fatal("alice's revoked token still works")
	}
	code, _, errs = runCLI(t, map[string]string{"SHIP_SERVER": srv.URL, "SHIP_TOKEN": adminToken}, "token", "revoke", "alice")
	if code != ExitFailed || !strings.Contains(errs, "alice has no tokens") {
		t.Fatalf("second revoke: exit %d\n%s", code, errs)
	}
	code, _, errs = runCLI(t, map[string]string{"SHIP_SERVER": srv.URL, "SHIP_TOKEN": adminToken}, "token", "revoke", "admin")
	if code != ExitFailed || !strings.Contains(errs, "admin holds the last admin token") {
		t.Fatalf("revoking admin: exit %d\n%s", code, errs)
	}
	// Rotating the admin's token: a new one, the old one stops working.
	code, out, errs = runCLI(t, map[string]string{"SHIP_SERVER": srv.URL, "SHIP_TOKEN": adminToken}, "token", "rotate", "admin")
	if code != ExitOK || !strings.Contains(out, "new API token for user admin, role admin (1 old token(s) revoked") {
		t.Fatalf("rotate: exit %d\n%s\n%s", code, out, errs)
	}
	newAdmin := strings.TrimSpace(out[strings.LastIndex(strings.TrimSpace(out), "\n"):])
	if code, _, errs := runCLI(t, map[string]string{"SHIP_SERVER": srv.URL, "SHIP_TOKEN": adminToken}, "token", "list"); code == ExitOK {
		t.Fatalf("the rotated-away admin token still works: %s", errs)
	}
	if code, out, errs := runCLI(t, map[string]string{"SHIP_SERVER": srv.URL, "SHIP_TOKEN": newAdmin}, "token", "list"); code != ExitOK {
		t.Fatalf("the new admin token: exit %d\n%s\n%s", code, out, errs)
	}
	code, _, errs = runCLI(t, map[string]string{"SHIP_SERVER": srv.URL, "SHIP_TOKEN": newAdmin}, "token", "create", "bob")
	if code != ExitUsage || !strings.Contains(errs, "needs --role ROLE: one of admin, maintainer, deployer, operator, responder, viewer") {
		t.Fatalf("create without --role: exit %d\n%s", code, errs)
	}
	for _, bad := range [][]string{{"token"}, {"token", "create"}, {"token", "create", "a", "b"}, {"token", "rotate"}, {"token", "rotate", "a", "--role", "admin"}, {"token", "revoke"}, {"token", "revoke", "a", "b"}, {"token", "delete", "a"}, {"token", "list", "--bogus"}} {
		if code, _, _ := runCLI(t, map[string]string{"SHIP_SERVER": srv.URL, "SHIP_TOKEN": adminToken}, bad...); code != ExitUsage {
			t.Errorf("%v: exit %d, want %d", bad, code, ExitUsage)
		}
	}
}
