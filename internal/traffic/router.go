package traffic

import (
	"context"
	"errors"
	"fmt"
	"github.com/shipteam/ship/internal/release"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/shipteam/ship/internal/analysis"
	"github.com/shipteam/ship/internal/runtime"
	"github.com/shipteam/ship/internal/spec"
)

var (
	_ runtime.Router  = (*Router)(nil)
	_ analysis.Source = (*Router)(nil)
)

// ErrClosed is returned by Listen after Close.
var ErrClosed = errors.New("traffic: router closed")

// Router owns one listener per app and environment and the routing state
// behind it. All methods are safe for concurrent use and idempotent.
type Router struct {
	cfg     Config
	log     *slog.Logger
	metrics *promMetrics
	fwd     *forwarder
	health  atomic.Pointer[InstanceHealth] // passive health goes here (ReportHealthTo)

	mu     sync.Mutex
	routes map[routeKey]*route
	closed bool
	serve  sync.WaitGroup // one per listener's Serve loop
}

type routeKey struct{ app, env string }

// New builds a Router from cfg after validating it.
func New(cfg Config) (*Router, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	m, err := newPromMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	r := &Router{cfg: cfg, log: cfg.Logger, metrics: m, routes: map[routeKey]*route{}}
	r.fwd = newForwarder(cfg, cfg.Logger)
	return r, nil
}

// route is one app in one environment: its listener and its routing state.
type route struct {
	r          *Router
	app, env   string
	table      atomic.Pointer[table]
	seq        atomic.Uint64 // request counter driving the exact split
	retries    interface{ Inc() }
	noBackends interface{ Inc() }

	mu       sync.Mutex // serializes rebuilds; guards the fields below
	weight   int
	sticky   spec.Stickiness
	addrs    [2][]string
	versions [2]string
	stats    map[statsKey]*trackStats
	backends map[string]*backend // reused across tables so down marks survive
	srv      *http.Server        // the net/http path: connections the fast path hands off
	ln       net.Listener
	endpoint string
	fast     fastConns
}

type statsKey struct {
	track   int
	version string
}

// route returns the route of app in env, creating it when create is set.
func (r *Router) route(app, env string, create bool) *route {
	r.mu.Lock()
	defer r.mu.Unlock()
	k := routeKey{app, env}
	rt := r.routes[k]
	if rt == nil && create {
		rt = &route{
			r: r, app: app, env: env,
			retries:    r.metrics.retries.WithLabelValues(app, env),
			noBackends: r.metrics.requests.WithLabelValues(app, env, "none", "", "5xx"),
			stats:      map[statsKey]*trackStats{},
			backends:   map[string]*backend{},
			fast:       fastConns{conns: map[*fastConn]struct{}{}},
		}
		rt.rebuildLocked()
		r.routes[k] = rt
	}
	return rt
}

// rebuildLocked builds a new table from the route's state and publishes
// it. rt.mu must be held.
func (rt *route) rebuildLocked() {
	t := &table{weight: rt.weight, sticky: rt.sticky}
	if rt.sticky.Cookie != "" {
		for i := range t.setCookie {
			t.setCookie[i] = stickyCookie(rt.sticky.Cookie, trackNames[i]).String()
		}
	}
	live := map[string]bool{}
	for i := range t.tracks {
		tt := &trackTable{idx: i, name: trackNames[i], version: rt.versions[i]}
		for _, a := range rt.addrs[i] {
			b := rt.backends[a]
			if b == nil {
				b = &backend{addr: a}
				rt.backends[a] = b
			}
			live[a] = true
			tt.backends = append(tt.backends, b)
		}
		k := statsKey{i, rt.versions[i]}
		s := rt.stats[k]
		if s == nil {
			s = newTrackStats(rt.r.metrics, rt.app, rt.env, trackNames[i], rt.versions[i])
			rt.stats[k] = s
		}
		tt.stats = s
		t.tracks[i] = tt
	}
	rt.table.Store(t)
	for a, b := range rt.backends {
		if !live[a] {
			delete(rt.backends, a)
			b.retire() // requests in flight on it finish; its idle connections close
		}
	}
}

