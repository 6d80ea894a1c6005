package api

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/shipteam/ship/internal/engine"
	"github.com/shipteam/ship/internal/release"
)

type fixture struct {
	eng   *fakeEngine
	srv   *httptest.Server
	token string
	cli   *Client
}

func newFixture(t *testing.T, mut ...func(*Config)) *fixture {
	t.Helper()
	eng := newFakeEngine("resizer", "web")
	token, hash, err := NewToken()
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(prometheus.NewCounter(prometheus.CounterOpts{Name: "ship_test_total", Help: "test"}))
	cfg := Config{Engine: eng, Tokens: fakeTokens{string(hash): "alice"}, Metrics: reg, Heartbeat: 20 * time.Millisecond}
	for _, m := range mut {
		m(&cfg)
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close)
	cli, err := NewClient(ClientConfig{Server: srv.URL, Token: token, Source: release.SourceCLI})
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{eng: eng, srv: srv, token: token, cli: cli}
}

func (f *fixture) raw(t *testing.T, method, path, auth, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, f.srv.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestNewTokenShapeAndHash(t *testing.T) {
	a, ha, err := NewToken()
	if err != nil {
		t.Fatal(err)
	}
	b, _, _ := NewToken()
	if !strings.HasPrefix(a, TokenPrefix) || len(a) != len(TokenPrefix)+43 {
		t.Fatalf("token %q: want ship_ + 43 base64url chars", a)
	}
	if a == b {
		t.Fatal("two tokens are equal")
	}
	if string(HashToken(a)) != string(ha) || len(ha) != 32 {
		t.Fatal("hash is not the SHA-256 of the token")
	}
}

func TestMissingOrWrongTokenIs401(t *testing.T) {
	f := newFixture(t)
	other, _, _ := NewToken()
	cases := []struct{ name, auth string }{
		{"missing", ""},
		{"basic scheme", "Basic " + f.token},
		{"empty bearer", "Bearer "},
		{"unknown token", "Bearer " + other},
		{"no prefix", "Bearer " + strings.TrimPrefix(f.token, TokenPrefix)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for _, path := range []string{"/v1/apps", "/v1/whoami", "/v1/events", "/v1/nope"} {
				status, body := f.raw(t, "GET", path, c.auth, "")
				if status != http.StatusUnauthorized || !strings.Contains(body, `"code": "unauthorized"`) {
					t.Fatalf("GET %s: %d %s", path, status, body)
				}
			}
		})
	}
	if status, _ := f.raw(t, "GET", "/v1/whoami", "Bearer "+f.token, ""); status != 200 {
		t.Fatalf("right token: %d", status)
	}
	// The same rejection through the client: a typed 401.
	bad, _ := NewClient(ClientConfig{Server: f.srv.URL, Token: other})
	_, err := bad.Apps(context.Background())
	var ae *Error
	if !errors.As(err, &ae) || ae.Status != 401 || ae.Code != CodeUnauthorized {
		t.Fatalf("client error = %#v", err)
	}
}

func TestHealthAndMetricsNeedNoToken(t *testing.T) {
	f := newFixture(t)
	if status, body := f.raw(t, "GET", "/healthz", "", ""); status != 200 || body != "ok\n" {
		t.Fatalf("healthz: %d %q", status, body)
	}
	if status, body := f.raw(t, "GET", "/metrics", "", ""); status != 200 || !strings.Contains(body, "ship_test_total") {
		t.Fatalf("metrics: %d %q", status, body)
	}
}

func TestWhoamiNamesUserAndSource(t *testing.T) {
	f := newFixture(t)
	id, err := f.cli.Whoami(context.Background())
	if err != nil || id.Name != "alice" || id.Source != release.SourceCLI {
		t.Fatalf("whoami = %+v, %v", id, err)
	}
	plain, _ := NewClient(ClientConfig{Server: f.srv.URL, Token: f.token})
	id, err = plain.Whoami(context.Background())
	if err != nil || id.Source != release.SourceAPI {
		t.Fatalf("whoami without source = %+v, %v", id, err)
	}
}

