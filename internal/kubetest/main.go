package kubetest

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"testing"
	"time"
)

// Skipped reports why Kubernetes tests do not run, or "" when they do.
// They are skipped only when SHIP_KUBE_TESTS=0; a missing etcd or a failed
// build is a test failure, not a skip.
func Skipped() string {
	if os.Getenv("SHIP_KUBE_TESTS") == "0" {
		return "Kubernetes tests skipped: SHIP_KUBE_TESTS=0"
	}
	return ""
}

// Main is a TestMain body: it starts one cluster for the test binary,
// stores it in *c, runs the tests and stops the cluster. With
// SHIP_KUBE_TESTS=0 it leaves *c nil and the tests call Need to skip.
func Main(m *testing.M, c **Cluster) {
	os.Exit(run(m, c))
}

func run(m *testing.M, c **Cluster) int {
	if why := Skipped(); why != "" {
		fmt.Fprintln(os.Stderr, why)
		return m.Run()
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	start := time.Now()
	cl, err := Start(context.Background(), Options{Logger: log})
	if err != nil {
		fmt.Fprintf(os.Stderr, "kubetest: start cluster: %v\n", err)
		return 1
	}
	fmt.Fprintf(os.Stderr, "kubetest: cluster started in %s\n", time.Since(start).Round(time.Millisecond))
	*c = cl
	defer cl.Stop()
	return m.Run()
}

// Need skips t when Kubernetes tests are switched off and fails it when the
// cluster is missing for another reason.
func Need(t testing.TB, c *Cluster) *Cluster {
	t.Helper()
	if why := Skipped(); why != "" {
		t.Skip(why)
	}
	if c == nil {
		t.Fatal("kubetest: no cluster (call kubetest.Main from TestMain)")
	}
	return c
}

// waitHTTP polls url until it answers 200; it gives up at once when a
// part of the cluster has exited.
func (c *Cluster) waitHTTP(ctx context.Context, url string, prep func(*http.Request)) error {
	cl := &http.Client{
		Timeout:   5 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}, // the apiserver's self-signed test cert
	}
	var last string
	err := poll(ctx, func() (bool, error) {
		if err := c.exited(); err != nil {
			return false, err
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return false, err
		}
		if prep != nil {
			prep(req)
		}
		resp, err := cl.Do(req)
		if err != nil {
			last = err.Error()
			return false, nil
		}
		resp.Body.Close()
		last = resp.Status
		return resp.StatusCode == http.StatusOK, nil
	})
	if err != nil {
		return fmt.Errorf("%s not ready (last: %s): %w", url, last, err)
	}
	return nil
}
