// Package api is ship's versioned HTTP JSON API (/v1) and the Go client the
// CLI uses to call it. The server is a thin edge over the engine: it
// authenticates bearer tokens, decodes requests strictly, maps engine error
// codes to HTTP statuses and streams events over SSE. It must not make
// rollout decisions of its own.
package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/shipteam/ship/internal/authz"
	"github.com/shipteam/ship/internal/engine"
	"github.com/shipteam/ship/internal/httpmw"
	"github.com/shipteam/ship/internal/release"
	"github.com/shipteam/ship/internal/runtime"
)

// Engine is what the API needs from the rollout engine.
type Engine interface {
	Deploy(ctx context.Context, a engine.Actor, req engine.DeployRequest) (release.Release, error)
	Promote(ctx context.Context, a engine.Actor, req engine.PromoteRequest) (release.Release, error)
	Abort(ctx context.Context, a engine.Actor, req engine.AbortRequest) (release.Release, error)
	Rollback(ctx context.Context, a engine.Actor, req engine.RollbackRequest) (release.Release, error)
	Scale(ctx context.Context, a engine.Actor, req engine.ScaleRequest) error
	Reclaim(ctx context.Context, a engine.Actor, req engine.ReclaimRequest) (engine.Reclaimed, error)
	Lock(ctx context.Context, a engine.Actor, req engine.LockRequest) error
	Unlock(ctx context.Context, a engine.Actor, req engine.UnlockRequest) error
	Status(ctx context.Context, a engine.Actor, app, env string) (engine.AppStatus, error)
	List(ctx context.Context, a engine.Actor) ([]engine.AppStatus, error)
	History(ctx context.Context, a engine.Actor, app, env string, limit int) ([]release.Release, error)
	Events(ctx context.Context, a engine.Actor, q engine.EventQuery) ([]release.Event, error)
	Release(ctx context.Context, a engine.Actor, id int64) (release.Release, error)
	Logs(ctx context.Context, a engine.Actor, app, env, version string, n int) ([]runtime.LogLine, error)
	Subscribe() (<-chan release.Event, func())
	// ReadFilter says which live events a may see.
	ReadFilter(a engine.Actor) func(ctx context.Context, ev release.Event) bool
}

// Config configures the API server.
type Config struct {
	Engine Engine
	Tokens TokenStore
	// Metrics is served unauthenticated at /metrics when set (the registry
	// the router registers its per-version metrics into).
	Metrics prometheus.Gatherer
	Logger  *slog.Logger
	// Heartbeat is the interval of SSE comment lines that keep idle
	// streams (and proxies in between) alive. Default 15s.
	Heartbeat time.Duration
	// MaxBodyBytes bounds request bodies. Default 64 KiB.
	MaxBodyBytes int64
	// Issuer, when set, lets identities with the admin role create, list,
	// rotate and revoke tokens at /v1/tokens.
	Issuer TokenIssuer
	// Policy decides who may manage tokens and which roles a token may
	// carry (the engine decides everything else). Default: the built-in
	// roles, no grants.
	Policy *authz.Policy
	// MaxStreamsPerUser bounds the open event streams of one token user
	// (default 8); MaxStreams bounds them in total (default 256). More are
	// refused with 429.
	MaxStreamsPerUser int
	MaxStreams        int
}

func (c *Config) setDefaults() {
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Heartbeat == 0 {
		c.Heartbeat = 15 * time.Second
	}
	if c.MaxBodyBytes == 0 {
		c.MaxBodyBytes = 64 << 10
	}
	if c.MaxStreamsPerUser == 0 {
		c.MaxStreamsPerUser = 8
	}
	if c.MaxStreams == 0 {
		c.MaxStreams = 256
	}
	if c.Policy == nil {
		c.Policy, _ = authz.New(authz.Config{})
	}
}

// Validate reports every problem with the config at once.
func (c Config) Validate() error {
	var errs []error
	if c.Engine == nil {
		errs = append(errs, errors.New("api: Engine is required"))
	}
	if c.Tokens == nil {
		errs = append(errs, errors.New("api: Tokens is required"))
	}
	if c.Heartbeat < 0 {
		errs = append(errs, fmt.Errorf("api: Heartbeat %v must not be negative", c.Heartbeat))
	}
	if c.MaxBodyBytes < 0 {
		errs = append(errs, fmt.Errorf("api: MaxBodyBytes %d must not be negative", c.MaxBodyBytes))
	}
	if c.MaxStreamsPerUser < 0 || c.MaxStreams < 0 {
		errs = append(errs, fmt.Errorf("api: MaxStreamsPerUser %d and MaxStreams %d must not be negative", c.MaxStreamsPerUser, c.MaxStreams))
	}
	return errors.Join(errs...)
}

