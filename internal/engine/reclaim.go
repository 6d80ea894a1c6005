package engine

import (
	"context"
	"errors"

	"github.com/shipteam/ship/internal/release"
	"github.com/shipteam/ship/internal/runtime"
	"github.com/shipteam/ship/internal/spec"
)

// Reclaimer is implemented by runtimes where a field ship manages can be
// taken over by someone else (Kubernetes: server-side apply field
// managers). Reclaim is Apply that overwrites such changes; it reports
// which fields other managers lost. The engine never calls it by itself:
// only the reclaim command, which a person runs.
type Reclaimer interface {
	Reclaim(ctx context.Context, app spec.App, env string, track runtime.Track, w runtime.Want) (lost []string, err error)
}

// Reclaim forces what ship records onto every track that runs a version:
// stable, and during a release the canary at the release's current size.
// It is how a person ends a conflict with a hand edit (see applyTrack):
// ship never forces by itself. The event, app.reclaimed, names who lost
// which field; typed like app.scaled, it is an app fact that chat
// announces on its own and, during a release, is linked to it (ReleaseID)
// so it shows in the release's history too. The remembered
// conflicts are cleared so a new hand edit is reported again. Like Scale,
// it is allowed while the app is locked: it changes no version, it puts
// back what ship already records.
func (e *Engine) Reclaim(ctx context.Context, a Actor, req ReclaimRequest) (Reclaimed, error) {
	app, env, err := e.resolve(req.App, req.Env)
	if err != nil {
		return Reclaimed{}, err
	}
	if err := e.authorize(ctx, a, ActReclaim, app.Name, env); err != nil {
		return Reclaimed{}, err
	}
	rc, ok := e.cfg.Runtime.(Reclaimer)
	if !ok {
		return Reclaimed{}, Errorf(CodeInvalid, "reclaim is for runtimes with server-side apply; the local runtime has no hand edits")
	}
	k := appKey{app.Name, env}
	defer e.lockKey(k)()
	act, err := e.cfg.Store.ActiveRelease(ctx, app.Name, env)
	hasActive := err == nil
	if err != nil && !errors.Is(err, release.ErrNotFound) {
		return Reclaimed{}, internal(err, "read active release of %s", k)
	}
	st, err := e.appState(ctx, app, env)
	if err != nil {
		return Reclaimed{}, internal(err, "read state of %s", k)
	}
	wants := reclaimWants(st, act, hasActive)
	if len(wants) == 0 {
		return Reclaimed{}, Errorf(CodeNotFound, "%s runs nothing yet: there is nothing to reclaim", k)
	}
	res := Reclaimed{App: app.Name, Env: env}
	if hasActive {
		res.Release = act.ID
	}
	var rerr error
	for _, tw := range wants {
		lost, err := rc.Reclaim(ctx, app, env, tw.track, tw.want)
		if err != nil {
			rerr = internal(err, "reclaim %s %s", k, tw.track)
			break
		}
		e.noteApplied(k, tw.track, tw.want) // also forgets the track's conflict
		e.forgetReported(k, tw.track)       // the same hand edit again is news
		if lost == nil {
			lost = []string{} // [] in JSON: nothing lost, for scripts
		}
		res.Tracks = append(res.Tracks, ReclaimedTrack{Track: string(tw.track), Version: tw.want.Version, Replicas: tw.want.Replicas, Lost: lost})
	}
	if hasActive {
		// A hand edit made after this one is news again.
		l := e.liveOf(act)
		l.mu.Lock()
		clear(l.conflicts)
		l.mu.Unlock()
	}
	if len(res.Tracks) > 0 {
		if err := e.recordReclaim(ctx, a, k, act, hasActive, res); err != nil {
			rerr = errors.Join(rerr, err)
		}
	}
	if !hasActive {
		e.markIdle(k)
	}
	e.wake()
	return res, rerr
}

type trackWant struct {
	track runtime.Track
	want  runtime.Want
}

// reclaimWants is what the driver (or the idle reconciler) applies to each
// track that runs a version now; a canary grown ahead of its next step is
// not reclaimed larger than its current step's share (the driver grows it
// again).
func reclaimWants(st release.AppState, act release.Release, hasActive bool) []trackWant {
	var out []trackWant
	stable := st.Stable
	if hasActive && stableMoving(act) {
		stable = act.Version
	}
	if stable != "" {
		out = append(out, trackWant{runtime.Stable, runtime.Want{Version: stable, Replicas: st.Replicas}})
	}
	if hasActive && act.Strategy == release.StrategyCanary && len(act.Steps) > 0 {
		w := act.Weight
		if act.State == release.Pending {
			w = act.Steps[0]
		}
		out = append(out, trackWant{runtime.Canary, runtime.Want{Version: act.Version, Replicas: canaryReplicas(st.Replicas, w)}})
	}
	return out
}

func (e *Engine) recordReclaim(ctx context.Context, a Actor, k appKey, act release.Release, hasActive bool, res Reclaimed) error {
	lost := res.Lost()
	msg := actorDesc(a.Name, a.Source) + " " + res.Summary()
	d := &release.EventData{Tracks: res.Tracks, Lost: lost, Source: a.Source}
	ev := release.Event{App: k.app, Env: k.env, Type: release.EvReclaimed, Actor: a.Name, Time: e.now(), Message: msg, Data: d}
	if hasActive {
		ev.ReleaseID = act.ID
	}
	evs, err := e.cfg.Store.AddEvents(ctx, nil, ev)
	if err != nil {
		return internal(err, "record reclaim of %s", k)
	}
	e.publish(evs)
	e.log.Info("reclaimed", "app", k.app, "env", k.env, "actor", a.Name, "lost", lost)
	return nil
}
