package traffic

import (
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/shipteam/ship/internal/analysis"
)

// latencyBounds are the histogram buckets of both the in-memory samples and
// Prometheus, fine at the low end where a healthy web app answers.
var latencyBounds = []time.Duration{
	500 * time.Microsecond, time.Millisecond, 2500 * time.Microsecond,
	5 * time.Millisecond, 10 * time.Millisecond, 25 * time.Millisecond,
	50 * time.Millisecond, 100 * time.Millisecond, 250 * time.Millisecond,
	500 * time.Millisecond, time.Second, 2500 * time.Millisecond,
	5 * time.Second, 10 * time.Second,
}

// Outcome classes, the code label of ship_router_requests_total.
const (
	class2xx = iota
	class3xx
	class4xx
	class5xx
	classError    // no instance could be reached: the router answered 502
	classCanceled // the client went away before an answer; not an error of the app
	numClasses
)

var classNames = [numClasses]string{"2xx", "3xx", "4xx", "5xx", "error", "canceled"}

func classOf(status int) int {
	switch {
	case status >= 500:
		return class5xx
	case status >= 400:
		return class4xx
	case status >= 300:
		return class3xx
	default:
		return class2xx
	}
}

// promMetrics are the Router's Prometheus collectors.
type promMetrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	inFlight *prometheus.GaugeVec
	retries  *prometheus.CounterVec
}

func newPromMetrics(reg prometheus.Registerer) (*promMetrics, error) {
	buckets := make([]float64, len(latencyBounds))
	for i, b := range latencyBounds {
		buckets[i] = b.Seconds()
	}
	m := &promMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ship_router_requests_total",
			Help: "Requests through ship's router by app, environment, track, version and outcome (2xx, 3xx, 4xx, 5xx, error = no instance reachable, canceled = client went away).",
		}, []string{"app", "env", "track", "version", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "ship_router_request_duration_seconds",
			Help:    "Time from a request's arrival at ship's router to the end of its response.",
			Buckets: buckets,
		}, []string{"app", "env", "track", "version"}),
		inFlight: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "ship_router_in_flight_requests",
			Help: "Requests ship's router is proxying now.",
		}, []string{"app", "env", "track"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ship_router_retries_total",
			Help: "Requests retried on another instance after a failed connection.",
		}, []string{"app", "env"}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.requests, m.duration, m.inFlight, m.retries} {
		if err := reg.Register(c); err != nil {
			// A second Router on the same registry shares the collectors.
			var are prometheus.AlreadyRegisteredError
			if !errors.As(err, &are) {
				return nil, fmt.Errorf("register router metrics: %w", err)
			}
			switch existing := are.ExistingCollector.(type) {
			case *prometheus.CounterVec:
				if c == m.requests {
					m.requests = existing
				} else {
					m.retries = existing
				}
			case *prometheus.HistogramVec:
				m.duration = existing
			case *prometheus.GaugeVec:
				m.inFlight = existing
			}
		}
	}
	return m, nil
}

// trackStats counts one version on one track of an app: the in-memory
// cumulative sample analysis reads, and the Prometheus series resolved
// once so that a request only touches atomics.
type trackStats struct {
	version  string
	requests atomic.Int64
	errors   atomic.Int64
	buckets  []atomic.Int64 // per bucket, not cumulative; len(latencyBounds)

	promCodes [numClasses]prometheus.Counter
	promDur   prometheus.Observer
	inFlight  prometheus.Gauge
}

func newTrackStats(m *promMetrics, app, env, track, version string) *trackStats {
	s := &trackStats{version: version, buckets: make([]atomic.Int64, len(latencyBounds))}
	for c := range numClasses {
		s.promCodes[c] = m.requests.WithLabelValues(app, env, track, version, classNames[c])
	}
	s.promDur = m.duration.WithLabelValues(app, env, track, version)
	s.inFlight = m.inFlight.WithLabelValues(app, env, track)
	return s
}

// observe counts one finished request.
func (s *trackStats) observe(d time.Duration, class int) {
	s.promCodes[class].Inc()
	if class == classCanceled {
		return // the app gave no answer to judge
	}
	s.promDur.Observe(d.Seconds())
	// Requests before errors and buckets, the reverse of sample's reads, so
	// a sample never holds more errors or bucket counts than requests.
	s.requests.Add(1)
	if class == class5xx || class == classError {
		s.errors.Add(1)
	}
	for i, b := range latencyBounds {
		if d <= b {
			s.buckets[i].Add(1)
			break
		}
	}
}

// sample returns the cumulative analysis.Sample of s; nil gives a zero
// Sample.
func (s *trackStats) sample() analysis.Sample {
	out := analysis.Sample{
		Bounds: append([]time.Duration(nil), latencyBounds...),
		Counts: make([]int64, len(latencyBounds)),
	}
	if s == nil {
		return out
	}
	out.Version = s.version
	var sum int64
	for i := range s.buckets {
		sum += s.buckets[i].Load()
		out.Counts[i] = sum
	}
	out.Errors = s.errors.Load()
	out.Requests = s.requests.Load() // last: see observe
	return out
}