// Server serves the API.
type Server struct {
	cfg     Config
	log     *slog.Logger
	handler http.Handler
	streams *streams
}

// New validates cfg and builds the handler.
func New(cfg Config) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.setDefaults()
	s := &Server{cfg: cfg, log: cfg.Logger, streams: newStreams(cfg.MaxStreamsPerUser, cfg.MaxStreams)}
	s.handler = s.build()
	return s, nil
}

// Handler returns the whole API, middleware included.
func (s *Server) Handler() http.Handler { return s.handler }

// build assembles routes and middleware. This is the one place the
// middleware order is decided, outermost first:
//
//  1. withRequestID — every later log line and error can name the request;
//  2. accessLog     — sees the final status, including 401s and panics;
//  3. recoverPanics — a panic becomes a logged 500, the server lives on;
//  4. authenticate  — only under /v1/; /healthz and /metrics stay open so
//     probes and Prometheus need no token.
func (s *Server) build() http.Handler {
	v1 := http.NewServeMux()
	v1.HandleFunc("GET /v1/whoami", s.whoami)
	v1.HandleFunc("GET /v1/apps", s.listApps)
	v1.HandleFunc("GET /v1/apps/{app}", s.appStatus)
	v1.HandleFunc("POST /v1/apps/{app}/deploy", s.deploy)
	v1.HandleFunc("POST /v1/apps/{app}/promote", s.promote)
	v1.HandleFunc("POST /v1/apps/{app}/abort", s.abort)
	v1.HandleFunc("POST /v1/apps/{app}/rollback", s.rollback)
	v1.HandleFunc("POST /v1/apps/{app}/scale", s.scale)
	v1.HandleFunc("POST /v1/apps/{app}/reclaim", s.reclaim)
	v1.HandleFunc("POST /v1/apps/{app}/lock", s.lock)
	v1.HandleFunc("DELETE /v1/apps/{app}/lock", s.unlock)
	v1.HandleFunc("GET /v1/apps/{app}/history", s.history)
	v1.HandleFunc("GET /v1/apps/{app}/logs", s.logs)
	v1.HandleFunc("GET /v1/releases/{id}", s.getRelease)
	v1.HandleFunc("GET /v1/events", s.events)
	v1.HandleFunc("POST /v1/tokens", s.createToken)
	v1.HandleFunc("GET /v1/tokens", s.listTokens)
	v1.HandleFunc("DELETE /v1/tokens/{name}", s.revokeTokens)
	v1.HandleFunc("POST /v1/tokens/{name}/rotate", s.rotateTokens)
	v1.HandleFunc("/v1/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, r, s.log, &Error{Status: http.StatusNotFound, Code: string(engine.CodeNotFound),
			Message: fmt.Sprintf("no such endpoint: %s %s", r.Method, r.URL.Path)})
	})

	root := http.NewServeMux()
	root.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = io.WriteString(w, "ok\n")
	})
	if s.cfg.Metrics != nil {
		root.Handle("GET /metrics", promhttp.HandlerFor(s.cfg.Metrics, promhttp.HandlerOpts{}))
	}
	root.Handle("/v1/", s.authenticate(v1))
	root.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, r, s.log, &Error{Status: http.StatusNotFound, Code: string(engine.CodeNotFound),
			Message: "not found; the API lives under /v1/"})
	})

	return chain(root,
		httpmw.WithRequestID,
		accessLog(s.log),
		recoverPanics(s.log),
	)
}

// Request bodies are the engine's request types, one per command: the
// engine validates them, the API only decodes (unknown fields are refused,
// so a typo such as "replica" is an error, not an ignored option) and puts
// the app from the path in.
type (
	DeployRequest   = engine.DeployRequest   // POST /v1/apps/{app}/deploy
	PromoteRequest  = engine.PromoteRequest  // POST /v1/apps/{app}/promote
	AbortRequest    = engine.AbortRequest    // POST /v1/apps/{app}/abort
	RollbackRequest = engine.RollbackRequest // POST /v1/apps/{app}/rollback
	ScaleRequest    = engine.ScaleRequest    // POST /v1/apps/{app}/scale
	LockRequest     = engine.LockRequest     // POST /v1/apps/{app}/lock
	ReclaimRequest  = engine.ReclaimRequest  // POST /v1/apps/{app}/reclaim
)

