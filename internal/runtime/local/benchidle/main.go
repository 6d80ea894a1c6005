// Command benchidle measures what idle apps cost on the embedded runtime
// (issue 8 §2): it starts a real `ship serve` with N generated one-instance
// testapp specs, deploys each once through the API, waits until every
// release is final, then reads from /proc how much CPU ship and the
// instances used over a window, and their memory. Optionally it then holds M
// canaries (`deploy --canary 1`) and measures again, per active release.
//
// Run it with scripts/bench-idle (./dev bench idle). It needs bin/ship and
// bin/testapp (./dev build). Linux only (/proc); loopback only.
package main

import (
	"context"
	"errors"
	"flag"
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
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/shipteam/ship/internal/api"
	"github.com/shipteam/ship/internal/release"
)

// clkTck is USER_HZ, the unit of utime and stime in /proc/PID/stat; 100 on
// every Linux architecture ship runs on.
const clkTck = 100

type config struct {
	apps, canaries, parallel int
	window, settle           time.Duration
	shipBin, testappBin      string
	keep                     bool
}

func main() {
	var c config
	flag.IntVar(&c.apps, "apps", 100, "idle apps (one instance each)")
	flag.IntVar(&c.canaries, "canaries", 0, "then hold this many canaries at 1% (deploy --canary 1) and measure again")
	flag.DurationVar(&c.window, "window", 30*time.Second, "measurement window")
	flag.DurationVar(&c.settle, "settle", 5*time.Second, "wait after the last release is final before measuring")
	flag.IntVar(&c.parallel, "parallel", 8, "deploys sent at once")
	flag.StringVar(&c.shipBin, "ship", "bin/ship", "ship binary")
	flag.StringVar(&c.testappBin, "testapp", "bin/testapp", "testapp binary")
	flag.BoolVar(&c.keep, "keep", false, "keep the temporary directory (specs, data, ship's log)")
	flag.Parse()
	if err := run(c); err != nil {
		fmt.Fprintln(os.Stderr, "benchidle:", err)
		os.Exit(1)
	}
}

func run(c config) error {
	if c.apps < 1 || c.canaries < 0 || c.canaries > c.apps || c.window <= 0 || c.parallel < 1 {
		return errors.New("need -apps >= 1, 0 <= -canaries <= -apps, -window > 0, -parallel >= 1")
	}
	var err error
	for _, p := range []*string{&c.shipBin, &c.testappBin} {
		if *p, err = filepath.Abs(*p); err != nil {
			return err
		}
		if _, err := os.Stat(*p); err != nil {
			return fmt.Errorf("%w (build with ./dev build)", err)
		}
	}
	dir, err := os.MkdirTemp("", "ship-bench-idle-")
	if err != nil {
		return err
	}
	if !c.keep {
		defer os.RemoveAll(dir)
	} else {
		fmt.Println("directory:", dir)
	}
	names, apiPort, err := writeSpecs(dir, c)
	if err != nil {
		return err
	}
	s, err := startShip(dir, c.shipBin, apiPort)
	if err != nil {
		return err
	}
	defer s.stop(c.testappBin)

	ctx := context.Background()
	t0 := time.Now()
	if err := deployAll(ctx, s.client, names, c.parallel, api.DeployRequest{Version: "v1"}, release.Succeeded); err != nil {
		return fmt.Errorf("deploy v1: %w", err)
	}
	fmt.Printf("%d apps deployed in %.1fs; settling %s\n", c.apps, time.Since(t0).Seconds(), c.settle)
	time.Sleep(c.settle) // not a wait for a condition: the point is to let ship go quiet before measuring
	idle, err := measure(s.pid, c.testappBin, c.window)
	if err != nil {
		return err
	}
	if idle.instances != c.apps {
		return fmt.Errorf("expected %d instances, found %d", c.apps, idle.instances)
	}
	rows := []row{{what: fmt.Sprintf("%d idle apps", c.apps), per: "app", n: c.apps, m: idle}}

	if c.canaries > 0 {
		t0 = time.Now()
		if err := deployAll(ctx, s.client, names[:c.canaries], c.parallel, api.DeployRequest{Version: "v2", Canary: 1}, release.Paused); err != nil {
			return fmt.Errorf("deploy v2 --canary 1: %w", err)
		}
		fmt.Printf("%d canaries held in %.1fs; settling %s\n", c.canaries, time.Since(t0).Seconds(), c.settle)
		time.Sleep(c.settle)
		held, err := measure(s.pid, c.testappBin, c.window)
		if err != nil {
			return err
		}
		rows = append(rows, row{what: fmt.Sprintf("+ %d held canaries", c.canaries), per: "active release", n: c.canaries, m: held, base: &idle})
	}
	printTable(c, rows)
	return nil
}

