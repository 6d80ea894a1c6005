package local

import (
	"context"
	"fmt"
	"github.com/shipteam/ship/internal/eventually"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// TestAdoptedProcessExitIsNoticedWithoutPolling: an adopted instance is
// not our child; its exit is seen through a pidfd, at once, and the
// watch ends when the runtime stops.
func TestAdoptedProcessExitIsNoticedWithoutPolling(t *testing.T) {
	cmd := exec.Command(testappBin, "--addr", "127.0.0.1:0")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	waited := make(chan struct{})
	go func() { cmd.Wait(); close(waited) }() // as the earlier ship's init would reap it
	t.Cleanup(func() {
		syscall.Kill(pid, syscall.SIGKILL)
		<-waited
	})
	st, err := readStat(pid)
	if err != nil {
		t.Fatal(err)
	}

	stop := make(chan struct{})
	type result struct{ gone, ok bool }
	res := make(chan result, 1)
	go func() {
		gone, ok := waitPidfd(pid, st.startTicks, stop)
		res <- result{gone, ok}
	}()
	close(stop)
	select {
	case r := <-res:
		if r.gone || !r.ok {
			t.Fatalf("after stop: gone %v, ok %v; want false, true (pidfds work on this kernel)", r.gone, r.ok)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("the watch did not end when stopped")
	}

	p := adoptProc(pid, 0, st.startTicks, time.Now(), make(chan struct{}))
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	select {
	case <-p.exited:
		t.Logf("exit noticed %s after SIGKILL", time.Since(killed).Round(time.Microsecond))
	case <-time.After(2 * time.Second):
		t.Fatal("exit of the adopted process not noticed")
	}

	// A PID whose process is gone (or reused) is gone at once.
	if gone, ok := waitPidfd(pid, st.startTicks, make(chan struct{})); !gone || !ok {
		t.Fatalf("dead pid: gone %v, ok %v", gone, ok)
	}
}

func TestProbeDescribesWhatTheHealthPathAnswered(t *testing.T) {
	serve := func(h http.HandlerFunc) int {
		srv := httptest.NewServer(h)
		t.Cleanup(srv.Close)
		return srv.Listener.Addr().(*net.TCPAddr).Port
	}
	ok := serve(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/healthz" || r.Method != http.MethodGet {
			http.Error(w, "wrong request", http.StatusNotFound)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	unhealthy := serve(func(w http.ResponseWriter, r *http.Request) { http.Error(w, "no", http.StatusServiceUnavailable) })
	hung := serve(func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() }) // until the probe gives up
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refused := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	hangup, err := net.Listen("tcp", "127.0.0.1:0") // accepts, reads, closes without answering
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { hangup.Close() })
	go func() {
		for {
			c, err := hangup.Accept()
			if err != nil {
				return
			}
			c.Read(make([]byte, 512))
			c.Close()
		}
	}()

	for _, tc := range []struct {
		port int
		ok   bool
		desc string
	}{
		{ok, true, "GET /healthz → 200"},
		{unhealthy, false, "GET /healthz → 503"},
		{refused, false, "GET /healthz: connection refused"},
		{hung, false, "GET /healthz: i/o timeout"},
		{hangup.Addr().(*net.TCPAddr).Port, false, "GET /healthz: connection closed before an answer"},
	} {
		pr := newProber("", tc.port, 300*time.Millisecond)
		got, desc := pr.probe(context.Background())
		pr.close()
		if got != tc.ok || desc != tc.desc {
			t.Errorf("port %d: %v %q, want %v %q", tc.port, got, desc, tc.ok, tc.desc)
		}
	}
}

// TestProbeKeepsItsConnectionAndSurvivesTheAppClosingIt: probes reuse one
// connection (a handshake per probe was most of ship's idle CPU); an app
// that closes idle connections costs a new one, not a failed probe.
func TestProbeKeepsItsConnectionAndSurvivesTheAppClosingIt(t *testing.T) {
	var conns atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "ok") }))
	srv.Config.ConnState = func(c net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	pr := newProber("/healthz", srv.Listener.Addr().(*net.TCPAddr).Port, time.Second)
	defer pr.close()
	for i := range 5 {
		if ok, desc := pr.probe(context.Background()); !ok {
			t.Fatalf("probe %d: %s", i, desc)
		}
	}
	if n := conns.Load(); n != 1 {
		t.Fatalf("5 probes opened %d connections, want 1", n)
	}
	srv.CloseClientConnections() // the app's idle timeout
	if ok, desc := pr.probe(context.Background()); !ok {
		t.Fatalf("probe after the app closed the connection: %s", desc)
	}
	if n := conns.Load(); n != 2 {
		t.Fatalf("connections %d, want 2", n)
	}
}

// TestWaitingForChildrenHoldsNoThreadEach: ship waits for every instance it
// started; that must not cost an OS thread per instance, and an exit is
// still seen at once.
func TestWaitingForChildrenHoldsNoThreadEach(t *testing.T) {
	checkNoTestappLeft(t)
	const n = 20
	dir := t.TempDir()
	before := threads(t)
	var ps []*proc
	for i := range n {
		p, err := startProc(testappBin, []string{"--addr", "127.0.0.1:0"}, nil, dir,
			filepath.Join(dir, fmt.Sprint(i, ".out")), filepath.Join(dir, fmt.Sprint(i, ".err")), 0)
		if err != nil {
			t.Fatal(err)
		}
		ps = append(ps, p)
		t.Cleanup(func() { killGroup(p.pid, syscall.SIGKILL); <-p.exited })
	}
	eventually.True(t, 5*time.Second, "the children started", func() bool {
		for _, p := range ps {
			if st, err := readStat(p.pid); err != nil || st.state == 'Z' {
				return false
			}
		}
		return true
	})
	if grew := threads(t) - before; grew >= n/2 {
		t.Errorf("%d children grew the process by %d threads", n, grew)
	}
	killed := time.Now()
	killGroup(ps[0].pid, syscall.SIGKILL)
	select {
	case <-ps[0].exited:
		t.Logf("exit seen %s after SIGKILL: %s", time.Since(killed).Round(time.Microsecond), ps[0].status)
	case <-time.After(2 * time.Second):
		t.Fatal("exit not seen")
	}
	if ps[0].status != "killed by signal killed" {
		t.Errorf("status %q", ps[0].status)
	}
}

func threads(t *testing.T) int {
	t.Helper()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "Threads:"); ok {
			n, err := strconv.Atoi(strings.TrimSpace(v))
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatal("no Threads line")
	return 0
}
