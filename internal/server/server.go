// Package server is `ship serve`: it wires the store, the app specs, the
// router, the local runtime, the engine and the API together, creates the
// first admin token, and shuts everything down in order. It holds no logic
// of its own beyond that wiring; each part lives in its own package.
package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/shipteam/ship/internal/api"
	"github.com/shipteam/ship/internal/authz"
	"github.com/shipteam/ship/internal/chat/slack"
	"github.com/shipteam/ship/internal/engine"
	"github.com/shipteam/ship/internal/spec"
	"github.com/shipteam/ship/internal/store"
)

// Config is what `ship serve` is started with.
type Config struct {
	Addr    string // API address, host:port
	DataDir string // ship.db, admin-token, instances/
	AppsDir string // app specs
	Logger  *slog.Logger
	// Stdout receives the first admin token (and nothing else).
	Stdout io.Writer
	// ShutdownTimeout bounds the whole ordered shutdown. Default 30s.
	ShutdownTimeout time.Duration
	// BodyReadTimeout bounds how long a request body (any method but GET
	// and HEAD) may take to arrive, so a client trickling a body cannot
	// hold a connection and a handler forever. Default 10s. (The server's
	// ReadTimeout cannot do this: it would also cut SSE streams.)
	BodyReadTimeout time.Duration
	// Heartbeat is the SSE heartbeat interval. Default: the API's.
	Heartbeat time.Duration
	// Ready, when set, is called once the API is listening, with its address.
	Ready func(apiAddr string)
	// Runtime is where apps run: RuntimeLocal (default) or RuntimeKube.
	Runtime string
	// Kube says which cluster RuntimeKube drives.
	Kube KubeConfig
	// SlackConfig is the ChatOps config file ("" = environment only, see
	// docs/slack.md). Slack is served when a signing secret, an app token or
	// a Mattermost token is configured.
	SlackConfig string
	// AuthConfig is the auth config file: roles and grants for every door
	// (docs/permissions.md). "" = built-in roles only: every token carries
	// its own role, everyone authenticated may read.
	AuthConfig string
	// MaxStreamsPerUser and MaxStreams bound open event streams (API
	// defaults when 0).
	MaxStreamsPerUser, MaxStreams int
}

// Validate reports every problem with cfg at once.
func (c Config) Validate() error {
	var errs []error
	if c.Addr == "" {
		errs = append(errs, errors.New("--addr is required"))
	} else if _, _, err := net.SplitHostPort(c.Addr); err != nil {
		errs = append(errs, fmt.Errorf("--addr %q: want HOST:PORT", c.Addr))
	}
	if c.DataDir == "" {
		errs = append(errs, errors.New("--data is required"))
	}
	if c.AppsDir == "" {
		errs = append(errs, errors.New("--apps is required"))
	}
	if err := checkRuntime(c.Runtime); err != nil {
		errs = append(errs, err)
	}
	if c.ShutdownTimeout < 0 {
		errs = append(errs, fmt.Errorf("shutdown timeout %s is negative", c.ShutdownTimeout))
	}
	if c.BodyReadTimeout < 0 {
		errs = append(errs, fmt.Errorf("body read timeout %s is negative", c.BodyReadTimeout))
	}
	return errors.Join(errs...)
}

// AdminTokenFile is the file, in the data dir, holding the first token.
const AdminTokenFile = "admin-token"

