// Package prometheus is the analysis.Source that reads a canary's and its
// stable's traffic from a Prometheus server, for runtimes without ship's
// own router (Kubernetes). For each track it renders the app's
// analysis.prometheus queries (spec.App.PrometheusQueryFor) and runs them as
// instant queries over the HTTP API: cumulative requests, errors and a
// latency histogram, which the engine turns into per-step windows.
//
// It caches nothing: the engine calls Sample every analysis interval and
// each answer must be Prometheus' at that moment. It must not judge or
// compute rates; that is the engine's and the judge's work.
package prometheus

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	promapi "github.com/prometheus/client_golang/api"
	promv1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"

	"github.com/shipteam/ship/internal/analysis"
	"github.com/shipteam/ship/internal/runtime"
	"github.com/shipteam/ship/internal/spec"
)

// Apps looks up an app's spec by name (*spec.Catalog has it).
type Apps interface {
	Get(name string) (spec.App, bool)
}

// Tracks reports which version each track of an app runs (*kube.Runtime
// has it).
type Tracks interface {
	Status(ctx context.Context, app spec.App, env string) (map[runtime.Track]runtime.TrackStatus, error)
}

// DefaultTimeout bounds one query when Config.Timeout is 0.
const DefaultTimeout = 5 * time.Second

// Config configures a Source.
type Config struct {
	URL     string        // Prometheus base URL, e.g. http://prometheus.monitoring:9090
	Apps    Apps          // the app specs, for their queries and namespaces
	Tracks  Tracks        // each track's current version
	Timeout time.Duration // per query (sent to Prometheus too); default DefaultTimeout
	// RoundTripper is the HTTP transport; nil uses client_golang's default.
	RoundTripper http.RoundTripper
}

// Validate reports every missing or wrong field.
func (c Config) Validate() error {
	var errs []error
	if u, err := url.Parse(c.URL); c.URL == "" {
		errs = append(errs, errors.New("prometheus: URL is required"))
	} else if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		errs = append(errs, fmt.Errorf("prometheus: URL must be http(s)://host[:port][/path], got %q", c.URL))
	}
	if c.Apps == nil {
		errs = append(errs, errors.New("prometheus: Apps is required"))
	}
	if c.Tracks == nil {
		errs = append(errs, errors.New("prometheus: Tracks is required"))
	}
	if c.Timeout < 0 {
		errs = append(errs, fmt.Errorf("prometheus: Timeout must not be negative, got %s", c.Timeout))
	}
	return errors.Join(errs...)
}

// Source is an analysis.Source backed by Prometheus. It holds no state
// between calls and is safe for concurrent use.
type Source struct {
	url     string
	api     promv1.API
	apps    Apps
	tracks  Tracks
	timeout time.Duration
}

var _ analysis.Source = (*Source)(nil)

// New validates cfg and builds the client; it does not contact Prometheus
// (an unreachable server shows as errors from Sample, which the engine
// logs and which keep steps from passing).
func New(cfg Config) (*Source, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultTimeout
	}
	client, err := promapi.NewClient(promapi.Config{Address: cfg.URL, RoundTripper: cfg.RoundTripper})
	if err != nil {
		return nil, fmt.Errorf("prometheus: client for %s: %w", cfg.URL, err)
	}
	return &Source{url: cfg.URL, api: promv1.NewAPI(client), apps: cfg.Apps, tracks: cfg.Tracks, timeout: cfg.Timeout}, nil
}

