package traffic

import "time"

// InstanceHealth hears what proxied requests learn about instances: the
// embedded runtime uses it as passive health, to probe instances that serve
// traffic less often and to probe at once an instance the router could not
// reach. Both methods are called on the request path, rarely (see
// reportEvery), and must return at once.
type InstanceHealth interface {
	// Answered: the instance at addr answered a proxied request with a
	// status below 500 (an app's own 5xx says nothing about liveness
	// either way).
	Answered(app, env, addr string)
	// Unreachable: a connection to the instance at addr failed before a
	// response head came back (refused, reset, closed, timed out).
	Unreachable(app, env, addr string)
}

// reportEvery bounds how often one instance is reported, either way: the
// request path pays one atomic load per request, and InstanceHealth (which
// may take a lock to find the instance) is called at most this often.
const reportEvery = int64(time.Second)

// ReportHealthTo sends passive health to h from now on (nil: to nobody).
// The runtime that announces the instances is built after the router, so
// this is a setter rather than a Config field.
func (r *Router) ReportHealthTo(h InstanceHealth) {
	if h == nil {
		r.health.Store(nil)
		return
	}
	r.health.Store(&h)
}

// noteAnswered records that b answered a request that started at now (unix
// nanoseconds). The common case is one atomic load.
func (rt *route) noteAnswered(b *backend, now int64) {
	last := b.answeredAt.Load()
	if now-last < reportEvery || !b.answeredAt.CompareAndSwap(last, now) {
		return
	}
	if h := rt.r.health.Load(); h != nil {
		(*h).Answered(rt.app, rt.env, b.addr)
	}
}

// noteUnreachable records that a connection to b failed.
func (rt *route) noteUnreachable(b *backend) {
	now := time.Now().UnixNano()
	last := b.unreachableAt.Load()
	if now-last < reportEvery || !b.unreachableAt.CompareAndSwap(last, now) {
		return
	}
	if h := rt.r.health.Load(); h != nil {
		(*h).Unreachable(rt.app, rt.env, b.addr)
	}
}
