package api

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/shipteam/ship/internal/engine"
	"github.com/shipteam/ship/internal/enginetest"
	"github.com/shipteam/ship/internal/eventually"
	"github.com/shipteam/ship/internal/release"
	"github.com/shipteam/ship/internal/runtime"
	"github.com/shipteam/ship/internal/spec"
)

type fixture struct {
	env   *enginetest.Env // the real engine and its parts
	eng   *enginetest.Watched
	srv   *httptest.Server
	token string // alice's, role maintainer
	cli   *Client

	mu     sync.Mutex
	asked  []engine.Actor // every actor the engine asked the authorizer about
	refuse func(a engine.Actor, act engine.Action, app string) error
}

// newFixture serves the API of a real running engine (apps resizer and
// web, healthy traffic) on loopback.
func newFixture(t *testing.T, mut ...func(*Config)) *fixture {
	t.Helper()
	f := &fixture{}
	f.env = enginetest.New(t, enginetest.Options{
		Apps: []spec.App{enginetest.WebApp("resizer"), enginetest.WebApp("web")}, Traffic: 1000,
		Authorize: f.authorize,
	})
	f.eng = enginetest.Watch(f.env.Engine)
	token, hash, err := NewToken()
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(prometheus.NewCounter(prometheus.CounterOpts{Name: "ship_test_total", Help: "test"}))
	cfg := Config{Engine: f.eng, Tokens: fakeTokens{string(hash): "alice"}, Metrics: reg, Heartbeat: 20 * time.Millisecond}
	for _, m := range mut {
		m(&cfg)
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	f.srv = httptest.NewServer(s.Handler())
	t.Cleanup(f.srv.Close)
	f.cli, err = NewClient(ClientConfig{Server: f.srv.URL, Token: token, Source: release.SourceCLI})
	if err != nil {
		t.Fatal(err)
	}
	f.token = token
	return f
}

// authorize is the engine's Authorize: it notes who asks and refuses what
// f.refuse refuses.
func (f *fixture) authorize(_ context.Context, a engine.Actor, act engine.Action, app, _ string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.asked = append(f.asked, a)
	if f.refuse != nil {
		return f.refuse(a, act, app)
	}
	return nil
}

// lastAsked is the last actor the engine asked the authorizer about.
func (f *fixture) lastAsked() engine.Actor {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.asked) == 0 {
		return engine.Actor{}
	}
	return f.asked[len(f.asked)-1]
}

// aliceCLI is the actor the API makes of alice's token from the CLI.
var aliceCLI = engine.Actor{ID: "token:alice", Name: "alice", Source: release.SourceCLI, Role: "maintainer"}

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

