package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shipteam/ship/internal/api"
	"github.com/shipteam/ship/internal/engine"
	"github.com/shipteam/ship/internal/enginetest"
	"github.com/shipteam/ship/internal/release"
	"github.com/shipteam/ship/internal/runtime"
	"github.com/shipteam/ship/internal/spec"
)

// The CLI's tests run it against ship's API in front of a real engine
// (internal/enginetest) with one app, web: 2 stable instances in
// production and staging, healthy traffic.

func newEngine(t *testing.T, o enginetest.Options) *enginetest.Env {
	t.Helper()
	if o.Apps == nil {
		o.Apps = []spec.App{enginetest.WebApp("web")}
	}
	if o.Traffic == 0 && !o.Stepped {
		o.Traffic = 1000
	}
	return enginetest.New(t, o)
}

type tokens map[string]string

func (t tokens) TokenOwner(_ context.Context, h []byte) (api.TokenOwner, error) {
	if u, ok := t[string(h)]; ok {
		return api.TokenOwner{Name: u, Role: "maintainer"}, nil
	}
	return api.TokenOwner{}, api.ErrUnknownToken
}

const testToken = "ship_test-token"

// serve serves the API of eng (alice's token is testToken) on loopback.
func serve(t *testing.T, eng api.Engine) string {
	t.Helper()
	s, err := api.New(api.Config{Engine: eng, Tokens: tokens{string(api.HashToken(testToken)): "alice"}})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close)
	return srv.URL
}

func runCLI(t *testing.T, env map[string]string, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	home := t.TempDir()
	getenv := func(k string) string {
		if k == "XDG_CONFIG_HOME" {
			return filepath.Join(home, "config")
		}
		return env[k]
	}
	code := Run(ctx, args, Env{Stdout: &out, Stderr: &errb, Getenv: getenv, Dir: home})
	return code, out.String(), errb.String()
}

func TestDeployWaitExitsOneWithTheReasonWhenTheCanaryFails(t *testing.T) {
	e := newEngine(t, enginetest.Options{})
	e.StableAt("web", "v1")
	e.FailRequests("v2-fail50", 50)
	url := serve(t, e.Engine)
	code, out, errs := runCLI(t, map[string]string{"SHIP_SERVER": url, "SHIP_TOKEN": testToken},
		"deploy", "web", "v2-fail50", "--steps", "20,100", "--wait")
	if code != ExitFailed {
		t.Fatalf("exit %d\n%s\n%s", code, out, errs)
	}
	for _, want := range []string{"release 2: deploying web v2-fail50", "release.step", "weight 20%", "release.aborted"} {
		if !strings.Contains(out, want) {
			t.Errorf("stdout lacks %q:\n%s", want, out)
		}
	}
	r := e.Release(2)
	if r.State != release.Aborted || !strings.HasPrefix(r.Reason, "analysis failed: ") {
		t.Fatalf("release = %s (%s), want aborted by analysis", r.State, r.Reason)
	}
	if !strings.Contains(errs, "aborted: "+r.Reason) {
		t.Errorf("stderr lacks the reason %q:\n%s", r.Reason, errs)
	}
	if strings.Contains(out, "\r") || strings.Contains(out, "\033[") {
		t.Error("plain output has terminal control characters")
	}
}

func TestDeployCanaryHoldExitsZeroOncePaused(t *testing.T) {
	e := newEngine(t, enginetest.Options{})
	e.StableAt("web", "v1")
	url := serve(t, e.Engine)
	code, out, errs := runCLI(t, map[string]string{"SHIP_SERVER": url, "SHIP_TOKEN": testToken},
		"deploy", "web", "v2", "--canary", "1%", "--wait", "--output", "json")
	if code != ExitOK {
		t.Fatalf("exit %d\n%s\n%s", code, out, errs)
	}
	var rel release.Release
	if err := json.Unmarshal([]byte(out), &rel); err != nil {
		t.Fatalf("json output: %v\n%s", err, out)
	}
	if rel.State != release.Paused || rel.HoldAt != 100 || rel.Actor != "alice" || rel.Source != release.SourceCLI {
		t.Fatalf("release = %+v", rel)
	}
}

// slowRouter takes lag to put a canary's weight in force, as a gateway
// that is slow to program: the engine records "paused" before the router
// has the weight.
type slowRouter struct {
	runtime.Router
	lag time.Duration
	mu  sync.Mutex
	at  time.Time // when a weight above 0 was last in force
}

