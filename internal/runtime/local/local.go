// Package local is ship's embedded runtime: it runs each track (stable,
// canary) of an app as N real processes on free loopback ports, announces an
// instance to the router only once its health path answers 2xx, restarts
// crashed instances with backoff, drains on stop (SIGTERM, grace, SIGKILL of
// the process group), keeps recent output per instance and persists enough
// state that a restarted ship adopts the processes of its previous run.
//
// It must not decide what a release does next: a version that cannot become
// ready is reported Failed and stopped; the engine chooses what follows. It
// must not route traffic either: it only tells a BackendSink which addresses
// are ready.
package local

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/shipteam/ship/internal/runtime"
	"github.com/shipteam/ship/internal/spec"
)

var (
	_ runtime.Runtime   = (*Runtime)(nil)
	_ runtime.LogReader = (*Runtime)(nil)
)

// ErrClosed is returned by calls made after Shutdown.
var ErrClosed = errors.New("local runtime is shut down")

// BackendSink is where ready instances are announced (the router,
// internal/traffic). Calls for one track are serialized and each carries the
// complete set, so an implementation may simply replace what it had.
type BackendSink interface {
	SetBackends(app, env string, track runtime.Track, version string, addrs []string)
}

// Config configures a Runtime. Zero durations take the defaults below.
type Config struct {
	Dir      string      // state: instance state files and log files; created if missing
	Backends BackendSink // required
	Logger   *slog.Logger

	// Health probing (docs/runtime-local.md, "How an instance lives"): an
	// instance is probed every HealthInterval while it starts (or is out of
	// the router), every HealthyInterval once ready — a proxied answer
	// reported through Answered defers that probe — and every
	// SuspectInterval after a failed probe or an Unreachable report, until
	// it answers again or UnhealthyAfter failures take it out of the router.
	HealthInterval    time.Duration // default 100ms
	HealthyInterval   time.Duration // default 20s
	SuspectInterval   time.Duration // default 500ms
	ProbeTimeout      time.Duration // per health request; default 1s
	UnhealthyAfter    int           // consecutive failures before a ready instance leaves the router; default 3
	RestartBackoff    time.Duration // first delay before restarting a crashed instance; default 100ms
	MaxRestartBackoff time.Duration // default 10s
	CrashLoopLimit    int           // crashes before ever being ready that fail the version; default 3
	MaxLogBytes       int64         // per instance and stream before rotating once; default 1 MiB
	LogLines          int           // recent lines kept in memory per instance; default 500

	// pickPort chooses a free port; tests replace it to provoke conflicts.
	pickPort func() (int, error)
}

func (c *Config) setDefaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&c.HealthInterval, 100*time.Millisecond)
	def(&c.HealthyInterval, 20*time.Second)
	def(&c.SuspectInterval, 500*time.Millisecond)
	def(&c.ProbeTimeout, time.Second)
	def(&c.RestartBackoff, 100*time.Millisecond)
	def(&c.MaxRestartBackoff, 10*time.Second)
	if c.UnhealthyAfter == 0 {
		c.UnhealthyAfter = 3
	}
	if c.CrashLoopLimit == 0 {
		c.CrashLoopLimit = 3
	}
	if c.MaxLogBytes == 0 {
		c.MaxLogBytes = 1 << 20
	}
	if c.LogLines == 0 {
		c.LogLines = 500
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.pickPort == nil {
		c.pickPort = freePort
	}
}

// Validate reports every problem of the config at once.
func (c Config) Validate() error {
	var errs []error
	if c.Dir == "" {
		errs = append(errs, errors.New("local runtime: Dir is required"))
	}
	if c.Backends == nil {
		errs = append(errs, errors.New("local runtime: Backends is required"))
	}
	for name, d := range map[string]time.Duration{
		"HealthInterval": c.HealthInterval, "HealthyInterval": c.HealthyInterval, "SuspectInterval": c.SuspectInterval,
		"ProbeTimeout": c.ProbeTimeout, "RestartBackoff": c.RestartBackoff, "MaxRestartBackoff": c.MaxRestartBackoff,
	} {
		if d < 0 {
			errs = append(errs, fmt.Errorf("local runtime: %s is negative (%s)", name, d))
		}
	}
	if c.UnhealthyAfter < 0 || c.CrashLoopLimit < 0 || c.MaxLogBytes < 0 || c.LogLines < 0 {
		errs = append(errs, errors.New("local runtime: UnhealthyAfter, CrashLoopLimit, MaxLogBytes and LogLines must not be negative"))
	}
	return errors.Join(errs...)
}

