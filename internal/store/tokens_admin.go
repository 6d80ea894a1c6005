package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// AdminRole is the role that manages tokens (internal/authz's admin). The
// store refuses to delete the last token carrying it, so nobody is locked
// out of token management.
const AdminRole = "admin"

// ErrLastAdmin refuses a revoke that would leave no token with AdminRole.
var ErrLastAdmin = errors.New("that would remove the last admin token")

// TokenInfo is what may be shown about a stored token: never its hash.
type TokenInfo struct {
	Name    string
	Role    string
	Created time.Time
}

// PutToken stores the hash of an API token for user name with a role
// (replacing name and role if the hash is known). Only hashes are stored,
// never tokens.
func (s *Store) PutToken(ctx context.Context, name, role string, hash []byte) error {
	if name == "" || role == "" || len(hash) == 0 {
		return errors.New("put token: empty name, role or hash")
	}
	_, err := s.w.ExecContext(ctx, `INSERT INTO tokens(hash, name, role, created) VALUES (?,?,?,strftime('%s','now'))
		ON CONFLICT(hash) DO UPDATE SET name=excluded.name, role=excluded.role`, hash, name, role)
	if err != nil {
		return fmt.Errorf("put token for %s: %w", name, err)
	}
	return nil
}

// TokenOwner returns who a token hash belongs to and its role, or
// ErrNotFound.
func (s *Store) TokenOwner(ctx context.Context, hash []byte) (TokenInfo, error) {
	var t TokenInfo
	var created int64
	err := s.queryRow(ctx, `SELECT name, role, created FROM tokens WHERE hash=?`, hash).Scan(&t.Name, &t.Role, &created)
	if errors.Is(err, sql.ErrNoRows) {
		return t, ErrNotFound
	}
	if err != nil {
		return t, fmt.Errorf("token owner: %w", err)
	}
	t.Created = time.Unix(created, 0).UTC()
	return t, nil
}

// Tokens lists every stored token's user name, role and creation time,
// oldest first (one user may hold several tokens).
func (s *Store) Tokens(ctx context.Context) ([]TokenInfo, error) {
	rows, err := s.query(ctx, `SELECT name, role, created FROM tokens ORDER BY created, name`)
	if err != nil {
		return nil, fmt.Errorf("list tokens: %w", err)
	}
	defer rows.Close()
	var out []TokenInfo
	for rows.Next() {
		var t TokenInfo
		var created int64
		if err := rows.Scan(&t.Name, &t.Role, &created); err != nil {
			return nil, fmt.Errorf("list tokens: %w", err)
		}
		t.Created = time.Unix(created, 0).UTC()
		out = append(out, t)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list tokens: %w", err)
	}
	return out, nil
}

// RevokeTokens deletes every token of user name and returns how many there
// were. A revoked token fails its next request: nothing caches them. It
// refuses with ErrLastAdmin when no admin token would be left.
func (s *Store) RevokeTokens(ctx context.Context, name string) (int, error) {
	var n int64
	err := s.tx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM tokens WHERE name=?`, name)
		if err != nil {
			return err
		}
		if n, err = res.RowsAffected(); err != nil {
			return err
		}
		return checkAdminLeft(ctx, tx, n)
	})
	if err != nil {
		if errors.Is(err, ErrLastAdmin) {
			return 0, err
		}
		return 0, fmt.Errorf("revoke tokens of %s: %w", name, err)
	}
	return int(n), nil
}

// checkAdminLeft fails with ErrLastAdmin when rows were deleted and no
// admin token is left.
func checkAdminLeft(ctx context.Context, tx *sql.Tx, deleted int64) error {
	if deleted == 0 {
		return nil
	}
	var admins int
	if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM tokens WHERE role=?`, AdminRole).Scan(&admins); err != nil {
		return err
	}
	if admins == 0 {
		return ErrLastAdmin
	}
	return nil
}

// RotateTokens replaces every token of user name with one new token (its
// hash given) carrying the role of name's newest token, in one
// transaction: there is no moment with both or neither. It returns the
// role and how many tokens were revoked; ErrNotFound when name has none.
func (s *Store) RotateTokens(ctx context.Context, name string, hash []byte) (role string, revoked int, err error) {
	if len(hash) == 0 {
		return "", 0, errors.New("rotate tokens: empty hash")
	}
	err = s.tx(ctx, func(tx *sql.Tx) error {
		err := tx.QueryRowContext(ctx, `SELECT role FROM tokens WHERE name=? ORDER BY created DESC, rowid DESC LIMIT 1`, name).Scan(&role)
		if errors.Is(err, sql.ErrNoRows) {
			return ErrNotFound
		}
		if err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx, `DELETE FROM tokens WHERE name=?`, name)
		if err != nil {
			return err
		}
		n, err := res.RowsAffected()
		if err != nil {
			return err
		}
		revoked = int(n)
		_, err = tx.ExecContext(ctx, `INSERT INTO tokens(hash, name, role, created) VALUES (?,?,?,strftime('%s','now'))`, hash, name, role)
		return err
	})
	if err != nil {
		if errors.Is(err, ErrNotFound) {
			return "", 0, err
		}
		return "", 0, fmt.Errorf("rotate tokens of %s: %w", name, err)
	}
	return role, revoked, nil
}
