package release

// EventType names what an event records. The values are part of the API
// (SSE event names, /v1/events) and of the store: never rename one.
type EventType string

const (
	EvCreated       EventType = "release.created"
	EvStep          EventType = "release.step"
	EvPaused        EventType = "release.paused"
	EvPromoting     EventType = "release.promoting"
	EvAnalysis      EventType = "release.analysis"
	EvWeightRounded EventType = "release.weight_rounded"
	// EvWeight says the router has put a release's weight in force: the
	// CLI and dashboards settle on it instead of polling the router.
	EvWeight   EventType = "release.weight"
	EvConflict EventType = "release.conflict"
	// The terminal ones are "release." + the State: see Ended.
	EvSucceeded  EventType = "release.succeeded"
	EvAborted    EventType = "release.aborted"
	EvRolledBack EventType = "release.rolled_back"
	EvFailed     EventType = "release.failed"

	EvScaled    EventType = "app.scaled"
	EvLocked    EventType = "app.locked"
	EvUnlocked  EventType = "app.unlocked"
	EvAppClash  EventType = "app.conflict"
	EvReclaimed EventType = "app.reclaimed"
	EvCrashed   EventType = "instance.crashed"
	// EvDenied records a command the permission model refused.
	EvDenied EventType = "access.denied"
)

// Ended is the event type of a release reaching terminal state s.
func Ended(s State) EventType { return EventType("release." + string(s)) }

// IsRelease reports whether t is about a release's life (release.*).
func (t EventType) IsRelease() bool { return len(t) > 8 && t[:8] == "release." }

// IsApp reports whether t is a fact about an app (app.*).
func (t EventType) IsApp() bool { return len(t) > 4 && t[:4] == "app." }

// EventData carries the details of an event; which fields are set depends
// on its Type (each field says which). Unset fields are left out of JSON,
// so the wire format is the flat object it has always been.
type EventData struct {
	// release.created: the plan.
	Version  string   `json:"version,omitempty"`
	From     string   `json:"from,omitempty"`
	Strategy Strategy `json:"strategy,omitempty"`
	Steps    []Weight `json:"steps,omitempty"`
	HoldAt   Weight   `json:"holdAt,omitempty"`
	Kind     Kind     `json:"kind,omitempty"`
	// Source is the front end of the command (created, scaled, locked, …).
	Source Source `json:"source,omitempty"`

	// Track facts (step, paused, ended, crashed, conflicts): Version above
	// is the track's version.
	Track    string `json:"track,omitempty"`
	Ready    int    `json:"ready,omitempty"`
	Desired  int    `json:"desired,omitempty"`
	Restarts int    `json:"restarts,omitempty"`
	// New is how many restarts instance.crashed reports.
	New int `json:"new,omitempty"`
	// Reason is the runtime's reason (a failed track) or a lock's reason.
	Reason string `json:"reason,omitempty"`

	// Analysis is the verdict behind release.analysis, a step and an end.
	Analysis *Analysis `json:"analysis,omitempty"`

	// release.weight_rounded and release.weight: asked and in force.
	Asked   Weight  `json:"asked,omitempty"`
	InForce *Weight `json:"inForce,omitempty"`

	// app.scaled: the new and the old stable count.
	Replicas int `json:"replicas,omitempty"`
	Was      int `json:"was,omitempty"`

	// release.conflict and app.conflict: what ship wanted and was refused.
	Conflict string `json:"conflict,omitempty"`
	Want     *Want  `json:"want,omitempty"`
	Error    string `json:"error,omitempty"`

	// app.reclaimed: each track forced back, and every field others lost.
	Tracks []ReclaimedTrack `json:"tracks,omitempty"`
	Lost   []string         `json:"lost,omitempty"`

	// access.denied: the action refused and who asked.
	Action   string `json:"action,omitempty"`
	Identity string `json:"identity,omitempty"`
}

// Want is a track's wanted version and size, as events report it.
type Want struct {
	Version  string `json:"version"`
	Replicas int    `json:"replicas"`
}

// ReclaimedTrack is one track a reclaim applied with force.
type ReclaimedTrack struct {
	Track    string `json:"track"`
	Version  string `json:"version"`
	Replicas int    `json:"replicas"`
	// Lost names each field another manager lost, in the runtime's words
	// (on Kubernetes: `"hand-update": deployment web-stable .spec.replicas`).
	Lost []string `json:"lost"`
}

// Analysis is a comparison of canary with stable in a step's window.
type Analysis struct {
	StableRequests  int64   `json:"stableRequests"`
	StableErrorRate float64 `json:"stableErrorRate"`
	CanaryRequests  int64   `json:"canaryRequests"`
	CanaryErrorRate float64 `json:"canaryErrorRate"`
	StableP99Ms     float64 `json:"stableP99Ms"`
	CanaryP99Ms     float64 `json:"canaryP99Ms"`
	Verdict         string  `json:"verdict"` // pass | fail | wait
	Reason          string  `json:"reason,omitempty"`
}
