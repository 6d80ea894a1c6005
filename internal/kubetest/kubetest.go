// Package kubetest starts a real Kubernetes control plane on loopback for
// tests: etcd (Debian etcd-server), kube-apiserver, kube-controller-manager
// and kube-scheduler built from k8s.io/kubernetes (module test/kubecluster,
// cached outside the repo by scripts/kube-build), and kwok for fake nodes
// whose pods are scheduled, get IPs and become Ready without running
// containers. It installs the Gateway API CRDs and a Gateway routes can
// attach to. Every process is started and stopped by its own PID, and dies
// with the test binary if that is killed.
//
// Tests start one cluster per test binary with Main from TestMain.
package kubetest

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	goruntime "runtime"
	"strings"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// Version is the Kubernetes version the harness builds and runs; it must
// match test/kubecluster/go.mod and scripts/kube-build.
const Version = "v1.37.2"

// The Gateway every test cluster has, for HTTPRoutes to attach to. Nothing
// programs it (there is no data plane): routes are real API objects only.
const (
	GatewayName      = "ship-test"
	GatewayNamespace = "ship-gateway"
	GatewayClassName = "ship-test"
)

// stopGrace is how long a part gets between SIGTERM and SIGKILL.
// kube-apiserver drains its long-running watches for much longer; tests
// gain nothing from that wait.
const stopGrace = 3 * time.Second

// NodeName is the kwok node pods are scheduled on.
const NodeName = "kwok-node-0"

// NeverReadyVersion is a version whose pods kwok runs but never marks
// ready (a stage of the harness's own, keyed on ship's version label): a
// release of it must fail with the cluster's ProgressDeadlineExceeded.
const NeverReadyVersion = "never-ready"

// neverReadyStage runs pods labelled ship.dev/version=NeverReadyVersion
// without ever making them Ready; its weight wins over kwok's pod-ready.
const neverReadyStage = `apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata:
  name: ship-pod-never-ready
spec:
  resourceRef:
    apiGroup: v1
    kind: Pod
  selector:
    matchExpressions:
    - key: '.metadata.labels["ship.dev/version"]'
      operator: 'In'
      values: ['` + NeverReadyVersion + `']
    - key: '.metadata.deletionTimestamp'
      operator: 'DoesNotExist'
    - key: '.status.phase'
      operator: 'In'
      values: ['Pending']
  weight: 10000
  next:
    statusTemplate: |
      {{ $now := Now }}
      conditions:
      - lastTransitionTime: {{ $now | Quote }}
        status: "True"
        type: Initialized
      - lastTransitionTime: {{ $now | Quote }}
        status: "False"
        reason: ContainersNotReady
        message: "containers with unready status: [app]"
        type: Ready
      - lastTransitionTime: {{ $now | Quote }}
        status: "False"
        reason: ContainersNotReady
        type: ContainersReady
      containerStatuses:
      {{ range .spec.containers }}
      - image: {{ .image | Quote }}
        name: {{ .name | Quote }}
        ready: false
        started: true
        restartCount: 0
        state:
          running:
            startedAt: {{ $now | Quote }}
      {{ end }}
      hostIP: {{ NodeIPWith .spec.nodeName | Quote }}
      podIP: {{ PodIPWith .spec.nodeName ( or .spec.hostNetwork false ) ( or .metadata.uid "" ) ( or .metadata.name "" ) ( or .metadata.namespace "" ) | Quote }}
      phase: Running
      startTime: {{ $now | Quote }}
`

// FailLabel on a pod (value "true") makes kwok fail its container right
// after it starts running, so it never becomes ready: a version that
// cannot start.
const FailLabel = "pod-container-running-failed.stage.kwok.x-k8s.io"

// Options tune Start; the zero value is fine.
type Options struct {
	// Dir holds data, certificates and process logs; default a new temp
	// dir removed by Stop.
	Dir string
	// Logger reports progress; default discards.
	Logger *slog.Logger
	// Timeout bounds the whole start; default 5m (the machine may be loaded).
	Timeout time.Duration
}

