package api

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"testing"
)

// memIssuer is an in-memory token table (users by hash).
type memIssuer struct {
	mu    sync.Mutex
	users map[string]string
}

func (m *memIssuer) TokenUser(_ context.Context, h []byte) (string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if u, ok := m.users[string(h)]; ok {
		return u, nil
	}
	return "", ErrUnknownToken
}

func (m *memIssuer) PutToken(_ context.Context, name string, h []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.users[string(h)] = name
	return nil
}

func (m *memIssuer) RevokeTokens(_ context.Context, name string) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := 0
	for h, u := range m.users {
		if u == name {
			delete(m.users, h)
			n++
		}
	}
	return n, nil
}

func (m *memIssuer) Tokens(context.Context) ([]TokenInfo, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []TokenInfo
	for _, u := range m.users {
		out = append(out, TokenInfo{Name: u})
	}
	return out, nil
}

func TestTokensEndpointsAreAdminOnlyAndValidateNames(t *testing.T) {
	adminTok, adminHash, _ := NewToken()
	aliceTok, aliceHash, _ := NewToken()
	iss := &memIssuer{users: map[string]string{string(adminHash): AdminUser, string(aliceHash): "alice"}}
	f := newFixture(t, func(c *Config) { c.Tokens, c.Issuer = iss, iss })
	cases := []struct {
		name, token, method, body string
		status                    int
	}{
		{"admin creates", adminTok, "POST", `{"name":"bob"}`, http.StatusCreated},
		{"admin lists", adminTok, "GET", "", http.StatusOK},
		{"non-admin creates", aliceTok, "POST", `{"name":"bob2"}`, http.StatusForbidden},
		{"non-admin lists", aliceTok, "GET", "", http.StatusForbidden},
		{"empty name", adminTok, "POST", `{"name":""}`, http.StatusBadRequest},
		{"name with a space", adminTok, "POST", `{"name":"bob smith"}`, http.StatusBadRequest},
		{"upper case", adminTok, "POST", `{"name":"Bob"}`, http.StatusBadRequest},
		{"unknown field", adminTok, "POST", `{"name":"bob","role":"admin"}`, http.StatusBadRequest},
		{"no token", "", "POST", `{"name":"bob"}`, http.StatusUnauthorized},
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
	iss := &memIssuer{users: map[string]string{string(adminHash): AdminUser, string(aliceHash): "alice", string(bobHash): "bob"}}
	f := newFixture(t, func(c *Config) { c.Tokens, c.Issuer = iss, iss })
	cases := []struct {
		name, token, path string
		status            int
	}{
		{"non-admin revokes", aliceTok, "/v1/tokens/bob", http.StatusForbidden},
		{"bad name", adminTok, "/v1/tokens/Bob%20X", http.StatusBadRequest},
		{"admin's own", adminTok, "/v1/tokens/admin", http.StatusConflict},
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
