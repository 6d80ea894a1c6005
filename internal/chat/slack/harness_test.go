package slack

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shipteam/ship/internal/authz"
	"github.com/shipteam/ship/internal/chat/slack/slacktest"
	"github.com/shipteam/ship/internal/engine"
	"github.com/shipteam/ship/internal/enginetest"
	"github.com/shipteam/ship/internal/eventually"
	"github.com/shipteam/ship/internal/release"
	"github.com/shipteam/ship/internal/spec"
)

const (
	testSecret  = "test-signing-secret-0123456789"
	testChannel = "CDEPLOYS"
)

// syncBuffer is a goroutine-safe log sink.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// harness runs a Bot against the fake Slack and a real engine, on loopback.
// Permissions are the engine's: the config's old-form grants are folded
// into an authz policy as ship serve does, with the bot resolving groups.
type harness struct {
	policy  *authz.Policy
	cfg     Config
	t       *testing.T
	slack   *slacktest.Server
	te      *testEngine
	eng     Engine // what the bot calls: te's engine, watched, Status slowed by te.delay
	bot     *Bot
	srv     *httptest.Server
	logs    *syncBuffer
	now     atomic.Pointer[time.Time]
	nResp   atomic.Int64
	stopRun func()
	baseID  int64 // the engine's last event when the bot subscribed
}

// testEngine is the real engine the bot's tests drive (internal/enginetest):
// apps resizer and thumbs in production, each running 3 instances of v1
// (releases #1 and #2, by enginetest.Admin), with healthy traffic. Its
// authorizer asks the policy of the last harness built on it, as ship
// serve wires authz into the engine; before any, everything is allowed.
type testEngine struct {
	*enginetest.Env
	watched *enginetest.Watched
	policy  atomic.Pointer[authz.Policy]
	delay   atomic.Int64 // when set, Status takes this long (an engine under load)
}

// firstID is the id of the first release a test makes (after the seeds).
const firstID = 3

// slackApp is a web app as the bot's tests know it: production only, 3
// stable instances.
func slackApp(name string) spec.App {
	a := enginetest.WebApp(name)
	a.Replicas, a.Environments = 3, []string{"production"}
	return a
}

// newTestEngine builds a running engine; stepped builds one the test steps
// (te.Step) instead.
func newTestEngine(t testing.TB, stepped bool) *testEngine {
	t.Helper()
	te := &testEngine{}
	te.Env = enginetest.New(t, enginetest.Options{
		Apps: []spec.App{slackApp("resizer"), slackApp("thumbs")}, Traffic: 1000, Stepped: stepped,
		Authorize: func(ctx context.Context, a engine.Actor, act engine.Action, app, env string) error {
			p := te.policy.Load()
			if p == nil {
				return nil
			}
			return authorizer(p)(ctx, a, act, app, env)
		},
	})
	te.watched = enginetest.Watch(te.Engine)
	te.StableAt("resizer", "v1")
	te.StableAt("thumbs", "v1")
	return te
}

// slowStatus is the engine whose Status takes *delay (an engine under load).
type slowStatus struct {
	*enginetest.Watched
	delay *atomic.Int64
}

func (s slowStatus) Status(ctx context.Context, a engine.Actor, app, env string) (engine.AppStatus, error) {
	if d := time.Duration(s.delay.Load()); d > 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
			return engine.AppStatus{}, ctx.Err()
		}
	}
	return s.Watched.Status(ctx, a, app, env)
}

// calls lists what the engine recorded as done by the tests' users (not
// the seeding admin, not ship itself), as "verb app env actor", in order:
// deploys and rollbacks (release.created), promotes, aborts, scales,
// locks, unlocks and reclaims. Refusals are not calls.
func (te *testEngine) calls(t *testing.T) []string {
	t.Helper()
	ctx := context.Background()
	evs, err := te.Engine.Events(ctx, engine.System, engine.EventQuery{Limit: 100000})
	if err != nil {
		t.Fatal(err)
	}
	verbs := map[release.EventType]string{
		release.EvPromoting: "promote", release.EvAborted: "abort", release.EvScaled: "scale", release.EvLocked: "lock",
		release.EvUnlocked: "unlock", release.EvReclaimed: "reclaim",
	}
	var out []string
	for _, ev := range evs {
		if ev.Actor == "" || ev.Actor == "ship" || ev.Actor == enginetest.Admin.Name || ev.Type == release.EvDenied {
			continue
		}
		verb, ok := verbs[ev.Type]
		if ev.Type == release.EvCreated {
			verb, ok = "deploy", true
			if te.Release(ev.ReleaseID).Kind == release.KindRollback {
				verb = "rollback"
			}
		}
		if !ok {
			verb = "other:" + string(ev.Type)
		}
		out = append(out, fmt.Sprintf("%s %s %s %s", verb, ev.App, ev.Env, ev.Actor))
	}
	return out
}

