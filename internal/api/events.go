package api

import (
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"time"

	"github.com/shipteam/ship/internal/engine"
	"github.com/shipteam/ship/internal/release"
)

// replayPage is how many stored events one replay query fetches.
const replayPage = 500

// EventFilter selects events; zero fields match everything.
type EventFilter struct {
	App       string
	Env       string
	ReleaseID int64
}

func (f EventFilter) match(ev release.Event) bool {
	return (f.App == "" || f.App == ev.App) &&
		(f.Env == "" || f.Env == ev.Env) &&
		(f.ReleaseID == 0 || f.ReleaseID == ev.ReleaseID)
}

// events streams events as Server-Sent Events:
//
//	id: 42
//	event: release.step
//	data: {...release.Event...}
//
// Query: app, env, release (id) filter; after=N (or the Last-Event-ID
// header a reconnecting EventSource sends) first replays stored events with
// an id above N, then continues live. Without either, only live events are
// sent. A comment line is sent every Heartbeat so idle streams stay open.
func (s *Server) events(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	f := EventFilter{App: q.Get("app"), Env: q.Get("env")}
	if v := q.Get("release"); v != "" {
		id, err := strconv.ParseInt(v, 10, 64)
		if err != nil || id <= 0 {
			writeError(w, r, s.log, invalid("release must be a positive number, not %q", v))
			return
		}
		f.ReleaseID = id
	}
	replay := false
	var after int64
	for _, v := range []string{r.Header.Get("Last-Event-ID"), q.Get("after")} {
		if v == "" {
			continue
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			writeError(w, r, s.log, invalid("after / Last-Event-ID must be an event id, not %q", v))
			return
		}
		replay, after = true, n
		break
	}

	a := s.actor(r)
	// Registered per token user: revoking or rotating their tokens ends
	// the stream (ctx) at once; past the caps the stream is refused.
	ctx, done, err := s.streams.open(r.Context(), a.Name)
	if err != nil {
		writeError(w, r, s.log, err)
		return
	}
	defer done()
	if !s.stillValid(r) { // revoked between authentication and registration
		s.unauthorized(w, r, "invalid token")
		return
	}
	if f.App != "" && f.Env != "" {
		// One app in one environment: a refusal is told (and recorded)
		// before the stream starts (the query itself returns nothing:
		// only the check matters); otherwise events are filtered.
		if _, err := s.cfg.Engine.Events(ctx, a, engine.EventQuery{App: f.App, Env: f.Env, AfterID: 1 << 62, Limit: 1}); err != nil {
			writeError(w, r, s.log, err)
			return
		}
	}
	readable := s.cfg.Engine.ReadFilter(a)

	// Subscribe before replaying so no event falls between the two; ids
	// already sent by the replay are skipped when they arrive live.
	live, cancel := s.cfg.Engine.Subscribe()
	defer cancel()

	rc := http.NewResponseController(w)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no") // tell a fronting nginx not to buffer the stream
	w.WriteHeader(http.StatusOK)
	// An initial comment makes the headers reach the client now, so it
	// knows the subscription is in place before anything happens.
	if _, err := fmt.Fprint(w, ": ship event stream\n\n"); err != nil {
		return
	}
	if err := rc.Flush(); err != nil {
		return
	}

	last := after
	if replay {
		for {
			evs, err := s.cfg.Engine.Events(ctx, a, engine.EventQuery{
				App: f.App, Env: f.Env, ReleaseID: f.ReleaseID, AfterID: last, Limit: replayPage,
			})
			if err != nil {
				// Headers are gone; an error event tells the client why the stream ends.
				s.log.ErrorContext(r.Context(), "event replay", "request_id", RequestID(r.Context()), "err", err)
				writeSSEError(w, rc, publicError(err))
				return
			}
			sort.Slice(evs, func(i, j int) bool { return evs[i].ID < evs[j].ID })
			for _, ev := range evs {
				if ev.ID <= last || !f.match(ev) {
					continue
				}
				if err := writeSSE(w, ev); err != nil {
					return
				}
				last = ev.ID
			}
			if err := rc.Flush(); err != nil {
				return
			}
			if len(evs) < replayPage {
				break
			}
		}
	}

	tick := time.NewTicker(s.cfg.Heartbeat)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			if r.Context().Err() == nil {
				// Closed by a revocation: say so, then end.
				writeSSEError(w, rc, &Error{Status: http.StatusUnauthorized, Code: CodeUnauthorized, Message: "token revoked"})
			}
			return
		case ev, ok := <-live:
			if !ok {
				// The engine dropped us (shutting down, or we fell behind);
				// the client reconnects with Last-Event-ID and loses nothing.
				return
			}
			if (ev.ID != 0 && ev.ID <= last) || !f.match(ev) || !readable(ctx, ev) {
				continue
			}
			if err := writeSSE(w, ev); err != nil {
				return
			}
			if ev.ID > last {
				last = ev.ID
			}
			if err := rc.Flush(); err != nil {
				return
			}
		case <-tick.C:
			if _, err := fmt.Fprint(w, ": ping\n\n"); err != nil {
				return
			}
			if err := rc.Flush(); err != nil {
				return
			}
		}
	}
}

func writeSSE(w http.ResponseWriter, ev release.Event) error {
	data, err := json.Marshal(ev)
	if err != nil {
		return err
	}
	// JSON from encoding/json has no raw newlines, so one data line suffices.
	_, err = fmt.Fprintf(w, "id: %d\nevent: %s\ndata: %s\n\n", ev.ID, sseField(string(ev.Type)), data)
	return err
}

func writeSSEError(w http.ResponseWriter, rc *http.ResponseController, e *Error) {
	data, _ := json.Marshal(errorBody{Error: e})
	_, _ = fmt.Fprintf(w, "event: error\ndata: %s\n\n", data)
	_ = rc.Flush()
}

// sseField keeps a value on one line.
func sseField(s string) string {
	for i := 0; i < len(s); i++ {
		if s[i] == '\n' || s[i] == '\r' {
			return strconv.Quote(s)
		}
	}
	if s == "" {
		return "message"
	}
	return s
}
