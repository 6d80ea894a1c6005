package local

import (
	"fmt"
	"slices"
	"sort"
	"strconv"
	"sync"

	"github.com/shipteam/ship/internal/runtime"
	"github.com/shipteam/ship/internal/spec"
)

// track owns the instances of one (app, env, track). Its loop is the only
// caller of the BackendSink for the track and the only place instances are
// started or told to stop; instances report changes by poking it.
type track struct {
	rt   *Runtime
	key  trackKey
	wake chan struct{}
	done chan struct{} // closed when the loop has ended

	mu        sync.Mutex
	app       spec.App
	want      runtime.Want
	insts     []*instance
	removing  bool
	failed    bool
	reason    string
	restarts  int
	announced announcement
}

type announcement struct {
	version string
	addrs   []string
}

func (a announcement) equal(b announcement) bool {
	return a.version == b.version && slices.Equal(a.addrs, b.addrs)
}

func newTrack(rt *Runtime, k trackKey, app spec.App, w runtime.Want) *track {
	return &track{rt: rt, key: k, app: app, want: w, wake: make(chan struct{}, 1), done: make(chan struct{})}
}

func (t *track) poke() {
	select {
	case t.wake <- struct{}{}:
	default:
	}
}

func (t *track) isRemoving() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.removing
}

func (t *track) setWant(app spec.App, w runtime.Want) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.app = app
	if w.Version != t.want.Version {
		// A new version starts with a clean record; a failed version stays
		// failed however often it is applied again.
		t.failed, t.reason, t.restarts = false, "", 0
	}
	t.want = w
}

func (t *track) remove() {
	t.mu.Lock()
	t.removing = true
	t.mu.Unlock()
	t.poke()
}

func (t *track) logger() []any {
	return []any{"app", t.key.app, "env", t.key.env, "track", string(t.key.track)}
}

// loop reconciles whenever Apply, Remove or an instance pokes it.
func (t *track) loop() {
	defer close(t.done)
	for {
		select {
		case <-t.wake:
		case <-t.rt.ctx.Done():
			return
		}
		ann, starts, stops, finished := t.reconcile()
		if ann != nil {
			t.rt.cfg.Backends.SetBackends(t.key.app, t.key.env, t.key.track, ann.version, ann.addrs)
			t.rt.log.Info("local runtime: backends", append(t.logger(), "version", ann.version, "addrs", ann.addrs)...)
		}
		// Stops only after the announcement without them went out.
		for _, in := range stops {
			in.requestStop()
		}
		for _, in := range starts {
			t.rt.goRun(in.supervise)
		}
		if finished {
			t.rt.mu.Lock()
			if t.rt.tracks[t.key] == t {
				delete(t.rt.tracks, t.key)
			}
			t.rt.mu.Unlock()
			return
		}
	}
}

// reconcile makes one step from what runs toward what is wanted. It returns
// the backends to announce (nil when unchanged), instances to start and
// instances to stop, and whether the track is removed and empty.
func (t *track) reconcile() (ann *announcement, starts, stops []*instance, finished bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	stop := func(in *instance) {
		if !in.stopping {
			in.stopping = true
			stops = append(stops, in)
		}
	}
	announce := func(a announcement) {
		if !a.equal(t.announced) {
			t.announced = a
			ann = &a
		}
	}

	if t.removing {
		announce(announcement{version: t.want.Version})
		for _, in := range t.insts {
			stop(in)
		}
		return ann, nil, stops, len(t.insts) == 0
	}

	var cur, old []*instance
	for _, in := range t.insts {
		switch {
		case in.stopping:
		case in.version == t.want.Version:
			cur = append(cur, in)
		default:
			old = append(old, in)
		}
	}

	// A version that cannot become ready fails the track: stop trying.
	if !t.failed {
		for _, in := range cur {
			if in.failReason != "" {
				t.failed, t.reason = true, in.failReason
				t.rt.log.Warn("local runtime: version failed", append(t.logger(), "version", t.want.Version, "reason", in.failReason)...)
				break
			}
		}
	}
	if t.failed {
		for _, in := range cur {
			stop(in)
		}
		// Whatever older version still serves keeps serving.
		announce(t.readyOf(old, t.announced.version))
		return ann, nil, stops, false
	}

	// Scale down: the highest slots go first.
	sort.Slice(cur, func(i, j int) bool { return cur[i].idx < cur[j].idx })
	for len(cur) > t.want.Replicas {
		stop(cur[len(cur)-1])
		cur = cur[:len(cur)-1]
	}
	// Scale up: fill the lowest free slots.
	used := map[int]bool{}
	for _, in := range cur {
		used[in.idx] = true
	}
	for idx := 0; len(cur) < t.want.Replicas; idx++ {
		if used[idx] {
			continue
		}
		in := newInstance(t, idx, t.want.Version, t.app, nil)
		t.insts = append(t.insts, in)
		cur = append(cur, in)
		starts = append(starts, in)
	}

	ready := 0
	for _, in := range cur {
		if in.ready {
			ready++
		}
	}
	if len(old) > 0 && ready < t.want.Replicas {
		// Replacing: keep the version that serves now in the router until
		// every new instance is ready, so there is never a gap.
		if prev := t.readyOf(old, t.announced.version); t.announced.version != t.want.Version && len(prev.addrs) > 0 {
			announce(prev)
			for _, in := range old {
				if in.version != prev.version {
					stop(in) // an intermediate version nobody routes to
				}
			}
			return ann, starts, stops, false
		}
	}
	announce(t.readyOf(cur, t.want.Version))
	if ready >= t.want.Replicas {
		for _, in := range old {
			stop(in)
		}
	}
	return ann, starts, stops, false
}

// readyOf lists the ready instances of version among ins.
func (t *track) readyOf(ins []*instance, version string) announcement {
	a := announcement{version: version}
	for _, in := range ins {
		if in.version == version && in.ready && !in.stopping {
			a.addrs = append(a.addrs, "127.0.0.1:"+strconv.Itoa(in.port))
		}
	}
	sort.Strings(a.addrs)
	return a
}

func (t *track) status() runtime.TrackStatus {
	t.mu.Lock()
	defer t.mu.Unlock()
	st := runtime.TrackStatus{Track: t.key.track, Version: t.want.Version, Desired: t.want.Replicas,
		Restarts: t.restarts, Failed: t.failed, Reason: t.reason}
	serving := 0
	for _, in := range t.insts {
		if in.stopping || !in.ready {
			continue
		}
		if in.version == t.want.Version {
			st.Ready++
		} else if in.version == t.announced.version {
			serving++
		}
	}
	if serving > 0 {
		st.Note = fmt.Sprintf("%s still serving on %d instance(s)", t.announced.version, serving)
	}
	return st
}

// forget drops a stopped instance and wakes the loop.
func (t *track) forget(in *instance) {
	t.mu.Lock()
	t.insts = slices.DeleteFunc(t.insts, func(x *instance) bool { return x == in })
	t.mu.Unlock()
	t.poke()
}

// killAll is the last resort of a Shutdown whose deadline passed.
func (t *track) killAll() {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, in := range t.insts {
		if in.pid > 0 {
			killGroup(in.pid, 9)
		}
	}
}