// Each engine refusal is produced by a real condition; the API must answer
// with its status and code and pass the engine's sentence on unchanged
// (compared with what the engine says to the same request directly), while
// an internal error's detail stays in the logs.
func TestEngineErrorsMapToStatusAndCode(t *testing.T) {
	ctx := context.Background()
	cases := []struct {
		name    string
		setup   func(t *testing.T, f *fixture)
		mut     func(*Config)
		app     string
		version string
		status  int
		code    string
		msg     string // "": the engine's own message
	}{
		{name: "invalid version", app: "resizer", version: "v3$(id)", status: 400, code: "invalid"},
		{name: "unknown app", app: "nope", version: "v2", status: 404, code: "not_found"},
		{name: "release in progress", app: "resizer", version: "v3", status: 409, code: "conflict", setup: func(t *testing.T, f *fixture) {
			f.env.StableAt("resizer", "v1")
			if _, err := f.env.Engine.Deploy(ctx, enginetest.Admin, engine.DeployRequest{App: "resizer", Version: "v2", Canary: 100}); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "locked", app: "resizer", version: "v2", status: 423, code: "locked", setup: func(t *testing.T, f *fixture) {
			if err := f.env.Engine.Lock(ctx, enginetest.Admin, engine.LockRequest{App: "resizer", Reason: "freeze"}); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "denied", app: "resizer", version: "v2", status: 403, code: "forbidden", setup: func(t *testing.T, f *fixture) {
			f.refuse = func(a engine.Actor, act engine.Action, app string) error {
				if act == engine.ActDeploy {
					return fmt.Errorf("%s may not deploy %s", a.Name, app)
				}
				return nil
			}
		}},
		{name: "internal with detail", app: "resizer", version: "v2", status: 500, code: "internal", msg: "internal error",
			mut: func(c *Config) {
				c.Engine = failing{c.Engine.(*enginetest.Watched).Engine, &engine.Error{Code: engine.CodeInternal, Message: "store", Err: errBoom}}
			}},
		{name: "plain error", app: "resizer", version: "v2", status: 500, code: "internal", msg: "internal error",
			mut: func(c *Config) { c.Engine = failing{c.Engine.(*enginetest.Watched).Engine, errBoom} }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var muts []func(*Config)
			if c.mut != nil {
				muts = append(muts, c.mut)
			}
			f := newFixture(t, muts...)
			if c.setup != nil {
				c.setup(t, f)
			}
			_, err := f.cli.Deploy(ctx, c.app, DeployRequest{Version: c.version})
			var ae *Error
			if !errors.As(err, &ae) {
				t.Fatalf("err = %v, want *Error", err)
			}
			want := c.msg
			if want == "" {
				_, direct := f.env.Engine.Deploy(ctx, aliceCLI, engine.DeployRequest{App: c.app, Version: c.version})
				var ee *engine.Error
				if !errors.As(direct, &ee) || ee.Message == "" {
					t.Fatalf("the engine itself answers %v", direct)
				}
				want = ee.Message
			}
			if ae.Status != c.status || ae.Code != c.code || ae.Message != want {
				t.Fatalf("got %d %s %q, want %d %s %q", ae.Status, ae.Code, ae.Message, c.status, c.code, want)
			}
			if strings.Contains(ae.Message, "secret") || strings.Contains(ae.Message, "disk on fire") {
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
		{"empty promote body is fine but no release", "/v1/apps/resizer/promote", ``, 404},
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

// Every command of the client reaches the engine as alice from the CLI:
// what the engine recorded (releases, events) names her, and the actor the
// engine's authorizer was asked about is the token's, role and all.
func TestClientCommandsReachEngineWithActor(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	f.env.StableAt("resizer", "v1") // release 1, by admin
	rel, err := f.cli.Deploy(ctx, "resizer", DeployRequest{Version: "v2", Canary: 100})
	if err != nil {
		t.Fatal(err)
	}
	if rel.ID != 2 || rel.Version != "v2" || rel.HoldAt != 100 || rel.Actor != "alice" || rel.Source != release.SourceCLI {
		t.Fatalf("deploy = %+v", rel)
	}
	_, err = f.cli.Deploy(ctx, "resizer", DeployRequest{Version: "v3"})
	var ae *Error
	if !errors.As(err, &ae) || ae.Status != 409 || !strings.Contains(ae.Message, "release #2") || !strings.Contains(ae.Message, "alice") {
		t.Fatalf("second deploy = %v", err)
	}
	if _, err := f.cli.Deploy(ctx, "nope", DeployRequest{Version: "v1"}); !errors.As(err, &ae) || ae.Status != 404 {
		t.Fatalf("unknown app = %v", err)
	}
	f.env.WaitState(2, release.Paused)
	if _, err := f.cli.Promote(ctx, "resizer", ""); err != nil {
		t.Fatalf("promote = %v", err)
	}
	f.env.WaitState(2, release.Succeeded)
	if r, err := f.cli.Deploy(ctx, "resizer", DeployRequest{Version: "v3", Canary: 100}); err != nil || r.ID != 3 {
		t.Fatalf("deploy v3 = %+v %v", r, err)
	}
	if r, err := f.cli.Abort(ctx, "resizer", "", "looks slow"); err != nil || r.State != release.Aborted || !strings.Contains(r.Reason, "looks slow") {
		t.Fatalf("abort = %+v %v", r, err)
	}
	r, err := f.cli.Rollback(ctx, "resizer", "", "v1")
	if err != nil || r.Kind != release.KindRollback || r.Version != "v1" || r.ID != 4 {
		t.Fatalf("rollback = %+v %v", r, err)
	}
	f.env.WaitState(4, release.Succeeded)
	if _, err := f.cli.Scale(ctx, "resizer", "", 4); err != nil {
		t.Fatalf("scale = %v", err)
	}
	eventually.True(t, 5*time.Second, "4 stable instances", func() bool {
		st, err := f.cli.Status(ctx, "resizer", "")
		return err == nil && st.Stable.Desired == 4 && st.Stable.Version == "v1"
	})
	if st, err := f.cli.Lock(ctx, "resizer", "", "freeze"); err != nil || st.Lock == nil || st.Lock.Reason != "freeze" || st.Lock.Actor != "alice" {
		t.Fatalf("lock = %+v %v", st, err)
	}
	if st, err := f.cli.Unlock(ctx, "resizer", ""); err != nil || st.Lock != nil {
		t.Fatalf("unlock = %+v %v", st, err)
	}
	hist, err := f.cli.History(ctx, "resizer", "", 2)
	if err != nil || len(hist) != 2 || hist[0].ID != 4 || hist[1].ID != 3 {
		t.Fatalf("history = %+v %v", hist, err)
	}
	for _, r := range hist {
		if r.Actor != "alice" || r.Source != release.SourceCLI {
			t.Fatalf("release #%d recorded as by %q from %q", r.ID, r.Actor, r.Source)
		}
	}
	if r, err := f.cli.Release(ctx, 3); err != nil || r.Version != "v3" || r.State != release.Aborted {
		t.Fatalf("release 3 = %+v %v", r, err)
	}
	if _, err := f.cli.Release(ctx, 99); !errors.As(err, &ae) || ae.Code != "not_found" {
		t.Fatalf("release 99 = %v", err)
	}
	for i := range 4 {
		f.env.Logs.Add("resizer", "production", runtime.LogLine{Instance: "stable-0", Version: "v1", Stream: "stdout", Text: fmt.Sprintf("line %d", i)})
	}
	f.env.Logs.Add("resizer", "production", runtime.LogLine{Instance: "canary-0", Version: "v3", Stream: "stdout", Text: "other"})
	lines, err := f.cli.Logs(ctx, "resizer", "", "v1", 3)
	if err != nil || len(lines) != 3 || lines[0].Text != "line 1" || lines[2].Text != "line 3" {
		t.Fatalf("logs = %+v %v", lines, err)
	}
	apps, err := f.cli.Apps(ctx)
	// Every app in every environment: resizer and web, production and staging.
	if err != nil || len(apps) != 4 || apps[0].App != "resizer" || apps[0].Env != "production" || apps[2].App != "web" ||
		apps[0].Stable.Version != "v1" || apps[0].Endpoint == "" {
		t.Fatalf("apps = %+v %v", apps, err)
	}
	// What the engine recorded as done by alice, in order.
	evs, err := f.env.Engine.Events(ctx, engine.System, engine.EventQuery{App: "resizer"})
	if err != nil {
		t.Fatal(err)
	}
	var hers []string
	for _, ev := range evs {
		if ev.Actor == "alice" {
			hers = append(hers, fmt.Sprintf("%s#%d", ev.Type, ev.ReleaseID))
		}
	}
	want := []string{"release.created#2", "release.promoting#2", "release.created#3", "release.aborted#3", "release.created#4", "app.scaled#0", "app.locked#0", "app.unlocked#0"}
	if strings.Join(hers, ",") != strings.Join(want, ",") {
		t.Fatalf("alice's events %v, want %v", hers, want)
	}
	if got := f.lastAsked(); got != aliceCLI {
		t.Fatalf("actor = %+v, want %+v", got, aliceCLI)
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
	r, err := f.env.Engine.Deploy(ctx, enginetest.Admin, engine.DeployRequest{App: "resizer", Env: "staging", Version: "v1", Rolling: true})
	if err != nil {
		t.Fatal(err)
	}
	f.env.WaitState(r.ID, release.Succeeded)
	f.env.Runtime.HandScale("resizer", "staging", runtime.Stable, 5, "kubectl")
	res, err := f.cli.Reclaim(ctx, "resizer", "staging")
	if err != nil {
		t.Fatal(err)
	}
	var lost []string
	for _, tr := range res.Tracks {
		lost = append(lost, tr.Lost...)
	}
	if res.App != "resizer" || res.Env != "staging" || len(lost) != 1 || !strings.Contains(lost[0], `"kubectl"`) {
		t.Fatalf("reclaim = %+v", res)
	}
	if got := f.env.Runtime.Get("resizer", "staging", runtime.Stable); got.Desired != 2 {
		t.Fatalf("staging stable has %d instances after the reclaim, want the recorded 2", got.Desired)
	}
	if got := f.lastAsked(); got != aliceCLI {
		t.Fatalf("reclaimed as %+v", got)
	}
	auth := "Bearer " + f.token
	if status, body := f.raw(t, "POST", "/v1/apps/resizer/reclaim", auth, `{"env":"staging"}`); status != 200 || !strings.Contains(body, `"env": "staging"`) {
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
	// The engine's own sentence passes through: web runs nothing yet.
	if _, err := f.cli.Reclaim(ctx, "web", ""); !errors.As(err, &ae) || ae.Status != 404 || !strings.Contains(ae.Message, "nothing to reclaim") {
		t.Fatalf("nothing running: %v", err)
	}
}
