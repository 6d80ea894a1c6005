package analysis

import (
	"strings"
	"testing"
	"time"

	"github.com/shipteam/ship/internal/spec"
)

var b3 = []time.Duration{10 * time.Millisecond, 100 * time.Millisecond, time.Second}

// sample builds a cumulative sample: fast/mid/slow requests land in the
// three buckets; over are slower than the last bound.
func sample(v string, fast, mid, slow, over, errs int64) Sample {
	return Sample{Version: v, Requests: fast + mid + slow + over, Errors: errs, Bounds: b3,
		Counts: []int64{fast, fast + mid, fast + mid + slow}}
}

func TestJudge(t *testing.T) {
	th := Thresholds{MaxErrorRate: 0.05, MinRequests: 20, MaxP99Ratio: 2}
	cases := []struct {
		name           string
		stable, canary Sample
		t              Thresholds
		want           Result
		reason         string
	}{
		{"no traffic waits", Sample{}, Sample{}, th, Wait, "not enough traffic: 0 of 20 canary requests"},
		{"few requests wait even when all fail", sample("v1", 1000, 0, 0, 0, 0), sample("v2", 19, 0, 0, 0, 19), th, Wait, "not enough traffic: 19 of 20"},
		{"error rate above max fails", sample("v1", 1000, 0, 0, 0, 0), sample("v2", 20, 0, 0, 0, 2), th, Fail, "canary error rate 10.0% (2 of 20 requests) is above 5.0%"},
		{"error rate at max passes", sample("v1", 1000, 0, 0, 0, 0), sample("v2", 100, 0, 0, 0, 5), th, Pass, ""},
		{"p99 ratio above max fails", sample("v1", 1000, 0, 0, 0, 0), sample("v2", 0, 0, 100, 0, 0), th, Fail, "canary p99"},
		{"p99 ratio not judged when 0", sample("v1", 1000, 0, 0, 0, 0), sample("v2", 0, 0, 100, 0, 0), Thresholds{MaxErrorRate: 0.05, MinRequests: 20}, Pass, ""},
		{"p99 not judged without stable data", Sample{}, sample("v2", 0, 0, 100, 0, 0), th, Pass, ""},
		{"healthy canary passes", sample("v1", 1000, 10, 0, 0, 3), sample("v2", 50, 0, 0, 0, 0), th, Pass, "canary error rate 0.0% over 50 requests"},
		{"min requests 0 still needs one", Sample{}, Sample{}, Thresholds{MaxErrorRate: 0.05}, Wait, "0 of 1"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			v := Judge(tc.stable, tc.canary, tc.t)
			if v.Result != tc.want || !strings.Contains(v.Reason, tc.reason) {
				t.Fatalf("got %s %q, want %s containing %q", v.Result, v.Reason, tc.want, tc.reason)
			}
			if v.Canary.Requests != tc.canary.Requests || v.Stable.Requests != tc.stable.Requests {
				t.Fatalf("windows %+v %+v", v.Stable, v.Canary)
			}
		})
	}
}

func TestSub(t *testing.T) {
	cases := []struct {
		name       string
		now, early Sample
		want       Sample
	}{
		{"difference", sample("v1", 30, 20, 10, 5, 4), sample("v1", 10, 5, 0, 1, 1), sample("v1", 20, 15, 10, 4, 3)},
		{"version change resets the baseline", sample("v2", 3, 0, 0, 0, 1), sample("v1", 10, 5, 0, 1, 1), sample("v2", 3, 0, 0, 0, 1)},
		{"counter reset resets the baseline", sample("v1", 3, 0, 0, 0, 0), sample("v1", 10, 5, 0, 1, 1), sample("v1", 3, 0, 0, 0, 0)},
		{"zero baseline", sample("v1", 3, 1, 0, 0, 1), Sample{Version: "v1"}, sample("v1", 3, 1, 0, 0, 1)},
		{"no histogram", Sample{Version: "v1", Requests: 9, Errors: 2}, Sample{Version: "v1", Requests: 4}, Sample{Version: "v1", Requests: 5, Errors: 2}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := tc.now.Sub(tc.early)
			if got.Version != tc.want.Version || got.Requests != tc.want.Requests || got.Errors != tc.want.Errors || len(got.Counts) != len(tc.want.Counts) {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
			for i := range got.Counts {
				if got.Counts[i] != tc.want.Counts[i] {
					t.Fatalf("counts %v, want %v", got.Counts, tc.want.Counts)
				}
			}
		})
	}
	// Sub never aliases its inputs.
	a := sample("v1", 5, 0, 0, 0, 0)
	w := a.Sub(Sample{Version: "other"})
	w.Counts[0] = 99
	if a.Counts[0] != 5 {
		t.Fatal("Sub returned the input's slice")
	}
}

func TestQuantile(t *testing.T) {
	cases := []struct {
		name string
		s    Sample
		q    float64
		want time.Duration
	}{
		{"empty", Sample{}, 0.99, 0},
		{"all in first bucket, median interpolates", sample("v", 100, 0, 0, 0, 0), 0.5, 5 * time.Millisecond},
		{"p99 in the second bucket", sample("v", 90, 10, 0, 0, 0), 0.99, 91 * time.Millisecond},
		{"p50 in first of two", sample("v", 90, 10, 0, 0, 0), 0.5, 10 * time.Millisecond * 50 / 90},
		{"above the last bound clamps", sample("v", 0, 0, 0, 10, 0), 0.5, time.Second},
		{"q=1 is the top of the highest bucket", sample("v", 10, 0, 10, 0, 0), 1, time.Second},
		{"skips empty buckets", sample("v", 0, 0, 10, 0, 0), 0.5, 550 * time.Millisecond},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := tc.s.Quantile(tc.q)
			if d := got - tc.want; d > time.Microsecond || d < -time.Microsecond {
				t.Fatalf("Quantile(%v) = %v, want %v", tc.q, got, tc.want)
			}
		})
	}
}

func TestThresholdsFromNeverAllowAnEmptyPass(t *testing.T) {
	th := ThresholdsFrom(spec.Analysis{MaxErrorRate: 0.01, MinRequests: 0, MaxP99Ratio: 1.5})
	if th.MinRequests != 1 || th.MaxErrorRate != 0.01 || th.MaxP99Ratio != 1.5 {
		t.Fatalf("%+v", th)
	}
}
