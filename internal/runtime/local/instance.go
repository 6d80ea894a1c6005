package local

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/shipteam/ship/internal/spec"
)

// instance is one slot of a track running one version. Its supervise
// goroutine starts the process, polls its health, restarts it after a
// crash and drains it when told to stop.
type instance struct {
	t       *track
	idx     int
	version string
	app     spec.App
	name    string // "stable-0"
	stem    string // unique per incarnation: names its log and state files
	adopted *instState

	stopCh   chan struct{}
	stopOnce sync.Once

	// Passive health from the router (Runtime.Answered, Unreachable).
	answeredAt atomic.Int64  // unix nanoseconds of the last reported answer
	kick       chan struct{} // a proxied connection failed: probe now

	// Guarded by t.mu.
	ready      bool
	stopping   bool
	failReason string
	port       int
	pid        int
}

func newInstance(t *track, idx int, version string, app spec.App, adopted *instState) *instance {
	in := &instance{t: t, idx: idx, version: version, app: app, adopted: adopted, stopCh: make(chan struct{}),
		kick: make(chan struct{}, 1), name: fmt.Sprintf("%s-%d", t.key.track, idx)}
	if adopted != nil {
		in.stem = adopted.Stem
		in.port, in.pid = adopted.Port, adopted.PID
	} else {
		in.stem = fmt.Sprintf("%s-%s-%d", in.name, safeName(version), time.Now().UnixNano())
	}
	return in
}

func (in *instance) requestStop() { in.stopOnce.Do(func() { close(in.stopCh) }) }

func (in *instance) set(f func()) {
	in.t.mu.Lock()
	f()
	in.t.mu.Unlock()
	in.t.poke()
}

func (in *instance) logAttrs() []any {
	return []any{"app", in.t.key.app, "env", in.t.key.env, "instance", in.name, "version", in.version}
}

type outcome int

const (
	exited    outcome = iota // the process ended by itself
	stopped                  // we were told to stop
	abandoned                // the runtime's goroutines end; leave the process
	timedOut                 // not healthy within the start timeout
)

// runResult describes one run of the process.
type runResult struct {
	outcome   outcome
	wasReady  bool
	readyFor  time.Duration
	lastProbe string
}

func (in *instance) startTimeout() time.Duration {
	if d := in.app.Run.StartTimeout.D(); d > 0 {
		return d
	}
	return 30 * time.Second
}

func (in *instance) stopGrace() time.Duration {
	if d := in.app.Run.StopGrace.D(); d > 0 {
		return d
	}
	return 10 * time.Second
}