// Listen starts the listener of app in env on addr (host:port, port 0 = a
// free port; "" = the spec's Listen and Port) and returns the endpoint users
// connect to. A second call returns the running listener's endpoint.
func (r *Router) Listen(ctx context.Context, app spec.App, env, addr string) (string, error) {
	r.mu.Lock()
	closed := r.closed
	r.mu.Unlock()
	if closed {
		return "", ErrClosed
	}
	rt := r.route(app.Name, env, true)
	rt.mu.Lock()
	defer rt.mu.Unlock()
	if rt.sticky != app.Stickiness {
		rt.sticky = app.Stickiness
		rt.rebuildLocked()
	}
	if rt.srv != nil {
		return rt.endpoint, nil
	}
	if addr == "" {
		host := app.Listen
		if host == "" {
			host = "127.0.0.1"
		}
		addr = net.JoinHostPort(host, strconv.Itoa(app.Port))
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return "", fmt.Errorf("router listen for %s/%s on %s: %w", app.Name, env, addr, err)
	}
	rt.srv = &http.Server{
		Handler:           rt,
		ReadHeaderTimeout: r.cfg.ReadHeaderTimeout,
		IdleTimeout:       r.cfg.IdleTimeout,
		ErrorLog:          slog.NewLogLogger(r.log.Handler().WithAttrs([]slog.Attr{slog.String("app", app.Name), slog.String("env", env)}), slog.LevelDebug),
	}
	rt.endpoint = ln.Addr().String()
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		ln.Close()
		rt.srv = nil
		return "", ErrClosed
	}
	r.serve.Add(2)
	r.mu.Unlock()
	rt.ln = ln
	hl := newHandoffListener(ln.Addr())
	go func() {
		defer r.serve.Done()
		rt.acceptFast(ln, hl)
	}()
	go func(srv *http.Server) {
		defer r.serve.Done()
		if err := srv.Serve(hl); err != nil && !errors.Is(err, http.ErrServerClosed) {
			r.log.Error("router listener stopped", "app", app.Name, "env", env, "err", err)
		}
	}(rt.srv)
	r.log.Info("router listening", "app", app.Name, "env", env, "endpoint", rt.endpoint)
	return rt.endpoint, nil
}

// SetBackends replaces the ready instances (host:port) of one track, which
// run version. Requests in flight on removed instances finish.
func (r *Router) SetBackends(app, env string, track runtime.Track, version string, addrs []string) {
	idx, ok := trackIndex(string(track))
	if !ok {
		r.log.Error("router: unknown track ignored", "app", app, "env", env, "track", track)
		return
	}
	rt := r.route(app, env, true)
	rt.mu.Lock()
	defer rt.mu.Unlock()
	rt.addrs[idx] = append([]string(nil), addrs...)
	rt.versions[idx] = version
	rt.rebuildLocked()
}

// SetWeight sends w of the app's requests to the canary track, exactly
// (the split's resolution is the weight's: 0.01%). The new split applies to
// the next request; requests and connections in flight are untouched.
func (r *Router) SetWeight(ctx context.Context, app spec.App, env string, w release.Weight) error {
	if !w.Valid() {
		return fmt.Errorf("set weight of %s/%s: canary weight must be between 0 and 100%%, got %s", app.Name, env, w)
	}
	rt := r.route(app.Name, env, true)
	rt.mu.Lock()
	defer rt.mu.Unlock()
	rt.weight = int(w)
	rt.sticky = app.Stickiness
	rt.rebuildLocked()
	return nil
}

// Weight reports the canary's share in force and the endpoint ("" when
// the app has no listener yet).
func (r *Router) Weight(ctx context.Context, app spec.App, env string) (release.Weight, string, error) {
	rt := r.route(app.Name, env, false)
	if rt == nil {
		return 0, "", nil
	}
	rt.mu.Lock()
	defer rt.mu.Unlock()
	return release.Weight(rt.weight), rt.endpoint, nil
}

// Sample returns the cumulative counters of the versions the two tracks run
// now. A track without traffic (or an unknown app) gives a zero Sample.
func (r *Router) Sample(ctx context.Context, app, env string) (stable, canary analysis.Sample, err error) {
	rt := r.route(app, env, false)
	if rt == nil {
		return (*trackStats)(nil).sample(), (*trackStats)(nil).sample(), nil
	}
	t := rt.table.Load()
	return t.tracks[stableIdx].stats.sample(), t.tracks[canaryIdx].stats.sample(), nil
}

// Close stops accepting connections on every listener and waits, up to
// ctx's deadline, for requests in flight to finish.
func (r *Router) Close(ctx context.Context) error {
	// Lock order is rt.mu before r.mu (see Listen): collect routes first.
	r.mu.Lock()
	r.closed = true
	routes := make([]*route, 0, len(r.routes))
	for _, rt := range r.routes {
		routes = append(routes, rt)
	}
	r.mu.Unlock()

	errs := make([]error, len(routes))
	var wg sync.WaitGroup
	for i, rt := range routes {
		rt.mu.Lock()
		s, ln, ep := rt.srv, rt.ln, rt.endpoint
		rt.mu.Unlock()
		if s == nil {
			continue
		}
		ln.Close() // stop accepting; then drain both paths
		wg.Add(2)
		go func() {
			defer wg.Done()
			rt.shutdownFast(ctx.Done())
		}()
		go func() {
			defer wg.Done()
			if err := s.Shutdown(ctx); err != nil {
				errs[i] = fmt.Errorf("router shutdown %s/%s on %s: %w", rt.app, rt.env, ep, err)
				s.Close()
			}
		}()
	}
	wg.Wait()
	r.serve.Wait()
	r.fwd.closeIdle()
	return errors.Join(errs...)
}
