package slack

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Slack's published example from "Verifying requests from Slack".
const (
	exampleSecret    = "8f742231b10e8888abcd99yyyzzz85a5"
	exampleTimestamp = "1531420618"
	exampleBody      = "token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c"
	exampleSignature = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"
)

func exampleHeader(ts, sig string) http.Header {
	h := http.Header{}
	if ts != "" {
		h.Set("X-Slack-Request-Timestamp", ts)
	}
	if sig != "" {
		h.Set("X-Slack-Signature", sig)
	}
	return h
}

func fixedClock(unix int64) func() time.Time {
	return func() time.Time { return time.Unix(unix, 0) }
}

func TestVerifyAcceptsSlacksPublishedExample(t *testing.T) {
	v := NewVerifier(exampleSecret, fixedClock(1531420618), nil)
	if err := v.Verify(context.Background(), exampleHeader(exampleTimestamp, exampleSignature), []byte(exampleBody)); err != nil {
		t.Fatalf("published example refused: %v", err)
	}
	if got := SignatureHeader(exampleSecret, exampleTimestamp, []byte(exampleBody)); got != exampleSignature {
		t.Fatalf("SignatureHeader = %s, want %s", got, exampleSignature)
	}
}

func TestVerifyRefusesForgedStaleAndReplayed(t *testing.T) {
	const now = 1531420618
	tampered := strings.Replace(exampleBody, "text=", "text=deploy+evil", 1)
	tests := []struct {
		name   string
		secret string
		clock  int64
		ts     string
		sig    string
		body   string
		want   error
	}{
		{"tampered body", exampleSecret, now, exampleTimestamp, exampleSignature, tampered, ErrBadSignature},
		{"wrong secret", "00000000000000000000000000000000", now, exampleTimestamp, exampleSignature, exampleBody, ErrBadSignature},
		{"older than 5 minutes", exampleSecret, now + 301, exampleTimestamp, exampleSignature, exampleBody, ErrStale},
		{"from the future", exampleSecret, now - 301, exampleTimestamp, exampleSignature, exampleBody, ErrStale},
		{"missing signature", exampleSecret, now, exampleTimestamp, "", exampleBody, ErrMissingSignature},
		{"missing timestamp", exampleSecret, now, "", exampleSignature, exampleBody, ErrMissingSignature},
		{"timestamp not a number", exampleSecret, now, "15314x0618", exampleSignature, exampleBody, ErrBadTimestamp},
		{"no v0= prefix", exampleSecret, now, exampleTimestamp, strings.TrimPrefix(exampleSignature, "v0="), exampleBody, ErrBadSignature},
		{"not hex", exampleSecret, now, exampleTimestamp, "v0=zz" + exampleSignature[5:], exampleBody, ErrBadSignature},
		{"odd-length hex", exampleSecret, now, exampleTimestamp, exampleSignature[:len(exampleSignature)-1], exampleBody, ErrBadSignature},
		{"hex with a trailing byte", exampleSecret, now, exampleTimestamp, exampleSignature + "00", exampleBody, ErrBadSignature},
		{"hex with spaces", exampleSecret, now, exampleTimestamp, "v0= " + exampleSignature[4:], exampleBody, ErrBadSignature},
		{"empty after v0=", exampleSecret, now, exampleTimestamp, "v0=", exampleBody, ErrBadSignature},
		{"prefix re-cased", exampleSecret, now, exampleTimestamp, "V0=" + exampleSignature[3:], exampleBody, ErrBadSignature},
		{"signature for another timestamp", exampleSecret, now, "1531420619", exampleSignature, exampleBody, ErrBadSignature},
		{"just inside the window", exampleSecret, now + 300, exampleTimestamp, exampleSignature, exampleBody, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := NewVerifier(tt.secret, fixedClock(tt.clock), nil)
			err := v.Verify(context.Background(), exampleHeader(tt.ts, tt.sig), []byte(tt.body))
			if !errors.Is(err, tt.want) {
				t.Fatalf("Verify = %v, want %v", err, tt.want)
			}
		})
	}
	t.Run("replayed within the window", func(t *testing.T) {
		clock := int64(now)
		v := NewVerifier(exampleSecret, func() time.Time { return time.Unix(clock, 0) }, nil)
		h := exampleHeader(exampleTimestamp, exampleSignature)
		if err := v.Verify(context.Background(), h, []byte(exampleBody)); err != nil {
			t.Fatalf("first: %v", err)
		}
		clock += 120
		if err := v.Verify(context.Background(), h, []byte(exampleBody)); !errors.Is(err, ErrReplay) {
			t.Fatalf("replay = %v, want ErrReplay", err)
		}
		clock += 400 // now outside the window: refused as stale, not accepted
		if err := v.Verify(context.Background(), h, []byte(exampleBody)); !errors.Is(err, ErrStale) {
			t.Fatalf("late replay = %v, want ErrStale", err)
		}
	})
}

// A captured signature re-cased (hex decodes either case) is the same MAC:
// the issue replayed one signed /ship lock four times this way.
func TestVerifyRefusesReplayOfRecasedSignature(t *testing.T) {
	v := NewVerifier(exampleSecret, fixedClock(1531420618), nil)
	hexPart := strings.TrimPrefix(exampleSignature, "v0=")
	if err := v.Verify(context.Background(), exampleHeader(exampleTimestamp, exampleSignature), []byte(exampleBody)); err != nil {
		t.Fatalf("first: %v", err)
	}
	for _, sig := range []string{
		"v0=" + strings.ToUpper(hexPart),
		"v0=" + strings.ToUpper(hexPart[:10]) + hexPart[10:],
		"v0=" + hexPart[:60] + strings.ToUpper(hexPart[60:]),
		exampleSignature,
	} {
		if err := v.Verify(context.Background(), exampleHeader(exampleTimestamp, sig), []byte(exampleBody)); !errors.Is(err, ErrReplay) {
			t.Errorf("replay as %s: %v, want ErrReplay", sig, err)
		}
	}
}

// A replay store that fails refuses the request rather than letting it run
// unchecked.
func TestVerifyFailsClosedWhenTheReplayStoreFails(t *testing.T) {
	v := NewVerifier(exampleSecret, fixedClock(1531420618), failingReplays{})
	err := v.Verify(context.Background(), exampleHeader(exampleTimestamp, exampleSignature), []byte(exampleBody))
	if !errors.Is(err, ErrReplayUnchecked) {
		t.Fatalf("Verify = %v, want ErrReplayUnchecked", err)
	}
}

type failingReplays struct{}

func (failingReplays) SeenSignature(context.Context, []byte, time.Time, time.Time) (bool, error) {
	return false, errors.New("database is locked")
}

// A MAC is kept exactly as long as its timestamp passes the window check:
// refused as a replay up to the window's last second, then as stale.
func TestVerifyRemembersAMACForTheWholeWindow(t *testing.T) {
	const sent = 1531420618
	clock := int64(sent - 300) // signed "in the future", at the window's edge
	v := NewVerifier(exampleSecret, func() time.Time { return time.Unix(clock, 0) }, nil)
	h := exampleHeader(exampleTimestamp, exampleSignature)
	if err := v.Verify(context.Background(), h, []byte(exampleBody)); err != nil {
		t.Fatalf("first: %v", err)
	}
	for _, at := range []int64{sent - 300, sent, sent + 299, sent + 300} {
		clock = at
		if err := v.Verify(context.Background(), h, []byte(exampleBody)); !errors.Is(err, ErrReplay) {
			t.Fatalf("replay at sent%+ds: %v, want ErrReplay", at-sent, err)
		}
	}
	clock = sent + 301
	if err := v.Verify(context.Background(), h, []byte(exampleBody)); !errors.Is(err, ErrStale) {
		t.Fatalf("replay after the window: %v, want ErrStale", err)
	}
}

func TestReplayCacheStaysBoundedAndExpires(t *testing.T) {
	c := newReplayCache(100)
	t0 := time.Unix(1_700_000_000, 0)
	for i := range 1000 {
		if !c.add("sig-"+strconv.Itoa(i), t0, t0.Add(10*time.Minute)) {
			t.Fatalf("fresh key %d refused", i)
		}
		if n := c.len(); n > 100 {
			t.Fatalf("cache holds %d entries, cap is 100", n)
		}
	}
	if c.add("sig-999", t0, t0.Add(10*time.Minute)) {
		t.Fatal("recent key accepted twice")
	}
	later := t0.Add(11 * time.Minute)
	if !c.add("sig-999", later, later.Add(10*time.Minute)) {
		t.Fatal("expired key still refused")
	}
	if n := c.len(); n != 1 {
		t.Fatalf("after expiry the cache holds %d entries, want 1", n)
	}
}

func TestUnsignedOrForgedRequestsGet401AndDoNothing(t *testing.T) {
	h := newHarness(t, nil, nil)
	form := url.Values{"command": {"/deploy"}, "text": {"resizer v2 --canary 1%"}, "user_id": {"UALICE"}, "channel_id": {testChannel}}
	body := form.Encode()
	ts := strconv.FormatInt(h.now.Load().Unix(), 10)
	good := SignatureHeader(testSecret, ts, []byte(body))
	cases := []struct {
		name string
		hdr  map[string]string
		body string
	}{
		{"no headers", nil, body},
		{"forged signature", map[string]string{"X-Slack-Request-Timestamp": ts, "X-Slack-Signature": SignatureHeader("guess", ts, []byte(body))}, body},
		{"stale", map[string]string{"X-Slack-Request-Timestamp": strconv.FormatInt(h.now.Load().Add(-6*time.Minute).Unix(), 10), "X-Slack-Signature": good}, body},
		{"tampered", map[string]string{"X-Slack-Request-Timestamp": ts, "X-Slack-Signature": good}, body + "&text=abort"},
	}
	for _, c := range cases {
		for _, path := range []string{"/slack/commands", "/slack/interactions"} {
			req, _ := http.NewRequest(http.MethodPost, h.srv.URL+path, strings.NewReader(c.body))
			for k, v := range c.hdr {
				req.Header.Set(k, v)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusUnauthorized {
				t.Errorf("%s %s: status %d, want 401", c.name, path, resp.StatusCode)
			}
		}
	}
	// The genuine request goes through once; its replay is refused.
	for i, want := range []int{http.StatusOK, http.StatusUnauthorized} {
		req, _ := http.NewRequest(http.MethodPost, h.srv.URL+"/slack/commands", strings.NewReader(body))
		req.Header.Set("X-Slack-Request-Timestamp", ts)
		req.Header.Set("X-Slack-Signature", good)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Fatalf("attempt %d: status %d, want %d", i, resp.StatusCode, want)
		}
	}
	h.waitCalls("the genuine deploy", func(cs []slackCall) bool { return len(h.te.calls(t)) == 1 })
	if got := h.bot.Stats().Unauthorized; got != 9 {
		t.Errorf("Unauthorized = %d, want 9", got)
	}
	logs := h.logs.String()
	if !strings.Contains(logs, "slack request refused") || !strings.Contains(logs, "replay") {
		t.Errorf("refusals not logged:\n%s", logs)
	}
	for _, secret := range []string{testSecret, good, "xoxb-test"} {
		if strings.Contains(logs, secret) {
			t.Errorf("log contains a secret or signature %q", secret)
		}
	}
}

func TestStatsAreExportedAsPrometheusCounters(t *testing.T) {
	h := newHarness(t, nil, nil)
	resp, err := http.Post(h.srv.URL+"/slack/commands", "application/x-www-form-urlencoded", strings.NewReader("command=%2Fship"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	reg := prometheus.NewRegistry()
	reg.MustRegister(h.bot.Collector())
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		got[mf.GetName()] = mf.GetMetric()[0].GetCounter().GetValue()
	}
	if len(got) != len(statsDescs) || got["ship_slack_unauthorized_total"] != 1 {
		t.Fatalf("metrics = %v", got)
	}
}
