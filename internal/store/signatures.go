package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// SeenSignature records the MAC of a signed chat request as seen until
// expires and reports whether it was fresh: not already recorded with an
// expiry after now. It is atomic (one write transaction), so of two callers
// racing with the same MAC, on this file or another handle of it, exactly one
// gets fresh. Entries expired at now are pruned on the way; the chat front end
// decides how long a MAC lives (its signature window), not the store.
func (s *Store) SeenSignature(ctx context.Context, mac []byte, now, expires time.Time) (fresh bool, err error) {
	if len(mac) == 0 {
		return false, errors.New("seen signature: empty mac")
	}
	err = s.tx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `DELETE FROM chat_signatures WHERE expires <= ?`, nanos(now)); err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx, `INSERT INTO chat_signatures(mac, expires) VALUES (?, ?) ON CONFLICT(mac) DO NOTHING`,
			mac, nanos(expires))
		if err != nil {
			return err
		}
		n, err := res.RowsAffected()
		fresh = n == 1
		return err
	})
	if err != nil {
		return false, fmt.Errorf("seen signature: %w", err)
	}
	return fresh, nil
}
