package analysis

import (
	"testing"
	"time"
)

// FuzzJudge feeds arbitrary counters (a provider restarting, histograms
// out of step with Requests, negative counts) through Sub, Quantile and
// Judge: nothing panics, and no verdict but Wait is given below MinRequests.
func FuzzJudge(f *testing.F) {
	f.Add(int64(100), int64(2), int64(50), int64(80), int64(10), int64(1), int64(5), int64(10), int64(20), 0.05, 1.5)
	f.Add(int64(0), int64(0), int64(0), int64(0), int64(0), int64(0), int64(0), int64(0), int64(20), 0.0, 0.0)
	f.Add(int64(-5), int64(9), int64(-1), int64(3), int64(7), int64(8), int64(-3), int64(2), int64(-1), -1.0, 2.0)
	f.Fuzz(func(t *testing.T, sReq, sErr, sC0, sC1, cReq, cErr, cC0, cC1, minReq int64, maxErr, maxP99 float64) {
		bounds := []time.Duration{time.Millisecond, time.Second}
		stable := Sample{Version: "v1", Requests: sReq, Errors: sErr, Bounds: bounds, Counts: []int64{sC0, sC1}}
		canary := Sample{Version: "v2", Requests: cReq, Errors: cErr, Bounds: bounds, Counts: []int64{cC0, cC1}}
		base := Sample{Version: "v2", Requests: cReq / 2, Errors: cErr / 2, Bounds: bounds, Counts: []int64{cC0 / 2, cC1 / 2}}
		w := canary.Sub(base)
		for _, q := range []float64{0, 0.5, 0.99, 1} {
			if d := w.Quantile(q); d < 0 || d > time.Second {
				t.Fatalf("Quantile(%v) = %v outside [0, last bound]", q, d)
			}
		}
		th := Thresholds{MaxErrorRate: maxErr, MinRequests: minReq, MaxP99Ratio: maxP99}
		v := Judge(stable, w, th)
		switch v.Result {
		case Pass, Fail, Wait:
		default:
			t.Fatalf("result %q", v.Result)
		}
		if v.Result != Wait && w.Requests < max(minReq, 1) {
			t.Fatalf("%s with %d canary requests (min %d)", v.Result, w.Requests, minReq)
		}
		if v.Reason == "" {
			t.Fatal("verdict without a reason")
		}
	})
}
