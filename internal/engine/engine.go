// Package engine drives releases: it checks locks and conflicts, records
// every transition in the store before acting on it, and moves each active
// release one step per tick toward what its stored state asks for, through
// the Runtime (instances) and the Router (traffic split), judging the canary
// with analysis. It is level-triggered and every call it makes is
// idempotent, so an engine started on the same store after a crash simply
// continues. It must not parse commands, talk HTTP or know which runtime
// adapter it drives. docs/engine.md describes the states and deadlines.
package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/shipteam/ship/internal/analysis"
	"github.com/shipteam/ship/internal/release"
	"github.com/shipteam/ship/internal/runtime"
	"github.com/shipteam/ship/internal/spec"
)

// Catalog gives the specs of the apps ship knows (*spec.Catalog).
type Catalog interface {
	Get(name string) (spec.App, bool)
	All() []spec.App
}

// Store is what the engine keeps its state in (*store.Store; the engine
// speaks only the vocabulary's types to it and never imports the store).
type Store interface {
	CreateRelease(ctx context.Context, r release.Release, st *release.AppState, evs ...release.Event) (release.Release, []release.Event, error)
	UpdateRelease(ctx context.Context, r release.Release, st *release.AppState, evs ...release.Event) ([]release.Event, error)
	GetRelease(ctx context.Context, id int64) (release.Release, error)
	ActiveRelease(ctx context.Context, app, env string) (release.Release, error)
	ActiveReleases(ctx context.Context) ([]release.Release, error)
	LatestRelease(ctx context.Context, app, env string) (release.Release, error)
	Releases(ctx context.Context, app, env string, limit int) ([]release.Release, error)
	LastSucceeded(ctx context.Context, app, env, version, exceptVersion string) (release.Release, error)
	AddEvents(ctx context.Context, st *release.AppState, evs ...release.Event) ([]release.Event, error)
	Events(ctx context.Context, q release.EventQuery) ([]release.Event, error)
	LastEvent(ctx context.Context, releaseID int64, typ release.EventType) (release.Event, error)
	AppState(ctx context.Context, app, env string) (release.AppState, error)
	AppStates(ctx context.Context) ([]release.AppState, error)
	PutLock(ctx context.Context, l release.Lock, ev release.Event) (release.Event, error)
	DeleteLock(ctx context.Context, app, env string, ev release.Event) (release.Event, error)
	GetLock(ctx context.Context, app, env string) (release.Lock, error)
}

// Clock is the engine's only source of time, so tests step it.
type Clock interface {
	Now() time.Time
	After(d time.Duration) <-chan time.Time
}

type realClock struct{}