// writeSpecs writes one spec per app and returns the app names and a port
// for ship's API, picked while the apps' ports are still held.
func writeSpecs(dir string, c config) ([]string, int, error) {
	apps := filepath.Join(dir, "apps")
	if err := os.MkdirAll(apps, 0o755); err != nil {
		return nil, 0, err
	}
	var names []string
	// Ports are held until all are picked, so no two apps get the same one.
	var held []net.Listener
	defer func() {
		for _, ln := range held {
			ln.Close()
		}
	}()
	for i := range c.apps {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, 0, err
		}
		held = append(held, ln)
		port := ln.Addr().(*net.TCPAddr).Port
		name := fmt.Sprintf("idle%04d", i)
		spec := fmt.Sprintf(`name: %s
port: %d
healthPath: /healthz
replicas: 1
strategy:
  type: canary
  steps: [{weight: 1, pause: 1s}, {weight: 100}]
run:
  command: %s
  args: ["--addr", "127.0.0.1:{{.Port}}", "--version-name", "{{.Version}}"]
`, name, port, c.testappBin)
		if err := os.WriteFile(filepath.Join(apps, name+".yaml"), []byte(spec), 0o644); err != nil {
			return nil, 0, err
		}
		names = append(names, name)
	}
	api, err := freePort()
	return names, api, err
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// shipProc is the running `ship serve`.
type shipProc struct {
	cmd    *exec.Cmd
	pid    int
	client *api.Client
	log    string
}

func startShip(dir, bin string, port int) (*shipProc, error) {
	addr := "127.0.0.1:" + strconv.Itoa(port)
	logPath := filepath.Join(dir, "ship.log")
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	data := filepath.Join(dir, "data")
	cmd := exec.Command(bin, "serve", "--addr", addr, "--data", data, "--apps", filepath.Join(dir, "apps"), "--log-format", "json")
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = append(os.Environ(), "HOME="+dir)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	s := &shipProc{cmd: cmd, pid: cmd.Process.Pid, log: logPath}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	deadline := time.Now().Add(60 * time.Second)
	for {
		select {
		case <-exited:
			b, _ := os.ReadFile(logPath)
			return nil, fmt.Errorf("ship serve exited at start; the end of its log:\n%s", b[max(0, len(b)-1500):])
		default:
		}
		if resp, err := http.Get("http://" + addr + "/healthz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		if time.Now().After(deadline) {
			s.kill()
			return nil, fmt.Errorf("ship serve did not answer /healthz within 60s; see %s", logPath)
		}
		time.Sleep(50 * time.Millisecond)
	}
	tok, err := os.ReadFile(filepath.Join(data, "admin-token"))
	if err != nil {
		s.kill()
		return nil, err
	}
	s.client, err = api.NewClient(api.ClientConfig{Server: addr, Token: strings.TrimSpace(string(tok)), Source: release.SourceAPI})
	if err != nil {
		s.kill()
		return nil, err
	}
	return s, nil
}

func (s *shipProc) kill() { syscall.Kill(-s.pid, syscall.SIGKILL) }

