package store

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// signaturePruneEvery spaces out the deletion of expired signatures: one
// DELETE per second at most instead of one per request (a Slack burst of a
// few hundred commands queues on the single writer connection).
const signaturePruneEvery = time.Second

// SeenSignature records the MAC of a signed chat request as seen until
// expires and reports whether it was fresh: not already recorded with an
// expiry after now. It is one statement, so of two callers racing with the
// same MAC, on this handle or another handle of the file, exactly one gets
// fresh. An expired row counts as absent (and is taken over), so pruning
// can lag: expired rows are deleted at most once per signaturePruneEvery.
// The chat front end decides how long a MAC lives (its signature window),
// not the store.
func (s *Store) SeenSignature(ctx context.Context, mac []byte, now, expires time.Time) (fresh bool, err error) {
	if len(mac) == 0 {
		return false, errors.New("seen signature: empty mac")
	}
	res, err := s.w.ExecContext(ctx, `INSERT INTO chat_signatures(mac, expires) VALUES (?, ?)
		ON CONFLICT(mac) DO UPDATE SET expires = excluded.expires WHERE chat_signatures.expires <= ?`,
		mac, nanos(expires), nanos(now))
	if err != nil {
		return false, fmt.Errorf("seen signature: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("seen signature: %w", err)
	}
	s.pruneSignatures(ctx, now)
	return n == 1, nil
}

// pruneSignatures deletes signatures expired at now, unless that was done
// less than signaturePruneEvery ago (by the clock the caller passes). A
// failure is left for the next call: expired rows are harmless.
func (s *Store) pruneSignatures(ctx context.Context, now time.Time) {
	s.sigMu.Lock()
	due := now.Sub(s.sigPruned) >= signaturePruneEvery || now.Before(s.sigPruned)
	if due {
		s.sigPruned = now
	}
	s.sigMu.Unlock()
	if due {
		_, _ = s.w.ExecContext(ctx, `DELETE FROM chat_signatures WHERE expires <= ?`, nanos(now))
	}
}