// Run serves until ctx ends, then shuts down in order: API, engine,
// runtime (drains instances), router, store.
func Run(ctx context.Context, cfg Config) (err error) {
	if err := cfg.Validate(); err != nil {
		return err
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Stdout == nil {
		cfg.Stdout = io.Discard
	}
	if cfg.ShutdownTimeout == 0 {
		cfg.ShutdownTimeout = 30 * time.Second
	}
	if cfg.BodyReadTimeout == 0 {
		cfg.BodyReadTimeout = 10 * time.Second
	}
	log := cfg.Logger
	defer func() { log.Info("ship stopped", "err", err) }()

	// 1. Specs and chat config first: a malformed one stops ship before it
	// touches anything.
	catalog, err := spec.LoadDir(cfg.AppsDir)
	if err != nil {
		return fmt.Errorf("load apps from %s: %w", cfg.AppsDir, err)
	}
	slackCfg, err := slack.LoadConfig(cfg.SlackConfig)
	if err != nil {
		return err
	}
	policy, err := loadPolicy(cfg.AuthConfig, cfg.SlackConfig, slackCfg, log)
	if err != nil {
		return err
	}

	// 2. The API port: taken now, so a clash fails before any app starts.
	apiLn, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("API listen on %s: %w", cfg.Addr, err)
	}
	defer apiLn.Close()

	// 3. State.
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("data dir: %w", err)
	}
	st, err := store.Open(ctx, filepath.Join(cfg.DataDir, "ship.db"))
	if err != nil {
		return fmt.Errorf("open store: %w", err)
	}
	defer func() {
		if cerr := st.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("close store: %w", cerr)
		}
	}()
	if err := ensureAdminToken(ctx, st, cfg.DataDir, cfg.Stdout, log); err != nil {
		return err
	}

	// 4. Where apps run: processes behind ship's own router (the default),
	// or a Kubernetes cluster.
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	// One deadline bounds the whole shutdown, set when it begins; every
	// step below (and the deferred ones) shares it.
	var stopBy time.Time
	shutdownCtx := func() (context.Context, context.CancelFunc) {
		if stopBy.IsZero() {
			stopBy = time.Now().Add(cfg.ShutdownTimeout)
		}
		return context.WithDeadline(context.WithoutCancel(ctx), stopBy)
	}
	var parts runParts
	if cfg.Runtime == RuntimeKube {
		krt, krr, src, err := kubeParts(ctx, cfg.Kube, catalog.All(), log.With("part", "kube"))
		if err != nil {
			return err
		}
		defer krt.Close()
		parts = runParts{runtime: krt, router: krr, metrics: src}
	} else {
		if cfg.Kube.PrometheusURL != "" {
			log.Warn("--prometheus is for --runtime kube: on the local runtime ship's router measures every request itself")
		}
		p, stop, err := startLocal(ctx, cfg.DataDir, catalog, reg, log)
		defer func() {
			c, cancel := shutdownCtx()
			defer cancel()
			stop(c)
		}()
		if err != nil {
			return err
		}
		parts = p
	}

	// 6. Engine.
	eng, err := engine.New(engine.Config{
		Store: st, Apps: catalog, Runtime: parts.runtime, Router: parts.router, Metrics: parts.metrics, Logs: parts.logs,
		LookEvery: parts.lookEvery, Logger: log.With("part", "engine"), Authorize: Authorizer(policy),
	})
	if err != nil {
		return fmt.Errorf("engine: %w", err)
	}
	engCtx, stopEngine := context.WithCancel(context.WithoutCancel(ctx))
	defer stopEngine()
	engDone := make(chan error, 1)
	go func() { engDone <- eng.Run(engCtx) }()

	// 7. API.
	apiSrv, err := api.New(api.Config{
		Engine: eng, Tokens: tokenStore{st}, Issuer: tokenStore{st}, Metrics: reg, Heartbeat: cfg.Heartbeat,
		Logger: log.With("part", "api"), Policy: policy,
		MaxStreamsPerUser: cfg.MaxStreamsPerUser, MaxStreams: cfg.MaxStreams,
	})
	if err != nil {
		stopEngine()
		<-engDone
		return fmt.Errorf("api: %w", err)
	}
	// 8. ChatOps, outside the API's bearer-token auth: Slack and Mattermost
	// sign or token-check their own requests.
	handler := apiSrv.Handler()
	botDone := make(chan error, 1)
	stopBot := func() {}
	if slackCfg.Enabled() {
		bot, err := slack.New(slackCfg, eng, log.With("part", "slack"), slack.WithMessageStore(st), slack.WithReplayStore(st))
		if err != nil {
			stopEngine()
			<-engDone
			return fmt.Errorf("slack: %w", err)
		}
		// Slack says who a user is and which user groups they are in;
		// the policy decides what that allows.
		policy.SetGroups(authz.KindSlack, bot.Groups())
		reg.MustRegister(bot.Collector())
		mux := http.NewServeMux()
		mux.Handle("/slack/", bot.Handler())
		mux.Handle("/", handler)
		handler = mux
		botCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		stopBot = cancel
		go func() {
			err := bot.Run(botCtx)
			if err != nil {
				log.Error("slack stopped", "err", err)
			}
			botDone <- err
		}()
		log.Info("chatops enabled", "socket_mode", slackCfg.SocketMode())
	} else {
		botDone <- nil
	}
	defer stopBot()

	// Streams (SSE) never end on their own; cancelling their base context
	// at shutdown lets http.Server.Shutdown finish.
	reqCtx, cancelRequests := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelRequests()
	httpSrv := &http.Server{
		Handler:           boundBodyRead(handler, cfg.BodyReadTimeout),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       120 * time.Second,
		BaseContext:       func(net.Listener) context.Context { return reqCtx },
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	apiDone := make(chan error, 1)
	go func() { apiDone <- httpSrv.Serve(apiLn) }()
	log.Info("ship serving", "api", apiLn.Addr().String(), "apps", len(catalog.All()), "data", cfg.DataDir)
	if cfg.Ready != nil {
		cfg.Ready(apiLn.Addr().String())
	}

	// Wait for a signal or a part that stops on its own.
	var runErr error
	select {
	case <-ctx.Done():
		log.Info("shutting down")
	case err := <-apiDone:
		runErr = fmt.Errorf("API server stopped: %w", err)
		apiDone <- nil
	case err := <-engDone:
		runErr = fmt.Errorf("engine stopped: %w", err)
		engDone <- nil
	}

	// Ordered shutdown: API (no new commands), engine (no new steps), then
	// the deferred runtime shutdown (drains instances), router and store.
	c, cancel := shutdownCtx()
	defer cancel()
	cancelRequests()
	if err := httpSrv.Shutdown(c); err != nil {
		log.Error("API shutdown", "err", err)
	}
	<-apiDone
	stopBot() // the bot reads from the engine: stop it first
	<-botDone
	stopEngine()
	select {
	case err := <-engDone:
		if err != nil && !errors.Is(err, context.Canceled) {
			log.Error("engine", "err", err)
		}
	case <-c.Done():
		log.Error("engine did not stop in time")
	}
	return runErr
}

