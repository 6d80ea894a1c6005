package api

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"runtime/debug"
	"time"

	"github.com/shipteam/ship/internal/httpmw"
)

// Middleware wraps a handler.
type Middleware func(http.Handler) http.Handler

// chain applies mws so that mws[0] is the outermost: chain(h, a, b) serves
// a(b(h)).
func chain(h http.Handler, mws ...Middleware) http.Handler {
	for i := len(mws) - 1; i >= 0; i-- {
		h = mws[i](h)
	}
	return h
}

// RequestID returns the id the request was given by httpmw.WithRequestID.
func RequestID(ctx context.Context) string { return httpmw.RequestID(ctx) }

// logActor lets authentication, which runs inside accessLog, tell it who
// the caller was.
type logActor struct{ name, source string }

type logActorKey struct{}

// accessLog logs one line per request. Health checks and scrapes log at
// debug so they do not drown the rest.
func accessLog(log *slog.Logger) Middleware {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			start := time.Now()
			rec := &httpmw.Recorder{ResponseWriter: w}
			who := &logActor{}
			next.ServeHTTP(rec, r.WithContext(context.WithValue(r.Context(), logActorKey{}, who)))
			level := slog.LevelInfo
			if r.URL.Path == "/healthz" || r.URL.Path == "/metrics" {
				level = slog.LevelDebug
			}
			attrs := []any{"method", r.Method, "path", r.URL.Path, "status", rec.Status,
				"bytes", rec.Bytes, "duration", time.Since(start).Round(time.Microsecond),
				"request_id", RequestID(r.Context())}
			if who.name != "" {
				attrs = append(attrs, "actor", who.name, "source", who.source)
			}
			log.Log(r.Context(), level, "http", attrs...)
		})
	}
}

// recoverPanics turns a handler panic into a 500 and a logged stack, so one
// bad request cannot take the control plane down.
func recoverPanics(log *slog.Logger) Middleware {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			defer func() {
				v := recover()
				if v == nil || v == http.ErrAbortHandler {
					if v != nil {
						panic(v)
					}
					return
				}
				log.ErrorContext(r.Context(), "panic in handler", "request_id", RequestID(r.Context()),
					"panic", fmt.Sprint(v), "stack", string(debug.Stack()))
				writeError(w, r, log, fmt.Errorf("panic: %v", v))
			}()
			next.ServeHTTP(w, r)
		})
	}
}
