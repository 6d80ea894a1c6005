// Package procs runs the processes of the end-to-end suites (test/e2e,
// test/e2ekube): it builds their binaries, starts each child with its
// output in files, stops it by its PID, and reads how it ended. Both
// suites need exactly these mechanics, and the details are where such
// harnesses hang or leak (a pipe whose reader waits for a grandchild, a
// child that outlives a killed test binary, the developer's SHIP_* or
// KUBECONFIG leaking in), so they live here once.
//
// It is a library for tests but not a test file, so it depends only on
// testing.TB, and only in the helpers whose job is to fail the test.
package procs

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
	goruntime "runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Build compiles the package pkg (a path relative to the module root,
// such as "./cmd/ship") to the binary out, with CGO_ENABLED=0 as ship is
// built and shipped.
func Build(out, pkg string) error {
	root, err := moduleRoot()
	if err != nil {
		return err
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(goruntime.GOROOT(), "bin", "go")
	}
	cmd := exec.Command(goBin, "build", "-o", out, pkg)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s: %w\n%s", pkg, err, b)
	}
	return nil
}

// moduleRoot is the nearest directory at or above the working directory
// (a test's package directory) that holds go.mod.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("module root: %w", err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("module root: no go.mod above the working directory")
		}
		dir = parent
	}
}

// FreePort returns a loopback TCP port that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// FreeAddr is "127.0.0.1:port" for a FreePort.
func FreeAddr(t testing.TB) string {
	t.Helper()
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(FreePort(t)))
}

// CleanEnv is the environment for a child: this process's environment
// without SHIP_*, HOME, XDG_CONFIG_HOME and KUBECONFIG, so nothing from
// the developer's ship config or cluster leaks in; HOME and the config
// dir point into home instead.
func CleanEnv(home string) []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "SHIP_") || k == "HOME" || k == "XDG_CONFIG_HOME" || k == "KUBECONFIG" {
			continue
		}
		env = append(env, kv)
	}
	return append(env, "HOME="+home, "XDG_CONFIG_HOME="+filepath.Join(home, "config"))
}

// Command is what to start.
type Command struct {
	Name string   // how messages name it, e.g. "ship serve" or "ship deploy web v2"
	Path string   // the binary
	Args []string // without the binary
	Env  []string // the whole environment (see CleanEnv)
	Dir  string   // working directory; "" is this process's
	// Stdout and Stderr are the files the output goes to (created or
	// truncated); Stderr "" or equal to Stdout means one combined file.
	Stdout, Stderr string
}

// Child is one started process. Its output goes to files, never to a pipe
// this process reads, so waiting for it cannot block on output; it dies
// with the test binary (Pdeathsig) even when that is killed.
type Child struct {
	Command
	cmd  *exec.Cmd
	done chan struct{}
	err  error // Wait's result, once done is closed
}

// Start starts c and fails the test if it cannot.
func Start(t testing.TB, c Command) *Child {
	t.Helper()
	ch, err := start(c)
	if err != nil {
		t.Fatal(err)
	}
	return ch
}

func start(c Command) (*Child, error) {
	if c.Stderr == "" {
		c.Stderr = c.Stdout
	}
	of, err := os.Create(c.Stdout)
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", c.Name, err)
	}
	ef := of
	if c.Stderr != c.Stdout {
		if ef, err = os.Create(c.Stderr); err != nil {
			of.Close()
			return nil, fmt.Errorf("start %s: %w", c.Name, err)
		}
	}
	closeFiles := func() {
		of.Close()
		if ef != of {
			ef.Close()
		}
	}
	cmd := exec.Command(c.Path, c.Args...)
	cmd.Stdout, cmd.Stderr = of, ef
	cmd.Env, cmd.Dir = c.Env, c.Dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		closeFiles()
		return nil, fmt.Errorf("start %s: %w", c.Name, err)
	}
	ch := &Child{Command: c, cmd: cmd, done: make(chan struct{})}
	go func() {
		ch.err = cmd.Wait()
		closeFiles()
		close(ch.done)
	}()
	return ch, nil
}

// PID is the process id.
func (c *Child) PID() int { return c.cmd.Process.Pid }

// Exited reports whether the process has ended.
func (c *Child) Exited() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// ExitCode is the exit status, or -1 while the process runs or when a
// signal ended it.
func (c *Child) ExitCode() int {
	if !c.Exited() {
		return -1
	}
	if c.err == nil {
		return 0
	}
	var ee *exec.ExitError
	if errors.As(c.err, &ee) {
		return ee.ExitCode()
	}
	return -1
}

// Wait waits up to d for the process to end and reports whether it did.
func (c *Child) Wait(d time.Duration) bool {
	select {
	case <-c.done:
		return true
	case <-time.After(d):
		return false
	}
}

// Stop sends SIGTERM, then SIGKILL after grace, and returns once the
// process is gone; it reports whether it ended within the grace.
func (c *Child) Stop(grace time.Duration) bool {
	if c.Exited() {
		return true
	}
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	if c.Wait(grace) {
		return true
	}
	c.Kill()
	return false
}

// Kill sends SIGKILL and returns once the process is gone.
func (c *Child) Kill() {
	_ = c.cmd.Process.Kill()
	<-c.done
}