// stepTo steps a stepped engine until release id (which the bot may not
// have made yet) is progressing at step (0-based); it fails if the release
// ends or passes step first.
func (h *harness) stepTo(id int64, step int) {
	h.t.Helper()
	h.stepUntil(id, fmt.Sprintf("progressing at step %d", step), func(r release.Release) bool {
		if r.State.Terminal() || r.Step > step {
			h.t.Fatalf("release #%d is %s at step %d (%s), want progressing at step %d", id, r.State, r.Step, r.Reason, step)
		}
		return r.State == release.Progressing && r.Step == step
	})
}

// stepUntil steps a stepped engine, one step at a time so that no state is
// skipped, until release id (which the bot may not have made yet) is done.
//
// Before each step it waits until the bot has taken every event stored
// since it subscribed and its entry for the release is clean:
// notifier.sync reads the release before it clears the entry's dirty flag,
// so an event stored in between is marked and then unmarked, and its update
// is lost until the next event. A running engine hides that with more
// events; a stepped one goes quiet and the test would wait for nothing.
func (h *harness) stepUntil(id int64, what string, done func(release.Release) bool) {
	h.t.Helper()
	eventually.True(h.t, 10*time.Second, fmt.Sprintf("release #%d made", id), func() bool {
		_, err := h.te.Engine.Release(context.Background(), engine.System, id)
		return err == nil
	})
	n := h.bot.notifier
	for range 100 {
		if done(h.te.Release(id)) {
			return
		}
		eventually.True(h.t, 10*time.Second, fmt.Sprintf("the bot's message of release #%d up to date", id), func() bool {
			if n.observed.Load() != h.te.lastEventID(h.t)-h.baseID {
				return false
			}
			n.mu.Lock()
			defer n.mu.Unlock()
			t, ok := n.items[id]
			return !ok || !t.dirty
		})
		h.te.Step(time.Second)
	}
	h.t.Fatalf("release #%d not %s after 100 steps", id, what)
}

// waitSubscribed waits until n bots follow the engine's events.
func (te *testEngine) waitSubscribed(t *testing.T, n int) {
	t.Helper()
	eventually.True(t, 10*time.Second, fmt.Sprintf("%d engine subscribers", n), func() bool { return te.watched.Subscribers() == n })
}

// defaultGrants: alice deploys anything, bob only aborts, group SOPS operates resizer.
func defaultGrants() []Grant {
	return []Grant{
		{Apps: []string{"*"}, Envs: []string{"*"}, Role: "deployer", Users: []string{"UALICE"}},
		{Apps: []string{"resizer"}, Envs: []string{"production"}, Role: "responder", Users: []string{"UBOB"}},
		{Apps: []string{"resizer"}, Envs: []string{"*"}, Role: "operator", Groups: []string{"SOPS"}},
	}
}

func newHarness(t *testing.T, te *testEngine, mod func(*Config), opts ...Option) *harness {
	t.Helper()
	sl := slacktest.NewServer()
	t.Cleanup(sl.Close)
	return newHarnessOn(t, sl, te, mod, opts...)
}