func (realClock) Now() time.Time                         { return time.Now() }
func (realClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// Config holds the engine's parts and knobs.
type Config struct {
	Store   Store
	Apps    Catalog
	Runtime runtime.Runtime
	Router  runtime.Router
	Metrics analysis.Source
	Logs    runtime.LogReader // optional: Logs answers invalid without it
	Clock   Clock             // default: the real clock
	Logger  *slog.Logger      // default: discard
	// Tick is how often active releases are stepped; at most 250ms so a
	// failing canary is off within 2 s of the evidence. Default 100ms.
	Tick time.Duration
	// HoldTimeout bounds a --canary hold (paused state). Default 24h.
	HoldTimeout time.Duration
	// Parallel bounds how many releases are stepped at once. Default 8.
	Parallel int
	// LookEvery is how often an app without a release is looked at again
	// once it runs what its state says, for changes made outside ship (a
	// hand-edited Deployment: reported as app.conflict). Default 5s;
	// negative: never (the local runtime, which nobody else changes).
	LookEvery time.Duration
	// Authorize, when set, is asked before every command and every read
	// of one app in one environment (after the environment is resolved);
	// an error refuses it. A plain error's text is the sentence the user
	// sees; the refusal is recorded as an access.denied event. Front ends
	// only say who asks (Actor.ID); internal/authz decides. nil allows
	// everything.
	Authorize func(ctx context.Context, a Actor, act Action, app, env string) error
}

// Action names a command for Authorize.
type Action string

const (
	ActDeploy   Action = "deploy"
	ActPromote  Action = "promote"
	ActAbort    Action = "abort"
	ActRollback Action = "rollback"
	ActScale    Action = "scale"
	ActReclaim  Action = "reclaim"
	ActLock     Action = "lock"
	ActUnlock   Action = "unlock"
	ActRead     Action = "read" // status, history, events, releases, logs
)

// EventDenied is the type of the event a refused command or read records.
const EventDenied = release.EvDenied

// authorize asks cfg.Authorize, if any, whether a may do act on app in
// env. A refusal is recorded (stored, published, logged) as an
// access.denied event whose message is the refusal's sentence.
func (e *Engine) authorize(ctx context.Context, a Actor, act Action, app, env string) error {
	err := e.check(ctx, a, act, app, env)
	if err == nil {
		return nil
	}
	var ee *Error
	if !errors.As(err, &ee) {
		// The authorizer's text is the sentence the user sees; what it
		// wraps (a failed group lookup) is for the log only.
		if detail := errors.Unwrap(err); detail != nil {
			e.log.Warn("authorizer could not decide", "app", app, "env", env, "identity", a.ID, "err", detail)
		}
		ee = &Error{Code: CodeDenied, Message: err.Error()}
		err = ee
	}
	if ee.Code == CodeDenied {
		e.recordDenial(ctx, a, act, app, env, ee.Message)
	}
	return err
}

// Allowed resolves app's environment (env "" is its first) and asks the
// authorizer whether a may do act there, recording a refusal as the
// command would. A front end that answers "on it" before the work is done
// (chat) uses it to refuse at once; the command is authorized again when
// it runs. It returns the environment.
func (e *Engine) Allowed(ctx context.Context, a Actor, act Action, app, env string) (string, error) {
	sa, env, err := e.resolve(app, env)
	if err != nil {
		return "", err
	}
	return env, e.authorize(ctx, a, act, sa.Name, env)
}

// check is authorize without recording: for filtering what a list shows.
func (e *Engine) check(ctx context.Context, a Actor, act Action, app, env string) error {
	if a.ID == System.ID {
		if act == ActRead {
			return nil
		}
		return Errorf(CodeDenied, "ship's own helpers may only read")
	}
	if e.cfg.Authorize == nil {
		return nil
	}
	return e.cfg.Authorize(ctx, a, act, app, env)
}

func (e *Engine) recordDenial(ctx context.Context, a Actor, act Action, app, env, msg string) {
	e.log.Warn("access denied", "app", app, "env", env, "actor", a.Name, "identity", a.ID, "action", string(act), "why", msg)
	ev := release.Event{App: app, Env: env, Type: release.EvDenied, Actor: a.Name, Time: e.now(), Message: msg,
		Data: &release.EventData{Action: string(act), Identity: a.ID, Source: a.Source}}
	// The denial is recorded even when the caller has gone.
	evs, err := e.cfg.Store.AddEvents(context.WithoutCancel(ctx), nil, ev)
	if err != nil {
		e.log.Error("record access.denied", "app", app, "env", env, "err", err)
		return
	}
	e.publish(evs)
}

func (c *Config) setDefaults() {
	if c.Clock == nil {
		c.Clock = realClock{}
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Tick == 0 {
		c.Tick = 100 * time.Millisecond
	}
	if c.HoldTimeout == 0 {
		c.HoldTimeout = 24 * time.Hour
	}
	if c.Parallel == 0 {
		c.Parallel = 8
	}
	if c.LookEvery == 0 {
		c.LookEvery = 5 * time.Second
	}
}

// Validate reports every problem of the config at once.
func (c Config) Validate() error {
	var errs []error
	if c.Store == nil {
		errs = append(errs, errors.New("engine: Store is required"))
	}
	if c.Apps == nil {
		errs = append(errs, errors.New("engine: Apps is required"))
	}
	if c.Runtime == nil {
		errs = append(errs, errors.New("engine: Runtime is required"))
	}
	if c.Router == nil {
		errs = append(errs, errors.New("engine: Router is required"))
	}
	if c.Metrics == nil {
		errs = append(errs, errors.New("engine: Metrics is required"))
	}
	if c.Tick < 0 || c.Tick > 250*time.Millisecond {
		errs = append(errs, fmt.Errorf("engine: Tick %s must be in (0, 250ms] so a bad canary is off within 2s", c.Tick))
	}
	if c.HoldTimeout < 0 {
		errs = append(errs, fmt.Errorf("engine: HoldTimeout %s is negative", c.HoldTimeout))
	}
	if c.Parallel < 0 {
		errs = append(errs, fmt.Errorf("engine: Parallel %d is negative", c.Parallel))
	}
	return errors.Join(errs...)
}

type appKey struct{ app, env string }

func (k appKey) String() string { return k.app + "/" + k.env }

// Engine drives releases. Its methods are safe for concurrent use.
type Engine struct {
	cfg Config
	log *slog.Logger

	mu      sync.Mutex
	slots   map[appKey]*slot
	actives map[int64]appKey // active releases, from the store
	synced  time.Time        // when active was last read from the store
	sem     chan struct{}    // bounds steps running at once (Parallel)
	subs    map[chan release.Event]struct{}
	running bool

	kick chan struct{}
	bg   sync.WaitGroup // steps and background Remove calls
}

// New validates cfg and builds an engine; Run starts it.
func New(cfg Config) (*Engine, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Engine{
		cfg:     cfg,
		log:     cfg.Logger,
		slots:   map[appKey]*slot{},
		actives: map[int64]appKey{},
		sem:     make(chan struct{}, cfg.Parallel),
		subs:    map[chan release.Event]struct{}{},
		kick:    make(chan struct{}, 1),
	}, nil
}

// wake makes Run step soon instead of at the next tick.
func (e *Engine) wake() {
	select {
	case e.kick <- struct{}{}:
	default:
	}
}

// setWeight sets the router's weight for release id. A weight above 0 is
// only set while the release is still active, checked under recordLock:
// finish records the end and sets 0 under the same lock, so a step that
// read the release before an abort cannot put its weight back.
func (e *Engine) setWeight(ctx context.Context, app spec.App, env string, id int64, w release.Weight) error {
	defer e.recordLock(appKey{app.Name, env})()
	if w > 0 && id != 0 {
		r, err := e.cfg.Store.GetRelease(ctx, id)
		if err != nil {
			return fmt.Errorf("check release #%d before setting weight: %w", id, err)
		}
		if !r.Active() {
			return errEnded
		}
	}
	return e.cfg.Router.SetWeight(ctx, app, env, w)
}

// errEnded says a step's work was skipped because its release ended
// meanwhile (aborted by a command or the judge).
var errEnded = errors.New("release ended meanwhile")

// Subscribe returns a channel of every event the engine stores from now on
// and a function that ends the subscription. A subscriber that falls behind
// loses events (it never slows the engine) and catches up with Events by
// AfterID.
func (e *Engine) Subscribe() (<-chan release.Event, func()) {
	ch := make(chan release.Event, 256)
	e.mu.Lock()
	e.subs[ch] = struct{}{}
	e.mu.Unlock()
	var once sync.Once
	return ch, func() {
		once.Do(func() {
			e.mu.Lock()
			delete(e.subs, ch)
			e.mu.Unlock()
			close(ch)
		})
	}
}

func (e *Engine) publish(evs []release.Event) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, ev := range evs {
		for ch := range e.subs {
			select {
			case ch <- ev:
			default: // a slow subscriber re-reads from the store
			}
		}
	}
}

func (e *Engine) now() time.Time { return e.cfg.Clock.Now().UTC() }

// resolve finds the app and environment a command names; env "" is the
// app's first environment.
func (e *Engine) resolve(app, env string) (spec.App, string, error) {
	a, ok := e.cfg.Apps.Get(app)
	if !ok {
		return a, "", Errorf(CodeNotFound, "unknown app %q", app)
	}
	envs := environments(a)
	if env == "" {
		return a, envs[0], nil
	}
	for _, x := range envs {
		if x == env {
			return a, env, nil
		}
	}
	return a, "", Errorf(CodeNotFound, "app %s has no environment %q (it has %v)", app, env, envs)
}

func environments(a spec.App) []string {
	if len(a.Environments) == 0 {
		return []string{a.DefaultEnv()}
	}
	return a.Environments
}

// appState reads the stored state of an app/env, defaulting a missing row
// from the spec.
func (e *Engine) appState(ctx context.Context, a spec.App, env string) (release.AppState, error) {
	st, err := e.cfg.Store.AppState(ctx, a.Name, env)
	if errors.Is(err, release.ErrNotFound) {
		return release.AppState{App: a.Name, Env: env, Replicas: a.Replicas}, nil
	}
	return st, err
}

func internal(err error, format string, args ...any) error {
	return &Error{Code: CodeInternal, Message: fmt.Sprintf(format, args...), Err: err}
}
