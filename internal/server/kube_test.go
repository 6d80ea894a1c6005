package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	promsource "github.com/shipteam/ship/internal/analysis/prometheus"
	"github.com/shipteam/ship/internal/runtime/kube"
	"github.com/shipteam/ship/internal/spec"
)

func writeKubeconfig(t *testing.T, server string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "kubeconfig")
	data := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: c
  cluster: {server: %q}
users:
- name: u
  user: {token: test}
contexts:
- name: other
  context: {cluster: c, user: u}
current-context: missing
`, server)
	if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestKubeParts(t *testing.T) {
	apps, err := spec.Parse("k.yaml", []byte("name: web\nkube: {image: 'r/web:{{.Version}}'}\n"))
	if err != nil {
		t.Fatal(err)
	}
	noImage, err := spec.Parse("l.yaml", []byte("name: old\nrun: {command: /bin/true}\n"))
	if err != nil {
		t.Fatal(err)
	}
	// An API server stand-in that answers /version like kube-apiserver.
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/version" {
			http.NotFound(w, r)
			return
		}
		fmt.Fprint(w, `{"major":"1","minor":"37","gitVersion":"v1.37.2"}`)
	}))
	defer hs.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "http://" + ln.Addr().String()
	ln.Close()
	log := slog.New(slog.DiscardHandler)

	for _, tc := range []struct {
		name    string
		apps    []spec.App
		cfg     KubeConfig
		wantErr string
	}{
		{"answers", apps, KubeConfig{Kubeconfig: writeKubeconfig(t, hs.URL), Context: "other"}, ""},
		{"with prometheus", apps, KubeConfig{Kubeconfig: writeKubeconfig(t, hs.URL), Context: "other", PrometheusURL: "http://127.0.0.1:9090"}, ""},
		{"bad prometheus url", apps, KubeConfig{Kubeconfig: writeKubeconfig(t, hs.URL), Context: "other", PrometheusURL: "prometheus:9090"}, "--prometheus"},
		{"app without image", append(apps, noImage...), KubeConfig{Kubeconfig: writeKubeconfig(t, hs.URL), Context: "other"}, "apps without kube.image: old"},
		{"unknown context", apps, KubeConfig{Kubeconfig: writeKubeconfig(t, hs.URL), Context: "nope"}, `context "nope"`},
		{"current context missing", apps, KubeConfig{Kubeconfig: writeKubeconfig(t, hs.URL)}, "load config"},
		{"server down", apps, KubeConfig{Kubeconfig: writeKubeconfig(t, closed), Context: "other", ReachTimeout: 2 * time.Second}, "does not answer"},
		{"no such kubeconfig", apps, KubeConfig{Kubeconfig: filepath.Join(t.TempDir(), "none"), Context: "other"}, "load config"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rt, router, src, err := kubeParts(context.Background(), tc.cfg, tc.apps, log)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want it to contain %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if rt == nil || router == nil {
				t.Fatal("nil runtime or router")
			}
			defer rt.Close()
			_, none := src.(kube.NoMetrics)
			_, prom := src.(*promsource.Source)
			if tc.cfg.PrometheusURL == "" && !none || tc.cfg.PrometheusURL != "" && !prom {
				t.Errorf("source %T with --prometheus %q", src, tc.cfg.PrometheusURL)
			}
		})
	}
}

func TestRuntimeChoice(t *testing.T) {
	for _, ok := range []string{"", "local", "kube"} {
		if err := checkRuntime(ok); err != nil {
			t.Errorf("checkRuntime(%q): %v", ok, err)
		}
	}
	if err := checkRuntime("docker"); !errors.Is(err, errUnknownRuntime) {
		t.Errorf("checkRuntime(docker) = %v", err)
	}
}