func envsOf(a spec.App) []string {
	if len(a.Environments) == 0 {
		return []string{a.DefaultEnv()}
	}
	return a.Environments
}

func listenHost(a spec.App) string {
	if a.Listen == "" {
		return "127.0.0.1"
	}
	return a.Listen
}

// ensureAdminToken creates the first token on a fresh data dir, prints it
// and writes it to DataDir/admin-token (0600) for local use.
func ensureAdminToken(ctx context.Context, st *store.Store, dataDir string, out io.Writer, log *slog.Logger) error {
	n, err := st.CountTokens(ctx)
	if err != nil {
		return fmt.Errorf("count tokens: %w", err)
	}
	if n > 0 {
		return nil
	}
	token, hash, err := api.NewToken()
	if err != nil {
		return fmt.Errorf("new token: %w", err)
	}
	path := filepath.Join(dataDir, AdminTokenFile)
	// Write the file first: a token stored but lost would lock everyone out.
	if err := os.WriteFile(path, []byte(token+"\n"), 0o600); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		return fmt.Errorf("chmod %s: %w", path, err)
	}
	if err := st.PutToken(ctx, api.AdminUser, authz.RoleAdmin, hash); err != nil {
		return fmt.Errorf("store admin token: %w", err)
	}
	log.Info("created the first API token for user admin", "file", path)
	fmt.Fprintf(out, "ship: first start: API token for user admin (also in %s):\n%s\n", path, token)
	return nil
}

// tokenStore adapts the store's tokens to the API: "not found" and "last
// admin" become the API's, and it issues, lists, rotates and revokes
// tokens for /v1/tokens.
type tokenStore struct{ st *store.Store }

func (t tokenStore) PutToken(ctx context.Context, name, role string, hash []byte) error {
	return t.st.PutToken(ctx, name, role, hash)
}

func (t tokenStore) Tokens(ctx context.Context) ([]api.TokenInfo, error) {
	ts, err := t.st.Tokens(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]api.TokenInfo, len(ts))
	for i, x := range ts {
		out[i] = api.TokenInfo{Name: x.Name, Role: x.Role, Created: x.Created}
	}
	return out, nil
}

func (t tokenStore) RevokeTokens(ctx context.Context, name string) (int, error) {
	n, err := t.st.RevokeTokens(ctx, name)
	if errors.Is(err, store.ErrLastAdmin) {
		return 0, fmt.Errorf("%w: %w", api.ErrLastAdmin, err)
	}
	return n, err
}

func (t tokenStore) RotateTokens(ctx context.Context, name string, hash []byte) (string, int, error) {
	role, n, err := t.st.RotateTokens(ctx, name, hash)
	if errors.Is(err, store.ErrNotFound) {
		return "", 0, api.ErrNoTokens
	}
	return role, n, err
}

func (t tokenStore) TokenOwner(ctx context.Context, hash []byte) (api.TokenOwner, error) {
	o, err := t.st.TokenOwner(ctx, hash)
	if errors.Is(err, store.ErrNotFound) {
		return api.TokenOwner{}, api.ErrUnknownToken
	}
	return api.TokenOwner{Name: o.Name, Role: o.Role}, err
}