func (r *slowRouter) SetWeight(ctx context.Context, app spec.App, env string, w release.Weight) error {
	if w > 0 {
		select {
		case <-time.After(r.lag):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if err := r.Router.SetWeight(ctx, app, env, w); err != nil {
		return err
	}
	if w > 0 {
		r.mu.Lock()
		r.at = time.Now()
		r.mu.Unlock()
	}
	return nil
}

func TestDeployCanaryHoldWaitsForTheWeightInForce(t *testing.T) {
	slow := &slowRouter{lag: 300 * time.Millisecond}
	e := newEngine(t, enginetest.Options{Router: func(r runtime.Router) runtime.Router { slow.Router = r; return slow }})
	e.StableAt("web", "v1")
	url := serve(t, e.Engine)
	code, out, errs := runCLI(t, map[string]string{"SHIP_SERVER": url, "SHIP_TOKEN": testToken},
		"deploy", "web", "v2", "--canary", "1%", "--wait")
	returned := time.Now()
	if code != ExitOK {
		t.Fatalf("exit %d\n%s\n%s", code, out, errs)
	}
	slow.mu.Lock()
	at := slow.at
	slow.mu.Unlock()
	if at.IsZero() || returned.Before(at) {
		t.Fatalf("deploy --canary --wait returned before the router had the weight (set at %v, returned %v)", at, returned)
	}
	if w := e.Router.Current("web", "production"); w != 100 {
		t.Fatalf("router weight %s when the CLI returned, want 1%%", w)
	}
}

func TestDeployWithoutWaitReturnsAtOnceInScripts(t *testing.T) {
	e := newEngine(t, enginetest.Options{Stepped: true}) // never stepped: the release never settles
	url := serve(t, e.Engine)
	code, out, _ := runCLI(t, map[string]string{"SHIP_SERVER": url, "SHIP_TOKEN": testToken}, "deploy", "web", "v2")
	if code != ExitOK || !strings.Contains(out, "release 1") {
		t.Fatalf("exit %d: %s", code, out)
	}
	if r := e.Release(1); r.State.Terminal() {
		t.Fatalf("release %s: the test proves nothing", r.State)
	}
}

func TestExitCodes(t *testing.T) {
	url := serve(t, newEngine(t, enginetest.Options{Stepped: true}).Engine)
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	dead := "http://" + ln.Addr().String()
	ln.Close()
	ok := map[string]string{"SHIP_SERVER": url, "SHIP_TOKEN": testToken}
	cases := []struct {
		name string
		env  map[string]string
		args []string
		code int
		msg  string
	}{
		{"status", ok, []string{"status", "web"}, ExitOK, ""},
		{"unknown app", ok, []string{"status", "nope"}, ExitFailed, `unknown app "nope"`},
		{"bad flag", ok, []string{"deploy", "web", "v2", "--bogus"}, ExitUsage, ""},
		{"unknown command", ok, []string{"frobnicate"}, ExitUsage, ""},
		{"wrong token", map[string]string{"SHIP_SERVER": url, "SHIP_TOKEN": "ship_nope"}, []string{"status", "web"}, ExitUnavailable, "invalid token"},
		{"no token", map[string]string{"SHIP_SERVER": url}, []string{"status", "web"}, ExitUnavailable, "missing bearer token"},
		{"server down", map[string]string{"SHIP_SERVER": dead, "SHIP_TOKEN": testToken}, []string{"status", "web"}, ExitUnavailable, "cannot reach ship"},
		{"global flags anywhere", map[string]string{}, []string{"status", "web", "--server", url, "--token=" + testToken}, ExitOK, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, out, errs := runCLI(t, c.env, c.args...)
			if code != c.code || !strings.Contains(errs, c.msg) {
				t.Fatalf("exit %d (want %d), stderr %q (want %q), stdout %q", code, c.code, errs, c.msg, out)
			}
		})
	}
}

func TestStatusJSONIsTheAppStatus(t *testing.T) {
	e := newEngine(t, enginetest.Options{})
	e.StableAt("web", "v1")
	r, err := e.Engine.Deploy(context.Background(), enginetest.Admin, engine.DeployRequest{App: "web", Version: "v2", Canary: 100})
	if err != nil {
		t.Fatal(err)
	}
	e.WaitState(r.ID, release.Paused)
	url := serve(t, e.Engine)
	code, out, errs := runCLI(t, map[string]string{"SHIP_SERVER": url, "SHIP_TOKEN": testToken}, "status", "web", "--output", "json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	var got map[string]any
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"app", "env", "endpoint", "stable", "canary", "weight", "release"} {
		if _, ok := got[k]; !ok {
			t.Errorf("status json lacks %q: %s", k, out)
		}
	}
	if got["release"].(map[string]any)["state"] != "paused" || got["stable"].(map[string]any)["ready"] != 2.0 {
		t.Errorf("status json: %s", out)
	}
}

func TestStatusSaysWhenTheWeightIsRounded(t *testing.T) {
	// A router that can only split by replica counts (20% steps) and a
	// runtime that says so, as on Kubernetes without a gateway.
	e := newEngine(t, enginetest.Options{})
	e.StableAt("web", "v1")
	e.Router.Mu.Lock()
	e.Router.Round = 2000
	e.Router.Mu.Unlock()
	e.Runtime.Mu.Lock()
	e.Runtime.Track("web", "production", runtime.Canary).Note = "weight 10% asked, 20% given by replica counts (1 canary of 3 instances; no gateway)"
	e.Runtime.Mu.Unlock()
	r, err := e.Engine.Deploy(context.Background(), enginetest.Admin, engine.DeployRequest{App: "web", Version: "v2", Canary: 1000})
	if err != nil {
		t.Fatal(err)
	}
	e.WaitState(r.ID, release.Paused)
	url := serve(t, e.Engine)
	code, out, errs := runCLI(t, map[string]string{"SHIP_SERVER": url, "SHIP_TOKEN": testToken}, "status", "web")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	for _, w := range []string{"canary  v2  1/1 ready  weight 20% (10% asked)\n", "note: canary: weight 10% asked, 20% given by replica counts"} {
		if !strings.Contains(out, w) {
			t.Errorf("status output lacks %q:\n%s", w, out)
		}
	}
	st := engine.AppStatus{Weight: 2000, WeightAsked: 100, Release: &release.Release{ID: 3, Version: "v2", State: release.Paused}}
	if got := statusLine(st); !strings.Contains(got, "| weight 20% (1% asked) |") {
		t.Errorf("statusLine %q", got)
	}
	st.WeightAsked = 0
	if got := statusLine(st); !strings.Contains(got, "| weight 20% |") {
		t.Errorf("statusLine without a rounded weight %q", got)
	}
}

func TestConfigFileAndLocalTokenFallback(t *testing.T) {
	url := serve(t, newEngine(t, enginetest.Options{Stepped: true}).Engine)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "c.yaml")
	os.WriteFile(cfg, []byte("server: "+url+"\ntoken: "+testToken+"\n"), 0o600)
	if code, _, errs := runCLI(t, nil, "status", "web", "--config", cfg); code != 0 {
		t.Fatalf("config file: exit %d %s", code, errs)
	}
	os.WriteFile(cfg, []byte("sever: typo\n"), 0o600)
	if code, _, errs := runCLI(t, nil, "status", "web", "--config", cfg); code != ExitUsage || !strings.Contains(errs, "sever") {
		t.Fatalf("typo in config: exit %d %s", code, errs)
	}
	// The httptest server is on loopback: the admin token in SHIP_DATA is used.
	data := t.TempDir()
	os.WriteFile(filepath.Join(data, "admin-token"), []byte(testToken+"\n"), 0o600)
	if code, _, errs := runCLI(t, map[string]string{"SHIP_SERVER": url, "SHIP_DATA": data}, "status", "web"); code != 0 {
		t.Fatalf("local admin token: exit %d %s", code, errs)
	}
}

