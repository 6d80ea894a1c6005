package api

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/shipteam/ship/internal/engine"
	"github.com/shipteam/ship/internal/enginetest"
	"github.com/shipteam/ship/internal/release"
	"github.com/shipteam/ship/internal/spec"
)

// FuzzDeployBody: any body gets a JSON answer with a 2xx or 4xx status,
// never a panic or a 500.
func FuzzDeployBody(f *testing.F) {
	env := enginetest.New(f, enginetest.Options{Apps: []spec.App{enginetest.WebApp("web")}, Stepped: true})
	token, hash, _ := NewToken()
	s, err := New(Config{Engine: env.Engine, Tokens: fakeTokens{string(hash): "fuzz"}})
	if err != nil {
		f.Fatal(err)
	}
	h := s.Handler()
	f.Fuzz(func(t *testing.T, body string) {
		req := httptest.NewRequest("POST", "/v1/apps/web/deploy", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+token)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code >= 500 {
			t.Fatalf("status %d for %q: %s", rec.Code, body, rec.Body)
		}
		var v any
		if err := json.Unmarshal(rec.Body.Bytes(), &v); err != nil {
			t.Fatalf("answer is not JSON: %q", rec.Body)
		}
		// Keep the engine from refusing every later deploy as a conflict.
		if rec.Code == http.StatusCreated {
			if _, err := env.Engine.Abort(context.Background(), enginetest.Admin, engine.AbortRequest{App: "web", Reason: "next input"}); err != nil {
				t.Fatalf("abort after %q: %v", body, err)
			}
		}
	})
}

// FuzzEventStream: whatever a server sends as an event stream, the client
// returns (an error or the events) without panicking or hanging.
func FuzzEventStream(f *testing.F) {
	var payload string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		_, _ = io.WriteString(w, payload)
	}))
	defer srv.Close()
	c, err := NewClient(ClientConfig{Server: srv.URL, Token: "ship_x"})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, stream string) {
		payload = stream
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = c.Events(ctx, EventsQuery{After: -1}, func(release.Event) error { return nil })
		if ctx.Err() != nil {
			t.Fatalf("client hung on %q", stream)
		}
	})
}
