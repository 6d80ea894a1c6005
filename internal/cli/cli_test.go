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
	"github.com/shipteam/ship/internal/release"
)

// fakeEngine plays a scripted release: Deploy returns it pending, then the
// script publishes its events and updates its state.
type fakeEngine struct {
	api.Engine // methods a test does not need panic (nil)
	mu         sync.Mutex
	rel        release.Release
	events     []release.Event
	subs       []chan release.Event
	script     []release.Event // played after Deploy
	deployErr  error
	status     engine.AppStatus
	// weightLag is how long after a paused event the router has its
	// weight, as the engine records "paused" before it sets the weight.
	weightLag time.Duration
	inForce   release.Weight // the router's weight for the scripted release
	inForceAt time.Time      // when it was set
}

func (f *fakeEngine) Deploy(_ context.Context, a engine.Actor, req engine.DeployRequest) (release.Release, error) {
	if f.deployErr != nil {
		return release.Release{}, f.deployErr
	}
	f.mu.Lock()
	f.rel = release.Release{ID: 7, App: req.App, Env: "production", Version: req.Version, HoldAt: req.Canary,
		Steps: req.Steps, State: release.Pending, Actor: a.Name, Source: a.Source}
	rel := f.rel
	f.mu.Unlock()
	go func() {
		for _, ev := range f.script {
			time.Sleep(10 * time.Millisecond)
			f.publish(ev)
		}
	}()
	return rel, nil
}

func (f *fakeEngine) publish(ev release.Event) {
	f.mu.Lock()
	defer f.mu.Unlock()
	ev.ID = int64(len(f.events) + 1)
	ev.ReleaseID = f.rel.ID
	ev.Time = time.Date(2026, 11, 25, 13, 0, 0, 0, time.Local)
	if ev.State != "" {
		f.rel.State = ev.State
		f.rel.Weight = ev.Weight
		f.rel.Reason = ev.Message
	}
	if ev.State == release.Paused {
		w := ev.Weight
		time.AfterFunc(f.weightLag, func() {
			f.mu.Lock()
			f.inForce, f.inForceAt = w, time.Now()
			f.mu.Unlock()
			// As the engine does once the router has the weight.
			f.publish(release.Event{Type: release.EvWeight, Weight: w, Data: &release.EventData{Asked: w, InForce: &w}})
		})
	}
	f.events = append(f.events, ev)
	for _, ch := range f.subs {
		ch <- ev
	}
	if ev.State.Terminal() {
		// As the engine does once the canary's weight is 0 again.
		var zero release.Weight
		f.mu.Unlock()
		f.publish(release.Event{Type: release.EvWeight, Data: &release.EventData{InForce: &zero}})
		f.mu.Lock()
	}
}

func (f *fakeEngine) Release(_ context.Context, _ engine.Actor, id int64) (release.Release, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if id != f.rel.ID {
		return release.Release{}, engine.Errorf(engine.CodeNotFound, "no release %d", id)
	}
	return f.rel, nil
}

func (f *fakeEngine) Events(_ context.Context, _ engine.Actor, q engine.EventQuery) ([]release.Event, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []release.Event
	for _, ev := range f.events {
		if ev.ID > q.AfterID {
			out = append(out, ev)
		}
	}
	return out, nil
}

func (f *fakeEngine) ReadFilter(engine.Actor) func(context.Context, release.Event) bool {
	return func(context.Context, release.Event) bool { return true }
}

func (f *fakeEngine) Subscribe() (<-chan release.Event, func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	ch := make(chan release.Event, 100)
	f.subs = append(f.subs, ch)
	return ch, func() {}
}

func (f *fakeEngine) Status(_ context.Context, _ engine.Actor, app, env string) (engine.AppStatus, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.status.App == "" && f.rel.ID != 0 && app == f.rel.App {
		// No status scripted: the release's, with the router's weight.
		st, r := f.status, f.rel
		st.App, st.Env, st.Weight, st.Release = r.App, r.Env, f.inForce, &r
		return st, nil
	}
	if app != f.status.App {
		return engine.AppStatus{}, engine.Errorf(engine.CodeNotFound, "unknown app %q", app)
	}
	st := f.status
	if f.rel.ID != 0 && f.rel.State.Terminal() {
		st.Weight = 0 // a release that ended leaves the canary no traffic
	}
	return st, nil
}

type tokens map[string]string

func (t tokens) TokenOwner(_ context.Context, h []byte) (api.TokenOwner, error) {
	if u, ok := t[string(h)]; ok {
		return api.TokenOwner{Name: u, Role: "maintainer"}, nil
	}
	return api.TokenOwner{}, api.ErrUnknownToken
}

