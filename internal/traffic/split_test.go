package traffic

import (
	"fmt"
	"strings"
	"testing"
)

func TestCanaryTurnGivesExactShareInEveryWindow(t *testing.T) {
	for _, tc := range []struct {
		weight, window, want int
	}{
		{100, 100, 1},     // 1%: one in every 100
		{10, 1000, 1},     // 0.1%: one in every 1000
		{1, 10000, 1},     // 0.01%
		{5000, 2, 1},      // 50%: alternate
		{1000, 10, 1},     // 10%
		{0, 10000, 0},     // off
		{10000, 10, 10},   // everything
		{3333, 3000, 999}, // 33.33% never drifts by more than one
		{9900, 100, 99},   // 99%
		{150, 200, 3},     // 1.5%
		{100, 20000, 200}, // the acceptance window
	} {
		t.Run(fmt.Sprintf("w%d", tc.weight), func(t *testing.T) {
			// Slide the window across a full period and past it.
			for start := uint64(0); start < 2*scale; start += 37 {
				got := 0
				for n := start; n < start+uint64(tc.window); n++ {
					if canaryTurn(n, tc.weight) {
						got++
					}
				}
				if got < tc.want-1 || got > tc.want+1 || (start == 0 && got != tc.want) {
					t.Fatalf("window of %d from %d: %d canary, want %d", tc.window, start, got, tc.want)
				}
			}
		})
	}
}

func TestStickyBucketSpreadsUsers(t *testing.T) {
	// With 10% weight, close to 10% of 20,000 user ids land on the canary.
	in := 0
	for i := 0; i < 20000; i++ {
		if stickyBucket(fmt.Sprintf("user-%d", i)) < 1000 {
			in++
		}
	}
	if in < 1800 || in > 2200 {
		t.Fatalf("%d of 20000 users below bucket 1000, want about 2000", in)
	}
}

func TestConfigValidateJoinsErrors(t *testing.T) {
	err := Config{DialTimeout: -1, MaxRetryBody: -5, DownFor: -1}.Validate()
	if err == nil {
		t.Fatal("negative values accepted")
	}
	for _, f := range []string{"DialTimeout", "MaxRetryBody", "DownFor"} {
		if !strings.Contains(err.Error(), f) {
			t.Errorf("error %q does not name %s", err, f)
		}
	}
	if err := (Config{}).Validate(); err != nil {
		t.Errorf("zero config: %v", err)
	}
	if _, err := New(Config{IdleTimeout: -1}); err == nil {
		t.Error("New accepted an invalid config")
	}
}
