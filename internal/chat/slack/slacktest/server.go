// Package slacktest stands in for Slack on loopback, for tests and the ack
// benchmark: a Web API (chat.postMessage, chat.update, chat.postEphemeral,
// usergroups.users.list, apps.connections.open), response_url endpoints and
// a Socket Mode WebSocket. It records what ship sent. It also holds Engine,
// a small in-memory engine that emits events like the real one.
//
// It must never be used outside tests and benchmarks.
package slacktest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

// Call is one request ship made to the fake Slack.
type Call struct {
	Method string     // "chat.postMessage", "response_url", ...
	Path   string     // request path
	Form   url.Values // form-encoded Web API calls
	JSON   map[string]any
	At     time.Time
	Status int // what the fake answered
}

// Text returns the message text of a call, whichever encoding it used.
func (c Call) Text() string {
	if c.JSON != nil {
		s, _ := c.JSON["text"].(string)
		return s
	}
	return c.Form.Get("text")
}

// Blocks returns the raw blocks JSON of a call ("" if none).
func (c Call) Blocks() string {
	if c.JSON != nil {
		if b, ok := c.JSON["blocks"]; ok {
			j, _ := json.Marshal(b)
			return string(j)
		}
		return ""
	}
	return c.Form.Get("blocks")
}

// Server is the fake Slack.
type Server struct {
	srv *httptest.Server

	mu         sync.Mutex
	calls      []Call
	groups     map[string][]string
	throttle   map[string]int // method -> 429s still to answer
	retryAfter int
	down       bool
	ts         int
	changed    chan struct{}

	wsMu   sync.Mutex
	ws     *websocket.Conn
	acks   map[string]json.RawMessage
	wsUp   chan struct{}
	wsOnce sync.Once
}

// NewServer starts the fake on 127.0.0.1.
func NewServer() *Server {
	s := &Server{
		groups: map[string][]string{}, throttle: map[string]int{},
		changed: make(chan struct{}), acks: map[string]json.RawMessage{}, wsUp: make(chan struct{}),
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/api/", s.serveAPI)
	mux.HandleFunc("/response/", s.serveResponse)
	mux.HandleFunc("/ws", s.serveWS)
	s.srv = httptest.NewServer(mux)
	return s
}

// Close stops the server and its socket.
func (s *Server) Close() {
	s.wsMu.Lock()
	if s.ws != nil {
		_ = s.ws.Close()
	}
	s.wsMu.Unlock()
	s.srv.CloseClientConnections()
	s.srv.Close()
}

// APIURL is the Web API base URL to configure ship with.
func (s *Server) APIURL() string { return s.srv.URL + "/api/" }

// ResponseURL returns a fresh response_url for one command or press.
func (s *Server) ResponseURL(id string) string { return s.srv.URL + "/response/" + id }

// SetGroup sets the members of a user group.
func (s *Server) SetGroup(id string, users ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.groups[id] = users
}

// Throttle makes the next n calls of method answer 429 with Retry-After.
func (s *Server) Throttle(method string, n, retryAfterSeconds int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.throttle[method] = n
	s.retryAfter = retryAfterSeconds
}

// SetDown makes every call answer 503 (Slack is down) until SetDown(false).
func (s *Server) SetDown(down bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.down = down
}

// Calls returns the recorded calls of method ("" = all), oldest first.
func (s *Server) Calls(method string) []Call {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Call
	for _, c := range s.calls {
		if method == "" || c.Method == method {
			out = append(out, c)
		}
	}
	return out
}

// WaitFor waits until cond holds on the recorded calls or the deadline passes.
func (s *Server) WaitFor(ctx context.Context, cond func(calls []Call) bool) error {
	for {
		s.mu.Lock()
		calls := append([]Call(nil), s.calls...)
		ch := s.changed
		s.mu.Unlock()
		if cond(calls) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for slack calls: %w (%d calls so far)", ctx.Err(), len(calls))
		case <-ch:
		}
	}
}

func (s *Server) record(c Call) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls = append(s.calls, c)
	close(s.changed)
	s.changed = make(chan struct{})
}

