package server

import (
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
	// Slack's Web API stands on loopback so nothing leaves the machine.
	fakeSlack := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"ok":true}`)
	}))
	defer fakeSlack.Close()

	data, apps := t.TempDir(), t.TempDir()
	writeSpec(t, apps, "web.yaml", appSpec(freePort(t)))
	const secret = "test-signing-secret"
	conf := filepath.Join(t.TempDir(), "slack.yaml")
	body := "signing_secret: " + secret + "\napi_url: " + fakeSlack.URL + "/\n" +
		"grants:\n  - apps: [\"*\"]\n    envs: [\"*\"]\n    role: admin\n    users: [U1]\n"
	if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	addr, _ := start(t, Config{Addr: "127.0.0.1:0", DataDir: data, AppsDir: apps, SlackConfig: conf})

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
