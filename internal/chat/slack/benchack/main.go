// Command benchack measures how fast a real `ship serve` acknowledges Slack
// slash commands (issue 5 §6): it starts the given ship binary on loopback
// with a temporary data dir, an apps dir holding one testapp spec, a signing
// secret and a --slack-config whose api_url points at a loopback stand-in for
// Slack's Web API (never slack.com); deploys v1 of the app through the CLI;
// then fires rounds of N concurrent signed slash commands:
//
//   - status: "/ship status web" (a read, answered inline from the engine);
//   - writes: "/ship lock web --reason bench" alternating with
//     "/ship unlock web" (acked "On it"; the engine does the work after the
//     answer, and the outcome goes to a loopback response_url).
//
// The same load also goes to a reference handler in this process (reads the
// body, answers fixed JSON) for a ratio within one run. Every process it
// starts is stopped by PID. Run it through scripts/bench-slack, which builds
// the binaries. Slack wants an answer within 3 s; ship's goal is p99 < 100 ms.
package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	goruntime "runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/shipteam/ship/internal/chat/slack"
	"github.com/shipteam/ship/internal/chat/slack/slacktest"
)

const secret = "bench-signing-secret"

type options struct {
	ship, testapp string
	n, rounds     int
	goal          time.Duration
	keep          bool
	only          string
}

func main() {
	var o options
	flag.StringVar(&o.ship, "ship", "", "ship binary to run as `ship serve` (required)")
	flag.StringVar(&o.testapp, "testapp", "", "testapp binary the app spec runs (required)")
	flag.IntVar(&o.n, "n", 200, "concurrent requests per burst")
	flag.IntVar(&o.rounds, "rounds", 5, "measured rounds (after one warm-up round)")
	flag.DurationVar(&o.goal, "goal", 100*time.Millisecond, "p99 goal; exit 1 above it")
	flag.BoolVar(&o.keep, "keep", false, "keep the temporary dir (ship's log, data) for a look afterwards")
	flag.StringVar(&o.only, "only", "", "run only these bursts, comma-separated among status,lock,ref (for profiling one path)")
	flag.Parse()
	if o.ship == "" || o.testapp == "" {
		fmt.Fprintln(os.Stderr, "bench-slack: -ship and -testapp are required (scripts/bench-slack builds them)")
		os.Exit(2)
	}
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "bench-slack:", err)
		os.Exit(1)
	}
}

// shipProc is the running `ship serve`.
type shipProc struct {
	cmd    *exec.Cmd
	exited chan struct{}
	base   string // http://127.0.0.1:port
	token  string
	log    string
	env    []string
}

