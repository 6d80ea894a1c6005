package traffic

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"sync"
	"time"
)

// TrackHeader is the response header naming the track that answered
// ("stable" or "canary"), for users and tests.
const TrackHeader = "X-Ship-Track"

// maxAttempts bounds the instances one request tries, so that a request
// never waits for more than a few dial timeouts.
const maxAttempts = 4

// reqState is one request's routing decisions, shared by the handler and
// the proxy's hooks through the request context.
type reqState struct {
	rt       *route
	t        *table
	track    *trackTable // the track answering (changes when a retry crosses over)
	backend  *backend
	tried    []*backend
	triedBuf [maxAttempts]*backend

	cookie      bool   // cookie stickiness applies to this request
	cookieTrack string // the track the request's sticky cookie named

	status   int  // the instance's status code, once known
	failed   bool // no instance could be reached
	canceled bool // the client went away first
}

type stateKey struct{}

func stateOf(ctx context.Context) *reqState {
	st, _ := ctx.Value(stateKey{}).(*reqState)
	return st
}

// ServeHTTP routes one request: choose a track, pick an instance, proxy,
// count.
func (rt *route) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	start := time.Now()
	st := &reqState{rt: rt, t: rt.table.Load()}
	tt := rt.choose(st.t, req, st)
	if tt == nil {
		rt.noBackends.Inc()
		writeError(w, http.StatusServiceUnavailable, "no_backends",
			fmt.Sprintf("%s in %s has no ready instances", rt.app, rt.env))
		return
	}
	st.track, st.backend = tt, tt.pick(nil)
	st.tried = append(st.triedBuf[:0], st.backend)
	first := tt.stats
	first.inFlight.Inc()
	defer func() {
		first.inFlight.Dec()
		class := st.class(req.Context())
		if p := recover(); p != nil {
			// ReverseProxy aborts with http.ErrAbortHandler when copying
			// the body fails: the client got a cut answer.
			if req.Context().Err() == nil {
				class = classError
			}
			defer panic(p)
		}
		st.track.stats.observe(time.Since(start), class)
		if class < class5xx {
			rt.noteAnswered(st.backend, start.UnixNano())
		}
	}()
	rt.r.fwd.proxy.ServeHTTP(w, req.WithContext(context.WithValue(req.Context(), stateKey{}, st)))
}

func (st *reqState) class(ctx context.Context) int {
	switch {
	case st.canceled:
		return classCanceled
	case st.failed:
		return classError
	case st.status != 0:
		return classOf(st.status)
	case ctx.Err() != nil:
		return classCanceled
	}
	return classError
}

// choose picks the track of a request: by sticky header bucket, else by
// sticky cookie, else by the exact split. A track without ready instances
// hands its requests to the other one.
func (rt *route) choose(t *table, req *http.Request, st *reqState) *trackTable {
	if h := t.sticky.Header; h != "" {
		if v := req.Header.Get(h); v != "" {
			return rt.chooseTrack(t, v, true)
		}
	}
	if t.sticky.Cookie != "" {
		st.cookie = true
		if c, err := req.Cookie(t.sticky.Cookie); err == nil {
			st.cookieTrack = c.Value
			if i, ok := trackIndex(c.Value); ok && t.weightOf(i) > 0 && len(t.tracks[i].backends) > 0 {
				return t.tracks[i]
			}
		}
	}
	return rt.chooseTrack(t, "", false)
}

// chooseTrack picks the track by sticky value when there is one, else by
// the exact split.
func chooseTrackIdx[T string | []byte](rt *route, t *table, sticky T, hasSticky bool) int {
	if hasSticky {
		if stickyBucket(sticky) < t.weight {
			return canaryIdx
		}
		return stableIdx
	}
	if canaryTurn(rt.seq.Add(1)-1, t.weight) {
		return canaryIdx
	}
	return stableIdx
}