func TestEngineErrorsMapToStatusAndCode(t *testing.T) {
	cases := []struct {
		err    error
		status int
		code   string
		msg    string
	}{
		{engine.Errorf(engine.CodeInvalid, "bad weight 300"), 400, "invalid", "bad weight 300"},
		{engine.Errorf(engine.CodeNotFound, "unknown version v9"), 404, "not_found", "unknown version v9"},
		{engine.Errorf(engine.CodeConflict, "release 3 by bob is in progress"), 409, "conflict", "release 3 by bob is in progress"},
		{engine.Errorf(engine.CodeLocked, "locked by bob: freeze"), 423, "locked", "locked by bob: freeze"},
		{engine.Errorf(engine.CodeDenied, "alice may not deploy"), 403, "forbidden", "alice may not deploy"},
		{&engine.Error{Code: engine.CodeInternal, Message: "store", Err: errBoom}, 500, "internal", "internal error"},
		{errBoom, 500, "internal", "internal error"},
	}
	for _, c := range cases {
		t.Run(c.code, func(t *testing.T) {
			f := newFixture(t)
			f.eng.failWith = c.err
			_, err := f.cli.Deploy(context.Background(), "resizer", DeployRequest{Version: "v2"})
			var ae *Error
			if !errors.As(err, &ae) {
				t.Fatalf("err = %v, want *Error", err)
			}
			if ae.Status != c.status || ae.Code != c.code || ae.Message != c.msg {
				t.Fatalf("got %d %s %q, want %d %s %q", ae.Status, ae.Code, ae.Message, c.status, c.code, c.msg)
			}
			if strings.Contains(ae.Message, "secret") {
				t.Fatal("internal detail leaked to the caller")
			}
		})
	}
}

func TestRequestBodiesAreStrict(t *testing.T) {
	f := newFixture(t)
	auth := "Bearer " + f.token
	cases := []struct {
		name, path, body string
		status           int
	}{
		{"unknown field", "/v1/apps/resizer/deploy", `{"version":"v2","canry":1}`, 400},
		{"wrong type", "/v1/apps/resizer/deploy", `{"version":2}`, 400},
		{"two values", "/v1/apps/resizer/deploy", `{"version":"v2"}{"version":"v3"}`, 400},
		{"not json", "/v1/apps/resizer/deploy", `version=v2`, 400},
		{"too large", "/v1/apps/resizer/deploy", `{"version":"` + strings.Repeat("x", 70<<10) + `"}`, 413},
		{"empty promote body is fine but no release", "/v1/apps/resizer/promote", ``, 409},
		{"another app in the body", "/v1/apps/resizer/deploy", `{"app":"web","version":"v2"}`, 400},
		{"ok deploy", "/v1/apps/resizer/deploy", `{"version":"v2","canary":1}`, 201},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			status, body := f.raw(t, "POST", c.path, auth, c.body)
			if status != c.status || !strings.Contains(body, `"`) {
				t.Fatalf("%d %s, want %d", status, body, c.status)
			}
		})
	}
	if status, body := f.raw(t, "GET", "/v1/apps/resizer/history?limit=x", auth, ""); status != 400 {
		t.Fatalf("bad limit: %d %s", status, body)
	}
	if status, body := f.raw(t, "GET", "/v1/releases/abc", auth, ""); status != 400 {
		t.Fatalf("bad id: %d %s", status, body)
	}
	if status, _ := f.raw(t, "GET", "/v1/nothing", auth, ""); status != 404 {
		t.Fatalf("unknown endpoint: %d", status)
	}
}

