package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/shipteam/ship/internal/release"
)

// AddEvents records app-level events (no release), and the app state st when
// not nil, in one transaction.
func (s *Store) AddEvents(ctx context.Context, st *AppState, evs ...release.Event) ([]release.Event, error) {
	var out []release.Event
	err := s.tx(ctx, func(tx *sql.Tx) error {
		if st != nil {
			if err := putAppState(ctx, tx, *st); err != nil {
				return err
			}
		}
		var err error
		out, err = insertEvents(ctx, tx, evs)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("record events: %w", err)
	}
	return out, nil
}

func insertEvents(ctx context.Context, tx *sql.Tx, evs []release.Event) ([]release.Event, error) {
	out := make([]release.Event, 0, len(evs))
	for _, ev := range evs {
		ev, err := insertEvent(ctx, tx, ev)
		if err != nil {
			return nil, err
		}
		out = append(out, ev)
	}
	return out, nil
}

func insertEvent(ctx context.Context, tx *sql.Tx, ev release.Event) (release.Event, error) {
	data, err := marshalData(ev.Data)
	if err != nil {
		return ev, fmt.Errorf("event %s data: %w", ev.Type, err)
	}
	var rid any
	if ev.ReleaseID != 0 {
		rid = ev.ReleaseID
	}
	res, err := tx.ExecContext(ctx, `INSERT INTO events(release_id, app, env, type, state, step, weight, message, actor, time, data) VALUES (?,?,?,?,?,?,?,?,?,?,?)`,
		rid, ev.App, ev.Env, ev.Type, ev.State, ev.Step, ev.Weight, ev.Message, ev.Actor, nanos(ev.Time), data)
	if err != nil {
		return ev, fmt.Errorf("insert event %s: %w", ev.Type, err)
	}
	ev.ID, err = res.LastInsertId()
	ev.Time = fromNanos(nanos(ev.Time)) // as it reads back
	return ev, err
}

// Events returns the events q selects, oldest first.
func (s *Store) Events(ctx context.Context, q EventQuery) ([]release.Event, error) {
	var where []string
	var args []any
	if q.App != "" {
		where, args = append(where, "app=?"), append(args, q.App)
	}
	if q.Env != "" {
		where, args = append(where, "env=?"), append(args, q.Env)
	}
	if q.ReleaseID != 0 {
		where, args = append(where, "release_id=?"), append(args, q.ReleaseID)
	}
	if q.AfterID != 0 {
		where, args = append(where, "id>?"), append(args, q.AfterID)
	}
	limit := q.Limit
	if limit <= 0 {
		limit = 1000
	}
	query := `SELECT id, COALESCE(release_id, 0), app, env, type, state, step, weight, message, actor, time, data FROM events`
	if len(where) > 0 {
		query += " WHERE " + strings.Join(where, " AND ")
	}
	query += " ORDER BY id LIMIT ?"
	args = append(args, limit)
	return s.queryEvents(ctx, query, args...)
}

func (s *Store) queryEvents(ctx context.Context, query string, args ...any) ([]release.Event, error) {
	rows, err := s.query(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("query events: %w", err)
	}
	defer rows.Close()
	var out []release.Event
	for rows.Next() {
		var ev release.Event
		var t int64
		var data string
		if err := rows.Scan(&ev.ID, &ev.ReleaseID, &ev.App, &ev.Env, &ev.Type, &ev.State, &ev.Step, &ev.Weight, &ev.Message, &ev.Actor, &t, &data); err != nil {
			return nil, fmt.Errorf("scan event: %w", err)
		}
		ev.Time = fromNanos(t)
		if data != "" {
			if err := json.Unmarshal([]byte(data), &ev.Data); err != nil {
				return nil, fmt.Errorf("event %d data: %w", ev.ID, err)
			}
		}
		out = append(out, ev)
	}
	return out, rows.Err()
}

// LastEvent returns the newest event of type typ of release id, or
// ErrNotFound.
func (s *Store) LastEvent(ctx context.Context, releaseID int64, typ release.EventType) (release.Event, error) {
	evs, err := s.queryEvents(ctx, `SELECT id, COALESCE(release_id, 0), app, env, type, state, step, weight, message, actor, time, data
		FROM events WHERE release_id=? AND type=? ORDER BY id DESC LIMIT 1`, releaseID, typ)
	if err != nil {
		return release.Event{}, err
	}
	if len(evs) == 0 {
		return release.Event{}, ErrNotFound
	}
	return evs[0], nil
}