// newHarnessOn is newHarness against a given fake Slack (one Slack seen by
// two ship processes in turn). te nil: a new running testEngine.
func newHarnessOn(t *testing.T, sl *slacktest.Server, te *testEngine, mod func(*Config), opts ...Option) *harness {
	t.Helper()
	h := &harness{t: t, slack: sl, logs: &syncBuffer{}}
	h.slack.SetGroup("SOPS", "UOLGA")
	if te == nil {
		te = newTestEngine(t, false)
	}
	h.te = te
	h.eng = slowStatus{te.watched, &te.delay}
	start := time.Now()
	h.now.Store(&start)
	cfg := Config{
		SigningSecret:     testSecret,
		BotToken:          "xoxb-test",
		APIURL:            h.slack.APIURL(),
		Apps:              map[string]AppConfig{"resizer": {Channel: testChannel}},
		Grants:            defaultGrants(),
		MinUpdateInterval: time.Nanosecond,
		Now:               func() time.Time { return *h.now.Load() },
	}
	if mod != nil {
		mod(&cfg)
	}
	h.cfg = cfg
	logger := slog.New(slog.NewTextHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	bot, err := New(cfg, h.eng, logger, opts...)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	h.bot = bot
	h.policy = testPolicy(t, cfg)
	h.policy.SetGroups(authz.KindSlack, bot.Groups())
	te.policy.Store(h.policy)
	h.srv = httptest.NewServer(bot.Handler())
	t.Cleanup(h.srv.Close)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	subs := te.watched.Subscribers()
	go func() { done <- bot.Run(ctx) }()
	var stopOnce sync.Once
	h.stopRun = func() {
		stopOnce.Do(func() {
			cancel()
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				t.Errorf("Bot.Run did not stop within 10s")
			}
		})
	}
	t.Cleanup(h.stopRun)
	te.waitSubscribed(t, subs+1)
	h.baseID = te.lastEventID(t)
	return h
}

// lastEventID is the id of the last event the engine stored.
func (te *testEngine) lastEventID(t testing.TB) int64 {
	t.Helper()
	evs, err := te.Engine.Events(context.Background(), engine.System, engine.EventQuery{Limit: 100000})
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) == 0 {
		return 0
	}
	return evs[len(evs)-1].ID
}

