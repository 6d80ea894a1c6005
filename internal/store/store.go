// Package store keeps ship's state in one SQLite file: releases, their
// events, locks, the per-app state the engine re-applies after a restart, and
// API tokens. It uses the pure-Go driver (modernc.org/sqlite) so ship builds
// with CGO_ENABLED=0. It stores and queries; it never decides: the rules of a
// rollout live in the engine. One partial unique index enforces the one
// active release per app and environment, so even two engines racing on the
// same file cannot both start a release.
package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/shipteam/ship/internal/release"
	_ "modernc.org/sqlite" // registers the "sqlite" driver
)

// Errors callers branch on are the vocabulary's, so the engine and the
// chat front end never import the store to check them.
var (
	ErrNotFound = release.ErrNotFound
	ErrConflict = release.ErrConflict
	ErrEnded    = release.ErrEnded
)

// AppState and EventQuery are the vocabulary's; the names stay here for
// the store's own callers.
type (
	AppState   = release.AppState
	EventQuery = release.EventQuery
)

// Store is an open SQLite file. Writes go through one connection (SQLite
// allows one writer); reads use a small pool that WAL lets run beside it.
type Store struct {
	w *sql.DB
	r *sql.DB

	sigMu     sync.Mutex
	sigPruned time.Time // last deletion of expired chat signatures

	// stmts holds the read queries prepared on r, by text: the engine reads
	// a release and an app's state at every step, and parsing the SQL
	// again each time was most of what a step cost.
	stmts sync.Map // string -> *sql.Stmt
}

// Open opens (creating if needed) the database at path and migrates it.
func Open(ctx context.Context, path string) (*Store, error) {
	if path == "" {
		return nil, errors.New("open store: empty path")
	}
	pragmas := "_pragma=busy_timeout(10000)&_pragma=foreign_keys(1)&_pragma=synchronous(NORMAL)"
	u := "file:" + (&url.URL{Path: path}).EscapedPath()
	w, err := sql.Open("sqlite", u+"?"+pragmas+"&_pragma=journal_mode(WAL)&_txlock=immediate")
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	w.SetMaxOpenConns(1)
	w.SetConnMaxIdleTime(0)
	if err := w.PingContext(ctx); err != nil {
		w.Close()
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	s := &Store{w: w}
	if err := s.migrate(ctx); err != nil {
		w.Close()
		return nil, fmt.Errorf("migrate store %s: %w", path, err)
	}
	r, err := sql.Open("sqlite", u+"?"+pragmas+"&_pragma=query_only(1)")
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("open store %s for reading: %w", path, err)
	}
	r.SetMaxOpenConns(4)
	s.r = r
	return s, nil
}

// Close closes the database.
func (s *Store) Close() error {
	var errs []error
	s.stmts.Range(func(_, v any) bool {
		errs = append(errs, v.(*sql.Stmt).Close())
		return true
	})
	return errors.Join(append(errs, s.r.Close(), s.w.Close())...)
}

// prepared returns the read statement for query, preparing it once.
func (s *Store) prepared(ctx context.Context, query string) (*sql.Stmt, error) {
	if st, ok := s.stmts.Load(query); ok {
		return st.(*sql.Stmt), nil
	}
	st, err := s.r.PrepareContext(ctx, query)
	if err != nil {
		return nil, err
	}
	if prev, loaded := s.stmts.LoadOrStore(query, st); loaded {
		st.Close()
		return prev.(*sql.Stmt), nil
	}
	return st, nil
}

// query runs a read query through its prepared statement.
func (s *Store) query(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	st, err := s.prepared(ctx, query)
	if err != nil {
		return nil, err
	}
	return st.QueryContext(ctx, args...)
}

// row is one row of a read query, or the error preparing it.
type row interface{ Scan(dest ...any) error }

type errRow struct{ err error }

func (r errRow) Scan(...any) error { return r.err }

// queryRow runs a one-row read query through its prepared statement.
func (s *Store) queryRow(ctx context.Context, query string, args ...any) row {
	st, err := s.prepared(ctx, query)
	if err != nil {
		return errRow{err}
	}
	return st.QueryRowContext(ctx, args...)
}