func TestClientCommandsReachEngineWithActor(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	rel, err := f.cli.Deploy(ctx, "resizer", DeployRequest{Version: "v2", Canary: 100, Steps: []release.Weight{100, 5000, 10000}})
	if err != nil {
		t.Fatal(err)
	}
	if rel.ID != 1 || rel.Version != "v2" || rel.HoldAt != 100 || rel.Actor != "alice" || rel.Source != release.SourceCLI {
		t.Fatalf("deploy = %+v", rel)
	}
	_, err = f.cli.Deploy(ctx, "resizer", DeployRequest{Version: "v3"})
	var ae *Error
	if !errors.As(err, &ae) || ae.Status != 409 || !strings.Contains(ae.Message, "release 1 of resizer by alice") {
		t.Fatalf("second deploy = %v", err)
	}
	if _, err := f.cli.Deploy(ctx, "nope", DeployRequest{Version: "v1"}); !errors.As(err, &ae) || ae.Status != 404 {
		t.Fatalf("unknown app = %v", err)
	}
	if r, err := f.cli.Promote(ctx, "resizer", ""); err != nil || r.State != release.Succeeded {
		t.Fatalf("promote = %+v %v", r, err)
	}
	if _, err := f.cli.Deploy(ctx, "resizer", DeployRequest{Version: "v3"}); err != nil {
		t.Fatal(err)
	}
	if r, err := f.cli.Abort(ctx, "resizer", "", "looks slow"); err != nil || r.State != release.Aborted {
		t.Fatalf("abort = %+v %v", r, err)
	}
	if r, err := f.cli.Rollback(ctx, "resizer", "", "v1"); err != nil || r.Kind != release.KindRollback || r.Version != "v1" {
		t.Fatalf("rollback = %+v %v", r, err)
	}
	st, err := f.cli.Scale(ctx, "resizer", "", 4)
	if err != nil || st.Stable.Desired != 4 {
		t.Fatalf("scale = %+v %v", st, err)
	}
	if st, err := f.cli.Lock(ctx, "resizer", "", "freeze"); err != nil || st.Lock == nil || st.Lock.Reason != "freeze" || st.Lock.Actor != "alice" {
		t.Fatalf("lock = %+v %v", st, err)
	}
	if st, err := f.cli.Unlock(ctx, "resizer", ""); err != nil || st.Lock != nil {
		t.Fatalf("unlock = %+v %v", st, err)
	}
	hist, err := f.cli.History(ctx, "resizer", "", 2)
	if err != nil || len(hist) != 2 || hist[0].ID != 3 {
		t.Fatalf("history = %+v %v", hist, err)
	}
	if r, err := f.cli.Release(ctx, 2); err != nil || r.Version != "v3" {
		t.Fatalf("release 2 = %+v %v", r, err)
	}
	if _, err := f.cli.Release(ctx, 99); !errors.As(err, &ae) || ae.Code != "not_found" {
		t.Fatalf("release 99 = %v", err)
	}
	lines, err := f.cli.Logs(ctx, "resizer", "", "v1", 3)
	if err != nil || len(lines) != 3 || lines[2].Text != "line 2" {
		t.Fatalf("logs = %+v %v", lines, err)
	}
	apps, err := f.cli.Apps(ctx)
	if err != nil || len(apps) != 2 || apps[0].App != "resizer" || apps[0].Endpoint == "" {
		t.Fatalf("apps = %+v %v", apps, err)
	}
	want := []string{"deploy", "deploy", "deploy", "promote", "deploy", "abort:looks slow", "rollback:v1", "scale", "lock", "unlock"}
	if strings.Join(f.eng.calls, ",") != strings.Join(want, ",") {
		t.Fatalf("engine calls %v, want %v", f.eng.calls, want)
	}
	if f.eng.lastActr != (engine.Actor{ID: "token:alice", Name: "alice", Source: release.SourceCLI, Role: "maintainer"}) {
		t.Fatalf("actor = %+v", f.eng.lastActr)
	}
}

