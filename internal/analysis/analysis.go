// Package analysis judges a canary against stable. Providers (the embedded
// router's counters, Prometheus) give cumulative Samples; the engine takes the
// difference between two samples as a step's window, and the judge is a pure
// function of two windows and the thresholds, so it is tested without time.
package analysis

import (
	"context"
	"time"
)

// Sample is the cumulative traffic of one track. Latency is a cumulative
// histogram: Counts[i] requests took at most Bounds[i]; requests slower than
// the last bound are counted only in Requests.
type Sample struct {
	Version  string
	Requests int64 // completed requests
	Errors   int64 // 5xx answers and requests that failed to reach an instance
	Bounds   []time.Duration
	Counts   []int64
}

// Source gives the current cumulative samples of both tracks of an app.
// A track without traffic yet gives a zero Sample, not an error.
type Source interface {
	Sample(ctx context.Context, app, env string) (stable, canary Sample, err error)
}
