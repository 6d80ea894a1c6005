package api

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/shipteam/ship/internal/engine"
	"github.com/shipteam/ship/internal/release"
)

// The API's tests run against the real engine (internal/enginetest); the
// two small decorators here only observe it or make it fail on purpose.

// watched is the real engine with its event subscriptions counted, so a
// test knows when a stream is open; drop ends them all with the engine's
// own end function (the channel closes, as at shutdown).
type watched struct {
	*engine.Engine
	mu   sync.Mutex
	ends map[int]func()
	next int
}

func watch(e *engine.Engine) *watched { return &watched{Engine: e, ends: map[int]func(){}} }

func (w *watched) Subscribe() (<-chan release.Event, func()) {
	ch, end := w.Engine.Subscribe()
	w.mu.Lock()
	id := w.next
	w.next++
	w.ends[id] = end
	w.mu.Unlock()
	return ch, func() {
		w.mu.Lock()
		delete(w.ends, id)
		w.mu.Unlock()
		end()
	}
}

func (w *watched) subscribers() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.ends)
}

func (w *watched) dropSubscribers() {
	w.mu.Lock()
	ends := w.ends
	w.ends = map[int]func(){}
	w.mu.Unlock()
	for _, end := range ends {
		end()
	}
}

// failing is the real engine whose Deploy fails with err: the one way to
// get an internal error (a broken store) out of it on demand.
type failing struct {
	*engine.Engine
	err error
}

func (f failing) Deploy(context.Context, engine.Actor, engine.DeployRequest) (release.Release, error) {
	return release.Release{}, f.err
}

// fakeTokens maps token hashes to users (role maintainer, as tokens made
// before roles).
type fakeTokens map[string]string

func (t fakeTokens) TokenOwner(_ context.Context, hash []byte) (TokenOwner, error) {
	if u, ok := t[string(hash)]; ok {
		return TokenOwner{Name: u, Role: "maintainer"}, nil
	}
	return TokenOwner{}, fmt.Errorf("lookup: %w", ErrUnknownToken)
}

var errBoom = errors.New("disk on fire at /secret/path")