func TestSplitGlobals(t *testing.T) {
	cases := []struct {
		args    []string
		server  string
		token   string
		rest    string
		wantErr bool
		help    bool
	}{
		{[]string{"apps"}, "", "", "apps", false, false},
		{[]string{"--server", "x:1", "apps"}, "x:1", "", "apps", false, false},
		{[]string{"deploy", "web", "v2", "--token=ship_a", "--canary", "1%"}, "", "ship_a", "deploy web v2 --canary 1%", false, false},
		{[]string{"deploy", "--", "--server"}, "", "", "deploy -- --server", false, false},
		{[]string{"apps", "--server"}, "", "", "", true, false},
		{[]string{"deploy", "-h"}, "", "", "deploy", false, true},
	}
	for _, c := range cases {
		g, rest, err := splitGlobals(c.args)
		if (err != nil) != c.wantErr {
			t.Errorf("%v: err %v", c.args, err)
			continue
		}
		if err == nil && (g.server != c.server || g.token != c.token || strings.Join(rest, " ") != c.rest || g.help != c.help) {
			t.Errorf("%v: got %+v %q", c.args, g, rest)
		}
	}
}

func TestProgressLines(t *testing.T) {
	st := engine.AppStatus{Weight: 1000,
		Stable:   engine.TrackView{Version: "v1", Ready: 2, Desired: 2},
		Canary:   engine.TrackView{Version: "v2", Ready: 1, Desired: 1},
		Release:  &release.Release{ID: 4, Version: "v2", State: release.Progressing, Steps: []release.Weight{100, 1000, 10000}, Step: 1},
		Analysis: &engine.Analysis{CanaryRequests: 40, CanaryErrorRate: 0.025, StableRequests: 400}}
	want := "#4 v2 progressing step 2/3 | weight 10% | canary v2 1/1 | stable v1 2/2 | errors canary 2.5% (40 req) stable 0.0% (400 req)"
	if got := statusLine(st); got != want {
		t.Errorf("statusLine:\n got %q\nwant %q", got, want)
	}
	ev := release.Event{Type: "release.step", State: release.Progressing, Step: 1, Weight: 1000, Message: "step 2 of 3", Actor: "ship"}
	if got := eventSummary(ev); got != "progressing step 2 weight 10% — step 2 of 3" {
		t.Errorf("eventSummary = %q", got)
	}
	for in, want := range map[release.Weight]string{100: "1", 50: "0.5", 1225: "12.25", 10000: "100"} {
		if pct(in) != want {
			t.Errorf("pct(%v) = %q", in, pct(in))
		}
	}
}

