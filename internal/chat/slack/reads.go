package slack

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/shipteam/ship/internal/engine"
)

// statusReads shares engine.Status calls between commands that ask the same
// question at the same time. A status costs the engine several SQLite
// queries; a burst of identical commands (a team all typing `/ship status`
// during an incident, or the ack benchmark) would otherwise queue that many
// reads in front of their own acknowledgements. A caller only ever gets the
// answer of a read that started after it arrived or was already running
// when it arrived — never a cached one from the past.
type statusReads struct {
	mu       sync.Mutex
	inflight map[[2]string]*statusFlight
	envs     map[string]defaultEnv // app → the engine's default environment
}

type statusFlight struct {
	done    chan struct{}
	st      engine.AppStatus
	err     error
	joiners int // callers sharing this read besides the one running it (tests)
}

type defaultEnv struct {
	env string
	at  time.Time
}

// defaultEnvTTL bounds how long an app's default environment is trusted.
// It comes from the app's spec, which ship serve loads at start, so a
// minute is conservative.
const defaultEnvTTL = time.Minute

// statusOf returns eng.Status(app, env), joining an identical read in flight.
func (b *Bot) statusOf(ctx context.Context, app, env string) (engine.AppStatus, error) {
	r := &b.reads
	key := [2]string{app, env}
	r.mu.Lock()
	if r.inflight == nil {
		r.inflight = map[[2]string]*statusFlight{}
	}
	if f, ok := r.inflight[key]; ok {
		f.joiners++
		r.mu.Unlock()
		select {
		case <-f.done:
		case <-ctx.Done():
			return engine.AppStatus{}, ctx.Err()
		}
		if f.err == nil || ctx.Err() != nil || !isContextErr(f.err) {
			return f.st, f.err
		}
		// The leader gave up (its own deadline); ask for ourselves.
		return b.eng.Status(ctx, app, env)
	}
	f := &statusFlight{done: make(chan struct{})}
	r.inflight[key] = f
	r.mu.Unlock()

	f.st, f.err = b.eng.Status(ctx, app, env)
	r.mu.Lock()
	delete(r.inflight, key)
	if f.err == nil && f.st.Env != "" && env == "" {
		if r.envs == nil {
			r.envs = map[string]defaultEnv{}
		}
		r.envs[app] = defaultEnv{f.st.Env, time.Now()}
	}
	r.mu.Unlock()
	close(f.done)
	return f.st, f.err
}

// defaultEnvOf returns the environment the engine uses for app when none is
// named. Known answers are reused for defaultEnvTTL: a write command needs
// only this (permissions are per environment), not a whole status read.
func (b *Bot) defaultEnvOf(ctx context.Context, app string) (string, error) {
	r := &b.reads
	r.mu.Lock()
	d, ok := r.envs[app]
	r.mu.Unlock()
	if ok && time.Since(d.at) < defaultEnvTTL {
		return d.env, nil
	}
	st, err := b.statusOf(ctx, app, "")
	if err != nil {
		return "", err
	}
	return st.Env, nil
}

func isContextErr(err error) bool {
	return errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}
