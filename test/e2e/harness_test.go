// Package e2e drives a real `ship serve` process through its CLI and API
// with real testapp instances behind ship's router. TestMain builds both
// binaries once; each test starts its own ship on free loopback ports with
// a temporary data dir, and stops it (and checks no instance is left).
package e2e

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	goruntime "runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/shipteam/ship/internal/api"
	"github.com/shipteam/ship/internal/release"
)

var (
	shipBin    string
	testappBin string
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "ship-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	shipBin = filepath.Join(dir, "ship")
	testappBin = filepath.Join(dir, "testapp")
	if err := build(shipBin, "./cmd/ship"); err == nil {
		err = build(testappBin, "./test/testapp")
	}
	code := 1
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e: build:", err)
	} else {
		code = m.Run()
	}
	os.RemoveAll(dir)
	os.Exit(code)
}

func build(out, pkg string) error {
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(goruntime.GOROOT(), "bin", "go")
	}
	cmd := exec.Command(goBin, "build", "-o", out, pkg)
	cmd.Dir = "../.."
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s: %v\n%s", pkg, err, b)
	}
	return nil
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// specOpts are the knobs a test sets in the testapp spec.
type specOpts struct {
	Port     int
	Replicas int
	Steps    string // YAML flow list of steps
	Extra    string // appended verbatim
}

func testappSpec(o specOpts) string {
	if o.Replicas == 0 {
		o.Replicas = 2
	}
	if o.Steps == "" {
		o.Steps = "[{weight: 1, pause: 1s}, {weight: 50, pause: 1s}, {weight: 100}]"
	}
	return fmt.Sprintf(`name: web
port: %d
healthPath: /healthz
replicas: %d
strategy:
  type: canary
  stepTimeout: 20s
  steps: %s
analysis:
  maxErrorRate: 0.05
  minRequests: 20
run:
  command: %s
  args: ["--addr", "127.0.0.1:{{.Port}}", "--version-name", "{{.Version}}"]
  startTimeout: 4s
  stopGrace: 3s
%s`, o.Port, o.Replicas, o.Steps, testappBin, o.Extra)
}

// ship is one running `ship serve`.
type ship struct {
	t        *testing.T
	dir      string // test root: data, apps, logs, home
	data     string
	apps     string
	addr     string // API host:port
	endpoint string // the app's router address
	token    string
	client   *api.Client
	cmd      *exec.Cmd
	exited   chan struct{}
	logs     *os.File
	starts   int
}

// newShip writes the spec and starts ship; it is stopped when the test ends.
func newShip(t *testing.T, o specOpts) *ship {
	t.Helper()
	if o.Port == 0 {
		o.Port = freePort(t)
	}
	dir := t.TempDir()
	s := &ship{t: t, dir: dir, data: filepath.Join(dir, "data"), apps: filepath.Join(dir, "apps"),
		addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(freePort(t))), endpoint: net.JoinHostPort("127.0.0.1", strconv.Itoa(o.Port))}
	if err := os.MkdirAll(s.apps, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(s.apps, "web.yaml"), []byte(testappSpec(o)), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		s.stop()
		assertNoInstancesLeft(t)
		if t.Failed() {
			s.dumpLogs()
		}
	})
	s.start()
	return s
}

