// Package e2e drives a real `ship serve` process through its CLI and API
// with real testapp instances behind ship's router. TestMain builds both
// binaries once; each test starts its own ship on free loopback ports with
// a temporary data dir, and stops it (and checks no instance is left).
package e2e

import (
	"bufio"
	"context"
	"fmt"
	"github.com/shipteam/ship/internal/eventually"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shipteam/ship/internal/api"
	"github.com/shipteam/ship/internal/release"
	"github.com/shipteam/ship/test/procs"
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
	if err := procs.Build(shipBin, "./cmd/ship"); err == nil {
		err = procs.Build(testappBin, "./test/testapp")
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
	serve    *procs.Server
	clis     int
	// serveArgs are extra `ship serve` flags (--auth-config FILE).
	serveArgs []string
}

// newShip writes the spec and starts ship; it is stopped when the test ends.
func newShip(t *testing.T, o specOpts) *ship {
	t.Helper()
	return newShipArgs(t, o)
}

// newShipArgs is newShip with extra `ship serve` flags.
func newShipArgs(t *testing.T, o specOpts, serveArgs ...string) *ship {
	t.Helper()
	if o.Port == 0 {
		o.Port = procs.FreePort(t)
	}
	dir := t.TempDir()
	s := &ship{t: t, dir: dir, data: filepath.Join(dir, "data"), apps: filepath.Join(dir, "apps"),
		addr: procs.FreeAddr(t), endpoint: net.JoinHostPort("127.0.0.1", strconv.Itoa(o.Port)),
		serve: &procs.Server{Name: "ship serve", Dir: dir}, serveArgs: serveArgs}
	if err := os.MkdirAll(s.apps, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(s.apps, "web.yaml"), []byte(testappSpec(o)), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		s.serve.Stop(t, 40*time.Second)
		assertNoInstancesLeft(t)
		if t.Failed() {
			s.serve.DumpLogs(t, 60000)
		}
	})
	s.start()
	return s
}

// start runs ship serve and waits until its API answers.
func (s *ship) start() {
	t := s.t
	t.Helper()
	s.serve.Start(t, procs.Command{Path: shipBin,
		Args: append([]string{"serve", "--addr", s.addr, "--data", s.data, "--apps", s.apps, "--log-format", "json"}, s.serveArgs...),
		Env:  procs.CleanEnv(s.dir)}, "http://"+s.addr+"/healthz", 20*time.Second)
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

// kill sends SIGKILL: instances are left running for the next start to adopt.
func (s *ship) kill() { s.serve.Kill() }

// cli runs the CLI against this server with its token.
func (s *ship) cli(args ...string) procs.Result {
	return s.cliEnv([]string{"SHIP_SERVER=http://" + s.addr, "SHIP_TOKEN=" + s.token}, args...)
}

// cliEnv runs the CLI with extra environment (and none of the
// developer's); one that runs over 90s fails the test.
func (s *ship) cliEnv(extra []string, args ...string) procs.Result {
	s.t.Helper()
	s.clis++
	base := filepath.Join(s.dir, fmt.Sprintf("cli-%d", s.clis))
	return procs.Run(s.t, procs.Command{Name: "ship " + strings.Join(args, " "), Path: shipBin, Args: args,
		Env: append(procs.CleanEnv(s.dir), extra...), Dir: s.dir, Stdout: base + ".out", Stderr: base + ".err"}, 90*time.Second)
}

// mustCLI runs the CLI and fails the test unless it exits 0.
func (s *ship) mustCLI(args ...string) procs.Result {
	s.t.Helper()
	r := s.cli(args...)
	if r.Code != 0 {
		s.t.Fatalf("%s", r)
	}
	return r
}

// waitRelease polls a release until it is final and returns it.
func (s *ship) waitRelease(id int64, d time.Duration) release.Release {
	s.t.Helper()
	var rel release.Release
	eventually.True(s.t, d, fmt.Sprintf("release %d is final", id), func() bool {
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
	var left []int
	deadline := time.Now().Add(5 * time.Second)
	for {
		left = procs.Live(testappBin)
		if len(left) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if len(left) > 0 {
		t.Errorf("testapp processes left running after ship stopped: %v", left)
		procs.KillAll(left)
	}
}