// testPolicy folds cfg's old-form roles and grants into a policy, as ship
// serve does, plus grants in the new form.
func testPolicy(t testing.TB, cfg Config, extra ...authz.Grant) *authz.Policy {
	t.Helper()
	var old []authz.SlackGrant
	for _, g := range cfg.Grants {
		old = append(old, authz.SlackGrant{Apps: g.Apps, Envs: g.Envs, Role: g.Role, Users: g.Users, Groups: g.Groups})
	}
	c, _, err := authz.FoldSlack(authz.Config{Grants: extra}, cfg.Roles, old, "slack.yaml")
	if err != nil {
		t.Fatal(err)
	}
	p, err := authz.New(c)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// authorizer is the engine's Authorize over a policy (as server.Authorizer).
func authorizer(p *authz.Policy) func(ctx context.Context, a engine.Actor, act engine.Action, app, env string) error {
	return func(ctx context.Context, a engine.Actor, act engine.Action, app, env string) error {
		action, _ := authz.ParseAction(string(act))
		return p.Check(ctx, authz.Request{Who: authz.Identity(a.ID), Role: a.Role, Action: action, App: app, Env: env})
	}
}

// grant replaces the harness policy by the config's grants plus extra
// (new form).
func (h *harness) grant(extra ...authz.Grant) {
	h.policy = testPolicy(h.t, h.cfg, extra...)
	h.policy.SetGroups(authz.KindSlack, h.bot.Groups())
	h.te.policy.Store(h.policy)
}

func (h *harness) advance(d time.Duration) {
	n := h.now.Load().Add(d)
	h.now.Store(&n)
}

// post sends a signed form to path, signed at the harness clock.
func (h *harness) post(path string, form url.Values) (int, []byte) {
	h.t.Helper()
	body := form.Encode()
	ts := strconv.FormatInt(h.now.Load().Unix(), 10)
	req, _ := http.NewRequest(http.MethodPost, h.srv.URL+path, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("X-Slack-Request-Timestamp", ts)
	req.Header.Set("X-Slack-Signature", SignatureHeader(testSecret, ts, []byte(body)))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		h.t.Fatalf("POST %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

type user struct{ id, name string }

var (
	alice   = user{"UALICE", "alice"}
	bob     = user{"UBOB", "bob"}
	mallory = user{"UMALLORY", "mallory"}
	olga    = user{"UOLGA", "olga"} // in group SOPS
)

// slash runs a slash command and returns the HTTP status, the reply and
// the response_url it was given.
func (h *harness) slash(u user, channel, cmd, text string) (int, message, string) {
	h.t.Helper()
	respURL := h.slack.ResponseURL(fmt.Sprintf("cmd-%d", h.nResp.Add(1)))
	form := url.Values{
		"token": {"ignored"}, "team_id": {"T1"}, "team_domain": {"ship"},
		"channel_id": {channel}, "channel_name": {"deploys"},
		"user_id": {u.id}, "user_name": {u.name},
		"command": {cmd}, "text": {text},
		"response_url": {respURL}, "trigger_id": {"1.2.3"},
	}
	code, body := h.post("/slack/commands", form)
	var m message
	if code == http.StatusOK {
		if err := json.Unmarshal(body, &m); err != nil {
			h.t.Fatalf("reply is not JSON: %v: %s", err, body)
		}
	}
	return code, m, respURL
}

// press presses a button of release id as Slack would post it.
func (h *harness) press(u user, channel, action, app, env string, id int64) (int, string) {
	h.t.Helper()
	respURL := h.slack.ResponseURL(fmt.Sprintf("press-%d", h.nResp.Add(1)))
	form := url.Values{"payload": {pressPayload(u, channel, action, buttonValue{App: app, Env: env, Release: id}.encode(), respURL)}}
	code, _ := h.post("/slack/interactions", form)
	return code, respURL
}

func pressPayload(u user, channel, action, value, respURL string) string {
	p := map[string]any{
		"type":         "block_actions",
		"user":         map[string]any{"id": u.id, "username": u.name, "name": u.name, "team_id": "T1"},
		"api_app_id":   "A1",
		"token":        "ignored",
		"container":    map[string]any{"type": "message", "message_ts": "1764072000.000001", "channel_id": channel},
		"trigger_id":   "1.2.3",
		"team":         map[string]any{"id": "T1", "domain": "ship"},
		"channel":      map[string]any{"id": channel, "name": "deploys"},
		"response_url": respURL,
		"actions": []map[string]any{{
			"action_id": action, "block_id": "ship_release", "value": value,
			"type": "button", "action_ts": "1764072001.000001",
			"text": map[string]any{"type": "plain_text", "text": "x"},
		}},
	}
	b, _ := json.Marshal(p)
	return string(b)
}

func (h *harness) waitCalls(what string, cond func([]slacktest.Call) bool) []slacktest.Call {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := h.slack.WaitFor(ctx, cond); err != nil {
		h.t.Fatalf("%s: %v\ncalls: %s\nlogs:\n%s", what, err, dumpCalls(h.slack.Calls("")), h.logs.String())
	}
	return h.slack.Calls("")
}

func dumpCalls(cs []slacktest.Call) string {
	var b strings.Builder
	for _, c := range cs {
		fmt.Fprintf(&b, "\n  %s %s %d %q", c.Method, c.Path, c.Status, c.Text())
	}
	return b.String()
}

// responses returns what was posted to one response_url.
func responsesTo(calls []slacktest.Call, respURL string) []slacktest.Call {
	u, _ := url.Parse(respURL)
	var out []slacktest.Call
	for _, c := range calls {
		if c.Method == "response_url" && c.Path == u.Path {
			out = append(out, c)
		}
	}
	return out
}

func hasText(calls []slacktest.Call, method, substr string) bool {
	for _, c := range calls {
		if (method == "" || c.Method == method) && strings.Contains(c.Text(), substr) {
			return true
		}
	}
	return false
}

func count(calls []slacktest.Call, method string) int {
	n := 0
	for _, c := range calls {
		if c.Method == method {
			n++
		}
	}
	return n
}

// lastMessage returns the last chat.postMessage/chat.update in channel.
func lastMessage(calls []slacktest.Call, channel string) (slacktest.Call, bool) {
	for i := len(calls) - 1; i >= 0; i-- {
		c := calls[i]
		if (c.Method == "chat.postMessage" || c.Method == "chat.update") && c.Form.Get("channel") == channel && c.Status == http.StatusOK {
			return c, true
		}
	}
	return slacktest.Call{}, false
}

type slackCall = slacktest.Call

func (u user) actorForTest() engine.Actor {
	return chatUser{id: u.id, name: u.name}.actor()
}

func deployReq(app, version string) engine.DeployRequest {
	return engine.DeployRequest{App: app, Version: version, Canary: 100}
}

func copyN(w io.Writer, resp *http.Response) (int64, error) {
	return io.Copy(w, io.LimitReader(resp.Body, 1<<20))
}

func jsonUnmarshal(s string, v any) error { return json.Unmarshal([]byte(s), v) }

// engineActor is a token user as the API builds it (an admin: the tests
// using it drive the engine from "the CLI").
func engineActor(name, source string) engine.Actor {
	return engine.Actor{ID: "token:" + name, Name: name, Source: release.Source(source), Role: "admin"}
}
