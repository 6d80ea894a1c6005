package api

import (
	"context"
	"maps"
	"net/http"
	"strings"
	"sync"
	"testing"
)

// memIssuer is an in-memory token table (users and roles by hash) with
// the store's rules: the last admin token stays, rotate keeps the role.
type memIssuer struct {
	mu    sync.Mutex
	users map[string]TokenOwner
}

func newMemIssuer(owners map[string]TokenOwner) *memIssuer { return &memIssuer{users: owners} }

func (m *memIssuer) TokenOwner(_ context.Context, h []byte) (TokenOwner, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if u, ok := m.users[string(h)]; ok {
		return u, nil
	}
	return TokenOwner{}, ErrUnknownToken
}

func (m *memIssuer) PutToken(_ context.Context, name, role string, h []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.users[string(h)] = TokenOwner{Name: name, Role: role}
	return nil
}

func (m *memIssuer) revoke(name string) (n int, role string) {
	for h, u := range m.users {
		if u.Name == name {
			delete(m.users, h)
			n++
			role = u.Role
		}
	}
	return n, role
}

func (m *memIssuer) RevokeTokens(_ context.Context, name string) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	saved := maps.Clone(m.users)
	n, _ := m.revoke(name)
	for _, u := range m.users {
		if u.Role == "admin" {
			return n, nil
		}
	}
	if n > 0 {
		m.users = saved
		return 0, ErrLastAdmin
	}
	return 0, nil
}

func (m *memIssuer) RotateTokens(_ context.Context, name string, h []byte) (string, int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	n, role := m.revoke(name)
	if n == 0 {
		return "", 0, ErrNoTokens
	}
	m.users[string(h)] = TokenOwner{Name: name, Role: role}
	return role, n, nil
}

func (m *memIssuer) Tokens(context.Context) ([]TokenInfo, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []TokenInfo
	for _, u := range m.users {
		out = append(out, TokenInfo{Name: u.Name, Role: u.Role})
	}
	return out, nil
}

func TestTokensEndpointsAreAdminOnlyAndValidateNames(t *testing.T) {
	adminTok, adminHash, _ := NewToken()
	aliceTok, aliceHash, _ := NewToken()
	iss := newMemIssuer(map[string]TokenOwner{string(adminHash): {AdminUser, "admin"}, string(aliceHash): {"alice", "maintainer"}})
	f := newFixture(t, func(c *Config) { c.Tokens, c.Issuer = iss, iss })
	cases := []struct {
		name, token, method, body string
		status                    int
	}{
		{"admin creates", adminTok, "POST", `{"name":"bob","role":"deployer"}`, http.StatusCreated},
		{"admin lists", adminTok, "GET", "", http.StatusOK},
		{"non-admin creates", aliceTok, "POST", `{"name":"bob2","role":"viewer"}`, http.StatusForbidden},
		{"non-admin lists", aliceTok, "GET", "", http.StatusForbidden},
		{"empty name", adminTok, "POST", `{"name":"","role":"viewer"}`, http.StatusBadRequest},
		{"name with a space", adminTok, "POST", `{"name":"bob smith","role":"viewer"}`, http.StatusBadRequest},
		{"upper case", adminTok, "POST", `{"name":"Bob","role":"viewer"}`, http.StatusBadRequest},
		{"no role", adminTok, "POST", `{"name":"bob3"}`, http.StatusBadRequest},
		{"unknown role", adminTok, "POST", `{"name":"bob3","role":"boss"}`, http.StatusBadRequest},
		{"unknown field", adminTok, "POST", `{"name":"bob","role":"admin","x":1}`, http.StatusBadRequest},
		{"no token", "", "POST", `{"name":"bob","role":"viewer"}`, http.StatusUnauthorized},
	}
	for _, c := range cases {
		auth := ""
		if c.token != "" {
			auth = "Bearer " + c.token
		}
		status, body := f.raw(t, c.method, "/v1/tokens", auth, c.body)
		if status != c.status {
			t.Errorf("%s: %d %s, want %d", c.name, status, body, c.status)
		}
		if status == http.StatusCreated && !strings.Contains(body, `"token": "`+TokenPrefix) {
			t.Errorf("%s: no token in %s", c.name, body)
		}
	}
	iss.mu.Lock()
	n := len(iss.users)
	iss.mu.Unlock()
	if n != 3 {
		t.Fatalf("%d tokens stored, want 3 (admin, alice, bob)", n)
	}
}

