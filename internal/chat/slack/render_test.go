package slack

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/shipteam/ship/internal/engine"
	"github.com/shipteam/ship/internal/release"
)

func TestReleaseMessageButtonsFollowState(t *testing.T) {
	base := release.Release{ID: 7, App: "resizer", Env: "production", Kind: release.KindDeploy, Version: "v2",
		FromVersion: "v1", Strategy: "canary", Steps: []release.Weight{100, 1000, 5000, 10000}, Actor: "slack:U1 (alice)",
		Source: release.SourceSlack, Created: time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)}
	tests := []struct {
		state   release.State
		buttons []string
	}{
		{release.Pending, []string{ActionPromote, ActionAbort, ActionRollback}},
		{release.Progressing, []string{ActionPromote, ActionAbort, ActionRollback}},
		{release.Paused, []string{ActionPromote, ActionAbort, ActionRollback}},
		{release.Promoting, []string{ActionPromote, ActionAbort, ActionRollback}},
		{release.Succeeded, []string{ActionRollback}},
		{release.Aborted, nil},
		{release.RolledBack, nil},
		{release.Failed, nil},
	}
	for _, tt := range tests {
		r := base
		r.State = tt.state
		m := releaseMessage(r, nil, nil)
		b, err := json.Marshal(m.Blocks)
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range []string{ActionPromote, ActionAbort, ActionRollback} {
			want := false
			for _, x := range tt.buttons {
				want = want || x == a
			}
			if got := strings.Contains(string(b), a); got != want {
				t.Errorf("%s: button %s shown = %v, want %v", tt.state, a, got, want)
			}
		}
	}
}

func TestReleaseMessageShowsProgressAndStaysWithinBlockLimits(t *testing.T) {
	r := release.Release{ID: 3, App: "resizer", Env: "production", Kind: release.KindDeploy, Version: "v2",
		FromVersion: "v1", Strategy: "canary", Steps: []release.Weight{100, 1000, 5000, 10000}, Step: 1, Weight: 1000,
		State: release.Progressing, Actor: "alice", Source: release.SourceCLI, Reason: strings.Repeat("é", 5000)}
	st := &engine.AppStatus{App: "resizer", Env: "production", Weight: 1000, Release: &r,
		Stable: engine.TrackView{Version: "v1", Ready: 3, Desired: 3}, Canary: engine.TrackView{Version: "v2", Ready: 1, Desired: 2, Restarts: 2},
		Analysis: &engine.Analysis{StableRequests: 9000, StableErrorRate: 0.001, CanaryRequests: 1000, CanaryErrorRate: 0.02,
			StableP99Ms: 40.04, CanaryP99Ms: 75.5, Verdict: "wait", Reason: "not enough requests"}}
	var lines []string
	for i := range 30 {
		lines = append(lines, "line "+string(rune('a'+i%26)))
	}
	m := releaseMessage(r, st, lines)
	b, _ := json.Marshal(m.Blocks)
	s := string(b)
	for _, want := range []string{
		"progressing: canary at 10%, step 2 of 4", "stable v1: 3/3 ready", "canary v2: 1/2 ready, 2 restarts",
		"canary 2.00% errors (1000 req), p99 75.5 ms · stable 0.10% errors (9000 req), p99 40 ms → wait (not enough requests)",
		"Started by alice via cli",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("message lacks %q", want)
		}
	}
	var blocks []map[string]any
	_ = json.Unmarshal(b, &blocks)
	for _, bl := range blocks {
		if bl["type"] == "context" {
			if n := len(bl["elements"].([]any)); n > 10 {
				t.Errorf("context block has %d elements, Slack allows 10", n)
			}
		}
		if txt, ok := bl["text"].(map[string]any); ok {
			s := txt["text"].(string)
			if len(s) > 3000 || !utf8.ValidString(s) {
				t.Errorf("text of %d bytes (valid UTF-8 %v)", len(s), utf8.ValidString(s))
			}
		}
	}
}

func TestFollowerHearsPausesStepsAndOutcomeOnly(t *testing.T) {
	r := func(s release.State, step int) release.Release { return release.Release{State: s, Step: step} }
	tests := []struct {
		rel      release.Release
		told     release.State
		toldStep int
		want     bool
	}{
		{r(release.Pending, 0), release.Pending, 0, false},
		{r(release.Progressing, 0), release.Pending, 0, false}, // "started" already said so
		{r(release.Progressing, 1), release.Pending, 0, true},
		{r(release.Progressing, 1), release.Progressing, 1, false},
		{r(release.Progressing, 2), release.Progressing, 1, true},
		{r(release.Paused, 0), release.Pending, 0, true},
		{r(release.Paused, 0), release.Paused, 0, false},
		{r(release.Promoting, 3), release.Progressing, 3, false},
		{r(release.Succeeded, 3), release.Progressing, 3, true},
		{r(release.Aborted, 0), release.Paused, 0, true},
		{r(release.Failed, 0), release.Failed, 0, false},
	}
	for _, tt := range tests {
		if got := worthTelling(tt.rel, tt.told, tt.toldStep); got != tt.want {
			t.Errorf("%s step %d after %s/%d: %v, want %v", tt.rel.State, tt.rel.Step, tt.told, tt.toldStep, got, tt.want)
		}
	}
}
