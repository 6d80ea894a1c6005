package prometheus

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	client "github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/common/model"

	"github.com/shipteam/ship/internal/analysis"
	"github.com/shipteam/ship/internal/promtest"
	"github.com/shipteam/ship/internal/runtime"
	"github.com/shipteam/ship/internal/spec"
)

// buckets are the exporters' histogram bounds, in seconds.
var buckets = []float64{0.005, 0.01, 0.05, 0.1, 0.5}

// pod is an in-process exporter standing in for the pods of one track:
// it serves client_golang's http_requests_total and
// http_request_duration_seconds on a loopback /metrics.
type pod struct {
	addr     string
	requests *client.CounterVec
	latency  *client.HistogramVec
	// want is what the Source must report once Prometheus scraped it.
	want analysis.Sample
}

func newPod(t *testing.T) *pod {
	t.Helper()
	reg := client.NewRegistry()
	p := &pod{
		requests: client.NewCounterVec(client.CounterOpts{Name: "http_requests_total", Help: "Requests by status code."}, []string{"code"}),
		latency:  client.NewHistogramVec(client.HistogramOpts{Name: "http_request_duration_seconds", Help: "Request latency.", Buckets: buckets}, nil),
	}
	reg.MustRegister(p.requests, p.latency)
	srv := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	t.Cleanup(srv.Close)
	p.addr = strings.TrimPrefix(srv.URL, "http://")
	for _, b := range buckets {
		p.want.Bounds = append(p.want.Bounds, time.Duration(math.Round(b*float64(time.Second))))
	}
	p.want.Counts = make([]int64, len(buckets))
	return p
}

// serve records n requests answered with code, each taking latency, and
// what the Source should then see.
func (p *pod) serve(n int, code int, latency time.Duration) {
	for i := 0; i < n; i++ {
		p.requests.WithLabelValues(fmt.Sprint(code)).Inc()
		p.latency.WithLabelValues().Observe(latency.Seconds())
	}
	p.want.Requests += int64(n)
	if code >= 500 {
		p.want.Errors += int64(n)
	}
	for i, b := range p.want.Bounds {
		if latency <= b {
			p.want.Counts[i] += int64(n)
		}
	}
}

// labels are what Prometheus' Kubernetes pod relabelling gives a pod of
// app shop, track t, in environment production (docs/kubernetes.md).
func labels(app, t string) map[string]string {
	return map[string]string{"namespace": "ship-production", "ship_dev_app": app, "ship_dev_env": "production", "ship_dev_track": t}
}

// versions is the Tracks port with fixed versions.
type versions map[runtime.Track]string

func (v versions) Status(ctx context.Context, app spec.App, env string) (map[runtime.Track]runtime.TrackStatus, error) {
	out := map[runtime.Track]runtime.TrackStatus{}
	for t, ver := range v {
		out[t] = runtime.TrackStatus{Track: t, Version: ver}
	}
	return out, nil
}