// supervise is the life of the slot: a list of runs of its process.
func (in *instance) supervise() {
	rt := in.t.rt
	ctx := rt.ctx
	logs, err := rt.logs.attach(logMeta{App: in.t.key.app, Env: in.t.key.env, Track: in.t.key.track,
		Instance: in.name, Version: in.version, Stem: in.stem, Created: time.Now()})
	if err != nil {
		in.fail(fmt.Sprintf("log files: %v", err))
		<-in.stopCh
		in.t.forget(in)
		return
	}
	tailDone := make(chan struct{})
	tailExit := make(chan struct{})
	go func() { // owned here: ended below on every path out
		defer close(tailExit)
		logs.tail(tailDone)
	}()
	defer func() {
		close(tailDone)
		<-tailExit
	}()

	everReady := in.adopted != nil
	backoff := rt.cfg.RestartBackoff
	earlyCrashes, portRetries := 0, 0
	var p *proc
	if in.adopted != nil {
		st := in.adopted
		p = adoptProc(st.PID, st.Port, st.ProcStart, st.Started, ctx.Done())
		logs.note("adopted pid %d on port %d after a ship restart", st.PID, st.Port)
	}
	for {
		if p == nil {
			if p, err = in.start(logs); err != nil {
				in.fail(fmt.Sprintf("cannot start %s: %v", in.version, err))
				logs.note("cannot start: %v", err)
				in.waitStop(ctx)
				in.finish(logs)
				return
			}
		}
		res := in.watch(ctx, p, logs, everReady)
		everReady = everReady || res.wasReady
		switch res.outcome {
		case abandoned:
			return
		case stopped:
			how := stopProc(p, in.stopGrace())
			logs.note("pid %d %s", p.pid, how)
			in.finish(logs)
			return
		case timedOut:
			how := stopProc(p, in.stopGrace())
			msg := fmt.Sprintf("not healthy after %s: %s", in.startTimeout(), res.lastProbe)
			logs.note("%s; pid %d %s", msg, p.pid, how)
			removeState(rt.cfg.Dir, in.t.key, in.stem)
			if !everReady {
				in.fail(msg)
				in.waitStop(ctx)
				in.finish(logs)
				return
			}
		case exited:
			killGroup(p.pid, 9) // leftovers of the group must not hold the port
			removeState(rt.cfg.Dir, in.t.key, in.stem)
			logs.poll()
			last := logs.lastStderrLine()
			logs.note("pid %d exited: %s", p.pid, p.status)
			rt.log.Warn("local runtime: instance exited", append(in.logAttrs(), "pid", p.pid, "status", p.status, "stderr", last)...)
			if !res.wasReady && strings.Contains(last, "address already in use") && portRetries < 5 {
				portRetries++
				logs.note("port %d was taken; retrying on another port", p.port)
				p = nil
				continue
			}
			if !everReady {
				earlyCrashes++
				if earlyCrashes >= rt.cfg.CrashLoopLimit {
					msg := fmt.Sprintf("exited %d times before becoming ready; last: %s", earlyCrashes, p.status)
					if last != "" {
						msg += fmt.Sprintf("; stderr: %q", last)
					}
					in.fail(msg)
					in.waitStop(ctx)
					in.finish(logs)
					return
				}
			}
		}
		// A crash (or an instance that stopped answering for good): restart
		// after a delay that doubles while it keeps failing.
		if res.readyFor > 10*time.Second {
			backoff = rt.cfg.RestartBackoff
		}
		select {
		case <-time.After(backoff):
		case <-in.stopCh:
			in.finish(logs)
			return
		case <-ctx.Done():
			return
		}
		backoff = min(2*backoff, rt.cfg.MaxRestartBackoff)
		in.t.mu.Lock()
		if in.version == in.t.want.Version {
			in.t.restarts++
		}
		in.t.mu.Unlock()
		logs.note("restarting after %s", p.status)
		p = nil
	}
}

func (in *instance) fail(reason string) {
	in.set(func() { in.failReason, in.ready = reason, false })
}

func (in *instance) waitStop(ctx context.Context) {
	select {
	case <-in.stopCh:
	case <-ctx.Done():
	}
}

// finish ends the slot: its state file goes, its log is kept.
func (in *instance) finish(logs *instLog) {
	removeState(in.t.rt.cfg.Dir, in.t.key, in.stem)
	in.t.rt.logs.finish(logs)
	in.t.forget(in)
}

// start runs the process on a fresh port and records its state file.
func (in *instance) start(logs *instLog) (*proc, error) {
	rt := in.t.rt
	port, err := rt.cfg.pickPort()
	if err != nil {
		return nil, err
	}
	name, args, env, dir, err := commandFor(in.app, in.version, port, in.t.key.env, in.idx)
	if err != nil {
		return nil, err
	}
	env = append(env, "PORT="+strconv.Itoa(port), "SHIP_APP="+in.t.key.app, "SHIP_ENV="+in.t.key.env,
		"SHIP_VERSION="+in.version, "SHIP_INSTANCE="+in.name)
	p, err := startProc(name, args, env, dir, logs.path("stdout"), logs.path("stderr"), port)
	if err != nil {
		return nil, err
	}
	in.set(func() { in.port, in.pid = port, p.pid })
	st := instState{App: in.t.key.app, Env: in.t.key.env, Track: in.t.key.track, Version: in.version, Index: in.idx,
		PID: p.pid, Port: port, Started: p.started, ProcStart: p.startTicks, Stem: in.stem}
	if err := writeState(rt.cfg.Dir, st); err != nil {
		rt.log.Warn("local runtime: state file", append(in.logAttrs(), "err", err)...)
	}
	logs.note("started pid %d on port %d", p.pid, port)
	rt.log.Info("local runtime: started", append(in.logAttrs(), "pid", p.pid, "port", port)...)
	return p, nil
}

