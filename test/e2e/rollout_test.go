package e2e

import (
	"context"
	"encoding/json"
	"github.com/shipteam/ship/internal/eventually"
	"math"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/shipteam/ship/internal/api"
	"github.com/shipteam/ship/internal/engine"
	"github.com/shipteam/ship/internal/release"
)

func (s *ship) status() engine.AppStatus {
	s.t.Helper()
	var st engine.AppStatus
	r := s.mustCLI("status", "web", "--output", "json")
	if err := json.Unmarshal([]byte(r.Stdout), &st); err != nil {
		s.t.Fatalf("status json: %v\n%s", err, r.Stdout)
	}
	return st
}

// serving waits until the router answers with version (stable ready).
func (s *ship) serving(version string) {
	s.t.Helper()
	c := &http.Client{Timeout: 2 * time.Second}
	eventually.True(s.t, 20*time.Second, "the app serves "+version, func() bool {
		status, v, err := get(c, s.endpoint)
		return err == nil && status == 200 && v == version
	})
}

// TestLifecycleUnderLoadLosesNoRequest walks deploy, a 1% canary (whose
// share is measured), promote, abort, rollback and scale while a steady
// load runs through the router, and requires every request to succeed.
func TestLifecycleUnderLoadLosesNoRequest(t *testing.T) {
	s := newShip(t, specOpts{})
	r := s.mustCLI("deploy", "web", "v1", "--wait")
	if !strings.Contains(r.Stdout, "succeeded") {
		t.Fatalf("deploy v1 output lacks the outcome:\n%s", r)
	}
	s.serving("v1")

	l := startLoad(s.endpoint, 4)
	defer l.halt()

	// A canary held at 1%: the CLI returns once it is there.
	r = s.mustCLI("deploy", "web", "v2", "--canary", "1%", "--wait")
	st := s.status()
	if st.Weight != 100 || st.Canary.Version != "v2" || st.Stable.Version != "v1" || st.Release == nil || st.Release.State != release.Paused {
		t.Fatalf("after --canary 1%%: %+v\n%s", st, r)
	}
	if st.Endpoint != s.endpoint || st.Stable.Ready != 2 || st.Stable.Desired != 2 || st.Canary.Ready < 1 {
		t.Fatalf("status endpoint/ready: %+v", st)
	}

	// The share at 1%: count 20,000 requests of our own, sequentially
	// interleaved with the background load (all go through one split).
	before := l.versions()
	canary, total := measureShare(t, s.endpoint, 20000)
	// Every request in the window went through the one split, the
	// background load's too: count them all.
	after := l.versions()
	for v, n := range after {
		total += int(n - before[v])
	}
	canary += int(after["v2"] - before["v2"])
	share := float64(canary) / float64(total)
	t.Logf("canary share at 1%%: %.3f%% (%d of %d requests)", share*100, canary, total)
	if math.Abs(share-0.01) > 0.002 {
		t.Errorf("canary share %.3f%%, want 1%% ± 0.2 points", share*100)
	}

	r = s.mustCLI("promote", "web", "--wait")
	if !strings.Contains(r.Stdout, "succeeded") {
		t.Fatalf("promote output:\n%s", r)
	}
	if st := s.status(); st.Stable.Version != "v2" || st.Weight != 0 {
		t.Fatalf("after promote: %+v", st)
	}

	// Abort a held canary: weight 0 at once, v2 keeps serving.
	s.mustCLI("deploy", "web", "v3", "--canary", "10", "--wait")
	r = s.mustCLI("abort", "web")
	if st := s.status(); st.Weight != 0 || st.Stable.Version != "v2" || st.Release.State != release.Aborted {
		t.Fatalf("after abort: %+v\n%s", st, r)
	}

	// Rollback to the release before v2.
	r = s.mustCLI("rollback", "web", "--wait")
	if st := s.status(); st.Stable.Version != "v1" {
		t.Fatalf("after rollback: %+v\n%s", st, r)
	}

	s.mustCLI("scale", "web", "3")
	eventually.True(t, 20*time.Second, "3 stable instances ready", func() bool {
		st := s.status()
		return st.Stable.Ready == 3 && st.Stable.Desired == 3
	})
	s.mustCLI("scale", "web", "1")
	eventually.True(t, 20*time.Second, "1 stable instance", func() bool {
		st := s.status()
		return st.Stable.Ready == 1 && st.Stable.Desired == 1
	})

	l.halt()
	t.Logf("load: %d requests, %d failed, by version %v", l.total.Load(), l.failed.Load(), l.versions())
	if l.failed.Load() != 0 {
		t.Errorf("%d of %d requests failed; first: %v", l.failed.Load(), l.total.Load(), l.samples)
	}
	if l.total.Load() < 1000 {
		t.Errorf("only %d requests in the load: not a real test", l.total.Load())
	}

	// History keeps every release, newest first, with actor and source.
	var hist []release.Release
	r = s.mustCLI("history", "web", "--output", "json")
	if err := json.Unmarshal([]byte(r.Stdout), &hist); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, h := range hist {
		got = append(got, h.Version+":"+string(h.State))
		if h.Actor != "admin" || h.Source != release.SourceCLI {
			t.Errorf("release %d actor %q source %q", h.ID, h.Actor, h.Source)
		}
	}
	if want := "v1:succeeded v3:aborted v2:succeeded v1:succeeded"; strings.Join(got, " ") != want {
		t.Errorf("history %q, want %q", strings.Join(got, " "), want)
	}
}

