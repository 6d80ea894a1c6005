package server

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shipteam/ship/internal/api"
)

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func writeSpec(t *testing.T, dir, name, body string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
}

func appSpec(port int) string {
	return fmt.Sprintf("name: web\nport: %d\nrun:\n  command: /bin/true\n", port)
}

// syncBuffer is a bytes.Buffer safe for the server goroutine and the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// start runs the server until the test ends and returns its API address.
func start(t *testing.T, cfg Config) (string, *syncBuffer) {
	t.Helper()
	out := &syncBuffer{}
	cfg.Stdout = out
	ready := make(chan string, 1)
	cfg.Ready = func(a string) { ready <- a }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, cfg) }()
	select {
	case a := <-ready:
		t.Cleanup(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
		})
		return a, out
	case err := <-done:
		cancel()
		t.Fatalf("Run ended early: %v", err)
	case <-time.After(20 * time.Second):
		cancel()
		t.Fatal("server not ready in 20s")
	}
	return "", nil
}

func TestFirstStartCreatesAdminTokenOnce(t *testing.T) {
	data, apps := t.TempDir(), t.TempDir()
	writeSpec(t, apps, "web.yaml", appSpec(freePort(t)))
	cfg := Config{Addr: "127.0.0.1:0", DataDir: data, AppsDir: apps}
	addr, out := start(t, cfg)

	b, err := os.ReadFile(filepath.Join(data, AdminTokenFile))
	if err != nil {
		t.Fatal(err)
	}
	token := strings.TrimSpace(string(b))
	if !strings.HasPrefix(token, api.TokenPrefix) || !strings.Contains(out.String(), token) {
		t.Fatalf("token %q not printed in %q", token, out.String())
	}
	fi, _ := os.Stat(filepath.Join(data, AdminTokenFile))
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("admin-token mode %v, want 0600", fi.Mode().Perm())
	}
	c, _ := api.NewClient(api.ClientConfig{Server: addr, Token: token})
	id, err := c.Whoami(context.Background())
	if err != nil || id.Name != "admin" {
		t.Fatalf("whoami = %+v, %v", id, err)
	}
	apps2, err := c.Apps(context.Background())
	if err != nil || len(apps2) != 1 || apps2[0].App != "web" {
		t.Fatalf("apps = %+v, %v", apps2, err)
	}
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("metrics: %v %v", resp, err)
	}
	resp.Body.Close()
}

func TestSecondStartKeepsTheToken(t *testing.T) {
	data, apps := t.TempDir(), t.TempDir()
	writeSpec(t, apps, "web.yaml", appSpec(freePort(t)))
	cfg := Config{Addr: "127.0.0.1:0", DataDir: data, AppsDir: apps}
	ctx, cancel := context.WithCancel(context.Background())
	cfg.Ready = func(string) { cancel() }
	if err := Run(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	first, _ := os.ReadFile(filepath.Join(data, AdminTokenFile))
	_, out := start(t, Config{Addr: "127.0.0.1:0", DataDir: data, AppsDir: apps})
	again, _ := os.ReadFile(filepath.Join(data, AdminTokenFile))
	if string(first) != string(again) || out.String() != "" {
		t.Fatalf("second start changed or printed the token: %q", out.String())
	}
}

func TestAppPortInUseIsAClearError(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	apps := t.TempDir()
	writeSpec(t, apps, "web.yaml", appSpec(port))
	err = Run(context.Background(), Config{Addr: "127.0.0.1:0", DataDir: t.TempDir(), AppsDir: apps})
	if err == nil || !strings.Contains(err.Error(), "app web") || !strings.Contains(err.Error(), fmt.Sprint(port)) {
		t.Fatalf("err = %v, want one naming app web and port %d", err, port)
	}
}

func TestMalformedSpecRefusesToStart(t *testing.T) {
	apps := t.TempDir()
	writeSpec(t, apps, "web.yaml", "name: web\nport: [oops\n")
	err := Run(context.Background(), Config{Addr: "127.0.0.1:0", DataDir: t.TempDir(), AppsDir: apps})
	if err == nil || !strings.Contains(err.Error(), "web.yaml:") {
		t.Fatalf("err = %v, want file:line", err)
	}
}

func TestConfigValidateJoinsErrors(t *testing.T) {
	err := Config{Addr: "nope"}.Validate()
	for _, want := range []string{"--addr", "--data", "--apps"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%v does not mention %s", err, want)
		}
	}
}