func run(o options) (err error) {
	dir, err := os.MkdirTemp("", "bench-slack-")
	if err != nil {
		return err
	}
	if o.keep {
		fmt.Println("temporary dir kept:", dir)
	} else {
		defer os.RemoveAll(dir)
	}

	fake := slacktest.NewServer() // loopback stand-in for Slack's Web API and response_url
	defer fake.Close()

	fmt.Printf("machine: %s, %d CPUs (nproc %s), %s/%s, %s\n", cpuModel(), goruntime.NumCPU(), nproc(), goruntime.GOOS, goruntime.GOARCH, goruntime.Version())
	fmt.Printf("load average at start: %s\n", loadavg())

	sp, err := startShip(o, dir, fake)
	if err != nil {
		return err
	}
	defer func() {
		if serr := sp.stop(); serr != nil && err == nil {
			err = serr
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "--- ship serve log (tail) ---\n%s\n", tail(sp.log, 40))
		}
	}()
	if err := sp.deployV1(); err != nil {
		return err
	}

	refURL, stopRef, err := serve(http.HandlerFunc(reference))
	if err != nil {
		return err
	}
	defer stopRef()

	client := &http.Client{Transport: &http.Transport{MaxIdleConns: 4 * o.n, MaxIdleConnsPerHost: 2 * o.n}, Timeout: 10 * time.Second}
	seq := 0 // makes every request unique: a repeated signature is a replay (401)
	// One status first, to show what the benchmark reads.
	lat, texts, err := burst(client, sp.base, 1, func(int) string { return "status web" }, fake, &seq)
	if err != nil {
		return fmt.Errorf("first status: %w", err)
	}
	if !strings.Contains(texts[0], "v1") {
		return fmt.Errorf("status of web does not mention v1: %s", texts[0])
	}
	fmt.Printf("status web (%s): %s\n", lat[0].Round(time.Microsecond), firstLine(texts[0]))

	lockText := func(i int) string {
		if i%2 == 0 {
			return "lock web --reason bench"
		}
		return "unlock web"
	}
	kinds := []struct {
		name string
		base string
		text func(int) string
	}{
		{"status", sp.base, func(int) string { return "status web" }},
		{"lock", sp.base, lockText},
		{"ref", refURL, func(int) string { return "status web" }},
	}
	if o.only != "" {
		kinds = slices.DeleteFunc(kinds, func(k struct {
			name string
			base string
			text func(int) string
		}) bool {
			return !slices.Contains(strings.Split(o.only, ","), k.name)
		})
	}
	fmt.Printf("load: %d concurrent signed slash commands per burst, 1 warm-up + %d rounds, loopback; status = \"/ship status web\", lock = \"/ship lock web --reason bench\" alternating with \"/ship unlock web\", ref = bare handler in the bench process\n", o.n, o.rounds)
	all := map[string][]time.Duration{}
	p99s := map[string][]time.Duration{}
	for r := 0; r <= o.rounds; r++ {
		// Rotate the order so none always runs first (cold) or last.
		order := slices.Clone(kinds)
		for range r % len(kinds) {
			order = append(order[1:], order[0])
		}
		for _, k := range order {
			lat, _, err := burst(client, k.base, o.n, k.text, fake, &seq)
			if err != nil {
				return fmt.Errorf("%s round %d: %w", k.name, r, err)
			}
			if r == 0 {
				continue
			}
			fmt.Printf("round %d %-6s p50 %8s  p99 %8s  max %8s\n", r, k.name, q(lat, 0.50), q(lat, 0.99), q(lat, 1))
			all[k.name] = append(all[k.name], lat...)
			p99s[k.name] = append(p99s[k.name], q(lat, 0.99))
		}
	}
	fmt.Printf("load average at end: %s\n", loadavg())
	ref := all["ref"]
	if len(ref) == 0 {
		ref = []time.Duration{0}
	}
	missed := false
	for _, k := range kinds {
		l := all[k.name]
		fmt.Printf("%-6s p50 %8s  p99 %8s  max %8s  median round p99 %8s  (%d requests)", k.name, q(l, 0.5), q(l, 0.99), q(l, 1), q(p99s[k.name], 0.5), len(l))
		if k.name != "ref" {
			fmt.Printf("  ratio to ref p50 %.2fx p99 %.2fx", ratio(q(l, 0.5), q(ref, 0.5)), ratio(q(l, 0.99), q(ref, 0.99)))
			if q(l, 0.99) > o.goal {
				missed = true
			}
		}
		fmt.Println()
	}
	if err := sp.checkMetrics(); err != nil {
		return err
	}
	if missed {
		fmt.Printf("goal p99 < %s: MISSED\n", o.goal)
		return errors.New("p99 above goal")
	}
	fmt.Printf("goal p99 < %s: met\n", o.goal)
	return nil
}

