package slack

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	slackapi "github.com/slack-go/slack"
)

// Stats counts what the front end did; nothing that fails is lost silently:
// every give-up is logged and counted here.
type Stats struct {
	Commands         int64 // slash commands accepted
	Interactions     int64 // button presses accepted
	Unauthorized     int64 // requests refused with 401
	Refused          int64 // commands or presses refused by permissions or channel rules
	SlackCalls       int64 // Web API and response_url calls attempted (first tries)
	SlackRetries     int64 // retries after 429, 5xx or network errors
	SlackFailures    int64 // calls given up after their last attempt
	ResponseURLPosts int64 // messages delivered through response_url
	EventsDropped    int64 // engine events the notifier could not track (queue full)
	Busy             int64 // commands refused because MaxInFlight tasks were running
}

type counters struct {
	commands, interactions, unauthorized, refused      atomic.Int64
	slackCalls, slackRetries, slackFailures, respPosts atomic.Int64
	eventsDropped, busy                                atomic.Int64
}

func (c *counters) snapshot() Stats {
	return Stats{
		Commands: c.commands.Load(), Interactions: c.interactions.Load(),
		Unauthorized: c.unauthorized.Load(), Refused: c.refused.Load(),
		SlackCalls: c.slackCalls.Load(), SlackRetries: c.slackRetries.Load(),
		SlackFailures: c.slackFailures.Load(), ResponseURLPosts: c.respPosts.Load(),
		EventsDropped: c.eventsDropped.Load(), Busy: c.busy.Load(),
	}
}

// message is what ship sends: a slash-command reply, a response_url post or
// the body of chat.postMessage. Text is always set: it is the notification
// text in Slack and the whole message in Mattermost, which ignores blocks.
// Text and every mrkdwn block are markup (see mrkdwn.go), built with esc or
// mrkdwnf, never from plain strings.
type message struct {
	ResponseType    string           `json:"response_type,omitempty"`
	Text            string           `json:"text"`
	Blocks          []slackapi.Block `json:"blocks,omitempty"`
	ReplaceOriginal bool             `json:"replace_original,omitempty"`
}

// ephemeral is a reply only its asker sees.
func ephemeral(text markup, blocks ...slackapi.Block) message {
	return message{ResponseType: slackapi.ResponseTypeEphemeral, Text: string(text), Blocks: blocks}
}

// webAPI wraps Slack's Web API and response_url with bounded retries.
type webAPI struct {
	client      *slackapi.Client // nil without a bot token
	http        *http.Client
	log         *slog.Logger
	stats       *counters
	maxAttempts int
	maxWait     time.Duration
	// baseBackoff doubles per attempt for errors without Retry-After.
	baseBackoff time.Duration
}

// retryableError carries how long to wait before the next attempt.
type retryableError struct {
	err  error
	wait time.Duration // 0 = use backoff
}

func (e *retryableError) Error() string { return e.err.Error() }
func (e *retryableError) Unwrap() error { return e.err }

// classify decides whether a Slack error is worth another attempt.
func classify(err error) (retry bool, wait time.Duration) {
	if rl, ok := errors.AsType[*slackapi.RateLimitedError](err); ok {
		return true, max(rl.RetryAfter, time.Second)
	}
	if re, ok := errors.AsType[*retryableError](err); ok {
		return true, re.wait
	}
	if sc, ok := errors.AsType[slackapi.StatusCodeError](err); ok {
		return sc.Code >= 500, 0
	}
	if se, ok := errors.AsType[slackapi.SlackErrorResponse](err); ok {
		switch se.Err {
		case "ratelimited", "internal_error", "fatal_error", "service_unavailable", "request_timeout":
			return true, 0
		}
		return false, 0
	}
	if _, ok := errors.AsType[net.Error](err); ok {
		return true, 0
	}
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		return true, 0
	}
	// Unknown transport failures (connection refused surfaces as *url.Error).
	if _, ok := errors.AsType[*url.Error](err); ok {
		return true, 0
	}
	return false, 0
}

// do runs call until it succeeds, fails for good, or attempts run out.
func (w *webAPI) do(ctx context.Context, op string, call func(context.Context) error) error {
	w.stats.slackCalls.Add(1)
	backoff := w.baseBackoff
	for attempt := 1; ; attempt++ {
		cctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		err := call(cctx)
		cancel()
		if err == nil {
			return nil
		}
		retry, wait := classify(err)
		if !retry || attempt >= w.maxAttempts || ctx.Err() != nil {
			w.stats.slackFailures.Add(1)
			w.log.Warn("slack call failed", "op", op, "attempts", attempt, "err", err)
			return fmt.Errorf("%s: %w", op, err)
		}
		if wait == 0 {
			wait = backoff
			backoff *= 2
		}
		wait = min(wait, w.maxWait)
		w.stats.slackRetries.Add(1)
		w.log.Info("slack call retried", "op", op, "attempt", attempt, "wait", wait, "err", err)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			w.stats.slackFailures.Add(1)
			w.log.Warn("slack call abandoned", "op", op, "attempts", attempt, "err", ctx.Err())
			return fmt.Errorf("%s: %w", op, ctx.Err())
		case <-t.C:
		}
	}
}

var errNoBotToken = errors.New("no bot token configured")

func msgOptions(m message) []slackapi.MsgOption {
	opts := []slackapi.MsgOption{slackapi.MsgOptionText(m.Text, false)}
	if len(m.Blocks) > 0 {
		opts = append(opts, slackapi.MsgOptionBlocks(m.Blocks...))
	}
	return opts
}