func TestTokensEndpointsAre404WithoutAnIssuer(t *testing.T) {
	f := newFixture(t)
	if status, body := f.raw(t, "POST", "/v1/tokens", "Bearer "+f.token, `{"name":"bob"}`); status != http.StatusNotFound {
		t.Fatalf("%d %s", status, body)
	}
}

func TestRevokeTokensIsAdminOnlyAndTakesEffectAtOnce(t *testing.T) {
	adminTok, adminHash, _ := NewToken()
	aliceTok, aliceHash, _ := NewToken()
	bobTok, bobHash, _ := NewToken()
	iss := newMemIssuer(map[string]TokenOwner{string(adminHash): {AdminUser, "admin"}, string(aliceHash): {"alice", "maintainer"}, string(bobHash): {"bob", "deployer"}})
	f := newFixture(t, func(c *Config) { c.Tokens, c.Issuer = iss, iss })
	cases := []struct {
		name, token, path string
		status            int
	}{
		{"non-admin revokes", aliceTok, "/v1/tokens/bob", http.StatusForbidden},
		{"bad name", adminTok, "/v1/tokens/Bob%20X", http.StatusBadRequest},
		{"the last admin token", adminTok, "/v1/tokens/admin", http.StatusConflict},
		{"admin revokes bob", adminTok, "/v1/tokens/bob", http.StatusOK},
		{"bob is gone", bobTok, "/v1/whoami", http.StatusUnauthorized},
		{"again", adminTok, "/v1/tokens/bob", http.StatusNotFound},
		{"alice still works", aliceTok, "/v1/whoami", http.StatusOK},
	}
	for _, c := range cases {
		method := "DELETE"
		if strings.HasSuffix(c.path, "whoami") {
			method = "GET"
		}
		status, body := f.raw(t, method, c.path, "Bearer "+c.token, "")
		if status != c.status {
			t.Errorf("%s: %d %s, want %d", c.name, status, body, c.status)
		}
	}
}

func TestUnknownRoleListsTheRolesAndNoRoleSaysOneIsNeeded(t *testing.T) {
	adminTok, adminHash, _ := NewToken()
	iss := newMemIssuer(map[string]TokenOwner{string(adminHash): {"root", "admin"}})
	f := newFixture(t, func(c *Config) { c.Tokens, c.Issuer = iss, iss })
	_, body := f.raw(t, "POST", "/v1/tokens", "Bearer "+adminTok, `{"name":"bob","role":"boss"}`)
	if !strings.Contains(body, `role \"boss\" is not a role of this server; use one of admin, maintainer, deployer, operator, responder, viewer`) {
		t.Fatalf("unknown role: %s", body)
	}
	_, body = f.raw(t, "POST", "/v1/tokens", "Bearer "+adminTok, `{"name":"bob"}`)
	if !strings.Contains(body, "a token needs a role: one of admin") {
		t.Fatalf("no role: %s", body)
	}
	// Any admin-role identity manages tokens, not only the user named admin.
	if status, body := f.raw(t, "GET", "/v1/tokens", "Bearer "+adminTok, ""); status != http.StatusOK {
		t.Fatalf("root lists: %d %s", status, body)
	}
}

func TestRotateReplacesTheTokensAndKeepsTheRole(t *testing.T) {
	adminTok, adminHash, _ := NewToken()
	iss := newMemIssuer(map[string]TokenOwner{string(adminHash): {AdminUser, "admin"}})
	f := newFixture(t, func(c *Config) { c.Tokens, c.Issuer = iss, iss })
	admin, _ := NewClient(ClientConfig{Server: f.srv.URL, Token: adminTok})
	nt, err := admin.RotateTokens(context.Background(), AdminUser)
	if err != nil || nt.Role != "admin" || nt.Revoked != 1 || !strings.HasPrefix(nt.Token, TokenPrefix) {
		t.Fatalf("rotate the last admin: %+v %v", nt, err)
	}
	if status, _ := f.raw(t, "GET", "/v1/whoami", "Bearer "+adminTok, ""); status != http.StatusUnauthorized {
		t.Fatalf("the old admin token still works: %d", status)
	}
	if status, _ := f.raw(t, "GET", "/v1/tokens", "Bearer "+nt.Token, ""); status != http.StatusOK {
		t.Fatalf("the new admin token: %d", status)
	}
	if status, _ := f.raw(t, "POST", "/v1/tokens/nobody/rotate", "Bearer "+nt.Token, ""); status != http.StatusNotFound {
		t.Fatalf("rotate nobody: %d", status)
	}
}