func (rt *route) chooseTrack(t *table, sticky string, hasSticky bool) *trackTable {
	return t.available(chooseTrackIdx(rt, t, sticky, hasSticky))
}

// next picks the instance a failed request is retried on: another one of
// the same track, else one of the other track.
func (st *reqState) next() *backend {
	if len(st.tried) >= maxAttempts {
		return nil
	}
	if cur := st.rt.table.Load(); cur != st.t {
		// The instances changed while this request was out: a release
		// replaced the ones it was routed to, which are now stopping.
		// Retry on the current ones.
		st.t = cur
		st.track = cur.tracks[st.track.idx]
	}
	if b := st.track.pick(st.tried); b != nil {
		return b
	}
	other := st.t.tracks[1-st.track.idx]
	if b := other.pick(st.tried); b != nil {
		st.track = other
		return b
	}
	return nil
}

// forwarder is the proxy shared by every listener: one Transport with
// keep-alive pools per instance, and the retry policy.
type forwarder struct {
	cfg       Config
	log       *slog.Logger
	transport *http.Transport
	proxy     *httputil.ReverseProxy
}

func newForwarder(cfg Config, log *slog.Logger) *forwarder {
	f := &forwarder{cfg: cfg, log: log}
	f.transport = &http.Transport{
		Proxy:                 nil, // instances are on loopback: never through an HTTP proxy
		DialContext:           (&net.Dialer{Timeout: cfg.DialTimeout, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConnsPerHost:   cfg.MaxIdleConnsPerInstance,
		IdleConnTimeout:       90 * time.Second,
		DisableCompression:    true, // pass bodies through as the app wrote them
		ResponseHeaderTimeout: cfg.ResponseHeaderTimeout,
		ExpectContinueTimeout: time.Second,
	}
	f.proxy = &httputil.ReverseProxy{
		Rewrite:   f.rewrite,
		Transport: f,
		// 0, not -1: ReverseProxy already flushes every write of a
		// text/event-stream or unknown-length (streamed) response; -1 on
		// every response costs a timer goroutine and a separate write of
		// the headers per request (a third of the router's CPU measured).
		FlushInterval:  0,
		ModifyResponse: f.modifyResponse,
		ErrorHandler:   f.errorHandler,
		ErrorLog:       slog.NewLogLogger(log.Handler(), slog.LevelDebug),
		BufferPool:     &bufferPool{},
	}
	return f
}

func (f *forwarder) closeIdle() { f.transport.CloseIdleConnections() }

// rewrite points the outbound request at the picked instance. The Host
// header stays the client's; X-Forwarded-* are set from this connection
// only (the router is the edge: inbound X-Forwarded-* are not trusted).
func (f *forwarder) rewrite(pr *httputil.ProxyRequest) {
	st := stateOf(pr.In.Context())
	pr.Out.URL.Scheme = "http"
	pr.Out.URL.Host = st.backend.addr
	pr.Out.Host = pr.In.Host
	pr.SetXForwarded()
}

// RoundTrip sends req to the picked instance and, when the connection
// fails and resending is safe, to the next one. Resending is safe when the
// request never left (dial failure) or its method is idempotent, and its
// body (if any) was small enough to keep a copy.
func (f *forwarder) RoundTrip(req *http.Request) (*http.Response, error) {
	st := stateOf(req.Context())
	var body []byte
	replayable := true
	if req.Body != nil && req.Body != http.NoBody {
		buf, complete, err := readUpTo(req.Body, req.ContentLength, f.cfg.MaxRetryBody)
		if err != nil {
			return nil, fmt.Errorf("read request body: %w", err)
		}
		if complete {
			body = buf
			req.Body = io.NopCloser(bytes.NewReader(body))
		} else {
			replayable = false
			req.Body = struct {
				io.Reader
				io.Closer
			}{io.MultiReader(bytes.NewReader(buf), req.Body), req.Body}
		}
	}
	out := req
	for {
		resp, err := f.transport.RoundTrip(out)
		if err == nil {
			return resp, nil
		}
		if req.Context().Err() != nil {
			st.canceled = true
			return nil, err
		}
		st.rt.noteUnreachable(st.backend)
		dial := isDialError(err)
		if dial {
			st.backend.downUntil.Store(time.Now().Add(f.cfg.DownFor).UnixNano())
		}
		if !replayable || !(dial || idempotent(req.Method)) {
			return nil, err
		}
		b := st.next()
		if b == nil {
			return nil, err
		}
		f.log.Debug("router retry", "app", st.rt.app, "env", st.rt.env, "from", st.backend.addr, "to", b.addr, "track", st.track.name, "err", err)
		st.rt.retries.Inc()
		st.backend = b
		st.tried = append(st.tried, b)
		// A fresh copy per attempt: the transport may still hold the last.
		r2 := *req
		u := *req.URL
		u.Host = b.addr
		r2.URL = &u
		if body != nil {
			r2.Body = io.NopCloser(bytes.NewReader(body))
		}
		out = &r2
	}
}

// readUpTo reads body when it is at most limit bytes. complete is false
// when it is larger; buf then holds what was read so far.
func readUpTo(body io.Reader, length, limit int64) (buf []byte, complete bool, err error) {
	if length > limit {
		return nil, false, nil
	}
	n := length
	if n < 0 {
		n = 512
	}
	b := bytes.NewBuffer(make([]byte, 0, n))
	m, err := b.ReadFrom(io.LimitReader(body, limit+1))
	if err != nil {
		return nil, false, err
	}
	return b.Bytes(), m <= limit, nil
}

func isDialError(err error) bool {
	var oe *net.OpError
	return errors.As(err, &oe) && oe.Op == "dial"
}

func idempotent(method string) bool {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace, http.MethodPut, http.MethodDelete:
		return true
	}
	return false
}

// modifyResponse records the answer and labels it with its track.
func (f *forwarder) modifyResponse(resp *http.Response) error {
	st := stateOf(resp.Request.Context())
	st.status = resp.StatusCode
	resp.Header.Set(TrackHeader, st.track.name)
	if st.cookie && st.cookieTrack != st.track.name {
		resp.Header.Add("Set-Cookie", st.t.setCookie[st.track.idx])
	}
	return nil
}

// errorHandler answers a request no instance could take.
func (f *forwarder) errorHandler(w http.ResponseWriter, req *http.Request, err error) {
	st := stateOf(req.Context())
	if st.canceled || req.Context().Err() != nil {
		st.canceled = true
		w.WriteHeader(http.StatusBadGateway) // nobody reads it
		return
	}
	st.failed = true
	f.log.Warn("router: no instance reachable", "app", st.rt.app, "env", st.rt.env, "track", st.track.name,
		"version", st.track.version, "instance", st.backend.addr, "attempts", len(st.tried), "err", err)
	writeError(w, http.StatusBadGateway, "bad_gateway",
		fmt.Sprintf("no instance of %s in %s could be reached", st.rt.app, st.rt.env))
}

// stickyCookie is the cookie that keeps a browser on track.
func stickyCookie(name, track string) *http.Cookie {
	return &http.Cookie{Name: name, Value: track, Path: "/", HttpOnly: true, SameSite: http.SameSiteLaxMode}
}

func jsonError(code, msg string) ([]byte, error) {
	type body struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	}
	b, err := json.Marshal(struct {
		Error body `json:"error"`
	}{body{code, msg}})
	return append(b, '\n'), err
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	b, _ := jsonError(code, msg)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	w.Write(b)
}

// bufferPool lends ReverseProxy its 32 KiB copy buffers instead of one
// allocation per request.
type bufferPool struct{ p sync.Pool }

func (bp *bufferPool) Get() []byte {
	if v, ok := bp.p.Get().(*[]byte); ok {
		return *v
	}
	return make([]byte, 32<<10)
}

func (bp *bufferPool) Put(b []byte) { bp.p.Put(&b) }
