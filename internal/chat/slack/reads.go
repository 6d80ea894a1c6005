package slack

import (
	"context"
	"errors"
	"sync"

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
	inflight map[[3]string]*statusFlight // identity, app, env: who may read is the engine's call
}

type statusFlight struct {
	done    chan struct{}
	st      engine.AppStatus
	err     error
	joiners int // callers sharing this read besides the one running it (tests)
}

// statusOf returns eng.Status(a, app, env), joining an identical read of
// the same user in flight.
func (b *Bot) statusOf(ctx context.Context, a engine.Actor, app, env string) (engine.AppStatus, error) {
	r := &b.reads
	key := [3]string{a.ID, app, env}
	r.mu.Lock()
	if r.inflight == nil {
		r.inflight = map[[3]string]*statusFlight{}
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
		return b.eng.Status(ctx, a, app, env)
	}
	f := &statusFlight{done: make(chan struct{})}
	r.inflight[key] = f
	r.mu.Unlock()

	f.st, f.err = b.eng.Status(ctx, a, app, env)
	r.mu.Lock()
	delete(r.inflight, key)
	r.mu.Unlock()
	close(f.done)
	return f.st, f.err
}

func isContextErr(err error) bool {
	return errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}