// Cluster is a running control plane.
type Cluster struct {
	Dir        string
	Kubeconfig string       // path of an admin kubeconfig
	RestConfig *rest.Config // admin (system:masters) config
	BinDir     string       // folder of the cached binaries and data

	log     *slog.Logger
	ownDir  bool
	ports   map[string]int
	token   string
	procs   []*proc // in start order
	started time.Time
}

type proc struct {
	name string
	cmd  *exec.Cmd
	log  *os.File
	done chan struct{}
	err  error
}

// Binaries makes sure the control-plane binaries are built and cached (see
// scripts/kube-build) and returns the cache folder (bin/, kwok-stages/,
// gateway-api-crds/). The first call on a machine builds for minutes.
func Binaries(ctx context.Context) (string, error) {
	_, file, _, ok := goruntime.Caller(0)
	if !ok {
		return "", errors.New("kubetest: cannot locate the repository")
	}
	script := filepath.Join(filepath.Dir(file), "..", "..", "scripts", "kube-build")
	cmd := exec.CommandContext(ctx, script)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("kubetest: %s: %w\n%s", script, err, tail(errb.String(), 4000))
	}
	dir := strings.TrimSpace(lastLine(out.String()))
	if dir == "" {
		return "", fmt.Errorf("kubetest: %s printed no folder", script)
	}
	return dir, nil
}

