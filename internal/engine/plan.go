package engine

import (
	"fmt"
	"time"

	"github.com/shipteam/ship/internal/analysis"
	"github.com/shipteam/ship/internal/release"
	"github.com/shipteam/ship/internal/spec"
)

// The engine takes specs as spec.NewCatalog or spec.LoadDir give them:
// defaulted and validated. It keeps no copies of the spec's defaults.
const (
	// reapplyAfter is how long an Apply whose version the runtime does not
	// report yet is left alone before it is repeated.
	reapplyAfter = 5 * time.Second
	maxReplicas  = spec.MaxReplicas
	// stepCallTimeout bounds one step of one app (its runtime, router and
	// store calls), so a call that never returns cannot hold an app forever.
	stepCallTimeout = 30 * time.Second
	// removeTimeout bounds a background track removal: the instances' stop
	// grace plus the runtime's own calls.
	removeTimeout = 2 * time.Minute
	// judgeCallTimeout bounds a judge-only pass (metrics and store only).
	judgeCallTimeout = 5 * time.Second
)

func stepTimeout(a spec.App) time.Duration { return a.Strategy.StepTimeout.D() }

func interval(a spec.App) time.Duration { return a.Analysis.Interval.D() }

func thresholds(a spec.App) analysis.Thresholds { return analysis.ThresholdsFrom(a.Analysis) }

// specWeights are the canary weights of the app's strategy (a rolling app
// deployed with a canary anyway walks the spec's default steps).
func specWeights(a spec.App) []release.Weight {
	steps := a.Strategy.Steps
	if len(steps) == 0 {
		steps = spec.DefaultSteps()
	}
	w := make([]release.Weight, len(steps))
	for i, s := range steps {
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
		return spec.DefaultStepPause.D()
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
