package slack

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
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
)

// Verifier checks Slack's request signature: v0= + hex(HMAC-SHA256(secret,
// "v0:" + timestamp + ":" + body)), within SignatureWindow of now, each
// signature accepted once.
type Verifier struct {
	secret []byte
	now    func() time.Time
	seen   *replayCache
}

// NewVerifier returns a verifier with its own replay cache of at most maxSeen
// signatures (0 = 100,000).
func NewVerifier(secret string, now func() time.Time, maxSeen int) *Verifier {
	if now == nil {
		now = time.Now
	}
	if maxSeen <= 0 {
		maxSeen = 100_000
	}
	return &Verifier{secret: []byte(secret), now: now, seen: newReplayCache(maxSeen)}
}

// Verify checks one request. The body must be the raw bytes Slack sent.
func (v *Verifier) Verify(h http.Header, body []byte) error {
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
	if !ok {
		return ErrBadSignature
	}
	gotMAC, err := hex.DecodeString(got)
	if err != nil {
		return ErrBadSignature
	}
	if !hmac.Equal(gotMAC, Sign(v.secret, tsText, body)) {
		return ErrBadSignature
	}
	// Only a valid signature enters the cache, so an attacker without the
	// secret cannot fill it. It must outlive the window on both sides of now.
	if !v.seen.add(sig, now, now.Add(2*SignatureWindow)) {
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

// replayCache remembers signatures until they expire. Entries are kept in
// arrival order; since all share the same lifetime, the oldest expires first.
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