// Runtime runs app instances as local processes. Create it with New, call
// Adopt once, then Apply/Status/Remove; Shutdown stops everything.
type Runtime struct {
	cfg Config
	log *slog.Logger

	ctx    context.Context // canceled when the runtime's goroutines must end
	cancel context.CancelFunc
	wg     sync.WaitGroup // every goroutine the runtime owns

	mu     sync.Mutex
	closed bool
	tracks map[trackKey]*track
	logs   *logStore
}

type trackKey struct {
	app, env string
	track    runtime.Track
}

// New validates cfg, creates its directories and loads the log files of
// earlier runs so Logs can still show them.
func New(cfg Config) (*Runtime, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.setDefaults()
	for _, d := range []string{cfg.Dir, runDir(cfg.Dir), logDir(cfg.Dir)} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("local runtime: %w", err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &Runtime{
		cfg:    cfg,
		log:    cfg.Logger,
		ctx:    ctx,
		cancel: cancel,
		tracks: map[trackKey]*track{},
		logs:   newLogStore(cfg),
	}
	if err := r.logs.load(); err != nil {
		r.log.Warn("local runtime: loading earlier log files", "err", err)
	}
	return r, nil
}

func runDir(dir string) string { return filepath.Join(dir, "run") }
func logDir(dir string) string { return filepath.Join(dir, "logs") }

func (r *Runtime) goRun(f func()) {
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		f()
	}()
}

func checkApp(app spec.App, env string) error {
	var errs []error
	if app.Name == "" {
		errs = append(errs, errors.New("app has no name"))
	}
	if env == "" {
		errs = append(errs, errors.New("no environment given"))
	}
	if app.Kind != "" && app.Kind != spec.KindWeb {
		errs = append(errs, fmt.Errorf("app %s: kind %q is not supported by the local runtime yet", app.Name, app.Kind))
	}
	if app.Run.Command == "" {
		errs = append(errs, fmt.Errorf("app %s: run.command is empty", app.Name))
	}
	if len(app.Environments) > 0 && env != "" && !app.HasEnv(env) {
		errs = append(errs, fmt.Errorf("app %s has no environment %q", app.Name, env))
	}
	return errors.Join(errs...)
}

// Apply makes track run w.Replicas instances of w.Version. It only records
// the wish and wakes the track's reconcile goroutine, so it returns at once
// and repeating it is harmless.
func (r *Runtime) Apply(ctx context.Context, app spec.App, env string, tr runtime.Track, w runtime.Want) error {
	if err := checkApp(app, env); err != nil {
		return fmt.Errorf("apply %s/%s %s: %w", app.Name, env, tr, err)
	}
	if w.Version == "" || w.Replicas < 0 {
		return fmt.Errorf("apply %s/%s %s: want needs a version and replicas >= 0 (got %q, %d)", app.Name, env, tr, w.Version, w.Replicas)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return ErrClosed
	}
	k := trackKey{app.Name, env, tr}
	t := r.tracks[k]
	if t == nil || t.isRemoving() {
		t = newTrack(r, k, app, w)
		r.tracks[k] = t
		r.goRun(t.loop)
	} else {
		t.setWant(app, w)
	}
	t.poke()
	return nil
}

// Status reports both tracks of app in env.
func (r *Runtime) Status(ctx context.Context, app spec.App, env string) (map[runtime.Track]runtime.TrackStatus, error) {
	out := make(map[runtime.Track]runtime.TrackStatus, len(runtime.Tracks))
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, tr := range runtime.Tracks {
		if t := r.tracks[trackKey{app.Name, env, tr}]; t != nil && !t.isRemoving() {
			out[tr] = t.status()
		} else {
			out[tr] = runtime.TrackStatus{Track: tr}
		}
	}
	return out, nil
}

