package procs

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func sh(t *testing.T, script string) Command {
	dir := t.TempDir()
	return Command{Name: "sh", Path: "/bin/sh", Args: []string{"-c", script}, Env: CleanEnv(dir),
		Stdout: filepath.Join(dir, "out"), Stderr: filepath.Join(dir, "err")}
}

// waitOutput waits until c has written want (the health URL answers
// before a child has run its first line).
func waitOutput(t *testing.T, c *Child, want string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(c.Output(), want) {
		if time.Now().After(deadline) || c.Exited() {
			c.Kill()
			t.Fatalf("%q not written: %s", want, c.Result())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestRunKeepsStdoutStderrAndExitCodeApart(t *testing.T) {
	r := Run(t, sh(t, "echo to-out; echo to-err >&2; exit 3"), 10*time.Second)
	if r.Code != 3 || r.Stdout != "to-out\n" || r.Stderr != "to-err\n" {
		t.Fatalf("got %s", r)
	}
}

func TestCombinedOutputGoesToOneFile(t *testing.T) {
	c := sh(t, "echo a; echo b >&2")
	c.Stderr = ""
	r := Run(t, c, 10*time.Second)
	if r.Code != 0 || r.Stdout != "a\nb\n" || r.Stderr != "" {
		t.Fatalf("got %s", r)
	}
}

func TestStopKillsAChildThatIgnoresSIGTERMAfterTheGrace(t *testing.T) {
	// The child says it is ready only once the trap is set, so SIGTERM
	// cannot arrive before it.
	c := Start(t, sh(t, "trap '' TERM; echo ready; while :; do sleep 0.05; done"))
	waitOutput(t, c, "ready")
	start := time.Now()
	if c.Stop(300 * time.Millisecond) {
		t.Fatal("Stop reported an orderly exit of a child that ignores SIGTERM")
	}
	if took := time.Since(start); took < 300*time.Millisecond {
		t.Errorf("killed after %s, before the grace", took)
	}
	if !c.Exited() || c.ExitCode() != -1 {
		t.Errorf("after Stop: exited %v, code %d", c.Exited(), c.ExitCode())
	}
}

func TestStopEndsAChildOnSIGTERM(t *testing.T) {
	c := Start(t, sh(t, "exec sleep 60"))
	if !c.Stop(10 * time.Second) {
		t.Fatal("sleep did not end on SIGTERM")
	}
}

func TestLiveListsAChildUntilItIsKilled(t *testing.T) {
	path, err := exec.LookPath("sleep")
	if err != nil {
		t.Skip("no sleep binary")
	}
	exe, err := filepath.EvalSymlinks(path)
	if err != nil {
		t.Fatal(err)
	}
	c := Start(t, Command{Name: "sleep", Path: exe, Args: []string{"60"}, Stdout: filepath.Join(t.TempDir(), "out")})
	if !slices.Contains(Live(exe), c.PID()) {
		c.Kill()
		t.Fatalf("Live(%s) = %v, missing pid %d", exe, Live(exe), c.PID())
	}
	c.Kill()
	if slices.Contains(Live(exe), c.PID()) {
		t.Errorf("pid %d listed after Kill", c.PID())
	}
}

func TestWaitHTTPFailsFastWhenTheChildExits(t *testing.T) {
	c := Start(t, sh(t, "exit 7"))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	start := time.Now()
	err := c.WaitHTTP(ctx, "http://"+FreeAddr(t)+"/healthz")
	if err == nil || !strings.Contains(err.Error(), "exited") {
		t.Fatalf("err %v", err)
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("took %s to notice the exit", took)
	}
}

func TestWaitHTTPReturnsOnceTheURLAnswers200(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer srv.Close()
	c := Start(t, sh(t, "exec sleep 60"))
	defer c.Kill()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.WaitHTTP(ctx, srv.URL); err != nil {
		t.Fatal(err)
	}
}

func TestCleanEnvLeavesOutTheDevelopersConfig(t *testing.T) {
	t.Setenv("SHIP_TOKEN", "secret")
	t.Setenv("KUBECONFIG", "/home/dev/.kube/config")
	t.Setenv("HOME", "/home/dev")
	env := CleanEnv("/tmp/x")
	for _, kv := range env {
		if strings.HasPrefix(kv, "SHIP_") || strings.HasPrefix(kv, "KUBECONFIG=") || kv == "HOME=/home/dev" {
			t.Errorf("leaked: %s", kv)
		}
	}
	if !slices.Contains(env, "HOME=/tmp/x") || !slices.Contains(env, "XDG_CONFIG_HOME=/tmp/x/config") {
		t.Errorf("HOME or XDG_CONFIG_HOME not set to the given home: %v", env)
	}
}

func TestServerKeepsTheLogsOfEveryRunAndStopsTheCurrentOne(t *testing.T) {
	// The health URL stands in for the program's own: what is under test
	// is the runs' bookkeeping.
	health := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer health.Close()
	srv := &Server{Name: "fake serve", Dir: t.TempDir()}
	c := Command{Path: "/bin/sh", Env: CleanEnv(t.TempDir())}
	c.Args = []string{"-c", "echo first run; exec sleep 60"}
	first := srv.Start(t, c, health.URL, 10*time.Second)
	waitOutput(t, first, "first run")
	srv.Kill()
	if !first.Exited() {
		t.Fatal("Kill returned before the first run ended")
	}
	c.Args = []string{"-c", "echo second run >&2; exec sleep 60"}
	second := srv.Start(t, c, health.URL, 10*time.Second)
	waitOutput(t, second, "second run")
	if srv.Current() != second || srv.Runs() != 2 {
		t.Fatalf("current run %p (want %p), runs %d", srv.Current(), second, srv.Runs())
	}
	srv.Stop(t, 10*time.Second)
	if !second.Exited() {
		t.Fatal("Stop returned before the second run ended")
	}
	logs := srv.Logs()
	for _, want := range []string{"--- fake serve run 1", "first run", "--- fake serve run 2", "second run"} {
		if !strings.Contains(logs, want) {
			t.Errorf("logs lack %q:\n%s", want, logs)
		}
	}
}