// Sample runs the app's queries for both tracks (concurrently; six instant
// queries when both tracks run). A track that runs no version gives a zero
// Sample without a query; a query with no result counts as zero. Every
// failed query is reported, joined, each naming the app, the track and
// the query.
func (s *Source) Sample(ctx context.Context, app, env string) (stable, canary analysis.Sample, err error) {
	a, ok := s.apps.Get(app)
	if !ok {
		return stable, canary, fmt.Errorf("prometheus: app %s is not in the catalog", app)
	}
	if env == "" {
		env = a.DefaultEnv()
	}
	status, err := s.tracks.Status(ctx, a, env)
	if err != nil {
		return stable, canary, fmt.Errorf("prometheus: app %s env %s: track versions: %w", app, env, err)
	}
	var (
		wg   sync.WaitGroup
		out  [2]analysis.Sample
		errs [2]error
	)
	for i, t := range []runtime.Track{runtime.Stable, runtime.Canary} {
		v := status[t].Version
		if v == "" {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			out[i], errs[i] = s.track(ctx, a, env, t, v)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs[:]...); err != nil {
		return analysis.Sample{}, analysis.Sample{}, err
	}
	return out[0], out[1], nil
}

// track samples one track: the three queries run concurrently.
func (s *Source) track(ctx context.Context, a spec.App, env string, t runtime.Track, version string) (analysis.Sample, error) {
	smp := analysis.Sample{Version: version}
	var (
		wg   sync.WaitGroup
		errs [3]error
	)
	run := func(i int, q spec.PromQuery, use func(model.Value) error) {
		defer wg.Done()
		query, err := a.PrometheusQueryFor(q, env, string(t), version)
		if err != nil {
			errs[i] = fmt.Errorf("prometheus: app %s env %s %s: %w", a.Name, env, t, err)
			return
		}
		v, err := s.query(ctx, query)
		if err == nil {
			err = use(v)
		}
		if err != nil {
			errs[i] = fmt.Errorf("prometheus %s: app %s env %s %s: %s query %s: %w", s.url, a.Name, env, t, q, query, err)
		}
	}
	wg.Add(3)
	go run(0, spec.PromRequests, func(v model.Value) (err error) { smp.Requests, err = count(v); return })
	go run(1, spec.PromErrors, func(v model.Value) (err error) { smp.Errors, err = count(v); return })
	go run(2, spec.PromLatency, func(v model.Value) (err error) { smp.Bounds, smp.Counts, err = histogram(v); return })
	wg.Wait()
	if err := errors.Join(errs[:]...); err != nil {
		return analysis.Sample{}, err
	}
	return smp, nil
}

// query runs one instant query now. Warnings are errors: they mean a
// partial or doubtful answer, and a canary must not be judged on one.
func (s *Source) query(ctx context.Context, q string) (model.Value, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	v, warnings, _, err := s.api.Query(ctx, q, time.Now(), promv1.WithTimeout(s.timeout))
	if err != nil {
		return nil, err
	}
	if len(warnings) > 0 {
		return nil, fmt.Errorf("warnings: %s", strings.Join(warnings, "; "))
	}
	return v, nil
}

// count adds the values of an instant vector (or takes a scalar) as a
// count; an empty vector and NaN are 0.
func count(v model.Value) (int64, error) {
	var sum float64
	switch v := v.(type) {
	case nil:
		return 0, errors.New("no result")
	case model.Vector:
		for _, smp := range v {
			f := float64(smp.Value)
			if math.IsNaN(f) {
				continue
			}
			sum += f
		}
	case *model.Scalar:
		sum = float64(v.Value)
		if math.IsNaN(sum) {
			sum = 0
		}
	default:
		return 0, fmt.Errorf("must return an instant vector or a scalar, got a %s", v.Type())
	}
	return toCount(sum)
}

func toCount(f float64) (int64, error) {
	switch {
	case math.IsInf(f, 0) || f < 0:
		return 0, fmt.Errorf("value %g is not a count", f)
	case f >= math.MaxInt64:
		return math.MaxInt64, nil
	}
	return int64(math.Round(f)), nil
}

// histogram reads a cumulative histogram from an instant vector with one
// series per "le" bound (in seconds): the +Inf bucket is dropped (requests
// above the last bound are counted only in Requests), series with the same
// bound are added, bounds are sorted, and counts are made non-decreasing
// the way histogram_quantile does, since series scraped at different
// moments can disagree slightly. An empty vector is no histogram.
func histogram(v model.Value) ([]time.Duration, []int64, error) {
	vec, ok := v.(model.Vector)
	if !ok {
		if v == nil {
			return nil, nil, errors.New("no result")
		}
		return nil, nil, fmt.Errorf("must return an instant vector with one series per le, got a %s", v.Type())
	}
	byBound := map[time.Duration]float64{}
	for _, smp := range vec {
		le, ok := smp.Metric[model.BucketLabel]
		if !ok {
			return nil, nil, fmt.Errorf("series %s has no %q label; aggregate with sum by (le) (...)", smp.Metric, model.BucketLabel)
		}
		b, err := strconv.ParseFloat(string(le), 64)
		if err != nil || math.IsNaN(b) || b < 0 {
			return nil, nil, fmt.Errorf("series %s: le %q is not a bound in seconds", smp.Metric, le)
		}
		if math.IsInf(b, 1) {
			continue
		}
		if b > float64(math.MaxInt64)/float64(time.Second) {
			return nil, nil, fmt.Errorf("series %s: le %q is too large", smp.Metric, le)
		}
		f := float64(smp.Value)
		if math.IsNaN(f) {
			f = 0
		}
		byBound[time.Duration(math.Round(b*float64(time.Second)))] += f
	}
	if len(byBound) == 0 {
		return nil, nil, nil
	}
	bounds := make([]time.Duration, 0, len(byBound))
	for b := range byBound {
		bounds = append(bounds, b)
	}
	sort.Slice(bounds, func(i, j int) bool { return bounds[i] < bounds[j] })
	counts := make([]int64, len(bounds))
	for i, b := range bounds {
		c, err := toCount(byBound[b])
		if err != nil {
			return nil, nil, fmt.Errorf("bucket le=%s: %w", b, err)
		}
		if i > 0 && c < counts[i-1] {
			c = counts[i-1]
		}
		counts[i] = c
	}
	return bounds, counts, nil
}
