package resizer

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"net/http"
	"strconv"
	"time"
)

// requestLabels travel in the request context so handlers can tell the
// middleware what the metrics and the log line should say.
type requestLabels struct {
	id     string
	preset string
	format string
	err    *apiError
}

type labelsKey struct{}

func labelsFrom(ctx context.Context) *requestLabels {
	l, _ := ctx.Value(labelsKey{}).(*requestLabels)
	return l
}

// statusWriter records the status and size of a response.
type statusWriter struct {
	http.ResponseWriter
	status int
	bytes  int64
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(b)
	w.bytes += int64(n)
	return n, err
}

// Unwrap lets http.ResponseController reach the connection.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// withRequestID honours a sane X-Request-ID or makes one, and echoes it.
func withRequestID(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.Header.Get("X-Request-ID")
		if !validRequestID(id) {
			var b [12]byte
			_, _ = rand.Read(b[:])
			id = hex.EncodeToString(b[:])
		}
		w.Header().Set("X-Request-ID", id)
		l := &requestLabels{id: id}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), labelsKey{}, l)))
	})
}

func validRequestID(id string) bool {
	if id == "" || len(id) > 128 {
		return false
	}
	for _, c := range []byte(id) {
		if c <= ' ' || c >= 0x7f || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}

// withVersion sets X-Resizer-Version so a client (and ship's analysis) sees
// which version answered.
func withVersion(version string, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Resizer-Version", version)
		next.ServeHTTP(w, r)
	})
}

// withObservability logs one line per request and records the metrics. It
// must sit inside withRequestID (it reads the labels) and outside the mux
// (it reads the matched pattern afterwards).
func withObservability(log *slog.Logger, m *metrics, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w}
		quiet := r.URL.Path == "/healthz" || r.URL.Path == "/readyz" || r.URL.Path == "/metrics"
		if !quiet {
			m.inFlight.Inc()
			defer m.inFlight.Dec()
		}
		defer func() {
			if p := recover(); p != nil {
				if p == http.ErrAbortHandler {
					panic(p)
				}
				log.Error("panic in handler", "panic", p, "request_id", labelsFrom(r.Context()).id)
				if sw.status == 0 {
					writeError(sw, r, newError(http.StatusInternalServerError, codeInternal, "internal error"))
				}
			}
			l := labelsFrom(r.Context())
			status := sw.status
			if status == 0 {
				status = http.StatusOK
			}
			if l.err != nil && l.err.status == 499 {
				status = 499
			}
			route := r.Pattern
			if route == "" {
				route = "unmatched"
			}
			elapsed := time.Since(start)
			m.requests.WithLabelValues(route, strconv.Itoa(status), l.preset, l.format).Inc()
			m.latency.WithLabelValues(route).Observe(elapsed.Seconds())
			if quiet && status < 400 {
				return
			}
			attrs := []any{
				"request_id", l.id, "method", r.Method, "path", r.URL.Path, "route", route,
				"status", status, "bytes", sw.bytes, "duration_ms", float64(elapsed.Microseconds()) / 1000,
				"remote", r.RemoteAddr,
			}
			if l.preset != "" {
				attrs = append(attrs, "preset", l.preset)
			}
			if l.format != "" {
				attrs = append(attrs, "format", l.format)
			}
			level := slog.LevelInfo
			if l.err != nil {
				attrs = append(attrs, "error_code", l.err.code)
				if l.err.err != nil {
					attrs = append(attrs, "error", l.err.err.Error())
				}
				if status >= 500 && status != http.StatusServiceUnavailable {
					level = slog.LevelError
				}
			}
			log.Log(r.Context(), level, "request", attrs...)
		}()
		next.ServeHTTP(sw, r)
	})
}
