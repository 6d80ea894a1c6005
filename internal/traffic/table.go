package traffic

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/shipteam/ship/internal/runtime"
	"github.com/shipteam/ship/internal/spec"
)

// trackIdx indexes the two tracks in a table.
const (
	stableIdx = 0
	canaryIdx = 1
)

var trackNames = [2]string{string(runtime.Stable), string(runtime.Canary)}

func trackIndex(name string) (int, bool) {
	switch name {
	case string(runtime.Stable):
		return stableIdx, true
	case string(runtime.Canary):
		return canaryIdx, true
	}
	return 0, false
}

// table is everything a request needs to be routed, built whole on every
// change and swapped in with one atomic store, so a request sees either the
// old or the new table and never half of each. Only the counters in it
// change after it is published.
type table struct {
	weight int // canary share out of scale
	sticky spec.Stickiness
	tracks [2]*trackTable
	// setCookie is the Set-Cookie value naming each track, when cookie
	// stickiness is on.
	setCookie [2]string
}

// trackTable is one track's ready instances and the counters of the
// version they run, resolved when the table is built so the hot path does
// no map lookups.
type trackTable struct {
	idx      int
	name     string
	version  string
	backends []*backend
	next     atomic.Uint32 // round robin over backends
	stats    *trackStats   // nil when the track has no version
}

// backend is one instance. down marks it skipped after a failed connection,
// until downUntil (unix nanoseconds). answeredAt and unreachableAt are when
// it was last reported to InstanceHealth (health.go). It keeps the fast
// path's idle keep-alive connections to the instance, so that finding one
// takes no shared map or lock.
type backend struct {
	addr          string
	downUntil     atomic.Int64
	answeredAt    atomic.Int64
	unreachableAt atomic.Int64

	mu      sync.Mutex
	idle    []*bconn
	removed bool
}

func (t *table) weightOf(idx int) int {
	if idx == canaryIdx {
		return t.weight
	}
	return scale - t.weight
}

// pick returns the next instance of the track by round robin, skipping
// instances marked down unless all are, and skipping those in tried.
func (tt *trackTable) pick(tried []*backend) *backend {
	n := len(tt.backends)
	if n == 0 {
		return nil
	}
	start := int(tt.next.Add(1))
	var fallback *backend
	var now int64
	for i := 0; i < n; i++ {
		b := tt.backends[(start+i)%n]
		if contains(tried, b) {
			continue
		}
		if du := b.downUntil.Load(); du != 0 {
			if now == 0 {
				now = time.Now().UnixNano()
			}
			if du > now {
				if fallback == nil {
					fallback = b
				}
				continue
			}
		}
		return b
	}
	return fallback
}

// available returns track idx, or the other track when idx has no ready
// instances, or nil when neither has.
func (t *table) available(idx int) *trackTable {
	if len(t.tracks[idx].backends) == 0 {
		idx = 1 - idx
		if len(t.tracks[idx].backends) == 0 {
			return nil
		}
	}
	return t.tracks[idx]
}

func contains(bs []*backend, b *backend) bool {
	for _, x := range bs {
		if x == b {
			return true
		}
	}
	return false
}
