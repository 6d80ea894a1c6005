package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/shipteam/ship/internal/release"
)

const releaseCols = `id, app, env, kind, version, from_version, strategy, steps, hold_at, state, step, weight, reason, actor, source, created, updated, step_started`

// CreateRelease inserts r (its ID is assigned), the app state st when not
// nil, and evs in one transaction; each event gets the new release's ID. It
// returns ErrConflict when r is active and the app already has an active
// release in r.Env.
func (s *Store) CreateRelease(ctx context.Context, r release.Release, st *AppState, evs ...release.Event) (release.Release, []release.Event, error) {
	steps, err := json.Marshal(nonNil(r.Steps))
	if err != nil {
		return r, nil, err
	}
	var out []release.Event
	err = s.tx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `INSERT INTO releases(app, env, kind, version, from_version, strategy, steps, hold_at, state, active, step, weight, reason, actor, source, created, updated, step_started)
			VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)`,
			r.App, r.Env, r.Kind, r.Version, r.FromVersion, r.Strategy, string(steps), r.HoldAt, r.State, boolInt(r.Active()),
			r.Step, r.Weight, r.Reason, r.Actor, r.Source, nanos(r.Created), nanos(r.Updated), nanos(r.StepStarted))
		if isUniqueViolation(err) {
			return ErrConflict
		}
		if err != nil {
			return err
		}
		if r.ID, err = res.LastInsertId(); err != nil {
			return err
		}
		if st != nil {
			if err := putAppState(ctx, tx, *st); err != nil {
				return err
			}
		}
		for _, ev := range evs {
			ev.ReleaseID = r.ID
			if ev, err = insertEvent(ctx, tx, ev); err != nil {
				return err
			}
			out = append(out, ev)
		}
		return nil
	})
	if err != nil {
		return r, nil, fmt.Errorf("create release of %s/%s: %w", r.App, r.Env, err)
	}
	return r, out, nil
}

// UpdateRelease returns ErrEnded for a release already in a terminal
// state: an ended release never changes again, so a writer working from a
// stale copy (a second engine, a step racing a command) cannot revive it.