func startShip(o options, dir string, fake *slacktest.Server) (*shipProc, error) {
	data, apps := filepath.Join(dir, "data"), filepath.Join(dir, "apps")
	if err := os.MkdirAll(apps, 0o755); err != nil {
		return nil, err
	}
	apiPort, err := freePort()
	if err != nil {
		return nil, err
	}
	appPort, err := freePort()
	if err != nil {
		return nil, err
	}
	spec := fmt.Sprintf(`name: web
port: %d
healthPath: /healthz
replicas: 1
strategy:
  type: canary
  stepTimeout: 20s
  steps: [{weight: 100}]
run:
  command: %s
  args: ["--addr", "127.0.0.1:{{.Port}}", "--version-name", "{{.Version}}"]
  startTimeout: 10s
  stopGrace: 3s
`, appPort, o.testapp)
	if err := os.WriteFile(filepath.Join(apps, "web.yaml"), []byte(spec), 0o644); err != nil {
		return nil, err
	}
	chatCfg := fmt.Sprintf(`api_url: %s
bot_token: xoxb-bench
default_channel: CBENCH
apps:
  web:
    channel: CBENCH
`, fake.APIURL())
	cfgPath := filepath.Join(dir, "slack.yaml")
	if err := os.WriteFile(cfgPath, []byte(chatCfg), 0o600); err != nil {
		return nil, err
	}
	authPath := filepath.Join(dir, "auth.yaml")
	if err := os.WriteFile(authPath, []byte("grants:\n  - role: admin\n    users: [slack:UBENCH]\n"), 0o600); err != nil {
		return nil, err
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(apiPort))
	sp := &shipProc{base: "http://" + addr, log: filepath.Join(dir, "ship.log"), exited: make(chan struct{})}
	sp.env = cleanEnv(dir)
	logf, err := os.Create(sp.log)
	if err != nil {
		return nil, err
	}
	sp.cmd = exec.Command(o.ship, "serve", "--addr", addr, "--data", data, "--apps", apps, "--slack-config", cfgPath, "--auth-config", authPath, "--log-format", "json")
	sp.cmd.Env = append(slices.Clone(sp.env), "SHIP_SLACK_SIGNING_SECRET="+secret)
	sp.cmd.Stdout, sp.cmd.Stderr = logf, logf
	if err := sp.cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start ship serve: %w", err)
	}
	go func() { _ = sp.cmd.Wait(); logf.Close(); close(sp.exited) }()
	fmt.Printf("ship serve: pid %d on %s, app web on 127.0.0.1:%d, Slack stand-in %s\n", sp.cmd.Process.Pid, addr, appPort, fake.APIURL())
	deadline := time.Now().Add(30 * time.Second)
	for {
		select {
		case <-sp.exited:
			return sp, errors.New("ship serve exited during start")
		default:
		}
		if resp, err := http.Get(sp.base + "/healthz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			return sp, errors.New("ship serve did not answer /healthz within 30s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	b, err := os.ReadFile(filepath.Join(data, "admin-token"))
	if err != nil {
		return sp, err
	}
	sp.token = strings.TrimSpace(string(b))
	return sp, nil
}

// deployV1 deploys v1 through the CLI and waits for the outcome.
func (sp *shipProc) deployV1() error {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, sp.cmd.Path, "deploy", "web", "v1", "--wait")
	cmd.Env = append(slices.Clone(sp.env), "SHIP_SERVER="+sp.base, "SHIP_TOKEN="+sp.token)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("ship deploy web v1 --wait: %w\n%s", err, out)
	}
	fmt.Printf("deployed: %s\n", firstLine(string(bytes.TrimSpace(out))))
	return nil
}

// checkMetrics reads ship's slack counters: no request may have been
// refused as unauthorized or busy, or the figures measure refusals.
func (sp *shipProc) checkMetrics() error {
	req, _ := http.NewRequest(http.MethodGet, sp.base+"/metrics", nil)
	req.Header.Set("Authorization", "Bearer "+sp.token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("metrics: %w", err)
	}
	defer resp.Body.Close()
	var bad []string
	sc := bufio.NewScanner(resp.Body)
	var shown []string
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "ship_slack_") {
			continue
		}
		shown = append(shown, line)
		name, v, _ := strings.Cut(line, " ")
		if (strings.Contains(name, "unauthorized") || strings.Contains(name, "busy")) && v != "0" {
			bad = append(bad, line)
		}
	}
	fmt.Printf("ship's counters: %s\n", strings.Join(shown, "; "))
	if len(bad) > 0 {
		return fmt.Errorf("requests refused during the benchmark: %s", strings.Join(bad, "; "))
	}
	return nil
}