// measureShare sends n requests on 4 connections and returns how many the
// canary answered (X-Ship-Track: canary) and how many were answered.
func measureShare(t *testing.T, endpoint string, n int) (canary, total int) {
	t.Helper()
	type res struct{ canary, total int }
	out := make(chan res, 4)
	for w := range 4 {
		go func() {
			c := &http.Client{Timeout: 5 * time.Second}
			var r res
			for i := w; i < n; i += 4 {
				resp, err := c.Get("http://" + endpoint + "/")
				if err != nil {
					continue
				}
				resp.Body.Close()
				r.total++
				if resp.Header.Get("X-Ship-Track") == "canary" {
					r.canary++
				}
			}
			out <- r
		}()
	}
	var sum res
	for range 4 {
		r := <-out
		sum.canary += r.canary
		sum.total += r.total
	}
	if sum.total < n*99/100 {
		t.Fatalf("only %d of %d requests answered", sum.total, n)
	}
	return sum.canary, sum.total
}

// TestBadCanaryIsTurnedOffWithinTwoSeconds deploys a version that fails
// half its requests and measures, from the load's own view, the time from
// its first error to the last answer it gave (the weight going to 0).
func TestBadCanaryIsTurnedOffWithinTwoSeconds(t *testing.T) {
	s := newShip(t, specOpts{Steps: "[{weight: 20, pause: 5s}, {weight: 100}]"})
	s.mustCLI("deploy", "web", "v1", "--wait")
	s.serving("v1")
	l := startLoad(s.endpoint, 4)
	defer l.halt()

	r := s.cli("deploy", "web", "v2-fail50", "--wait")
	if r.Code != 1 {
		t.Fatalf("deploy of a failing canary should exit 1: %s", r)
	}
	st := s.status()
	if st.Weight != 0 || st.Stable.Version != "v1" || st.Release == nil ||
		(st.Release.State != release.Aborted && st.Release.State != release.Failed) {
		t.Fatalf("after the bad canary: %+v", st)
	}
	t.Logf("release ended %s: %s", st.Release.State, st.Release.Reason)
	// A few more stable answers so "last canary answer" is settled.
	time.Sleep(200 * time.Millisecond)
	l.halt()

	l.mu.Lock()
	first, last := l.firstOf["v2-fail50"], l.lastOf["v2-fail50"]
	l.mu.Unlock()
	if first.IsZero() {
		t.Fatal("the canary never answered with an error: the load did not reach it")
	}
	off := last.Sub(first)
	t.Logf("bad canary: first error to weight 0 (last canary answer): %s; canary answered %d requests",
		off.Round(time.Millisecond), l.versions()["v2-fail50"])
	if off >= 2*time.Second {
		t.Errorf("bad canary kept traffic for %s after its first error, want < 2s", off)
	}
	if l.versions()["v1"] == 0 {
		t.Error("stable served nothing")
	}
}