func TestPanicBecomesInternalError(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.Engine = panicky{c.Engine} })
	_, err := f.cli.Apps(context.Background())
	var ae *Error
	if !errors.As(err, &ae) || ae.Status != 500 || ae.Message != "internal error" {
		t.Fatalf("err = %v", err)
	}
	// The server survived.
	if _, err := f.cli.Whoami(context.Background()); err != nil {
		t.Fatal(err)
	}
}

type panicky struct{ Engine }

func (panicky) List(context.Context, engine.Actor) ([]engine.AppStatus, error) { panic("nil map") }

func TestConfigValidateJoinsErrors(t *testing.T) {
	err := Config{Heartbeat: -1}.Validate()
	if err == nil {
		t.Fatal("empty config validated")
	}
	for _, want := range []string{"Engine", "Tokens", "Heartbeat"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%v does not mention %s", err, want)
		}
	}
}

func TestClientRefusesBadServerAddress(t *testing.T) {
	for _, s := range []string{"", "ftp://x", "http://"} {
		if _, err := NewClient(ClientConfig{Server: s}); err == nil {
			t.Errorf("%q accepted", s)
		}
	}
	c, err := NewClient(ClientConfig{Server: "127.0.0.1:7070"})
	if err != nil || c.Server() != "http://127.0.0.1:7070" {
		t.Fatalf("%v %v", c, err)
	}
}

// POST /v1/apps/{app}/reclaim takes env from the query (the client's way)
// or from a body like the other commands, refuses the two disagreeing,
// and answers with what the engine reclaimed.
func TestReclaimTakesEnvFromQueryOrBody(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	res, err := f.cli.Reclaim(ctx, "resizer", "staging")
	if err != nil {
		t.Fatal(err)
	}
	if res.App != "resizer" || res.Env != "staging" || len(res.Tracks) != 1 || res.Tracks[0].Lost[0] != `"kubectl": deployment resizer-stable .spec.replicas` {
		t.Fatalf("reclaim = %+v", res)
	}
	if f.eng.calls[len(f.eng.calls)-1] != "reclaim:staging" || f.eng.lastActr != (engine.Actor{ID: "token:alice", Name: "alice", Source: release.SourceCLI, Role: "maintainer"}) {
		t.Fatalf("engine calls %v by %+v", f.eng.calls, f.eng.lastActr)
	}
	auth := "Bearer " + f.token
	if status, body := f.raw(t, "POST", "/v1/apps/resizer/reclaim", auth, `{"env":"canary-land"}`); status != 200 || !strings.Contains(body, `"env": "canary-land"`) {
		t.Fatalf("env in body: %d %s", status, body)
	}
	if status, body := f.raw(t, "POST", "/v1/apps/resizer/reclaim?env=staging", auth, `{"env":"production"}`); status != 400 || !strings.Contains(body, "differ") {
		t.Fatalf("query and body disagree: %d %s", status, body)
	}
	if status, _ := f.raw(t, "POST", "/v1/apps/resizer/reclaim", auth, `{"replicas":2}`); status != 400 {
		t.Fatalf("unknown field: %d", status)
	}
	if status, _ := f.raw(t, "POST", "/v1/apps/resizer/reclaim", "", ""); status != 401 {
		t.Fatalf("no token: %d", status)
	}
	var ae *Error
	if _, err := f.cli.Reclaim(ctx, "nope", ""); !errors.As(err, &ae) || ae.Status != 404 || ae.Code != "not_found" {
		t.Fatalf("unknown app: %v", err)
	}
	f.eng.failWith = engine.Errorf(engine.CodeInvalid, "reclaim is for runtimes with server-side apply; the local runtime has no hand edits")
	if _, err := f.cli.Reclaim(ctx, "resizer", ""); !errors.As(err, &ae) || ae.Status != 400 || !strings.Contains(ae.Message, "local runtime") {
		t.Fatalf("local runtime: %v", err)
	}
}