// watch polls the process's health until it exits, is told to stop, the
// runtime is abandoned or it is not healthy within the start timeout.
//
// Probes come often while it starts, rarely once it is healthy (and later
// still while the router reports answers from it), and often again once a
// probe failed or the router could not connect to it.
func (in *instance) watch(ctx context.Context, p *proc, logs *instLog, adopted bool) runResult {
	cfg := &in.t.rt.cfg
	var res runResult
	var readySince, unhealthySince time.Time
	started := time.Now()
	fails := 0
	setReady := func(r bool) {
		in.set(func() { in.ready = r })
	}
	defer func() {
		if res.wasReady && !readySince.IsZero() {
			res.readyFor = time.Since(readySince)
		}
		setReady(false)
	}()
	delay := cfg.HealthInterval
	if adopted {
		delay = 0 // announce an adopted instance as soon as it answers
	}
	timer := time.NewTimer(delay)
	defer timer.Stop()
	pr := newProber(in.app.HealthPath, p.port, cfg.ProbeTimeout)
	defer pr.close()
	for {
		kicked := false
		select {
		case <-p.exited:
			res.outcome = exited
			return res
		case <-in.stopCh:
			res.outcome = stopped
			return res
		case <-ctx.Done():
			res.outcome = abandoned
			return res
		case <-timer.C:
		case <-in.kick:
			kicked = true
		}
		ready := !readySince.IsZero()
		switch {
		case kicked && !ready:
			continue // probed often anyway; the timer is still set
		case kicked:
			fails++ // the router could not connect: counts, and is confirmed now
		case ready && fails == 0:
			if due := time.Unix(0, in.answeredAt.Load()).Add(cfg.HealthyInterval); time.Until(due) > 0 {
				timer.Reset(time.Until(due)) // it served traffic since: no need to ask
				continue
			}
		}
		ok, desc := pr.probe(ctx)
		res.lastProbe = desc
		select {
		case <-p.exited: // whoever answered, it was not this process
			res.outcome = exited
			return res
		default:
		}
		switch {
		case ok:
			fails = 0
			unhealthySince = time.Time{}
			if !ready {
				readySince = time.Now()
				res.wasReady = true
				setReady(true)
				logs.note("ready on port %d (%s)", p.port, desc)
			}
		case ready:
			fails++
			if fails >= cfg.UnhealthyAfter {
				readySince = time.Time{}
				unhealthySince = time.Now()
				setReady(false)
				logs.note("out of the router: %s", desc)
				in.t.rt.log.Warn("local runtime: instance unhealthy", append(in.logAttrs(), "probe", desc)...)
			}
		default:
			since := started
			if !unhealthySince.IsZero() {
				since = unhealthySince
			}
			if time.Since(since) > in.startTimeout() {
				res.outcome = timedOut
				return res
			}
		}
		timer.Reset(in.nextProbe(!readySince.IsZero(), fails))
	}
}

// nextProbe is the delay before the next probe of an instance.
func (in *instance) nextProbe(ready bool, fails int) time.Duration {
	cfg := &in.t.rt.cfg
	switch {
	case !ready:
		return cfg.HealthInterval
	case fails > 0:
		return cfg.SuspectInterval
	}
	return cfg.HealthyInterval
}