// TestKilledShipFinishesTheReleaseAfterRestart SIGKILLs ship serve in the
// middle of a canary and starts it again on the same data dir.
func TestKilledShipFinishesTheReleaseAfterRestart(t *testing.T) {
	s := newShip(t, specOpts{Steps: "[{weight: 1, pause: 1s}, {weight: 50, pause: 2s}, {weight: 100}]"})
	s.mustCLI("deploy", "web", "v1", "--wait")
	s.serving("v1")
	l := startLoad(s.endpoint, 3)
	defer l.halt()

	ctx := context.Background()
	rel, err := s.client.Deploy(ctx, "web", api.DeployRequest{Version: "v2"})
	if err != nil {
		t.Fatal(err)
	}
	eventually.True(t, 20*time.Second, "the canary reaches 50%", func() bool {
		r, err := s.client.Release(ctx, rel.ID)
		if err != nil {
			t.Fatal(err)
		}
		if r.State.Terminal() {
			t.Fatalf("release ended before the kill: %+v", r)
		}
		return r.Weight >= 5000
	})
	before, err := s.client.History(ctx, "web", "", 100)
	if err != nil {
		t.Fatal(err)
	}
	// Which instances serve each version before the kill.
	l.startTrace()
	// 200 answers per version: the router's round-robin has reached every
	// instance of each track by then.
	eventually.True(t, 10*time.Second, "200 answers each from v1 and v2 before the kill", func() bool {
		seen := map[string]int{}
		for _, a := range l.answers() {
			if a.ok && a.pid != "" {
				seen[a.ver]++
			}
		}
		return seen["v1"] >= 200 && seen["v2"] >= 200
	})
	prePIDs := map[string]map[string]bool{"v1": {}, "v2": {}}
	for _, a := range l.answers() {
		if a.ok && prePIDs[a.ver] != nil {
			prePIDs[a.ver][a.pid] = true
		}
	}
	s.kill()
	killed := time.Now() // the router died with ship: failures from here on are expected...
	s.start()

	final := s.waitRelease(rel.ID, 40*time.Second)
	finished := time.Now()
	if final.State != release.Succeeded {
		t.Fatalf("release after restart: %+v", final)
	}
	// ...until the restarted ship's router answers again; from its first
	// success until the release has finished, not one request may fail.
	var back time.Time
	var failedAfter, okAfter, failedGap int
	var samples []string
	adopted := map[string]int{} // answers after the restart from a pre-kill instance, per version
	for _, a := range l.answers() {
		if a.sent.Before(killed) || a.at.After(finished) {
			continue
		}
		if back.IsZero() {
			if !a.ok {
				failedGap++
				continue
			}
			back = a.at
		}
		if !a.ok {
			failedAfter++
			if len(samples) < 5 {
				samples = append(samples, a.desc)
			}
			continue
		}
		okAfter++
		if a.ver == "v1" && !prePIDs["v1"][a.pid] {
			t.Errorf("after the restart v1 is served by pid %s, not one of the instances before the kill %v: not adopted", a.pid, prePIDs["v1"])
			prePIDs["v1"][a.pid] = true // report each once
		}
		if prePIDs[a.ver][a.pid] {
			adopted[a.ver]++
		}
	}
	if back.IsZero() {
		t.Fatal("no request succeeded between the restart and the end of the release")
	}
	t.Logf("router back %s after the kill (%d requests failed meanwhile); then %d requests ok, %d failed until the release finished; answers from adopted instances: %v",
		back.Sub(killed).Round(time.Millisecond), failedGap, okAfter, failedAfter, adopted)
	if failedAfter > 0 {
		t.Errorf("%d requests failed after ship was back, before the release finished: %v", failedAfter, samples)
	}
	if adopted["v2"] == 0 {
		t.Errorf("no answer after the restart from the canary instances before the kill %v: the canary was not adopted", prePIDs["v2"])
	}
	s.serving("v2")
	after, err := s.client.History(ctx, "web", "", 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(after) != len(before) {
		t.Fatalf("history had %d releases before the kill, %d after", len(before), len(after))
	}
	for i := range before {
		if after[i].ID != before[i].ID || after[i].Version != before[i].Version || !after[i].Created.Equal(before[i].Created) {
			t.Errorf("history entry %d changed: %+v -> %+v", i, before[i], after[i])
		}
	}
	// The event log of the release is complete and ordered across the restart.
	var types []string
	var lastID int64
	ectx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	err = s.client.Events(ectx, api.EventsQuery{EventFilter: api.EventFilter{ReleaseID: rel.ID}, After: 0}, func(ev release.Event) error {
		if ev.ID <= lastID {
			t.Errorf("event ids not increasing: %d after %d", ev.ID, lastID)
		}
		lastID = ev.ID
		types = append(types, string(ev.Type))
		if ev.State == release.Succeeded {
			return api.ErrStop
		}
		return nil
	})
	if err != nil {
		t.Fatalf("events: %v (got %v)", err, types)
	}
	t.Logf("events of release %d: %v", rel.ID, types)
	if len(types) < 3 {
		t.Errorf("too few events: %v", types)
	}
}