// stop sends SIGTERM to ship's PID (it drains its app instances) and
// SIGKILL if it has not exited within 40s.
func (sp *shipProc) stop() error {
	if sp == nil || sp.cmd == nil || sp.cmd.Process == nil {
		return nil
	}
	select {
	case <-sp.exited:
		return nil
	default:
	}
	_ = sp.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-sp.exited:
		return nil
	case <-time.After(40 * time.Second):
		_ = sp.cmd.Process.Kill()
		<-sp.exited
		return fmt.Errorf("ship serve (pid %d) did not stop within 40s of SIGTERM; killed", sp.cmd.Process.Pid)
	}
}

// cleanEnv keeps the children away from the caller's ship settings.
func cleanEnv(home string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "SHIP_") || strings.HasPrefix(kv, "HOME=") || strings.HasPrefix(kv, "XDG_CONFIG_HOME=") {
			continue
		}
		env = append(env, kv)
	}
	return append(env, "HOME="+home)
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func serve(h http.Handler) (string, func(), error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	return "http://" + ln.Addr().String(), func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	}, nil
}

// reference reads the body and answers fixed JSON: the floor of an HTTP
// round trip on this machine.
func reference(w http.ResponseWriter, r *http.Request) {
	_, _ = io.Copy(io.Discard, r.Body)
	w.Header().Set("Content-Type", "application/json")
	_, _ = io.WriteString(w, `{"response_type":"ephemeral","text":"ok"}`)
}

// burst fires n requests at once (each signed, each unique so none is a
// replay) and returns their latencies and reply texts.
func burst(client *http.Client, base string, n int, text func(int) string, fake *slacktest.Server, seq *int) ([]time.Duration, []string, error) {
	reqs := make([]*http.Request, n)
	ts := strconv.FormatInt(time.Now().Unix(), 10)
	for i := range reqs {
		*seq++
		body := url.Values{
			"token": {"x"}, "team_id": {"T1"}, "channel_id": {"CBENCH"}, "user_id": {"UBENCH"}, "user_name": {"bench"},
			"command": {"/ship"}, "text": {text(i)}, "response_url": {fake.ResponseURL(strconv.Itoa(*seq))},
			"trigger_id": {strconv.Itoa(*seq)},
		}.Encode()
		req, err := http.NewRequest(http.MethodPost, base+"/slack/commands", strings.NewReader(body))
		if err != nil {
			return nil, nil, err
		}
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("X-Slack-Request-Timestamp", ts)
		req.Header.Set("X-Slack-Signature", slack.SignatureHeader(secret, ts, []byte(body)))
		reqs[i] = req
	}
	lat := make([]time.Duration, n)
	texts := make([]string, n)
	errs := make([]error, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i, req := range reqs {
		wg.Go(func() {
			<-start
			t0 := time.Now()
			resp, err := client.Do(req)
			if err != nil {
				errs[i] = err
				return
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			lat[i] = time.Since(t0)
			texts[i] = string(b)
			if resp.StatusCode != http.StatusOK || !strings.Contains(string(b), `"text"`) {
				errs[i] = fmt.Errorf("status %d: %s", resp.StatusCode, b)
			}
		})
	}
	close(start)
	wg.Wait()
	return lat, texts, errors.Join(errs...)
}

func q(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	i := int(float64(len(s))*p+0.5) - 1
	i = max(0, min(i, len(s)-1))
	return s[i].Round(10 * time.Microsecond)
}

func ratio(a, b time.Duration) float64 {
	if b == 0 {
		return 0
	}
	return float64(a) / float64(b)
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	if len(s) > 160 {
		s = s[:160] + "…"
	}
	return s
}

func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

func nproc() string {
	out, err := exec.Command("nproc").Output()
	if err != nil {
		return "?"
	}
	return strings.TrimSpace(string(out))
}

func cpuModel() string {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return "unknown CPU"
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown CPU"
}
