// Package release is the vocabulary of a rollout: a Release, its States, the
// Events that record each transition, and locks. It holds data and small pure
// helpers only; the engine drives releases, the store keeps them.
package release

import (
	"strings"
	"time"
)

// State is where a release is in its life.
type State string

const (
	Pending     State = "pending"
	Progressing State = "progressing" // at Step, Weight
	Paused      State = "paused"      // held at Weight until promote or abort (--canary)
	Promoting   State = "promoting"
	Succeeded   State = "succeeded"
	Aborted     State = "aborted"
	RolledBack  State = "rolled_back"
	Failed      State = "failed"
)

// Terminal reports whether no further transition can happen.
func (s State) Terminal() bool {
	switch s {
	case Succeeded, Aborted, RolledBack, Failed:
		return true
	}
	return false
}

// Kind says what a release does.
type Kind string

const (
	KindDeploy   Kind = "deploy"   // canary or rolling to a new version
	KindRollback Kind = "rollback" // straight to a known-good version, no canary steps
	KindScale    Kind = "scale"    // recorded as a release-less event; kept here for history queries
)

// Source is the front end a command came from.
type Source string

const (
	SourceCLI   Source = "cli"
	SourceAPI   Source = "api"
	SourceSlack Source = "slack"
	SourceWeb   Source = "web"
)

// Release is one attempt to move an app in one environment to a version.
type Release struct {
	ID          int64     `json:"id"`
	App         string    `json:"app"`
	Env         string    `json:"env"`
	Kind        Kind      `json:"kind"`
	Version     string    `json:"version"`     // the version being rolled out
	FromVersion string    `json:"fromVersion"` // stable version when it started ("" on first deploy)
	Strategy    Strategy  `json:"strategy"`    // canary | rolling
	Steps       []Weight  `json:"steps"`       // canary weights
	HoldAt      Weight    `json:"holdAt"`      // --canary: pause at this weight until promoted; 0 = none
	State       State     `json:"state"`
	Step        int       `json:"step"`   // index into Steps
	Weight      Weight    `json:"weight"` // canary weight the release asks for
	Reason      string    `json:"reason"` // why the release is in State
	Actor       string    `json:"actor"`
	Source      Source    `json:"source"`
	Created     time.Time `json:"created"`
	Updated     time.Time `json:"updated"`
	// StepStarted is when the current step (or state) began; deadlines count from it.
	StepStarted time.Time `json:"stepStarted"`
}

// Active reports whether the release still holds its app's lock.
func (r Release) Active() bool { return !r.State.Terminal() }

// Event is one recorded fact: a transition, a command, a runtime report.
type Event struct {
	ID        int64     `json:"id"`
	ReleaseID int64     `json:"releaseId,omitempty"` // 0 for app-level events (scale, lock)
	App       string    `json:"app"`
	Env       string    `json:"env"`
	Type      EventType `json:"type"`
	State     State     `json:"state,omitempty"`
	Step      int       `json:"step"`
	Weight    Weight    `json:"weight"`
	Message   string    `json:"message"`
	Actor     string    `json:"actor"`
	Time      time.Time `json:"time"`
	// Data carries type-specific details (analysis numbers, ready counts).
	Data *EventData `json:"data,omitempty"`
}

// Lock blocks deploys of an app in an environment.
type Lock struct {
	App    string    `json:"app"`
	Env    string    `json:"env"`
	Reason string    `json:"reason"`
	Actor  string    `json:"actor"`
	Since  time.Time `json:"since"`
}

// Plan says in a few words how r moves traffic, the same in every front
// end: "rolling", "rollback, no canary steps", "canary held at 1% until
// promoted", "canary 1% → 10% → 50% → 100%".
func (r Release) Plan() string {
	switch {
	case r.Kind == KindRollback:
		return "rollback, no canary steps"
	case r.Strategy == StrategyRolling:
		return "rolling"
	case r.HoldAt > 0:
		return "canary held at " + r.HoldAt.String() + " until promoted"
	case len(r.Steps) > 0:
		parts := make([]string, len(r.Steps))
		for i, w := range r.Steps {
			parts[i] = w.String()
		}
		return "canary " + strings.Join(parts, " → ")
	}
	return string(r.Strategy)
}
