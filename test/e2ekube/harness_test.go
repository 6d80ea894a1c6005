package e2ekube

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	gwclient "sigs.k8s.io/gateway-api/pkg/client/clientset/versioned"

	"github.com/shipteam/ship/internal/kubetest"
	"github.com/shipteam/ship/internal/runtime/kube"
	"github.com/shipteam/ship/internal/spec"
)

// waitFor bounds every wait on the cluster or on ship: generous, since the
// two shared cores may be loaded; a passing run takes a fraction of it.
const waitFor = 90 * time.Second

// child is one process started by a test: output to a file, stopped by
// its PID. Nothing reads a pipe from it, so Wait never blocks on output.
type child struct {
	name string
	cmd  *exec.Cmd
	out  string // path of the combined stdout+stderr (serve) or stdout (CLI)
	done chan struct{}
	err  error // Wait's result, once done is closed
}

func startChild(t *testing.T, name string, stdout, stderr string, env []string, args ...string) *child {
	t.Helper()
	of, err := os.Create(stdout)
	if err != nil {
		t.Fatal(err)
	}
	ef := of
	if stderr != stdout {
		if ef, err = os.Create(stderr); err != nil {
			of.Close()
			t.Fatal(err)
		}
	}
	cmd := exec.Command(shipBin, args...)
	cmd.Stdout, cmd.Stderr = of, ef
	cmd.Env = env
	// Children die with the test binary even when it is killed.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		of.Close()
		ef.Close()
		t.Fatalf("start %s: %v", name, err)
	}
	c := &child{name: name, cmd: cmd, out: stdout, done: make(chan struct{})}
	go func() {
		c.err = cmd.Wait()
		of.Close()
		if ef != of {
			ef.Close()
		}
		close(c.done)
	}()
	return c
}

func (c *child) exited() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM, then SIGKILL after grace; it reports whether the
// process ended within the grace.
func (c *child) stop(grace time.Duration) bool {
	if c.exited() {
		return true
	}
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.done:
		return true
	case <-time.After(grace):
		_ = c.cmd.Process.Kill()
		<-c.done
		return false
	}
}

// kill sends SIGKILL and waits until the process is gone.
func (c *child) kill() {
	_ = c.cmd.Process.Kill()
	<-c.done
}

