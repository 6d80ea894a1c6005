package server

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
)

// A deployer's token may not smuggle shell, chat or terminal markup into a
// version or a reason through the API: one rule (release.CheckVersion,
// CheckReason) refuses it at once with 400, and nothing is recorded. Before
// it, `v3$(id>x)` reached {{.Version}} and a spec wrapping its command in
// /bin/sh -c ran it as ship's user.
func TestHostileVersionsAndReasonsAreRefusedAtTheAPI(t *testing.T) {
	addr, admin, _ := authServer(t, nil)
	_, token := newUser(t, addr, admin, "mallory", "maintainer")
	post := func(path string, body any) (int, string) { t.Helper(); return postAs(t, addr, token, path, body) }
	for _, v := range []string{"v3$(id>x)", "v2;id", "`id`", "<!channel>", "-v2", "v2\u200b", "v\u202e2", "1.2.3+build5", strings.Repeat("a", 64)} {
		code, body := post("/v1/apps/web/deploy", map[string]any{"env": "staging", "version": v})
		if code != http.StatusBadRequest || !strings.Contains(body, "invalid version") {
			t.Errorf("deploy %q: %d %s, want 400 invalid version", v, code, body)
		}
	}
	// A weight the router cannot hold is refused, not rounded to 0.
	if code, body := post("/v1/apps/web/deploy", map[string]any{"env": "staging", "version": "v2", "canary": 0.001}); code != http.StatusBadRequest {
		t.Errorf("canary 0.001: %d %s, want 400", code, body)
	}
	for _, reason := range []string{"\x1b[2J\x1b[31mfire", "two\nlines", "rtl \u202e txt"} {
		code, body := post("/v1/apps/web/lock", map[string]any{"env": "staging", "reason": reason})
		if code != http.StatusBadRequest || !strings.Contains(body, "reason must be one line of plain text") {
			t.Errorf("lock %q: %d %s, want 400", reason, code, body)
		}
	}
	hist, err := admin.History(context.Background(), "web", "staging", 10)
	if err != nil || len(hist) != 0 {
		t.Fatalf("history after refused deploys: %v %v", hist, err)
	}
	if st, err := admin.Status(context.Background(), "web", "staging"); err != nil || st.Lock != nil {
		t.Fatalf("status after refused locks: %+v %v", st, err)
	}
}

// postAs posts body as JSON (a string is sent as it is) with token.
func postAs(t *testing.T, addr, token, path string, body any) (int, string) {
	t.Helper()
	b, ok := body.(string)
	if !ok {
		j, _ := json.Marshal(body)
		b = string(j)
	}
	req, _ := http.NewRequest(http.MethodPost, "http://"+addr+path, bytes.NewReader([]byte(b)))
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(out)
}

// What a command needs is checked once, in the engine, whichever door it
// came through: the API only decodes the engine's request types.
func TestCommandBodiesAreValidatedByTheEngine(t *testing.T) {
	addr, admin, _ := authServer(t, nil)
	_, token := newUser(t, addr, admin, "val", "maintainer")
	for _, c := range []struct {
		name, path, body string
		status           int
		says             string
	}{
		{"no version", "/v1/apps/web/deploy", `{"env":"staging"}`, 400, "a version is required"},
		{"scale without replicas", "/v1/apps/web/scale", `{"env":"staging"}`, 400, "replicas is required"},
		{"negative scale", "/v1/apps/web/scale", `{"env":"staging","replicas":-1}`, 400, "replicas must be between 0 and"},
		{"lock without reason", "/v1/apps/web/lock", `{"env":"staging"}`, 400, "a lock needs a reason"},
		{"promote with no release", "/v1/apps/web/promote", ``, 404, "has no active release to promote"},
		{"another app in the body", "/v1/apps/web/deploy", `{"app":"other","version":"v2"}`, 400, "differ"},
	} {
		code, body := postAs(t, addr, token, c.path, c.body)
		if code != c.status || !strings.Contains(body, c.says) {
			t.Errorf("%s: %d %s, want %d saying %q", c.name, code, body, c.status, c.says)
		}
	}
}
