// Package eventually is the one way tests wait for an effect: poll a
// condition until it holds or a deadline passes, then fail saying what was
// awaited (and, with Reason, why it was not reached). A test that reads
// state right after an event, before the effect lands, fails on a loaded
// machine; waiting with a deadline, never a bare sleep, is the cure. It is
// for tests only.
package eventually

import (
	"testing"
	"time"
)

// True waits until cond returns true, failing t after within.
func True(t testing.TB, within time.Duration, what string, cond func() bool) {
	t.Helper()
	Reason(t, within, what, func() string {
		if cond() {
			return ""
		}
		return "not yet"
	})
}

// Reason waits until f returns "" (reached); until then f says why not.
// The first and the last reason are reported: the last on failure, the
// first in the log when the wait took several looks.
func Reason(t testing.TB, within time.Duration, what string, f func() string) {
	t.Helper()
	start := time.Now()
	deadline := start.Add(within)
	first := ""
	for pause := time.Millisecond; ; pause = min(2*pause, 25*time.Millisecond) {
		why := f()
		if why == "" {
			if first != "" && first != "not yet" {
				t.Logf("%s: after %s (at first: %s)", what, time.Since(start).Round(time.Millisecond), first)
			}
			return
		}
		if first == "" {
			first = why
		}
		if time.Now().After(deadline) {
			if why == "not yet" {
				t.Fatalf("timed out after %s waiting for %s", within, what)
			}
			t.Fatalf("timed out after %s waiting for %s: %s", within, what, why)
		}
		time.Sleep(pause)
	}
}
