package api

import (
	"bufio"
	"context"
	"errors"
	"github.com/shipteam/ship/internal/eventually"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/shipteam/ship/internal/release"
)

// waitFor polls cond until it holds or the deadline passes.
func TestEventsReplayFromAfterThenLive(t *testing.T) {
	f := newFixture(t)
	f.eng.publish(release.Event{ReleaseID: 1, App: "resizer", Type: "release.created"}) // 1
	f.eng.publish(release.Event{ReleaseID: 1, App: "resizer", Type: "release.step"})    // 2
	f.eng.publish(release.Event{ReleaseID: 2, App: "web", Type: "release.created"})     // 3
	f.eng.publish(release.Event{ReleaseID: 1, App: "resizer", Type: "release.step"})    // 4
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	got := make(chan release.Event, 16)
	done := make(chan error, 1)
	go func() {
		done <- f.cli.Events(ctx, EventsQuery{EventFilter: EventFilter{ReleaseID: 1}, After: 1}, func(ev release.Event) error {
			got <- ev
			if ev.Type == "release.succeeded" {
				return ErrStop
			}
			return nil
		})
	}()
	for _, want := range []int64{2, 4} {
		if ev := <-got; ev.ID != want {
			t.Fatalf("replayed id %d, want %d", ev.ID, want)
		}
	}
	eventually.True(t, 5*time.Second, "subscription", func() bool { return f.eng.subscribers() == 1 })
	f.eng.publish(release.Event{ReleaseID: 2, App: "web", Type: "release.step"})                                    // 5, filtered out
	f.eng.publish(release.Event{ReleaseID: 1, App: "resizer", Type: "release.succeeded", State: release.Succeeded}) // 6
	if ev := <-got; ev.ID != 6 || ev.State != release.Succeeded {
		t.Fatalf("live event = %+v", ev)
	}
	if err := <-done; err != nil {
		t.Fatalf("Events = %v", err)
	}
	eventually.True(t, 5*time.Second, "unsubscribe", func() bool { return f.eng.subscribers() == 0 })
}

func TestEventsWithoutAfterAreLiveOnly(t *testing.T) {
	f := newFixture(t)
	f.eng.publish(release.Event{App: "resizer", Type: "old"})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	got := make(chan release.Event, 4)
	go f.cli.Events(ctx, EventsQuery{After: -1}, func(ev release.Event) error { got <- ev; return nil })
	eventually.True(t, 5*time.Second, "subscription", func() bool { return f.eng.subscribers() == 1 })
	f.eng.publish(release.Event{App: "resizer", Type: "new"})
	if ev := <-got; ev.Type != "new" {
		t.Fatalf("first event %q, want the live one", ev.Type)
	}
}

func TestEventsHonourLastEventIDAndSendHeartbeats(t *testing.T) {
	f := newFixture(t)
	for range 3 {
		f.eng.publish(release.Event{App: "resizer", Type: "x"})
	}
	req, _ := http.NewRequest("GET", f.srv.URL+"/v1/events?app=resizer", nil)
	req.Header.Set("Authorization", "Bearer "+f.token)
	req.Header.Set("Last-Event-ID", "2")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("content type %q", ct)
	}
	sc := bufio.NewScanner(resp.Body)
	var ids []string
	pings := 0
	for sc.Scan() && pings < 2 {
		line := sc.Text()
		if strings.HasPrefix(line, "id: ") {
			ids = append(ids, strings.TrimPrefix(line, "id: "))
		}
		if line == ": ping" {
			pings++
		}
	}
	if strings.Join(ids, ",") != "3" {
		t.Fatalf("ids after Last-Event-ID 2 = %v, want [3]", ids)
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
			if ev.Type == "end" {
				return ErrStop
			}
			return nil
		})
	}()
	eventually.True(t, 5*time.Second, "subscription", func() bool { return f.eng.subscribers() == 1 })
	f.eng.publish(release.Event{App: "resizer", Type: "a"}) // 1
	if ev := <-got; ev.ID != 1 {
		t.Fatalf("got %d", ev.ID)
	}
	f.eng.dropSubscribers()
	// Published while no stream is open: the reconnect replays it.
	f.eng.publish(release.Event{App: "resizer", Type: "b"}) // 2
	eventually.True(t, 5*time.Second, "resubscription", func() bool { return f.eng.subscribers() == 1 })
	f.eng.publish(release.Event{App: "resizer", Type: "end"}) // 3
	for _, want := range []int64{2, 3} {
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
	eventually.True(t, 5*time.Second, "bob's stream", func() bool { return f.eng.subscribers() == 1 })
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
	eventually.True(t, 5*time.Second, "unsubscribe", func() bool { return f.eng.subscribers() == 0 })
}
