package store

import (
	"context"
	"database/sql"
	"errors"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/shipteam/ship/internal/release"
)

func open(t *testing.T, path string) *Store {
	t.Helper()
	s, err := Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

var t0 = time.Date(2026, 11, 25, 12, 0, 0, 123456789, time.UTC)

func newRelease(app, version string) release.Release {
	return release.Release{App: app, Env: "production", Kind: release.KindDeploy, Version: version, FromVersion: "v1",
		Strategy: "canary", Steps: []release.Weight{10, 1000, 10000}, State: release.Pending, Actor: "alice", Source: release.SourceSlack,
		Created: t0, Updated: t0, StepStarted: t0}
}

func TestMigrationsRunOnceAndReopenKeepsData(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ship.db")
	ctx := context.Background()
	s := open(t, path)
	if v, err := s.SchemaVersion(ctx); err != nil || v != len(migrations) {
		t.Fatalf("schema version %d %v", v, err)
	}
	for _, db := range []*sql.DB{s.w, s.r} {
		var mode string
		var fk, timeout int
		if err := db.QueryRow(`PRAGMA journal_mode`).Scan(&mode); err != nil || mode != "wal" {
			t.Fatalf("journal_mode %q %v", mode, err)
		}
		if err := db.QueryRow(`PRAGMA foreign_keys`).Scan(&fk); err != nil || fk != 1 {
			t.Fatalf("foreign_keys %d %v", fk, err)
		}
		if err := db.QueryRow(`PRAGMA busy_timeout`).Scan(&timeout); err != nil || timeout < 1000 {
			t.Fatalf("busy_timeout %d %v", timeout, err)
		}
	}
	if _, err := s.AddEvents(ctx, nil, release.Event{ReleaseID: 4242, App: "a", Env: "e", Type: "x", Time: t0}); err == nil {
		t.Fatal("an event for a release that does not exist was stored")
	}
	r, _, err := s.CreateRelease(ctx, newRelease("resizer", "v2"), &AppState{App: "resizer", Env: "production", Stable: "v1", Replicas: 3, Updated: t0},
		release.Event{App: "resizer", Env: "production", Type: "release.created", Actor: "alice", Time: t0, Data: &release.EventData{Steps: []release.Weight{100, 200}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.PutToken(ctx, "admin", "admin", []byte{1, 2, 3}); err != nil {
		t.Fatal(err)
	}
	s.Close()

	s = open(t, path)
	if v, _ := s.SchemaVersion(ctx); v != len(migrations) {
		t.Fatalf("schema version after reopen %d", v)
	}
	got, err := s.GetRelease(ctx, r.ID)
	if err != nil {
		t.Fatal(err)
	}
	want := newRelease("resizer", "v2")
	want.ID = r.ID
	if got.Version != want.Version || got.Steps[0] != 10 || !got.Created.Equal(t0) || !got.StepStarted.Equal(t0) ||
		got.State != release.Pending || got.Source != release.SourceSlack || got.FromVersion != "v1" {
		t.Fatalf("release after reopen %+v", got)
	}
	st, err := s.AppState(ctx, "resizer", "production")
	if err != nil || st.Stable != "v1" || st.Replicas != 3 {
		t.Fatalf("app state %+v %v", st, err)
	}
	evs, err := s.Events(ctx, EventQuery{ReleaseID: r.ID})
	if err != nil || len(evs) != 1 || evs[0].ReleaseID != r.ID || evs[0].Data == nil || len(evs[0].Data.Steps) != 2 {
		t.Fatalf("events %+v %v", evs, err)
	}
	if o, err := s.TokenOwner(ctx, []byte{1, 2, 3}); err != nil || o.Name != "admin" || o.Role != "admin" {
		t.Fatalf("token %+v %v", o, err)
	}
}

func TestNewerSchemaIsRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ship.db")
	s := open(t, path)
	if _, err := s.w.Exec(`INSERT INTO schema_version(version) VALUES (999)`); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if _, err := Open(context.Background(), path); err == nil {
		t.Fatal("opened a database from a newer ship")
	}
}

func TestOneActiveReleasePerAppAndEnv(t *testing.T) {
	ctx := context.Background()
	s := open(t, filepath.Join(t.TempDir(), "ship.db"))
	r, _, err := s.CreateRelease(ctx, newRelease("resizer", "v2"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.CreateRelease(ctx, newRelease("resizer", "v3"), nil); !errors.Is(err, ErrConflict) {
		t.Fatalf("second active release: %v", err)
	}
	other := newRelease("resizer", "v3")
	other.Env = "staging"
	if _, _, err := s.CreateRelease(ctx, other, nil); err != nil {
		t.Fatalf("other env: %v", err)
	}
	act, err := s.ActiveRelease(ctx, "resizer", "production")
	if err != nil || act.ID != r.ID {
		t.Fatalf("active %+v %v", act, err)
	}
	r.State, r.Reason = release.Aborted, "stop"
	if _, err := s.UpdateRelease(ctx, r, &AppState{App: "resizer", Env: "production", Stable: "v1", Updated: t0},
		release.Event{ReleaseID: r.ID, App: "resizer", Env: "production", Type: "release.aborted", Time: t0}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ActiveRelease(ctx, "resizer", "production"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("active after abort: %v", err)
	}
	stale := r
	stale.State = release.Progressing
	if _, err := s.UpdateRelease(ctx, stale, nil); !errors.Is(err, ErrEnded) {
		t.Fatalf("reviving an ended release: %v", err)
	}
	if got, _ := s.GetRelease(ctx, r.ID); got.State != release.Aborted {
		t.Fatalf("ended release changed to %s", got.State)
	}
	if _, _, err := s.CreateRelease(ctx, newRelease("resizer", "v3"), nil); err != nil {
		t.Fatalf("new release after abort: %v", err)
	}
	all, _ := s.ActiveReleases(ctx)
	if len(all) != 2 {
		t.Fatalf("%d active releases, want 2", len(all))
	}
	missing := r
	missing.ID = 999
	if _, err := s.UpdateRelease(ctx, missing, nil); !errors.Is(err, ErrNotFound) {
		t.Fatalf("update missing: %v", err)
	}
}

func TestHistoryIsNewestFirstAndLastSucceededSkipsAVersion(t *testing.T) {
	ctx := context.Background()
	s := open(t, filepath.Join(t.TempDir(), "ship.db"))
	for _, v := range []string{"v1", "v2", "v3"} {
		r, _, err := s.CreateRelease(ctx, newRelease("resizer", v), nil)
		if err != nil {
			t.Fatal(err)
		}
		r.State = release.Succeeded
		if v == "v2" {
			r.State = release.Failed
		}
		if _, err := s.UpdateRelease(ctx, r, nil); err != nil { // the last write of each
			t.Fatal(err)
		}
	}
	rs, err := s.Releases(ctx, "resizer", "production", 2)
	if err != nil || len(rs) != 2 || rs[0].Version != "v3" || rs[1].Version != "v2" {
		t.Fatalf("history %+v %v", rs, err)
	}
	prev, err := s.LastSucceeded(ctx, "resizer", "production", "", "v3")
	if err != nil || prev.Version != "v1" {
		t.Fatalf("last succeeded except v3: %+v %v", prev, err)
	}
	if _, err := s.LastSucceeded(ctx, "resizer", "production", "v2", ""); !errors.Is(err, ErrNotFound) {
		t.Fatalf("v2 failed, yet found: %v", err)
	}
	latest, err := s.LatestRelease(ctx, "resizer", "production")
	if err != nil || latest.Version != "v3" {
		t.Fatalf("latest %+v %v", latest, err)
	}
	if _, err := s.LatestRelease(ctx, "nope", "production"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("latest of unknown: %v", err)
	}
}

func TestEventsFilterAndPageByAfterID(t *testing.T) {
	ctx := context.Background()
	s := open(t, filepath.Join(t.TempDir(), "ship.db"))
	var evs []release.Event
	for i := 0; i < 10; i++ {
		env := "production"
		if i%2 == 1 {
			env = "staging"
		}
		evs = append(evs, release.Event{App: "resizer", Env: env, Type: "app.scaled", Step: i, Time: t0.Add(time.Duration(i) * time.Second)})
	}
	stored, err := s.AddEvents(ctx, &AppState{App: "resizer", Env: "production", Replicas: 4, Updated: t0}, evs...)
	if err != nil || len(stored) != 10 {
		t.Fatal(err)
	}
	page, err := s.Events(ctx, EventQuery{App: "resizer", Env: "production", Limit: 2})
	if err != nil || len(page) != 2 || page[0].Step != 0 || page[1].Step != 2 {
		t.Fatalf("page 1 %+v %v", page, err)
	}
	page, _ = s.Events(ctx, EventQuery{App: "resizer", Env: "production", AfterID: page[1].ID})
	if len(page) != 3 || page[0].Step != 4 {
		t.Fatalf("page 2 %+v", page)
	}
	if all, _ := s.Events(ctx, EventQuery{Env: "staging", App: "resizer"}); len(all) != 5 || !all[4].Time.Equal(t0.Add(9*time.Second)) {
		t.Fatalf("all events %d", len(all))
	}
	r, _, err := s.CreateRelease(ctx, newRelease("resizer", "v2"), nil,
		release.Event{App: "resizer", Env: "production", Type: "release.analysis", Message: "wait", Time: t0},
		release.Event{App: "resizer", Env: "production", Type: "release.analysis", Message: "pass", Time: t0},
		release.Event{App: "resizer", Env: "production", Type: "release.step", Message: "step", Time: t0})
	if err != nil {
		t.Fatal(err)
	}
	if last, err := s.LastEvent(ctx, r.ID, "release.analysis"); err != nil || last.Message != "pass" {
		t.Fatalf("last analysis %+v %v", last, err)
	}
	if _, err := s.LastEvent(ctx, r.ID, "release.paused"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("missing type: %v", err)
	}
	if st, _ := s.AppState(ctx, "resizer", "production"); st.Replicas != 4 {
		t.Fatalf("app state %+v", st)
	}
}

func TestLocks(t *testing.T) {
	ctx := context.Background()
	s := open(t, filepath.Join(t.TempDir(), "ship.db"))
	if _, err := s.GetLock(ctx, "resizer", "production"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("lock before: %v", err)
	}
	ev := release.Event{App: "resizer", Env: "production", Type: "app.locked", Time: t0}
	if _, err := s.PutLock(ctx, release.Lock{App: "resizer", Env: "production", Reason: "migration", Actor: "bob", Since: t0}, ev); err != nil {
		t.Fatal(err)
	}
	if _, err := s.PutLock(ctx, release.Lock{App: "resizer", Env: "production", Reason: "still migrating", Actor: "bob", Since: t0}, ev); err != nil {
		t.Fatal(err)
	}
	l, err := s.GetLock(ctx, "resizer", "production")
	if err != nil || l.Reason != "still migrating" || l.Actor != "bob" || !l.Since.Equal(t0) {
		t.Fatalf("lock %+v %v", l, err)
	}
	ev.Type = "app.unlocked"
	if _, err := s.DeleteLock(ctx, "resizer", "production", ev); err != nil {
		t.Fatal(err)
	}
	if _, err := s.DeleteLock(ctx, "resizer", "production", ev); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second unlock: %v", err)
	}
	if evs, _ := s.Events(ctx, EventQuery{}); len(evs) != 3 {
		t.Fatalf("%d events, want 3 (a refused unlock records nothing)", len(evs))
	}
}

func TestTokens(t *testing.T) {
	ctx := context.Background()
	s := open(t, filepath.Join(t.TempDir(), "ship.db"))
	if n, err := s.CountTokens(ctx); err != nil || n != 0 {
		t.Fatalf("count %d %v", n, err)
	}
	if _, err := s.TokenOwner(ctx, []byte("x")); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown token: %v", err)
	}
	if err := s.PutToken(ctx, "alice", "deployer", []byte("h1")); err != nil {
		t.Fatal(err)
	}
	if err := s.PutToken(ctx, "bob", "viewer", []byte("h2")); err != nil {
		t.Fatal(err)
	}
	if err := s.PutToken(ctx, "", "viewer", []byte("h3")); err == nil {
		t.Fatal("empty name accepted")
	}
	if err := s.PutToken(ctx, "carol", "", []byte("h3")); err == nil {
		t.Fatal("empty role accepted")
	}
	if n, _ := s.CountTokens(ctx); n != 2 {
		t.Fatalf("count %d", n)
	}
	if o, _ := s.TokenOwner(ctx, []byte("h2")); o.Name != "bob" || o.Role != "viewer" {
		t.Fatalf("h2 is %+v", o)
	}
}

func TestConcurrentReadersAndAWriter(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "ship.db")
	s := open(t, path)
	other := open(t, path) // a second handle, as a CLI reading the file would
	stop := make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan error, 100)
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := other.Events(ctx, EventQuery{Limit: 50}); err != nil {
					errs <- err
					return
				}
				if _, err := s.ActiveReleases(ctx); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	for i := 0; i < 200; i++ {
		if _, err := s.AddEvents(ctx, nil, release.Event{App: "a", Env: "e", Type: "app.scaled", Time: t0}); err != nil {
			t.Fatal(err)
		}
	}
	close(stop)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if evs, _ := other.Events(ctx, EventQuery{}); len(evs) != 200 {
		t.Fatalf("%d events", len(evs))
	}
}