// stop sends SIGTERM (ship drains its instances), then SIGKILL after a
// minute; instances left behind are killed by PID.
func (s *shipProc) stop(testapp string) {
	left := instancePIDs(s.pid, testapp)
	syscall.Kill(s.pid, syscall.SIGTERM)
	deadline := time.Now().Add(time.Minute)
	for alive(s.pid) {
		if time.Now().After(deadline) {
			s.kill()
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, pid := range left {
		if alive(pid) {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// deployAll deploys req to every app, parallel at a time, and waits until
// each release reaches want.
func deployAll(ctx context.Context, c *api.Client, names []string, parallel int, req api.DeployRequest, want release.State) error {
	sem := make(chan struct{}, parallel)
	var mu sync.Mutex
	var errs []error
	var wg sync.WaitGroup
	for _, name := range names {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if err := deployOne(ctx, c, name, req, want); err != nil {
				mu.Lock()
				errs = append(errs, fmt.Errorf("%s: %w", name, err))
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

func deployOne(ctx context.Context, c *api.Client, name string, req api.DeployRequest, want release.State) error {
	rel, err := c.Deploy(ctx, name, req)
	if err != nil {
		return err
	}
	deadline := time.Now().Add(3 * time.Minute)
	for rel.State != want {
		if rel.State.Terminal() {
			return fmt.Errorf("release %d ended %s (%s), want %s", rel.ID, rel.State, rel.Reason, want)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("release %d still %s after 3 minutes, want %s", rel.ID, rel.State, want)
		}
		time.Sleep(200 * time.Millisecond)
		if rel, err = c.Release(ctx, rel.ID); err != nil {
			return err
		}
	}
	return nil
}

// usage is what ship and the instances used over one window.
type usage struct {
	window     time.Duration
	shipCPU    float64 // share of one core
	instCPU    float64
	shipRSS    int64 // bytes, at the end of the window
	instRSS    int64
	instances  int
	shipThread int
}

func measure(shipPID int, testapp string, window time.Duration) (usage, error) {
	pids := instancePIDs(shipPID, testapp)
	s0, err := cpuTicks(shipPID)
	if err != nil {
		return usage{}, fmt.Errorf("ship: %w", err)
	}
	i0 := map[int]uint64{}
	for _, p := range pids {
		if t, err := cpuTicks(p); err == nil {
			i0[p] = t
		}
	}
	start := time.Now()
	time.Sleep(window) // the measurement itself
	elapsed := time.Since(start).Seconds()
	s1, err := cpuTicks(shipPID)
	if err != nil {
		return usage{}, fmt.Errorf("ship: %w", err)
	}
	u := usage{window: window, shipCPU: float64(s1-s0) / clkTck / elapsed}
	u.shipRSS, u.shipThread = rss(shipPID)
	var inst uint64
	for p, t0 := range i0 {
		t1, err := cpuTicks(p)
		if err != nil {
			return usage{}, fmt.Errorf("instance pid %d ended during the window", p)
		}
		inst += t1 - t0
		r, _ := rss(p)
		u.instRSS += r
		u.instances++
	}
	u.instCPU = float64(inst) / clkTck / elapsed
	return u, nil
}

// instancePIDs lists ship's children running testapp.
func instancePIDs(shipPID int, testapp string) []int {
	ents, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		f, err := statFields(pid)
		if err != nil || len(f) < 2 || f[1] != strconv.Itoa(shipPID) || f[0] == "Z" {
			continue
		}
		if exe, err := os.Readlink("/proc/" + e.Name() + "/exe"); err == nil && exe == testapp {
			out = append(out, pid)
		}
	}
	return out
}

// statFields returns /proc/PID/stat from field 3 (state) on: the command
// name may hold spaces, so fields are counted from the last ')'.
func statFields(pid int) ([]string, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return nil, err
	}
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return nil, fmt.Errorf("/proc/%d/stat: malformed", pid)
	}
	return strings.Fields(string(b[i+1:])), nil
}

// cpuTicks is utime+stime (fields 14 and 15) of pid.
func cpuTicks(pid int) (uint64, error) {
	f, err := statFields(pid)
	if err != nil {
		return 0, err
	}
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: malformed", pid)
	}
	u, err1 := strconv.ParseUint(f[11], 10, 64)
	s, err2 := strconv.ParseUint(f[12], 10, 64)
	return u + s, errors.Join(err1, err2)
}

// rss is VmRSS in bytes and the thread count of pid.
func rss(pid int) (int64, int) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, 0
	}
	var kb int64
	threads := 0
	for _, l := range strings.Split(string(b), "\n") {
		k, v, _ := strings.Cut(l, ":")
		v = strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB"))
		switch k {
		case "VmRSS":
			kb, _ = strconv.ParseInt(v, 10, 64)
		case "Threads":
			threads, _ = strconv.Atoi(v)
		}
	}
	return kb << 10, threads
}

func alive(pid int) bool {
	f, err := statFields(pid)
	return err == nil && len(f) > 0 && f[0] != "Z"
}

type row struct {
	what string
	per  string // "app" or "active release"
	n    int
	m    usage
	base *usage // for active releases: the idle measurement to subtract
}

func printTable(c config, rows []row) {
	fmt.Printf("\nwindow %s, %d CPUs, load average %s\n", c.window, goruntime.NumCPU(), loadavg())
	w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(w, "setup\tship CPU\tinstances CPU\tship RSS\tinstances RSS\tship threads\t")
	for _, r := range rows {
		fmt.Fprintf(w, "%s\t%.2f%%\t%.2f%%\t%.1f MiB\t%.1f MiB\t%d\t\n", r.what, 100*r.m.shipCPU, 100*r.m.instCPU,
			mib(r.m.shipRSS), mib(r.m.instRSS), r.m.shipThread)
	}
	w.Flush()
	fmt.Println()
	w = tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(w, "per\tship CPU\tinstances CPU\tship RSS\t")
	for _, r := range rows {
		m, n := r.m, float64(r.n)
		if r.base != nil { // what the active releases add to the idle apps
			m.shipCPU -= r.base.shipCPU
			m.instCPU -= r.base.instCPU
			m.shipRSS -= r.base.shipRSS
		}
		fmt.Fprintf(w, "%s\t%.3f%%\t%.3f%%\t%.0f KiB\t\n", r.per, 100*m.shipCPU/n, 100*m.instCPU/n, float64(m.shipRSS)/1024/n)
	}
	w.Flush()
	fmt.Printf("(%% is of one core; ship RSS per app is ship's whole RSS over the apps; per active release is the increase over the idle row)\n")
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}
