// Package runtime holds the two ports through which the engine makes a
// release real: a Runtime runs instances of a version per track, a Router
// splits an app's traffic between the tracks. Adapters live in sub-packages
// (runtime/local: processes on loopback; runtime/kube: Kubernetes). Every
// method is idempotent: the engine may repeat any call after a crash.
package runtime

import (
	"context"
	"errors"
	"time"

	"github.com/shipteam/ship/internal/release"
	"github.com/shipteam/ship/internal/spec"
)

// Track is one of the two sets of instances a release moves between.
type Track string

const (
	Stable Track = "stable"
	Canary Track = "canary"
)

// Tracks lists the tracks in a fixed order.
var Tracks = []Track{Stable, Canary}

// Want is what one track should run.
type Want struct {
	Version  string
	Replicas int
}

// TrackStatus is what one track actually runs.
type TrackStatus struct {
	Track    Track
	Version  string // "" when the track has no instances
	Desired  int
	Ready    int // instances answering their health path and in the router
	Restarts int // crash restarts since the track last changed version
	// Failed is set when the version cannot become ready (exits at once,
	// crash loop, never healthy within its start timeout, unschedulable...).
	Failed bool
	Reason string // why Failed, in the runtime's own words
	Note   string // non-fatal remark, e.g. "weight rounded to 10% by replica counts"
	// Drift says the track does not run what ship applied for Version: a
	// field ship sets was changed outside ship (on Kubernetes: the image,
	// e.g. `kubectl set image`), and by whom when the runtime can tell.
	// "" when it runs what ship applied; always "" on the local runtime,
	// which nobody else can change.
	Drift string
}

// ErrConflict is wrapped by an Apply that was refused because a field the
// runtime manages was changed outside ship (on Kubernetes: a server-side
// apply conflict with another field manager). The change is left in place;
// the error names the field and who changed it.
var ErrConflict = errors.New("a field ship manages was changed by someone else; ship does not overwrite it")

// Runtime runs instances of an app's versions.
type Runtime interface {
	// Apply makes track run w.Replicas instances of w.Version. It returns
	// once the change is under way; Status reports progress. Changing the
	// version of a track replaces instances without a gap: new ones must be
	// ready before old ones stop taking traffic.
	Apply(ctx context.Context, app spec.App, env string, track Track, w Want) error
	// Status reports each track of the app in env (both keys always present).
	Status(ctx context.Context, app spec.App, env string) (map[Track]TrackStatus, error)
	// Remove stops every instance of track, draining them first.
	//
	// ctx owns the deadline: Remove gives up when ctx ends (returning an
	// error that wraps ctx.Err(), and at once when ctx has already ended)
	// and sets no deadline of its own, shorter or longer. A caller that must
	// not wait for a drain gives Remove a context of its own: the engine
	// runs each Remove in the background with a context detached from the
	// step that asked and its own deadline (removeTimeout in
	// internal/engine). What an adapter has started (a Kubernetes DELETE,
	// a drain with its stop grace) may finish after ctx ends; calling
	// Remove again is harmless.
	Remove(ctx context.Context, app spec.App, env string, track Track) error
}

// Router splits an app's traffic between its stable and canary tracks.
type Router interface {
	// SetWeight sends w of the app's requests to the canary track and the
	// rest to stable, without dropping connections.
	SetWeight(ctx context.Context, app spec.App, env string, w release.Weight) error
	// Weight reports the canary's share in force (a router may round what
	// was set: replica ratios) and the address users connect to (host:port
	// or URL).
	Weight(ctx context.Context, app spec.App, env string) (w release.Weight, endpoint string, err error)
}

// LogLine is one line an instance wrote to stdout or stderr.
type LogLine struct {
	Time     time.Time `json:"time"`
	Instance string    `json:"instance"` // e.g. "stable-0"
	Version  string    `json:"version"`
	Stream   string    `json:"stream"` // stdout | stderr | ship (lifecycle notes)
	Text     string    `json:"text"`
}

// LogReader is implemented by runtimes that keep recent output per instance.
type LogReader interface {
	// Logs returns up to n recent lines of the app's instances in env,
	// oldest first; version "" means every version.
	Logs(ctx context.Context, app spec.App, env, version string, n int) ([]LogLine, error)
}