// Identity is the answer of GET /v1/whoami.
type Identity struct {
	Name   string         `json:"name"`
	Source release.Source `json:"source"`
	ID     string         `json:"id,omitempty"`   // token:NAME
	Role   string         `json:"role,omitempty"` // the token's role
}

// decode reads exactly one JSON value into v. An empty body is allowed and
// leaves v at its zero value (promote and abort need no fields).
func (s *Server) decode(w http.ResponseWriter, r *http.Request, v any) error {
	r.Body = http.MaxBytesReader(w, r.Body, s.cfg.MaxBodyBytes)
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		if errors.Is(err, io.EOF) {
			return nil
		}
		if errors.Is(err, os.ErrDeadlineExceeded) {
			// The server's body read deadline (a client trickling its body).
			return &Error{Status: http.StatusRequestTimeout, Code: string(engine.CodeInvalid),
				Message: "request body not received in time"}
		}
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return &Error{Status: http.StatusRequestEntityTooLarge, Code: string(engine.CodeInvalid),
				Message: fmt.Sprintf("request body larger than %d bytes", mbe.Limit)}
		}
		return invalid("bad request body: %v", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return invalid("bad request body: more than one JSON value")
	}
	return nil
}

func (s *Server) actor(r *http.Request) engine.Actor {
	a, _ := ActorFrom(r.Context())
	return a
}

func (s *Server) whoami(w http.ResponseWriter, r *http.Request) {
	a := s.actor(r)
	writeJSON(w, http.StatusOK, Identity{Name: a.Name, Source: a.Source, ID: a.ID, Role: a.Role})
}

func (s *Server) listApps(w http.ResponseWriter, r *http.Request) {
	apps, err := s.cfg.Engine.List(r.Context(), s.actor(r))
	if err != nil {
		writeError(w, r, s.log, err)
		return
	}
	if apps == nil {
		apps = []engine.AppStatus{}
	}
	writeJSON(w, http.StatusOK, apps)
}

func (s *Server) appStatus(w http.ResponseWriter, r *http.Request) {
	st, err := s.cfg.Engine.Status(r.Context(), s.actor(r), r.PathValue("app"), r.URL.Query().Get("env"))
	if err != nil {
		writeError(w, r, s.log, err)
		return
	}
	writeJSON(w, http.StatusOK, st)
}

// command decodes a command's body into req and sets its app from the
// path; a body naming another app is refused.
func (s *Server) command(w http.ResponseWriter, r *http.Request, req any, app *string) bool {
	if err := s.decode(w, r, req); err != nil {
		writeError(w, r, s.log, err)
		return false
	}
	path := r.PathValue("app")
	if *app != "" && *app != path {
		writeError(w, r, s.log, invalid("app %q in the body and %q in the path differ", *app, path))
		return false
	}
	*app = path
	return true
}

func (s *Server) deploy(w http.ResponseWriter, r *http.Request) {
	var req DeployRequest
	if !s.command(w, r, &req, &req.App) {
		return
	}
	rel, err := s.cfg.Engine.Deploy(r.Context(), s.actor(r), req)
	s.answerRelease(w, r, rel, err, http.StatusCreated)
}

func (s *Server) promote(w http.ResponseWriter, r *http.Request) {
	var req PromoteRequest
	if !s.command(w, r, &req, &req.App) {
		return
	}
	rel, err := s.cfg.Engine.Promote(r.Context(), s.actor(r), req)
	s.answerRelease(w, r, rel, err, http.StatusOK)
}

func (s *Server) abort(w http.ResponseWriter, r *http.Request) {
	var req AbortRequest
	if !s.command(w, r, &req, &req.App) {
		return
	}
	rel, err := s.cfg.Engine.Abort(r.Context(), s.actor(r), req)
	s.answerRelease(w, r, rel, err, http.StatusOK)
}

func (s *Server) rollback(w http.ResponseWriter, r *http.Request) {
	var req RollbackRequest
	if !s.command(w, r, &req, &req.App) {
		return
	}
	rel, err := s.cfg.Engine.Rollback(r.Context(), s.actor(r), req)
	s.answerRelease(w, r, rel, err, http.StatusCreated)
}