// post sends a new channel message and returns its timestamp.
func (w *webAPI) post(ctx context.Context, channel string, m message) (ts string, err error) {
	if w.client == nil {
		return "", errNoBotToken
	}
	err = w.do(ctx, "chat.postMessage", func(ctx context.Context) error {
		_, t, err := w.client.PostMessageContext(ctx, channel, msgOptions(m)...)
		ts = t
		return err
	})
	return ts, err
}

// update replaces a channel message in place.
func (w *webAPI) update(ctx context.Context, channel, ts string, m message) error {
	if w.client == nil {
		return errNoBotToken
	}
	return w.do(ctx, "chat.update", func(ctx context.Context) error {
		_, _, _, err := w.client.UpdateMessageContext(ctx, channel, ts, msgOptions(m)...)
		return err
	})
}

// postEphemeral shows m to one user in channel.
func (w *webAPI) postEphemeral(ctx context.Context, channel, user string, m message) error {
	if w.client == nil {
		return errNoBotToken
	}
	return w.do(ctx, "chat.postEphemeral", func(ctx context.Context) error {
		_, err := w.client.PostEphemeralContext(ctx, channel, user, msgOptions(m)...)
		return err
	})
}

// groupMembers lists a user group's members (usergroups.users.list).
func (w *webAPI) groupMembers(ctx context.Context, group string) (users []string, err error) {
	if w.client == nil {
		return nil, errNoBotToken
	}
	err = w.do(ctx, "usergroups.users.list", func(ctx context.Context) error {
		u, err := w.client.GetUserGroupMembersContext(ctx, group)
		users = u
		return err
	})
	return users, err
}

// postResponseURL posts m as JSON to a response_url.
func (w *webAPI) postResponseURL(ctx context.Context, rawURL string, m message) error {
	body, err := json.Marshal(m)
	if err != nil {
		return fmt.Errorf("encode response: %w", err)
	}
	err = w.do(ctx, "response_url", func(ctx context.Context) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, rawURL, bytes.NewReader(body))
		if err != nil {
			return redactURLError(err, rawURL)
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := w.http.Do(req)
		if err != nil {
			return redactURLError(err, rawURL)
		}
		defer resp.Body.Close()
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		switch {
		case resp.StatusCode == http.StatusTooManyRequests:
			wait := time.Second
			if s, err := time.ParseDuration(resp.Header.Get("Retry-After") + "s"); err == nil && s > 0 {
				wait = s
			}
			return &retryableError{fmt.Errorf("response_url: %s", resp.Status), wait}
		case resp.StatusCode >= 500:
			return &retryableError{fmt.Errorf("response_url: %s", resp.Status), 0}
		case resp.StatusCode >= 300:
			return fmt.Errorf("response_url: %s", resp.Status)
		}
		return nil
	})
	if err == nil {
		w.stats.respPosts.Add(1)
	}
	return err
}

// redactURLError keeps a response_url out of an error's text. The URL is a
// capability (anyone holding it may post as ship for 30 minutes) and net/http
// puts it whole into *url.Error, which ends up in logs and wrapped errors.
// The result names only the scheme and host, and stays a *url.Error (so
// classify still retries transport failures) unless the inner error itself
// quotes the URL, in which case its text is scrubbed.
func redactURLError(err error, rawURL string) error {
	if err == nil {
		return nil
	}
	safe := redactedURL(rawURL)
	ue, ok := errors.AsType[*url.Error](err)
	if ok {
		err = &url.Error{Op: ue.Op, URL: safe, Err: ue.Err}
	}
	text := err.Error()
	scrubbed := scrubURL(text, rawURL, safe)
	if scrubbed == text {
		return err
	}
	// Transport failures are worth another attempt; keep them retryable.
	return &retryableError{errors.New(scrubbed), 0}
}

// redactedURL is what logs may say about a response_url: scheme and host.
func redactedURL(rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil || u.Host == "" {
		return "response_url"
	}
	return u.Scheme + "://" + u.Host + "/…"
}

// scrubURL removes rawURL, its path and its query from text.
func scrubURL(text, rawURL, safe string) string {
	if rawURL == "" {
		return text
	}
	text = strings.ReplaceAll(text, rawURL, safe)
	if u, err := url.Parse(rawURL); err == nil {
		for _, part := range []string{u.EscapedPath(), u.Path, u.RawQuery} {
			if len(part) > 1 {
				text = strings.ReplaceAll(text, part, "/…")
			}
		}
	}
	return text
}

// Slack lets a response_url be used 5 times within 30 minutes.
const (
	responseURLUses = 5
	responseURLLife = 30 * time.Minute
)

// responder reaches the user who sent a command or pressed a button: through
// response_url while its limits allow, then with the bot token.
type responder struct {
	url     string
	created time.Time
	channel string
	user    string

	mu   sync.Mutex
	uses int
}

func newResponder(rawURL, channel, user string, now time.Time) *responder {
	if u, err := url.Parse(rawURL); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		rawURL = ""
	}
	return &responder{url: rawURL, created: now, channel: channel, user: user}
}

// take reserves one use of the response_url, if any is left.
func (r *responder) take(now time.Time) (string, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.url == "" || r.uses >= responseURLUses || now.Sub(r.created) >= responseURLLife {
		return "", false
	}
	r.uses++
	return r.url, true
}
