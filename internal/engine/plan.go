package engine

import (
	"fmt"
	"time"

	"github.com/shipteam/ship/internal/analysis"
	"github.com/shipteam/ship/internal/release"
	"github.com/shipteam/ship/internal/spec"
)

// Fallbacks for specs that reach the engine without defaults (the loader
// fills them; tests and hand-built specs may not).
const (
	defaultStepTimeout = 5 * time.Minute
	defaultPause       = 30 * time.Second
	defaultInterval    = 250 * time.Millisecond
	// reapplyAfter is how long an Apply whose version the runtime does not
	// report yet is left alone before it is repeated.
	reapplyAfter = 5 * time.Second
	maxReplicas  = 1000
	// stepCallTimeout bounds one step of one app (its runtime, router and
	// store calls), so a call that never returns cannot hold an app forever.
	stepCallTimeout = 30 * time.Second
	// removeTimeout bounds a background track removal: the instances' stop
	// grace plus the runtime's own calls.
	removeTimeout = 2 * time.Minute
	// judgeCallTimeout bounds a judge-only pass (metrics and store only).
	judgeCallTimeout = 5 * time.Second
)

var defaultWeights = []release.Weight{100, 1000, 5000, 10000}

func stepTimeout(a spec.App) time.Duration {
	if d := a.Strategy.StepTimeout.D(); d > 0 {
		return d
	}
	return defaultStepTimeout
}

func interval(a spec.App) time.Duration {
	if d := a.Analysis.Interval.D(); d > 0 {
		return d
	}
	return defaultInterval
}

func thresholds(a spec.App) analysis.Thresholds {
	t := analysis.ThresholdsFrom(a.Analysis)
	if a.Analysis.MaxErrorRate == 0 && a.Analysis.MinRequests == 0 && a.Analysis.Interval == 0 {
		// A spec without defaults: use the documented ones rather than
		// failing every canary on its first error.
		t.MaxErrorRate, t.MinRequests = 0.05, 20
	}
	return t
}

// specWeights are the canary weights of the app's strategy.
func specWeights(a spec.App) []release.Weight {
	if len(a.Strategy.Steps) == 0 {
		return append([]release.Weight(nil), defaultWeights...)
	}
	w := make([]release.Weight, len(a.Strategy.Steps))
	for i, s := range a.Strategy.Steps {
		w[i] = s.Weight
	}
	return w
}

// pause is how long step i of r holds once analysis passes: the spec's pause
// of the step with the same index (the last one for longer --steps lists).
// A hold (--canary) has no pause: it waits for a person.
func pause(a spec.App, i int) time.Duration {
	steps := a.Strategy.Steps
	if len(steps) == 0 {
		return defaultPause
	}
	if i >= len(steps) {
		i = len(steps) - 1
	}
	return steps[i].Pause.D()
}

// stepDeadline is when step i started at t must have passed analysis: its
// pause or the step timeout, whichever is longer.
func stepDeadline(a spec.App, i int, t time.Time) time.Time {
	d := stepTimeout(a)
	if p := pause(a, i); p > d {
		d = p
	}
	return t.Add(d)
}

// canaryReplicas gives the canary the share of stable's instances its
// weight asks for, at least one, so 50% of traffic is not sent to a single
// instance sized for 1%.
func canaryReplicas(stable int, weight release.Weight) int {
	return max(1, weight.Of(stable))
}

func checkWeights(ws []release.Weight, what string) error {
	if err := release.CheckWeights(ws, what); err != nil {
		return &Error{Code: CodeInvalid, Message: err.Error()}
	}
	return nil
}

// checkVersion applies the one version rule (release.CheckVersion) to
// what reaches the engine from any door.
func checkVersion(v string) error {
	if err := release.CheckVersion(v); err != nil {
		return &Error{Code: CodeInvalid, Message: err.Error()}
	}
	return nil
}

// checkReason applies the one rule for free text (release.CheckReason).
func checkReason(s string) (string, error) {
	s, err := release.CheckReason(s)
	if err != nil {
		return "", &Error{Code: CodeInvalid, Message: err.Error()}
	}
	return s, nil
}

// describe is a release in a few words for messages: "v2, progressing at 10%".
func describe(r release.Release) string {
	switch r.State {
	case release.Progressing:
		return fmt.Sprintf("%s, progressing at %s", r.Version, r.Weight)
	case release.Paused:
		return fmt.Sprintf("%s, paused at %s", r.Version, r.Weight)
	default:
		return fmt.Sprintf("%s, %s", r.Version, r.State)
	}
}

func actorDesc(name string, src release.Source) string {
	if src == "" {
		return name
	}
	return name + " via " + string(src)
}
