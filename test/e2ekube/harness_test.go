package e2ekube

import (
	"context"
	"encoding/json"
	"fmt"
	"github.com/shipteam/ship/internal/eventually"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
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
	"github.com/shipteam/ship/test/procs"
)

// waitFor bounds every wait on the cluster or on ship: generous, since the
// two shared cores may be loaded; a passing run takes a fraction of it.
const waitFor = 90 * time.Second

// shipServe is `ship serve --runtime kube` on a data dir that outlives its
// restarts.
type shipServe struct {
	t     *testing.T
	dir   string
	data  string
	apps  string
	addr  string
	token string
	serve *procs.Server
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
		addr: procs.FreeAddr(t), kube: newKubeClient(t, c), serve: &procs.Server{Name: "ship serve", Dir: dir}}
	if err := os.MkdirAll(s.apps, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, y := range specs {
		if err := os.WriteFile(filepath.Join(s.apps, name+".yaml"), []byte(y), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		s.serve.Stop(t, 20*time.Second)
		if t.Failed() {
			s.serve.DumpLogs(t, 80000)
		}
	})
	s.start()
	return s
}

// start runs ship serve and waits until its API answers.
func (s *shipServe) start() {
	t := s.t
	t.Helper()
	s.serve.Start(t, procs.Command{Path: shipBin,
		Args: []string{"serve", "--runtime", "kube", "--kubeconfig", cluster.Kubeconfig,
			"--apps", s.apps, "--data", s.data, "--addr", s.addr, "--log-format", "json", "--log-level", "debug"},
		Env: procs.CleanEnv(s.dir)}, "http://"+s.addr+"/healthz", waitFor)
	b, err := os.ReadFile(filepath.Join(s.data, "admin-token"))
	if err != nil {
		t.Fatal(err)
	}
	s.token = strings.TrimSpace(string(b))
}

// kill ends ship serve with SIGKILL: no shutdown, as when a machine dies.
func (s *shipServe) kill() {
	s.t.Helper()
	s.serve.Kill()
	s.t.Logf("ship serve run %d killed (SIGKILL)", s.serve.Runs())
}

// startCLI starts `ship ARGS --server URL --token T` in the background
// (its name, in messages, leaves the token out).
func (s *shipServe) startCLI(args ...string) *procs.Child {
	s.t.Helper()
	s.clis++
	base := filepath.Join(s.dir, fmt.Sprintf("cli-%d", s.clis))
	c := procs.Start(s.t, procs.Command{Name: "ship " + strings.Join(args, " "), Path: shipBin,
		Args: append(slices.Clone(args), "--server", "http://"+s.addr, "--token", s.token),
		Env:  procs.CleanEnv(s.dir), Stdout: base + ".out", Stderr: base + ".err"})
	s.t.Cleanup(func() { c.Stop(2 * time.Second) }) // one a failed test left behind
	return c
}

// waitCLI waits for a CLI started by startCLI; one that outlives d is
// killed and fails the test.
func (s *shipServe) waitCLI(c *procs.Child, d time.Duration) procs.Result {
	s.t.Helper()
	if !c.Wait(d) {
		c.Stop(2 * time.Second)
		s.t.Fatalf("%s did not exit within %s:\n%s", c.Name, d, c.Result())
	}
	return c.Result()
}

// cli runs one CLI command to its end.
func (s *shipServe) cli(args ...string) procs.Result {
	s.t.Helper()
	return s.waitCLI(s.startCLI(args...), 2*waitFor)
}

// mustCLI runs the CLI and fails the test unless it exits 0.
func (s *shipServe) mustCLI(args ...string) procs.Result {
	s.t.Helper()
	r := s.cli(args...)
	if r.Code != 0 {
		s.t.Fatalf("%s", r)
	}
	s.t.Logf("%s: ok\n%s", r.Name, strings.TrimSpace(r.Stdout))
	return r
}

// cliJSON runs the CLI with --output json and decodes its stdout into v.
func (s *shipServe) cliJSON(v any, args ...string) {
	s.t.Helper()
	r := s.cli(append(args, "--output", "json")...)
	if r.Code != 0 {
		s.t.Fatalf("%s", r)
	}
	if err := json.Unmarshal([]byte(r.Stdout), v); err != nil {
		s.t.Fatalf("%s\ndecode: %v", r, err)
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
	eventually.Reason(k.t, waitFor, fmt.Sprintf("deployments of %s are %q", app, want), func() string {
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
	eventually.Reason(k.t, waitFor, fmt.Sprintf("deployment %s available at %s x%d", name, version, n), func() string {
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
	eventually.Reason(k.t, waitFor, fmt.Sprintf("route %s is %q", app, want), func() string {
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
