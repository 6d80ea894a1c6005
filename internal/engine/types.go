package engine

import (
	"errors"
	"fmt"
	"strings"

	"github.com/shipteam/ship/internal/release"
)

// Actor is who asked for something and through which front end.
type Actor struct {
	// ID is the identity the authorizer decides on, KIND:ID: token:alice,
	// slack:U0123, mattermost:x8f3. Front ends set it from what they
	// verified; it is never taken from what a caller claims.
	ID string `json:"id,omitempty"`
	// Name is what history and messages show ("alice", "slack:U0123 (alice)").
	Name   string         `json:"name"`
	Source release.Source `json:"source"`
	// Role is a role the credential itself carries (an API token's): the
	// authorizer grants it on every app and environment. "" for none.
	Role string `json:"role,omitempty"`
}

// System is the engine's own front-end helpers reading on nobody's
// behalf (the chat notifier rendering a release message in the app's
// channel). It may read; it may not change anything.
var System = Actor{ID: "ship:system", Name: "ship"}

// The request types below are what every door (API, CLI, chat) hands the
// engine, one per command; the API decodes its bodies into them. Env ""
// is the app's first environment. The engine validates them, once.

// DeployRequest asks for a new release of App in Env at Version.
type DeployRequest struct {
	App     string           `json:"app,omitempty"`
	Env     string           `json:"env"` // "" = the app's first environment
	Version string           `json:"version"`
	Canary  release.Weight   `json:"canary"`  // >0: go to this weight and hold until promoted or aborted
	Steps   []release.Weight `json:"steps"`   // nil = the spec's steps
	Rolling bool             `json:"rolling"` // skip the canary: replace stable directly
}

// PromoteRequest asks to promote App's active release in Env now.
type PromoteRequest struct {
	App string `json:"app,omitempty"`
	Env string `json:"env,omitempty"`
}

// AbortRequest asks to end App's active release in Env, canary off now.
type AbortRequest struct {
	App    string `json:"app,omitempty"`
	Env    string `json:"env,omitempty"`
	Reason string `json:"reason,omitempty"` // one line of plain text
}

// RollbackRequest asks to go back to To (a version that succeeded
// before), or to the last good version when To is "".
type RollbackRequest struct {
	App string `json:"app,omitempty"`
	Env string `json:"env,omitempty"`
	To  string `json:"to,omitempty"`
}

// ScaleRequest asks for Replicas stable instances of App in Env.
type ScaleRequest struct {
	App      string `json:"app,omitempty"`
	Env      string `json:"env,omitempty"`
	Replicas *int   `json:"replicas"` // required: 0 stops the app
}

// LockRequest asks to block deploys and rollbacks of App in Env.
type LockRequest struct {
	App    string `json:"app,omitempty"`
	Env    string `json:"env,omitempty"`
	Reason string `json:"reason"` // required, one line of plain text
}

// UnlockRequest lifts the lock of App in Env.
type UnlockRequest struct {
	App string `json:"app,omitempty"`
	Env string `json:"env,omitempty"`
}

// ReclaimRequest asks to force what ship records back onto App in Env.
type ReclaimRequest struct {
	App string `json:"app,omitempty"`
	Env string `json:"env,omitempty"`
}

// Replicas is a ScaleRequest's count, for building one in Go.
func Replicas(n int) *int { return &n }

// TrackView is one track as status shows it.
type TrackView struct {
	Version  string `json:"version"`
	Ready    int    `json:"ready"`
	Desired  int    `json:"desired"`
	Restarts int    `json:"restarts"`
	Failed   bool   `json:"failed,omitempty"`
	Reason   string `json:"reason,omitempty"`
}

// Analysis is the latest comparison of canary with stable in a step window.
type Analysis = release.Analysis

// AppStatus is everything `ship status APP` shows.
type AppStatus struct {
	App      string         `json:"app"`
	Env      string         `json:"env"`
	Endpoint string         `json:"endpoint"` // the address the app's users connect to
	Stable   TrackView      `json:"stable"`
	Canary   TrackView      `json:"canary"`
	Weight   release.Weight `json:"weight"` // canary share in force
	// WeightAsked is the active release's weight when the router puts
	// another one in force (replica ratios without a Gateway round it);
	// 0 when they agree. Note says why.
	WeightAsked release.Weight   `json:"weightAsked,omitempty"`
	Release     *release.Release `json:"release,omitempty"` // the active release, else the latest
	Analysis    *Analysis        `json:"analysis,omitempty"`
	Lock        *release.Lock    `json:"lock,omitempty"`
	Note        string           `json:"note,omitempty"`
}

// Reclaimed is what Reclaim forced back onto each track.
type Reclaimed struct {
	App     string           `json:"app"`
	Env     string           `json:"env"`
	Release int64            `json:"release,omitempty"` // the active release, if any
	Tracks  []ReclaimedTrack `json:"tracks"`
}

// Summary is what Reclaim did in one line, the same in every front end
// and in the app.reclaimed event: "reclaimed resizer/production (stable
// v2×3): taken back from "kubectl": deployment resizer-stable
// .spec.replicas", or "…: no field ship manages was held by anyone else".
func (r Reclaimed) Summary() string {
	tracks := make([]string, len(r.Tracks))
	for i, t := range r.Tracks {
		tracks[i] = fmt.Sprintf("%s %s×%d", t.Track, t.Version, t.Replicas)
	}
	s := fmt.Sprintf("reclaimed %s/%s (%s): ", r.App, r.Env, strings.Join(tracks, ", "))
	if lost := r.Lost(); len(lost) > 0 {
		return s + "taken back from " + strings.Join(lost, "; ")
	}
	return s + "no field ship manages was held by anyone else"
}

// Lost lists every field another manager lost, track by track.
func (r Reclaimed) Lost() []string {
	var out []string
	for _, t := range r.Tracks {
		out = append(out, t.Lost...)
	}
	return out
}

// ReclaimedTrack is one track Reclaim applied with force.
type ReclaimedTrack = release.ReclaimedTrack

// Code classifies an engine error for front ends (HTTP status, exit code).
type Code string

const (
	CodeInvalid  Code = "invalid"   // bad request: unknown flag value, bad weight
	CodeNotFound Code = "not_found" // unknown app, env, release or version
	CodeConflict Code = "conflict"  // another release is active
	CodeLocked   Code = "locked"    // the app is locked
	CodeDenied   Code = "forbidden" // the actor may not do this
	CodeInternal Code = "internal"
)

// Error is an engine error with a code and a message fit for the user.
type Error struct {
	Code    Code
	Message string
	Err     error // detail for logs, may be nil
}

func (e *Error) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("%s: %v", e.Message, e.Err)
	}
	return e.Message
}

func (e *Error) Unwrap() error { return e.Err }

// Errorf builds an *Error.
func Errorf(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// CodeOf returns the code of err, CodeInternal when it carries none.
func CodeOf(err error) Code {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return CodeInternal
}