const testToken = "ship_test-token"

func serve(t *testing.T, eng *fakeEngine) string {
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
	eng := &fakeEngine{script: []release.Event{
		{Type: "release.step", State: release.Progressing, Weight: 2000, Message: "step 1 of 2"},
		{Type: "release.analysis", State: release.Progressing, Weight: 2000, Message: "fail: canary error rate 50.0%"},
		{Type: "release.aborted", State: release.Aborted, Message: "analysis failed: canary error rate 50.0%"},
	}}
	url := serve(t, eng)
	code, out, errs := runCLI(t, map[string]string{"SHIP_SERVER": url, "SHIP_TOKEN": testToken},
		"deploy", "web", "v2-fail50", "--steps", "20,100", "--wait")
	if code != ExitFailed {
		t.Fatalf("exit %d\n%s\n%s", code, out, errs)
	}
	for _, want := range []string{"release 7: deploying web v2-fail50", "release.step", "weight 20%", "release.aborted"} {
		if !strings.Contains(out, want) {
			t.Errorf("stdout lacks %q:\n%s", want, out)
		}
	}
	if !strings.Contains(errs, "aborted: analysis failed: canary error rate 50.0%") {
		t.Errorf("stderr lacks the reason:\n%s", errs)
	}
	if strings.Contains(out, "\r") || strings.Contains(out, "\033[") {
		t.Error("plain output has terminal control characters")
	}
}

