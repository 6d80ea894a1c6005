// Package promtest runs a real Prometheus server (Debian's prometheus
// package, /usr/bin/prometheus) on loopback for tests: its own free port,
// its own temp directory for the config and the TSDB, the config the test
// gives, and nothing of the system's (/etc/prometheus, /var/lib/prometheus,
// the Debian service). The process is started and stopped by its own PID in
// t.Cleanup and dies with the test binary if that is killed. It must not be
// imported by non-test code.
//
// Prometheus applies its scrape targets about 5s after it starts, so the
// first data shows then: tests poll for what they expect with a deadline.
package promtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Binary is where Debian's prometheus package installs the server.
const Binary = "/usr/bin/prometheus"

// Package is the Debian package that provides Binary.
const Package = "prometheus"

// readyTimeout bounds the wait for /-/ready; an empty TSDB is ready in
// well under a second.
const readyTimeout = 30 * time.Second

// stopGrace is the time between SIGTERM and SIGKILL.
const stopGrace = 5 * time.Second

// Need skips t when the Prometheus binary is not installed, and returns
// its path.
func Need(t testing.TB) string {
	t.Helper()
	if _, err := os.Stat(Binary); err != nil {
		t.Skipf("promtest: %s not found (install the Debian package %q): %v", Binary, Package, err)
	}
	return Binary
}

// Server is one running Prometheus.
type Server struct {
	URL string // http://127.0.0.1:PORT, for the HTTP API
	Dir string // config, TSDB and log
	PID int
	log string
}

// Target is one scrape target of a static config.
type Target struct {
	Addr   string            // host:port serving /metrics
	Labels map[string]string // target labels, e.g. namespace, ship_dev_track
}

// StaticConfig returns a Prometheus config that scrapes each target every
// interval under job name job.
func StaticConfig(job string, interval time.Duration, targets ...Target) string {
	var b strings.Builder
	fmt.Fprintf(&b, "global:\n  scrape_interval: %s\n  evaluation_interval: %s\nscrape_configs:\n  - job_name: %s\n    scrape_interval: %s\n    scrape_timeout: %s\n    static_configs:\n",
		promDuration(interval), promDuration(interval), strconv.Quote(job), promDuration(interval), promDuration(interval))
	for _, tg := range targets {
		fmt.Fprintf(&b, "      - targets: [%s]\n", strconv.Quote(tg.Addr))
		if len(tg.Labels) == 0 {
			continue
		}
		keys := make([]string, 0, len(tg.Labels))
		for k := range tg.Labels {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		b.WriteString("        labels:\n")
		for _, k := range keys {
			fmt.Fprintf(&b, "          %s: %s\n", k, strconv.Quote(tg.Labels[k]))
		}
	}
	return b.String()
}

// promDuration writes d the way Prometheus' config accepts (whole
// milliseconds, units without fractions).
func promDuration(d time.Duration) string {
	if d%time.Second == 0 {
		return fmt.Sprintf("%ds", d/time.Second)
	}
	return fmt.Sprintf("%dms", d/time.Millisecond)
}

// Start runs Prometheus with config (a prometheus.yml body) on a free
// loopback port and waits until it answers /-/ready. It is stopped by PID
// when t ends.
func Start(t testing.TB, config string) *Server {
	t.Helper()
	bin := Need(t)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfg, []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	// A free port can be taken between picking and binding it; a server
	// that exits at once is retried on another port.
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		s, err := start(t, bin, dir, cfg, attempt)
		if err == nil {
			return s
		}
		lastErr = err
	}
	t.Fatalf("promtest: %v", lastErr)
	return nil
}

func start(t testing.TB, bin, dir, cfg string, attempt int) (*Server, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	logPath := filepath.Join(dir, fmt.Sprintf("prometheus-%d.log", attempt))
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	cmd := exec.Command(bin,
		"--config.file="+cfg,
		"--storage.tsdb.path="+filepath.Join(dir, fmt.Sprintf("data-%d", attempt)),
		"--web.listen-address="+addr,
		"--web.console.templates="+filepath.Join(dir, "consoles"),
		"--web.console.libraries="+filepath.Join(dir, "console_libraries"),
		"--storage.tsdb.retention.time=1h",
		"--log.level=info",
	)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = []string{"PATH=/usr/bin:/bin", "HOME=" + dir}
	// Prometheus dies with the test binary even when that is killed.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	// exited is closed once the process is reaped; waitErr is then set.
	exited := make(chan struct{})
	var waitErr error
	go func() { waitErr = cmd.Wait(); close(exited) }()
	s := &Server{URL: "http://" + addr, Dir: dir, PID: cmd.Process.Pid, log: logPath}
	stop := func() {
		select {
		case <-exited:
			return
		default:
		}
		_ = syscall.Kill(s.PID, syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(stopGrace):
			_ = syscall.Kill(s.PID, syscall.SIGKILL)
			<-exited
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), readyTimeout)
	defer cancel()
	if err := waitReady(ctx, s.URL, exited, &waitErr); err != nil {
		stop()
		return nil, fmt.Errorf("prometheus on %s: %w\n%s", addr, err, tail(logPath))
	}
	t.Cleanup(func() {
		stop()
		if t.Failed() {
			t.Logf("promtest: prometheus log (%s):\n%s", logPath, tail(logPath))
		}
	})
	return s, nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("pick a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// waitReady polls /-/ready until it answers 200, the process exits or ctx
// ends.
func waitReady(ctx context.Context, url string, exited <-chan struct{}, waitErr *error) error {
	client := &http.Client{Timeout: time.Second}
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url+"/-/ready", nil)
		if resp, err := client.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-exited:
			return fmt.Errorf("exited before ready: %v", *waitErr)
		case <-ctx.Done():
			return errors.New("not ready in time")
		case <-tick.C:
		}
	}
}

// Log returns the end of the server's log, for failure messages.
func (s *Server) Log() string { return tail(s.log) }

func tail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	if len(b) > 4000 {
		b = b[len(b)-4000:]
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			b = b[i+1:]
		}
	}
	return string(b)
}
