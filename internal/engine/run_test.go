package engine_test

import (
	"context"
	"testing"
	"time"

	"github.com/shipteam/ship/internal/engine"
	"github.com/shipteam/ship/internal/enginetest"
	"github.com/shipteam/ship/internal/eventually"
	"github.com/shipteam/ship/internal/release"
	"github.com/shipteam/ship/internal/runtime"
	"github.com/shipteam/ship/internal/spec"
)

// A release that ends inside its own step (analysis aborted it) leaves the
// app to the idle reconciler while the step is still running; the running
// engine must come back for it at the next tick, not after the 5 s it
// sleeps when nothing is due: the canary's instances go at once.
func TestARunningEngineRemovesAnAbortedCanarysInstancesAtOnce(t *testing.T) {
	// A router slow to take the weight back keeps the aborting step busy
	// after it has marked the app for the reconciler.
	env := enginetest.New(t, enginetest.Options{Tick: 100 * time.Millisecond, Traffic: 200,
		Router: func(r runtime.Router) runtime.Router { return slowToZero{r} }})
	env.StableAt("resizer", "v1")
	env.FailRequests("v2", 50)
	r, err := env.Engine.Deploy(context.Background(), enginetest.Admin, engine.DeployRequest{App: "resizer", Version: "v2"})
	if err != nil {
		t.Fatal(err)
	}
	aborted := env.WaitState(r.ID, release.Aborted)
	eventually.True(t, 2*time.Second, "the aborted canary's instances removed", func() bool {
		return env.Runtime.Get("resizer", "production", runtime.Canary).Version == ""
	})
	if since := time.Since(aborted.Updated); since > 2*time.Second {
		t.Fatalf("canary removed %s after the abort", since)
	}
}

// slowToZero takes 300 ms to set a weight of 0.
type slowToZero struct{ runtime.Router }

func (s slowToZero) SetWeight(ctx context.Context, app spec.App, env string, w release.Weight) error {
	if w == 0 {
		select {
		case <-time.After(300 * time.Millisecond):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return s.Router.SetWeight(ctx, app, env, w)
}
