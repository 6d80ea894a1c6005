package resizer

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"github.com/shipteam/ship/internal/eventually"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The binary is built once per test run, with build-time version
// "built-v1", into binDir (removed by TestMain).
var (
	buildOnce sync.Once
	binDir    string
	binErr    error
)

// buildResizer returns the path of cmd/resizer built for this test run.
func buildResizer(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		if binDir, binErr = os.MkdirTemp("", "resizer-test-bin"); binErr != nil {
			return
		}
		cmd := exec.Command("go", "build", "-ldflags", "-X main.version=built-v1", "-o", filepath.Join(binDir, "resizer"), "github.com/shipteam/ship/cmd/resizer")
		if out, err := cmd.CombinedOutput(); err != nil {
			binErr = fmt.Errorf("build resizer: %v\n%s", err, out)
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return filepath.Join(binDir, "resizer")
}

// startResizer runs the binary on a free loopback port and returns its base
// URL once it logs that it listens.
func startResizer(t *testing.T, bin string, args ...string) (*exec.Cmd, string, chan error) {
	t.Helper()
	cmd := exec.Command(bin, append([]string{"--addr", "127.0.0.1:0"}, args...)...)
	cmd.Env = append(os.Environ(), "RESIZER_WORKERS=1")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
		}
	})
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			t.Logf("resizer: %s", sc.Text())
			var line struct{ Msg, Addr string }
			if json.Unmarshal(sc.Bytes(), &line) == nil && line.Msg == "listening" {
				addr <- line.Addr
			}
		}
		exited <- cmd.Wait()
	}()
	select {
	case a := <-addr:
		return cmd, "http://" + a, exited
	case err := <-exited:
		t.Fatalf("resizer exited before listening: %v", err)
	case <-time.After(15 * time.Second):
		t.Fatal("resizer did not listen within 15s")
	}
	return nil, "", nil
}

func TestBinaryVersionFlagAndHelp(t *testing.T) {
	bin := buildResizer(t)
	out, err := exec.Command(bin, "--version").Output()
	if err != nil || strings.TrimSpace(string(out)) != "built-v1" {
		t.Errorf("--version: %q %v", out, err)
	}
	out, err = exec.Command(bin, "--version", "--version-name", "v2").Output()
	if err != nil || strings.TrimSpace(string(out)) != "v2" {
		t.Errorf("--version-name overrides: %q %v", out, err)
	}
	out, err = exec.Command(bin, "--help").Output()
	if err != nil || !strings.Contains(string(out), "--allow-private-sources  [$RESIZER_ALLOW_PRIVATE_SOURCES]") {
		t.Errorf("--help: %v\n%s", err, out)
	}
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(), "RESIZER_QUEUE=lots")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err == nil || !strings.Contains(stderr.String(), "RESIZER_QUEUE") {
		t.Errorf("malformed env: %v %s", err, stderr.String())
	}
}

// SIGTERM during a request: /readyz turns 503, the request still completes,
// and the process exits 0.
func TestBinaryDrainsOnSIGTERM(t *testing.T) {
	bin := buildResizer(t)
	cmd, base, exited := startResizer(t, bin, "--version-name", "drain-v2", "--drain-delay", "1s")

	resp, body := do(t, "GET", base+"/metrics", nil)
	if !strings.Contains(string(body), `resizer_build_info{goversion=`) || !strings.Contains(string(body), `version="drain-v2"`) {
		t.Errorf("build_info missing from /metrics")
	}
	if resp.Header.Get("X-Resizer-Version") != "drain-v2" {
		t.Errorf("X-Resizer-Version %q", resp.Header.Get("X-Resizer-Version"))
	}

	// A request whose body arrives in two halves, SIGTERM in between.
	src := jpegOf(t, 400, 300)
	pr, pw := io.Pipe()
	req, _ := http.NewRequest("POST", base+"/v1/resize?w=100&format=jpeg", pr)
	req.ContentLength = int64(len(src))
	type result struct {
		resp *http.Response
		body []byte
		err  error
	}
	done := make(chan result, 1)
	go func() {
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			done <- result{err: err}
			return
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		done <- result{resp, b, err}
	}()
	go pw.Write(src[:len(src)/2])
	eventually.True(t, 5*time.Second, "the request to be in flight", func() bool {
		v, _ := metricValue(t, base, "resizer_in_flight_requests")
		return v == "1"
	})

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	eventually.True(t, 2*time.Second, "/readyz to report 503", func() bool {
		resp, err := http.Get(base + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 503
	})
	if _, err := pw.Write(src[len(src)/2:]); err != nil {
		t.Fatalf("finish body: %v", err)
	}
	pw.Close()
	select {
	case r := <-done:
		if r.err != nil {
			t.Fatalf("in-flight request: %v", r.err)
		}
		if r.resp.StatusCode != 200 {
			t.Fatalf("in-flight request: %d %s", r.resp.StatusCode, r.body)
		}
		if _, w, h := decoded(t, r.body); w != 100 || h != 75 {
			t.Errorf("in-flight request: %dx%d", w, h)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("in-flight request did not complete")
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("exit: %v, want status 0", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("process did not exit after the drain")
	}
	if _, err := http.Get(base + "/healthz"); err == nil {
		t.Error("still serving after exit")
	}
}
