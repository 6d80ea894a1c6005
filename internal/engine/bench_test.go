package engine

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/shipteam/ship/internal/release"
)

// BenchmarkStep measures one engine tick over n paused canaries on a real
// SQLite file (fakes for runtime, router and metrics), so the cost of the
// engine and store themselves is visible: a tick must stay well under the
// 250ms that the 2 s abort promise leaves it.
//
//	go test -run '^$' -bench BenchmarkStep -benchtime 50x ./internal/engine
func BenchmarkStep(b *testing.B) {
	for _, n := range []int{1, 20, 200} {
		b.Run(fmt.Sprintf("releases=%d", n), func(b *testing.B) {
			h := newHarness(b)
			for i := 0; i < n; i++ {
				a := testApp()
				a.Name = fmt.Sprintf("app%03d", i)
				h.apps[a.Name] = a
			}
			ctx := context.Background()
			var ids []int64
			for name := range h.apps {
				if _, err := h.e.Deploy(ctx, alice, DeployRequest{App: name, Version: "v1"}); err != nil {
					b.Fatal(err)
				}
			}
			for i := 0; i < 5; i++ {
				h.step(time.Second, 0, 0)
			}
			for name := range h.apps {
				r, err := h.e.Deploy(ctx, alice, DeployRequest{App: name, Version: "v2", Canary: 500})
				if err != nil {
					b.Fatal(err)
				}
				ids = append(ids, r.ID)
			}
			for i := 0; i < 5; i++ {
				h.step(time.Second, 0, 0)
			}
			for _, id := range ids {
				if r := h.release(id); r.State != release.Paused {
					b.Fatalf("release %d %s %s", id, r.State, r.Reason)
				}
			}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				h.clock.Advance(300 * time.Millisecond)
				if err := h.e.Step(ctx); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N)/float64(len(ids)), "µs/release")
		})
	}
}