func (s *Server) answerRelease(w http.ResponseWriter, r *http.Request, rel release.Release, err error, status int) {
	if err != nil {
		writeError(w, r, s.log, err)
		return
	}
	writeJSON(w, status, rel)
}

func (s *Server) scale(w http.ResponseWriter, r *http.Request) {
	var req ScaleRequest
	if !s.command(w, r, &req, &req.App) {
		return
	}
	if err := s.cfg.Engine.Scale(r.Context(), s.actor(r), req); err != nil {
		writeError(w, r, s.log, err)
		return
	}
	s.answerStatus(w, r, req.App, req.Env)
}

// reclaim takes env from the query (?env=) like DELETE .../lock; a JSON
// body {"env": ...} as the other commands take is accepted too, and must
// not name another environment.
func (s *Server) reclaim(w http.ResponseWriter, r *http.Request) {
	var req ReclaimRequest
	if !s.command(w, r, &req, &req.App) {
		return
	}
	switch env := r.URL.Query().Get("env"); {
	case env == "":
	case req.Env != "" && req.Env != env:
		writeError(w, r, s.log, invalid("env %q in the query and %q in the body differ", env, req.Env))
		return
	default:
		req.Env = env
	}
	res, err := s.cfg.Engine.Reclaim(r.Context(), s.actor(r), req)
	if err != nil {
		writeError(w, r, s.log, err)
		return
	}
	writeJSON(w, http.StatusOK, res)
}

func (s *Server) lock(w http.ResponseWriter, r *http.Request) {
	var req LockRequest
	if !s.command(w, r, &req, &req.App) {
		return
	}
	if err := s.cfg.Engine.Lock(r.Context(), s.actor(r), req); err != nil {
		writeError(w, r, s.log, err)
		return
	}
	s.answerStatus(w, r, req.App, req.Env)
}

func (s *Server) unlock(w http.ResponseWriter, r *http.Request) {
	req := engine.UnlockRequest{App: r.PathValue("app"), Env: r.URL.Query().Get("env")}
	if err := s.cfg.Engine.Unlock(r.Context(), s.actor(r), req); err != nil {
		writeError(w, r, s.log, err)
		return
	}
	s.answerStatus(w, r, req.App, req.Env)
}

// answerStatus answers a command that changes an app (scale, lock) with the
// app's status after it, so the caller sees the effect.
func (s *Server) answerStatus(w http.ResponseWriter, r *http.Request, app, env string) {
	st, err := s.cfg.Engine.Status(r.Context(), s.actor(r), app, env)
	if err != nil {
		writeError(w, r, s.log, err)
		return
	}
	writeJSON(w, http.StatusOK, st)
}

func (s *Server) history(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	limit, err := intParam(q.Get("limit"), 20, 1, 1000)
	if err != nil {
		writeError(w, r, s.log, invalid("limit: %v", err))
		return
	}
	rels, err := s.cfg.Engine.History(r.Context(), s.actor(r), r.PathValue("app"), q.Get("env"), limit)
	if err != nil {
		writeError(w, r, s.log, err)
		return
	}
	if rels == nil {
		rels = []release.Release{}
	}
	writeJSON(w, http.StatusOK, rels)
}

func (s *Server) logs(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	n, err := intParam(q.Get("n"), 100, 1, 10000)
	if err != nil {
		writeError(w, r, s.log, invalid("n: %v", err))
		return
	}
	lines, err := s.cfg.Engine.Logs(r.Context(), s.actor(r), r.PathValue("app"), q.Get("env"), q.Get("version"), n)
	if err != nil {
		writeError(w, r, s.log, err)
		return
	}
	if lines == nil {
		lines = []runtime.LogLine{}
	}
	writeJSON(w, http.StatusOK, lines)
}

func (s *Server) getRelease(w http.ResponseWriter, r *http.Request) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil || id <= 0 {
		writeError(w, r, s.log, invalid("release id must be a positive number, not %q", r.PathValue("id")))
		return
	}
	rel, err := s.cfg.Engine.Release(r.Context(), s.actor(r), id)
	s.answerRelease(w, r, rel, err, http.StatusOK)
}

func intParam(v string, def, lo, hi int) (int, error) {
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		return 0, fmt.Errorf("%q is not a number", v)
	}
	if n < lo || n > hi {
		return 0, fmt.Errorf("%d is outside %d..%d", n, lo, hi)
	}
	return n, nil
}
