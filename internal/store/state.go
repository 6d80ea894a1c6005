package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/shipteam/ship/internal/release"
)

func putAppState(ctx context.Context, tx *sql.Tx, st AppState) error {
	_, err := tx.ExecContext(ctx, `INSERT INTO app_state(app, env, stable, replicas, canary, weight, updated) VALUES (?,?,?,?,?,?,?)
		ON CONFLICT(app, env) DO UPDATE SET stable=excluded.stable, replicas=excluded.replicas, canary=excluded.canary, weight=excluded.weight, updated=excluded.updated`,
		st.App, st.Env, st.Stable, st.Replicas, st.Canary, st.Weight, nanos(st.Updated))
	if err != nil {
		return fmt.Errorf("put app state %s/%s: %w", st.App, st.Env, err)
	}
	return nil
}

// AppState returns the state of app in env, or ErrNotFound.
func (s *Store) AppState(ctx context.Context, app, env string) (AppState, error) {
	st := AppState{App: app, Env: env}
	var updated int64
	err := s.queryRow(ctx, `SELECT stable, replicas, canary, weight, updated FROM app_state WHERE app=? AND env=?`, app, env).
		Scan(&st.Stable, &st.Replicas, &st.Canary, &st.Weight, &updated)
	if errors.Is(err, sql.ErrNoRows) {
		return st, ErrNotFound
	}
	if err != nil {
		return st, fmt.Errorf("app state %s/%s: %w", app, env, err)
	}
	st.Updated = fromNanos(updated)
	return st, nil
}

// AppStates returns every stored app state.
func (s *Store) AppStates(ctx context.Context) ([]AppState, error) {
	rows, err := s.query(ctx, `SELECT app, env, stable, replicas, canary, weight, updated FROM app_state ORDER BY app, env`)
	if err != nil {
		return nil, fmt.Errorf("app states: %w", err)
	}
	defer rows.Close()
	var out []AppState
	for rows.Next() {
		var st AppState
		var updated int64
		if err := rows.Scan(&st.App, &st.Env, &st.Stable, &st.Replicas, &st.Canary, &st.Weight, &updated); err != nil {
			return nil, err
		}
		st.Updated = fromNanos(updated)
		out = append(out, st)
	}
	return out, rows.Err()
}

// PutLock sets (or replaces) the lock of l.App in l.Env and records ev.
func (s *Store) PutLock(ctx context.Context, l release.Lock, ev release.Event) (release.Event, error) {
	var out release.Event
	err := s.tx(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO locks(app, env, reason, actor, since) VALUES (?,?,?,?,?)
			ON CONFLICT(app, env) DO UPDATE SET reason=excluded.reason, actor=excluded.actor, since=excluded.since`,
			l.App, l.Env, l.Reason, l.Actor, nanos(l.Since))
		if err != nil {
			return err
		}
		out, err = insertEvent(ctx, tx, ev)
		return err
	})
	if err != nil {
		return out, fmt.Errorf("lock %s/%s: %w", l.App, l.Env, err)
	}
	return out, nil
}

// DeleteLock removes the lock of app in env and records ev; ErrNotFound
// when there is none (and nothing is recorded).
func (s *Store) DeleteLock(ctx context.Context, app, env string, ev release.Event) (release.Event, error) {
	var out release.Event
	err := s.tx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM locks WHERE app=? AND env=?`, app, env)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return ErrNotFound
		}
		out, err = insertEvent(ctx, tx, ev)
		return err
	})
	if err != nil {
		return out, fmt.Errorf("unlock %s/%s: %w", app, env, err)
	}
	return out, nil
}

// GetLock returns the lock of app in env, or ErrNotFound.
func (s *Store) GetLock(ctx context.Context, app, env string) (release.Lock, error) {
	l := release.Lock{App: app, Env: env}
	var since int64
	err := s.queryRow(ctx, `SELECT reason, actor, since FROM locks WHERE app=? AND env=?`, app, env).Scan(&l.Reason, &l.Actor, &since)
	if errors.Is(err, sql.ErrNoRows) {
		return l, ErrNotFound
	}
	if err != nil {
		return l, fmt.Errorf("lock of %s/%s: %w", app, env, err)
	}
	l.Since = fromNanos(since)
	return l, nil
}

// CountTokens returns how many tokens are stored.
func (s *Store) CountTokens(ctx context.Context) (int, error) {
	var n int
	if err := s.queryRow(ctx, `SELECT COUNT(*) FROM tokens`).Scan(&n); err != nil {
		return 0, fmt.Errorf("count tokens: %w", err)
	}
	return n, nil
}
