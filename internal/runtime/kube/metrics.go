package kube

import (
	"context"

	"github.com/shipteam/ship/internal/analysis"
)

// NoMetrics is the analysis source for a cluster without a mesh or a
// metrics backend ship reads: it reports no traffic for either track, never
// made-up numbers. The engine's judge then answers "wait" on every
// automated step, and the step fails at its deadline ("not enough traffic:
// 0 of N canary requests"): without metrics an automated canary never
// passes by itself. A canary held with --canary and promoted by hand, and
// --rolling deploys, do not need analysis and work as usual.
type NoMetrics struct{}

// Sample returns two zero samples.
func (NoMetrics) Sample(ctx context.Context, app, env string) (stable, canary analysis.Sample, err error) {
	return analysis.Sample{}, analysis.Sample{}, ctx.Err()
}
