package local

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"github.com/shipteam/ship/internal/eventually"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/shipteam/ship/internal/runtime"
	"github.com/shipteam/ship/internal/spec"
)

var testappBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "ship-local-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	testappBin = filepath.Join(dir, "testapp")
	out, err := exec.Command("go", "build", "-o", testappBin, "github.com/shipteam/ship/test/testapp").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "build testapp: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// sink records every SetBackends call and checks, at the moment of the call,
// that each announced address answers its health path.
type sink struct {
	mu    sync.Mutex
	calls []call
	cur   map[string]call // by app/track
}

type call struct {
	app          string
	track        runtime.Track
	version      string
	addrs        []string
	unhealthy    []string // announced but not answering 2xx at announcement
	dropsServing []string // dropped addresses that still answered / (drained after, not before)
}

func newSink() *sink { return &sink{cur: map[string]call{}} }

func (s *sink) SetBackends(app, env string, tr runtime.Track, version string, addrs []string) {
	c := call{app: app, track: tr, version: version, addrs: slices.Clone(addrs)}
	for _, a := range addrs {
		if code := get("http://" + a + "/healthz"); code/100 != 2 {
			c.unhealthy = append(c.unhealthy, a)
		}
	}
	s.mu.Lock()
	prev := s.cur[app+"/"+string(tr)]
	s.mu.Unlock()
	for _, a := range prev.addrs {
		if !slices.Contains(addrs, a) && get("http://"+a+"/") == 200 {
			c.dropsServing = append(c.dropsServing, a)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls = append(s.calls, c)
	s.cur[app+"/"+string(tr)] = c
}

// current is the last set announced for the "web" app's track; the tests
// use other app names only where they say so.
func (s *sink) current(tr runtime.Track) call { return s.currentOf("web", tr) }

func (s *sink) currentOf(app string, tr runtime.Track) call {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cur[app+"/"+string(tr)]
}

func (s *sink) history(tr runtime.Track) []call {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []call
	for _, c := range s.calls {
		if c.app == "web" && c.track == tr {
			out = append(out, c)
		}
	}
	return out
}

func get(url string) int {
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return 0
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

func testApp(name string) spec.App {
	return spec.App{
		Name:         name,
		Kind:         spec.KindWeb,
		HealthPath:   "/healthz",
		Environments: []string{"production"},
		Run: spec.Run{
			Command:      testappBin,
			Args:         []string{"--addr", "127.0.0.1:{{.Port}}", "--version-name", "{{.Version}}"},
			StartTimeout: spec.Duration(5 * time.Second),
			StopGrace:    spec.Duration(3 * time.Second),
		},
	}
}

type fixture struct {
	t    *testing.T
	rt   *Runtime
	sink *sink
	dir  string
}

func newFixture(t *testing.T, dir string, tweak func(*Config)) *fixture {
	t.Helper()
	s := newSink()
	cfg := Config{Dir: dir, Backends: s, HealthInterval: 50 * time.Millisecond, HealthyInterval: 300 * time.Millisecond, SuspectInterval: 100 * time.Millisecond}
	if tweak != nil {
		tweak(&cfg)
	}
	rt, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{t: t, rt: rt, sink: s, dir: dir}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		if err := rt.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})
	return f
}

// checkNoTestappLeft fails the test when a testapp process outlives it, and
// kills it as a backstop. Tests run one at a time, so any is a leak.
func checkNoTestappLeft(t *testing.T) {
	t.Cleanup(func() {
		var left []int
		deadline := time.Now().Add(3 * time.Second)
		for {
			left = testappPIDs()
			if len(left) == 0 || time.Now().After(deadline) {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		for _, pid := range left {
			syscall.Kill(pid, syscall.SIGKILL)
			t.Errorf("testapp pid %d still running after the test", pid)
		}
	})
}

func testappPIDs() []int {
	ents, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err != nil {
			continue
		}
		if argv0, _, _ := strings.Cut(string(b), "\x00"); argv0 == testappBin {
			if st, err := readStat(pid); err == nil && st.state != 'Z' {
				out = append(out, pid)
			}
		}
	}
	return out
}

// waitFor polls cond until it holds or the deadline passes.
func (f *fixture) status(app spec.App, tr runtime.Track) runtime.TrackStatus {
	st, err := f.rt.Status(context.Background(), app, "production")
	if err != nil {
		f.t.Fatal(err)
	}
	return st[tr]
}

func (f *fixture) apply(app spec.App, tr runtime.Track, version string, n int) {
	f.t.Helper()
	if err := f.rt.Apply(context.Background(), app, "production", tr, runtime.Want{Version: version, Replicas: n}); err != nil {
		f.t.Fatal(err)
	}
}

func (f *fixture) waitReady(app spec.App, tr runtime.Track, version string, n int) {
	f.t.Helper()
	eventually.True(f.t, 10*time.Second, fmt.Sprintf("%s %s ready %d", tr, version, n), func() bool {
		st := f.status(app, tr)
		c := f.sink.currentOf(app.Name, tr)
		return st.Version == version && st.Ready == n && c.version == version && len(c.addrs) == n
	})
}

// pids lists the PIDs of the track's instances by slot.
func (f *fixture) pids(app spec.App, tr runtime.Track) map[int]int {
	f.rt.mu.Lock()
	t := f.rt.tracks[trackKey{app.Name, "production", tr}]
	f.rt.mu.Unlock()
	out := map[int]int{}
	if t == nil {
		return out
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, in := range t.insts {
		if !in.stopping {
			out[in.idx] = in.pid
		}
	}
	return out
}

func TestInstanceIsAnnouncedOnlyAfterItsHealthPathAnswers(t *testing.T) {
	checkNoTestappLeft(t)
	f := newFixture(t, t.TempDir(), nil)
	app := testApp("web")
	start := time.Now()
	f.apply(app, runtime.Stable, "v1-late", 2) // /healthz answers 503 for its first second
	// The process serves / well before it is healthy; it must not be announced yet.
	eventually.True(t, 5*time.Second, "instances listening", func() bool {
		ps := f.pids(app, runtime.Stable)
		return len(ps) == 2 && ps[0] > 0 && ps[1] > 0
	})
	f.waitReady(app, runtime.Stable, "v1-late", 2)
	if el := time.Since(start); el < time.Second {
		t.Errorf("announced after %s, before the health path could answer", el)
	}
	for _, c := range f.sink.history(runtime.Stable) {
		if len(c.unhealthy) > 0 {
			t.Errorf("announced %v while they did not answer their health path", c.unhealthy)
		}
	}
	for _, a := range f.sink.current(runtime.Stable).addrs {
		if code := get("http://" + a + "/"); code != 200 {
			t.Errorf("GET %s/ = %d", a, code)
		}
	}
	if st := f.status(app, runtime.Canary); st != (runtime.TrackStatus{Track: runtime.Canary}) {
		t.Errorf("canary status %+v, want empty", st)
	}
}

func TestVersionChangeNeverLeavesTheTrackWithoutBackends(t *testing.T) {
	checkNoTestappLeft(t)
	f := newFixture(t, t.TempDir(), nil)
	app := testApp("web")
	f.apply(app, runtime.Stable, "v1", 2)
	f.waitReady(app, runtime.Stable, "v1", 2)
	old := f.pids(app, runtime.Stable)
	f.apply(app, runtime.Stable, "v2-late", 2)
	f.waitReady(app, runtime.Stable, "v2-late", 2)
	eventually.True(t, 10*time.Second, "old instances stopped", func() bool {
		for _, pid := range old {
			if syscall.Kill(pid, 0) == nil {
				if st, err := readStat(pid); err == nil && st.state != 'Z' {
					return false
				}
			}
		}
		return true
	})
	hist := f.sink.history(runtime.Stable)
	seenV1 := false
	for i, c := range hist {
		if c.version == "v1" && len(c.addrs) > 0 {
			seenV1 = true
		}
		if seenV1 && len(c.addrs) == 0 {
			t.Errorf("call %d announced no backends: %+v", i, hist)
		}
	}
	last := hist[len(hist)-1]
	// The switch went straight from the two v1 addresses to the two v2 ones,
	// and the v1 processes still answered when they were dropped.
	if len(last.addrs) != 2 || last.version != "v2-late" {
		t.Fatalf("last call %+v", last)
	}
	if len(last.dropsServing) != 2 {
		t.Errorf("v1 instances were stopped before the switch: only %v still answered", last.dropsServing)
	}
	for _, c := range hist {
		if c.version == "v2-late" && len(c.addrs) < 2 && len(c.addrs) > 0 {
			t.Errorf("partial v2 set announced while v1 was serving: %+v", c)
		}
	}
	if st := f.status(app, runtime.Stable); st.Restarts != 0 || st.Failed || st.Note != "" {
		t.Errorf("status %+v", st)
	}
}

func TestCrashedInstanceRestartsWithBackoffAndIsCounted(t *testing.T) {
	checkNoTestappLeft(t)
	f := newFixture(t, t.TempDir(), nil)
	app := testApp("web")
	f.apply(app, runtime.Stable, "v1", 1)
	f.waitReady(app, runtime.Stable, "v1", 1)
	for i := 1; i <= 2; i++ {
		pid := f.pids(app, runtime.Stable)[0]
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		eventually.True(t, 10*time.Second, "restart", func() bool {
			p := f.pids(app, runtime.Stable)[0]
			st := f.status(app, runtime.Stable)
			return p != pid && p > 0 && st.Ready == 1 && st.Restarts == i
		})
		f.waitReady(app, runtime.Stable, "v1", 1)
	}
	// Backoff doubles: the gap from exit to the next start is at least
	// 100ms, then 200ms.
	lines, err := f.rt.Logs(context.Background(), app, "production", "v1", 100)
	if err != nil {
		t.Fatal(err)
	}
	var exitAt time.Time
	var gaps []time.Duration
	for _, l := range lines {
		switch {
		case l.Stream == "ship" && strings.Contains(l.Text, "exited: killed by signal"):
			exitAt = l.Time
		case l.Stream == "ship" && strings.HasPrefix(l.Text, "started pid") && !exitAt.IsZero():
			gaps = append(gaps, l.Time.Sub(exitAt))
			exitAt = time.Time{}
		}
	}
	if len(gaps) != 2 || gaps[0] < 100*time.Millisecond || gaps[1] < 200*time.Millisecond {
		t.Errorf("restart gaps %v, want >=100ms then >=200ms; lines %+v", gaps, lines)
	}
}

func TestVersionThatExitsAtOnceFailsWithItsStderrLine(t *testing.T) {
	checkNoTestappLeft(t)
	f := newFixture(t, t.TempDir(), nil)
	app := testApp("web")
	f.apply(app, runtime.Stable, "v1", 1)
	f.waitReady(app, runtime.Stable, "v1", 1)
	f.apply(app, runtime.Canary, "v2-crash", 1)
	eventually.True(t, 10*time.Second, "canary failed", func() bool { return f.status(app, runtime.Canary).Failed })
	st := f.status(app, runtime.Canary)
	if !strings.Contains(st.Reason, "exit status 3") || !strings.Contains(st.Reason, "testapp v2-crash: crashing at once as asked") {
		t.Errorf("reason %q lacks the exit status or the stderr line", st.Reason)
	}
	eventually.True(t, 5*time.Second, "failed instances gone", func() bool { return len(f.pids(app, runtime.Canary)) == 0 })
	// It stays failed: no more restarts, the stable track unharmed.
	restarts := st.Restarts
	f.apply(app, runtime.Canary, "v2-crash", 1)
	time.Sleep(300 * time.Millisecond) // would be 2+ more restarts if it kept trying
	if st2 := f.status(app, runtime.Canary); !st2.Failed || st2.Restarts != restarts || len(f.pids(app, runtime.Canary)) != 0 {
		t.Errorf("failed track kept trying: %+v", st2)
	}
	for _, c := range f.sink.history(runtime.Canary) {
		if len(c.addrs) > 0 {
			t.Errorf("crashing version was announced: %+v", c)
		}
	}
	if st := f.status(app, runtime.Stable); st.Ready != 1 || st.Failed {
		t.Errorf("stable %+v", st)
	}
	// Remove clears the failure.
	if err := f.rt.Remove(context.Background(), app, "production", runtime.Canary); err != nil {
		t.Fatal(err)
	}
	if st := f.status(app, runtime.Canary); st.Failed {
		t.Errorf("still failed after Remove: %+v", st)
	}
}

func TestVersionNeverHealthyFailsAfterStartTimeout(t *testing.T) {
	checkNoTestappLeft(t)
	f := newFixture(t, t.TempDir(), nil)
	app := testApp("web")
	app.Run.StartTimeout = spec.Duration(time.Second)
	start := time.Now()
	f.apply(app, runtime.Canary, "v2-unhealthy", 2)
	eventually.True(t, 10*time.Second, "failed", func() bool { return f.status(app, runtime.Canary).Failed })
	if el := time.Since(start); el < time.Second {
		t.Errorf("failed after %s, before the start timeout", el)
	}
	st := f.status(app, runtime.Canary)
	if want := "not healthy after 1s: GET /healthz → 503"; st.Reason != want {
		t.Errorf("reason %q, want %q", st.Reason, want)
	}
	eventually.True(t, 10*time.Second, "instances stopped", func() bool { return len(f.pids(app, runtime.Canary)) == 0 })
	for _, c := range f.sink.history(runtime.Canary) {
		if len(c.addrs) > 0 {
			t.Errorf("unhealthy version announced: %+v", c)
		}
	}
}

func TestScaleChangesCountWithoutTouchingOtherInstances(t *testing.T) {
	checkNoTestappLeft(t)
	f := newFixture(t, t.TempDir(), nil)
	app := testApp("web")
	f.apply(app, runtime.Stable, "v1", 1)
	f.waitReady(app, runtime.Stable, "v1", 1)
	first := f.pids(app, runtime.Stable)[0]
	f.apply(app, runtime.Stable, "v1", 3)
	f.waitReady(app, runtime.Stable, "v1", 3)
	if p := f.pids(app, runtime.Stable)[0]; p != first {
		t.Errorf("scale up replaced instance 0: pid %d -> %d", first, p)
	}
	three := f.pids(app, runtime.Stable)
	f.apply(app, runtime.Stable, "v1", 1)
	f.waitReady(app, runtime.Stable, "v1", 1)
	if p := f.pids(app, runtime.Stable); len(p) != 1 || p[0] != first {
		t.Errorf("after scale down: %v, want only slot 0 = pid %d", p, first)
	}
	eventually.True(t, 10*time.Second, "scaled-down processes gone", func() bool {
		for _, slot := range []int{1, 2} {
			if st, err := readStat(three[slot]); err == nil && st.state != 'Z' {
				return false
			}
		}
		return true
	})
	// Removed from the router while they still served: drained afterwards.
	hist := f.sink.history(runtime.Stable)
	last := hist[len(hist)-1]
	if len(last.dropsServing) != 2 {
		t.Errorf("scale down stopped instances before dropping them from the router: %+v", last)
	}
	if st := f.status(app, runtime.Stable); st.Desired != 1 || st.Ready != 1 || st.Restarts != 0 {
		t.Errorf("status %+v", st)
	}
}

func TestRemoveDrainsInFlightRequest(t *testing.T) {
	checkNoTestappLeft(t)
	f := newFixture(t, t.TempDir(), nil)
	app := testApp("web")
	f.apply(app, runtime.Canary, "v2", 1)
	f.waitReady(app, runtime.Canary, "v2", 1)
	addr := f.sink.current(runtime.Canary).addrs[0]
	resp, err := http.Get("http://" + addr + "/?sleep=700ms") // headers now, body after 700ms
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	removed := make(chan error, 1)
	go func() { removed <- f.rt.Remove(context.Background(), app, "production", runtime.Canary) }()
	body, err := io.ReadAll(resp.Body)
	if err != nil || string(body) != "testapp v2\n" {
		t.Fatalf("in-flight request cut: %q, %v", body, err)
	}
	if err := <-removed; err != nil {
		t.Fatal(err)
	}
	if c := f.sink.current(runtime.Canary); len(c.addrs) != 0 {
		t.Errorf("still announced after Remove: %+v", c)
	}
	if st := f.status(app, runtime.Canary); st != (runtime.TrackStatus{Track: runtime.Canary}) {
		t.Errorf("status after Remove %+v", st)
	}
	if code := get("http://" + addr + "/healthz"); code != 0 {
		t.Errorf("instance still answers after Remove: %d", code)
	}
	lines, _ := f.rt.Logs(context.Background(), app, "production", "v2", 50)
	if !slices.ContainsFunc(lines, func(l runtime.LogLine) bool { return strings.Contains(l.Text, "stopped by SIGTERM (exit status 0)") }) {
		t.Errorf("no graceful stop noted: %+v", lines)
	}
}

// TestRemoveReturnsWhenTheCallersContextEnds: the caller's ctx owns a
// Remove's deadline (runtime.Runtime.Remove). Remove returns with ctx's
// error when ctx ends mid-drain; the drain it started goes on and the
// in-flight request is still answered.
func TestRemoveReturnsWhenTheCallersContextEnds(t *testing.T) {
	checkNoTestappLeft(t)
	f := newFixture(t, t.TempDir(), nil)
	app := testApp("web")
	f.apply(app, runtime.Canary, "v2", 1)
	f.waitReady(app, runtime.Canary, "v2", 1)
	addr := f.sink.current(runtime.Canary).addrs[0]
	resp, err := http.Get("http://" + addr + "/?sleep=1500ms")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	err = f.rt.Remove(ctx, app, "production", runtime.Canary)
	if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > time.Second {
		t.Errorf("Remove = %v after %s, want the caller's deadline after ~200ms", err, time.Since(start).Round(time.Millisecond))
	}
	if body, err := io.ReadAll(resp.Body); err != nil || string(body) != "testapp v2\n" {
		t.Fatalf("in-flight request cut: %q, %v", body, err)
	}
	if err := f.rt.Remove(context.Background(), app, "production", runtime.Canary); err != nil {
		t.Fatalf("Remove again: %v", err)
	}
}

func TestAdoptAfterShipRestartKeepsTheSameProcesses(t *testing.T) {
	checkNoTestappLeft(t)
	dir := t.TempDir()
	app := testApp("web")
	gone := testApp("gone")

	a := newFixture(t, dir, nil)
	a.apply(app, runtime.Stable, "v1", 2)
	a.apply(gone, runtime.Stable, "v1", 1)
	a.waitReady(app, runtime.Stable, "v1", 2)
	eventually.True(t, 10*time.Second, "gone ready", func() bool { return a.status(gone, runtime.Stable).Ready == 1 })
	pids := a.pids(app, runtime.Stable)
	gonePID := a.pids(gone, runtime.Stable)[0]
	addrs := a.sink.current(runtime.Stable).addrs
	a.rt.abandon() // ship dies: goroutines end, processes stay

	b := newFixture(t, dir, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	start := time.Now()
	if err := b.rt.Adopt(ctx, []spec.App{app}); err != nil {
		t.Fatal(err)
	}
	t.Logf("Adopt of 2 live instances (+1 stopped): %s", time.Since(start).Round(time.Millisecond))
	// Adopt returns once the adopted instances answered: already announced.
	st := b.status(app, runtime.Stable)
	if st.Version != "v1" || st.Ready != 2 || st.Desired != 2 || st.Restarts != 0 {
		t.Errorf("after adopt: %+v", st)
	}
	if got := b.pids(app, runtime.Stable); !mapsEqual(got, pids) {
		t.Errorf("pids after adopt %v, before %v", got, pids)
	}
	if got := b.sink.current(runtime.Stable).addrs; !slices.Equal(got, addrs) {
		t.Errorf("announced %v, before %v", got, addrs)
	}
	if s, err := readStat(gonePID); err == nil && s.state != 'Z' {
		t.Errorf("process of a vanished app (pid %d) still runs", gonePID)
	}
	// The engine's Apply after restart changes nothing.
	b.apply(app, runtime.Stable, "v1", 2)
	b.waitReady(app, runtime.Stable, "v1", 2)
	if got := b.pids(app, runtime.Stable); !mapsEqual(got, pids) {
		t.Errorf("Apply after adopt restarted instances: %v, before %v", got, pids)
	}
	// Output of the earlier run is still there, and the adoption noted.
	lines, _ := b.rt.Logs(context.Background(), app, "production", "", 100)
	if !slices.ContainsFunc(lines, func(l runtime.LogLine) bool { return strings.Contains(l.Text, "testapp v1 listening on") }) ||
		!slices.ContainsFunc(lines, func(l runtime.LogLine) bool { return strings.Contains(l.Text, "adopted pid") }) {
		t.Errorf("logs after restart: %+v", lines)
	}
	// Dead instances of an earlier run are cleaned, not adopted.
	b.rt.abandon()
	for _, pid := range pids {
		syscall.Kill(pid, syscall.SIGKILL)
	}
	eventually.True(t, 5*time.Second, "killed", func() bool {
		for _, pid := range pids {
			if s, err := readStat(pid); err == nil && s.state != 'Z' {
				return false
			}
		}
		return true
	})
	c := newFixture(t, dir, nil)
	if err := c.rt.Adopt(ctx, []spec.App{app}); err != nil {
		t.Fatal(err)
	}
	if st := c.status(app, runtime.Stable); st.Version != "" {
		t.Errorf("dead instances adopted: %+v", st)
	}
	if files, _ := filepath.Glob(filepath.Join(dir, "run", "*.json")); len(files) != 0 {
		t.Errorf("state files of dead instances left: %v", files)
	}
}

func mapsEqual(a, b map[int]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func TestShutdownLeavesNoProcess(t *testing.T) {
	checkNoTestappLeft(t)
	dir := t.TempDir()
	f := newFixture(t, dir, nil)
	app := testApp("web")
	start := time.Now()
	f.apply(app, runtime.Stable, "v1", 2)
	f.apply(app, runtime.Canary, "v2", 1)
	f.waitReady(app, runtime.Stable, "v1", 2)
	f.waitReady(app, runtime.Canary, "v2", 1)
	t.Logf("3 instances from Apply to announced: %s", time.Since(start).Round(time.Millisecond))
	var pids []int
	for _, tr := range runtime.Tracks {
		for _, p := range f.pids(app, tr) {
			pids = append(pids, p)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	start = time.Now()
	if err := f.rt.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("Shutdown of 3 instances: %s", time.Since(start).Round(time.Millisecond))
	for _, pid := range pids {
		if s, err := readStat(pid); err == nil && s.state != 'Z' {
			t.Errorf("pid %d still running after Shutdown", pid)
		}
	}
	if files, _ := filepath.Glob(filepath.Join(dir, "run", "*")); len(files) != 0 {
		t.Errorf("state files left: %v", files)
	}
	if err := f.rt.Apply(ctx, app, "production", runtime.Stable, runtime.Want{Version: "v1", Replicas: 1}); err != ErrClosed {
		t.Errorf("Apply after Shutdown: %v", err)
	}
}

func TestPortTakenBetweenPickAndBindIsRetriedOnAnotherPort(t *testing.T) {
	checkNoTestappLeft(t)
	squatter, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer squatter.Close()
	taken := squatter.Addr().(*net.TCPAddr).Port
	var mu sync.Mutex
	picks := 0
	f := newFixture(t, t.TempDir(), func(c *Config) {
		c.pickPort = func() (int, error) {
			mu.Lock()
			defer mu.Unlock()
			picks++
			if picks == 1 {
				return taken, nil
			}
			return freePort()
		}
	})
	app := testApp("web")
	f.apply(app, runtime.Stable, "v1", 1)
	f.waitReady(app, runtime.Stable, "v1", 1)
	if a := f.sink.current(runtime.Stable).addrs[0]; a == "127.0.0.1:"+strconv.Itoa(taken) {
		t.Errorf("announced the squatter's port %s", a)
	}
	if st := f.status(app, runtime.Stable); st.Restarts != 0 || st.Failed {
		t.Errorf("a port conflict counted as a crash: %+v", st)
	}
	lines, _ := f.rt.Logs(context.Background(), app, "production", "v1", 100)
	if !slices.ContainsFunc(lines, func(l runtime.LogLine) bool { return strings.Contains(l.Text, "address already in use") }) ||
		!slices.ContainsFunc(lines, func(l runtime.LogLine) bool { return strings.Contains(l.Text, "was taken; retrying") }) {
		t.Errorf("conflict not in the logs: %+v", lines)
	}
}

func TestLogsReturnRecentLinesByVersionAndSurviveRestart(t *testing.T) {
	checkNoTestappLeft(t)
	dir := t.TempDir()
	f := newFixture(t, dir, nil)
	app := testApp("web")
	f.apply(app, runtime.Stable, "v1", 1)
	f.apply(app, runtime.Canary, "v2", 1)
	f.waitReady(app, runtime.Stable, "v1", 1)
	f.waitReady(app, runtime.Canary, "v2", 1)
	has := func(lines []runtime.LogLine, stream, version, text string) bool {
		return slices.ContainsFunc(lines, func(l runtime.LogLine) bool {
			return l.Stream == stream && l.Version == version && strings.Contains(l.Text, text)
		})
	}
	eventually.True(t, 5*time.Second, "stdout lines", func() bool {
		lines, _ := f.rt.Logs(context.Background(), app, "production", "", 100)
		return has(lines, "stdout", "v1", "testapp v1 listening on") && has(lines, "stdout", "v2", "testapp v2 listening on")
	})
	lines, _ := f.rt.Logs(context.Background(), app, "production", "v2", 100)
	for _, l := range lines {
		if l.Version != "v2" || l.Instance != "canary-0" {
			t.Errorf("filter by version returned %+v", l)
		}
	}
	if !has(lines, "ship", "v2", "ready on port") {
		t.Errorf("no lifecycle note: %+v", lines)
	}
	if got, _ := f.rt.Logs(context.Background(), app, "production", "", 2); len(got) != 2 {
		t.Errorf("n=2 returned %d lines", len(got))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := f.rt.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	g := newFixture(t, dir, nil)
	lines, _ = g.rt.Logs(context.Background(), app, "production", "v1", 100)
	if !has(lines, "stdout", "v1", "testapp v1 listening on") || !has(lines, "stdout", "v1", "testapp v1: stopped") || !has(lines, "ship", "v1", "stopped by SIGTERM") {
		t.Errorf("logs after a restart: %+v", lines)
	}
}

func TestLogFileRotatesOnceAtTheCap(t *testing.T) {
	dir := t.TempDir()
	s := newLogStore(Config{Dir: dir, MaxLogBytes: 1000, LogLines: 5})
	l, err := s.create(logMeta{App: "a", Env: "e", Track: runtime.Stable, Instance: "stable-0", Version: "v1", Stem: "stable-0-v1-1"})
	if err != nil {
		t.Fatal(err)
	}
	out, err := os.OpenFile(l.path("stdout"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	w := bufio.NewWriter(out)
	for i := 0; i < 100; i++ {
		fmt.Fprintf(w, "line %03d of some output\n", i) // 24 bytes: 2400 in all
	}
	w.Flush()
	l.poll()
	if fi, err := os.Stat(l.path("stdout")); err != nil || fi.Size() != 0 {
		t.Errorf("not truncated after rotation: %v %v", fi.Size(), err)
	}
	if fi, err := os.Stat(l.path("stdout") + ".1"); err != nil || fi.Size() != 2400 {
		t.Errorf("rotated copy: %v", err)
	}
	fmt.Fprintf(out, "after rotation\npartial")
	l.poll()
	got := l.snapshot()
	if len(got) != 5 || got[4].Text != "after rotation" || got[3].Text != "line 099 of some output" {
		t.Errorf("ring %+v", got)
	}
	fmt.Fprintf(out, " line\n")
	l.poll()
	if got := l.snapshot(); got[4].Text != "partial line" {
		t.Errorf("partial line not joined: %+v", got[4])
	}
}

func TestApplyRefusesBadInput(t *testing.T) {
	f := newFixture(t, t.TempDir(), nil)
	app := testApp("web")
	noCmd := testApp("web")
	noCmd.Run.Command = ""
	worker := testApp("web")
	worker.Kind = spec.KindWorker
	for _, tc := range []struct {
		app  spec.App
		env  string
		want runtime.Want
		msg  string
	}{
		{app, "staging", runtime.Want{Version: "v1", Replicas: 1}, `no environment "staging"`},
		{noCmd, "production", runtime.Want{Version: "v1", Replicas: 1}, "run.command is empty"},
		{worker, "production", runtime.Want{Version: "v1", Replicas: 1}, "not supported"},
		{app, "production", runtime.Want{Version: "", Replicas: 1}, "needs a version"},
		{app, "production", runtime.Want{Version: "v1", Replicas: -1}, "replicas >= 0"},
	} {
		err := f.rt.Apply(context.Background(), tc.app, tc.env, runtime.Stable, tc.want)
		if err == nil || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("Apply(%s, %+v) = %v, want %q", tc.env, tc.want, err, tc.msg)
		}
	}
}

func TestTemplatedCommandRunsFromTheSpecDirectory(t *testing.T) {
	checkNoTestappLeft(t)
	specDir := t.TempDir()
	if err := os.Symlink(testappBin, filepath.Join(specDir, "testapp")); err != nil {
		t.Fatal(err)
	}
	f := newFixture(t, t.TempDir(), nil)
	app := testApp("web")
	app.Source = filepath.Join(specDir, "web.yaml")
	app.Run.Command = "./testapp"
	app.Run.Args = nil
	app.Run.Env = map[string]string{"TESTAPP_ADDR": "127.0.0.1:{{.Port}}", "TESTAPP_VERSION": "{{.App}}-{{.Version}}-{{.Env}}"}
	f.apply(app, runtime.Stable, "v9", 1)
	f.waitReady(app, runtime.Stable, "v9", 1)
	addr := f.sink.current(runtime.Stable).addrs[0]
	resp, err := http.Get("http://" + addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if v := resp.Header.Get("X-Version"); v != "web-v9-production" {
		t.Errorf("X-Version %q: templates not rendered", v)
	}
}

func TestConfigValidateJoinsProblems(t *testing.T) {
	err := Config{HealthInterval: -1}.Validate()
	if err == nil || !strings.Contains(err.Error(), "Dir is required") || !strings.Contains(err.Error(), "Backends is required") || !strings.Contains(err.Error(), "HealthInterval is negative") {
		t.Errorf("Validate: %v", err)
	}
}

func TestInstanceThatStopsAnsweringLeavesTheRouterAndReturns(t *testing.T) {
	checkNoTestappLeft(t)
	f := newFixture(t, t.TempDir(), func(c *Config) { c.ProbeTimeout = 200 * time.Millisecond })
	app := testApp("web")
	f.apply(app, runtime.Stable, "v1", 2)
	f.waitReady(app, runtime.Stable, "v1", 2)
	pid := f.pids(app, runtime.Stable)[1]
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil { // alive but silent
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Kill(pid, syscall.SIGCONT) })
	eventually.True(t, 10*time.Second, "frozen instance out of the router", func() bool {
		return len(f.sink.current(runtime.Stable).addrs) == 1 && f.status(app, runtime.Stable).Ready == 1
	})
	lines, _ := f.rt.Logs(context.Background(), app, "production", "v1", 100)
	if !slices.ContainsFunc(lines, func(l runtime.LogLine) bool {
		return l.Instance == "stable-1" && strings.HasPrefix(l.Text, "out of the router: GET /healthz")
	}) {
		t.Errorf("not reported in the logs: %+v", lines)
	}
	syscall.Kill(pid, syscall.SIGCONT)
	f.waitReady(app, runtime.Stable, "v1", 2)
	if p := f.pids(app, runtime.Stable)[1]; p != pid {
		t.Errorf("recovered instance was replaced: pid %d -> %d", pid, p)
	}
}

func TestStopKillsAnInstanceThatIgnoresSIGTERMAfterTheGrace(t *testing.T) {
	checkNoTestappLeft(t)
	f := newFixture(t, t.TempDir(), nil)
	app := testApp("web")
	app.Run.StopGrace = spec.Duration(300 * time.Millisecond)
	f.apply(app, runtime.Stable, "v1-stubborn", 1)
	f.waitReady(app, runtime.Stable, "v1-stubborn", 1)
	pid := f.pids(app, runtime.Stable)[0]
	start := time.Now()
	if err := f.rt.Remove(context.Background(), app, "production", runtime.Stable); err != nil {
		t.Fatal(err)
	}
	if el := time.Since(start); el < 300*time.Millisecond {
		t.Errorf("stopped after %s, before the grace", el)
	}
	if s, err := readStat(pid); err == nil && s.state != 'Z' {
		t.Errorf("pid %d survived", pid)
	}
	lines, _ := f.rt.Logs(context.Background(), app, "production", "", 100)
	if !slices.ContainsFunc(lines, func(l runtime.LogLine) bool {
		return strings.Contains(l.Text, "killed with SIGKILL after a 300ms grace")
	}) {
		t.Errorf("kill not noted: %+v", lines)
	}
}

func TestFailedVersionChangeKeepsTheOldVersionServing(t *testing.T) {
	checkNoTestappLeft(t)
	f := newFixture(t, t.TempDir(), nil)
	app := testApp("web")
	f.apply(app, runtime.Stable, "v1", 2)
	f.waitReady(app, runtime.Stable, "v1", 2)
	before := f.pids(app, runtime.Stable)
	addrs := f.sink.current(runtime.Stable).addrs
	f.apply(app, runtime.Stable, "v2-crash", 2)
	eventually.True(t, 10*time.Second, "v2 failed", func() bool { return f.status(app, runtime.Stable).Failed })
	st := f.status(app, runtime.Stable)
	if st.Version != "v2-crash" || st.Ready != 0 || st.Note != "v1 still serving on 2 instance(s)" {
		t.Errorf("status %+v", st)
	}
	if c := f.sink.current(runtime.Stable); c.version != "v1" || !slices.Equal(c.addrs, addrs) {
		t.Errorf("router lost the old version: %+v", c)
	}
	// The engine rolls back: the running v1 instances are simply kept.
	f.apply(app, runtime.Stable, "v1", 2)
	f.waitReady(app, runtime.Stable, "v1", 2)
	if got := f.pids(app, runtime.Stable); !mapsEqual(got, before) {
		t.Errorf("rollback restarted v1: %v, before %v", got, before)
	}
	if st := f.status(app, runtime.Stable); st.Failed || st.Reason != "" || st.Restarts != 0 {
		t.Errorf("after rollback %+v", st)
	}
}

func TestLeaderCrashKillsTheRestOfItsProcessGroup(t *testing.T) {
	checkNoTestappLeft(t)
	f := newFixture(t, t.TempDir(), nil)
	app := testApp("web")
	// A wrapper shell that keeps testapp as its child ("; true" stops sh from exec'ing it).
	app.Run.Command = "/bin/sh"
	app.Run.Args = []string{"-c", testappBin + " --addr 127.0.0.1:{{.Port}} --version-name {{.Version}}; true"}
	f.apply(app, runtime.Stable, "v1", 1)
	f.waitReady(app, runtime.Stable, "v1", 1)
	shPID := f.pids(app, runtime.Stable)[0]
	var child []int
	eventually.True(t, 5*time.Second, "testapp child", func() bool { child = testappPIDs(); return len(child) == 1 })
	if st, err := readStat(child[0]); err != nil || st.pgrp != shPID {
		t.Fatalf("child %d not in group %d: %+v %v", child[0], shPID, st, err)
	}
	if err := syscall.Kill(shPID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	eventually.True(t, 10*time.Second, "orphaned child killed and instance restarted", func() bool {
		st, err := readStat(child[0])
		gone := err != nil || st.state == 'Z'
		return gone && f.pids(app, runtime.Stable)[0] != shPID && f.status(app, runtime.Stable).Ready == 1
	})
	if st := f.status(app, runtime.Stable); st.Restarts != 1 {
		t.Errorf("status %+v", st)
	}
}
