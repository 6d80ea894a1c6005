package cli

import (
	"context"
	"encoding/json"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shipteam/ship/internal/api"
)

// issuer is an in-memory token table: TokenUser for authentication and
// PutToken/Tokens for /v1/tokens.
type issuer struct {
	mu    sync.Mutex
	users map[string]string // hash -> user
	names []string
}

func (s *issuer) TokenUser(_ context.Context, h []byte) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if u, ok := s.users[string(h)]; ok {
		return u, nil
	}
	return "", api.ErrUnknownToken
}

func (s *issuer) PutToken(_ context.Context, name string, h []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.users[string(h)] = name
	s.names = append(s.names, name)
	return nil
}

func (s *issuer) RevokeTokens(_ context.Context, name string) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for h, u := range s.users {
		if u == name {
			delete(s.users, h)
			n++
		}
	}
	return n, nil
}

func (s *issuer) Tokens(context.Context) ([]api.TokenInfo, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []api.TokenInfo
	for _, n := range s.names {
		out = append(out, api.TokenInfo{Name: n, Created: time.Date(2026, 11, 25, 14, 0, 0, 0, time.UTC)})
	}
	return out, nil
}

func TestTokenCreateGivesAWorkingTokenOnlyToTheAdmin(t *testing.T) {
	const adminToken = "ship_admin-token"
	iss := &issuer{users: map[string]string{string(api.HashToken(adminToken)): "admin"}, names: []string{"admin"}}
	s, err := api.New(api.Config{Engine: &fakeEngine{}, Tokens: iss, Issuer: iss})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close)

	code, out, errs := runCLI(t, map[string]string{"SHIP_SERVER": srv.URL, "SHIP_TOKEN": adminToken}, "token", "create", "alice", "--output", "json")
	if code != ExitOK {
		t.Fatalf("exit %d\n%s\n%s", code, out, errs)
	}
	var nt api.NewTokenResponse
	if err := json.Unmarshal([]byte(out), &nt); err != nil || nt.Name != "alice" || !strings.HasPrefix(nt.Token, api.TokenPrefix) {
		t.Fatalf("output %q: %+v %v", out, nt, err)
	}
	c, _ := api.NewClient(api.ClientConfig{Server: srv.URL, Token: nt.Token})
	if id, err := c.Whoami(context.Background()); err != nil || id.Name != "alice" {
		t.Fatalf("alice's token: whoami %+v %v", id, err)
	}
	// alice may not create tokens.
	code, out, errs = runCLI(t, map[string]string{"SHIP_SERVER": srv.URL, "SHIP_TOKEN": nt.Token}, "token", "create", "mallory")
	if code != ExitFailed || !strings.Contains(errs, "alice may not manage tokens") {
		t.Fatalf("alice creating a token: exit %d\n%s\n%s", code, out, errs)
	}
	code, out, errs = runCLI(t, map[string]string{"SHIP_SERVER": srv.URL, "SHIP_TOKEN": adminToken}, "token", "list")
	if code != ExitOK || !strings.Contains(out, "admin") || !strings.Contains(out, "alice") || strings.Contains(out, "mallory") {
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
	if code != ExitFailed || !strings.Contains(errs, "cannot be revoked") {
		t.Fatalf("revoking admin: exit %d\n%s", code, errs)
	}
	for _, bad := range [][]string{{"token"}, {"token", "create"}, {"token", "create", "a", "b"}, {"token", "revoke"}, {"token", "revoke", "a", "b"}, {"token", "delete", "a"}, {"token", "list", "--bogus"}} {
		if code, _, _ := runCLI(t, map[string]string{"SHIP_SERVER": srv.URL, "SHIP_TOKEN": adminToken}, bad...); code != ExitUsage {
			t.Errorf("%v: exit %d, want %d", bad, code, ExitUsage)
		}
	}
}
