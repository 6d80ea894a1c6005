package e2e

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/shipteam/ship/internal/release"
	"github.com/shipteam/ship/test/procs"
)

// TestBadInputIsRefusedClearly runs the ways users get things wrong
// against one ship, checking exit codes and messages, and that stable
// keeps serving through failed releases.
func TestBadInputIsRefusedClearly(t *testing.T) {
	s := newShip(t, specOpts{})
	s.mustCLI("deploy", "web", "v1", "--wait")
	s.serving("v1")

	t.Run("unknown app", func(t *testing.T) {
		r := s.cli("deploy", "nope", "v1")
		if r.Code != 1 || !strings.Contains(r.Stderr, "nope") {
			t.Fatalf("%s", r)
		}
	})
	t.Run("garbage version", func(t *testing.T) {
		for _, v := range []string{"../../etc/passwd", "v1;rm -rf /", ""} {
			r := s.cli("deploy", "web", v)
			if r.Code == 0 {
				t.Fatalf("version %q accepted: %s", v, r)
			}
		}
	})
	t.Run("usage errors exit 2", func(t *testing.T) {
		for _, args := range [][]string{{"deploy"}, {"deploy", "web", "v2", "--canary", "300%"}, {"scale", "web", "many"}, {"frobnicate"}} {
			if r := s.cli(args...); r.Code != 2 {
				t.Errorf("ship %v: %s", args, r)
			}
		}
	})
	t.Run("concurrent deploys", func(t *testing.T) {
		s.mustCLI("deploy", "web", "v2", "--canary", "1", "--wait")
		r := s.cli("deploy", "web", "v3")
		if r.Code != 1 || !strings.Contains(r.Stderr, "admin") || !strings.Contains(r.Stderr, "v2") {
			t.Fatalf("second deploy: %s", r)
		}
		s.mustCLI("abort", "web")
	})
	t.Run("lock", func(t *testing.T) {
		s.mustCLI("lock", "web", "--reason", "release freeze")
		r := s.cli("deploy", "web", "v2")
		if r.Code != 1 || !strings.Contains(r.Stderr, "release freeze") {
			t.Fatalf("deploy while locked: %s", r)
		}
		s.mustCLI("unlock", "web")
	})
	for _, v := range []string{"v4-crash", "v5-unhealthy"} {
		t.Run(v, func(t *testing.T) {
			start := time.Now()
			r := s.cli("deploy", "web", v, "--wait")
			if r.Code != 1 {
				t.Fatalf("deploy %s: %s", v, r)
			}
			st := s.status()
			if st.Release == nil || st.Release.Version != v || st.Release.State != release.Failed || st.Release.Reason == "" {
				t.Fatalf("release of %s: %+v", v, st.Release)
			}
			t.Logf("%s failed after %s: %s", v, time.Since(start).Round(time.Millisecond), st.Release.Reason)
			if !strings.Contains(r.Stderr, st.Release.Reason) {
				t.Errorf("the CLI did not print the reason %q: %s", st.Release.Reason, r)
			}
			if st.Weight != 0 || st.Stable.Version != "v1" {
				t.Fatalf("stable after %s: %+v", v, st)
			}
			s.serving("v1")
		})
	}
	t.Run("logs of the crashed version", func(t *testing.T) {
		r := s.mustCLI("logs", "web", "--version", "v4-crash", "-n", "50")
		if !strings.Contains(r.Stdout, "crashing at once as asked") {
			t.Fatalf("logs: %s", r)
		}
	})
	t.Run("wrong or missing token", func(t *testing.T) {
		r := s.cliEnv([]string{"SHIP_SERVER=http://" + s.addr, "SHIP_TOKEN=ship_wrong"}, "apps")
		if r.Code != 3 || !strings.Contains(r.Stderr, "invalid token") {
			t.Fatalf("wrong token: %s", r)
		}
		// No token anywhere (the server address is not local's default data dir).
		r = s.cliEnv([]string{"SHIP_SERVER=http://" + s.addr}, "apps")
		if r.Code != 3 || !strings.Contains(r.Stderr, "token") {
			t.Fatalf("missing token: %s", r)
		}
		// On the server's machine, the token ship wrote on first start is
		// found through SHIP_DATA without any configuration.
		r = s.cliEnv([]string{"SHIP_SERVER=http://" + s.addr, "SHIP_DATA=" + s.data}, "apps")
		if r.Code != 0 || !strings.Contains(r.Stdout, "web") {
			t.Fatalf("local admin token: %s", r)
		}
		for _, auth := range []string{"", "Bearer ship_wrong", "Bearer " + s.token + "x"} {
			req, _ := http.NewRequest("GET", "http://"+s.addr+"/v1/apps", nil)
			if auth != "" {
				req.Header.Set("Authorization", auth)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != 401 {
				t.Errorf("auth %q: %d", auth, resp.StatusCode)
			}
		}
	})
}

// serveFails runs ship serve expecting it to refuse to start.
func serveFails(t *testing.T, apps, addr string) (string, int) {
	t.Helper()
	dir := t.TempDir()
	r := procs.Run(t, procs.Command{Name: "ship serve", Path: shipBin,
		Args: []string{"serve", "--addr", addr, "--data", filepath.Join(dir, "data"), "--apps", apps, "--log-format", "text"},
		Env:  procs.CleanEnv(dir), Stdout: filepath.Join(dir, "serve.log")}, 20*time.Second)
	return r.Stdout, r.Code
}

func TestServeRefusesBadSpecsAndBusyPorts(t *testing.T) {
	apiAddr := procs.FreeAddr(t)
	t.Run("malformed spec names file and line", func(t *testing.T) {
		apps := t.TempDir()
		os.WriteFile(filepath.Join(apps, "web.yaml"), []byte("name: web\nport: 9\nrun:\n  command: [unclosed\n"), 0o644)
		out, code := serveFails(t, apps, apiAddr)
		if code == 0 || !strings.Contains(out, "web.yaml:4") {
			t.Fatalf("exit %d, output:\n%s", code, out)
		}
	})
	t.Run("invalid spec names the field", func(t *testing.T) {
		apps := t.TempDir()
		os.WriteFile(filepath.Join(apps, "web.yaml"), []byte("name: web\nreplicas: -3\nrun:\n  command: /bin/true\n"), 0o644)
		out, code := serveFails(t, apps, apiAddr)
		if code == 0 || !strings.Contains(out, "web.yaml:2") || !strings.Contains(out, "replicas") {
			t.Fatalf("exit %d, output:\n%s", code, out)
		}
	})
	t.Run("app port in use", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		port := ln.Addr().(*net.TCPAddr).Port
		apps := t.TempDir()
		os.WriteFile(filepath.Join(apps, "web.yaml"), []byte(testappSpec(specOpts{Port: port})), 0o644)
		out, code := serveFails(t, apps, apiAddr)
		if code == 0 || !strings.Contains(out, "app web") || !strings.Contains(out, fmt.Sprint(port)) {
			t.Fatalf("exit %d, output:\n%s", code, out)
		}
	})
	t.Run("API port in use", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		apps := t.TempDir()
		os.WriteFile(filepath.Join(apps, "web.yaml"), []byte(testappSpec(specOpts{Port: procs.FreePort(t)})), 0o644)
		out, code := serveFails(t, apps, ln.Addr().String())
		if code == 0 || !strings.Contains(out, ln.Addr().String()) {
			t.Fatalf("exit %d, output:\n%s", code, out)
		}
	})
}
