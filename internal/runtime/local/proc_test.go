package local

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os/exec"
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
