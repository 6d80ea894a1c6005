package traffic

import (
	"context"
	"fmt"
	"github.com/shipteam/ship/internal/release"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/shipteam/ship/internal/runtime"
	"github.com/shipteam/ship/internal/spec"
)

// testBackend is one app instance: it answers with its name and counts
// the requests it served.
type testBackend struct {
	name string
	srv  *httptest.Server
	hits atomic.Int64
}

func newBackend(t *testing.T, name string, h http.HandlerFunc) *testBackend {
	t.Helper()
	b := &testBackend{name: name}
	b.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b.hits.Add(1)
		w.Header().Set("X-Backend", name)
		if h != nil {
			h(w, r)
			return
		}
		io.Copy(io.Discard, r.Body)
		fmt.Fprintf(w, "%s\n", name)
	}))
	t.Cleanup(b.srv.Close)
	return b
}

func (b *testBackend) addr() string { return strings.TrimPrefix(b.srv.URL, "http://") }

func addrs(bs ...*testBackend) []string {
	var out []string
	for _, b := range bs {
		out = append(out, b.addr())
	}
	return out
}

type fixture struct {
	t        *testing.T
	r        *Router
	reg      *prometheus.Registry
	app      spec.App
	env      string
	endpoint string
	client   *http.Client
}

// newFixture starts a Router listening for app "web" in "production" on a
// free loopback port.
func newFixture(t *testing.T, app spec.App) *fixture {
	t.Helper()
	if app.Name == "" {
		app.Name = "web"
	}
	reg := prometheus.NewRegistry()
	r, err := New(Config{Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ep, err := r.Listen(ctx, app, "production", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := r.Close(ctx); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	tr := &http.Transport{MaxIdleConnsPerHost: 64, DisableCompression: true}
	t.Cleanup(tr.CloseIdleConnections)
	return &fixture{t: t, r: r, reg: reg, app: app, env: "production", endpoint: ep,
		client: &http.Client{Transport: tr, Timeout: 10 * time.Second}}
}

func (f *fixture) setBackends(track runtime.Track, version string, bs ...*testBackend) {
	f.r.SetBackends(f.app.Name, f.env, track, version, addrs(bs...))
}

func (f *fixture) setWeight(pct float64) {
	f.t.Helper()
	w, err := release.WeightFromPercent(pct)
	if err != nil {
		f.t.Fatal(err)
	}
	if err := f.r.SetWeight(context.Background(), f.app, f.env, w); err != nil {
		f.t.Fatal(err)
	}
}

// get sends one request and returns status, X-Ship-Track and body.
func (f *fixture) do(req *http.Request) (int, string, string, error) {
	resp, err := f.client.Do(req)
	if err != nil {
		return 0, "", "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header.Get(TrackHeader), string(b), err
}

func (f *fixture) get(path string) (int, string, string, error) {
	req, err := http.NewRequest(http.MethodGet, "http://"+f.endpoint+path, nil)
	if err != nil {
		return 0, "", "", err
	}
	return f.do(req)
}

// hammer sends n GETs from workers goroutines and returns how many each
// track answered; any non-200 or transport error fails the test.
func (f *fixture) hammer(n, workers int) map[string]int {
	f.t.Helper()
	var next atomic.Int64
	counts := make([]map[string]int, workers)
	errs := make(chan error, workers)
	for w := 0; w < workers; w++ {
		counts[w] = map[string]int{}
		go func() {
			for next.Add(1) <= int64(n) {
				code, track, _, err := f.get("/")
				if err == nil && code != http.StatusOK {
					err = fmt.Errorf("status %d", code)
				}
				if err != nil {
					errs <- err
					return
				}
				counts[w][track]++
			}
			errs <- nil
		}()
	}
	for w := 0; w < workers; w++ {
		if err := <-errs; err != nil {
			f.t.Fatal(err)
		}
	}
	total := map[string]int{}
	for _, c := range counts {
		for k, v := range c {
			total[k] += v
		}
	}
	return total
}

// waitFor polls cond until it holds or the deadline passes.
