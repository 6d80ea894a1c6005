package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/shipteam/ship/internal/release"
	"time"
)

// ChatMessage is the vocabulary's (the chat front end must not import the
// store); the name stays here for the store's own callers.
type ChatMessage = release.ChatMessage

// ChatMessage returns the chat message state of a release, or ErrNotFound.
func (s *Store) ChatMessage(ctx context.Context, releaseID int64) (ChatMessage, error) {
	m := ChatMessage{ReleaseID: releaseID}
	var lines string
	var updated int64
	err := s.queryRow(ctx, `SELECT channel, ts, origin, follower_channel, follower_user, lines, updated FROM chat_messages WHERE release_id = ?`, releaseID).
		Scan(&m.Channel, &m.TS, &m.Origin, &m.FollowerChannel, &m.FollowerUser, &lines, &updated)
	if errors.Is(err, sql.ErrNoRows) {
		return m, ErrNotFound
	}
	if err != nil {
		return m, fmt.Errorf("chat message of release %d: %w", releaseID, err)
	}
	if err := json.Unmarshal([]byte(lines), &m.Lines); err != nil {
		return m, fmt.Errorf("chat message of release %d: lines: %w", releaseID, err)
	}
	m.Updated = fromNanos(updated)
	return m, nil
}

// PutChatMessage writes the whole chat message state of m.ReleaseID,
// replacing what was there. A zero Updated is set to now.
func (s *Store) PutChatMessage(ctx context.Context, m ChatMessage) error {
	if m.ReleaseID <= 0 {
		return fmt.Errorf("put chat message: bad release id %d", m.ReleaseID)
	}
	if m.Lines == nil {
		m.Lines = []string{}
	}
	lines, err := json.Marshal(m.Lines)
	if err != nil {
		return err
	}
	if m.Updated.IsZero() {
		m.Updated = time.Now()
	}
	_, err = s.w.ExecContext(ctx, `INSERT INTO chat_messages(release_id, channel, ts, origin, follower_channel, follower_user, lines, updated)
		VALUES (?,?,?,?,?,?,?,?)
		ON CONFLICT(release_id) DO UPDATE SET channel=excluded.channel, ts=excluded.ts, origin=excluded.origin,
			follower_channel=excluded.follower_channel, follower_user=excluded.follower_user, lines=excluded.lines, updated=excluded.updated`,
		m.ReleaseID, m.Channel, m.TS, m.Origin, m.FollowerChannel, m.FollowerUser, string(lines), nanos(m.Updated))
	if err != nil {
		return fmt.Errorf("put chat message of release %d: %w", m.ReleaseID, err)
	}
	return nil
}