// migrations are applied in order; each runs once, recorded in
// schema_version. Never edit a released migration: append a new one.
var migrations = []string{
	// 1: the initial schema.
	`CREATE TABLE releases (
		id           INTEGER PRIMARY KEY AUTOINCREMENT,
		app          TEXT    NOT NULL,
		env          TEXT    NOT NULL,
		kind         TEXT    NOT NULL,
		version      TEXT    NOT NULL,
		from_version TEXT    NOT NULL DEFAULT '',
		strategy     TEXT    NOT NULL DEFAULT '',
		steps        TEXT    NOT NULL DEFAULT '[]',
		hold_at      REAL    NOT NULL DEFAULT 0,
		state        TEXT    NOT NULL,
		active       INTEGER NOT NULL,
		step         INTEGER NOT NULL DEFAULT 0,
		weight       REAL    NOT NULL DEFAULT 0,
		reason       TEXT    NOT NULL DEFAULT '',
		actor        TEXT    NOT NULL DEFAULT '',
		source       TEXT    NOT NULL DEFAULT '',
		created      INTEGER NOT NULL,
		updated      INTEGER NOT NULL,
		step_started INTEGER NOT NULL
	);
	CREATE UNIQUE INDEX releases_one_active ON releases(app, env) WHERE active = 1;
	CREATE INDEX releases_by_app ON releases(app, env, id);
	CREATE TABLE events (
		id         INTEGER PRIMARY KEY AUTOINCREMENT,
		release_id INTEGER REFERENCES releases(id),
		app        TEXT    NOT NULL,
		env        TEXT    NOT NULL,
		type       TEXT    NOT NULL,
		state      TEXT    NOT NULL DEFAULT '',
		step       INTEGER NOT NULL DEFAULT 0,
		weight     REAL    NOT NULL DEFAULT 0,
		message    TEXT    NOT NULL DEFAULT '',
		actor      TEXT    NOT NULL DEFAULT '',
		time       INTEGER NOT NULL,
		data       TEXT    NOT NULL DEFAULT ''
	);
	CREATE INDEX events_by_app ON events(app, env, id);
	CREATE INDEX events_by_release ON events(release_id, id);
	CREATE TABLE locks (
		app    TEXT    NOT NULL,
		env    TEXT    NOT NULL,
		reason TEXT    NOT NULL,
		actor  TEXT    NOT NULL,
		since  INTEGER NOT NULL,
		PRIMARY KEY (app, env)
	);
	CREATE TABLE app_state (
		app      TEXT    NOT NULL,
		env      TEXT    NOT NULL,
		stable   TEXT    NOT NULL DEFAULT '',
		replicas INTEGER NOT NULL DEFAULT 0,
		canary   TEXT    NOT NULL DEFAULT '',
		weight   REAL    NOT NULL DEFAULT 0,
		updated  INTEGER NOT NULL,
		PRIMARY KEY (app, env)
	);
	CREATE TABLE tokens (
		hash    BLOB    PRIMARY KEY,
		name    TEXT    NOT NULL,
		created INTEGER NOT NULL
	);`,
	// 2: the chat message of each release (internal/chat/slack), so a restart
	// keeps editing the same message and remembers who pressed what. No
	// foreign key: the chat front end may follow releases of another store
	// (tests) and a row outliving its release is harmless.
	`CREATE TABLE chat_messages (
		release_id       INTEGER PRIMARY KEY,
		channel          TEXT    NOT NULL DEFAULT '',
		ts               TEXT    NOT NULL DEFAULT '',
		origin           TEXT    NOT NULL DEFAULT '',
		follower_channel TEXT    NOT NULL DEFAULT '',
		follower_user    TEXT    NOT NULL DEFAULT '',
		lines            TEXT    NOT NULL DEFAULT '[]',
		updated          INTEGER NOT NULL
	);
	CREATE INDEX chat_messages_by_updated ON chat_messages(updated);`,
	// 3: MACs of signed chat requests already accepted (internal/chat/slack),
	// kept until they could no longer pass the timestamp check, so a restart
	// does not reopen them to a replay. Self-contained: touches no other table.
	`CREATE TABLE chat_signatures (
		mac     BLOB    PRIMARY KEY,
		expires INTEGER NOT NULL
	) WITHOUT ROWID;
	CREATE INDEX chat_signatures_by_expiry ON chat_signatures(expires);`,
	// 4: every token carries a role (internal/authz). Tokens made before
	// keep what they could do: the admin user's become admin, every other
	// one maintainer (every release action, not token management).
	`ALTER TABLE tokens ADD COLUMN role TEXT NOT NULL DEFAULT '';
	UPDATE tokens SET role = CASE WHEN name = 'admin' THEN 'admin' ELSE 'maintainer' END;
	CREATE INDEX tokens_by_name ON tokens(name);`,
}

func (s *Store) migrate(ctx context.Context) error {
	if _, err := s.w.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)`); err != nil {
		return err
	}
	for {
		tx, err := s.w.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		var v int
		if err := tx.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_version`).Scan(&v); err != nil {
			tx.Rollback()
			return err
		}
		if v > len(migrations) {
			tx.Rollback()
			return fmt.Errorf("database schema version %d is newer than this ship (%d): upgrade ship", v, len(migrations))
		}
		if v == len(migrations) {
			return tx.Rollback()
		}
		if _, err := tx.ExecContext(ctx, migrations[v]); err != nil {
			tx.Rollback()
			return fmt.Errorf("migration %d: %w", v+1, err)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO schema_version(version) VALUES (?)`, v+1); err != nil {
			tx.Rollback()
			return err
		}
		if err := tx.Commit(); err != nil {
			return fmt.Errorf("migration %d: %w", v+1, err)
		}
	}
}

// SchemaVersion reports the migration level of the file.
func (s *Store) SchemaVersion(ctx context.Context) (int, error) {
	var v int
	err := s.queryRow(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_version`).Scan(&v)
	return v, err
}

func nanos(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func fromNanos(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}

// tx runs f in a write transaction.
func (s *Store) tx(ctx context.Context, f func(*sql.Tx) error) error {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if err := f(tx); err != nil {
		tx.Rollback()
		return err
	}
	return tx.Commit()
}

func isUniqueViolation(err error) bool {
	return err != nil && strings.Contains(err.Error(), "UNIQUE constraint failed")
}

func marshalData(d *release.EventData) (string, error) {
	if d == nil {
		return "", nil
	}
	b, err := json.Marshal(d)
	return string(b), err
}
