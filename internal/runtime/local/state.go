package local

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/shipteam/ship/internal/runtime"
	"github.com/shipteam/ship/internal/spec"
)

// instState is what a restarted ship needs to find a running instance.
type instState struct {
	App       string        `json:"app"`
	Env       string        `json:"env"`
	Track     runtime.Track `json:"track"`
	Version   string        `json:"version"`
	Index     int           `json:"index"`
	PID       int           `json:"pid"`
	Port      int           `json:"port"`
	Started   time.Time     `json:"started"`
	ProcStart uint64        `json:"procStart"` // /proc/PID/stat starttime, against PID reuse
	Stem      string        `json:"stem"`
}

func statePath(dir string, k trackKey, stem string) string {
	return filepath.Join(runDir(dir), safeName(k.app)+"_"+safeName(k.env)+"_"+stem+".json")
}

func writeState(dir string, st instState) error {
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	p := statePath(dir, trackKey{st.App, st.Env, st.Track}, st.Stem)
	tmp := p + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, p)
}

func removeState(dir string, k trackKey, stem string) {
	_ = os.Remove(statePath(dir, k, stem))
}

func readStates(dir string) ([]instState, error) {
	paths, err := filepath.Glob(filepath.Join(runDir(dir), "*.json"))
	if err != nil {
		return nil, err
	}
	var out []instState
	var errs []error
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		var st instState
		if err := json.Unmarshal(b, &st); err != nil || st.PID <= 1 || st.Stem == "" {
			errs = append(errs, fmt.Errorf("%s: malformed state file; removed", p))
			os.Remove(p)
			continue
		}
		out = append(out, st)
	}
	return out, errors.Join(errs...)
}

// Adopt takes over the instances an earlier ship left running in cfg.Dir.
// A live process (same PID and same kernel start time) whose app and env
// still exist is adopted without a restart and announced once it answers
// its health path; dead ones are forgotten; processes of apps or envs that
// are gone are stopped. Call it once, before the first Apply. It waits until
// each adopted instance answered its first health probe, or ctx ends.
func (r *Runtime) Adopt(ctx context.Context, apps []spec.App) error {
	states, err := readStates(r.cfg.Dir)
	if err != nil {
		r.log.Warn("local runtime: reading state files", "err", err)
	}
	byName := map[string]spec.App{}
	for _, a := range apps {
		byName[a.Name] = a
	}
	groups := map[trackKey][]instState{}
	var stops sync.WaitGroup
	for _, st := range states {
		k := trackKey{st.App, st.Env, st.Track}
		ps, err := readStat(st.PID)
		if err != nil || ps.state == 'Z' || ps.startTicks != st.ProcStart || ps.pgrp != st.PID {
			r.log.Info("local runtime: instance of an earlier run is gone", "app", st.App, "env", st.Env, "pid", st.PID)
			removeState(r.cfg.Dir, k, st.Stem)
			continue
		}
		app, ok := byName[st.App]
		if ok && len(app.Environments) > 0 && !slices.Contains(app.Environments, st.Env) {
			ok = false
		}
		if !ok || (st.Track != runtime.Stable && st.Track != runtime.Canary) {
			r.log.Info("local runtime: stopping instance of an app or env that no longer exists", "app", st.App, "env", st.Env, "pid", st.PID)
			stops.Add(1)
			go func() {
				defer stops.Done()
				p := adoptProc(st.PID, st.Port, st.ProcStart, st.Started, r.ctx.Done())
				stopProc(p, 10*time.Second)
				removeState(r.cfg.Dir, k, st.Stem)
			}()
			continue
		}
		groups[k] = append(groups[k], st)
	}

	var adopted []*instance
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return ErrClosed
	}
	for k, sts := range groups {
		if r.tracks[k] != nil {
			continue // Apply came first; its instances win
		}
		w := wantFromStates(sts)
		t := newTrack(r, k, byName[k.app], w)
		for i := range sts {
			in := newInstance(t, sts[i].Index, sts[i].Version, t.app, &sts[i])
			t.insts = append(t.insts, in)
			adopted = append(adopted, in)
		}
		r.tracks[k] = t
		r.goRun(t.loop)
		for _, in := range t.insts {
			r.goRun(in.supervise)
		}
		t.poke()
	}
	r.mu.Unlock()

	// Wait for the first health answers so the router has backends when ship
	// starts serving, and for the stops of vanished apps.
	deadline := time.Now().Add(5 * time.Second)
	settled := func() bool {
		for _, in := range adopted {
			in.t.mu.Lock()
			ok := in.ready || in.failReason != "" || in.stopping
			in.t.mu.Unlock()
			if !ok {
				return false
			}
		}
		return true
	}
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for !settled() && time.Now().Before(deadline) && ctx.Err() == nil {
		select {
		case <-tick.C:
		case <-ctx.Done():
		}
	}
	stops.Wait()
	return ctx.Err()
}

// wantFromStates guesses what a track wanted from what ran: the version
// with the most instances, the newest on a tie. The engine's next Apply
// corrects it.
func wantFromStates(sts []instState) runtime.Want {
	count := map[string]int{}
	newest := map[string]time.Time{}
	for _, st := range sts {
		count[st.Version]++
		if st.Started.After(newest[st.Version]) {
			newest[st.Version] = st.Started
		}
	}
	var best string
	for v, n := range count {
		if best == "" || n > count[best] || (n == count[best] && newest[v].After(newest[best])) {
			best = v
		}
	}
	return runtime.Want{Version: best, Replicas: count[best]}
}