// UpdateRelease writes r (found by ID), the app state st when not nil, and
// evs in one transaction, so a transition and its record never part.
func (s *Store) UpdateRelease(ctx context.Context, r release.Release, st *AppState, evs ...release.Event) ([]release.Event, error) {
	steps, err := json.Marshal(nonNil(r.Steps))
	if err != nil {
		return nil, err
	}
	var out []release.Event
	err = s.tx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE releases SET kind=?, version=?, from_version=?, strategy=?, steps=?, hold_at=?, state=?, active=?, step=?, weight=?, reason=?, actor=?, source=?, updated=?, step_started=? WHERE id=? AND active=1`,
			r.Kind, r.Version, r.FromVersion, r.Strategy, string(steps), r.HoldAt, r.State, boolInt(r.Active()),
			r.Step, r.Weight, r.Reason, r.Actor, r.Source, nanos(r.Updated), nanos(r.StepStarted), r.ID)
		if isUniqueViolation(err) {
			return ErrConflict
		}
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			var one int
			if err := tx.QueryRowContext(ctx, `SELECT 1 FROM releases WHERE id=?`, r.ID).Scan(&one); errors.Is(err, sql.ErrNoRows) {
				return ErrNotFound
			}
			return ErrEnded
		}
		if st != nil {
			if err := putAppState(ctx, tx, *st); err != nil {
				return err
			}
		}
		out, err = insertEvents(ctx, tx, evs)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("update release #%d: %w", r.ID, err)
	}
	return out, nil
}

// GetRelease returns the release with id.
func (s *Store) GetRelease(ctx context.Context, id int64) (release.Release, error) {
	row := s.queryRow(ctx, `SELECT `+releaseCols+` FROM releases WHERE id=?`, id)
	r, err := scanRelease(row)
	if err != nil {
		return r, fmt.Errorf("release #%d: %w", id, err)
	}
	return r, nil
}

// ActiveRelease returns the active release of app in env, or ErrNotFound.
func (s *Store) ActiveRelease(ctx context.Context, app, env string) (release.Release, error) {
	row := s.queryRow(ctx, `SELECT `+releaseCols+` FROM releases WHERE app=? AND env=? AND active=1`, app, env)
	r, err := scanRelease(row)
	if err != nil {
		return r, fmt.Errorf("active release of %s/%s: %w", app, env, err)
	}
	return r, nil
}

// ActiveReleases returns every active release, oldest first.
func (s *Store) ActiveReleases(ctx context.Context) ([]release.Release, error) {
	return s.queryReleases(ctx, `SELECT `+releaseCols+` FROM releases WHERE active=1 ORDER BY id`)
}

// Releases returns the releases of app in env, newest first; limit <= 0
// means 100.
func (s *Store) Releases(ctx context.Context, app, env string, limit int) ([]release.Release, error) {
	if limit <= 0 {
		limit = 100
	}
	return s.queryReleases(ctx, `SELECT `+releaseCols+` FROM releases WHERE app=? AND env=? ORDER BY id DESC LIMIT ?`, app, env, limit)
}

// LatestRelease returns the newest release of app in env, or ErrNotFound.
func (s *Store) LatestRelease(ctx context.Context, app, env string) (release.Release, error) {
	row := s.queryRow(ctx, `SELECT `+releaseCols+` FROM releases WHERE app=? AND env=? ORDER BY id DESC LIMIT 1`, app, env)
	r, err := scanRelease(row)
	if err != nil {
		return r, fmt.Errorf("latest release of %s/%s: %w", app, env, err)
	}
	return r, nil
}

// LastSucceeded returns the newest succeeded release of app in env whose
// version is not exceptVersion (when version is "") or is version (when
// set), or ErrNotFound.
func (s *Store) LastSucceeded(ctx context.Context, app, env, version, exceptVersion string) (release.Release, error) {
	q := `SELECT ` + releaseCols + ` FROM releases WHERE app=? AND env=? AND state=?`
	args := []any{app, env, release.Succeeded}
	if version != "" {
		q += ` AND version=?`
		args = append(args, version)
	} else if exceptVersion != "" {
		q += ` AND version<>?`
		args = append(args, exceptVersion)
	}
	q += ` ORDER BY id DESC LIMIT 1`
	r, err := scanRelease(s.queryRow(ctx, q, args...))
	if err != nil {
		return r, fmt.Errorf("last succeeded release of %s/%s: %w", app, env, err)
	}
	return r, nil
}

func (s *Store) queryReleases(ctx context.Context, q string, args ...any) ([]release.Release, error) {
	rows, err := s.query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("query releases: %w", err)
	}
	defer rows.Close()
	var out []release.Release
	for rows.Next() {
		r, err := scanRelease(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

type scanner interface{ Scan(dest ...any) error }

func scanRelease(sc scanner) (release.Release, error) {
	var r release.Release
	var steps string
	var created, updated, started int64
	err := sc.Scan(&r.ID, &r.App, &r.Env, &r.Kind, &r.Version, &r.FromVersion, &r.Strategy, &steps, &r.HoldAt, &r.State,
		&r.Step, &r.Weight, &r.Reason, &r.Actor, &r.Source, &created, &updated, &started)
	if errors.Is(err, sql.ErrNoRows) {
		return r, ErrNotFound
	}
	if err != nil {
		return r, err
	}
	if err := json.Unmarshal([]byte(steps), &r.Steps); err != nil {
		return r, fmt.Errorf("release #%d steps: %w", r.ID, err)
	}
	r.Created, r.Updated, r.StepStarted = fromNanos(created), fromNanos(updated), fromNanos(started)
	return r, nil
}

func nonNil(f []release.Weight) []release.Weight {
	if f == nil {
		return []release.Weight{}
	}
	return f
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}
