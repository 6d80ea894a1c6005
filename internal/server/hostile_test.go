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
	post := func(path string, body any) (int, string) {
		t.Helper()
		b, _ := json.Marshal(body)
		req, _ := http.NewRequest(http.MethodPost, "http://"+addr+path, bytes.NewReader(b))
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