// Remove takes track out of the router at once, then drains and stops its
// instances. It waits for them to stop or for ctx to end; the stopping
// continues in the background either way.
func (r *Runtime) Remove(ctx context.Context, app spec.App, env string, tr runtime.Track) error {
	r.mu.Lock()
	t := r.tracks[trackKey{app.Name, env, tr}]
	r.mu.Unlock()
	if t == nil {
		return nil
	}
	t.remove()
	select {
	case <-t.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("remove %s/%s %s: %w", app.Name, env, tr, ctx.Err())
	}
}

// Shutdown drains and stops every instance, removes their state files and
// ends the runtime's goroutines. When ctx ends first, every remaining
// process group is killed.
func (r *Runtime) Shutdown(ctx context.Context) error {
	r.mu.Lock()
	r.closed = true
	tracks := make([]*track, 0, len(r.tracks))
	for _, t := range r.tracks {
		tracks = append(tracks, t)
	}
	r.mu.Unlock()
	for _, t := range tracks {
		t.remove()
	}
	var err error
	for _, t := range tracks {
		select {
		case <-t.done:
		case <-ctx.Done():
			err = fmt.Errorf("local runtime shutdown: %w", ctx.Err())
		}
		if err != nil {
			break
		}
	}
	if err != nil {
		for _, t := range tracks {
			t.killAll()
		}
	}
	r.cancel()
	done := make(chan struct{})
	go func() { r.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		err = errors.Join(err, errors.New("local runtime shutdown: goroutines still running"))
	}
	return err
}

// abandon ends the runtime's goroutines and leaves every process running, as
// a crash of ship would. Tests use it to prove adoption.
func (r *Runtime) abandon() {
	r.mu.Lock()
	r.closed = true
	r.mu.Unlock()
	r.cancel()
	r.wg.Wait()
}

// Logs returns up to n recent lines of app's instances in env, oldest first.
func (r *Runtime) Logs(ctx context.Context, app spec.App, env, version string, n int) ([]runtime.LogLine, error) {
	if n <= 0 {
		return nil, nil
	}
	lines := r.logs.lines(app.Name, env, version)
	sort.SliceStable(lines, func(i, j int) bool { return lines[i].Time.Before(lines[j].Time) })
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return lines, nil
}

// Answered is passive health from the router (traffic.InstanceHealth): the
// instance at addr answered a proxied request, so its next probe can wait.
// The router calls it at most once a second per instance.
func (r *Runtime) Answered(app, env, addr string) {
	if in := r.instanceAt(app, env, addr); in != nil {
		in.answeredAt.Store(time.Now().UnixNano())
	}
}

// Unreachable is passive health from the router: a connection to the
// instance at addr failed. It counts against the instance and has it probed
// at once, so a dead instance leaves the router without waiting for its
// next probe.
func (r *Runtime) Unreachable(app, env, addr string) {
	if in := r.instanceAt(app, env, addr); in != nil {
		select {
		case in.kick <- struct{}{}:
		default: // a probe is already due
		}
	}
}

// instanceAt finds the running instance of app in env listening at addr.
func (r *Runtime) instanceAt(app, env, addr string) *instance {
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		return nil
	}
	port, err := strconv.Atoi(p)
	if err != nil {
		return nil
	}
	var ts [2]*track
	r.mu.Lock()
	for i, tr := range runtime.Tracks {
		if i < len(ts) {
			ts[i] = r.tracks[trackKey{app, env, tr}]
		}
	}
	r.mu.Unlock()
	for _, t := range ts {
		if t == nil {
			continue
		}
		t.mu.Lock()
		for _, in := range t.insts {
			if in.port == port && !in.stopping {
				t.mu.Unlock()
				return in
			}
		}
		t.mu.Unlock()
	}
	return nil
}

// killGroup sends sig to the process group pgid; a group already gone is fine.
func killGroup(pgid int, sig syscall.Signal) {
	if pgid > 1 {
		_ = syscall.Kill(-pgid, sig)
	}
}