// exitCode is the exit status, or -1 while the process runs.
func (c *child) exitCode() int {
	if !c.exited() {
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

// cleanEnv is every child's environment: nothing from the developer's
// ship config or kubeconfig leaks in; the cluster is named by flag only.
func cleanEnv(home string) []string {
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

// shipServe is `ship serve --runtime kube` on a data dir that outlives its
// restarts.
type shipServe struct {
	t     *testing.T
	dir   string
	data  string
	apps  string
	addr  string
	token string
	runs  int
	serve *child
	clis  int
	kube  *kubeClient
}

// newShip writes the app specs (file name → YAML) and starts ship serve;
// the test's cleanup stops it by PID and, when the test failed, prints its
// logs.
func newShip(t *testing.T, specs map[string]string) *shipServe {
	t.Helper()
	c := kubetest.Need(t, cluster)
	dir := t.TempDir()
	s := &shipServe{t: t, dir: dir, data: filepath.Join(dir, "data"), apps: filepath.Join(dir, "apps"),
		addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(freePort(t))), kube: newKubeClient(t, c)}
	if err := os.MkdirAll(s.apps, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, y := range specs {
		if err := os.WriteFile(filepath.Join(s.apps, name+".yaml"), []byte(y), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		if s.serve != nil && !s.serve.stop(20*time.Second) {
			t.Errorf("ship serve (pid %d) did not stop within 20s of SIGTERM; killed", s.serve.cmd.Process.Pid)
		}
		if t.Failed() {
			s.dumpLogs()
		}
	})
	s.start()
	return s
}

// start runs ship serve and waits until its API answers.
func (s *shipServe) start() {
	t := s.t
	t.Helper()
	s.runs++
	log := filepath.Join(s.dir, fmt.Sprintf("serve-%d.log", s.runs))
	s.serve = startChild(t, "ship serve", log, log, cleanEnv(s.dir),
		"serve", "--runtime", "kube", "--kubeconfig", cluster.Kubeconfig,
		"--apps", s.apps, "--data", s.data, "--addr", s.addr, "--log-format", "json", "--log-level", "debug")
	hc := &http.Client{Timeout: 2 * time.Second}
	eventually(t, "ship serve answers /healthz", func() string {
		if s.serve.exited() {
			t.Fatalf("ship serve exited during start (%v):\n%s", s.serve.err, s.logs())
		}
		resp, err := hc.Get("http://" + s.addr + "/healthz")
		if err != nil {
			return err.Error()
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return resp.Status
		}
		return ""
	})
	b, err := os.ReadFile(filepath.Join(s.data, "admin-token"))
	if err != nil {
		t.Fatal(err)
	}
	s.token = strings.TrimSpace(string(b))
}

// kill ends ship serve with SIGKILL: no shutdown, as when a machine dies.
func (s *shipServe) kill() {
	s.t.Helper()
	s.serve.kill()
	s.t.Logf("ship serve run %d killed (SIGKILL)", s.runs)
}

func (s *shipServe) logs() string {
	var b strings.Builder
	for i := 1; i <= s.runs; i++ {
		data, _ := os.ReadFile(filepath.Join(s.dir, fmt.Sprintf("serve-%d.log", i)))
		fmt.Fprintf(&b, "--- ship serve run %d ---\n%s", i, data)
	}
	return b.String()
}

func (s *shipServe) dumpLogs() {
	out := s.logs()
	if len(out) > 80000 {
		out = "…" + out[len(out)-80000:]
	}
	s.t.Logf("ship serve logs:\n%s", out)
}

// cliResult is how one CLI command ended.
type cliResult struct {
	args           []string
	code           int
	stdout, stderr string
}

func (r cliResult) String() string {
	return fmt.Sprintf("ship %s: exit %d\nstdout:\n%s\nstderr:\n%s", strings.Join(r.args, " "), r.code, r.stdout, r.stderr)
}

// startCLI starts `ship ARGS --server URL --token T` in the background.
func (s *shipServe) startCLI(args ...string) (*child, []string) {
	s.t.Helper()
	s.clis++
	base := filepath.Join(s.dir, fmt.Sprintf("cli-%d", s.clis))
	full := append(slices.Clone(args), "--server", "http://"+s.addr, "--token", s.token)
	c := startChild(s.t, "ship "+args[0], base+".out", base+".err", cleanEnv(s.dir), full...)
	s.t.Cleanup(func() { c.stop(2 * time.Second) }) // one a failed test left behind
	return c, args
}

// waitCLI waits for a CLI started by startCLI; one that outlives d is
// killed and fails the test.
func (s *shipServe) waitCLI(c *child, args []string, d time.Duration) cliResult {
	s.t.Helper()
	select {
	case <-c.done:
	case <-time.After(d):
		c.stop(2 * time.Second)
		r := s.result(c, args)
		s.t.Fatalf("ship %s did not exit within %s:\n%s", strings.Join(args, " "), d, r)
	}
	return s.result(c, args)
}

func (s *shipServe) result(c *child, args []string) cliResult {
	out, _ := os.ReadFile(c.out)
	errb, _ := os.ReadFile(strings.TrimSuffix(c.out, ".out") + ".err")
	return cliResult{args: args, code: c.exitCode(), stdout: string(out), stderr: string(errb)}
}

// cli runs one CLI command to its end.
func (s *shipServe) cli(args ...string) cliResult {
	s.t.Helper()
	c, a := s.startCLI(args...)
	return s.waitCLI(c, a, 2*waitFor)
}

// mustCLI runs the CLI and fails the test unless it exits 0.
func (s *shipServe) mustCLI(args ...string) cliResult {
	s.t.Helper()
	r := s.cli(args...)
	if r.code != 0 {
		s.t.Fatalf("%s", r)
	}
	s.t.Logf("ship %s: ok\n%s", strings.Join(args, " "), strings.TrimSpace(r.stdout))
	return r
}

// cliJSON runs the CLI with --output json and decodes its stdout into v.
func (s *shipServe) cliJSON(v any, args ...string) {
	s.t.Helper()
	r := s.cli(append(args, "--output", "json")...)
	if r.code != 0 {
		s.t.Fatalf("%s", r)
	}
	if err := json.Unmarshal([]byte(r.stdout), v); err != nil {
		s.t.Fatalf("%s\ndecode: %v", r, err)
	}
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

// eventually polls f until it returns "" or waitFor passes, then fails
// with f's last complaint.
func eventually(t *testing.T, what string, f func() string) {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	start := time.Now()
	first := ""
	for {
		last := f()
		if last == "" {
			if first != "" {
				t.Logf("%s: after %s (at first: %s)", what, time.Since(start).Round(time.Millisecond), first)
			}
			return
		}
		if first == "" {
			first = last
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not reached within %s: %s", what, waitFor, last)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// kubeClient reads what ship made in the cluster, as an operator would
// with kubectl.
type kubeClient struct {
	t   *testing.T
	ctx context.Context
	cs  kubernetes.Interface
	gw  gwclient.Interface
}

func newKubeClient(t *testing.T, c *kubetest.Cluster) *kubeClient {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	t.Cleanup(cancel)
	cs, err := kubernetes.NewForConfig(c.RestConfig)
	if err != nil {
		t.Fatal(err)
	}
	gw, err := gwclient.NewForConfig(c.RestConfig)
	if err != nil {
		t.Fatal(err)
	}
	return &kubeClient{t: t, ctx: ctx, cs: cs, gw: gw}
}

// namespace is where ship puts app (parsed from the same YAML ship reads).
func namespace(t *testing.T, yaml string) string {
	t.Helper()
	apps, err := spec.Parse("app.yaml", []byte(yaml))
	if err != nil {
		t.Fatalf("spec: %v", err)
	}
	ns, err := apps[0].NamespaceFor("")
	if err != nil {
		t.Fatal(err)
	}
	return ns
}

// deployments lists app's Deployments (not being deleted) as
// "name=version", sorted.
func (k *kubeClient) deployments(ns, app string) (string, error) {
	ds, err := k.cs.AppsV1().Deployments(ns).List(k.ctx, metav1.ListOptions{LabelSelector: kube.LabelApp + "=" + app})
	if err != nil {
		return "", err
	}
	var out []string
	for _, d := range ds.Items {
		if d.DeletionTimestamp == nil {
			out = append(out, d.Name+"="+d.Labels[kube.LabelVersion])
		}
	}
	slices.Sort(out)
	return strings.Join(out, " "), nil
}

func (k *kubeClient) waitDeployments(ns, app, want string) {
	k.t.Helper()
	eventually(k.t, fmt.Sprintf("deployments of %s are %q", app, want), func() string {
		got, err := k.deployments(ns, app)
		if err != nil {
			return err.Error()
		}
		if got != want {
			return fmt.Sprintf("%q", got)
		}
		return ""
	})
}

// available describes a Deployment that is not yet fully rolled out at
// version with n replicas, Available; "" when it is.
func available(d *appsv1.Deployment, version string, n int32) string {
	cond := "no Available condition"
	for _, c := range d.Status.Conditions {
		if c.Type == appsv1.DeploymentAvailable {
			cond = fmt.Sprintf("Available=%s (%s)", c.Status, c.Reason)
			if c.Status == corev1.ConditionTrue {
				cond = ""
			}
		}
	}
	s := d.Status
	if d.Labels[kube.LabelVersion] != version || d.Spec.Template.Labels[kube.LabelVersion] != version ||
		s.ObservedGeneration < d.Generation || s.Replicas != n || s.UpdatedReplicas != n || s.ReadyReplicas != n || s.AvailableReplicas != n || cond != "" {
		return fmt.Sprintf("%s: version %s, generation %d observed %d, replicas %d updated %d ready %d available %d; %s",
			d.Name, d.Labels[kube.LabelVersion], d.Generation, s.ObservedGeneration, s.Replicas, s.UpdatedReplicas, s.ReadyReplicas, s.AvailableReplicas, cond)
	}
	return ""
}

// waitAvailable waits until Deployment name runs n ready pods of version
// and says Available, as `kubectl rollout status` would.
func (k *kubeClient) waitAvailable(ns, name, version string, n int32) {
	k.t.Helper()
	eventually(k.t, fmt.Sprintf("deployment %s available at %s x%d", name, version, n), func() string {
		d, err := k.cs.AppsV1().Deployments(ns).Get(k.ctx, name, metav1.GetOptions{})
		if err != nil {
			return err.Error()
		}
		return available(d, version, n)
	})
}

// routeWeights is the HTTPRoute's backendRefs as "service=weight ...".
func (k *kubeClient) routeWeights(ns, app string) (string, error) {
	route, err := k.gw.GatewayV1().HTTPRoutes(ns).Get(k.ctx, app, metav1.GetOptions{})
	if err != nil {
		return "", err
	}
	var parts []string
	for _, r := range route.Spec.Rules {
		for _, b := range r.BackendRefs {
			w := "unset"
			if b.Weight != nil {
				w = strconv.Itoa(int(*b.Weight))
			}
			parts = append(parts, fmt.Sprintf("%s=%s", b.Name, w))
		}
	}
	return strings.Join(parts, " "), nil
}

func (k *kubeClient) waitRoute(ns, app, want string) {
	k.t.Helper()
	eventually(k.t, fmt.Sprintf("route %s is %q", app, want), func() string {
		got, err := k.routeWeights(ns, app)
		if err != nil {
			return err.Error()
		}
		if got != want {
			return fmt.Sprintf("%q", got)
		}
		return ""
	})
}

// mustAvailable checks at once that Deployment name is rolled out at
// version with n Available pods: what a CLI that said "succeeded" promises.
func (k *kubeClient) mustAvailable(ns, name, version string, n int32) {
	k.t.Helper()
	d, err := k.cs.AppsV1().Deployments(ns).Get(k.ctx, name, metav1.GetOptions{})
	if err != nil {
		k.t.Fatal(err)
	}
	if why := available(d, version, n); why != "" {
		k.t.Errorf("right after the CLI reported success, the cluster has not finished: %s", why)
	}
}

// mustRoute checks the route's weights at once.
func (k *kubeClient) mustRoute(ns, app, want string) {
	k.t.Helper()
	got, err := k.routeWeights(ns, app)
	if err != nil {
		k.t.Fatal(err)
	}
	if got != want {
		k.t.Errorf("right after the CLI returned, route %s is %q, want %q", app, got, want)
	}
}
