package slack

import (
	"context"

	"github.com/shipteam/ship/internal/engine"
	"github.com/shipteam/ship/internal/release"
)

// Engine is the part of ship's rollout engine the chat front end calls.
// *engine.Engine satisfies it; tests use a real one (internal/enginetest).
type Engine interface {
	Deploy(ctx context.Context, a engine.Actor, req engine.DeployRequest) (release.Release, error)
	Promote(ctx context.Context, a engine.Actor, req engine.PromoteRequest) (release.Release, error)
	Abort(ctx context.Context, a engine.Actor, req engine.AbortRequest) (release.Release, error)
	Rollback(ctx context.Context, a engine.Actor, req engine.RollbackRequest) (release.Release, error)
	Scale(ctx context.Context, a engine.Actor, req engine.ScaleRequest) error
	Reclaim(ctx context.Context, a engine.Actor, req engine.ReclaimRequest) (engine.Reclaimed, error)
	Lock(ctx context.Context, a engine.Actor, req engine.LockRequest) error
	Unlock(ctx context.Context, a engine.Actor, req engine.UnlockRequest) error
	Status(ctx context.Context, a engine.Actor, app, env string) (engine.AppStatus, error)
	List(ctx context.Context, a engine.Actor) ([]engine.AppStatus, error)
	History(ctx context.Context, a engine.Actor, app, env string, limit int) ([]release.Release, error)
	Release(ctx context.Context, a engine.Actor, id int64) (release.Release, error)
	// Allowed resolves env ("" = the app's first) and says whether a may
	// do act there, so a refusal is told at once instead of after "on it".
	Allowed(ctx context.Context, a engine.Actor, act engine.Action, app, env string) (string, error)
	// Subscribe streams every event; the engine drops events for a
	// subscriber that falls behind rather than wait for it.
	Subscribe() (<-chan release.Event, func())
}
