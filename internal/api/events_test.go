package api

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/shipteam/ship/internal/engine"
	"github.com/shipteam/ship/internal/enginetest"
	"github.com/shipteam/ship/internal/eventually"
	"github.com/shipteam/ship/internal/release"
)

// storedIDs are the ids of the events the engine stored for q, in order.
func storedIDs(t *testing.T, f *fixture, q engine.EventQuery) []int64 {
	t.Helper()
	evs, err := f.env.Engine.Events(context.Background(), engine.System, q)
	if err != nil {
		t.Fatal(err)
	}
	var ids []int64
	for _, ev := range evs {
		ids = append(ids, ev.ID)
	}
	return ids
}

// command runs one of the engine's app commands as admin; each stores one
// app event (app.locked, app.unlocked, app.scaled).
func command(t *testing.T, f *fixture, verb, app string) {
	t.Helper()
	ctx := context.Background()
	var err error
	switch verb {
	case "lock":
		err = f.env.Engine.Lock(ctx, enginetest.Admin, engine.LockRequest{App: app, Reason: "freeze"})
	case "unlock":
		err = f.env.Engine.Unlock(ctx, enginetest.Admin, engine.UnlockRequest{App: app})
	case "scale":
		err = f.env.Engine.Scale(ctx, enginetest.Admin, engine.ScaleRequest{App: app, Replicas: engine.Replicas(3)})
	}
	if err != nil {
		t.Fatalf("%s %s: %v", verb, app, err)
	}
}

// A stream of one release from after its first event replays what is
// stored, then goes on live, without gaps or duplicates, until the
// release succeeds; events of other apps are filtered out.
func TestEventsReplayFromAfterThenLive(t *testing.T) {
	f := newFixture(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	f.env.StableAt("resizer", "v1")
	r, err := f.env.Engine.Deploy(ctx, enginetest.Admin, engine.DeployRequest{App: "resizer", Version: "v2", Canary: 100})
	if err != nil {
		t.Fatal(err)
	}
	f.env.WaitState(r.ID, release.Paused)
	stored := storedIDs(t, f, engine.EventQuery{ReleaseID: r.ID})
	if len(stored) < 2 {
		t.Fatalf("release #%d has %d events when paused, want a few to replay", r.ID, len(stored))
	}
	got := make(chan release.Event, 256)
	done := make(chan error, 1)
	go func() {
		done <- f.cli.Events(ctx, EventsQuery{EventFilter: EventFilter{ReleaseID: r.ID}, After: stored[0]}, func(ev release.Event) error {
			got <- ev
			if ev.Type == release.EvSucceeded {
				return ErrStop
			}
			return nil
		})
	}()
	var ids []int64
	for _, want := range stored[1:] {
		ev := <-got
		if ev.ID != want {
			t.Fatalf("replayed id %d, want %d", ev.ID, want)
		}
		ids = append(ids, ev.ID)
	}
	eventually.True(t, 5*time.Second, "subscription", func() bool { return f.eng.Subscribers() == 1 })
	command(t, f, "lock", "web") // another app's event: filtered out
	if _, err := f.env.Engine.Promote(ctx, enginetest.Admin, engine.PromoteRequest{App: "resizer"}); err != nil {
		t.Fatal(err)
	}
	var last release.Event
	for last.Type != release.EvSucceeded {
		select {
		case last = <-got:
			ids = append(ids, last.ID)
		case <-ctx.Done():
			t.Fatalf("no release.succeeded on the stream; got ids %v", ids)
		}
	}
	if err := <-done; err != nil {
		t.Fatalf("Events = %v", err)
	}
	var want []int64
	for _, id := range storedIDs(t, f, engine.EventQuery{ReleaseID: r.ID}) {
		if id > stored[0] && id <= last.ID {
			want = append(want, id)
		}
	}
	if fmt.Sprint(ids) != fmt.Sprint(want) || len(ids) <= len(stored)-1 {
		t.Fatalf("stream ids %v, want the stored %v (replayed and live)", ids, want)
	}
	eventually.True(t, 5*time.Second, "unsubscribe", func() bool { return f.eng.Subscribers() == 0 })
}

func TestEventsWithoutAfterAreLiveOnly(t *testing.T) {
	f := newFixture(t)
	command(t, f, "lock", "resizer") // stored before the stream opens
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	got := make(chan release.Event, 4)
	go f.cli.Events(ctx, EventsQuery{After: -1}, func(ev release.Event) error { got <- ev; return nil })
	eventually.True(t, 5*time.Second, "subscription", func() bool { return f.eng.Subscribers() == 1 })
	command(t, f, "unlock", "resizer")
	select {
	case ev := <-got:
		if ev.Type != release.EvUnlocked {
			t.Fatalf("first event %q, want the live one", ev.Type)
		}
	case <-ctx.Done():
		t.Fatal("no live event")
	}
}

func TestEventsHonourLastEventIDAndSendHeartbeats(t *testing.T) {
	f := newFixture(t)
	command(t, f, "lock", "resizer")
	command(t, f, "unlock", "resizer")
	command(t, f, "scale", "web") // another app's
	command(t, f, "lock", "resizer")
	ids := storedIDs(t, f, engine.EventQuery{App: "resizer"})
	if len(ids) != 3 {
		t.Fatalf("resizer has events %v, want 3", ids)
	}
	req, _ := http.NewRequest("GET", f.srv.URL+"/v1/events?app=resizer", nil)
	req.Header.Set("Authorization", "Bearer "+f.token)
	req.Header.Set("Last-Event-ID", fmt.Sprint(ids[1]))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("content type %q", ct)
	}
	sc := bufio.NewScanner(resp.Body)
	var got []string
	pings := 0
	for sc.Scan() && pings < 2 {
		line := sc.Text()
		if strings.HasPrefix(line, "id: ") {
			got = append(got, strings.TrimPrefix(line, "id: "))
		}
		if line == ": ping" {
			pings++
		}
	}
	if strings.Join(got, ",") != fmt.Sprint(ids[2]) {
		t.Fatalf("ids after Last-Event-ID %d = %v, want [%d]", ids[1], got, ids[2])
	}
}

