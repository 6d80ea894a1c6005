package resizer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/shipteam/ship/internal/httpmw"
	"github.com/shipteam/ship/internal/resize"
)

// Server is the resizer HTTP service.
type Server struct {
	cfg      Config
	log      *slog.Logger
	pipe     Pipeline
	pool     *pool
	metrics  *metrics
	fetcher  *fetcher
	presets  []Preset
	limits   resize.Limits
	optLim   optionLimits
	draining atomic.Bool
	handler  http.Handler
}

// New checks cfg and builds the service; resolver may be nil for the
// system's DNS.
func New(cfg Config, pipe Pipeline, log *slog.Logger, resolver Resolver) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("resizer config: %w", err)
	}
	presets, err := loadPresets(presetsJSON)
	if err != nil {
		return nil, err
	}
	s := &Server{
		cfg:     cfg,
		log:     log,
		pipe:    pipe,
		pool:    newPool(cfg.Workers, cfg.Queue),
		presets: presets,
		limits: resize.Limits{
			MaxInputBytes: cfg.MaxInputBytes, MaxInputPixels: cfg.MaxInputPixels,
			MaxOutputPixels: cfg.MaxOutputPixels, MaxFrames: cfg.MaxFrames,
		},
		optLim: optionLimits{MaxDimension: cfg.MaxDimension, MaxOutputPixels: cfg.MaxOutputPixels},
	}
	s.metrics = newMetrics(cfg.Version, s.pool)
	s.fetcher = newFetcher(fetchConfig{
		AllowedHosts: cfg.AllowedHosts, AllowPrivateSources: cfg.AllowPrivateSources,
		MaxBytes: cfg.MaxInputBytes, Timeout: cfg.SourceTimeout, MaxRedirects: cfg.MaxRedirects,
		Resolver: resolver, UserAgent: "resizer/" + cfg.Version,
	})
	s.handler = s.routes()
	return s, nil
}

// routes assembles the handler. Middleware order, outermost first:
// request id (every response carries it) → version header → logs and
// metrics → method/404 handling and the routes.
func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", s.handleHealth)
	mux.HandleFunc("GET /readyz", s.handleReady)
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.metrics.registry, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /v1/presets", s.handlePresetList)
	mux.HandleFunc("GET /v1/presets/{name}", s.handlePreset)
	mux.HandleFunc("POST /v1/presets/{name}", s.handlePreset)
	mux.HandleFunc("GET /v1/resize", s.handleResize)
	mux.HandleFunc("POST /v1/resize", s.handleResize)
	mux.HandleFunc("GET /v1/variants", s.handleVariants)
	mux.HandleFunc("POST /v1/variants", s.handleVariants)
	var h http.Handler = jsonNotFound(mux)
	h = withObservability(s.log, s.metrics, h)
	h = withVersion(s.cfg.Version, h)
	h = withLabels(h)
	h = httpmw.WithRequestID(h)
	return h
}

// jsonNotFound answers unknown paths and methods with the JSON error
// document instead of the mux's plain text.
func jsonNotFound(mux *http.ServeMux) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, pattern := mux.Handler(r); pattern != "" {
			mux.ServeHTTP(w, r)
			return
		}
		var allowed []string
		for _, m := range []string{http.MethodGet, http.MethodPost} {
			r2 := r.Clone(r.Context())
			r2.Method = m
			if _, p := mux.Handler(r2); p != "" {
				allowed = append(allowed, m)
			}
		}
		if len(allowed) > 0 {
			for _, m := range allowed {
				w.Header().Add("Allow", m)
			}
			writeError(w, r, newError(http.StatusMethodNotAllowed, codeMethodNotAllowed, "method %s is not allowed here", r.Method))
			return
		}
		writeError(w, r, newError(http.StatusNotFound, codeNotFound, "no such route"))
	})
}

// Handler is the service's HTTP handler (for tests and embedding).
func (s *Server) Handler() http.Handler { return s.handler }

// ListenAndServe listens on cfg.Addr and serves until ctx ends, then drains.
func (s *Server) ListenAndServe(ctx context.Context) error {
	ln, err := net.Listen("tcp", s.cfg.Addr)
	if err != nil {
		return fmt.Errorf("listen %s: %w", s.cfg.Addr, err)
	}
	return s.Serve(ctx, ln)
}

// Serve serves on ln until ctx ends. Then it drains: /readyz reports 503 for
// DrainDelay so load balancers stop sending, the listener closes, and
// in-flight requests get up to ShutdownTimeout to finish. It returns nil after
// a clean drain.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	hs := &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: s.cfg.ReadHeaderTimeout,
		ReadTimeout:       s.cfg.ReadTimeout,
		WriteTimeout:      s.cfg.WriteTimeout,
		IdleTimeout:       s.cfg.IdleTimeout,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	s.log.Info("listening", "addr", ln.Addr().String(), "version", s.cfg.Version,
		"workers", s.cfg.Workers, "queue", s.cfg.Queue,
		"memory_ceiling_bytes", int64(s.cfg.Workers+s.cfg.Queue)*s.cfg.MaxInputBytes)
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	s.draining.Store(true)
	s.log.Info("draining", "drain_delay", s.cfg.DrainDelay.String(), "in_flight", s.pool.admitted())
	if s.cfg.DrainDelay > 0 {
		t := time.NewTimer(s.cfg.DrainDelay)
		<-t.C
	}
	sctx, cancel := context.WithTimeout(context.Background(), s.cfg.ShutdownTimeout)
	defer cancel()
	err := hs.Shutdown(sctx)
	if serr := <-errc; serr != nil && !errors.Is(serr, http.ErrServerClosed) {
		err = errors.Join(err, serr)
	}
	if err != nil {
		return fmt.Errorf("drain: %w", err)
	}
	s.log.Info("drained")
	return nil
}
