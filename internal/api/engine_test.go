package api

import (
	"context"
	"errors"
	"fmt"

	"github.com/shipteam/ship/internal/engine"
	"github.com/shipteam/ship/internal/release"
)

// The API's tests run against the real engine (internal/enginetest),
// watched (enginetest.Watch) to know when a stream is open; the decorator
// here makes it fail on purpose.

// failing is the real engine whose Deploy fails with err: the one way to
// get an internal error (a broken store) out of it on demand.
type failing struct {
	*engine.Engine
	err error
}

func (f failing) Deploy(context.Context, engine.Actor, engine.DeployRequest) (release.Release, error) {
	return release.Release{}, f.err
}

// fakeTokens maps token hashes to users (role maintainer, as tokens made
// before roles).
type fakeTokens map[string]string

func (t fakeTokens) TokenOwner(_ context.Context, hash []byte) (TokenOwner, error) {
	if u, ok := t[string(hash)]; ok {
		return TokenOwner{Name: u, Role: "maintainer"}, nil
	}
	return TokenOwner{}, fmt.Errorf("lookup: %w", ErrUnknownToken)
}

var errBoom = errors.New("disk on fire at /secret/path")
