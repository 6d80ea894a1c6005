package eventually

import (
	"sync/atomic"
	"testing"
	"time"
)

func TestTrueReturnsOnceTheConditionHolds(t *testing.T) {
	var n atomic.Int32
	go func() {
		time.Sleep(20 * time.Millisecond)
		n.Store(1)
	}()
	True(t, 5*time.Second, "n set", func() bool { return n.Load() == 1 })
}

// recorder is a testing.TB that records a failure instead of stopping.
type recorder struct {
	testing.TB
	failed string
}

func (r *recorder) Helper()                      {}
func (r *recorder) Logf(string, ...any)          {}
func (r *recorder) Fatalf(f string, args ...any) { r.failed = f; panic(r) }

func TestReasonFailsAfterTheDeadlineSayingWhy(t *testing.T) {
	r := &recorder{TB: t}
	start := time.Now()
	func() {
		defer func() {
			if p := recover(); p != r {
				panic(p)
			}
		}()
		Reason(r, 50*time.Millisecond, "the impossible", func() string { return "still 3 pods" })
	}()
	if r.failed == "" || time.Since(start) < 50*time.Millisecond {
		t.Fatalf("failed %q after %s", r.failed, time.Since(start))
	}
}
