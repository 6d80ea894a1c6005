package release

import "time"

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