func TestTerminalProgressRedrawsOneStatusLine(t *testing.T) {
	// A canary that holds 50% for a second: slow enough that the 500ms
	// redraw ticks at least once.
	app := enginetest.WebApp("web")
	app.Strategy.Steps = []spec.Step{{Weight: 5000, Pause: spec.Duration(time.Second)}, {Weight: 10000}}
	e := newEngine(t, enginetest.Options{Apps: []spec.App{app}})
	e.StableAt("web", "v1")
	url := serve(t, e.Engine)
	var out, errb bytes.Buffer
	env := Env{Stdout: &out, Stderr: &errb, TTY: true, Dir: t.TempDir(), Getenv: envMap{
		"SHIP_SERVER": url, "SHIP_TOKEN": testToken, "XDG_CONFIG_HOME": t.TempDir()}.get}
	code := Run(context.Background(), []string{"deploy", "web", "v2"}, env) // a terminal waits by default
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	s := out.String()
	if !strings.Contains(s, "\r\033[K") || !strings.Contains(s, "| weight 50% | canary v2 1/1 | stable v1 2/2") {
		t.Fatalf("no redrawn status line in:\n%q", s)
	}
	if !strings.Contains(s, "release.succeeded") {
		t.Fatalf("no final event in:\n%q", s)
	}
}

type envMap map[string]string

func (m envMap) get(k string) string { return m[k] }

func TestHelpAndVersionNeedNoServer(t *testing.T) {
	cases := []struct {
		args []string
		code int
		out  string
	}{
		{[]string{"help", "deploy"}, 0, "usage: ship deploy APP VERSION"},
		{[]string{"deploy", "web", "v2", "--help"}, 0, "usage: ship deploy APP VERSION"},
		{[]string{"--help"}, 0, "ship serve"},
		{[]string{"version"}, 0, "ship "},
		{nil, ExitUsage, "commands:"},
	}
	for _, c := range cases {
		code, out, errs := runCLI(t, map[string]string{"SHIP_SERVER": "http://127.0.0.1:1"}, c.args...)
		if code != c.code || !strings.Contains(out, c.out) {
			t.Errorf("ship %v: exit %d, stdout %q, stderr %q", c.args, code, out, errs)
		}
	}
	code, _, errs := runCLI(t, nil, "deploy", "web")
	if code != ExitUsage || !strings.Contains(errs, "usage: ship deploy") {
		t.Errorf("missing version: exit %d, %q", code, errs)
	}
}

// localRuntime is the real engine as it answers Reclaim on the local
// runtime (which has no hand edits to take back).
type localRuntime struct{ *engine.Engine }

