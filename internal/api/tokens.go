package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/shipteam/ship/internal/authz"
	"github.com/shipteam/ship/internal/engine"
)

// AdminUser is the user of the token `ship serve` creates on its first
// start. Any identity holding the admin role may manage tokens.
const AdminUser = "admin"

// ErrLastAdmin is what a TokenIssuer returns (or wraps) when a revoke would
// leave no token with the admin role.
var ErrLastAdmin = errors.New("last admin token")

// ErrNoTokens is what a TokenIssuer returns (or wraps) when rotating a
// user who holds no token.
var ErrNoTokens = errors.New("no tokens")

// TokenIssuer stores new tokens, lists, rotates and revokes them;
// Config.Issuer is optional (without it /v1/tokens answers 404).
type TokenIssuer interface {
	PutToken(ctx context.Context, name, role string, hash []byte) error
	Tokens(ctx context.Context) ([]TokenInfo, error)
	// RevokeTokens deletes every token of user name and says how many;
	// ErrLastAdmin when no admin token would be left.
	RevokeTokens(ctx context.Context, name string) (int, error)
	// RotateTokens replaces every token of name by the one whose hash is
	// given, with the same role, atomically; ErrNoTokens when name has
	// none.
	RotateTokens(ctx context.Context, name string, hash []byte) (role string, revoked int, err error)
}

// TokenInfo is one stored token as GET /v1/tokens lists it (never the
// token or its hash).
type TokenInfo struct {
	Name    string    `json:"name"`
	Role    string    `json:"role"`
	Created time.Time `json:"created"`
}

// TokenRequest is the body of POST /v1/tokens.
type TokenRequest struct {
	Name string `json:"name"`
	Role string `json:"role"`
}

// NewTokenResponse is the answer of POST /v1/tokens and of
// POST /v1/tokens/{name}/rotate: the token is shown this once; only its
// hash is stored.
type NewTokenResponse struct {
	Name    string `json:"name"`
	Role    string `json:"role"`
	Token   string `json:"token"`
	Revoked int    `json:"revoked,omitempty"` // rotate: old tokens revoked
}