// start runs ship serve and waits until its API answers.
func (s *ship) start() {
	t := s.t
	t.Helper()
	s.starts++
	logs, err := os.Create(filepath.Join(s.dir, fmt.Sprintf("ship-%d.log", s.starts)))
	if err != nil {
		t.Fatal(err)
	}
	s.logs = logs
	s.cmd = exec.Command(shipBin, "serve", "--addr", s.addr, "--data", s.data, "--apps", s.apps, "--log-format", "json")
	s.cmd.Stdout, s.cmd.Stderr = logs, logs
	s.cmd.Env = cleanEnv(s.dir)
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s.exited = make(chan struct{})
	go func(cmd *exec.Cmd, done chan struct{}) {
		_ = cmd.Wait()
		close(done)
	}(s.cmd, s.exited)
	waitUntil(t, 20*time.Second, "ship serve answers /healthz", func() bool {
		select {
		case <-s.exited:
			t.Fatalf("ship serve exited during start:\n%s", s.readLogs())
		default:
		}
		resp, err := http.Get("http://" + s.addr + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
	b, err := os.ReadFile(filepath.Join(s.data, "admin-token"))
	if err != nil {
		t.Fatal(err)
	}
	s.token = strings.TrimSpace(string(b))
	s.client, err = api.NewClient(api.ClientConfig{Server: s.addr, Token: s.token, Source: release.SourceAPI})
	if err != nil {
		t.Fatal(err)
	}
}

// stop sends SIGTERM and waits for an orderly exit (SIGKILL after 40s).
func (s *ship) stop() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	select {
	case <-s.exited:
		return
	default:
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(40 * time.Second):
		s.t.Errorf("ship serve (pid %d) did not stop within 40s of SIGTERM", s.cmd.Process.Pid)
		_ = s.cmd.Process.Kill()
		<-s.exited
	}
	s.logs.Close()
}

// kill sends SIGKILL: instances are left running for the next start to adopt.
func (s *ship) kill() {
	_ = s.cmd.Process.Kill()
	<-s.exited
	s.logs.Close()
}

func (s *ship) readLogs() string {
	var b strings.Builder
	for i := 1; i <= s.starts; i++ {
		data, _ := os.ReadFile(filepath.Join(s.dir, fmt.Sprintf("ship-%d.log", i)))
		fmt.Fprintf(&b, "--- ship serve run %d ---\n%s", i, data)
	}
	return b.String()
}

func (s *ship) dumpLogs() {
	out := s.readLogs()
	if len(out) > 60000 {
		out = "…" + out[len(out)-60000:]
	}
	s.t.Logf("ship logs:\n%s", out)
}

// cleanEnv is the environment of every child: no SHIP_* or config from the
// developer's machine leaks in.
func cleanEnv(home string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "SHIP_") || strings.HasPrefix(kv, "HOME=") || strings.HasPrefix(kv, "XDG_CONFIG_HOME=") {
			continue
		}
		env = append(env, kv)
	}
	return append(env, "HOME="+home, "XDG_CONFIG_HOME="+filepath.Join(home, "config"))
}

type cliResult struct {
	code           int
	stdout, stderr string
}

func (r cliResult) String() string {
	return fmt.Sprintf("exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
}

// ship runs the CLI against this server with its token.
func (s *ship) cli(args ...string) cliResult {
	return s.cliEnv([]string{"SHIP_SERVER=http://" + s.addr, "SHIP_TOKEN=" + s.token}, args...)
}

func (s *ship) cliEnv(extra []string, args ...string) cliResult {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, shipBin, args...)
	cmd.Dir = s.dir
	cmd.Env = append(cleanEnv(s.dir), extra...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			s.t.Fatalf("run ship %v: %v", args, err)
		}
		code = ee.ExitCode()
	}
	return cliResult{code: code, stdout: out.String(), stderr: errb.String()}
}

// mustCLI runs the CLI and fails the test unless it exits 0.
func (s *ship) mustCLI(args ...string) cliResult {
	s.t.Helper()
	r := s.cli(args...)
	if r.code != 0 {
		s.t.Fatalf("ship %s: %s", strings.Join(args, " "), r)
	}
	return r
}