func catalog(t *testing.T, yaml string) *spec.Catalog {
	t.Helper()
	apps, err := spec.Parse("apps.yaml", []byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	c, err := spec.NewCatalog(apps...)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

const apps = `apps:
  - name: shop
    kube: {image: 'r/shop:{{.Version}}'}
  - name: custom
    kube: {image: x}
    analysis:
      prometheus:
        # Custom queries over the same exporters: successes only, and
        # selected by track alone.
        requests: 'sum(http_requests_total{ship_dev_app="shop",ship_dev_track="{{.Track}}",code="200"})'
        errors: 'sum(http_requests_total{ship_dev_app="shop",ship_dev_track="{{.Track}}",code="418"})'
        latency: 'sum by (le) (http_request_duration_seconds_bucket{ship_dev_app="shop",ship_dev_track="{{.Track}}"})'
  - name: badquery
    kube: {image: x}
    analysis: {prometheus: {requests: 'sum(http_requests_total{ship_dev_track="{{.Track}}"}'}}
  - name: nole
    kube: {image: x}
    analysis: {prometheus: {latency: 'sum(http_request_duration_seconds_bucket{ship_dev_track="{{.Track}}"})'}}
`

func newSource(t *testing.T, url string, tracks Tracks) *Source {
	t.Helper()
	s, err := New(Config{URL: url, Apps: catalog(t, apps), Tracks: tracks, Timeout: 3 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// waitSample polls Sample until cond holds (Prometheus scrapes every
// second) and returns the last samples.
func waitSample(t *testing.T, s *Source, app string, cond func(stable, canary analysis.Sample) bool) (analysis.Sample, analysis.Sample) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var (
		st, ca analysis.Sample
		err    error
	)
	for {
		st, ca, err = s.Sample(ctx, app, "production")
		if err == nil && cond(st, ca) {
			return st, ca
		}
		select {
		case <-ctx.Done():
			t.Fatalf("Sample(%s) never met the condition: stable %+v canary %+v err %v", app, st, ca, err)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func TestSourceReportsWhatTheExportersCounted(t *testing.T) {
	promtest.Need(t)
	stable, canary := newPod(t), newPod(t)
	stable.serve(96, 200, 3*time.Millisecond)
	stable.serve(4, 500, 40*time.Millisecond)
	stable.serve(20, 200, 70*time.Millisecond)
	canary.serve(24, 200, 8*time.Millisecond)
	canary.serve(16, 503, 300*time.Millisecond)
	canary.serve(2, 200, 2*time.Second) // above every bound: in Requests only
	prom := promtest.Start(t, promtest.StaticConfig("pods", time.Second,
		promtest.Target{Addr: stable.addr, Labels: labels("shop", "stable")},
		promtest.Target{Addr: canary.addr, Labels: labels("shop", "canary")}))
	stable.want.Version, canary.want.Version = "v1", "v2"
	src := newSource(t, prom.URL, versions{runtime.Stable: "v1", runtime.Canary: "v2"})

	t.Run("default queries", func(t *testing.T) {
		st, ca := waitSample(t, src, "shop", func(st, ca analysis.Sample) bool { return st.Requests > 0 && ca.Requests > 0 })
		if !reflect.DeepEqual(st, stable.want) {
			t.Errorf("stable:\n got %+v\nwant %+v", st, stable.want)
		}
		if !reflect.DeepEqual(ca, canary.want) {
			t.Errorf("canary:\n got %+v\nwant %+v", ca, canary.want)
		}
		// And the judge sees the canary's 16/42 = 38% errors.
		v := analysis.Judge(st, ca, analysis.Thresholds{MaxErrorRate: 0.05, MinRequests: 10})
		if v.Result != analysis.Fail || !strings.Contains(v.Reason, "error rate") {
			t.Errorf("verdict %+v, want fail on the error rate", v)
		}
	})

	t.Run("new traffic shows at the next scrape", func(t *testing.T) {
		canary.serve(10, 200, 8*time.Millisecond)
		_, ca := waitSample(t, src, "shop", func(_, ca analysis.Sample) bool { return ca.Requests == canary.want.Requests })
		if !reflect.DeepEqual(ca, canary.want) {
			t.Errorf("canary:\n got %+v\nwant %+v", ca, canary.want)
		}
	})

	t.Run("custom queries", func(t *testing.T) {
		st, ca := waitSample(t, src, "custom", func(st, ca analysis.Sample) bool {
			return st.Requests > 0 && ca.Requests == canary.want.Requests-canary.want.Errors
		})
		if want := stable.want.Requests - stable.want.Errors; st.Requests != want || st.Errors != 0 {
			t.Errorf("stable: requests %d errors %d, want %d (code 200 only) and 0 (no 418s)", st.Requests, st.Errors, want)
		}
		if !reflect.DeepEqual(ca.Counts, canary.want.Counts) || ca.Errors != 0 {
			t.Errorf("canary: %+v, want counts %v and no errors", ca, canary.want.Counts)
		}
	})

	t.Run("a track without a version is a zero sample", func(t *testing.T) {
		src := newSource(t, prom.URL, versions{runtime.Stable: "v1"})
		st, ca := waitSample(t, src, "shop", func(st, _ analysis.Sample) bool { return st.Requests > 0 })
		if !reflect.DeepEqual(ca, analysis.Sample{}) || st.Version != "v1" {
			t.Errorf("stable %+v canary %+v, want a zero canary", st, ca)
		}
	})

	t.Run("no series is a zero sample, not an error", func(t *testing.T) {
		src, err := New(Config{URL: prom.URL, Apps: catalog(t, "name: ghost\nkube: {image: x}\n"), Tracks: versions{runtime.Stable: "v1", runtime.Canary: "v2"}})
		if err != nil {
			t.Fatal(err)
		}
		st, ca, err := src.Sample(context.Background(), "ghost", "")
		if err != nil || !reflect.DeepEqual(st, analysis.Sample{Version: "v1"}) || !reflect.DeepEqual(ca, analysis.Sample{Version: "v2"}) {
			t.Errorf("got %+v %+v %v, want empty samples of v1 and v2", st, ca, err)
		}
	})

	t.Run("a bad query names the app, the track and the query", func(t *testing.T) {
		_, _, err := src.Sample(context.Background(), "badquery", "production")
		for _, want := range []string{"app badquery", "stable", "canary", `requests query sum(http_requests_total{ship_dev_track="canary"}`, "bad_data"} {
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("error %v, want it to contain %q", err, want)
			}
		}
	})

	t.Run("a latency query without le is refused", func(t *testing.T) {
		_, _, err := waitErr(src, "nole")
		if err == nil || !strings.Contains(err.Error(), `no "le" label`) || !strings.Contains(err.Error(), "latency query") {
			t.Errorf("error %v, want the missing le label named", err)
		}
	})

	t.Run("an unknown app is an error", func(t *testing.T) {
		if _, _, err := src.Sample(context.Background(), "nope", ""); err == nil || !strings.Contains(err.Error(), "nope") {
			t.Errorf("error %v", err)
		}
	})
}

// waitErr polls until Sample fails (the series must exist first).
func waitErr(s *Source, app string) (analysis.Sample, analysis.Sample, error) {
	deadline := time.Now().Add(30 * time.Second)
	for {
		st, ca, err := s.Sample(context.Background(), app, "")
		if err != nil || time.Now().After(deadline) {
			return st, ca, err
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func TestUnreachablePrometheusIsAClearError(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url := "http://" + l.Addr().String()
	l.Close() // nothing listens there now
	src := newSource(t, url, versions{runtime.Stable: "v1", runtime.Canary: "v2"})
	start := time.Now()
	_, _, err = src.Sample(context.Background(), "shop", "")
	if err == nil {
		t.Fatal("no error from an unreachable Prometheus")
	}
	for _, want := range []string{url, "app shop", "requests query sum(http_requests_total{", "connection refused"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not contain %q", err, want)
		}
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("took %s", d)
	}
}

func TestQueryTimeoutBoundsASlowPrometheus(t *testing.T) {
	hang := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-hang:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(hang)
	src, err := New(Config{URL: srv.URL, Apps: catalog(t, apps), Tracks: versions{runtime.Canary: "v2"}, Timeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, _, err = src.Sample(context.Background(), "shop", "")
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("error %v, want a deadline", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("took %s with a 300ms timeout", d)
	}
}

func TestConfigReportsEveryProblem(t *testing.T) {
	err := Config{URL: "prometheus:9090", Timeout: -1}.Validate()
	for _, want := range []string{"URL must be http(s)", "Apps is required", "Tracks is required", "Timeout must not be negative"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v, want %q", err, want)
		}
	}
	if _, err := New(Config{}); err == nil || !strings.Contains(err.Error(), "URL is required") {
		t.Errorf("New without URL: %v", err)
	}
}

func TestHistogramReadsLeSeries(t *testing.T) {
	series := func(le string, v float64) *model.Sample {
		return &model.Sample{Metric: model.Metric{"le": model.LabelValue(le)}, Value: model.SampleValue(v)}
	}
	tests := []struct {
		name   string
		in     model.Vector
		bounds []time.Duration
		counts []int64
		err    string
	}{
		{"empty", model.Vector{}, nil, nil, ""},
		{"sorted, +Inf dropped", model.Vector{series("+Inf", 12), series("0.1", 7), series("0.025", 3)},
			[]time.Duration{25 * time.Millisecond, 100 * time.Millisecond}, []int64{3, 7}, ""},
		{"NaN is zero", model.Vector{series("0.5", math.NaN()), series("1", 4)},
			[]time.Duration{500 * time.Millisecond, time.Second}, []int64{0, 4}, ""},
		{"same bound added", model.Vector{series("1", 2), series("1.0", 3)}, []time.Duration{time.Second}, []int64{5}, ""},
		{"made non-decreasing", model.Vector{series("0.1", 9), series("0.2", 8)},
			[]time.Duration{100 * time.Millisecond, 200 * time.Millisecond}, []int64{9, 9}, ""},
		{"no le", model.Vector{&model.Sample{Metric: model.Metric{"job": "x"}, Value: 1}}, nil, nil, `no "le" label`},
		{"bad le", model.Vector{series("fast", 1)}, nil, nil, "not a bound"},
		{"negative count", model.Vector{series("1", -1)}, nil, nil, "not a count"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, c, err := histogram(tt.in)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("error %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(b, tt.bounds) || !reflect.DeepEqual(c, tt.counts) {
				t.Errorf("got %v %v %v, want %v %v", b, c, err, tt.bounds, tt.counts)
			}
		})
	}
	if _, _, err := histogram(&model.Scalar{Value: 1}); err == nil {
		t.Error("a scalar is not a histogram")
	}
}

func TestCountAddsSeriesAndTreatsNaNAsZero(t *testing.T) {
	v := model.Vector{{Value: 3}, {Value: model.SampleValue(math.NaN())}, {Value: 4}}
	if n, err := count(v); n != 7 || err != nil {
		t.Errorf("count = %d %v, want 7", n, err)
	}
	if n, err := count(&model.Scalar{Value: model.SampleValue(math.NaN())}); n != 0 || err != nil {
		t.Errorf("NaN scalar = %d %v, want 0", n, err)
	}
	if _, err := count(model.Vector{{Value: model.SampleValue(math.Inf(1))}}); err == nil {
		t.Error("+Inf is not a count")
	}
	if _, err := count(nil); err == nil {
		t.Error("no result is an error")
	}
	if _, err := count(model.Matrix{}); err == nil {
		t.Error("a range vector is refused")
	}
}
