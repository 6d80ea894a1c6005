package kubetest

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
)

// TestClusterLifecycle starts a cluster of its own, checks what the
// harness promises (a Ready kwok node, the Gateway API CRDs and the
// Gateway, a restartable apiserver) and that Stop leaves no process and no
// folder behind.
func TestClusterLifecycle(t *testing.T) {
	if why := Skipped(); why != "" {
		t.Skip(why)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	start := time.Now()
	c, err := Start(ctx, Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("cluster started in %s", time.Since(start).Round(time.Millisecond))
	stopped := false
	defer func() {
		if !stopped {
			c.Stop()
		}
	}()
	pids := c.PIDs()
	for _, name := range []string{"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok"} {
		if pids[name] == 0 {
			t.Errorf("%s not running: %v", name, pids)
		}
	}
	cs := kubernetes.NewForConfigOrDie(c.RestConfig)
	dyn := dynamic.NewForConfigOrDie(c.RestConfig)
	if _, err := cs.CoreV1().Nodes().Get(ctx, NodeName, metav1.GetOptions{}); err != nil {
		t.Errorf("node: %v", err)
	}
	gw, err := dyn.Resource(schema.GroupVersionResource{Group: "gateway.networking.k8s.io", Version: "v1", Resource: "gateways"}).
		Namespace(GatewayNamespace).Get(ctx, GatewayName, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("gateway: %v", err)
	}
	if cls, _, _ := unstructured.NestedString(gw.Object, "spec", "gatewayClassName"); cls != GatewayClassName {
		t.Errorf("gateway class %q", cls)
	}
	if _, err := os.Stat(c.Kubeconfig); err != nil {
		t.Errorf("kubeconfig: %v", err)
	}

	old := c.PIDs()["kube-apiserver"]
	restart := time.Now()
	if err := c.RestartAPIServer(ctx); err != nil {
		t.Fatalf("restart apiserver: %v", err)
	}
	t.Logf("apiserver restarted in %s", time.Since(restart).Round(time.Millisecond))
	if now := c.PIDs()["kube-apiserver"]; now == old || alive(old) {
		t.Errorf("apiserver pid %d -> %d (old alive: %v)", old, now, alive(old))
	}
	if _, err := cs.CoreV1().Nodes().Get(ctx, NodeName, metav1.GetOptions{}); err != nil {
		t.Errorf("node after apiserver restart: %v", err)
	}

	dir, all := c.Dir, c.PIDs()
	stop := time.Now()
	c.Stop()
	t.Logf("stopped in %s", time.Since(stop).Round(time.Millisecond))
	stopped = true
	for name, pid := range all {
		if alive(pid) {
			t.Errorf("%s (pid %d) still running after Stop", name, pid)
		}
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("%s left behind: %v", dir, err)
	}
}

func alive(pid int) bool {
	return syscall.Kill(pid, 0) == nil
}

// TestStartAgainWhenAPortWasTaken hands the controller manager a port that
// is already bound, as when a parallel test package's cluster grabs it
// between the pick and the bind: Start must notice at once and come up on
// new ports, not wait for its deadline.
func TestStartAgainWhenAPortWasTaken(t *testing.T) {
	if why := Skipped(); why != "" {
		t.Skip(why)
	}
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	takenPort := taken.Addr().(*net.TCPAddr).Port
	var handedOut atomic.Int32
	orig := pickPort
	pickPort = func(n string) (int, error) {
		if n == "kcm" && handedOut.Add(1) == 1 {
			return takenPort, nil
		}
		return freePort()
	}
	defer func() { pickPort = orig }()

	var logs bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	c, err := Start(ctx, Options{Logger: slog.New(slog.NewTextHandler(&syncWriter{w: &logs}, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Stop()
	if handedOut.Load() != 2 {
		t.Fatalf("controller manager ports picked: %d, want 2 (the taken one, then a new one)", handedOut.Load())
	}
	if !strings.Contains(logs.String(), "starting again on new ports") {
		t.Fatalf("no retry in the log:\n%s", logs.String())
	}
	if c.ports["kcm"] == takenPort {
		t.Fatal("the cluster runs on the taken port")
	}
}

type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}
