package slack

import (
	"context"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shipteam/ship/internal/engine"
	"github.com/shipteam/ship/internal/eventually"
)

// gatedEngine counts Status calls and holds each until the gate opens.
type gatedEngine struct {
	Engine
	te    *testEngine
	calls atomic.Int64
	gate  chan struct{}
}

func (g *gatedEngine) Status(ctx context.Context, a engine.Actor, app, env string) (engine.AppStatus, error) {
	g.calls.Add(1)
	select {
	case <-g.gate:
	case <-ctx.Done():
		return engine.AppStatus{}, ctx.Err()
	}
	return g.Engine.Status(ctx, a, app, env)
}

func newGatedBot(t *testing.T) (*Bot, *gatedEngine) {
	t.Helper()
	te := newTestEngine(t, true) // no policy: everyone may do everything
	g := &gatedEngine{Engine: te.watched, te: te, gate: make(chan struct{})}
	b, err := New(Config{SigningSecret: testSecret}, g, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	return b, g
}

var reader = chatUser{id: "U1", name: "reader"}.actor()

func joiners(b *Bot, app, env string) int {
	b.reads.mu.Lock()
	defer b.reads.mu.Unlock()
	if f, ok := b.reads.inflight[[3]string{reader.ID, app, env}]; ok {
		return f.joiners
	}
	return -1
}

func TestConcurrentStatusReadsShareOneEngineCall(t *testing.T) {
	b, g := newGatedBot(t)
	ctx := context.Background()
	const n = 50
	var wg sync.WaitGroup
	results := make([]engine.AppStatus, n)
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() { results[i], errs[i] = b.statusOf(ctx, reader, "resizer", "") })
	}
	eventually.True(t, 10*time.Second, "49 readers joining the first", func() bool { return joiners(b, "resizer", "") == n-1 })
	close(g.gate)
	wg.Wait()
	if c := g.calls.Load(); c != 1 {
		t.Fatalf("%d engine Status calls for %d concurrent identical reads, want 1", c, n)
	}
	for i := range n {
		if errs[i] != nil || results[i].Env != "production" || results[i].Stable.Version != "v1" {
			t.Fatalf("reader %d: %+v, %v", i, results[i], errs[i])
		}
	}
	// Nothing is cached: the next read asks the engine again.
	if _, err := b.statusOf(ctx, reader, "resizer", ""); err != nil {
		t.Fatal(err)
	}
	if c := g.calls.Load(); c != 2 {
		t.Fatalf("a later read made %d engine calls in all, want 2 (no cached answers)", c)
	}
	// Different questions are not shared.
	if _, err := b.statusOf(ctx, reader, "resizer", "production"); err != nil {
		t.Fatal(err)
	}
	if c := g.calls.Load(); c != 3 {
		t.Fatalf("%d engine calls, want 3", c)
	}
}

func TestStatusReaderOutlivesALeaderThatGaveUp(t *testing.T) {
	b, g := newGatedBot(t)
	lctx, cancelLeader := context.WithCancel(context.Background())
	leaderErr := make(chan error, 1)
	go func() { _, err := b.statusOf(lctx, reader, "resizer", ""); leaderErr <- err }()
	eventually.True(t, 10*time.Second, "the leader's engine call", func() bool { return g.calls.Load() == 1 })
	got := make(chan error, 1)
	var st engine.AppStatus
	go func() {
		var err error
		st, err = b.statusOf(context.Background(), reader, "resizer", "")
		got <- err
	}()
	eventually.True(t, 10*time.Second, "the follower joining", func() bool { return joiners(b, "resizer", "") == 1 })
	cancelLeader()
	if err := <-leaderErr; err == nil {
		t.Fatal("cancelled leader got an answer")
	}
	close(g.gate)
	if err := <-got; err != nil || st.Env != "production" {
		t.Fatalf("follower: %+v, %v; want its own answer after the leader gave up", st, err)
	}
	if c := g.calls.Load(); c != 2 {
		t.Fatalf("%d engine calls, want 2", c)
	}
}

// A write command without --env costs no status read: the engine
// resolves the environment and decides in one call (Allowed).
func TestWriteCommandsWithoutEnvMakeNoStatusRead(t *testing.T) {
	b, g := newGatedBot(t)
	m := b.handleSlash(context.Background(), slashRequest{Command: "/ship", Text: "scale resizer 2", UserID: "U1", UserName: "reader"})
	if !strings.Contains(m.Text, "On it: scaling resizer in production to 2") {
		t.Fatalf("reply %+v", m)
	}
	if c := g.calls.Load(); c != 0 {
		t.Fatalf("%d engine Status calls for a write command, want 0", c)
	}
	eventually.True(t, 10*time.Second, "the scale", func() bool { return len(g.te.calls(t)) == 1 })
	if got := g.te.calls(t)[0]; got != "scale resizer production slack:U1 (reader)" {
		t.Fatalf("engine call %q", got)
	}
}

// Two users asking the same status at once are not joined: whether each
// may read is the engine's answer to each.
func TestStatusReadsOfDifferentUsersAreNotShared(t *testing.T) {
	b, g := newGatedBot(t)
	other := chatUser{id: "U2"}.actor()
	done := make(chan error, 2)
	go func() { _, err := b.statusOf(context.Background(), reader, "resizer", ""); done <- err }()
	go func() { _, err := b.statusOf(context.Background(), other, "resizer", ""); done <- err }()
	eventually.True(t, 10*time.Second, "two engine calls", func() bool { return g.calls.Load() == 2 })
	close(g.gate)
	for range 2 {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
}