func TestFollowResumesAfterStreamBreaks(t *testing.T) {
	f := newFixture(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	got := make(chan release.Event, 16)
	retries := 0
	done := make(chan error, 1)
	go func() {
		done <- f.cli.Follow(ctx, EventsQuery{After: 0}, 3*time.Second, func(error) { retries++ }, func(ev release.Event) error {
			got <- ev
			if ev.Type == release.EvScaled {
				return ErrStop
			}
			return nil
		})
	}()
	eventually.True(t, 5*time.Second, "subscription", func() bool { return f.eng.Subscribers() == 1 })
	command(t, f, "lock", "resizer")
	first := <-got
	if first.Type != release.EvLocked {
		t.Fatalf("got %+v", first)
	}
	f.eng.DropSubscribers()
	// Stored while no stream is open: the reconnect replays it.
	command(t, f, "unlock", "resizer")
	eventually.True(t, 5*time.Second, "resubscription", func() bool { return f.eng.Subscribers() == 1 })
	command(t, f, "scale", "resizer")
	stored := storedIDs(t, f, engine.EventQuery{AfterID: first.ID})
	if len(stored) != 2 {
		t.Fatalf("stored after the first: %v", stored)
	}
	for _, want := range stored {
		if ev := <-got; ev.ID != want {
			t.Fatalf("got id %d, want %d (no gaps, no duplicates)", ev.ID, want)
		}
	}
	if err := <-done; err != nil || retries == 0 {
		t.Fatalf("Follow = %v after %d retries", err, retries)
	}
}

func TestFollowGivesUpOnAuthErrors(t *testing.T) {
	f := newFixture(t)
	bad, _ := NewClient(ClientConfig{Server: f.srv.URL, Token: "ship_nope"})
	err := bad.Follow(context.Background(), EventsQuery{After: -1}, time.Second, nil, func(release.Event) error { return nil })
	var ae *Error
	if !errors.As(err, &ae) || ae.Status != 401 {
		t.Fatalf("err = %v", err)
	}
}

// openStream opens a raw SSE stream and returns the response once the
// server's first comment arrived (the stream is registered by then).
func openStream(t *testing.T, url, token string) (*http.Response, *bufio.Reader) {
	t.Helper()
	req, _ := http.NewRequest("GET", url+"/v1/events", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	br := bufio.NewReader(resp.Body)
	if resp.StatusCode == http.StatusOK {
		if _, err := br.ReadString('\n'); err != nil {
			t.Fatal(err)
		}
	}
	return resp, br
}

func TestEventStreamsAreCappedPerUserAndInTotalWith429(t *testing.T) {
	bobTok, bobHash, _ := NewToken()
	aliceTok, aliceHash, _ := NewToken()
	carolTok, carolHash, _ := NewToken()
	iss := newMemIssuer(map[string]TokenOwner{string(aliceHash): {"alice", "viewer"}, string(bobHash): {"bob", "viewer"}, string(carolHash): {"carol", "viewer"}})
	f := newFixture(t, func(c *Config) { c.Tokens, c.MaxStreamsPerUser, c.MaxStreams = iss, 2, 3 })
	openStream(t, f.srv.URL, aliceTok)
	openStream(t, f.srv.URL, aliceTok)
	resp, _ := openStream(t, f.srv.URL, aliceTok)
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusTooManyRequests || !strings.Contains(string(b), "alice already has 2 event streams open, the limit per user") {
		t.Fatalf("third stream of alice: %d %s", resp.StatusCode, b)
	}
	openStream(t, f.srv.URL, bobTok)
	resp, _ = openStream(t, f.srv.URL, carolTok)
	b, _ = io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusTooManyRequests || !strings.Contains(string(b), "ship has 3 event streams open, its limit") || !strings.Contains(string(b), `"code": "too_many_requests"`) {
		t.Fatalf("stream past the total: %d %s", resp.StatusCode, b)
	}
}

func TestRevokingATokenEndsItsOpenEventStreamWithinASecond(t *testing.T) {
	adminTok, adminHash, _ := NewToken()
	bobTok, bobHash, _ := NewToken()
	iss := newMemIssuer(map[string]TokenOwner{string(adminHash): {"admin", "admin"}, string(bobHash): {"bob", "viewer"}})
	f := newFixture(t, func(c *Config) { c.Tokens, c.Issuer, c.Heartbeat = iss, iss, time.Hour })
	bob, _ := NewClient(ClientConfig{Server: f.srv.URL, Token: bobTok})
	done := make(chan error, 1)
	go func() {
		done <- bob.Follow(context.Background(), EventsQuery{After: -1}, time.Minute, nil, func(release.Event) error { return nil })
	}()
	eventually.True(t, 5*time.Second, "bob's stream", func() bool { return f.eng.Subscribers() == 1 })
	start := time.Now()
	if status, body := f.raw(t, "DELETE", "/v1/tokens/bob", "Bearer "+adminTok, ""); status != http.StatusOK {
		t.Fatalf("revoke: %d %s", status, body)
	}
	select {
	case err := <-done:
		var ae *Error
		if !errors.As(err, &ae) || ae.Code != CodeUnauthorized || ae.Message != "token revoked" {
			t.Fatalf("stream ended with %v", err)
		}
		if d := time.Since(start); d > time.Second {
			t.Fatalf("stream ended %s after the revocation", d)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("bob's stream is still open 5s after his token was revoked")
	}
	eventually.True(t, 5*time.Second, "unsubscribe", func() bool { return f.eng.Subscribers() == 0 })
}
