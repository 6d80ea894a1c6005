package api

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"net/http"
	"strings"

	"github.com/shipteam/ship/internal/engine"
	"github.com/shipteam/ship/internal/release"
)

// TokenPrefix starts every ship API token, so a leaked token is easy to
// recognise (secret scanners, logs).
const TokenPrefix = "ship_"

// HeaderSource lets a client say which front end it is ("cli"); anything
// else is recorded as "api".
const HeaderSource = "X-Ship-Source"

// ErrUnknownToken is what a TokenStore returns (or wraps) for a hash it does
// not hold.
var ErrUnknownToken = errors.New("unknown token")

// TokenStore resolves a token hash to the user it was issued to and the
// role it carries. Only hashes are stored, so a copy of the database does
// not grant access.
type TokenStore interface {
	TokenOwner(ctx context.Context, hash []byte) (TokenOwner, error)
}

// TokenOwner is who a token was issued to and the role it carries.
type TokenOwner struct {
	Name string
	Role string
}

// TokenIdentity is the identity (engine.Actor.ID, internal/authz) of the
// tokens of user name: token:NAME.
func TokenIdentity(name string) string { return "token:" + name }

// NewToken returns a fresh token (ship_ + 32 random bytes, base64url) and
// the hash to store for it.
func NewToken() (token string, hash []byte, err error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", nil, err
	}
	token = TokenPrefix + base64.RawURLEncoding.EncodeToString(b)
	return token, HashToken(token), nil
}

// HashToken is the SHA-256 of the whole token string. A plain hash is
// enough: tokens carry 256 bits of randomness, so there is nothing to
// brute-force that a slow hash would protect.
func HashToken(token string) []byte {
	h := sha256.Sum256([]byte(token))
	return h[:]
}

type actorKey struct{}

type tokenHashKey struct{}

// ActorFrom returns the authenticated actor of a request.
func ActorFrom(ctx context.Context) (engine.Actor, bool) {
	a, ok := ctx.Value(actorKey{}).(engine.Actor)
	return a, ok
}

// authenticate resolves the bearer token to an actor or answers 401.
func (s *Server) authenticate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		token, ok := bearer(r.Header.Get("Authorization"))
		if !ok {
			s.unauthorized(w, r, "missing bearer token (set SHIP_TOKEN or --token)")
			return
		}
		if !strings.HasPrefix(token, TokenPrefix) {
			s.unauthorized(w, r, "invalid token")
			return
		}
		owner, err := s.cfg.Tokens.TokenOwner(r.Context(), HashToken(token))
		user := owner.Name
		if err != nil || user == "" {
			if err != nil && !isNotFound(err) {
				s.log.ErrorContext(r.Context(), "token lookup", "request_id", RequestID(r.Context()), "err", err)
			}
			s.unauthorized(w, r, "invalid token")
			return
		}
		src := release.SourceAPI
		if release.Source(strings.ToLower(r.Header.Get(HeaderSource))) == release.SourceCLI {
			src = release.SourceCLI
		}
		if who, ok := r.Context().Value(logActorKey{}).(*logActor); ok {
			who.name, who.source = user, string(src)
		}
		ctx := context.WithValue(r.Context(), actorKey{}, engine.Actor{ID: TokenIdentity(user), Name: user, Source: src, Role: owner.Role})
		ctx = context.WithValue(ctx, tokenHashKey{}, HashToken(token))
		next.ServeHTTP(w, r.WithContext(ctx))
	})
}

// stillValid reports whether the request's token is still stored: a
// stream registered just after a revocation closed the user's streams
// finds out here.
func (s *Server) stillValid(r *http.Request) bool {
	h, _ := r.Context().Value(tokenHashKey{}).([]byte)
	o, err := s.cfg.Tokens.TokenOwner(r.Context(), h)
	return err == nil && o.Name != ""
}

func (s *Server) unauthorized(w http.ResponseWriter, r *http.Request, msg string) {
	w.Header().Set("WWW-Authenticate", `Bearer realm="ship"`)
	writeError(w, r, s.log, &Error{Status: http.StatusUnauthorized, Code: CodeUnauthorized, Message: msg})
}

func bearer(h string) (string, bool) {
	scheme, tok, ok := strings.Cut(strings.TrimSpace(h), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	tok = strings.TrimSpace(tok)
	return tok, tok != ""
}

// isNotFound reports an unknown token; any other lookup error is a fault
// worth logging (the caller still gets 401, never a hint).
func isNotFound(err error) bool { return errors.Is(err, ErrUnknownToken) }