func (localRuntime) Reclaim(context.Context, engine.Actor, engine.ReclaimRequest) (engine.Reclaimed, error) {
	return engine.Reclaimed{}, engine.Errorf(engine.CodeInvalid, "reclaim is for runtimes with server-side apply; the local runtime has no hand edits")
}

func TestReclaimPrintsWhoLostWhichField(t *testing.T) {
	e := newEngine(t, enginetest.Options{})
	ctx := context.Background()
	e.StableAt("web", "v1") // production
	r, err := e.Engine.Deploy(ctx, enginetest.Admin, engine.DeployRequest{App: "web", Env: "staging", Version: "v1", Rolling: true})
	if err != nil {
		t.Fatal(err)
	}
	e.WaitState(r.ID, release.Succeeded)
	if r, err = e.Engine.Deploy(ctx, enginetest.Admin, engine.DeployRequest{App: "web", Env: "staging", Version: "v2", Canary: 1000}); err != nil {
		t.Fatal(err)
	}
	e.WaitState(r.ID, release.Paused)
	e.Runtime.HandScale("web", "staging", runtime.Canary, 3, "kubectl") // someone scaled the canary by hand
	env := map[string]string{"SHIP_SERVER": serve(t, e.Engine), "SHIP_TOKEN": testToken}

	code, out, errs := runCLI(t, env, "reclaim", "web", "--env", "staging")
	if code != ExitOK {
		t.Fatalf("exit %d\n%s\n%s", code, out, errs)
	}
	want := "reclaimed web/staging (stable v1×2, canary v2×1): taken back from \"kubectl\": canary .spec.replicas\n"
	if out != want {
		t.Errorf("stdout %q, want %q", out, want)
	}
	if got := e.Runtime.Get("web", "staging", runtime.Canary); got.Desired != 1 {
		t.Errorf("staging canary has %d instances after the reclaim, want 1", got.Desired)
	}
	code, out, _ = runCLI(t, env, "reclaim", "web", "-o", "json")
	var res engine.Reclaimed
	if code != ExitOK || json.Unmarshal([]byte(out), &res) != nil || res.Env != "production" || len(res.Tracks) != 1 || res.Tracks[0].Version != "v1" || len(res.Tracks[0].Lost) != 0 {
		t.Fatalf("json: exit %d %s", code, out)
	}
	// invalid, as every engine refusal of that code: exit 2.
	local := map[string]string{"SHIP_SERVER": serve(t, localRuntime{e.Engine}), "SHIP_TOKEN": testToken}
	code, _, errs = runCLI(t, local, "reclaim", "web")
	if code != ExitUsage || !strings.Contains(errs, "the local runtime has no hand edits") {
		t.Fatalf("local runtime: exit %d %s", code, errs)
	}
	if code, _, errs = runCLI(t, env, "reclaim"); code != ExitUsage || !strings.Contains(errs, "missing APP") {
		t.Fatalf("no app: exit %d %s", code, errs)
	}
	// What the engine recorded: alice's two reclaims.
	evs, err := e.Engine.Events(ctx, engine.System, engine.EventQuery{App: "web"})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, ev := range evs {
		if ev.Type == release.EvReclaimed {
			got = append(got, ev.App+"/"+ev.Env+" by "+ev.Actor)
		}
	}
	if strings.Join(got, ",") != "web/staging by alice,web/production by alice" {
		t.Errorf("engine recorded reclaims %v", got)
	}
}

// `ship serve --help` and `ship help serve` print serve's flags and start
// nothing (they used to start a server: splitGlobals took --help away from
// serve). The same for token.
func TestServeAndTokenHelpPrintUsageAndStartNothing(t *testing.T) {
	for _, args := range [][]string{{"serve", "--help"}, {"serve", "-h"}, {"help", "serve"}} {
		code, out, errs := runCLI(t, map[string]string{"SHIP_ADDR": "127.0.0.1:1"}, args...)
		if code != ExitOK || !strings.Contains(out, "usage: ship serve") || !strings.Contains(out, "-auth-config") || errs != "" {
			t.Errorf("ship %s: exit %d\nstdout %q\nstderr %q", strings.Join(args, " "), code, out, errs)
		}
	}
	code, out, _ := runCLI(t, nil, "help", "token")
	if code != ExitOK || !strings.Contains(out, "ship token create NAME --role ROLE") {
		t.Errorf("ship help token: exit %d\n%s", code, out)
	}
}
