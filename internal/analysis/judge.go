package analysis

import (
	"fmt"
	"math"
	"time"

	"github.com/shipteam/ship/internal/spec"
)

// Result is the outcome of judging one window.
type Result string

const (
	Pass Result = "pass" // enough canary traffic and within every threshold
	Fail Result = "fail" // enough canary traffic and over a threshold: abort now
	Wait Result = "wait" // not enough canary traffic yet: no data is never a pass
)

// Thresholds are what a canary is judged by.
type Thresholds struct {
	MaxErrorRate float64 // fraction 0..1
	MinRequests  int64   // canary requests needed before any verdict but Wait
	MaxP99Ratio  float64 // canary p99 / stable p99; 0 = not judged
}

// ThresholdsFrom takes the thresholds of an app's spec. A MinRequests below
// 1 becomes 1, so an empty window can never pass.
func ThresholdsFrom(a spec.Analysis) Thresholds {
	t := Thresholds{MaxErrorRate: a.MaxErrorRate, MinRequests: int64(a.MinRequests), MaxP99Ratio: a.MaxP99Ratio}
	if t.MinRequests < 1 {
		t.MinRequests = 1
	}
	return t
}

// Window summarises one track's traffic in a window.
type Window struct {
	Version   string        `json:"version"`
	Requests  int64         `json:"requests"`
	Errors    int64         `json:"errors"`
	ErrorRate float64       `json:"errorRate"`
	P50       time.Duration `json:"p50"`
	P99       time.Duration `json:"p99"`
}

// Summary computes the Window of a sample.
func (s Sample) Summary() Window {
	w := Window{Version: s.Version, Requests: s.Requests, Errors: s.Errors}
	if s.Requests > 0 {
		w.ErrorRate = float64(s.Errors) / float64(s.Requests)
		w.P50 = s.Quantile(0.50)
		w.P99 = s.Quantile(0.99)
	}
	return w
}

// Verdict is the judgement of one window, with the numbers it rests on.
type Verdict struct {
	Result Result `json:"result"`
	Reason string `json:"reason"`
	Stable Window `json:"stable"`
	Canary Window `json:"canary"`
}

// Sub returns the traffic between earlier and s: the window of a step whose
// baseline is earlier. When the two samples cannot be subtracted — another
// version, a counter that went backwards (the provider restarted), or
// different histogram bounds — the baseline is taken as zero and s itself is
// the window, because everything s counts happened after the reset.
func (s Sample) Sub(earlier Sample) Sample {
	if earlier.Version != s.Version || s.Requests < earlier.Requests || s.Errors < earlier.Errors ||
		!sameBounds(s.Bounds, earlier.Bounds) || len(s.Counts) != len(earlier.Counts) {
		return s.clone()
	}
	w := Sample{Version: s.Version, Requests: s.Requests - earlier.Requests, Errors: s.Errors - earlier.Errors}
	if len(s.Bounds) > 0 {
		w.Bounds = append([]time.Duration(nil), s.Bounds...)
		w.Counts = make([]int64, len(s.Counts))
		for i := range s.Counts {
			if s.Counts[i] < earlier.Counts[i] {
				return s.clone()
			}
			w.Counts[i] = s.Counts[i] - earlier.Counts[i]
		}
	}
	return w
}

func (s Sample) clone() Sample {
	c := s
	c.Bounds = append([]time.Duration(nil), s.Bounds...)
	c.Counts = append([]int64(nil), s.Counts...)
	return c
}

func sameBounds(a, b []time.Duration) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// Quantile estimates the q-quantile (0..1) of the latency histogram by linear
// interpolation inside the bucket that holds it, as Prometheus'
// histogram_quantile does. A quantile that falls above the last bound is
// reported as the last bound (the histogram knows nothing finer); no requests
// or no histogram gives 0.
func (s Sample) Quantile(q float64) time.Duration {
	if s.Requests <= 0 || len(s.Bounds) == 0 || len(s.Counts) != len(s.Bounds) || math.IsNaN(q) {
		return 0
	}
	q = math.Max(0, math.Min(1, q))
	rank := q * float64(s.Requests)
	var prevBound time.Duration
	var prevCount int64
	for i, c := range s.Counts {
		if float64(c) >= rank && c > prevCount {
			frac := (rank - float64(prevCount)) / float64(c-prevCount)
			return prevBound + time.Duration(frac*float64(s.Bounds[i]-prevBound))
		}
		if float64(c) >= rank { // empty bucket already covering rank (rank 0)
			return prevBound
		}
		prevBound, prevCount = s.Bounds[i], c
	}
	return s.Bounds[len(s.Bounds)-1]
}

// Judge compares a canary window with the stable window of the same period.
// It is pure: the same windows and thresholds always give the same verdict.
//   - fewer than MinRequests canary requests: Wait (never Pass, never Fail);
//   - canary error rate above MaxErrorRate: Fail;
//   - MaxP99Ratio > 0, both tracks have latency data and canary p99 /
//     stable p99 is above it: Fail;
//   - otherwise Pass.
func Judge(stable, canary Sample, t Thresholds) Verdict {
	v := Verdict{Stable: stable.Summary(), Canary: canary.Summary()}
	min := t.MinRequests
	if min < 1 {
		min = 1
	}
	c, s := v.Canary, v.Stable
	if c.Requests < min {
		v.Result = Wait
		v.Reason = fmt.Sprintf("not enough traffic: %d of %d canary requests", c.Requests, min)
		return v
	}
	if c.ErrorRate > t.MaxErrorRate {
		v.Result = Fail
		v.Reason = fmt.Sprintf("canary error rate %s (%d of %d requests) is above %s; stable %s (%d of %d)",
			pct(c.ErrorRate), c.Errors, c.Requests, pct(t.MaxErrorRate), pct(s.ErrorRate), s.Errors, s.Requests)
		return v
	}
	if t.MaxP99Ratio > 0 && s.Requests > 0 && s.P99 > 0 && c.P99 > 0 {
		ratio := float64(c.P99) / float64(s.P99)
		if ratio > t.MaxP99Ratio {
			v.Result = Fail
			v.Reason = fmt.Sprintf("canary p99 %s is %.2f× stable p99 %s, above %.2f×", c.P99, ratio, s.P99, t.MaxP99Ratio)
			return v
		}
	}
	v.Result = Pass
	v.Reason = fmt.Sprintf("canary error rate %s over %d requests (stable %s over %d)", pct(c.ErrorRate), c.Requests, pct(s.ErrorRate), s.Requests)
	return v
}

func pct(f float64) string { return fmt.Sprintf("%.1f%%", f*100) }
