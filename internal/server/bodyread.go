package server

import (
	"errors"
	"io"
	"net/http"
	"time"
)

// boundBodyRead gives every request that may carry a body (any method but
// GET and HEAD) d to deliver it: the connection's read deadline is set
// before the handler runs, so a body trickled byte by byte fails the
// handler's read (the API answers 408) and the connection is closed. Once
// the body has been read to its end the deadline is lifted again, so a
// handler that then takes long is not cut off by the server noticing the
// deadline on its background read. GET is left alone: SSE streams are
// GETs and run for hours.
func boundBodyRead(next http.Handler, d time.Duration) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet || r.Method == http.MethodHead || r.Body == nil || r.Body == http.NoBody {
			next.ServeHTTP(w, r)
			return
		}
		rc := http.NewResponseController(w)
		if err := rc.SetReadDeadline(time.Now().Add(d)); err == nil {
			r.Body = &liftOnEOF{ReadCloser: r.Body, lift: func() { _ = rc.SetReadDeadline(time.Time{}) }}
		}
		next.ServeHTTP(w, r)
	})
}

// liftOnEOF calls lift once, when the body has been read to its end.
type liftOnEOF struct {
	io.ReadCloser
	lift func()
	done bool
}

func (b *liftOnEOF) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if errors.Is(err, io.EOF) && !b.done {
		b.done = true
		b.lift()
	}
	return n, err
}
