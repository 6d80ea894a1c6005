package release

import (
	"errors"
	"time"
)

// Strategy is how a release moves traffic: canary steps, or rolling.
type Strategy string

const (
	StrategyCanary  Strategy = "canary"
	StrategyRolling Strategy = "rolling"
)

// AppState is what an app in one environment should run when no release is
// moving it: the engine re-applies it after a restart.
type AppState struct {
	App      string    `json:"app"`
	Env      string    `json:"env"`
	Stable   string    `json:"stable"`   // stable version, "" before the first deploy succeeds
	Replicas int       `json:"replicas"` // stable instances (0 = stopped)
	Canary   string    `json:"canary"`   // canary version while a release runs one
	Weight   Weight    `json:"weight"`   // canary share in force
	Updated  time.Time `json:"updated"`
}

// EventQuery selects events; zero fields do not filter. Events come oldest
// first (ascending ID) so a reader can page with AfterID.
type EventQuery struct {
	App       string `json:"app,omitempty"`
	Env       string `json:"env,omitempty"`
	ReleaseID int64  `json:"releaseId,omitempty"`
	AfterID   int64  `json:"afterId,omitempty"`
	Limit     int    `json:"limit,omitempty"` // 0 = 1000
}

// Errors a store of releases returns, for callers to branch on.
var (
	// ErrNotFound: the asked-for row does not exist.
	ErrNotFound = errors.New("not found")
	// ErrConflict: the app already has an active release in that environment.
	ErrConflict = errors.New("an active release exists")
	// ErrEnded: the release is already in a terminal state.
	ErrEnded = errors.New("release already ended")
)
