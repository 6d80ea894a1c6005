package slack

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// SignatureWindow is how far a request's timestamp may be from now, as Slack
// recommends; older requests are refused as possible replays.
const SignatureWindow = 5 * time.Minute

// Reasons a request is refused. They go to logs only; the client gets a bare 401.
var (
	ErrMissingSignature = errors.New("missing X-Slack-Signature or X-Slack-Request-Timestamp")
	ErrBadTimestamp     = errors.New("malformed request timestamp")
	ErrStale            = errors.New("request timestamp outside the 5 minute window")
	ErrBadSignature     = errors.New("signature does not match")
	ErrReplay           = errors.New("signature already seen (replay)")
	ErrReplayUnchecked  = errors.New("could not check the signature against those already seen")
)

// ReplayStore remembers the MACs of accepted requests for as long as they
// could be replayed. *store.Store satisfies it (the MACs then survive a
// restart of ship); without one a Bot keeps them in memory.
type ReplayStore interface {
	// SeenSignature records mac as seen until expires and reports whether
	// it was fresh (not recorded with an expiry after now), atomically:
	// of two callers with one MAC, one gets fresh. Entries expired at now
	// may be dropped.
	SeenSignature(ctx context.Context, mac []byte, now, expires time.Time) (fresh bool, err error)
}

// Verifier checks Slack's request signature: v0= + hex(HMAC-SHA256(secret,
// "v0:" + timestamp + ":" + body)), within SignatureWindow of now, each
// signature accepted once. "Once" is keyed on the MAC itself, not on the
// header's text: hex decodes case-insensitively, so "A2…" and "a2…" are
// the same signature and the second is a replay.
type Verifier struct {
	secret []byte
	now    func() time.Time
	seen   ReplayStore
}

// NewVerifier returns a verifier remembering accepted MACs in seen; nil
// means in memory only (at most 100,000, forgotten on restart).
func NewVerifier(secret string, now func() time.Time, seen ReplayStore) *Verifier {
	if now == nil {
		now = time.Now
	}
	if seen == nil {
		seen = newReplayCache(100_000)
	}
	return &Verifier{secret: []byte(secret), now: now, seen: seen}
}

// replayCheckBudget bounds the replay store's answer, well inside Slack's 3
// seconds for the whole acknowledgement.
const replayCheckBudget = time.Second

// Verify checks one request. The body must be the raw bytes Slack sent.
func (v *Verifier) Verify(ctx context.Context, h http.Header, body []byte) error {
	sig := h.Get("X-Slack-Signature")
	tsText := h.Get("X-Slack-Request-Timestamp")
	if sig == "" || tsText == "" {
		return ErrMissingSignature
	}
	ts, err := strconv.ParseInt(tsText, 10, 64)
	if err != nil {
		return ErrBadTimestamp
	}
	now := v.now()
	sent := time.Unix(ts, 0)
	if d := now.Sub(sent); d > SignatureWindow || d < -SignatureWindow {
		return ErrStale
	}
	got, ok := strings.CutPrefix(sig, "v0=")
	if !ok || len(got) != 2*sha256.Size {
		return ErrBadSignature
	}
	gotMAC, err := hex.DecodeString(got)
	if err != nil {
		return ErrBadSignature
	}
	mac := Sign(v.secret, tsText, body)
	if !hmac.Equal(gotMAC, mac) {
		return ErrBadSignature
	}
	// Only a valid MAC is recorded, so an attacker without the secret cannot
	// fill the store. The MAC covers the timestamp, so it can pass the window
	// check only until sent+SignatureWindow; it is kept a second past that.
	ctx, cancel := context.WithTimeout(ctx, replayCheckBudget)
	defer cancel()
	fresh, err := v.seen.SeenSignature(ctx, mac, now, sent.Add(SignatureWindow+time.Second))
	if err != nil {
		// Fail closed: without the check a captured request could run twice.
		return fmt.Errorf("%w: %v", ErrReplayUnchecked, err)
	}
	if !fresh {
		return ErrReplay
	}
	return nil
}

// Sign computes the raw HMAC for timestamp and body (tests and benchmarks
// sign requests with it exactly as Slack does).
func Sign(secret []byte, timestamp string, body []byte) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte("v0:"))
	m.Write([]byte(timestamp))
	m.Write([]byte(":"))
	m.Write(body)
	return m.Sum(nil)
}

// SignatureHeader is the X-Slack-Signature value for timestamp and body.
func SignatureHeader(secret, timestamp string, body []byte) string {
	return "v0=" + hex.EncodeToString(Sign([]byte(secret), timestamp, body))
}

// replayCache is the in-memory ReplayStore: MACs until they expire, keyed by
// their bytes. Entries are kept in arrival order; their expiries follow the
// signed timestamps, which arrive nearly in order, so the head expires
// (about) first. An expired entry still queued behind a live one counts as
// absent and goes when the head reaches it.
type replayCache struct {
	mu    sync.Mutex
	max   int
	byKey map[string]time.Time
	order []replayEntry // FIFO; head index avoids shifting on every pop
	head  int
}

type replayEntry struct {
	key     string
	expires time.Time
}

func newReplayCache(max int) *replayCache {
	return &replayCache{max: max, byKey: make(map[string]time.Time)}
}

// SeenSignature implements ReplayStore.
func (c *replayCache) SeenSignature(_ context.Context, mac []byte, now, expires time.Time) (bool, error) {
	return c.add(string(mac), now, expires), nil
}

// add records key and reports whether it was new (or its old entry expired).
func (c *replayCache) add(key string, now, expires time.Time) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.expire(now)
	if exp, ok := c.byKey[key]; ok && now.Before(exp) {
		return false
	}
	// Full of live entries: drop the oldest. Those are the closest to leaving
	// the timestamp window anyway, and the alternative (refusing genuine
	// requests) would turn a traffic burst into an outage.
	for len(c.byKey) >= c.max && c.head < len(c.order) {
		e := c.order[c.head]
		c.head++
		if cur, ok := c.byKey[e.key]; ok && cur.Equal(e.expires) {
			delete(c.byKey, e.key)
		}
	}
	c.byKey[key] = expires
	c.order = append(c.order, replayEntry{key, expires})
	c.compact()
	return true
}

func (c *replayCache) expire(now time.Time) {
	for c.head < len(c.order) && !now.Before(c.order[c.head].expires) {
		e := c.order[c.head]
		c.head++
		if cur, ok := c.byKey[e.key]; ok && cur.Equal(e.expires) {
			delete(c.byKey, e.key)
		}
	}
}

func (c *replayCache) compact() {
	if c.head > 1024 && c.head*2 > len(c.order) {
		c.order = append(c.order[:0:0], c.order[c.head:]...)
		c.head = 0
	}
}

func (c *replayCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.byKey)
}
