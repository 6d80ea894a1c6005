// Package httpmw holds the HTTP server plumbing every ship program shares:
// a request id that travels in the context and the X-Request-ID header,
// and a ResponseWriter wrapper that records what was answered, for access
// logs and metrics. Each program keeps its own log line and metrics; only
// these mechanics are common.
package httpmw

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/http"
)

// HeaderRequestID carries the request id in both directions.
const HeaderRequestID = "X-Request-ID"

type requestIDKey struct{}

// RequestID returns the id WithRequestID gave the request, or "".
func RequestID(ctx context.Context) string {
	id, _ := ctx.Value(requestIDKey{}).(string)
	return id
}

// WithRequestID keeps a sane incoming X-Request-ID (so a request can be
// followed through a proxy chain) or makes one, puts it in the context and
// echoes it, so a user can quote it when reporting an error.
func WithRequestID(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.Header.Get(HeaderRequestID)
		if !validRequestID(id) {
			id = newRequestID()
		}
		w.Header().Set(HeaderRequestID, id)
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), requestIDKey{}, id)))
	})
}

// validRequestID accepts ids that are safe to echo in a header and a log
// line: 1 to 64 letters, digits, '.', '_' or '-'.
func validRequestID(id string) bool {
	if id == "" || len(id) > 64 {
		return false
	}
	for _, c := range []byte(id) {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '.', c == '_', c == '-':
		default:
			return false
		}
	}
	return true
}

func newRequestID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Recorder wraps a ResponseWriter and records the status and body size of
// the answer. Status is 0 until the handler writes.
type Recorder struct {
	http.ResponseWriter
	Status int
	Bytes  int64
}

func (s *Recorder) WriteHeader(code int) {
	if s.Status == 0 {
		s.Status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *Recorder) Write(b []byte) (int, error) {
	if s.Status == 0 {
		s.Status = http.StatusOK
	}
	n, err := s.ResponseWriter.Write(b)
	s.Bytes += int64(n)
	return n, err
}

// Unwrap lets http.ResponseController reach Flush and the connection on
// the real writer (server-sent events, deadlines).
func (s *Recorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }
