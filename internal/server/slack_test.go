package server

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/shipteam/ship/internal/chat/slack"
)

// TestSlackEndpointsAreMountedBesideTheAPI proves the wiring: a signed slash
// command reaches the bot without a ship token, a forged one is refused,
// and the API keeps its own bearer-token auth.
func TestSlackEndpointsAreMountedBesideTheAPI(t *testing.T) {
	cfg, fakeSlack := slackServe(t, "grants:\n  - apps: [\"*\"]\n    envs: [\"*\"]\n    role: admin\n    users: [U1]\n")
	addr, _ := start(t, cfg)

	form := url.Values{"command": {"/ship"}, "text": {"help"}, "user_id": {"U1"}, "user_name": {"alice"},
		"channel_id": {"C1"}, "response_url": {fakeSlack.URL + "/response"}}.Encode()
	post := func(sign bool) *http.Response {
		req, _ := http.NewRequest("POST", "http://"+addr+"/slack/commands", strings.NewReader(form))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		ts := strconv.FormatInt(time.Now().Unix(), 10)
		req.Header.Set("X-Slack-Request-Timestamp", ts)
		sig := slack.SignatureHeader("wrong-secret", ts, []byte(form))
		if sign {
			sig = slack.SignatureHeader(secret, ts, []byte(form))
		}
		req.Header.Set("X-Slack-Signature", sig)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}

	resp := post(true)
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(b), "deploy") {
		t.Fatalf("signed /ship help: %d %s", resp.StatusCode, b)
	}
	if resp := post(false); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("forged command: got %d, want 401", resp.StatusCode)
	}
	resp, err := http.Get("http://" + addr + "/v1/apps")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("API without token: got %d, want 401", resp.StatusCode)
	}
}

// TestSlackReplayIsRefusedAfterARestart proves ship serve hands the store to
// the bot's replay check: a signed command captured before a restart (same
// data dir) is refused after it, even with its hex re-cased.
func TestSlackReplayIsRefusedAfterARestart(t *testing.T) {
	cfg, _ := slackServe(t, "")

	form := url.Values{"command": {"/ship"}, "text": {"help"}, "user_id": {"U1"}, "channel_id": {"C1"}}.Encode()
	ts := strconv.FormatInt(time.Now().Unix(), 10)
	sig := slack.SignatureHeader(secret, ts, []byte(form))
	post := func(addr, sig string) int {
		t.Helper()
		req, _ := http.NewRequest("POST", "http://"+addr+"/slack/commands", strings.NewReader(form))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("X-Slack-Request-Timestamp", ts)
		req.Header.Set("X-Slack-Signature", sig)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}

	// The first ship serve, stopped by hand before the second starts.
	ctx, cancel := context.WithCancel(context.Background())
	ready, done := make(chan string, 1), make(chan error, 1)
	first := cfg
	first.Stdout = &syncBuffer{}
	first.Ready = func(a string) { ready <- a }
	go func() { done <- Run(ctx, first) }()
	var addr string
	select {
	case addr = <-ready:
	case err := <-done:
		t.Fatalf("first Run ended early: %v", err)
	case <-time.After(20 * time.Second):
		cancel()
		t.Fatal("first server not ready in 20s")
	}
	if code := post(addr, sig); code != http.StatusOK {
		t.Fatalf("genuine command: %d", code)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("first Run: %v", err)
	}

	addr, _ = start(t, cfg)
	for _, s := range []string{sig, "v0=" + strings.ToUpper(strings.TrimPrefix(sig, "v0="))} {
		if code := post(addr, s); code != http.StatusUnauthorized {
			t.Errorf("replay after restart: %d, want 401", code)
		}
	}
}

const secret = "test-signing-secret"

// slackServe is the Config of a ship serve with one app and Slack's HTTP
// mode on (signing secret `secret`, extra config lines appended), with
// Slack's Web API on loopback so nothing leaves the machine.
func slackServe(t *testing.T, extra string) (Config, *httptest.Server) {
	t.Helper()
	fakeSlack := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"ok":true}`)
	}))
	t.Cleanup(fakeSlack.Close)
	data, apps := t.TempDir(), t.TempDir()
	writeSpec(t, apps, "web.yaml", appSpec(freePort(t)))
	conf := filepath.Join(t.TempDir(), "slack.yaml")
	if err := os.WriteFile(conf, []byte("signing_secret: "+secret+"\napi_url: "+fakeSlack.URL+"/\n"+extra), 0o600); err != nil {
		t.Fatal(err)
	}
	return Config{Addr: "127.0.0.1:0", DataDir: data, AppsDir: apps, SlackConfig: conf}, fakeSlack
}