func TestDeployCanaryHoldExitsZeroOncePaused(t *testing.T) {
	eng := &fakeEngine{script: []release.Event{
		{Type: "release.paused", State: release.Paused, Weight: 100, Message: "holding 1%"},
	}}
	url := serve(t, eng)
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

func TestDeployCanaryHoldWaitsForTheWeightInForce(t *testing.T) {
	eng := &fakeEngine{weightLag: 300 * time.Millisecond, script: []release.Event{
		{Type: "release.paused", State: release.Paused, Weight: 100, Message: "holding 1%"},
	}}
	url := serve(t, eng)
	code, out, errs := runCLI(t, map[string]string{"SHIP_SERVER": url, "SHIP_TOKEN": testToken},
		"deploy", "web", "v2", "--canary", "1%", "--wait")
	returned := time.Now()
	if code != ExitOK {
		t.Fatalf("exit %d\n%s\n%s", code, out, errs)
	}
	eng.mu.Lock()
	at := eng.inForceAt
	eng.mu.Unlock()
	if at.IsZero() || returned.Before(at) {
		t.Fatalf("deploy --canary --wait returned before the router had the weight (set at %v, returned %v)", at, returned)
	}
}

func TestDeployWithoutWaitReturnsAtOnceInScripts(t *testing.T) {
	eng := &fakeEngine{} // no script: the release would never settle
	url := serve(t, eng)
	code, out, _ := runCLI(t, map[string]string{"SHIP_SERVER": url, "SHIP_TOKEN": testToken}, "deploy", "web", "v2")
	if code != ExitOK || !strings.Contains(out, "release 7") {
		t.Fatalf("exit %d: %s", code, out)
	}
}

func TestExitCodes(t *testing.T) {
	eng := &fakeEngine{status: engine.AppStatus{App: "web", Env: "production", Endpoint: "127.0.0.1:8080"}}
	url := serve(t, eng)
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
	want := engine.AppStatus{App: "web", Env: "production", Endpoint: "127.0.0.1:8080", Weight: 100,
		Stable: engine.TrackView{Version: "v1", Ready: 2, Desired: 2}, Canary: engine.TrackView{Version: "v2", Ready: 1, Desired: 1},
		Release: &release.Release{ID: 3, Version: "v2", State: release.Paused}}
	url := serve(t, &fakeEngine{status: want})
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
	st := engine.AppStatus{App: "web", Env: "production", Endpoint: "web.ship-production.svc:80", Weight: 2000, WeightAsked: 100,
		Stable: engine.TrackView{Version: "v1", Ready: 4, Desired: 4}, Canary: engine.TrackView{Version: "v2", Ready: 1, Desired: 1},
		Release: &release.Release{ID: 3, Version: "v2", State: release.Paused, Steps: []release.Weight{100}, Weight: 100},
		Note:    "canary: weight 1% asked, 20% given by replica counts (1 canary of 5 instances; no gateway)"}
	url := serve(t, &fakeEngine{status: st})
	code, out, errs := runCLI(t, map[string]string{"SHIP_SERVER": url, "SHIP_TOKEN": testToken}, "status", "web")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	for _, w := range []string{"canary  v2  1/1 ready  weight 20% (1% asked)\n", "note: canary: weight 1% asked, 20% given by replica counts"} {
		if !strings.Contains(out, w) {
			t.Errorf("status output lacks %q:\n%s", w, out)
		}
	}
	if got := statusLine(st); !strings.Contains(got, "| weight 20% (1% asked) |") {
		t.Errorf("statusLine %q", got)
	}
	st.WeightAsked = 0
	if got := statusLine(st); !strings.Contains(got, "| weight 20% |") {
		t.Errorf("statusLine without a rounded weight %q", got)
	}
}

func TestConfigFileAndLocalTokenFallback(t *testing.T) {
	eng := &fakeEngine{status: engine.AppStatus{App: "web"}}
	url := serve(t, eng)
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
	eng := &fakeEngine{
		status: engine.AppStatus{App: "web", Weight: 5000,
			Stable: engine.TrackView{Version: "v1", Ready: 2, Desired: 2}, Canary: engine.TrackView{Version: "v2", Ready: 1, Desired: 1}},
	}
	// Slow enough that the 500ms redraw ticks at least once.
	eng.script = []release.Event{{Type: "release.step", State: release.Progressing, Weight: 5000}}
	for range 60 {
		eng.script = append(eng.script, release.Event{Type: "release.analysis", State: release.Progressing, Weight: 5000})
	}
	eng.script = append(eng.script, release.Event{Type: "release.succeeded", State: release.Succeeded, Message: "v2 is stable"})
	url := serve(t, eng)
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

// reclaimEngine answers Reclaim as the engine does on Kubernetes after a
// hand edit, and as it does on the local runtime (app "local").
type reclaimEngine struct {
	fakeEngine
	got []string // app/env of each call
}

func (f *reclaimEngine) Reclaim(_ context.Context, a engine.Actor, req engine.ReclaimRequest) (engine.Reclaimed, error) {
	app, env := req.App, req.Env
	f.got = append(f.got, app+"/"+env+" by "+a.Name)
	if app == "local" {
		return engine.Reclaimed{}, engine.Errorf(engine.CodeInvalid, "reclaim is for runtimes with server-side apply; the local runtime has no hand edits")
	}
	return engine.Reclaimed{App: app, Env: "staging", Release: 9, Tracks: []engine.ReclaimedTrack{
		{Track: "stable", Version: "v1", Replicas: 2},
		{Track: "canary", Version: "v2", Replicas: 1, Lost: []string{`"kubectl": deployment web-canary .spec.replicas`}},
	}}, nil
}

func TestReclaimPrintsWhoLostWhichField(t *testing.T) {
	eng := &reclaimEngine{}
	s, err := api.New(api.Config{Engine: eng, Tokens: tokens{string(api.HashToken(testToken)): "alice"}})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close)
	env := map[string]string{"SHIP_SERVER": srv.URL, "SHIP_TOKEN": testToken}

	code, out, errs := runCLI(t, env, "reclaim", "web", "--env", "staging")
	if code != ExitOK {
		t.Fatalf("exit %d\n%s\n%s", code, out, errs)
	}
	want := "reclaimed web/staging (stable v1×2, canary v2×1): taken back from \"kubectl\": deployment web-canary .spec.replicas\n"
	if out != want {
		t.Errorf("stdout %q, want %q", out, want)
	}
	code, out, _ = runCLI(t, env, "reclaim", "web", "-o", "json")
	var res engine.Reclaimed
	if code != ExitOK || json.Unmarshal([]byte(out), &res) != nil || res.Release != 9 || len(res.Tracks) != 2 || res.Tracks[1].Lost[0] != `"kubectl": deployment web-canary .spec.replicas` {
		t.Fatalf("json: exit %d %s", code, out)
	}
	// invalid, as every engine refusal of that code: exit 2.
	code, _, errs = runCLI(t, env, "reclaim", "local")
	if code != ExitUsage || !strings.Contains(errs, "the local runtime has no hand edits") {
		t.Fatalf("local runtime: exit %d %s", code, errs)
	}
	if code, _, errs = runCLI(t, env, "reclaim"); code != ExitUsage || !strings.Contains(errs, "missing APP") {
		t.Fatalf("no app: exit %d %s", code, errs)
	}
	if got := strings.Join(eng.got, ","); got != "web/staging by alice,web/ by alice,local/ by alice" {
		t.Errorf("engine calls %s", got)
	}
}