func waitUntil(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting until %s", d, what)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// waitRelease polls a release until it is final and returns it.
func (s *ship) waitRelease(id int64, d time.Duration) release.Release {
	s.t.Helper()
	var rel release.Release
	waitUntil(s.t, d, fmt.Sprintf("release %d is final", id), func() bool {
		r, err := s.client.Release(context.Background(), id)
		if err != nil {
			return false
		}
		rel = r
		return r.State.Terminal()
	})
	return rel
}

// get sends one request to the app through ship's router.
func get(c *http.Client, endpoint string) (status int, version string, err error) {
	status, version, _, err = getPID(c, endpoint)
	return status, version, err
}

// getPID is get that also returns the answering instance's process id.
func getPID(c *http.Client, endpoint string) (status int, version, pid string, err error) {
	resp, err := c.Get("http://" + endpoint + "/")
	if err != nil {
		return 0, "", "", err
	}
	defer resp.Body.Close()
	_, _ = bufio.NewReader(resp.Body).WriteTo(discard{})
	return resp.StatusCode, resp.Header.Get("X-Version"), resp.Header.Get("X-PID"), nil
}

// answer is one request of the load, kept while tracing.
type answer struct {
	sent, at time.Time // when the request was sent, when its answer (or error) came
	ok       bool
	ver, pid string
	desc     string // for failures
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

// load is steady traffic through the router from a few goroutines.
type load struct {
	stop    chan struct{}
	wg      sync.WaitGroup
	total   atomic.Int64
	failed  atomic.Int64
	mu      sync.Mutex
	byVer   map[string]int64
	firstOf map[string]time.Time // first failure per version
	lastOf  map[string]time.Time // last answer per version
	samples []string             // a few failure descriptions
	tracing bool                 // keep every answer in trace
	trace   []answer
}

// startTrace keeps every answer from now on (see answers).
func (l *load) startTrace() {
	l.mu.Lock()
	l.tracing = true
	l.mu.Unlock()
}

// answers returns the answers kept since startTrace.
func (l *load) answers() []answer {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]answer(nil), l.trace...)
}

func startLoad(endpoint string, workers int) *load {
	l := &load{stop: make(chan struct{}), byVer: map[string]int64{}, firstOf: map[string]time.Time{}, lastOf: map[string]time.Time{}}
	for range workers {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 4}}
			for {
				select {
				case <-l.stop:
					return
				default:
				}
				sent := time.Now()
				status, ver, pid, err := getPID(c, endpoint)
				now := time.Now()
				l.total.Add(1)
				l.mu.Lock()
				if l.tracing {
					a := answer{sent: sent, at: now, ok: err == nil && status == 200, ver: ver, pid: pid}
					if !a.ok {
						a.desc = fmt.Sprintf("%s: status %d version %q err %v", now.Format("15:04:05.000"), status, ver, err)
					}
					l.trace = append(l.trace, a)
				}
				l.byVer[ver]++
				l.lastOf[ver] = now
				if err != nil || status != 200 {
					l.failed.Add(1)
					if _, ok := l.firstOf[ver]; !ok {
						l.firstOf[ver] = now
					}
					if len(l.samples) < 5 {
						l.samples = append(l.samples, fmt.Sprintf("%s: status %d version %q err %v", now.Format("15:04:05.000"), status, ver, err))
					}
				}
				l.mu.Unlock()
			}
		}()
	}
	return l
}

func (l *load) halt() {
	select {
	case <-l.stop:
	default:
		close(l.stop)
	}
	l.wg.Wait()
}

func (l *load) versions() map[string]int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := map[string]int64{}
	for k, v := range l.byVer {
		out[k] = v
	}
	return out
}

// assertNoInstancesLeft fails when a testapp process of this run is alive.
func assertNoInstancesLeft(t *testing.T) {
	t.Helper()
	var left []string
	deadline := time.Now().Add(5 * time.Second)
	for {
		left = liveTestapps()
		if len(left) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if len(left) > 0 {
		t.Errorf("testapp processes left running after ship stopped: %v", left)
		for _, p := range left {
			if pid, err := strconv.Atoi(p); err == nil {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	}
}

func liveTestapps() []string {
	entries, _ := os.ReadDir("/proc")
	var pids []string
	for _, e := range entries {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		exe, err := os.Readlink(filepath.Join("/proc", e.Name(), "exe"))
		if err != nil || exe != testappBin {
			continue
		}
		stat, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if i := bytes.LastIndexByte(stat, ')'); i > 0 && i+2 < len(stat) && stat[i+2] == 'Z' {
			continue // a zombie is dead; only its parent can reap it
		}
		pids = append(pids, e.Name())
	}
	return pids
}
