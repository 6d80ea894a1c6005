package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// ChatMessage is where a release's chat message is and what it must keep
// saying across restarts: the chat front end posts one message per release
// and edits it in place, so it needs the message's timestamp and the lines
// ("Promote pressed by alice") it cannot re-derive from the engine.
//
// A response_url is deliberately not stored: it is a bearer capability, and
// the follower is reached through the bot token after a restart instead.
type ChatMessage struct {
	ReleaseID       int64     `json:"release_id"`
	Channel         string    `json:"channel"`          // where the message is, once posted
	TS              string    `json:"ts"`               // the message's Slack timestamp, once posted
	Origin          string    `json:"origin"`           // channel the release was started from (fallback)
	FollowerChannel string    `json:"follower_channel"` // the user told privately about the release
	FollowerUser    string    `json:"follower_user"`
	Lines           []string  `json:"lines"` // timeline shown under the message, oldest first
	Updated         time.Time `json:"updated"`
}

// ChatMessage returns the chat message state of a release, or ErrNotFound.
func (s *Store) ChatMessage(ctx context.Context, releaseID int64) (ChatMessage, error) {
	m := ChatMessage{ReleaseID: releaseID}
	var lines string
	var updated int64
	err := s.r.QueryRowContext(ctx, `SELECT channel, ts, origin, follower_channel, follower_user, lines, updated FROM chat_messages WHERE release_id = ?`, releaseID).
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
