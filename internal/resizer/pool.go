package resizer

import (
	"context"
	"sync/atomic"
)

// pool bounds the work in the service in two stages:
//
//   - admission: at most workers+queue requests are past the door at once. A
//     request is admitted before its body is read or its source fetched, so
//     the bytes held in memory never exceed (workers+queue) × MaxInputBytes,
//     however many clients connect. Admission never waits: when it is full
//     the request gets 503 at once.
//   - a worker slot: at most workers images are decoded at once. A slot is
//     taken only after the whole source is in memory, so a slow client holds
//     an admission place but never a worker.
type pool struct {
	admit   chan struct{}
	workers chan struct{}
	busy    atomic.Int64
}

func newPool(workers, queue int) *pool {
	return &pool{admit: make(chan struct{}, workers+queue), workers: make(chan struct{}, workers)}
}

// tryAdmit takes an admission place without waiting; ok is false when full.
func (p *pool) tryAdmit() (release func(), ok bool) {
	select {
	case p.admit <- struct{}{}:
		return func() { <-p.admit }, true
	default:
		return nil, false
	}
}

// acquire waits for a worker slot. Only admitted requests call it, so at most
// queue of them wait.
func (p *pool) acquire(ctx context.Context) (release func(), err error) {
	select {
	case p.workers <- struct{}{}:
		p.busy.Add(1)
		return func() { p.busy.Add(-1); <-p.workers }, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// admitted is the number of requests past the door (reading, fetching,
// waiting or working).
func (p *pool) admitted() int { return len(p.admit) }

// working is the number of requests holding a worker.
func (p *pool) working() int { return int(p.busy.Load()) }