// userName is what a user name may look like: it shows up in history,
// Slack messages and logs, so no spaces or markup.
var userName = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,63}$`)

// requireTokenAdmin answers 403 unless the caller's roles carry token
// management (the built-in admin role on every app and environment).
func (s *Server) requireTokenAdmin(w http.ResponseWriter, r *http.Request) bool {
	if s.cfg.Issuer == nil {
		writeError(w, r, s.log, &Error{Status: http.StatusNotFound, Code: string(engine.CodeNotFound), Message: "this server does not manage tokens"})
		return false
	}
	a := s.actor(r)
	err := s.cfg.Policy.Check(r.Context(), authz.Request{Who: authz.Identity(a.ID), Role: a.Role, Action: authz.Tokens, App: "*", Env: "*"})
	if err != nil {
		s.log.WarnContext(r.Context(), "access denied", "actor", a.Name, "identity", a.ID, "action", "tokens", "why", err.Error(),
			"request_id", RequestID(r.Context()))
		writeError(w, r, s.log, &Error{Status: http.StatusForbidden, Code: string(engine.CodeDenied),
			Message: err.Error()})
		return false
	}
	return true
}

func (s *Server) checkName(w http.ResponseWriter, r *http.Request, name string) bool {
	if !userName.MatchString(name) {
		writeError(w, r, s.log, invalid("user name %q: use 1-64 of a-z 0-9 . _ - starting with a letter or digit", name))
		return false
	}
	return true
}

func (s *Server) createToken(w http.ResponseWriter, r *http.Request) {
	if !s.requireTokenAdmin(w, r) {
		return
	}
	var req TokenRequest
	if err := s.decode(w, r, &req); err != nil {
		writeError(w, r, s.log, err)
		return
	}
	if !s.checkName(w, r, req.Name) {
		return
	}
	if !s.cfg.Policy.HasRole(req.Role) {
		msg := fmt.Sprintf("role %q is not a role of this server; use one of %s", req.Role, strings.Join(s.cfg.Policy.Roles(), ", "))
		if req.Role == "" {
			msg = "a token needs a role: one of " + strings.Join(s.cfg.Policy.Roles(), ", ")
		}
		writeError(w, r, s.log, invalid("%s", msg))
		return
	}
	token, hash, err := NewToken()
	if err != nil {
		writeError(w, r, s.log, err)
		return
	}
	if err := s.cfg.Issuer.PutToken(r.Context(), req.Name, req.Role, hash); err != nil {
		writeError(w, r, s.log, err)
		return
	}
	s.log.InfoContext(r.Context(), "token created", "user", req.Name, "role", req.Role, "by", s.actor(r).Name, "request_id", RequestID(r.Context()))
	writeJSON(w, http.StatusCreated, NewTokenResponse{Name: req.Name, Role: req.Role, Token: token})
}

func (s *Server) listTokens(w http.ResponseWriter, r *http.Request) {
	if !s.requireTokenAdmin(w, r) {
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

func lastAdmin(name string) *Error {
	return &Error{Status: http.StatusConflict, Code: string(engine.CodeConflict),
		Message: fmt.Sprintf("%s holds the last admin token: create another admin token first (ship token create NAME --role admin), or rotate this one (ship token rotate %s)", name, name)}
}

// revokeTokens deletes every token of one user (admin role only) and ends
// their open event streams. The last admin token is kept, so nobody is
// locked out of token management.
func (s *Server) revokeTokens(w http.ResponseWriter, r *http.Request) {
	if !s.requireTokenAdmin(w, r) {
		return
	}
	name := r.PathValue("name")
	if !s.checkName(w, r, name) {
		return
	}
	n, err := s.cfg.Issuer.RevokeTokens(r.Context(), name)
	if errors.Is(err, ErrLastAdmin) {
		writeError(w, r, s.log, lastAdmin(name))
		return
	}
	if err != nil {
		writeError(w, r, s.log, err)
		return
	}
	if n == 0 {
		writeError(w, r, s.log, &Error{Status: http.StatusNotFound, Code: string(engine.CodeNotFound), Message: "user " + name + " has no tokens"})
		return
	}
	closed := s.streams.closeUser(name)
	s.log.InfoContext(r.Context(), "tokens revoked", "user", name, "count", n, "streams_closed", closed, "by", s.actor(r).Name, "request_id", RequestID(r.Context()))
	writeJSON(w, http.StatusOK, RevokeResponse{Name: name, Revoked: n})
}

// rotateTokens replaces every token of one user by a new one with the same
// role (admin role only) and ends the streams the old ones opened.
func (s *Server) rotateTokens(w http.ResponseWriter, r *http.Request) {
	if !s.requireTokenAdmin(w, r) {
		return
	}
	name := r.PathValue("name")
	if !s.checkName(w, r, name) {
		return
	}
	token, hash, err := NewToken()
	if err != nil {
		writeError(w, r, s.log, err)
		return
	}
	role, n, err := s.cfg.Issuer.RotateTokens(r.Context(), name, hash)
	if errors.Is(err, ErrNoTokens) {
		writeError(w, r, s.log, &Error{Status: http.StatusNotFound, Code: string(engine.CodeNotFound), Message: "user " + name + " has no tokens to rotate"})
		return
	}
	if err != nil {
		writeError(w, r, s.log, err)
		return
	}
	closed := s.streams.closeUser(name)
	s.log.InfoContext(r.Context(), "tokens rotated", "user", name, "role", role, "revoked", n, "streams_closed", closed, "by", s.actor(r).Name, "request_id", RequestID(r.Context()))
	writeJSON(w, http.StatusOK, NewTokenResponse{Name: name, Role: role, Token: token, Revoked: n})
}

// RevokeTokens deletes every token of user name (admin role only).
func (c *Client) RevokeTokens(ctx context.Context, name string) (RevokeResponse, error) {
	var out RevokeResponse
	err := c.do(ctx, http.MethodDelete, "/v1/tokens/"+url.PathEscape(name), nil, nil, &out)
	return out, err
}

// RotateTokens replaces every token of user name by a new one with the
// same role (admin role only).
func (c *Client) RotateTokens(ctx context.Context, name string) (NewTokenResponse, error) {
	var out NewTokenResponse
	err := c.do(ctx, http.MethodPost, "/v1/tokens/"+url.PathEscape(name)+"/rotate", nil, nil, &out)
	return out, err
}

// CreateToken asks the server for a new token for user name with role
// (admin role only).
func (c *Client) CreateToken(ctx context.Context, name, role string) (NewTokenResponse, error) {
	var out NewTokenResponse
	err := c.do(ctx, http.MethodPost, "/v1/tokens", nil, TokenRequest{Name: name, Role: role}, &out)
	return out, err
}

// Tokens lists the stored tokens' users, roles and creation times (admin
// role only).
func (c *Client) Tokens(ctx context.Context) ([]TokenInfo, error) {
	var out []TokenInfo
	err := c.do(ctx, http.MethodGet, "/v1/tokens", nil, nil, &out)
	return out, err
}
