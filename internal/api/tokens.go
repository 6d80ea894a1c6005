package api

import (
	"context"
	"net/http"
	"net/url"
	"regexp"
	"time"

	"github.com/shipteam/ship/internal/engine"
)

// AdminUser is the user allowed to create tokens for others: the user of
// the token `ship serve` creates on its first start.
const AdminUser = "admin"

// TokenIssuer stores new tokens, lists and revokes them; Config.Issuer is
// optional (without it /v1/tokens answers 404).
type TokenIssuer interface {
	PutToken(ctx context.Context, name string, hash []byte) error
	Tokens(ctx context.Context) ([]TokenInfo, error)
	// RevokeTokens deletes every token of user name and says how many.
	RevokeTokens(ctx context.Context, name string) (int, error)
}

// TokenInfo is one stored token as GET /v1/tokens lists it (never the
// token or its hash).
type TokenInfo struct {
	Name    string    `json:"name"`
	Created time.Time `json:"created"`
}

// TokenRequest is the body of POST /v1/tokens.
type TokenRequest struct {
	Name string `json:"name"`
}

// NewTokenResponse is the answer of POST /v1/tokens: the token is shown
// this once; only its hash is stored.
type NewTokenResponse struct {
	Name  string `json:"name"`
	Token string `json:"token"`
}

// userName is what a user name may look like: it shows up in history,
// Slack messages and logs, so no spaces or markup.
var userName = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,63}$`)

// requireAdmin answers 403 unless the caller is the admin user.
func (s *Server) requireAdmin(w http.ResponseWriter, r *http.Request) bool {
	if s.cfg.Issuer == nil {
		writeError(w, r, s.log, &Error{Status: http.StatusNotFound, Code: string(engine.CodeNotFound), Message: "this server does not manage tokens"})
		return false
	}
	if a := s.actor(r); a.Name != AdminUser {
		writeError(w, r, s.log, &Error{Status: http.StatusForbidden, Code: string(engine.CodeDenied),
			Message: a.Name + " may not manage tokens: only the " + AdminUser + " user may"})
		return false
	}
	return true
}

func (s *Server) createToken(w http.ResponseWriter, r *http.Request) {
	if !s.requireAdmin(w, r) {
		return
	}
	var req TokenRequest
	if err := s.decode(w, r, &req); err != nil {
		writeError(w, r, s.log, err)
		return
	}
	if !userName.MatchString(req.Name) {
		writeError(w, r, s.log, invalid("user name %q: use 1-64 of a-z 0-9 . _ - starting with a letter or digit", req.Name))
		return
	}
	token, hash, err := NewToken()
	if err != nil {
		writeError(w, r, s.log, err)
		return
	}
	if err := s.cfg.Issuer.PutToken(r.Context(), req.Name, hash); err != nil {
		writeError(w, r, s.log, err)
		return
	}
	s.log.InfoContext(r.Context(), "token created", "user", req.Name, "by", s.actor(r).Name, "request_id", RequestID(r.Context()))
	writeJSON(w, http.StatusCreated, NewTokenResponse{Name: req.Name, Token: token})
}

func (s *Server) listTokens(w http.ResponseWriter, r *http.Request) {
	if !s.requireAdmin(w, r) {
		return
	}
	ts, err := s.cfg.Issuer.Tokens(r.Context())
	if err != nil {
		writeError(w, r, s.log, err)
		return
	}
	if ts == nil {
		ts = []TokenInfo{}
	}
	writeJSON(w, http.StatusOK, ts)
}

// RevokeResponse is the answer of DELETE /v1/tokens/{name}.
type RevokeResponse struct {
	Name    string `json:"name"`
	Revoked int    `json:"revoked"` // tokens deleted
}

// revokeTokens deletes every token of one user (admin only). The admin
// user's own tokens are refused: they are the only way to manage tokens,
// and a lost admin token is recreated only by hand in the store.
func (s *Server) revokeTokens(w http.ResponseWriter, r *http.Request) {
	if !s.requireAdmin(w, r) {
		return
	}
	name := r.PathValue("name")
	if !userName.MatchString(name) {
		writeError(w, r, s.log, invalid("user name %q: use 1-64 of a-z 0-9 . _ - starting with a letter or digit", name))
		return
	}
	if name == AdminUser {
		writeError(w, r, s.log, &Error{Status: http.StatusConflict, Code: string(engine.CodeConflict),
			Message: "the " + AdminUser + " user's tokens cannot be revoked: they are the only way to manage tokens"})
		return
	}
	n, err := s.cfg.Issuer.RevokeTokens(r.Context(), name)
	if err != nil {
		writeError(w, r, s.log, err)
		return
	}
	if n == 0 {
		writeError(w, r, s.log, &Error{Status: http.StatusNotFound, Code: string(engine.CodeNotFound), Message: "user " + name + " has no tokens"})
		return
	}
	s.log.InfoContext(r.Context(), "tokens revoked", "user", name, "count", n, "by", s.actor(r).Name, "request_id", RequestID(r.Context()))
	writeJSON(w, http.StatusOK, RevokeResponse{Name: name, Revoked: n})
}

// RevokeTokens deletes every token of user name (admin only).
func (c *Client) RevokeTokens(ctx context.Context, name string) (RevokeResponse, error) {
	var out RevokeResponse
	err := c.do(ctx, http.MethodDelete, "/v1/tokens/"+url.PathEscape(name), nil, nil, &out)
	return out, err
}

// CreateToken asks the server for a new token for user name (admin only).
func (c *Client) CreateToken(ctx context.Context, name string) (NewTokenResponse, error) {
	var out NewTokenResponse
	err := c.do(ctx, http.MethodPost, "/v1/tokens", nil, TokenRequest{Name: name}, &out)
	return out, err
}

// Tokens lists the stored tokens' users and creation times (admin only).
func (c *Client) Tokens(ctx context.Context) ([]TokenInfo, error) {
	var out []TokenInfo
	err := c.do(ctx, http.MethodGet, "/v1/tokens", nil, nil, &out)
	return out, err
}