func (s *Server) serveAPI(w http.ResponseWriter, r *http.Request) {
	method := strings.TrimPrefix(r.URL.Path, "/api/")
	body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	c := Call{Method: method, Path: r.URL.Path, At: time.Now()}
	if strings.HasPrefix(r.Header.Get("Content-Type"), "application/json") {
		_ = json.Unmarshal(body, &c.JSON)
	} else {
		c.Form, _ = url.ParseQuery(string(body))
	}

	s.mu.Lock()
	down := s.down
	throttled := s.throttle[method] > 0
	if throttled {
		s.throttle[method]--
	}
	retryAfter := s.retryAfter
	s.ts++
	ts := fmt.Sprintf("1764072000.%06d", s.ts)
	members := s.groups[c.Form.Get("usergroup")]
	s.mu.Unlock()

	switch {
	case down:
		c.Status = http.StatusServiceUnavailable
		s.record(c)
		http.Error(w, "slack is down", c.Status)
		return
	case throttled:
		c.Status = http.StatusTooManyRequests
		s.record(c)
		w.Header().Set("Retry-After", strconv.Itoa(retryAfter))
		w.WriteHeader(c.Status)
		return
	}
	c.Status = http.StatusOK
	var resp map[string]any
	switch method {
	case "chat.postMessage":
		resp = map[string]any{"ok": true, "channel": c.Form.Get("channel"), "ts": ts}
	case "chat.update":
		resp = map[string]any{"ok": true, "channel": c.Form.Get("channel"), "ts": c.Form.Get("ts"), "text": c.Form.Get("text")}
	case "chat.postEphemeral":
		resp = map[string]any{"ok": true, "message_ts": ts}
	case "usergroups.users.list":
		if members == nil {
			resp = map[string]any{"ok": false, "error": "no_such_subteam"}
		} else {
			resp = map[string]any{"ok": true, "users": members}
		}
	case "apps.connections.open":
		u := "ws" + strings.TrimPrefix(s.srv.URL, "http") + "/ws"
		resp = map[string]any{"ok": true, "url": u}
	default:
		resp = map[string]any{"ok": false, "error": "unknown_method"}
	}
	s.record(c)
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(resp)
}

func (s *Server) serveResponse(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	c := Call{Method: "response_url", Path: r.URL.Path, At: time.Now(), Status: http.StatusOK}
	if err := json.Unmarshal(body, &c.JSON); err != nil {
		c.Status = http.StatusBadRequest
	}
	s.mu.Lock()
	down := s.down
	s.mu.Unlock()
	if down {
		c.Status = http.StatusServiceUnavailable
	}
	s.record(c)
	if c.Status != http.StatusOK {
		http.Error(w, "no", c.Status)
		return
	}
	_, _ = io.WriteString(w, "ok")
}

var upgrader = websocket.Upgrader{CheckOrigin: func(*http.Request) bool { return true }}

// serveWS is Slack's Socket Mode end: it says hello, then records acks.
func (s *Server) serveWS(w http.ResponseWriter, r *http.Request) {
	conn, err := upgrader.Upgrade(w, r, nil)
	if err != nil {
		return
	}
	s.wsMu.Lock()
	if s.ws != nil {
		_ = s.ws.Close()
	}
	s.ws = conn
	_ = conn.WriteJSON(map[string]any{"type": "hello", "num_connections": 1})
	s.wsMu.Unlock()
	s.wsOnce.Do(func() { close(s.wsUp) })
	s.record(Call{Method: "socket.connect", Path: "/ws", At: time.Now(), Status: http.StatusSwitchingProtocols})
	for {
		var ack struct {
			EnvelopeID string          `json:"envelope_id"`
			Payload    json.RawMessage `json:"payload"`
		}
		if err := conn.ReadJSON(&ack); err != nil {
			return
		}
		s.wsMu.Lock()
		s.acks[ack.EnvelopeID] = ack.Payload
		s.wsMu.Unlock()
		s.record(Call{Method: "socket.ack", Path: "/ws", At: time.Now(), Status: http.StatusOK,
			JSON: map[string]any{"envelope_id": ack.EnvelopeID, "payload": ack.Payload}})
	}
}

// WaitSocket waits until ship has connected over Socket Mode.
func (s *Server) WaitSocket(ctx context.Context) error {
	select {
	case <-s.wsUp:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("waiting for socket mode connection: %w", ctx.Err())
	}
}

// SendEnvelope sends a Socket Mode request (slash_commands, interactive).
func (s *Server) SendEnvelope(envelopeID, typ string, payload any) error {
	s.wsMu.Lock()
	defer s.wsMu.Unlock()
	if s.ws == nil {
		return errors.New("no socket mode connection")
	}
	p, err := json.Marshal(payload)
	if err != nil {
		return err
	}
	return s.ws.WriteJSON(map[string]any{
		"envelope_id": envelopeID, "type": typ, "payload": json.RawMessage(p), "accepts_response_payload": typ == "slash_commands",
	})
}

// Ack waits for the acknowledgement of an envelope and returns its payload.
func (s *Server) Ack(ctx context.Context, envelopeID string) (json.RawMessage, error) {
	var out json.RawMessage
	err := s.WaitFor(ctx, func([]Call) bool {
		s.wsMu.Lock()
		defer s.wsMu.Unlock()
		p, ok := s.acks[envelopeID]
		out = p
		return ok
	})
	return out, err
}

// DropSocket closes the current Socket Mode connection, as Slack does when
// it moves a client to another server.
func (s *Server) DropSocket() {
	s.wsMu.Lock()
	defer s.wsMu.Unlock()
	if s.ws != nil {
		_ = s.ws.Close()
		s.ws = nil
	}
}
