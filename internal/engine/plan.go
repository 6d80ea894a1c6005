package engine

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode"

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

var defaultWeights = []float64{1, 10, 50, 100}

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
func specWeights(a spec.App) []float64 {
	if len(a.Strategy.Steps) == 0 {
		return append([]float64(nil), defaultWeights...)
	}
	w := make([]float64, len(a.Strategy.Steps))
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
func canaryReplicas(stable int, weight float64) int {
	n := int(math.Ceil(float64(stable)*weight/100 - 1e-9))
	if n < 1 {
		n = 1
	}
	return n
}

func checkWeights(ws []float64, what string) error {
	prev := 0.0
	for _, w := range ws {
		if math.IsNaN(w) || w <= 0 || w > 100 {
			return Errorf(CodeInvalid, "%s: weight %s must be above 0 and at most 100", what, fmtPct(w))
		}
		if w <= prev {
			return Errorf(CodeInvalid, "%s: weights must increase (%s after %s)", what, fmtPct(w), fmtPct(prev))
		}
		prev = w
	}
	return nil
}

func checkVersion(v string) error {
	if v == "" {
		return Errorf(CodeInvalid, "a version is required")
	}
	if len(v) > 128 {
		return Errorf(CodeInvalid, "version is longer than 128 characters")
	}
	for _, r := range v {
		if unicode.IsSpace(r) || unicode.IsControl(r) || r == '/' || r == '\\' {
			return Errorf(CodeInvalid, "version %q may not contain spaces, control characters or slashes", v)
		}
	}
	if v == "." || v == ".." {
		return Errorf(CodeInvalid, "version %q is not a version", v)
	}
	return nil
}

func fmtPct(w float64) string { return strconv.FormatFloat(w, 'f', -1, 64) + "%" }

func fmtSteps(ws []float64) string {
	parts := make([]string, len(ws))
	for i, w := range ws {
		parts[i] = strconv.FormatFloat(w, 'f', -1, 64)
	}
	return strings.Join(parts, "→") + "%"
}

// describe is a release in a few words for messages: "v2, progressing at 10%".
func describe(r release.Release) string {
	switch r.State {
	case release.Progressing:
		return fmt.Sprintf("%s, progressing at %s", r.Version, fmtPct(r.Weight))
	case release.Paused:
		return fmt.Sprintf("%s, paused at %s", r.Version, fmtPct(r.Weight))
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
