// Package e2ekube drives the real ship binary on Kubernetes: a `ship serve
// --runtime kube` process (started and stopped by its PID, logs to files)
// against the loopback control plane of internal/kubetest, commanded only
// through the `ship` CLI as a user would, with the cluster's objects
// checked through client-go. Skipped only with SHIP_KUBE_TESTS=0.
package e2ekube

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/shipteam/ship/internal/kubetest"
	"github.com/shipteam/ship/test/procs"
)

var (
	cluster *kubetest.Cluster
	shipBin string // the ship binary, built once by TestMain
)

// TestMain builds ship while the cluster starts, runs the tests, then
// stops the cluster and removes the binary. It does what kubetest.Main
// does (Skipped, Start, Stop) itself because kubetest.Main ends the
// process, which would leave the binary's temp dir behind.
func TestMain(m *testing.M) { os.Exit(run(m)) }

func run(m *testing.M) int {
	if why := kubetest.Skipped(); why != "" {
		fmt.Fprintln(os.Stderr, why)
		return m.Run()
	}
	dir, err := os.MkdirTemp("", "ship-e2ekube-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	shipBin = filepath.Join(dir, "ship")
	built := make(chan error, 1)
	go func() { built <- procs.Build(shipBin, "./cmd/ship") }()

	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	start := time.Now()
	cl, err := kubetest.Start(context.Background(), kubetest.Options{Logger: log})
	if err != nil {
		<-built
		fmt.Fprintf(os.Stderr, "e2ekube: start cluster: %v\n", err)
		return 1
	}
	defer cl.Stop()
	fmt.Fprintf(os.Stderr, "e2ekube: cluster started in %s\n", time.Since(start).Round(time.Millisecond))
	if err := <-built; err != nil {
		fmt.Fprintf(os.Stderr, "e2ekube: build: %v\n", err)
		return 1
	}
	fmt.Fprintf(os.Stderr, "e2ekube: cluster and ship binary ready in %s\n", time.Since(start).Round(time.Millisecond))
	cluster = cl
	code := m.Run()
	if left := procs.Live(shipBin); len(left) > 0 {
		fmt.Fprintf(os.Stderr, "e2ekube: ship processes left running after the tests: %v (killed)\n", left)
		procs.KillAll(left)
		code = 1
	}
	return code
}
