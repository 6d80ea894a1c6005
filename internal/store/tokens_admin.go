package store

import (
	"context"
	"fmt"
	"time"
)

// TokenInfo is what may be shown about a stored token: never its hash.
type TokenInfo struct {
	Name    string
	Created time.Time
}

// Tokens lists every stored token's user name and creation time, oldest
// first (one user may hold several tokens).
func (s *Store) Tokens(ctx context.Context) ([]TokenInfo, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT name, created FROM tokens ORDER BY created, name`)
	if err != nil {
		return nil, fmt.Errorf("list tokens: %w", err)
	}
	defer rows.Close()
	var out []TokenInfo
	for rows.Next() {
		var t TokenInfo
		var created int64
		if err := rows.Scan(&t.Name, &created); err != nil {
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
// were. A revoked token fails its next request: nothing caches them.
func (s *Store) RevokeTokens(ctx context.Context, name string) (int, error) {
	res, err := s.w.ExecContext(ctx, `DELETE FROM tokens WHERE name=?`, name)
	if err != nil {
		return 0, fmt.Errorf("revoke tokens of %s: %w", name, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("revoke tokens of %s: %w", name, err)
	}
	return int(n), nil
}