// Start builds (once) and starts a cluster. On error everything started so
// far is stopped.
func Start(ctx context.Context, opt Options) (c *Cluster, err error) {
	if opt.Logger == nil {
		opt.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if opt.Timeout == 0 {
		opt.Timeout = 5 * time.Minute
	}
	ctx, cancel := context.WithTimeout(ctx, opt.Timeout+30*time.Minute) // the first build is slow
	defer cancel()
	bin, err := Binaries(ctx)
	if err != nil {
		return nil, err
	}
	etcd, legacyEtcd, err := etcdPath(bin)
	if err != nil {
		return nil, err
	}
	// The ports are picked free, then bound by the parts a moment later;
	// another process (a parallel test package's cluster) may take one in
	// between. Then start again on new ones (in a new folder: etcd keeps
	// its peer address in its data, so a caller's Dir is not retried).
	for attempt := 1; ; attempt++ {
		c, err = startOnce(ctx, opt, bin, etcd, legacyEtcd)
		if err == nil || attempt == maxStarts || opt.Dir != "" || !errors.Is(err, errPortTaken) {
			return c, err
		}
		opt.Logger.Warn("kube test cluster: a port was taken meanwhile; starting again on new ports", "attempt", attempt, "err", err)
	}
}

// maxStarts bounds the starts on new ports after a port was taken.
const maxStarts = 3

// errPortTaken marks a start that failed because a part could not bind
// the port picked for it.
var errPortTaken = errors.New("a port picked for the cluster was taken")

func startOnce(ctx context.Context, opt Options, bin, etcd string, legacyEtcd bool) (c *Cluster, err error) {
	ctx, cancel := context.WithTimeout(ctx, opt.Timeout)
	defer cancel()

	c = &Cluster{Dir: opt.Dir, BinDir: bin, log: opt.Logger, ports: map[string]int{}, started: time.Now()}
	if c.Dir == "" {
		if c.Dir, err = os.MkdirTemp("", "ship-kube-"); err != nil {
			return nil, err
		}
		c.ownDir = true
	}
	defer func() {
		if err != nil {
			if c.portTaken() {
				err = fmt.Errorf("%w: %w", errPortTaken, err)
			}
			err = fmt.Errorf("%w%s", err, c.logTails())
			c.Stop()
		}
	}()
	for _, n := range []string{"etcd", "etcd-peer", "apiserver", "kcm", "scheduler", "kwok"} {
		if c.ports[n], err = pickPort(n); err != nil {
			return c, err
		}
	}
	if err := c.writeFiles(); err != nil {
		return c, err
	}

	etcdURL := fmt.Sprintf("http://127.0.0.1:%d", c.ports["etcd"])
	etcdArgs := []string{
		"--data-dir", filepath.Join(c.Dir, "etcd"),
		"--listen-client-urls", etcdURL, "--advertise-client-urls", etcdURL,
		"--listen-peer-urls", fmt.Sprintf("http://127.0.0.1:%d", c.ports["etcd-peer"]),
		"--initial-advertise-peer-urls", fmt.Sprintf("http://127.0.0.1:%d", c.ports["etcd-peer"]),
		"--initial-cluster", fmt.Sprintf("default=http://127.0.0.1:%d", c.ports["etcd-peer"]),
		"--unsafe-no-fsync", // test data: durability across machine crashes is not needed
	}
	if legacyEtcd {
		// etcd 3.4 cannot answer the apiserver's progress requests
		// (RequestWatchProgress); periodic progress notifications let its
		// watch cache catch up with a quiet etcd sooner.
		etcdArgs = append(etcdArgs, "--experimental-watch-progress-notify-interval=200ms")
	}
	if err := c.start(etcd, etcdArgs...); err != nil {
		return c, err
	}
	if err := c.waitHTTP(ctx, etcdURL+"/health", nil); err != nil {
		return c, fmt.Errorf("etcd: %w", err)
	}
	if err := c.startAPIServer(); err != nil {
		return c, err
	}
	c.RestConfig = &rest.Config{
		Host:            fmt.Sprintf("https://127.0.0.1:%d", c.ports["apiserver"]),
		BearerToken:     c.token,
		TLSClientConfig: rest.TLSClientConfig{Insecure: true},
		QPS:             200,
		Burst:           400,
	}
	if err := c.WaitReady(ctx); err != nil {
		return c, err
	}
	kc := c.Kubeconfig
	if err := c.start(filepath.Join(bin, "bin", "kube-controller-manager"),
		"--kubeconfig", kc, "--authentication-kubeconfig", kc, "--authorization-kubeconfig", kc,
		"--bind-address=127.0.0.1", fmt.Sprintf("--secure-port=%d", c.ports["kcm"]),
		"--leader-elect=false",
		"--service-account-private-key-file", filepath.Join(c.Dir, "sa.key"),
		"--root-ca-file", filepath.Join(c.Dir, "certs", "apiserver.crt"),
		"--use-service-account-credentials=false",
		"--horizontal-pod-autoscaler-sync-period=1s", // tests wait on HPA decisions
	); err != nil {
		return c, err
	}
	if err := c.start(filepath.Join(bin, "bin", "kube-scheduler"),
		"--kubeconfig", kc, "--authentication-kubeconfig", kc, "--authorization-kubeconfig", kc,
		"--bind-address=127.0.0.1", fmt.Sprintf("--secure-port=%d", c.ports["scheduler"]),
		"--leader-elect=false",
	); err != nil {
		return c, err
	}
	if err := c.start(filepath.Join(bin, "bin", "kwok"),
		"--kubeconfig", kc, "--config", filepath.Join(c.Dir, "kwok-stages.yaml"),
		"--manage-all-nodes=false", "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
		"--cidr=10.0.0.1/24", "--node-ip=10.0.0.1",
		"--server-address", fmt.Sprintf("127.0.0.1:%d", c.ports["kwok"]),
	); err != nil {
		return c, err
	}
	if err := c.setup(ctx); err != nil {
		return c, err
	}
	c.log.Info("kube test cluster ready", "dir", c.Dir, "apiserver", c.RestConfig.Host, "took", time.Since(c.started).Round(time.Millisecond))
	return c, nil
}

// etcdPath prefers the etcd built with the control plane (3.7: it
// supports the watch progress requests kube-apiserver and kwok's watch-list
// streams rely on) and falls back to the Debian etcd-server's 3.4, with
// which kwok sees new pods seconds late.
func etcdPath(bin string) (path string, legacy bool, err error) {
	if p := os.Getenv("SHIP_KUBE_ETCD"); p != "" {
		out, _ := exec.Command(p, "--version").Output()
		return p, strings.Contains(string(out), "Version: 3.4."), nil
	}
	if p := filepath.Join(bin, "bin", "etcd"); fileExists(p) {
		return p, false, nil
	}
	p, err := exec.LookPath("etcd")
	if err != nil {
		return "", false, errors.New("kubetest: no etcd: scripts/kube-build did not build one and none is in PATH (Debian package etcd-server)")
	}
	return p, true, nil
}

func fileExists(p string) bool {
	st, err := os.Stat(p)
	return err == nil && !st.IsDir()
}

func (c *Cluster) startAPIServer() error {
	return c.start(filepath.Join(c.BinDir, "bin", "kube-apiserver"),
		fmt.Sprintf("--etcd-servers=http://127.0.0.1:%d", c.ports["etcd"]),
		"--bind-address=127.0.0.1", fmt.Sprintf("--secure-port=%d", c.ports["apiserver"]),
		"--cert-dir", filepath.Join(c.Dir, "certs"),
		"--token-auth-file", filepath.Join(c.Dir, "tokens.csv"),
		"--authorization-mode=RBAC",
		"--service-account-key-file", filepath.Join(c.Dir, "sa.pub"),
		"--service-account-signing-key-file", filepath.Join(c.Dir, "sa.key"),
		"--service-account-issuer=https://kubernetes.default.svc",
		"--service-cluster-ip-range=10.96.0.0/16",
	)
}

// WaitReady waits until kube-apiserver answers /readyz.
func (c *Cluster) WaitReady(ctx context.Context) error {
	if err := c.waitHTTP(ctx, c.RestConfig.Host+"/readyz", func(r *http.Request) {
		r.Header.Set("Authorization", "Bearer "+c.token)
	}); err != nil {
		return fmt.Errorf("kube-apiserver: %w", err)
	}
	return nil
}

// RestartAPIServer stops kube-apiserver by its PID and starts it again on
// the same port and data, for tests of a control plane that goes away.
func (c *Cluster) RestartAPIServer(ctx context.Context) error {
	for i, p := range c.procs {
		if p.name != "kube-apiserver" {
			continue
		}
		p.stop(stopGrace)
		c.procs = append(c.procs[:i], c.procs[i+1:]...)
		break
	}
	if err := c.startAPIServer(); err != nil {
		return err
	}
	return c.WaitReady(ctx)
}

// Stop stops every process by its PID, newest first, and removes the
// folder when Start created it. Safe to call more than once.
func (c *Cluster) Stop() {
	for i := len(c.procs) - 1; i >= 0; i-- {
		c.procs[i].stop(stopGrace)
	}
	c.procs = nil
	if c.ownDir && os.Getenv("SHIP_KUBE_KEEP") == "" {
		os.RemoveAll(c.Dir)
	}
}

// PIDs returns the process id of every running part, by name.
func (c *Cluster) PIDs() map[string]int {
	m := map[string]int{}
	for _, p := range c.procs {
		m[p.name] = p.cmd.Process.Pid
	}
	return m
}

func (c *Cluster) start(path string, args ...string) error {
	name := filepath.Base(path)
	f, err := os.OpenFile(filepath.Join(c.Dir, name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	cmd := exec.Command(path, args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.Dir = c.Dir
	// The parts die with the test binary even when it is killed.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		f.Close()
		return fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, log: f, done: make(chan struct{})}
	go func() { p.err = cmd.Wait(); f.Close(); close(p.done) }()
	c.procs = append(c.procs, p)
	c.log.Debug("started", "name", name, "pid", cmd.Process.Pid)
	return nil
}

func (p *proc) stop(grace time.Duration) {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(grace):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

func (c *Cluster) writeFiles() error {
	if err := os.MkdirAll(filepath.Join(c.Dir, "certs"), 0o755); err != nil {
		return err
	}
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return err
	}
	pub, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return err
	}
	tok := make([]byte, 16)
	if _, err := rand.Read(tok); err != nil {
		return err
	}
	c.token = hex.EncodeToString(tok)
	c.Kubeconfig = filepath.Join(c.Dir, "kubeconfig")
	kubeconfig := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: test
  cluster:
    server: https://127.0.0.1:%d
    insecure-skip-tls-verify: true
users:
- name: admin
  user:
    token: %s
contexts:
- name: test
  context: {cluster: test, user: admin}
current-context: test
`, c.ports["apiserver"], c.token)
	stages, err := c.kwokStages()
	if err != nil {
		return err
	}
	for name, data := range map[string][]byte{
		"sa.key":           pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)}),
		"sa.pub":           pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub}),
		"tokens.csv":       []byte(c.token + ",admin,admin,system:masters\n"),
		"kubeconfig":       []byte(kubeconfig),
		"kwok-stages.yaml": stages,
	} {
		if err := os.WriteFile(filepath.Join(c.Dir, name), data, 0o600); err != nil {
			return err
		}
	}
	return nil
}

// kwokStages joins the stages kwok needs: nodes become Ready and keep a
// heartbeat; pods become Ready, complete and are deleted quickly.
func (c *Cluster) kwokStages() ([]byte, error) {
	var b bytes.Buffer
	for _, f := range []string{
		"node/fast/node-initialize.yaml", "node/heartbeat/node-heartbeat.yaml",
		"pod/fast/pod-ready.yaml", "pod/fast/pod-complete.yaml", "pod/fast/pod-delete.yaml",
		"pod/chaos/pod-container-running-failed.yaml", // only for pods labelled FailLabel
	} {
		data, err := os.ReadFile(filepath.Join(c.BinDir, "kwok-stages", f))
		if err != nil {
			return nil, fmt.Errorf("kwok stages: %w", err)
		}
		b.WriteString("---\n")
		b.Write(data)
		b.WriteString("\n")
	}
	b.WriteString("---\n" + neverReadyStage)
	return b.Bytes(), nil
}

// setup creates the fake node, the Gateway API CRDs and the Gateway.
func (c *Cluster) setup(ctx context.Context) error {
	cs, err := kubernetes.NewForConfig(c.RestConfig)
	if err != nil {
		return err
	}
	dyn, err := dynamic.NewForConfig(c.RestConfig)
	if err != nil {
		return err
	}
	res := corev1.ResourceList{
		corev1.ResourceCPU:    resource.MustParse("64"),
		corev1.ResourceMemory: resource.MustParse("512Gi"),
		corev1.ResourcePods:   resource.MustParse("1000"),
	}
	node := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{
			Name:        NodeName,
			Annotations: map[string]string{"kwok.x-k8s.io/node": "fake"},
			Labels:      map[string]string{"type": "kwok", "kubernetes.io/hostname": NodeName},
		},
		Status: corev1.NodeStatus{Allocatable: res, Capacity: res},
	}
	if _, err := cs.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create node: %w", err)
	}

	crdGVR := schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}
	files, err := filepath.Glob(filepath.Join(c.BinDir, "gateway-api-crds", "*.yaml"))
	if err != nil || len(files) == 0 {
		return fmt.Errorf("gateway api CRDs not found in %s", c.BinDir)
	}
	var crds []string
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
		for {
			var u unstructured.Unstructured
			if err := dec.Decode(&u.Object); err != nil {
				if errors.Is(err, io.EOF) {
					break
				}
				return fmt.Errorf("%s: %w", f, err)
			}
			if u.GetKind() != "CustomResourceDefinition" {
				continue // the safe-upgrade admission policy is not needed here
			}
			if _, err := dyn.Resource(crdGVR).Create(ctx, &u, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
				return fmt.Errorf("create CRD %s: %w", u.GetName(), err)
			}
			crds = append(crds, u.GetName())
		}
	}
	for _, name := range crds {
		if err := c.poll(ctx, func() (bool, error) {
			u, err := dyn.Resource(crdGVR).Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return false, nil
			}
			conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
			for _, ci := range conds {
				m, _ := ci.(map[string]any)
				if m["type"] == "Established" && m["status"] == "True" {
					return true, nil
				}
			}
			return false, nil
		}); err != nil {
			return fmt.Errorf("CRD %s not established: %w", name, err)
		}
	}

	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: GatewayNamespace}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	gwc := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass",
		"metadata": map[string]any{"name": GatewayClassName},
		"spec":     map[string]any{"controllerName": "ship.dev/test-gateway"},
	}}
	gw := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
		"metadata": map[string]any{"name": GatewayName, "namespace": GatewayNamespace},
		"spec": map[string]any{
			"gatewayClassName": GatewayClassName,
			"listeners": []any{map[string]any{
				"name": "http", "protocol": "HTTP", "port": int64(80),
				"allowedRoutes": map[string]any{"namespaces": map[string]any{"from": "All"}},
			}},
		},
	}}
	// Creating a custom resource right after its CRD is Established can
	// still meet a 404 while discovery catches up: retry.
	if err := c.poll(ctx, func() (bool, error) {
		_, err := dyn.Resource(schema.GroupVersionResource{Group: "gateway.networking.k8s.io", Version: "v1", Resource: "gatewayclasses"}).Create(ctx, gwc, metav1.CreateOptions{})
		return err == nil || apierrors.IsAlreadyExists(err), nil
	}); err != nil {
		return fmt.Errorf("create GatewayClass: %w", err)
	}
	if err := c.poll(ctx, func() (bool, error) {
		_, err := dyn.Resource(schema.GroupVersionResource{Group: "gateway.networking.k8s.io", Version: "v1", Resource: "gateways"}).Namespace(GatewayNamespace).Create(ctx, gw, metav1.CreateOptions{})
		return err == nil || apierrors.IsAlreadyExists(err), nil
	}); err != nil {
		return fmt.Errorf("create Gateway: %w", err)
	}

	// The node is Ready once kwok picked it up, and the default service
	// account exists once the controller manager runs: then pods can start.
	if err := c.poll(ctx, func() (bool, error) {
		n, err := cs.CoreV1().Nodes().Get(ctx, NodeName, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		for _, cond := range n.Status.Conditions {
			if cond.Type == corev1.NodeReady && cond.Status == corev1.ConditionTrue {
				return true, nil
			}
		}
		return false, nil
	}); err != nil {
		return fmt.Errorf("node %s not Ready (kwok): %w", NodeName, err)
	}
	if err := c.poll(ctx, func() (bool, error) {
		_, err := cs.CoreV1().ServiceAccounts("default").Get(ctx, "default", metav1.GetOptions{})
		return err == nil, nil
	}); err != nil {
		return fmt.Errorf("default service account never appeared (controller manager): %w", err)
	}
	return nil
}

func (c *Cluster) logTails() string {
	var b strings.Builder
	for _, p := range c.procs {
		data, _ := os.ReadFile(filepath.Join(c.Dir, p.name+".log"))
		fmt.Fprintf(&b, "\n--- %s (pid %d) log tail ---\n%s", p.name, p.cmd.Process.Pid, tail(string(data), 1500))
	}
	return b.String()
}

// portTaken says whether a part's log tells it could not bind its port.
func (c *Cluster) portTaken() bool {
	for _, p := range c.procs {
		data, _ := os.ReadFile(filepath.Join(c.Dir, p.name+".log"))
		if bytes.Contains(data, []byte("address already in use")) {
			return true
		}
	}
	return false
}

// exited reports the first part that is no longer running.
func (c *Cluster) exited() error {
	for _, p := range c.procs {
		select {
		case <-p.done:
			return fmt.Errorf("%s (pid %d) exited: %v", p.name, p.cmd.Process.Pid, p.err)
		default:
		}
	}
	return nil
}

// poll is poll that gives up at once when a part of the cluster exited
// (a port taken, a bad flag), instead of waiting for the deadline.
func (c *Cluster) poll(ctx context.Context, f func() (bool, error)) error {
	return poll(ctx, func() (bool, error) {
		if err := c.exited(); err != nil {
			return false, err
		}
		return f()
	})
}

// poll calls f every 100ms until it reports done or ctx ends.
func poll(ctx context.Context, f func() (bool, error)) error {
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		ok, err := f()
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

// pickPort picks the port of part n; a variable so that a test can hand
// out a taken one.
var pickPort = func(n string) (int, error) { return freePort() }

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func tail(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}

func lastLine(s string) string {
	s = strings.TrimRight(s, "\n")
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		return s[i+1:]
	}
	return s
}