// Output is what the process wrote to its Stdout file so far.
func (c *Child) Output() string {
	b, _ := os.ReadFile(c.Stdout)
	return string(b)
}

// Result is how a command ended (or stands, while it still runs).
type Result struct {
	Name   string
	Code   int // -1 while running or when ended by a signal
	Stdout string
	Stderr string // "" when output is combined into Stdout
}

func (r Result) String() string {
	return fmt.Sprintf("%s: exit %d\nstdout:\n%s\nstderr:\n%s", r.Name, r.Code, r.Stdout, r.Stderr)
}

// Result reads the child's output files and exit code.
func (c *Child) Result() Result {
	r := Result{Name: c.Name, Code: c.ExitCode(), Stdout: c.Output()}
	if c.Stderr != c.Stdout {
		b, _ := os.ReadFile(c.Stderr)
		r.Stderr = string(b)
	}
	return r
}

// Run starts c and waits for it to end. One that outlives timeout is
// stopped and fails the test, with its output so far.
func Run(t testing.TB, c Command, timeout time.Duration) Result {
	t.Helper()
	ch := Start(t, c)
	if !ch.Wait(timeout) {
		ch.Stop(2 * time.Second)
		t.Fatalf("%s did not exit within %s:\n%s", c.Name, timeout, ch.Result())
	}
	return ch.Result()
}

// WaitHTTP polls url until it answers 200 OK. It fails early when the
// child exits, and otherwise when ctx ends, with the last complaint.
func (c *Child) WaitHTTP(ctx context.Context, url string) error {
	hc := &http.Client{Timeout: 2 * time.Second}
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		last := ""
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return fmt.Errorf("%s: %w", c.Name, err)
		}
		resp, err := hc.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = resp.Status
		} else {
			last = err.Error()
		}
		select {
		case <-c.done:
			return fmt.Errorf("%s exited (%v) before %s answered", c.Name, c.err, url)
		case <-ctx.Done():
			return fmt.Errorf("%s: %s did not answer 200 OK: %w (last: %s)", c.Name, url, ctx.Err(), last)
		case <-tick.C:
		}
	}
}

// Server is a long-running program that a test starts, and may kill and
// start again (to prove it resumes); each run logs to its own file in
// Dir, so the logs of every run are there to read when the test fails.
type Server struct {
	Name string // how messages name it, e.g. "ship serve"
	Dir  string // where the run logs go (a t.TempDir)
	runs []*Child
}

// Start starts a run of c, with stdout and stderr combined into the run's
// log file, and waits until health answers 200 OK. When the run exits
// first, or timeout passes, it fails the test with the logs.
func (s *Server) Start(t testing.TB, c Command, health string, timeout time.Duration) *Child {
	t.Helper()
	c.Name = s.Name
	c.Stdout = filepath.Join(s.Dir, fmt.Sprintf("%s-%d.log", strings.ReplaceAll(s.Name, " ", "-"), len(s.runs)+1))
	c.Stderr = ""
	run := Start(t, c)
	s.runs = append(s.runs, run)
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := run.WaitHTTP(ctx, health); err != nil {
		t.Fatalf("%v\n%s", err, s.Logs())
	}
	return run
}

// Current is the latest run, nil before the first Start.
func (s *Server) Current() *Child {
	if len(s.runs) == 0 {
		return nil
	}
	return s.runs[len(s.runs)-1]
}

// Stop stops the current run (SIGTERM, SIGKILL after grace); a run that
// needs the SIGKILL fails the test, since an orderly shutdown is part of
// what the suites check.
func (s *Server) Stop(t testing.TB, grace time.Duration) {
	t.Helper()
	if c := s.Current(); c != nil && !c.Stop(grace) {
		t.Errorf("%s (pid %d) did not stop within %s of SIGTERM; killed", s.Name, c.PID(), grace)
	}
}

// Kill ends the current run with SIGKILL, as when a machine dies.
func (s *Server) Kill() {
	if c := s.Current(); c != nil {
		c.Kill()
	}
}

// Runs is how many times the server was started.
func (s *Server) Runs() int { return len(s.runs) }

// Logs is the output of every run, oldest first, each under a header.
func (s *Server) Logs() string {
	var b strings.Builder
	for i, c := range s.runs {
		fmt.Fprintf(&b, "--- %s run %d (pid %d) ---\n%s", s.Name, i+1, c.PID(), c.Output())
	}
	return b.String()
}

// DumpLogs logs the last max bytes of Logs to the test.
func (s *Server) DumpLogs(t testing.TB, max int) {
	t.Helper()
	out := s.Logs()
	if len(out) > max {
		out = "…" + out[len(out)-max:]
	}
	t.Logf("%s logs:\n%s", s.Name, out)
}

// Live lists the running processes whose executable is exe (an absolute
// path), leaving out zombies: those are dead, and only their parent can
// reap them.
func Live(exe string) []int {
	entries, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if link, err := os.Readlink(filepath.Join("/proc", e.Name(), "exe")); err != nil || link != exe {
			continue
		}
		stat, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if i := bytes.LastIndexByte(stat, ')'); i > 0 && i+2 < len(stat) && stat[i+2] == 'Z' {
			continue
		}
		pids = append(pids, pid)
	}
	return pids
}

// KillAll sends SIGKILL to each pid (leftovers found by Live).
func KillAll(pids []int) {
	for _, pid := range pids {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
}
