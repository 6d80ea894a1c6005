package resizer

import (
	"context"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/shipteam/ship/internal/httpmw"
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

// withLabels gives the request the labels handlers fill in. It must sit
// inside httpmw.WithRequestID, whose id it carries.
func withLabels(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		l := &requestLabels{id: httpmw.RequestID(r.Context())}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), labelsKey{}, l)))
	})
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
		sw := &httpmw.Recorder{ResponseWriter: w}
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
				if sw.Status == 0 {
					writeError(sw, r, newError(http.StatusInternalServerError, codeInternal, "internal error"))
				}
			}
			l := labelsFrom(r.Context())
			status := sw.Status
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
				"status", status, "bytes", sw.Bytes, "duration_ms", float64(elapsed.Microseconds()) / 1000,
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
